"""Pipeline as data: load ``openflow_pipelines/dmm_edge.toml`` and render flows from a MAAR's state.

Rendering is pure and idempotent: the same data-plane state always gives the same set of flows,
each tagged with the cookie of the MN it serves (cookie 0: the base flows), so a binding's flows can
be replaced or removed as a group. Tests apply them in a fake OpenFlow switch (``tests/fakeswitch.py``).
"""
from __future__ import annotations

import functools
import hashlib
import ipaddress
import tomllib
from dataclasses import dataclass, fields
from importlib import resources
from typing import Iterable, Optional

from .mobility.dataplane import MnDataPlane
from .wire import canonical6, mac_text
from .wire.constants import ETH_IPV6, ICMPV6, ND_RS

PIPELINE = ("openflow_pipelines", "dmm_edge.toml")
VERSION = 1  # the declaration format this renderer understands


@dataclass(frozen=True)
class Table:
    id: int
    name: str
    purpose: str
    match: tuple[str, ...]
    actions: tuple[str, ...]
    next: tuple[str, ...]


@dataclass(frozen=True)
class Pipeline:
    name: str
    tables: tuple[Table, ...]
    punt_icmpv6: tuple[int, ...]  # ICMPv6 types copied from access ports to the agent and controller
    punt_unrouted: bool  # also every IPv6 frame from an access port that no uplink flow routes

    def table(self, name: str) -> Table:
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(f"pipeline {self.name} has no table {name!r}")


def load(package: str = PIPELINE[0], name: str = PIPELINE[1]) -> Pipeline:
    """Read and validate a declaration: its ``version``, the port roles of ``[ports]`` (exactly the
    roles ``SwitchPorts`` gives numbers to), what ``[punt]`` copies to the agent and every table's
    next tables."""
    return parse(resources.files(package).joinpath(name).read_text(encoding="utf-8"), f"{package}/{name}")


@functools.cache
def shipped() -> Pipeline:
    """The shipped declaration, read once."""
    return load()


def parse(text: str, path: str = "<pipeline>") -> Pipeline:
    data = tomllib.loads(text)
    if data.get("version") != VERSION:
        raise ValueError(f"{path}: version {data.get('version')!r} is not supported (this renderer reads {VERSION})")
    roles = {f.name for f in fields(SwitchPorts)}
    if set(data.get("ports", {})) != roles:
        raise ValueError(f"{path}: [ports] must name the roles {', '.join(sorted(roles))}, "
                         f"not {', '.join(sorted(data.get('ports', {}))) or 'none'}")
    tables = tuple(Table(t["id"], t["name"], t["purpose"], tuple(t["match"]), tuple(t["actions"]), tuple(t["next"]))
                   for t in data["table"])
    names = {t.name for t in tables}
    for t in tables:
        for nxt in t.next:
            if nxt not in names:
                raise ValueError(f"{path}: table {t.name} names unknown next table {nxt}")
    punt = data.get("punt", {})
    types, unrouted = punt.get("icmpv6_types"), punt.get("unrouted", False)
    if not isinstance(types, list) or ND_RS not in types or not all(type(t) is int and 0 <= t <= 255 for t in types):
        raise ValueError(f"{path}: [punt] icmpv6_types must list ICMPv6 types (0-255), Router Solicitation ({ND_RS}) "
                         "among them")
    if type(unrouted) is not bool:
        raise ValueError(f"{path}: [punt] unrouted must be true or false")
    return Pipeline(data["name"], tables, tuple(dict.fromkeys(types)), unrouted)


@dataclass(frozen=True)
class Flow:
    """One flow: match fields as (name, value) pairs; actions as (kind, argument) pairs, where kind
    is ``output`` or ``set_field:FIELD``; ``goto`` a table name or None."""

    table: str
    priority: int
    match: tuple[tuple[str, object], ...]
    actions: tuple[tuple[str, object], ...] = ()
    goto: Optional[str] = None
    cookie: int = 0


