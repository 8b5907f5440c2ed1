"""Timers of a core on Ryu's eventlet hub: SetTimer/CancelTimer effects on one heap.

One sleeper greenthread serves all timers: a greenthread per timer (``spawn_after``) cost the CMD
about 8 % of its time per registration, and a million MNs means a million timers.
"""
from __future__ import annotations

import heapq
import itertools
import time
from typing import Callable, Hashable

from ryu.lib import hub


class HubTimers:
    def __init__(self, fire: Callable[[Hashable], None]) -> None:
        self._fire = fire
        self._heap: list = []
        self._tokens: dict = {}  # key -> token of its live entry; stale heap entries are skipped
        self._count = itertools.count()
        self._wake = hub.Event()
        self._thread = hub.spawn(self._run)

    def set(self, key: Hashable, at: float) -> None:
        token = next(self._count)
        self._tokens[key] = token
        earliest = self._heap[0][0] if self._heap else None
        heapq.heappush(self._heap, (at, token, key))
        if earliest is None or at < earliest:
            self._wake.set()

    def cancel(self, key: Hashable) -> None:
        self._tokens.pop(key, None)

    def _run(self) -> None:
        while True:
            now = time.time()
            while self._heap and self._heap[0][0] <= now:
                _, token, key = heapq.heappop(self._heap)
                if self._tokens.get(key) == token:
                    del self._tokens[key]
                    self._fire(key)
            self._wake.clear()
            self._wake.wait(min(1.0, self._heap[0][0] - time.time()) if self._heap else 1.0)

    def stop(self) -> None:
        hub.kill(self._thread)
