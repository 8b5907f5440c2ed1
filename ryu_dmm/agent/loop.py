"""A small select loop driving the shared timer heap: enough for one MAAR's signalling."""
from __future__ import annotations

import selectors
import time
from typing import Callable, Hashable

from ..timerheap import TimerHeap

IDLE_WAKE = 1.0  # seconds: the longest wait, so ``running = False`` from a signal is seen soon


class Loop:
    def __init__(self, on_timer: Callable[[Hashable], None]) -> None:
        self.selector = selectors.DefaultSelector()
        self.timers = TimerHeap()
        self._on_timer = on_timer
        self.running = True

    def add_reader(self, sock, callback: Callable[[], None]) -> None:
        self.selector.register(sock, selectors.EVENT_READ, callback)

    def run(self) -> None:
        while self.running:
            for key in self.timers.pop_due(time.time()):
                self._on_timer(key)
            at = self.timers.next_at()
            timeout = IDLE_WAKE if at is None else max(0.0, min(IDLE_WAKE, at - time.time()))
            for key, _ in self.selector.select(timeout):
                key.data()
