"""Counters the CMD exposes at /dmm/v1/stats and as Prometheus metrics (``metrics.py``): messages by
kind (PBU, PBA, Heartbeat), peer and status, handovers, latencies (windows for percentiles, histograms for Prometheus).

Per message the hot path pays one dict increment keyed by (kind, peer, status code); names and
totals are built when someone reads (``as_dict``, ``snapshot``). A peer that is not one of the
domain's MAARs is counted as ``OTHER``, so a flood from many addresses cannot grow the table.
The MAAR agent counts its own messages with the same class (its peers: the CMD and the MAARs).
"""
from __future__ import annotations

from bisect import bisect_left
from collections import Counter, deque
from typing import Iterable

from .mobility.events import Report, ReportKind
from .wire import BindingAck, BindingUpdate, Heartbeat, Message, Status

OTHER = "other"  # the peer of a message from or to an address that is not a known peer
# Seconds: the upper bounds of the latency histograms' buckets (flows confirmed by barrier: ms;
# handovers that wait for P-MAARs: up to the retransmission and aggregation timers, seconds).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def status_name(code: int) -> str:
    try:
        return Status(code).name
    except ValueError:
        return str(code)



# Message kinds counted without a status (a PBA's status is part of its key).
_RECEIVED = {BindingUpdate: "pbu_received", Heartbeat: "heartbeat_received"}
_SENT = {BindingUpdate: "pbu_sent", Heartbeat: "heartbeat_sent"}


class Histogram:
    """Counts of observed values per bucket (upper bounds ``bounds``, plus +Inf), their sum and
    count: what a Prometheus histogram exposes. ``observe`` costs one bisection."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Iterable[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        if list(self.bounds) != sorted(set(self.bounds)):
            raise ValueError("histogram bounds must be strictly increasing")
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # the first bucket whose bound is >= value
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations <= it) per bucket, the last one's bound ``inf``."""
        out, total = [], 0
        for bound, n in zip(self.bounds + (float("inf"),), self.counts):
            total += n
            out.append((bound, total))
        return out


class Stats:
    def __init__(self, mode: str, window: int = 10_000, peers: Iterable[str] = ()) -> None:
        self.mode = mode
        self.peers = frozenset(peers)  # addresses counted under their own name; others as OTHER
        self.counters: Counter = Counter()
        self.messages: Counter = Counter()  # (kind, peer, status code or None) -> messages
        self.noted: Counter = Counter()  # (flow mirror note, MAAR) -> notes
        self.reports: Counter = Counter()
        self.latencies: deque = deque(maxlen=window)  # the last handovers' durations, seconds
        self.flow_latencies: deque = deque(maxlen=window)  # flows pushed -> every barrier answered
        self.handover_seconds = Histogram()  # every completed handover since start
        self.flows_confirmed_seconds = Histogram()

    def _peer(self, peer: str) -> str:
        return peer if peer in self.peers else OTHER

    def received(self, msg: Message, peer: str = OTHER) -> None:
        p = peer if peer in self.peers else OTHER
        kind = type(msg)
        if kind is BindingAck:
            self.messages["pba_received", p, msg.status] += 1
        else:
            self.messages[_RECEIVED[kind], p, None] += 1

    def sent(self, msg: Message, peer: str = OTHER) -> None:
        p = peer if peer in self.peers else OTHER
        kind = type(msg)
        if kind is BindingAck:
            self.messages["pba_sent", p, msg.status] += 1
        else:
            self.messages[_SENT[kind], p, None] += 1

    def count(self, key: str) -> None:
        self.counters[key] += 1

    def note(self, kind: str, maar: str) -> None:
        """One of the flow mirror's notes (``NoteKind`` value) about ``maar``'s switch."""
        self.noted[kind, self._peer(maar)] += 1

    def flow_latency(self, seconds: float) -> None:
        self.flow_latencies.append(seconds)
        self.flows_confirmed_seconds.observe(seconds)

    def reported(self, reports: Iterable[Report]) -> None:
        for r in reports:
            self.reports[r.kind.value] += 1
            if r.kind is ReportKind.HANDOVER and r.duration is not None:
                self.latencies.append(r.duration)
                self.handover_seconds.observe(r.duration)

    def totals(self) -> Counter:
        """Every counter by its flat name (``pbu_received``, ``pba_sent.ACCEPTED``, a note's kind,
        ``decode_error.<reason>``, ...): summed over peers and MAARs."""
        out = Counter(self.counters)
        for (kind, _, status), n in self.messages.items():
            out[kind if status is None else f"{kind}.{status_name(status)}"] += n
        for (kind, _), n in self.noted.items():
            out[kind] += n
        return out

    def snapshot(self) -> dict:
        """Copies of the raw counts (for metrics): nothing here changes when the Stats do."""
        return {"mode": self.mode, "counters": dict(self.counters), "messages": dict(self.messages),
                "noted": dict(self.noted), "reports": dict(self.reports),
                "handover_seconds": self.handover_seconds.cumulative(),
                "handover_seconds_sum": self.handover_seconds.sum,
                "flows_confirmed_seconds": self.flows_confirmed_seconds.cumulative(),
                "flows_confirmed_seconds_sum": self.flows_confirmed_seconds.sum}

    def as_dict(self) -> dict:
        return {
            "messages": dict(sorted(self.totals().items())),
            "events": dict(sorted(self.reports.items())),
            "handovers": {self.mode: self.reports.get("handover", 0)},
            "handover_latency_ms": _percentiles(self.latencies),
            "flows_confirmed_ms": _percentiles(self.flow_latencies),
        }


def _percentiles(values: Iterable[float]) -> dict:
    lat = sorted(values)

    def pct(p: float):
        return round(lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1000, 3) if lat else None
    return {"count": len(lat), "p50": pct(50), "p90": pct(90), "p99": pct(99),
            "max": round(lat[-1] * 1000, 3) if lat else None}
