"""What every binding-store backend offers. Blocking calls: the CMD shell runs ``write`` off the
hub (a native thread) and ``load`` before it serves; the CMD core never sees a store.

A networked backend (Redis, issue 10) implements the same three calls; nothing else changes.
"""
from __future__ import annotations

import contextlib
import gc
from dataclasses import dataclass, field
from typing import Optional, Protocol

from ..mobility.views import Record

PortKey = tuple[str, bytes]  # (serving MAAR, MN MAC): the access port the flow mirror learnt


class StoreError(Exception):
    """The store cannot be used; the message says what and where, for an operator. ``kind``:
    ``corrupt`` (not a store, damaged, or holding values that cannot be), ``in_use`` (another
    process holds it), ``schema`` (written by another version), ``io`` (cannot be opened or
    written). Only a corrupt file may be moved aside (``[store] on_corrupt``)."""

    def __init__(self, message: str, kind: str = "io") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Batch:
    """One group commit: every change staged since the previous one, coalesced per key (the latest
    wins). ``None`` deletes."""

    generation: int
    sessions: dict[str, Optional[Record]] = field(default_factory=dict)
    ports: dict[PortKey, Optional[int]] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.sessions) + len(self.ports) + len(self.meta)


@dataclass(frozen=True)
class Loaded:
    """What a store held at start-up. ``restart_counter``: RFC 5847's, which changes only when the
    bindings were lost (a new or emptied store)."""

    sessions: list[Record]
    ports: dict[PortKey, int]
    meta: dict[str, str]
    restart_counter: int
    fresh: bool  # nothing was stored before (a new file, or the memory backend)


class BindingStore(Protocol):
    backend: str

    def load(self) -> Loaded:
        """Open (creating if needed) and read everything; raises ``StoreError``."""

    def write(self, batch: Batch) -> None:
        """Apply one batch atomically and durably (all of it or none); raises ``StoreError``."""

    def close(self) -> None: ...

    def describe(self) -> dict:
        """Backend and location, for stats."""


@contextlib.contextmanager
def long_lived():
    """Build many objects that will live on (a restart's sessions) with the cyclic garbage collector
    paused, then put them out of its sight (``gc.freeze``). Otherwise the collections their growth
    triggers scan them again and again (half of a restart's time at 300k sessions), and the first
    collection after a paused build scans them all at once (2.3 s at 300k). Frozen objects are still
    freed when their last reference goes; only a reference cycle among them is never collected."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
