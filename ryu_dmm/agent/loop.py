"""A small select loop with a timer heap: enough for one MAAR's signalling, no framework needed."""
from __future__ import annotations

import heapq
import itertools
import selectors
import time
from typing import Callable, Hashable


class Loop:
    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self._heap: list = []
        self._tokens: dict = {}
        self._count = itertools.count()
        self.running = True

    def add_reader(self, sock, callback: Callable[[], None]) -> None:
        self.selector.register(sock, selectors.EVENT_READ, callback)

    def set_timer(self, key: Hashable, at: float, callback: Callable[[Hashable], None]) -> None:
        token = next(self._count)
        self._tokens[key] = token
        heapq.heappush(self._heap, (at, token, key, callback))

    def cancel_timer(self, key: Hashable) -> None:
        self._tokens.pop(key, None)

    def run(self) -> None:
        while self.running:
            now = time.time()
            while self._heap and self._heap[0][0] <= now:
                _, token, key, callback = heapq.heappop(self._heap)
                if self._tokens.get(key) == token:
                    del self._tokens[key]
                    callback(key)
            timeout = max(0.0, self._heap[0][0] - time.time()) if self._heap else 1.0
            for key, _ in self.selector.select(min(timeout, 1.0)):
                key.data()
