"""An in-process network with a virtual clock, wiring one CMD core and several MAAR cores.

Every message crosses the real codec (encode, then decode). Loss, duplication and reordering are
drawn from a seeded RNG. ``skew`` gives a node's clock offset: the node sees true time plus its
skew (events, timers and timestamps), the queue runs on true time. Timers follow the cores'
SetTimer/CancelTimer effects (a SetTimer with a key already set replaces it), as the real shells do.

With ``switches=True`` the CMD's effects also pass through the real ``FlowMirror``, as in the Ryu
shell, and its OpenFlow work goes through ``ofsync`` into one ``FakeSwitch`` per MAAR: the real
OpenFlow 1.3 messages, serialized and parsed back. Barrier replies can be lost or late
(``barrier_loss``, ``of_jitter``), switches can be away for a while (``disconnect_switch``,
``connect_switch``), and an MN's attachment
reaches the mirror as the packet-in of its Router Solicitation would.

``flow_control="maar"`` (with ``switches``): each MAAR's effects pass through a flow mirror of its
own (``local``), which drives that MAAR's switch, as the agent does (docs/flow-control.md); the
CMD's mirror drives none.
"""
from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field
from typing import Optional

from ryu_dmm import ofsync, pipeline
from ryu_dmm.flowmirror import (
    ApplyDiff, BarrierReplied, CoreOutput, FlowMirror, FlowStatsReplied, MirrorKey, PortLearnt, ReplaceFlows,
    RequestFlowStats, Switch, SwitchDown, SwitchUp,
)
from ryu_dmm.mobility.cmd import CmdCore
from ryu_dmm.mobility.config import Domain, MaarInfo, Mode
from ryu_dmm.mobility.events import (
    Advertise, AnchorIdle, Attach, CancelTimer, DataPlaneChanged, Detach, Received, Report, Send, SetTimer, TimerFired,
)
from ryu_dmm.mobility.maar import MaarCore
from ryu_dmm.wire import Prefix, decode, encode

START = 1_700_000_000.0
CMD = "2001:db8:ff::100"
PORTS = pipeline.SwitchPorts(core=100, tunnel=101, agent=102, access=tuple(range(1, 9)))
GATEWAY_MAC = bytes.fromhex("02000000ffff")
TUNNEL_KEY = 0x444D4D


