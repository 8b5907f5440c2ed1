"""The in-memory backend: nothing survives a restart. For benchmarks (the baseline the SQLite
figures are compared with) and throw-away labs."""
from __future__ import annotations

import time

from .base import Batch, Loaded


def fresh_counter() -> int:
    """A restart counter for bindings that were just lost: new at every such start (RFC 5847 only
    asks that it changes), from the clock so that no state is needed to make it."""
    return int(time.time()) & 0xFFFFFFFF


class MemoryStore:
    backend = "memory"

    def load(self) -> Loaded:
        return Loaded([], {}, {}, fresh_counter(), True)

    def write(self, batch: Batch) -> None:
        pass  # nothing kept: a restart starts empty with a new restart counter

    def close(self) -> None:
        pass

    def describe(self) -> dict:
        return {"backend": self.backend}
