"""An in-process network with a virtual clock, wiring one CMD core and several MAAR cores.

Every message crosses the real codec (encode, then decode). Loss, duplication and reordering are
drawn from a seeded RNG. ``skew`` gives a node's clock offset: the node sees true time plus its
skew (events, timers and timestamps), the queue runs on true time. Timers follow the cores' SetTimer/CancelTimer effects (a SetTimer with a
key already set replaces it), as the real shells do.
"""
from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field
from typing import Optional

from ryu_dmm.mobility.cmd import CmdCore
from ryu_dmm.mobility.config import Domain, MaarInfo
from ryu_dmm.mobility.events import (
    Advertise, Attach, CancelTimer, DataPlaneChanged, Detach, Received, Report, Send, SetTimer, TimerFired,
)
from ryu_dmm.mobility.maar import MaarCore
from ryu_dmm.wire import Prefix, decode, encode

START = 1_700_000_000.0
CMD = "2001:db8:ff::100"


def domain(n_maars: int = 3, **kw) -> Domain:
    maars = tuple(MaarInfo(f"maar{i}", f"2001:db8:ff::{i}", Prefix.parse(f"2001:db8:{i}::/48"))
                  for i in range(1, n_maars + 1))
    return Domain(CMD, maars, **kw)


@dataclass
class Delivered:
    at: float
    src: str
    dst: str
    msg: object


@dataclass
class Net:
    domain: Domain
    latency: float = 0.002
    loss: float = 0.0
    dup: float = 0.0
    jitter: float = 0.0
    seed: int = 0
    skew: dict = field(default_factory=dict)  # node address -> seconds its clock is ahead of the true time
    now: float = START
    log: list = field(default_factory=list)
    reports: list = field(default_factory=list)
    dataplane: dict = field(default_factory=dict)  # (maar name, mn) -> MnDataPlane
    adverts: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.cmd = CmdCore(self.domain)
        self.maars = {m.name: MaarCore(self.domain, m.name) for m in self.domain.maars}
        self.nodes = {self.domain.cmd_address: self.cmd} | {m.address: m for m in self.maars.values()}
        self.name = {self.domain.cmd_address: "cmd"} | {m.address: m.name for m in self.domain.maars}
        self._queue: list = []
        self._count = itertools.count()
        self._timers: dict = {}

    # ---- driving ------------------------------------------------------------------------------
    def _push(self, at: float, kind: str, *payload) -> None:
        heapq.heappush(self._queue, (at, next(self._count), kind, payload))

    def clock(self, addr: str, at: Optional[float] = None) -> float:
        """What ``addr``'s clock reads at true time ``at`` (now by default)."""
        return (self.now if at is None else at) + self.skew.get(addr, 0.0)

    def inject(self, addr: str, event) -> None:
        self._apply(addr, self.nodes[addr].handle(event, self.clock(addr)))

    def attach(self, maar: str, mn: str, port: int = 1) -> None:
        mac = bytes((2, 0, 0, 0, 0, int(mn.strip("mn") or 0) & 0xFF))
        self.inject(self.maars[maar].address, Attach(mn, mac, port))

    def detach(self, maar: str, mn: str) -> None:
        self.inject(self.maars[maar].address, Detach(mn))

    def run(self, duration: float, max_steps: int = 1_000_000) -> None:
        end = self.now + duration
        for _ in range(max_steps):
            if not self._queue or self._queue[0][0] > end:
                break
            at, _, kind, payload = heapq.heappop(self._queue)
            self.now = at
            if kind == "msg":
                src, dst, raw = payload
                msg = decode(raw)
                self.log.append(Delivered(at, src, dst, msg))
                node = self.nodes.get(dst)
                if node is not None:
                    self._apply(dst, node.handle(Received(src, msg), self.clock(dst, at)))
            else:
                addr, key, token = payload
                if self._timers.get((addr, key)) == token:
                    del self._timers[(addr, key)]
                    if addr in self.nodes:  # a node taken away (crashed) has no timers
                        self._apply(addr, self.nodes[addr].handle(TimerFired(key), self.clock(addr, at)))
        self.now = max(self.now, end)

    def _apply(self, addr: str, effects) -> None:
        for e in effects:
            kind = type(e)
            if kind is Send:
                self._send(addr, e.dst, encode(e.msg))
            elif kind is SetTimer:
                token = next(self._count)
                self._timers[(addr, e.key)] = token
                self._push(max(e.at - self.skew.get(addr, 0.0), self.now), "timer", addr, e.key, token)
            elif kind is CancelTimer:
                self._timers.pop((addr, e.key), None)
            elif kind is DataPlaneChanged:
                self.dataplane[(self.name[addr], e.mn_id)] = e.state
            elif kind is Advertise:
                self.adverts.append((self.now, self.name[addr], e))
            elif kind is Report:
                self.reports.append((self.now, self.name[addr], e))

    def _send(self, src: str, dst: str, raw: bytes) -> None:
        if self.rng.random() < self.loss:
            return
        copies = 2 if self.rng.random() < self.dup else 1
        for _ in range(copies):
            delay = self.latency + self.rng.random() * self.jitter
            self._push(self.now + delay, "msg", src, dst, raw)

    # ---- looking -----------------------------------------------------------------------------
    def messages(self, since: int = 0) -> list[tuple[str, str, str]]:
        """(src name, dst name, kind) of delivered messages, kind being PBU/PBA plus '*' when the
        message carries an RFC 8885 option (Serving MAAR or Previous MAAR)."""
        out = []
        for d in self.log[since:]:
            kind = "PBU" if type(d.msg).__name__ == "BindingUpdate" else "PBA"
            star = "*" if d.msg.serving_maar or d.msg.previous_maars else ""
            out.append((self.name.get(d.src, d.src), self.name.get(d.dst, d.dst), kind + star))
        return out

    def reports_of(self, kind: str, node: Optional[str] = None) -> list:
        return [r for _, n, r in self.reports if r.kind == kind and (node is None or n == node)]
