"""An in-memory OpenFlow-like flow table that executes rendered flows: for testing forwarding
decisions without a switch (real OVS is tested in the lab)."""
from __future__ import annotations

import ipaddress
from typing import Iterable

from ryu_dmm.pipeline import Flow, Pipeline


def _matches(field: str, want, packet: dict) -> bool:
    have = packet.get(field)
    if have is None:
        return False
    if field in ("ipv6_src", "ipv6_dst"):
        return ipaddress.IPv6Address(have) in ipaddress.IPv6Network(want)
    return have == want


class FlowTable:
    def __init__(self, pipeline: Pipeline, flows: Iterable[Flow] = ()) -> None:
        self.pipeline = pipeline
        self.flows: set[Flow] = set()
        self.install(flows)

    def install(self, flows: Iterable[Flow]) -> None:
        self.flows.update(flows)

    def delete_cookie(self, cookie: int) -> None:
        self.flows = {f for f in self.flows if f.cookie != cookie}

    def process(self, packet: dict) -> list[tuple[str, object]]:
        """Actions applied to ``packet`` through the pipeline, starting at table 0; [] means dropped."""
        table = self.pipeline.tables[0].name
        actions: list[tuple[str, object]] = []
        for _ in range(len(self.pipeline.tables)):
            candidates = [f for f in self.flows if f.table == table and all(_matches(k, v, packet) for k, v in f.match)]
            if not candidates:
                return []  # table miss: drop
            best = max(candidates, key=lambda f: f.priority)
            actions += list(best.actions)
            if best.goto is None:
                return actions
            table = best.goto
        raise RuntimeError("pipeline loop")
