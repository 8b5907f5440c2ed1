"""The MAAR core: prefix pool, local BCEs, registration with the CMD, roles as S-MAAR and P-MAAR.

Sans-IO: ``handle(event, now)`` returns effects. A MAAR anchors at most one prefix per MN; when an
MN comes back to a MAAR that still anchors a prefix for it, that prefix is reused.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Optional

from ..wire import BindingAck, BindingUpdate, Heartbeat, Prefix, Status, missing_mandatory
from . import messages as M
from .config import ALL_ZERO, Domain, MaarInfo, Mode
from .dataplane import EMPTY, LocalRoute, MnDataPlane, TunnelToAnchor, TunnelToServing
from .events import (
    Advertise, Attach, CancelTimer, DataPlaneChanged, Detach, Effect, RaPrefix, Received, Report, ReportKind,
    RetxKey, Send, SetTimer, TimerFired, TimerKey, TimerKind,
)
from .failover import KEY as FAILOVER_KEY, CmdFailover
from .heartbeat import HeartbeatKey, Heartbeats
from .pool import PrefixPool
from .retransmit import Outstanding, Retransmitter

# After the CMD restarted, our bindings are told again at most this many PBUs a second (one timer per
# binding, spread): well under the retransmitter's per-peer bound (timers.max_outstanding) for a CMD
# that answers within a second, so re-registering 65,536 MNs takes about a minute and evicts nothing.
RESYNC_RATE = 1000.0
# Refusals counted in ``MaarCore.counters`` (docs/security.md): a fixed set, so bounded metric labels.
REFUSALS = ("pba_echo_mismatch", "direct_pba_refused", "serving_maar_refused")


class Role(Enum):
    """What this MAAR is for one MN. ``REGISTERING`` with ``serving_maar`` set: the MN came back to
    a MAAR that anchors one of its prefixes (or the CMD placed it elsewhere while our registration
    was in flight): we keep tunnelling to that MAAR until our registration is accepted."""

    REGISTERING = "registering"  # the MN is attached here; our registration is not accepted yet
    SERVING = "serving"  # S-MAAR: the CMD accepted our registration
    ANCHOR = "anchor"  # P-MAAR: the MN is elsewhere; we tunnel our prefix to its serving MAAR


@dataclass(slots=True)
class Binding:
    """This MAAR's BCE for one MN: the prefix anchored here and the MAAR's current role for it."""

    mn_id: str
    prefix: Prefix
    fresh: bool  # allocated for the registration in flight: returned at once if it is refused
    role: Role
    mac: bytes = b""
    port: int = 0
    att: int = 3
    attached: bool = False
    expires: float = 0.0
    serving_maar: Optional[str] = None  # P-MAAR role: where to tunnel our prefix (also kept while
    # a registration of ours is in flight: the CMD's latest word on where the MN is, applied if refused)
    anchors: dict[str, Prefix] = field(default_factory=dict)  # S-MAAR role: P-MAAR -> its prefix
    dlif: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # P-MAAR -> (mac, link-local)
    detached_at: float = 0.0
    last_cmd_ts: int = 0  # the last CMD PBU applied: its timestamp, sequence number and Serving MAAR
    last_cmd_seq: int = -1
    last_cmd_smaar: Optional[str] = None
    retried: bool = False  # this attachment's registration was sent once more (Decisions: clock skew)
    pbu: Optional[Outstanding] = None  # our registration or de-registration in flight


class MaarCore:
    """One MAAR of RFC 8885: anchors prefixes from its own pool, registers the MNs attached to it with
    the CMD (S-MAAR role) and keeps tunnelling prefixes of MNs that moved on (P-MAAR role).

    Sans-IO like the CMD core: the agent process feeds it events and carries out its effects.
    ``restart_counter``: ours (RFC 5847), sent in Heartbeats to the CMD, which rebuilds our bindings
    when it changes. ``access_port``: the MNs' access port, for a serving binding the CMD rebuilds.
    """

    def __init__(self, domain: Domain, name: str, restart_counter: int = 0, access_port: int = 0) -> None:
        self.domain = domain
        self.info: MaarInfo = domain.maar(name)
        self.address = self.info.address
        # The CMDs of the domain in order, and the one we signal to now (``cmd``): we move to the next
        # when it falls silent (mobility/failover.py, docs/failover.md).
        self.failover = CmdFailover(domain.cmds, domain.timers.failover_timeout)
        self.cmd = self.failover.current
        self.timers = domain.timers
        self.peers = domain.by_address()
        self.pool = PrefixPool(self.info.pool, self.info.prefix_length)
        self.bindings: dict[str, Binding] = {}
        self.retx = Retransmitter(domain.timers)
        self._peer_pools = {m.address: PrefixPool(m.pool, m.prefix_length) for m in domain.maars}
        self.access_port = access_port
        # Legacy mode (docs/mode-legacy.md): the LMA's pool, from which the CMD assigns every MN's
        # prefix; we ask with ALL_ZERO and allocate nothing ourselves.
        lma = domain.lma_info
        self._lma_pool = PrefixPool(lma.pool, lma.prefix_length) if lma is not None else None
        # RFC 5847 liveness of the CMDs (MAAR-to-MAAR heartbeats are not needed: the CMD rebuilds a
        # restarted MAAR, and tells the others). Every CMD of the list is watched, so that a fail-over
        # can skip one known to be down and a standby's Heartbeats are answered.
        self.heartbeats = Heartbeats(restart_counter, domain.timers.heartbeat_interval,
                                     domain.timers.missing_heartbeats_allowed)
        # Messages accepted without RFC 8885's D flag (§4.1, §4.2), e.g. from a plain PMIPv6 peer;
        # and messages refused by the checks that hold without IPsec (docs/security.md).
        self.counters = {"pbu_without_d": 0, "pba_without_d": 0, **{k: 0 for k in REFUSALS}}

    # ---- views -------------------------------------------------------------------------------
    def dataplane(self, mn_id: str) -> MnDataPlane:
        b = self.bindings.get(mn_id)
        if b is None:
            return EMPTY
        if b.role is Role.ANCHOR or b.role is Role.REGISTERING and b.serving_maar:  # (the latter: an MN back, not yet confirmed)
            return MnDataPlane(to_serving=(TunnelToServing(b.prefix, b.serving_maar),) if b.serving_maar else ())
        # (legacy mode: the MN's prefix anchored at the LMA is tunnelled there, not routed here)
        local = ((LocalRoute(b.prefix, b.mac, b.port),) if b.role is Role.SERVING and b.prefix not in b.anchors.values()
                 else ())
        remote = tuple(TunnelToAnchor(p, a, b.mac, b.port) for a, p in sorted(b.anchors.items()))
        return MnDataPlane(local=local, to_anchor=remote)

    def _changed(self, mn_id: str) -> DataPlaneChanged:
        return DataPlaneChanged(mn_id, self.dataplane(mn_id))

    def _advertise(self, b: Binding, now: float, withdrawn=()) -> Advertise:
        """The MN's prefixes with their remaining lifetimes: ours preferred, each anchor's deprecated
        (RFC 8885 §3.7); ``withdrawn`` anchors, (address, prefix) that left the P-MAAR list, with
        valid lifetime 0 so that the MN drops those addresses."""
        valid = max(0, int(b.expires - now))
        ras = [RaPrefix(b.prefix, valid, valid)]
        for anchor, prefix in sorted(b.anchors.items()):
            if prefix != b.prefix:  # (legacy mode: the MN's one prefix, anchored at the LMA, stays preferred)
                ras.append(RaPrefix(prefix, 0, valid, anchor))
        for anchor, prefix in sorted(withdrawn):
            ras.append(RaPrefix(prefix, 0, 0, anchor))
        return Advertise(b.mn_id, b.mac, b.port, tuple(ras), min(self.timers.router_lifetime, valid))

    def _advertised(self, b: Binding, now: float, withdrawn=()) -> list[Effect]:
        """An RA now and, while the MN is attached to us as its serving MAAR, the next one in
        ``ra_interval`` (RFC 4861 §6.2.4: unsolicited RAs; re-registration alone would leave the MN
        without a default route for most of each lifetime)."""
        effects: list[Effect] = [self._advertise(b, now, withdrawn)]
        if b.role is Role.SERVING and b.attached:
            effects.append(SetTimer(TimerKey(TimerKind.ADVERTISE, b.mn_id), now + self.timers.ra_interval))
        return effects

    # ---- dispatch ----------------------------------------------------------------------------
    def start(self, now: float) -> list[Effect]:
        """What a starting MAAR does before any event: watch the CMDs with Heartbeats."""
        effects = self.heartbeats.watch(self.cmd, now, first_at=now)  # a start is a restart: tell the CMD now
        for other in self.failover.cmds:
            if other != self.cmd:
                effects += self.heartbeats.watch(other, now)
        return effects

    def handle(self, event, now: float) -> list[Effect]:
        """One event at time ``now``; see ``_dispatch``. Around it, the fail-over clock: any message
        from the current CMD stops it, a request to it starts it (mobility/failover.py)."""
        heard = self.failover.heard(event.src) if type(event) is Received else []
        effects = self._dispatch(event, now)
        return heard + effects + self.failover.sent(effects, now)

    def _dispatch(self, event, now: float) -> list[Effect]:
        """One event at time ``now`` (seconds since the epoch, the clock of the PBU timestamps).

        Events: ``Attach``/``Detach`` of an MN on an access port, ``Received(src, PBU|PBA|Heartbeat)``
        from the CMD (or, in locator mode, a P-MAAR's direct PBA), ``TimerFired(key)``. Effects: ``Send``,
        ``SetTimer``/``CancelTimer``, ``DataPlaneChanged`` (the complete state this MAAR wants for one
        MN), ``Advertise`` (a Router Advertisement to the MN) and ``Report``.
        """
        kind = type(event)
        if kind is Received:
            if type(event.msg) is BindingUpdate:
                return self._on_pbu(event.src, event.msg, now)
            if type(event.msg) is Heartbeat:
                return self._on_heartbeat(event.src, event.msg, now)
            return self._on_pba(event.src, event.msg, now)
        if kind is TimerFired:
            return self._on_timer(event.key, now)
        if kind is Attach:
            return self._on_attach(event, now)
        if kind is Detach:
            return self._on_detach(event.mn_id, now)
        return []

    # ---- the MN on our access links ----------------------------------------------------------
    def _on_attach(self, ev: Attach, now: float) -> list[Effect]:
        b = self.bindings.get(ev.mn_id)
        handoff = ev.handoff
        if b is not None and b.role is not Role.ANCHOR and b.attached:  # a repeated trigger for the same attachment
            moved = (b.mac, b.port) != (ev.mac, ev.port)
            b.mac, b.port = ev.mac, ev.port
            if b.role is Role.REGISTERING:
                return []  # registration already in flight
            return ([self._changed(b.mn_id)] if moved else []) + self._advertised(b, now)
        if b is None:
            if len(self.bindings) >= self.timers.max_sessions:
                return [Report(ReportKind.FAILED, ev.mn_id, f"{self.timers.max_sessions} sessions here already",
                               Status.INSUFFICIENT_RESOURCES)]
            if self._lma_pool is not None:  # legacy: the CMD assigns from the LMA's pool (RFC 5213 §5.3.1)
                b = self.bindings[ev.mn_id] = Binding(ev.mn_id, ALL_ZERO, False, Role.REGISTERING)
            else:
                prefix = self.pool.allocate(now)
                if prefix is None:
                    return [Report(ReportKind.FAILED, ev.mn_id, f"prefix pool {self.info.pool} exhausted")]
                b = self.bindings[ev.mn_id] = Binding(ev.mn_id, prefix, True, Role.REGISTERING)
        else:
            # Back after a detachment, or back at a MAAR that still anchors a prefix for the MN: the MN
            # may have been elsewhere meanwhile, so this is a new registration with a newer timestamp.
            if b.role is Role.ANCHOR:  # serving_maar is kept in case this registration is refused
                b.role, b.fresh = Role.REGISTERING, False
            handoff = M.HI_BETWEEN_MAARS
        b.mac, b.port, b.att, b.attached, b.retried = ev.mac, ev.port, ev.att, True, False
        return self._register(b, handoff, now)

    def _on_detach(self, mn_id: str, now: float) -> list[Effect]:
        b = self.bindings.get(mn_id)
        if b is None or not b.attached:
            return []
        b.attached, b.detached_at = False, now  # the session lives until its lifetime runs out
        if b.role is Role.ANCHOR:
            return []
        if b.pbu is not None and not b.pbu.context[2]:
            # A registration in flight is not sent again: a copy stamped after the MN left could be
            # ordered after its next attachment elsewhere when clocks are skewed. An answer to the
            # copies already sent is still taken until the current timeout.
            b.pbu.final = True
        effects: list[Effect] = [CancelTimer(TimerKey(TimerKind.REREGISTER, mn_id))]
        if b.role is Role.REGISTERING and b.pbu is None:  # refused, waiting for its retry: no more
            effects += self._abandoned(b, now)
        return effects

    def _register(self, b: Binding, handoff: int, now: float, lifetime: Optional[int] = None) -> list[Effect]:
        effects: list[Effect] = self.retx.cancel(b.pbu) if b.pbu is not None else []
        life = self.timers.lifetime if lifetime is None else lifetime

        def build(seq: int, t: float) -> BindingUpdate:
            # After a detachment, a (re)transmission must not claim knowledge newer than it: the
            # MN may have attached elsewhere since, with that newer timestamp.
            stamp = t if b.attached or life == 0 else min(t, b.detached_at)
            return M.pbu(seq, stamp, b.mn_id, b.prefix, life, handoff, b.att, b.mac or None)
        sent, b.pbu, evicted = self.retx.send(self.cmd, b.mn_id, build, now, context=(handoff, b.att, life == 0))
        return effects + sent + (self._failed(evicted, now) if evicted is not None else [])

    def _rereg_at(self, b: Binding, now: float) -> float:
        return now + max(1.0, (b.expires - now) * self.timers.reregister_fraction)

    # ---- PBAs --------------------------------------------------------------------------------
    def _on_pba(self, src: str, pba: BindingAck, now: float) -> list[Effect]:
        if not pba.d:
            self.counters["pba_without_d"] += 1
        if src != self.cmd:
            if src in self.failover.cmds:
                return []  # a late answer from a CMD we moved away from: its PBUs were sent again
            return self._on_direct_pba(src, pba, now)
        out = self.retx.pending.get((src, pba.sequence))
        if out is None:
            return []  # not an answer to a PBU in flight (late, duplicated or made up): ignored
        if not M.echo_matches(out.sent, pba):
            self.counters["pba_echo_mismatch"] += 1
            return []  # its echo does not match the copy sent last: ignored
        self.retx.acknowledge(src, pba.sequence)
        effects: list[Effect] = [CancelTimer(out.key)]
        b = self.bindings.get(out.mn_id)
        if b is None or b.pbu is not out:
            return effects
        b.pbu = None
        if out.context[2]:  # it answers our de-registration
            if pba.accepted and pba.lifetime > 0:  # variant B: the CMD renewed our BCE
                b.expires = now + pba.lifetime
                return effects + [SetTimer(TimerKey(TimerKind.EXPIRE, b.mn_id), b.expires)]
            if b.role is Role.ANCHOR and not pba.accepted:
                # An audit refused (say 157: the serving MAAR's latest PBU was stamped a little
                # later by its clock) says nothing about the session: keep anchoring, ask again.
                return effects + self._audit_later(b, now)
            return effects + self._remove(b, now, ReportKind.DEREGISTERED, "lifetime expired")
        if not pba.accepted or pba.lifetime == 0:
            return effects + self._refused(b, now, pba.status, out.tries)
        if self._lma_pool is not None and not self._assigned(b, pba):
            return effects + self._refused(b, now, Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX, out.tries)
        b.role, b.fresh, b.serving_maar = Role.SERVING, False, None
        b.expires = now + pba.lifetime
        before = b.anchors
        b.anchors = {p.maar: p.prefix for p in pba.previous_maars if p.maar != self.address}
        b.dlif = {a: d for a in b.anchors if (d := M.dlif_of(pba, a)) is not None}
        withdrawn = set(before.items()) - set(b.anchors.items())
        effects += [self._changed(b.mn_id), *self._advertised(b, now, withdrawn),
                    SetTimer(TimerKey(TimerKind.EXPIRE, b.mn_id), b.expires)]
        if b.attached:
            effects.append(SetTimer(TimerKey(TimerKind.REREGISTER, b.mn_id), self._rereg_at(b, now)))
        kind = ReportKind.HANDOVER if b.anchors else ReportKind.REGISTERED
        return effects + [Report(kind, b.mn_id, f"at {self.info.name} with {len(b.anchors)} P-MAAR(s)")]

    def _assigned(self, b: Binding, pba: BindingAck) -> bool:
        """Legacy mode: take the prefix the CMD assigned from the LMA's pool (the PBA's one HNP); an
        answer without one, or with another than the prefix we already hold, is a refusal."""
        hnps = pba.hnps
        if len(hnps) != 1 or b.prefix not in (ALL_ZERO, hnps[0]):
            return False
        if b.prefix == ALL_ZERO:
            if not self._assignable(hnps[0], 0):
                return False
            b.prefix = hnps[0]
        return True

    def _assignable(self, prefix: Prefix, stamp: int) -> bool:
        """Legacy mode: whether ``prefix``, which the CMD assigned to an MN registering here, comes from
        the LMA's pool; at the LMA it is then in use here (adopted), so that a stale PBU cannot
        adopt it again for another binding."""
        if self._lma_pool is None or not self._lma_pool.contains(prefix):
            return False
        return not self.pool.contains(prefix) or self.pool.adopt(prefix, stamp)

    def _on_direct_pba(self, src: str, pba: BindingAck, now: float) -> list[Effect]:
        """Locator mode (§3.3): a P-MAAR tells us directly which prefix it anchors for our MN."""
        if self.domain.mode is not Mode.LOCATOR:
            return []  # no direct PBAs in this mode: a stray answer, ignored
        b = self.bindings.get(pba.mn_id or "")
        hnps = pba.hnps
        if (src not in self.peers or b is None or b.role is Role.ANCHOR or not pba.accepted or len(hnps) != 1
                or pba.serving_maar != self.address or not self._peer_pools[src].contains(hnps[0])
                or not self._expected(b, src, hnps[0], pba.timestamp, now)):
            # only a MAAR of the domain, about our MN, with a prefix of its own pool, and expected
            self.counters["direct_pba_refused"] += 1
            return []
        b.anchors[src] = hnps[0]
        dlif = M.dlif_of(pba, None)
        if dlif is not None:
            b.dlif[src] = dlif
        effects: list[Effect] = [self._changed(b.mn_id)]
        return effects + (self._advertised(b, now) if b.role is Role.SERVING else [])

    def _expected(self, b: Binding, src: str, prefix: Prefix, stamp: Optional[int], now: float) -> bool:
        """Whether a direct PBA from ``src`` about ``prefix`` is one we can expect (docs/security.md).

        The direct PBA may come before the CMD's PBA that lists the P-MAARs (docs/mode-locator.md),
        so we cannot check it against that list then. We take it while our registration is in
        flight, if the CMD's PBU it answers (the echoed Timestamp) was written after that
        registration (a clock window of tolerance) and not in the future: a replayed or delayed
        direct PBA of an earlier handover is older. The CMD's PBA replaces the anchors with its own
        list in any case. Once that PBA came, only what it listed is taken (a late copy: its DLIF)."""
        if b.anchors.get(src) == prefix:
            return True
        out = b.pbu
        if out is None or out.context[2] or out.sent is None or stamp is None or out.sent.timestamp is None:
            return False
        window = self.timers.timestamp_window * 65536
        return out.sent.timestamp - window <= stamp <= now * 65536 + window

    def _refused(self, b: Binding, now: float, status: int, tries: int) -> list[Effect]:
        detail = f"registration refused by the CMD ({status})"
        if (status == Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED and b.role is Role.REGISTERING and b.attached
                and not b.retried):
            # The MN is here, yet the CMD holds a newer registration: with clocks up to a window apart
            # that may be a move that came after ours in time. Send once more, a fresh timestamp two
            # windows later, which is then newer than any stamped before our attachment (Decisions).
            b.retried = True
            return [SetTimer(TimerKey(TimerKind.REREGISTER, b.mn_id), now + 2 * self.timers.timestamp_window)]
        if (status == Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX and b.role is Role.REGISTERING and b.fresh
                and b.attached and not b.retried):
            # The CMD still binds this prefix to another MN (its session outlived our quarantine):
            # keep it out of use a while longer and register once more with the next one.
            fresh = self.pool.allocate(now)
            self.pool.release(b.prefix, now + self._unanswered())
            if fresh is not None:
                b.prefix, b.retried = fresh, True
                return self._register(b, M.HI_NEW_INTERFACE, now)
        if b.role is Role.SERVING and b.serving_maar is None:  # an update refused: the accepted binding stands
            return [Report(ReportKind.REJECTED, b.mn_id, detail + "; the earlier registration stays", status)]
        if b.serving_maar is not None:  # the CMD places the MN elsewhere: be (or stay) its P-MAAR there
            b.role, b.fresh, b.anchors, b.dlif = Role.ANCHOR, False, {}, {}
            return [CancelTimer(TimerKey(TimerKind.REREGISTER, b.mn_id)), self._changed(b.mn_id), Report(ReportKind.REJECTED, b.mn_id, detail, status)]
        if tries > 1:  # an earlier transmission may have been accepted, its PBA lost
            quarantine = self._unanswered()
        elif b.fresh:  # refused at the first try: the prefix was never bound nor advertised
            quarantine = 0.0
        else:
            quarantine = self.timers.min_delay_before_bce_delete
        return self._remove(b, now, ReportKind.REJECTED, detail, status, quarantine)

    def _failed(self, failed: Outstanding, now: float) -> list[Effect]:
        """Our PBU ``failed``: unanswered after its tries, or evicted by newer ones (retransmit.py)."""
        b = self.bindings.get(failed.mn_id)
        if b is None or b.pbu is not failed:
            return []
        b.pbu = None
        if failed.final and not failed.context[2]:  # the MN left while we registered it
            return self._abandoned(b, now)
        if failed.context[2] and b.role is Role.ANCHOR:  # an audit unanswered (the CMD is down?): keep
            return self._audit_later(b, now)
        detail = f"no PBA from the CMD after {failed.tries} tries"
        if b.attached and not failed.context[2]:
            # The MN is still here. The CMD may hold the session (it accepted a copy whose answers
            # were lost) or be away a while: dropping the MN would leave it unserved either way. Keep
            # the binding and ask again at the slowest retransmission pace (Decisions: an unanswered
            # registration).
            again = self.timers.max_bindack_timeout
            return [Report(ReportKind.FAILED, b.mn_id, f"{detail}; asking again in {again:g} s"),
                    SetTimer(TimerKey(TimerKind.REREGISTER, b.mn_id), now + again)]
        return self._remove(b, now, ReportKind.FAILED, detail, quarantine=self._unanswered())

    def _audit_later(self, b: Binding, now: float) -> list[Effect]:
        """Only the CMD's explicit "not listed" (accepted, lifetime 0) ends an anchor: a refused or
        unanswered audit keeps it and asks again after ``_audit_retry`` (Decisions: the P-MAAR audit)."""
        b.expires = now + self._audit_retry()
        return [SetTimer(TimerKey(TimerKind.EXPIRE, b.mn_id), b.expires)]

    def _audit_retry(self) -> float:
        return max(self.timers.max_bindack_timeout, self.timers.lifetime / 8)

    def _abandoned(self, b: Binding, now: float) -> list[Effect]:
        """Our registration went unanswered and the MN left meanwhile: keep what the CMD last told us."""
        if b.serving_maar is not None:  # the CMD placed the MN elsewhere: tunnel our prefix there
            b.role, b.fresh, b.anchors, b.dlif = Role.ANCHOR, False, {}, {}
            return [self._changed(b.mn_id)]  # its EXPIRE timer stays: the audit (Decisions)
        if b.role is Role.SERVING:
            return []  # the accepted registration stands; its lifetime governs it
        return self._remove(b, now, ReportKind.DEREGISTERED, "registration abandoned: the MN left before it "
                            "was answered", quarantine=self._unanswered())

    def _unanswered(self) -> float:
        """Quarantine for a prefix whose PBU went unanswered: the CMD may hold a BCE for it until
        its lifetime and grace run out."""
        return self.timers.lifetime + 2 * self.timers.min_delay_before_bce_delete

    def _remove(self, b: Binding, now: float, kind: ReportKind, detail: str, status: Optional[int] = None,
                quarantine: Optional[float] = None) -> list[Effect]:
        """Forget ``b``: its flows go, its prefix returns to the pool after ``quarantine`` seconds
        (MinDelayBeforeBCEDelete unless told otherwise)."""
        del self.bindings[b.mn_id]
        effects: list[Effect] = self.retx.cancel(b.pbu) if b.pbu is not None else []
        if quarantine is None:
            quarantine = self.timers.min_delay_before_bce_delete
        if self.pool.contains(b.prefix):  # (legacy mode: not so away from the LMA)
            self.pool.release(b.prefix, now + quarantine, b.last_cmd_ts)
        return effects + [CancelTimer(TimerKey(TimerKind.REREGISTER, b.mn_id)), CancelTimer(TimerKey(TimerKind.EXPIRE, b.mn_id)),
                          CancelTimer(TimerKey(TimerKind.ADVERTISE, b.mn_id)),
                          DataPlaneChanged(b.mn_id, EMPTY), Report(kind, b.mn_id, detail, status)]

    # ---- PBUs from the CMD -------------------------------------------------------------------
    def _answer(self, pbu: BindingUpdate, status: int, lifetime: int, to: tuple[str, ...], extra=()) -> list[Effect]:
        pba = M.pba_for(pbu, status, lifetime, extra)
        return [Send(dst, pba) for dst in to]

    def _on_pbu(self, src: str, pbu: BindingUpdate, now: float) -> list[Effect]:
        if src != self.cmd:
            return self._answer(pbu, Status.MAG_NOT_AUTHORIZED_FOR_PROXY_REG, 0, (src,))
        missing = missing_mandatory(pbu)
        if missing is not None:
            return self._answer(pbu, missing, 0, (src,))
        if not pbu.d:
            self.counters["pbu_without_d"] += 1
        b = self.bindings.get(pbu.mn_id)
        smaar = pbu.serving_maar
        if smaar is not None and smaar != self.address and smaar not in self.peers:
            # we would tunnel the MN's traffic to a host that is not a MAAR of the domain
            self.counters["serving_maar_refused"] += 1
            return self._answer(pbu, Status.ADMINISTRATIVELY_PROHIBITED, 0, (src,))
        ts = pbu.timestamp
        if ts is not None:
            if abs(ts / 65536 - now) > self.timers.timestamp_window:
                return self._answer(pbu, Status.TIMESTAMP_MISMATCH, 0, (src,))
            if (b is not None and pbu.sequence == b.last_cmd_seq and smaar == b.last_cmd_smaar
                    and ts >= b.last_cmd_ts):
                # A copy of the CMD PBU we applied last (duplicated, or sent again because our answer
                # was lost): answer it again and change nothing, whatever happened here since.
                return self._answer(pbu, Status.ACCEPTED, pbu.lifetime, (src,))
            if b is not None and ts < b.last_cmd_ts:
                return self._answer(pbu, Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED, 0, (src,))
        if b is not None and b.prefix == ALL_ZERO and pbu.lifetime and self._assignable(pbu.hnps[0], ts or 0):
            b.prefix = pbu.hnps[0]  # legacy: the PBA to our registration was lost; the CMD's PBU carries the prefix
        if (b is not None and smaar == self.address and pbu.lifetime == 0 and pbu.hnps[0] != b.prefix
                and b.role is not Role.ANCHOR):
            return self._withdrawn(b, pbu, now)
        if b is None or pbu.hnps[0] != b.prefix:
            if pbu.lifetime == 0:
                if b is None and ts:  # already gone; an older PBU still on its way must not revive it
                    self.pool.stamp_release(pbu.hnps[0], ts)
                return self._answer(pbu, Status.ACCEPTED, 0, (src,))
            if b is None and len(self.bindings) >= self.timers.max_sessions:
                return self._answer(pbu, Status.INSUFFICIENT_RESOURCES, 0, (src,))
            if b is None and smaar and smaar != self.address and self.pool.adopt(pbu.hnps[0], ts or 0):
                # We dropped this binding (say, our registration seemed unanswered) but the CMD holds it:
                # the CMD is the source of truth, so anchor the prefix again.
                b = self.bindings[pbu.mn_id] = Binding(pbu.mn_id, pbu.hnps[0], False, Role.ANCHOR, att=pbu.att or 3)
            elif b is None and smaar == self.address and pbu.mn_ll_id and self._claim(pbu.hnps[0], ts or 0):
                return self._rebuilt(pbu, now)
            else:
                return self._answer(pbu, Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX, 0, (src,))
        b.last_cmd_ts, b.last_cmd_seq, b.last_cmd_smaar = ts or b.last_cmd_ts, pbu.sequence, smaar
        if pbu.lifetime == 0:
            if b.role is not Role.ANCHOR and b.attached:
                # The MN is here: a de-registration written before our latest registration, or the
                # CMD let the session expire. Keep serving and register again (unless in flight).
                effects = self._answer(pbu, Status.ACCEPTED, 0, (src,))
                return effects + (self._register(b, M.HI_REREGISTRATION, now) if b.pbu is None else [])
            # the session ended: remove everything for this MN
            return self._answer(pbu, Status.ACCEPTED, 0, (src,)) + self._remove(b, now, ReportKind.DEREGISTERED, "by the CMD")
        if smaar == self.address:  # the CMD confirms that we serve the MN (Decisions: stale CMD PBUs)
            effects = self._answer(pbu, Status.ACCEPTED, pbu.lifetime, (src,))
            if b.role is not Role.ANCHOR:
                return effects + self._overdue(b, now)
            # A stale PBU took our serving role away before this, newer, word of the CMD arrived:
            # serve again; our registration brings back the P-MAAR list.
            b.role, b.fresh = Role.REGISTERING, False
            return effects + [self._changed(b.mn_id), Report(ReportKind.MOVED, b.mn_id, "back here: the CMD "
                                                             "confirms we serve")] + self._register(b, M.HI_REREGISTRATION, now)
        if smaar is None:
            return self._answer(pbu, Status.ACCEPTED, pbu.lifetime, (src,))
        if b.role is not Role.ANCHOR and b.attached and b.pbu is not None:
            # The MN is attached here and our registration is in flight: the CMD wrote this before it
            # saw that registration, which will move the session here. Remember it in case it is refused.
            b.serving_maar = smaar
            effects = [self._changed(b.mn_id)] if b.role is Role.REGISTERING else []
            return effects + self._answer(pbu, Status.ACCEPTED, pbu.lifetime, (src,))
        return self._become_previous(b, pbu, smaar, now)

    def _withdrawn(self, b: Binding, pbu: BindingUpdate, now: float) -> list[Effect]:
        """The CMD de-registered one of our MN's old prefixes (a PBU with lifetime 0 for it, naming
        us Serving MAAR): its anchor left the session because its tunnel went idle. Drop the uplink
        tunnel and advertise the prefix once with valid lifetime 0 from its DLIF: the MN stops
        preferring it (RFC 4862 §5.5.3(e) lets a host keep the address until its remaining valid
        lifetime, at most 2 h, runs out: docs/anchor-release.md)."""
        b.last_cmd_ts, b.last_cmd_seq, b.last_cmd_smaar = pbu.timestamp or b.last_cmd_ts, pbu.sequence, self.address
        effects = self._answer(pbu, Status.ACCEPTED, 0, (self.cmd,)) + self._overdue(b, now)
        gone = {(a, p) for a, p in b.anchors.items() if p == pbu.hnps[0]}
        if not gone:
            return effects
        for anchor, _ in gone:
            del b.anchors[anchor]
            b.dlif.pop(anchor, None)
        names = ", ".join(sorted(self.peers[a].name if a in self.peers else a for a, _ in gone))
        return effects + [self._changed(b.mn_id), *self._advertised(b, now, gone),
                          Report(ReportKind.DEREGISTERED, b.mn_id, f"anchor {names} released by the CMD: "
                                 f"{pbu.hnps[0]} withdrawn")]

    def _overdue(self, b: Binding, now: float) -> list[Effect]:
        """The CMD named us Serving MAAR (a "you serve" or a withdrawal) while our registration for
        this attached MN is overdue (sent again at least once): the CMD accepted a copy and its PBAs
        were lost. Send it anew now, with all its tries, rather than serve the MN only after the
        failure's slow retry (Decisions: an unanswered registration). A registration sent only
        once is just in flight: its PBA may be a moment behind."""
        out = b.pbu
        if not b.attached or out is None or out.context[2] or out.final or out.tries < 2:
            return []
        return self._register(b, out.context[0], now)

    def _claim(self, prefix: Prefix, stamp: int) -> bool:
        """Whether we may serve ``prefix`` again as the CMD rebuilds us: one of our pool's (adopted),
        or in legacy mode one of the LMA's (the CMD assigned it; we anchor nothing)."""
        if self._lma_pool is not None and self._lma_pool.contains(prefix) and not self.pool.contains(prefix):
            return True
        return self.pool.adopt(prefix, stamp)

    def _rebuilt(self, pbu: BindingUpdate, now: float) -> list[Effect]:
        """We restarted and lost our bindings; the CMD, the source of truth, tells us that we serve
        this MN (Serving MAAR = us, with its MN-LL-ID). Serve it on our access port and register at
        once: the PBA brings back the P-MAAR list and sends the MN an RA (Decisions: rebuilt MAAR)."""
        b = self.bindings[pbu.mn_id] = Binding(pbu.mn_id, pbu.hnps[0], False, Role.REGISTERING, mac=pbu.mn_ll_id,
                                               port=self.access_port, att=pbu.att or 3, attached=True)
        b.last_cmd_ts, b.last_cmd_seq, b.last_cmd_smaar = pbu.timestamp or 0, pbu.sequence, self.address
        return (self._answer(pbu, Status.ACCEPTED, pbu.lifetime, (self.cmd,))
                + [Report(ReportKind.MOVED, b.mn_id, "rebuilt by the CMD: served here")]
                + self._register(b, M.HI_REREGISTRATION, now))

    def _become_previous(self, b: Binding, pbu: BindingUpdate, smaar: str, now: float) -> list[Effect]:
        """§3.2-3.4: the MN is at ``smaar`` now: tunnel our prefix there, answer the CMD (and, in
        locator mode, the S-MAAR)."""
        if not self.pool.contains(b.prefix):  # legacy mode, away from the LMA: we anchor nothing
            name = self.peers[smaar].name if smaar in self.peers else smaar
            return (self._answer(pbu, Status.ACCEPTED, pbu.lifetime, (self.cmd,))
                    + self._remove(b, now, ReportKind.MOVED, f"now at {name}; the LMA anchors {b.prefix}"))
        effects: list[Effect] = self.retx.cancel(b.pbu) if b.pbu is not None else []
        superseded = b.pbu is not None and b.role is not Role.ANCHOR
        b.pbu = None
        b.role, b.fresh = Role.ANCHOR, False
        b.serving_maar, b.anchors, b.dlif = smaar, {}, {}
        # In both de-registration variants the anchor asks the CMD at the end of the lifetime the CMD
        # gave (variant B's renewal exchange; in serving-only mode an audit: Decisions).
        b.expires = now + pbu.lifetime
        effects += [CancelTimer(TimerKey(TimerKind.REREGISTER, b.mn_id)), self._changed(b.mn_id),
                    SetTimer(TimerKey(TimerKind.EXPIRE, b.mn_id), b.expires)]
        to = (self.cmd, smaar) if self.domain.mode is Mode.LOCATOR else (self.cmd,)
        effects += self._answer(pbu, Status.ACCEPTED, pbu.lifetime, to, M.dlif_options(self.info))
        detail = f"now at {self.peers[smaar].name if smaar in self.peers else smaar}"
        if superseded:
            detail += "; our own registration was superseded"
        return effects + [Report(ReportKind.MOVED, b.mn_id, detail)]

    # ---- timers ------------------------------------------------------------------------------
    def _on_timer(self, key, now: float) -> list[Effect]:
        if key == FAILOVER_KEY:
            return self._fail_over(now)
        if type(key) is RetxKey:
            effects, failed = self.retx.fire(key, now)
            return effects + self._failed(failed, now) if failed is not None else effects
        if type(key) is HeartbeatKey:
            return self.heartbeats.handle_timer(key, now)
        b = self.bindings.get(key.mn_id)
        if b is None:
            return []
        if key.kind is TimerKind.ADVERTISE:
            return self._advertised(b, now) if b.role is Role.SERVING and b.attached else []
        if key.kind is TimerKind.REREGISTER and b.role is Role.SERVING and b.attached and b.pbu is None:
            return self._register(b, M.HI_REREGISTRATION, now)
        if key.kind is TimerKind.REREGISTER and b.role is Role.REGISTERING and b.attached and b.pbu is None:
            return self._register(b, M.HI_BETWEEN_MAARS, now)  # the one retry after a 157
        if key.kind is TimerKind.EXPIRE and b.expires <= now and b.pbu is None:
            return self._register(b, M.HI_UNKNOWN, now, lifetime=0)
        return []

    # ---- liveness of the CMD (RFC 5847) ------------------------------------------------------
    def _on_heartbeat(self, src: str, hb: Heartbeat, now: float) -> list[Effect]:
        effects, restarted = self.heartbeats.handle_message(src, hb, now)
        if restarted is None or src != self.cmd:  # (a standby CMD that restarted holds nothing of ours)
            return effects
        return effects + self._resync(now, "the CMD restarted")

    # ---- fail-over to the next CMD (docs/failover.md) ------------------------------------------
    def _fail_over(self, now: float) -> list[Effect]:
        """The current CMD has been silent for ``failover_timeout`` since a request: signal to the
        next. Every PBU in flight to the old one goes to the new one at once (a new sequence number,
        continuing the old CMD's, and a fresh timestamp: the new CMD takes it as any registration),
        a Heartbeat tells it our Restart Counter, and what we hold is told again as after a CMD
        restart (``_resync``): the new CMD may not share the old one's bindings."""
        old = self.cmd
        new = self.failover.fire(now, lambda peer: (v := self.heartbeats.view(peer)) is None or v.reachable)
        if new is None:
            return []
        self.cmd = new
        self.retx.carry_seq(old, new)
        effects: list[Effect] = [Report(ReportKind.FAILOVER, "", f"CMD {old} silent for "
                                        f"{self.failover.timeout:g} s: now signalling to {new}")]
        # At most max_outstanding PBUs were in flight to the old CMD and none is to the new one (we
        # left it with none), so none is evicted here; the snapshot guards the loop all the same.
        for b in [b for b in self.bindings.values() if b.pbu is not None and b.pbu.dst == old]:
            out = b.pbu
            effects += self.retx.cancel(out)
            sent, b.pbu, evicted = self.retx.send(new, b.mn_id, out.build, now, out.context)
            b.pbu.final = out.final
            effects += sent + (self._failed(evicted, now) if evicted is not None else [])
        effects.append(SetTimer(HeartbeatKey(new), now))
        return effects + self._resync(now, f"moved to CMD {new}")

    def _resync(self, now: float, why: str) -> list[Effect]:
        """The CMD restarted, or we moved to another (``why``), and it may not hold our sessions: tell
        it again what we hold, paced at RESYNC_RATE. Each attached MN we serve re-registers (its PBA
        brings the P-MAAR list back); each anchor for an MN elsewhere asks with the renewal exchange,
        which keeps it only if the CMD still lists it (Decisions: after a CMD restart). A binding
        whose PBU is in flight needs nothing: its retransmissions reach the new CMD (after a
        fail-over, they were sent there)."""
        serving = [b for b in self.bindings.values() if b.pbu is None and b.role is Role.SERVING and b.attached]
        anchors = [b for b in self.bindings.values() if b.pbu is None and b.role is Role.ANCHOR]
        effects: list[Effect] = []
        for i, b in enumerate(serving + anchors):
            at = now + i / RESYNC_RATE
            if b.role is Role.SERVING:
                effects.append(SetTimer(TimerKey(TimerKind.REREGISTER, b.mn_id), at))
            else:
                b.expires = min(b.expires, at)
                effects.append(SetTimer(TimerKey(TimerKind.EXPIRE, b.mn_id), at))
        return effects + [Report(ReportKind.RENEWED, "", f"{why}: {len(serving)} registration(s) "
                                 f"and {len(anchors)} anchor(s) told again")]
