"""A greenthread that drains a queue whenever it is kicked: the store writers' loop (StoreWriter,
SharedWriter). A kick during a run needs no wake-up: the run drains until nothing is left."""
from __future__ import annotations

from typing import Callable

from .runtime import hub


class Kicked:
    def __init__(self, drain: Callable[[], None], failed: Callable[[Exception], None]) -> None:
        self._drain, self._failed = drain, failed
        self._wake = hub.Event()
        self._thread = None
        self.busy = False

    def start(self) -> None:
        self._thread = hub.spawn(self._run)

    def kick(self) -> None:
        if not self.busy:
            self._wake.set()

    def stop(self) -> None:
        if self._thread is not None:
            hub.kill(self._thread)
            self._thread = None

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            self.busy = True
            try:
                self._drain()
            except Exception as exc:  # noqa: BLE001 - a bug costs a report, never the writer
                self._failed(exc)
            finally:
                self.busy = False
