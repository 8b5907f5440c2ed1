"""A small select loop driving the shared timer heap: enough for one MAAR's signalling.

Every callback, a socket's or a timer's, runs under a guard: an exception it raises goes to
``on_error(where, exc)`` and the loop carries on with the next one (one bad message costs the agent
one counter and one log line, never the loop). Only ``BaseException``s that are not ``Exception``s
(``KeyboardInterrupt``, ``SystemExit``) end it.
"""
from __future__ import annotations

import selectors
import sys
import time
from typing import Callable, Hashable, Optional

from ..timerheap import TimerHeap

IDLE_WAKE = 1.0  # seconds: the longest wait, so ``running = False`` from a signal is seen soon

ErrorHook = Callable[[str, BaseException], None]


def _print_error(where: str, exc: BaseException) -> None:
    print(f"agent loop: {where}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)


class Loop:
    def __init__(self, on_timer: Callable[[Hashable], None], on_error: Optional[ErrorHook] = None) -> None:
        self.selector = selectors.DefaultSelector()
        self.timers = TimerHeap()
        self._on_timer = on_timer
        self.on_error: ErrorHook = on_error or _print_error
        self.running = True

    def add_reader(self, sock, callback: Callable[[], None], name: str = "reader") -> None:
        self.selector.register(sock, selectors.EVENT_READ, (name, callback))

    def remove_reader(self, sock) -> None:
        try:
            self.selector.unregister(sock)
        except (KeyError, ValueError):
            pass

    def _guard(self, where: str, fn, *args) -> None:
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - the loop must outlive any one callback
            try:
                self.on_error(where, exc)
            except Exception as again:  # noqa: BLE001 - nor may the error hook end it
                _print_error(f"{where} (error hook failed: {again!r})", exc)

    def run_once(self, max_wait: float = IDLE_WAKE) -> None:
        """Fire the due timers, then wait at most until the next deadline (or ``max_wait``) for
        readable sockets and serve each once."""
        for key in self.timers.pop_due(time.time()):
            self._guard("timer", self._on_timer, key)
        at = self.timers.next_at()
        timeout = max_wait if at is None else max(0.0, min(max_wait, at - time.time()))
        for key, _ in self.selector.select(timeout):
            name, callback = key.data
            self._guard(name, callback)

    def run(self) -> None:
        while self.running:
            self.run_once()
