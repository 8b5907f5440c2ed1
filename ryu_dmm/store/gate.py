"""The durability rule as a sans-IO state machine: an accepted PBA leaves only once the binding
change it reports is committed.

The shell stages every ``Persist`` of the CMD core (and the few other things the store keeps),
hands the writer one coalesced batch at a time and reports each commit; a PBA about an MN with a
change not yet committed is held here and released by the commit that covers it. Group commit
falls out of this: whatever is staged while one batch is written goes in the next.
"""
from __future__ import annotations

from typing import Optional

from ..mobility.events import Send
from ..mobility.views import Record
from .base import Batch, PortKey

MAX_HELD = 65536  # PBAs waiting for a commit; one more is dropped (counted): its MAAR sends again


class DurabilityGate:
    def __init__(self, max_batch: int = 1000, max_held: int = MAX_HELD) -> None:
        self.max_batch, self.max_held = max_batch, max_held
        self._sessions: dict[str, Optional[Record]] = {}
        self._ports: dict[PortKey, Optional[int]] = {}
        self._meta: dict[str, str] = {}
        self._in_flight: dict[str, int] = {}  # MN -> generation of the batch carrying its latest change
        self._meta_in_flight: dict[str, int] = {}  # meta key -> generation of the batch carrying it
        self._held: dict[object, list[Send]] = {}  # MN ID, or ("meta", key) -> sends waiting for it
        self._held_count = 0
        self._generation = 0
        self.dropped = 0  # PBAs dropped because MAX_HELD were waiting
        self.failures = 0  # batches whose write failed (staged again)

    # ---- staging ----------------------------------------------------------------------------
    def stage(self, mn_id: str, record: Optional[Record]) -> None:
        self._sessions[mn_id] = record

    def stage_port(self, key: PortKey, port: Optional[int]) -> None:
        self._ports[key] = port

    def stage_meta(self, key: str, value: str) -> None:
        self._meta[key] = value

    @property
    def pending(self) -> int:
        """Changes staged or being written."""
        return (len(self._sessions) + len(self._ports) + len(self._meta) + len(self._in_flight)
                + len(self._meta_in_flight))

    def unsettled(self) -> set[str]:
        """MNs with a change staged or being written (a store re-read must not undo it)."""
        return set(self._sessions) | set(self._in_flight)

    @property
    def held(self) -> int:
        return self._held_count

    # ---- answers ----------------------------------------------------------------------------
    def must_wait(self, mn_id: str) -> bool:
        return mn_id in self._sessions or mn_id in self._in_flight

    def meta_must_wait(self, key: str) -> bool:
        return key in self._meta or key in self._meta_in_flight

    def hold(self, send: Send, meta: Optional[str] = None) -> bool:
        """Keep ``send`` until its commit: a PBA about an MN that ``must_wait``, or (``meta``) a
        message that must wait for that meta key (the CMD's PBUs for their sequence numbers'
        reservation). False if dropped (MAX_HELD are waiting)."""
        if self._held_count >= self.max_held:
            self.dropped += 1
            return False
        self._held.setdefault(send.msg.mn_id if meta is None else ("meta", meta), []).append(send)
        self._held_count += 1
        return True

    # ---- the writer's side ------------------------------------------------------------------
    def take(self) -> Optional[Batch]:
        """The next batch to write (at most ``max_batch`` changes), or None if nothing is staged."""
        if not (self._sessions or self._ports or self._meta):
            return None
        self._generation += 1
        sessions: dict[str, Optional[Record]] = {}
        while self._sessions and len(sessions) < self.max_batch:
            mn_id = next(iter(self._sessions))
            sessions[mn_id] = self._sessions.pop(mn_id)
            self._in_flight[mn_id] = self._generation
        ports, self._ports = self._ports, {}
        meta, self._meta = self._meta, {}
        for key in meta:
            self._meta_in_flight[key] = self._generation
        return Batch(self._generation, sessions, ports, meta)

    def committed(self, batch: Batch) -> list[Send]:
        """``batch`` is durable: the PBAs it was holding back, in the order they were held."""
        released: list[Send] = []
        for mn_id in batch.sessions:
            if self._in_flight.get(mn_id) == batch.generation:
                del self._in_flight[mn_id]
                if mn_id not in self._sessions:
                    released += self._release(mn_id)
        for key in batch.meta:
            if self._meta_in_flight.get(key) == batch.generation:
                del self._meta_in_flight[key]
                if key not in self._meta:
                    released += self._release(("meta", key))
        return released

    def _release(self, held: object) -> list[Send]:
        sends = self._held.pop(held, None)
        if not sends:
            return []
        self._held_count -= len(sends)
        return sends

    def failed(self, batch: Batch) -> None:
        """``batch`` was not written: stage it again under anything staged since (newer wins)."""
        self.failures += 1
        for mn_id, record in batch.sessions.items():
            if self._in_flight.get(mn_id) == batch.generation:
                del self._in_flight[mn_id]
                self._sessions.setdefault(mn_id, record)
        for key, port in batch.ports.items():
            self._ports.setdefault(key, port)
        for key, value in batch.meta.items():
            if self._meta_in_flight.get(key) == batch.generation:
                del self._meta_in_flight[key]
            self._meta.setdefault(key, value)
