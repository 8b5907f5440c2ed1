"""The timer heap on Ryu's eventlet hub: one sleeper greenthread for every timer of the CMD.

A greenthread per timer (``spawn_after``) cost the CMD about 8 % of its time per registration, and
a million MNs means a million timers; so one greenthread sleeps until the heap's next deadline.
"""
from __future__ import annotations

import time
from typing import Callable, Hashable

from .runtime import hub
from .timerheap import TimerHeap

IDLE_WAKE = 1.0  # seconds: the longest sleep, so a clock step is noticed within this


class HubTimers:
    def __init__(self, fire: Callable[[Hashable], None]) -> None:
        self.heap = TimerHeap()
        self._fire = fire
        self._wake = hub.Event()
        self._thread = hub.spawn(self._run)

    def set(self, key: Hashable, at: float) -> None:
        if self.heap.set(key, at):
            self._wake.set()

    def cancel(self, key: Hashable) -> None:
        self.heap.cancel(key)

    def _run(self) -> None:
        while True:
            for key in self.heap.pop_due(time.time()):
                self._fire(key)
            self._wake.clear()
            at = self.heap.next_at()
            self._wake.wait(IDLE_WAKE if at is None else max(0.0, min(IDLE_WAKE, at - time.time())))

    def stop(self) -> None:
        hub.kill(self._thread)