@dataclass(frozen=True)
class SwitchPorts:
    core: int
    tunnel: int
    agent: int
    access: tuple[int, ...]


@dataclass(frozen=True)
class MaarView:
    """What the renderer needs to know about the MAAR and its peers."""

    mac: bytes  # this MAAR's MAC: source of routed frames towards MNs
    core_gateway_mac: bytes  # next hop on the core side
    tunnel_key: int
    dlif_mac: dict  # anchor MAAR address -> its DLIF MAC (source of frames for its prefixes)


def cookie_of(mn_id: str) -> int:
    """A stable, non-zero 64-bit cookie per MN (so its flows can be removed as a group)."""
    return int.from_bytes(hashlib.blake2b(mn_id.encode(), digest_size=8).digest(), "big") | 1


def base_flows(ports: SwitchPorts, pipeline: Optional[Pipeline] = None) -> list[Flow]:
    """The flows every MAAR's switch holds whatever its MNs: what ``[punt]`` copies to the agent and
    the controller, and the split by ingress port."""
    pipeline = pipeline or shipped()
    punt = (("output", ports.agent), ("output", "CONTROLLER"))
    flows = [Flow("classify", 300, (("in_port", p), ("eth_type", ETH_IPV6), ("ip_proto", ICMPV6), ("icmpv6_type", t)),
                  punt)
             for p in ports.access for t in pipeline.punt_icmpv6]
    flows.append(Flow("classify", 200, (("in_port", ports.agent),), tuple(("output", p) for p in ports.access)))
    flows.append(Flow("classify", 100, (("in_port", ports.tunnel),), goto="from_tunnel"))
    flows.append(Flow("classify", 100, (("in_port", ports.core),), goto="downlink"))
    flows += [Flow("classify", 50, (("in_port", p), ("eth_type", ETH_IPV6)), goto="uplink") for p in ports.access]
    if pipeline.punt_unrouted:  # below every MN's uplink flow (priority 100)
        flows += [Flow("uplink", 0, (("in_port", p),), punt) for p in ports.access]
    return flows


def mn_flows(mn_id: str, state: MnDataPlane, ports: SwitchPorts, view: MaarView) -> list[Flow]:
    """The flows for one MN's data-plane state at this MAAR: 2 per entry, whatever else is installed."""
    c = cookie_of(mn_id)
    ip6 = ("eth_type", ETH_IPV6)
    tun = lambda remote: (("set_field:tun_ipv6_dst", remote), ("set_field:tunnel_id", view.tunnel_key),  # noqa: E731
                          ("output", ports.tunnel))
    to_core = (("set_field:eth_src", view.mac), ("set_field:eth_dst", view.core_gateway_mac), ("output", ports.core))
    flows: list[Flow] = []
    for r in state.local:
        flows.append(Flow("uplink", 100, (("in_port", r.port), ip6, ("ipv6_src", str(r.prefix))), to_core, cookie=c))
        flows.append(Flow("downlink", 100, (ip6, ("ipv6_dst", str(r.prefix))),
                          (("set_field:eth_src", view.mac), ("set_field:eth_dst", r.mac), ("output", r.port)), cookie=c))
    for t in state.to_serving:
        flows.append(Flow("downlink", 100, (ip6, ("ipv6_dst", str(t.prefix))), tun(t.serving_maar), cookie=c))
        flows.append(Flow("from_tunnel", 100, (ip6, ("ipv6_src", str(t.prefix))), to_core, cookie=c))
    for t in state.to_anchor:
        flows.append(Flow("uplink", 100, (("in_port", t.port), ip6, ("ipv6_src", str(t.prefix))), tun(t.anchor_maar),
                          cookie=c))
        src = view.dlif_mac.get(t.anchor_maar, view.mac)
        flows.append(Flow("from_tunnel", 100, (ip6, ("ipv6_dst", str(t.prefix))),
                          (("set_field:eth_src", src), ("set_field:eth_dst", t.mac), ("output", t.port)), cookie=c))
    return flows


