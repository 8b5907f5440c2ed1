"""The fully distributed MAAR (draft §4; no CMD): discovery of an MN's previous MAARs among peers.

Sans-IO like ``MaarCore``: ``handle(event, now)`` returns the same effects (``Send``, timers,
``DataPlaneChanged``, ``Advertise``, ``Report``). The design, its message sequences and where it
departs from RFC 8885 are in docs/mode-distributed.md. In short:

- An MN attaches: the MAAR serves it at once from its own pool (route and RA: new flows go out
  locally without waiting for anyone) and asks every other MAAR of the domain (the configured peer
  list) with a PBU carrying the MN-ID, its prefix (HNP), a Timestamp and a Serving MAAR option
  naming itself.
- A peer that anchors a prefix for that MN, and knows of no newer attachment (Timestamp), tunnels
  that prefix to the asker and answers accepted with an Anchored Prefix option (RFC 8885 type 65)
  holding it and its DLIF options; a peer with nothing for the MN answers 153
  (NOT_LMA_FOR_THIS_MOBILE_NODE); one that knows a newer attachment, 157.
- The asker adds each accepted anchor to its P-MAAR list as the answers come (tunnel, deprecated
  prefix in an RA from that MAAR's DLIF); peers that never answer are given up after the RFC 5213
  retransmissions (``max_tries``).
- While the MN is attached the serving MAAR refreshes its anchors (PBU, HI 5) before their lifetime
  runs out; once it left and the lifetime ran out, the serving MAAR de-registers them (lifetime 0).
  An anchor whose serving MAAR went silent expires on its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..wire import AnchoredPrefix, BindingAck, BindingUpdate, Prefix, Status, missing_mandatory
from . import messages as M
from .config import Domain
from .dataplane import EMPTY, LocalRoute, MnDataPlane, TunnelToAnchor, TunnelToServing
from .maar import Role  # SERVING: the MN attached here (last known); ANCHOR: it is at serving_maar
from .events import (
    Advertise, Attach, CancelTimer, DataPlaneChanged, Detach, Effect, RaPrefix, Received, Report, ReportKind,
    RetxKey, Send, SetTimer, TimerFired, TimerKey, TimerKind,
)
from .failover import CmdFailover
from .heartbeat import Heartbeats
from .pool import PrefixPool
from .retransmit import Outstanding, Retransmitter

HI_UNKNOWN = M.HI_UNKNOWN  # a discovery: the new MAAR does not know whether the MN was elsewhere
COUNTERS = ("discoveries", "anchors_found", "not_anchored", "superseded", "unanswered", "refused", "echo_mismatch")


@dataclass(slots=True)
class DBinding:
    mn_id: str
    prefix: Prefix
    role: Role  # never REGISTERING here: an attachment is served at once
    mac: bytes = b""
    port: int = 0
    att: int = 3
    attached: bool = False
    stamp: int = 0  # Timestamp (RFC 5213 ticks) of the newest attachment we know of for this MN
    serving_maar: Optional[str] = None
    anchors: dict[str, Prefix] = field(default_factory=dict)  # serving: peer -> prefix it anchors
    dlif: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    asking: dict[str, Outstanding] = field(default_factory=dict)  # peer -> our PBU in flight to it
    discovering: bool = False  # the attachment's discovery has peers still to answer
    expires: float = 0.0


class DistributedMaar:
    """One MAAR of a domain without a CMD (see the module docstring)."""

    def __init__(self, domain: Domain, name: str, restart_counter: int = 0) -> None:
        self.domain, self.timers = domain, domain.timers
        self.cmd = domain.cmd_address  # "::": there is no CMD, nothing is sent there (the agent's views)
        self.failover = CmdFailover(domain.cmds, 0.0)  # the agent's views of "its CMDs": never moves
        # RFC 5847 among MAARs is not built yet (docs/mode-distributed.md): the monitor watches no one
        self.heartbeats = Heartbeats(restart_counter, 0, domain.timers.missing_heartbeats_allowed)
        self.info = domain.maar(name)
        self.address = self.info.address
        self.peers = {m.address: m for m in domain.maars if m.address != self.address}
        self.pool = PrefixPool(self.info.pool, self.info.prefix_length)
        self._peer_pools = {a: PrefixPool(m.pool, m.prefix_length) for a, m in self.peers.items()}
        self.bindings: dict[str, DBinding] = {}
        self.retx = Retransmitter(domain.timers)
        self.counters = {k: 0 for k in COUNTERS}

    # ---- views -------------------------------------------------------------------------------
    def dataplane(self, mn_id: str) -> MnDataPlane:
        b = self.bindings.get(mn_id)
        if b is None:
            return EMPTY
        if b.role is Role.ANCHOR:
            return MnDataPlane(to_serving=(TunnelToServing(b.prefix, b.serving_maar),))
        return MnDataPlane(local=(LocalRoute(b.prefix, b.mac, b.port),),
                           to_anchor=tuple(TunnelToAnchor(p, a, b.mac, b.port) for a, p in sorted(b.anchors.items())))

    def _changed(self, b: DBinding) -> DataPlaneChanged:
        return DataPlaneChanged(b.mn_id, self.dataplane(b.mn_id))

    def _advertise(self, b: DBinding, now: float, withdrawn=()) -> Advertise:
        valid = max(0, int(b.expires - now))
        ras = [RaPrefix(b.prefix, valid, valid)] + [RaPrefix(p, 0, valid, a) for a, p in sorted(b.anchors.items())]
        ras += [RaPrefix(p, 0, 0, a) for a, p in sorted(withdrawn)]
        return Advertise(b.mn_id, b.mac, b.port, tuple(ras), min(self.timers.router_lifetime, valid))

    # ---- dispatch ----------------------------------------------------------------------------
    def start(self, now: float) -> list[Effect]:
        return []

    def handle(self, event, now: float) -> list[Effect]:
        kind = type(event)
        if kind is Received:
            if type(event.msg) is BindingUpdate:
                return self._on_pbu(event.src, event.msg, now)
            if type(event.msg) is BindingAck:
                return self._on_pba(event.src, event.msg, now)
            return []
        if kind is TimerFired:
            return self._on_timer(event.key, now)
        if kind is Attach:
            return self._on_attach(event, now)
        if kind is Detach:
            return self._on_detach(event.mn_id, now)
        return []

    # ---- the MN on our access link -------------------------------------------------------------
    def _on_attach(self, ev: Attach, now: float) -> list[Effect]:
        b = self.bindings.get(ev.mn_id)
        if b is not None and b.role is Role.SERVING and b.attached:  # the same attachment again
            moved = (b.mac, b.port) != (ev.mac, ev.port)
            b.mac, b.port = ev.mac, ev.port
            return ([self._changed(b)] if moved else []) + [self._advertise(b, now)]
        effects: list[Effect] = []
        if b is None:
            if len(self.bindings) >= self.timers.max_sessions:
                return [Report(ReportKind.FAILED, ev.mn_id, f"{self.timers.max_sessions} sessions here already",
                               Status.INSUFFICIENT_RESOURCES)]
            prefix = self.pool.allocate(now)
            if prefix is None:
                return [Report(ReportKind.FAILED, ev.mn_id, f"prefix pool {self.info.pool} exhausted")]
            b = self.bindings[ev.mn_id] = DBinding(ev.mn_id, prefix, Role.SERVING)
        else:  # back at a MAAR anchoring a prefix for the MN (or attached again): serve it, ask again
            effects += self._forget_queries(b)
            b.role, b.serving_maar, b.anchors, b.dlif = Role.SERVING, None, {}, {}  # the discovery finds them again
        b.mac, b.port, b.att, b.attached = ev.mac, ev.port, ev.att, True
        b.stamp = int(now * 65536)
        b.expires = now + self.timers.lifetime
        b.discovering = bool(self.peers)
        self.counters["discoveries"] += 1
        effects += [self._changed(b), self._advertise(b, now),
                    SetTimer(TimerKey(TimerKind.ADVERTISE, b.mn_id), now + self.timers.ra_interval),
                    SetTimer(TimerKey(TimerKind.REREGISTER, b.mn_id), self._refresh_at(now)),
                    SetTimer(TimerKey(TimerKind.EXPIRE, b.mn_id), b.expires)]
        for peer in sorted(self.peers):
            effects += self._ask(b, peer, HI_UNKNOWN, self.timers.lifetime, now)
        if not self.peers:
            effects.append(Report(ReportKind.REGISTERED, b.mn_id, f"at {self.info.name}, no peers to ask"))
        return effects

    def _on_detach(self, mn_id: str, now: float) -> list[Effect]:
        b = self.bindings.get(mn_id)
        if b is None or not b.attached:
            return []
        b.attached = False  # served until the lifetime runs out (RFC 8885 §3.5): the MN may come back
        for out in b.asking.values():
            out.final = True  # a copy stamped after the MN left could be ordered after its next attachment
        return [CancelTimer(TimerKey(TimerKind.REREGISTER, mn_id)), CancelTimer(TimerKey(TimerKind.ADVERTISE, mn_id))]

    def _refresh_at(self, now: float) -> float:
        return now + max(1.0, self.timers.lifetime * self.timers.reregister_fraction)

    def _ask(self, b: DBinding, peer: str, handoff: int, lifetime: int, now: float) -> list[Effect]:
        """Our PBU about ``b`` to ``peer``: a discovery (HI unknown), refresh (HI 5) or de-registration."""
        def build(seq: int, t: float) -> BindingUpdate:
            return M.pbu(seq, t, b.mn_id, b.prefix, lifetime, handoff, b.att, b.mac or None, serving=self.address)
        effects: list[Effect] = []
        old = b.asking.pop(peer, None)
        if old is not None:
            effects += self.retx.cancel(old)
        sent, out, evicted = self.retx.send(peer, b.mn_id, build, now, context=lifetime == 0)
        b.asking[peer] = out
        if evicted is not None:
            effects += self._gave_up(evicted, now)
        return effects + sent

    def _forget_queries(self, b: DBinding) -> list[Effect]:
        effects: list[Effect] = []
        for out in b.asking.values():
            effects += self.retx.cancel(out)
        b.asking, b.discovering = {}, False
        return effects

    # ---- PBUs from peers ---------------------------------------------------------------------
    def _answer(self, pbu: BindingUpdate, src: str, status: int, lifetime: int, extra=()) -> list[Effect]:
        return [Send(src, M.pba_for(pbu, status, lifetime, extra))]

    def _on_pbu(self, src: str, pbu: BindingUpdate, now: float) -> list[Effect]:
        if src not in self.peers:
            self.counters["refused"] += 1
            return self._answer(pbu, src, Status.MAG_NOT_AUTHORIZED_FOR_PROXY_REG, 0)
        missing = missing_mandatory(pbu)
        if missing is not None:
            return self._answer(pbu, src, missing, 0)
        ts = pbu.timestamp
        if pbu.serving_maar != src or ts is None:
            # the serving MAAR speaks for itself, and a discovery is ordered by its Timestamp
            self.counters["refused"] += 1
            return self._answer(pbu, src, Status.ADMINISTRATIVELY_PROHIBITED, 0)
        if abs(ts / 65536 - now) > self.timers.timestamp_window:
            return self._answer(pbu, src, Status.TIMESTAMP_MISMATCH, 0)
        b = self.bindings.get(pbu.mn_id)
        if b is None:
            return self._answer(pbu, src, Status.NOT_LMA_FOR_THIS_MOBILE_NODE, 0)
        copy = ts == b.stamp and b.role is Role.ANCHOR and b.serving_maar == src
        if ts < b.stamp or ts == b.stamp and not copy:
            self.counters["superseded"] += 1  # a newer attachment of this MN is known here
            return self._answer(pbu, src, Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED, 0)
        if pbu.lifetime == 0:  # the serving MAAR de-registers us: the MN left the domain
            if b.role is Role.ANCHOR and b.serving_maar == src:
                return self._answer(pbu, src, Status.ACCEPTED, 0) + self._remove(b, now, "de-registered by "
                                                                                   f"{self.peers[src].name}")
            return self._answer(pbu, src, Status.ACCEPTED, 0)
        return self._anchor(b, pbu, src, ts, now)

    def _anchor(self, b: DBinding, pbu: BindingUpdate, src: str, ts: int, now: float) -> list[Effect]:
        """The MN is at ``src`` (attached there after anything we know): tunnel our prefix there and
        say which prefix we anchor."""
        effects: list[Effect] = []
        moved = b.role is not Role.ANCHOR or b.serving_maar != src
        if b.role is Role.SERVING:
            effects += self._forget_queries(b)
            effects += [CancelTimer(TimerKey(TimerKind.REREGISTER, b.mn_id)),
                        CancelTimer(TimerKey(TimerKind.ADVERTISE, b.mn_id))]
        b.role, b.serving_maar, b.anchors, b.dlif, b.attached = Role.ANCHOR, src, {}, {}, False
        b.stamp = ts
        b.expires = now + pbu.lifetime + self.timers.min_delay_before_bce_delete
        effects.append(SetTimer(TimerKey(TimerKind.EXPIRE, b.mn_id), b.expires))
        if moved:
            effects += [self._changed(b), Report(ReportKind.MOVED, b.mn_id, f"now at {self.peers[src].name}")]
        return effects + self._answer(pbu, src, Status.ACCEPTED, pbu.lifetime,
                                      (AnchoredPrefix(b.prefix), *M.dlif_options(self.info)))

    # ---- PBAs from peers ---------------------------------------------------------------------
    def _on_pba(self, src: str, pba: BindingAck, now: float) -> list[Effect]:
        out = self.retx.pending.get((src, pba.sequence))
        if out is None:
            return []  # late, duplicated or made up
        if not M.echo_matches(out.sent, pba):
            self.counters["echo_mismatch"] += 1
            return []
        self.retx.acknowledge(src, pba.sequence)
        effects: list[Effect] = [CancelTimer(out.key)]
        b = self.bindings.get(out.mn_id)
        if b is None or b.asking.get(src) is not out:
            return effects
        del b.asking[src]
        if out.context:  # our de-registration was answered
            return effects
        anchored = pba.find(AnchoredPrefix)
        if (pba.status == Status.ACCEPTED and pba.lifetime > 0 and anchored is not None
                and self._peer_pools[src].contains(anchored.prefix) and b.role is Role.SERVING):
            self.counters["anchors_found"] += 1
            if b.anchors.get(src) != anchored.prefix:
                b.anchors[src] = anchored.prefix
                dlif = M.dlif_of(pba, None)
                if dlif is not None:
                    b.dlif[src] = dlif
                effects += [self._changed(b), self._advertise(b, now)]
        elif src in b.anchors:  # a refresh refused: that anchor no longer holds our MN
            withdrawn = {(src, b.anchors.pop(src))}
            b.dlif.pop(src, None)
            effects += [self._changed(b), self._advertise(b, now, withdrawn)]
        elif pba.status == Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED:
            self.counters["superseded"] += 1  # that peer knows a newer attachment: it will ask us
        else:
            self.counters["not_anchored"] += 1
        return effects + self._discovered(b)

    def _discovered(self, b: DBinding) -> list[Effect]:
        """The attachment's discovery ends when every peer answered or was given up."""
        if not b.discovering or b.asking:
            return []
        b.discovering = False
        kind = ReportKind.HANDOVER if b.anchors else ReportKind.REGISTERED
        return [Report(kind, b.mn_id, f"at {self.info.name} with {len(b.anchors)} P-MAAR(s)")]

    def _gave_up(self, out: Outstanding, now: float) -> list[Effect]:
        b = self.bindings.get(out.mn_id)
        if b is None or b.asking.get(out.dst) is not out:
            return []
        del b.asking[out.dst]
        self.counters["unanswered"] += 1
        effects: list[Effect] = [Report(ReportKind.FAILED, b.mn_id, f"{self.peers[out.dst].name} did not answer")]
        return effects + self._discovered(b)

    # ---- timers ------------------------------------------------------------------------------
    def _on_timer(self, key, now: float) -> list[Effect]:
        if type(key) is RetxKey:
            effects, failed = self.retx.fire(key, now)
            return effects + (self._gave_up(failed, now) if failed is not None else [])
        b = self.bindings.get(key.mn_id)
        if b is None:
            return []
        if key.kind is TimerKind.ADVERTISE and b.role is Role.SERVING and b.attached:
            return [self._advertise(b, now), SetTimer(key, now + self.timers.ra_interval)]
        if key.kind is TimerKind.REREGISTER and b.role is Role.SERVING and b.attached:
            b.expires = now + self.timers.lifetime
            effects: list[Effect] = [SetTimer(key, self._refresh_at(now)),
                                     SetTimer(TimerKey(TimerKind.EXPIRE, b.mn_id), b.expires)]
            for peer in sorted(b.anchors):
                effects += self._ask(b, peer, M.HI_REREGISTRATION, self.timers.lifetime, now)
            return effects
        if key.kind is TimerKind.EXPIRE and b.expires <= now:
            effects = []
            if b.role is Role.SERVING:  # the MN left and did not come back: free the anchors too
                for peer in sorted(b.anchors):
                    effects += self._ask(b, peer, HI_UNKNOWN, 0, now)
            return effects + self._remove(b, now, "lifetime expired")
        return []

    def _remove(self, b: DBinding, now: float, detail: str) -> list[Effect]:
        del self.bindings[b.mn_id]
        effects: list[Effect] = []
        for out in b.asking.values():
            if not out.context:  # de-registrations in flight go on; their answers find no binding
                effects += self.retx.cancel(out)
        self.pool.release(b.prefix, now + self.timers.min_delay_before_bce_delete, b.stamp)
        return effects + [CancelTimer(TimerKey(k, b.mn_id)) for k in (TimerKind.REREGISTER, TimerKind.EXPIRE,
                                                                      TimerKind.ADVERTISE)] + [
            DataPlaneChanged(b.mn_id, EMPTY), Report(ReportKind.DEREGISTERED, b.mn_id, detail)]
