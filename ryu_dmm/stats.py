"""Counters the CMD exposes at /dmm/v1/stats: messages by kind and status, handovers, latencies."""
from __future__ import annotations

from collections import Counter, deque
from typing import Iterable

from .mobility.events import Report, ReportKind
from .wire import BindingAck, BindingUpdate, Message, Status


def _status_name(code: int) -> str:
    try:
        return Status(code).name
    except ValueError:
        return str(code)


class Stats:
    def __init__(self, mode: str, window: int = 10_000) -> None:
        self.mode = mode
        self.counters: Counter = Counter()
        self.reports: Counter = Counter()
        self.latencies: deque = deque(maxlen=window)  # the last handovers' durations, seconds
        self.flow_latencies: deque = deque(maxlen=window)  # flows pushed -> every barrier answered

    def received(self, msg: Message) -> None:
        if type(msg) is BindingUpdate:
            self.counters["pbu_received"] += 1
        else:
            self.counters[f"pba_received.{_status_name(msg.status)}"] += 1

    def sent(self, msg: Message) -> None:
        if type(msg) is BindingAck:
            self.counters[f"pba_sent.{_status_name(msg.status)}"] += 1
        else:
            self.counters["pbu_sent"] += 1

    def count(self, key: str) -> None:
        self.counters[key] += 1

    def flow_latency(self, seconds: float) -> None:
        self.flow_latencies.append(seconds)

    def reported(self, reports: Iterable[Report]) -> None:
        for r in reports:
            self.reports[r.kind.value] += 1
            if r.kind is ReportKind.HANDOVER and r.duration is not None:
                self.latencies.append(r.duration)

    def as_dict(self) -> dict:
        return {
            "messages": dict(sorted(self.counters.items())),
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