def undeclared(pipeline: Pipeline, flow: Flow) -> Optional[str]:
    """Why ``flow`` uses something the pipeline does not declare, or None if it does not."""
    try:
        table = pipeline.table(flow.table)
    except KeyError as exc:
        return str(exc.args[0])
    for name, _ in flow.match:
        if name not in table.match:
            return f"table {table.name} does not match on {name}"
    for kind, _ in flow.actions:
        if kind not in table.actions:
            return f"table {table.name} has no action {kind}"
    if flow.goto is not None and flow.goto not in table.next:
        return f"table {table.name} cannot go to {flow.goto}"
    return None


def check(pipeline: Pipeline, flows: Iterable[Flow]) -> None:
    """Refuse a flow that uses anything the pipeline does not declare."""
    for f in flows:
        why = undeclared(pipeline, f)
        if why is not None:
            raise ValueError(why)


def canonical(field: str, value) -> object:
    """A match value in one form, whether rendered here or read back from a switch's flow stats:
    MACs as lower-case text, IPv6 addresses and prefixes as ``addr/len``, the rest as integers."""
    if field in ("ipv6_src", "ipv6_dst"):
        return str(ipaddress.IPv6Network(value, strict=False))
    if isinstance(value, bytes):
        return mac_text(value)
    if isinstance(value, str):
        return value.lower()
    return value


def match_key(match: Iterable[tuple[str, object]]) -> tuple:
    return tuple(sorted((k, canonical(k, v)) for k, v in match))


def action_key(kind: str, value) -> tuple:
    """An action in one form, rendered here or read back from a switch (set-field values canonical)."""
    if kind.startswith("set_field:"):
        field = kind.split(":", 1)[1]
        return kind, canonical6(value) if field == "tun_ipv6_dst" else canonical(field, value)
    return kind, value


@dataclass(frozen=True, slots=True)
class InstalledFlow:
    """One entry of a switch's flow stats, in the renderer's terms (see ``canonical``). ``actions``
    are the apply-actions as ``action_key`` pairs, then ``("goto", table id)`` if any: a flow whose
    match stayed but whose actions changed (a local route that became a tunnel) is a different flow."""

    table_id: int
    priority: int
    cookie: int
    match: tuple  # match_key form
    actions: tuple = ()
    packets: int = 0

    @property
    def key(self) -> tuple:
        return self.table_id, self.priority, self.cookie, self.match, self.actions


def flow_key(pipeline: Pipeline, flow: Flow) -> tuple:
    """The identity of ``flow`` on a switch, comparable with ``InstalledFlow.key``."""
    actions = tuple(action_key(k, v) for k, v in flow.actions)
    if flow.goto is not None:
        actions += (("goto", pipeline.table(flow.goto).id),)
    return pipeline.table(flow.table).id, flow.priority, flow.cookie, match_key(flow.match), actions


def diff(pipeline: Pipeline, wanted: Iterable[Flow],
         installed: Iterable[InstalledFlow]) -> tuple[tuple[InstalledFlow, ...], tuple[Flow, ...]]:
    """What to delete (entries no one wants) and add (wanted flows missing) to turn ``installed``
    into ``wanted``: the reconciliation of a (re)connected switch."""
    want = {flow_key(pipeline, f): f for f in wanted}
    installed = tuple(installed)
    present = {i.key for i in installed}
    return tuple(i for i in installed if i.key not in want), tuple(f for k, f in want.items() if k not in present)


def render(states: dict[str, MnDataPlane], ports: SwitchPorts, view: MaarView,
           pipeline: Optional[Pipeline] = None) -> list[Flow]:
    """All flows a MAAR's switch should hold for these per-MN states, in a stable order."""
    pipeline = pipeline or shipped()
    flows = base_flows(ports, pipeline)
    for mn_id in sorted(states):
        flows += mn_flows(mn_id, states[mn_id], ports, view)
    check(pipeline, flows)
    return flows
