"""Outstanding PBUs of one sender: sequence numbers, retransmission with back-off, rate limit.

RFC 5213 §6.9.4 / RFC 6275 §11.8: a PBU not acknowledged within INITIAL_BINDACK_TIMEOUT is sent
again with a fresh timestamp, the timeout doubling up to MAX_BINDACK_TIMEOUT; after ``max_tries``
transmissions the failure is returned to the caller. At most MAX_UPDATE_RATE PBUs a second go to one
peer about one MN (the RFC's limit is per mobile node; a per-peer cap would stall a MAAR that serves
thousands of MNs); a PBU over the limit is held until it may go. Everything here is bounded (see
``Retransmitter``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from ..wire import BindingUpdate
from .config import Timers
from .events import CancelTimer, Effect, RetxKey, Send, SetTimer

Builder = Callable[[int, float], BindingUpdate]  # (sequence, now) -> PBU with a fresh timestamp


@dataclass(slots=True)
class Outstanding:
    dst: str
    seq: int
    mn_id: str
    build: Builder
    context: Any
    tries: int = 0
    timeout: float = 0.0
    final: bool = False  # the copy in flight is the last: when its timer fires, give up
    sent: Optional[BindingUpdate] = None  # the copy sent last, for checking a PBA's echo

    @property
    def key(self) -> RetxKey:
        return RetxKey(self.dst, self.seq)


class Retransmitter:
    """Every PBU of one sender that awaits its PBA.

    Bounded: at most ``timers.max_outstanding`` PBUs per peer await an answer (a sequence number is
    never reused while in flight, so the bound also keeps ``_next_seq`` finite); sending one more to
    a full peer evicts that peer's oldest, which ``send`` returns as failed, as if it had timed out.
    The rate-limit memory holds send times of the last one to two seconds in two generations of at
    most ``timers.max_outstanding`` keys each; a full generation starts the next one early (the rate
    limit then forgets the oldest generation sooner: it errs towards sending).
    """

    def __init__(self, timers: Timers) -> None:
        self.timers = timers
        self.pending: dict[tuple[str, int], Outstanding] = {}
        self._of_peer: dict[str, dict[int, Outstanding]] = {}  # oldest first
        self._of_mn: dict[tuple[str, str], dict[int, Outstanding]] = {}
        self._seq: dict[str, int] = {}
        # Send times per (peer, MN) over the last one to two seconds, in two generations.
        self._recent: dict[tuple[str, str], tuple[float, ...]] = {}
        self._older: dict[tuple[str, str], tuple[float, ...]] = {}
        self._generation = 0.0

    def _next_seq(self, dst: str) -> int:
        seq = (self._seq.get(dst, -1) + 1) & 0xFFFF
        while (dst, seq) in self.pending:  # never reuse a number still in flight
            seq = (seq + 1) & 0xFFFF
        self._seq[dst] = seq
        return seq

    def start_at(self, dst: str, seq: int) -> None:
        """The next PBU to ``dst`` gets ``seq`` (the CMD after a restart: see PersistMeta)."""
        self._seq[dst] = (seq - 1) & 0xFFFF

    def carry_seq(self, old: str, new: str) -> None:
        """PBUs to ``new`` go on from the numbers used with ``old`` (a MAAR moving to another CMD,
        which may share the old one's bindings): the next is after the later of the two."""
        a, b = self._seq.get(old), self._seq.get(new)
        if a is not None and (b is None or (a - b) & 0xFFFF < 0x8000):  # a is b or later (16-bit serial)
            self._seq[new] = a

    def _send_times(self, key: tuple[str, str], now: float) -> tuple[float, ...]:
        if now - self._generation >= 1.0 or len(self._recent) >= self.timers.max_outstanding:
            self._older, self._recent = (self._recent if now - self._generation < 2.0 else {}), {}
            self._generation = now
        got = self._recent.get(key)
        return got if got is not None else self._older.get(key, ())

    def outstanding(self, dst: str, mn_id: str) -> list[Outstanding]:
        """The PBUs about ``mn_id`` that await an answer from ``dst``, oldest first."""
        return list(self._of_mn.get((dst, mn_id), {}).values())

    def count(self, dst: str) -> int:
        return len(self._of_peer.get(dst, ()))

    def _add(self, out: Outstanding) -> None:
        self.pending[(out.dst, out.seq)] = out
        self._of_peer.setdefault(out.dst, {})[out.seq] = out
        self._of_mn.setdefault((out.dst, out.mn_id), {})[out.seq] = out

    def _drop(self, dst: str, seq: int) -> Optional[Outstanding]:
        out = self.pending.pop((dst, seq), None)
        if out is not None:
            for index, key in ((self._of_peer, dst), (self._of_mn, (dst, out.mn_id))):
                group = index[key]
                del group[seq]
                if not group:
                    del index[key]
        return out

    def send(self, dst: str, mn_id: str, build: Builder, now: float,
             context: Any = None) -> tuple[list[Effect], Outstanding, Optional[Outstanding]]:
        """Send a new PBU. Returns its effects, its record, and the PBU evicted to make room (the
        peer's oldest, to be handled as a failure) or None."""
        effects: list[Effect] = []
        evicted = None
        peer = self._of_peer.get(dst)
        if peer is not None and len(peer) >= self.timers.max_outstanding:
            evicted = self._drop(dst, next(iter(peer)))
            effects.append(CancelTimer(evicted.key))
        out = Outstanding(dst, self._next_seq(dst), mn_id, build, context)
        self._add(out)
        return effects + self._transmit(out, now), out, evicted

    def _transmit(self, out: Outstanding, now: float) -> list[Effect]:
        key = (out.dst, out.mn_id)
        times = self._send_times(key, now)
        limit = self.timers.max_update_rate
        if len(times) >= limit and now - times[-limit] < 1.0:
            return [SetTimer(out.key, times[-limit] + 1.0)]  # held back by the rate limit
        self._recent[key] = (times + (now,))[-limit:]
        out.tries += 1
        out.timeout = (self.timers.initial_bindack_timeout if out.tries == 1
                       else min(out.timeout * 2, self.timers.max_bindack_timeout))
        out.sent = out.build(out.seq, now)
        return [Send(out.dst, out.sent), SetTimer(out.key, now + out.timeout)]

    def acknowledge(self, dst: str, seq: int) -> Optional[Outstanding]:
        """The outstanding PBU a PBA from ``dst`` with ``seq`` answers, removed; None if none."""
        return self._drop(dst, seq)

    def cancel(self, out: Outstanding) -> list[Effect]:
        if self.pending.get((out.dst, out.seq)) is out:
            self._drop(out.dst, out.seq)
        return [CancelTimer(out.key)]

    def fire(self, key: RetxKey, now: float) -> tuple[list[Effect], Optional[Outstanding]]:
        """Send again, or give up and return the failed PBU."""
        out = self.pending.get((key.peer, key.seq))
        if out is None:
            return [], None
        if out.tries >= self.timers.max_tries or out.final:
            self._drop(out.dst, out.seq)
            return [], out
        return self._transmit(out, now), None
