"""The CMD shell's group committer: the durability gate's batches written off the hub.

One greenthread takes a batch from the gate, runs ``store.write`` in a native thread
(``eventlet.tpool``: SQLite's fsync never blocks signalling; a backend whose IO is green, Redis,
is called on the hub) and hands the PBAs the commit
released back to the shell. While one batch is written the next one fills: that is the group
commit (docs/store.md). A failed write is staged again and retried after a pause; the PBAs it
holds keep waiting (their MAARs retransmit meanwhile, and are answered once it lands).
"""
from __future__ import annotations

import time
from typing import Callable

from eventlet import tpool

from .kicked import Kicked
from .runtime import hub
from .store import Batch, BindingStore, DurabilityGate

RETRY_PAUSE = 1.0  # seconds before a failed write is tried again


class StoreWriter:
    def __init__(self, store: BindingStore, gate: DurabilityGate, released: Callable[[list], None],
                 failed: Callable[[Exception], None]) -> None:
        self.store, self.gate = store, gate
        self._released, self._failed = released, failed
        self._loop = Kicked(self._drain, failed)
        self.commits = 0
        self.changes = 0
        self.last_commit_seconds = 0.0
        self.last_batch = 0

    def start(self) -> None:
        self._loop.start()

    def kick(self) -> None:
        """Something was staged: write it as soon as the batch being written (if any) is done."""
        self._loop.kick()

    def _drain(self) -> None:
        while True:
            batch = self.gate.take()
            if batch is None:
                return
            if not self._write(batch):
                hub.sleep(RETRY_PAUSE)

    def _write(self, batch: Batch) -> bool:
        started = time.monotonic()
        try:
            if getattr(self.store, "green", False):  # its IO is green already (Redis): stay on the hub
                self.store.write(batch)
            else:
                tpool.execute(self.store.write, batch)
        except Exception as exc:  # noqa: BLE001 - StoreError, or a bug: either way retried, never the loop
            self.gate.failed(batch)
            self._failed(exc)
            return False
        self.last_commit_seconds = time.monotonic() - started
        self.last_batch = len(batch)
        self.commits += 1
        self.changes += len(batch)
        self._released(self.gate.committed(batch))
        return True

    def stop(self, wait: float = 5.0) -> None:
        """Write what is staged (a clean stop loses nothing), then close the store."""
        deadline = time.monotonic() + wait
        while self._loop.busy and time.monotonic() < deadline:  # a write in its native thread: let it land
            hub.sleep(0.01)
        self._loop.stop()
        while (batch := self.gate.take()) is not None:
            try:
                self.store.write(batch)
            except Exception as exc:  # noqa: BLE001 - reported; the rest is lost only to this stop
                self._failed(exc)
                break
        self.store.close()

    def state(self) -> dict:
        return {"commits": self.commits, "changes_committed": self.changes,
                "last_commit_ms": round(self.last_commit_seconds * 1000, 3), "last_batch": self.last_batch,
                "pending_changes": self.gate.pending, "held_pbas": self.gate.held,
                "dropped_pbas": self.gate.dropped, "failed_writes": self.gate.failures}
