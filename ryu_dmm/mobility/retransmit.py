"""Outstanding PBUs of one sender: sequence numbers, retransmission with back-off, rate limit.

RFC 5213 §6.9.4 / RFC 6275 §11.8: a PBU not acknowledged within INITIAL_BINDACK_TIMEOUT is sent
again with a fresh timestamp, the timeout doubling up to MAX_BINDACK_TIMEOUT; after ``max_tries``
transmissions the failure is returned to the caller. At most MAX_UPDATE_RATE PBUs a second go to one
peer about one MN (the RFC's limit is per mobile node; a per-peer cap would stall a MAAR that serves
thousands of MNs); a PBU over the limit is held until it may go.
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

    @property
    def key(self) -> RetxKey:
        return RetxKey(self.dst, self.seq)


class Retransmitter:
    def __init__(self, timers: Timers) -> None:
        self.timers = timers
        self.pending: dict[tuple[str, int], Outstanding] = {}
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

    def _send_times(self, key: tuple[str, str], now: float) -> tuple[float, ...]:
        if now - self._generation >= 1.0:
            self._older, self._recent = (self._recent if now - self._generation < 2.0 else {}), {}
            self._generation = now
        got = self._recent.get(key)
        return got if got is not None else self._older.get(key, ())

    def send(self, dst: str, mn_id: str, build: Builder, now: float,
             context: Any = None) -> tuple[list[Effect], Outstanding]:
        out = Outstanding(dst, self._next_seq(dst), mn_id, build, context)
        self.pending[(dst, out.seq)] = out
        return self._transmit(out, now), out

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
        return [Send(out.dst, out.build(out.seq, now)), SetTimer(out.key, now + out.timeout)]

    def acknowledge(self, dst: str, seq: int) -> Optional[Outstanding]:
        """The outstanding PBU a PBA from ``dst`` with ``seq`` answers, removed; None if none."""
        return self.pending.pop((dst, seq), None)

    def cancel(self, out: Outstanding) -> list[Effect]:
        self.pending.pop((out.dst, out.seq), None)
        return [CancelTimer(out.key)]

    def fire(self, key: RetxKey, now: float) -> tuple[list[Effect], Optional[Outstanding]]:
        """Send again, or give up and return the failed PBU."""
        out = self.pending.get((key.peer, key.seq))
        if out is None:
            return [], None
        if out.tries >= self.timers.max_tries:
            del self.pending[(out.dst, out.seq)]
            return [], out
        return self._transmit(out, now), None