# The modes of RFC 8885 proper: legacy mode (one MAAR as LMA) has scenarios of its own.
DMM_MODES = (Mode.RELAY, Mode.LOCATOR, Mode.PROXY)


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
    switches: bool = False
    of_latency: float = 0.001
    of_jitter: float = 0.0
    barrier_loss: float = 0.0
    flow_control: str = "cmd"

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.cmd = CmdCore(self.domain)
        own = self.switches and self.flow_control == "maar"
        self.mirror = FlowMirror(pipeline.load(), self._switch_config() if self.switches and not own else {},
                                 anchor_idle_timeout=self.domain.timers.anchor_idle_timeout)
        # flow_control = maar: MAAR address -> the mirror its agent runs for its own switch
        self.mirrors = {a: FlowMirror(self.mirror.pipeline, {a: sw}, local=a)
                        for a, sw in self._switch_config().items()} if own else {}
        self.fake = {}  # MAAR address -> FakeSwitch
        self._dp = {}  # MAAR address -> its current FakeDatapath
        self.maars = {m.name: MaarCore(self.domain, m.name) for m in self.domain.maars}
        self.nodes = {self.domain.cmd_address: self.cmd} | {m.address: m for m in self.maars.values()}
        self.name = {self.domain.cmd_address: "cmd"} | {m.address: m.name for m in self.domain.maars}
        self._queue: list = []
        self._count = itertools.count()
        self._timers: dict = {}
        if self.switches:
            from tests.fakeswitch import FakeSwitch
            for i, m in enumerate(self.domain.maars, 1):
                self.fake[m.address] = FakeSwitch(dpid=i, stats_per_reply=5)
                self.connect_switch(m.address)

    def _switch_config(self) -> dict:
        dlif = {m.address: m.mac for m in self.domain.maars}
        return {m.address: Switch(PORTS, pipeline.MaarView(m.mac, GATEWAY_MAC, TUNNEL_KEY, dlif))
                for m in self.domain.maars}

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
        addr = self.maars[maar].address
        self.inject(addr, Attach(mn, mac, port))
        if self.switches and not self.mirrors:  # the RS also reaches the CMD as a packet-in, before or after the PBU
            self._push(self.now + self.of_latency + self.rng.random() * self.of_jitter, "mirror",
                       PortLearnt(addr, mac, port))

    # ---- switches -----------------------------------------------------------------------------
    def connect_switch(self, maar: str) -> None:
        self._dp[maar] = self.fake[maar].connect()
        self._mirror(SwitchUp(maar), maar)

    def disconnect_switch(self, maar: str, clear_flows: bool) -> None:
        """The switch's controller connection drops (with an ovs-vswitchd restart: ``clear_flows``)."""
        self._dp.pop(maar)
        self.fake[maar].disconnect(clear_flows=clear_flows)
        self._mirror(SwitchDown(maar), maar)

    def _mirror(self, event, about: Optional[str] = None) -> None:
        """``event`` to the mirror driving switch ``about`` (the CMD's unless MAARs drive their own)."""
        owner = about if about in self.mirrors else self.domain.cmd_address
        mirror = self.mirrors.get(owner, self.mirror)
        self._apply(owner, mirror.handle(event, self.clock(owner)), mirrored=True)

    def _openflow(self, effect) -> None:
        """Send the effect's bytes on the switch's connection, as the Ryu shell does (ofwire's struct
        encoding, one write per effect); schedule the switch's replies."""
        dp = self._dp[effect.maar]
        dp.send(ofsync.encode(self.mirror.pipeline, effect))
        for reply in dp.replies():
            if type(reply).__name__ == "OFPBarrierReply" and self.rng.random() < self.barrier_loss:
                continue
            self._push(self.now + self.of_latency + self.rng.random() * self.of_jitter, "of", effect.maar, dp, reply)

    def _of_reply(self, maar: str, dp, reply) -> None:
        if self._dp.get(maar) is not dp:
            return  # that connection is gone, and its replies with it
        if type(reply).__name__ == "OFPBarrierReply":
            self._mirror(BarrierReplied(maar, reply.xid), maar)
        else:
            more = bool(reply.flags & dp.ofproto.OFPMPF_REPLY_MORE)
            self._mirror(FlowStatsReplied(maar, reply.xid, ofsync.installed(reply.body), more), maar)

    def forward(self, maar: str, packet: dict):
        return self.fake[self.maars[maar].address].forward(packet)

    def carry(self, maar: str, packet: dict, hops: int = 3) -> list[tuple[str, object]]:
        """A data packet entering ``maar``'s switch, followed through the tunnels it is put in (into
        the switch of the MAAR named by ``tun_ipv6_dst``, in on the tunnel port): where it leaves,
        as (MAAR name, port); the switches count its packets on the way."""
        by_address = {m.address: m.name for m in self.domain.maars}
        out = []
        for port, fields in self.forward(maar, packet).sent:
            fields = dict(fields)
            if port == PORTS.tunnel and hops and fields.get("tun_ipv6_dst") in by_address:
                inner = {k: fields[k] for k in ("eth_type", "ipv6_src", "ipv6_dst")}
                inner |= {"in_port": PORTS.tunnel, "tunnel_id": fields["tunnel_id"]}
                out += self.carry(by_address[fields["tun_ipv6_dst"]], inner, hops - 1)
            else:
                out.append((maar, port))
        return out

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
            elif kind == "mirror":
                self._mirror(payload[0])
            elif kind == "of":
                self._of_reply(*payload)
            else:
                addr, key, token = payload
                if self._timers.get((addr, key)) == token:
                    del self._timers[(addr, key)]
                    if type(key) is MirrorKey:
                        self._mirror(TimerFired(key), addr)
                    elif addr in self.nodes:  # a node taken away (crashed) has no timers
                        self._apply(addr, self.nodes[addr].handle(TimerFired(key), self.clock(addr, at)))
        self.now = max(self.now, end)

    def _apply(self, addr: str, effects, mirrored: bool = False) -> None:
        if addr == self.domain.cmd_address and not mirrored:  # as the Ryu shell: core -> mirror -> I/O
            effects = self.mirror.handle(CoreOutput(tuple(effects)), self.clock(addr))
        elif addr in self.mirrors and not mirrored:  # as the agent with flow_control = maar
            effects = self.mirrors[addr].handle(CoreOutput(tuple(effects)), self.clock(addr))
        for e in effects:
            kind = type(e)
            if kind in (ReplaceFlows, ApplyDiff, RequestFlowStats):
                self._openflow(e)
            elif kind is Send:
                self._send(addr, e.dst, encode(e.msg))
            elif kind is SetTimer:
                token = next(self._count)
                self._timers[(addr, e.key)] = token
                self._push(max(e.at - self.skew.get(addr, 0.0), self.now), "timer", addr, e.key, token)
            elif kind is CancelTimer:
                self._timers.pop((addr, e.key), None)
            elif kind is AnchorIdle:  # as the Ryu shell: the mirror's verdict goes to the CMD core
                self._apply(addr, self.cmd.handle(e, self.clock(addr)))
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
