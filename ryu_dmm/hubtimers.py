"""Timers of a core on Ryu's eventlet hub: SetTimer/CancelTimer effects to greenthreads."""
from __future__ import annotations

import time
from typing import Callable, Hashable

from ryu.lib import hub


class HubTimers:
    def __init__(self, fire: Callable[[Hashable], None]) -> None:
        self._fire = fire
        self._timers: dict = {}

    def set(self, key: Hashable, at: float) -> None:
        self.cancel(key)
        self._timers[key] = hub.spawn_after(max(0.0, at - time.time()), self._run, key)

    def cancel(self, key: Hashable) -> None:
        thread = self._timers.pop(key, None)
        if thread is not None:
            thread.cancel()

    def _run(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self._fire(key)

    def __len__(self) -> int:
        return len(self._timers)
