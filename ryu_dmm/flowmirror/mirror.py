"""The flow mirror: what a controller knows about the MAAR switches it drives, as a sans-IO state machine.

With ``flow_control = cmd`` (the default) the CMD runs one for every MAAR's switch: the CMD core
decides where each MN is served and anchored (``BindingChanged``). With ``flow_control = maar`` each
MAAR agent runs one for its own switch (``local``): its ``MaarCore``'s ``DataPlaneChanged`` is
rendered, with the same pipeline, barriers and reconciliation (docs/flow-control.md). This module
turns that into OpenFlow work and keeps track of it: the flows wanted and pushed per switch and MN, the MNs' access ports
learnt from packet-ins, barriers outstanding, PBAs held until their switch has confirmed the flows
they announce, and reconciliation of a (re)connected switch from its flow stats. Events in
(``events.py``), effects out; the Ryu shell turns effects into OpenFlow messages and timers.

Why hold PBAs: a MAAR sends the MN its Router Advertisement when its PBA arrives, so a PBA that
overtakes its switch's flows lets the MN's first packets meet a switch that cannot forward them yet.
In a MAAR's own mirror the same rule holds its RAs (``Advertise``) and the PBAs it sends as a
P-MAAR (RFC 8885 §3.2: the P-MAAR sets up its tunnel, then answers) until its switch confirms.
A hold never outlasts ``hold_timeout``: a switch that does not answer cannot stall signalling.
"""
from __future__ import annotations

import itertools
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Optional

from ..mobility.dataplane import MnDataPlane
from ..mobility.events import Advertise, AnchorIdle, BindingChanged, DataPlaneChanged, Send, SetTimer, CancelTimer, \
    TimerFired
from ..mobility.views import Session, dataplanes
from ..pipeline import Flow, InstalledFlow, MaarView, Pipeline, SwitchPorts, base_flows, cookie_of, diff, mn_flows, \
    undeclared
from ..wire import BindingAck
from .events import (
    ApplyDiff, BarrierReplied, CoreOutput, FlowStatsReady, FlowStatsReplied, FlowsConfirmed, MirrorKey, MirrorTimer,
    Noted, NoteKind, PortBound, PortLearnt, QueryFlows, ReplaceFlows, RequestFlowStats, SwitchDown, SwitchUp,
)
from .liveness import AnchorLiveness, AnchorTraffic

HOLD_TIMEOUT = 0.5  # seconds a PBA may wait for its switch's barrier reply or the MN's port: well
# under the MAAR's first retransmission (INITIAL_BINDACK_TIMEOUT, 1 s), so a hold never causes one
STATS_TIMEOUT = 3.0  # seconds for a complete flow-stats reply; a reconciliation is then asked again
MAX_QUERIES = 16  # flow-stats queries (REST) in flight at once; more are answered None at once
MAX_UNCLAIMED_PORTS = 4096  # ports learnt for MACs with no session served there (spoofed RSs); oldest forgotten
POLLS_PER_TIMEOUT = 4  # anchor liveness: polls per anchor_idle_timeout; an idle anchor goes within 1.25 x it


@dataclass(frozen=True)
class Switch:
    """A MAAR's edge switch as configured: its port roles and what rendering needs to know."""

    ports: SwitchPorts
    view: MaarView


def configured_switches(domain, settings, only: Optional[str] = None) -> dict[str, Switch]:
    """MAAR address -> its edge switch, for the MAARs whose switch ports are configured (``only``:
    that MAAR's alone, for its own agent)."""
    dlif = {m.address: m.mac for m in domain.maars}
    out = {}
    for sw in settings.switches:
        m = domain.maar(sw.maar)
        if only is None or m.address == only:
            ports = SwitchPorts(sw.core_port, sw.tunnel_port, sw.agent_port, sw.access_ports)
            out[m.address] = Switch(ports, MaarView(m.mac, sw.core_gateway_mac, settings.tunnel_key, dlif))
    return out


@dataclass
class _Stats:
    maar: str
    token: Optional[int]  # None: for a reconciliation or a poll
    flows: list = field(default_factory=list)
    poll_at: Optional[float] = None  # a liveness poll: when it was asked


@dataclass
class _Hold:
    send: object  # a Send (PBA) or, in a MAAR's own mirror, an Advertise
    on: tuple  # ("barrier", maar, xid) or ("port", mn_id)


class FlowMirror:
    """Mirror of the CMD's sessions into the MAAR switches' flow tables (see the module docstring).

    ``handle(event, now)`` takes the events of ``flowmirror.events`` and a ``TimerFired`` whose key
    is a ``MirrorKey``; it returns the effects ``ReplaceFlows``, ``ApplyDiff``, ``RequestFlowStats``,
    ``FlowStatsReady``, ``FlowsConfirmed``, ``Noted``, ``PortBound``, ``SetTimer``/``CancelTimer`` with mirror
    keys, and the core's own effects passed through (``Send`` possibly later, once released). With an
    ``anchor_idle_timeout`` it also polls the tunnel-exit counters (``liveness.py``) and returns
    ``AnchorIdle``, an event for the CMD core, for an anchor idle that long.
    Read-only queries: ``wanted_flows``, ``flows_confirmed``, ``connected``, ``has_switch``,
    ``anchor_traffic``.

    ``local``: the address of the MAAR whose agent runs this mirror for its own switch (the one entry
    of ``switches``): it renders that MAAR core's ``DataPlaneChanged`` effects (passed on too), and
    holds that MAAR's PBAs and ``Advertise`` effects about an MN until its switch confirms the MN's
    flows. The MN's port is in the core's state, so nothing waits for a packet-in.
    """

    def __init__(self, pipeline: Pipeline, switches: dict[str, Switch], hold_timeout: float = HOLD_TIMEOUT,
                 stats_timeout: float = STATS_TIMEOUT, anchor_idle_timeout: float = 0.0,
                 local: Optional[str] = None) -> None:
        if local is not None and set(switches) != {local}:
            raise ValueError("a MAAR's own mirror drives its own switch only")
        self.pipeline = pipeline
        self._local = local
        self._local_state: dict[str, MnDataPlane] = {}  # MN -> what our MAAR core wants (local mirror)
        self._switches = dict(switches)
        self._hold_timeout, self._stats_timeout = hold_timeout, stats_timeout
        self._connected: set[str] = set()
        self._sessions: dict[str, Session] = {}
        self._ports: dict[tuple[str, bytes], int] = {}  # (MAAR, MN MAC) -> access port, from packet-ins
        self._unclaimed: OrderedDict = OrderedDict()  # keys of _ports no session is served at: bounded
        self._at: dict[tuple[str, bytes], str] = {}  # (serving MAAR, MN MAC) -> MN: a packet-in finds its session
        self._installed: dict[str, dict[str, tuple[Flow, ...]]] = {}  # MN -> MAAR -> its flows there
        self._confirming: dict[str, tuple[float, dict[str, int]]] = {}  # MN -> (pushed at, MAAR -> barrier)
        self._barrier_mn: dict[tuple[str, int], str] = {}
        self._confirmed: dict[str, tuple[float, float]] = {}
        self._holds: dict[int, _Hold] = {}
        self._waiting: dict[tuple, list[int]] = defaultdict(list)  # what a hold waits on -> hold ids
        self._stats: dict[int, _Stats] = {}  # xid -> request in flight
        self._ids = itertools.count(1)
        self._out: list = []
        self._live = AnchorLiveness(anchor_idle_timeout)
        self._polling = False  # the POLL timer is set
        self._poll_at = 0.0  # when it was set to fire: the next one is a period after, not after it fired
        self._tunnel_exit = pipeline.table("from_tunnel").id

    # ---- read-only queries ------------------------------------------------------------------------
    def has_switch(self, maar: str) -> bool:
        return maar in self._switches

    def connected(self, maar: str) -> bool:
        return maar in self._connected

    def flows_confirmed(self, mn_id: str) -> Optional[tuple[float, float]]:
        """(pushed at, every barrier answered at) of the MN's latest confirmed flows."""
        return self._confirmed.get(mn_id)

    def learnt_port(self, maar: str, mac: bytes) -> tuple[Optional[str], Optional[int]]:
        """(the MN served at ``maar`` with ``mac``, or None; the access port learnt for it, or None):
        what the CMD stores so that a restart does not wait for the MN's next RS."""
        return self._at.get((maar, mac)), self._ports.get((maar, mac))

    def anchor_traffic(self, mn_id: str) -> list[AnchorTraffic]:
        """Per anchor of the MN: last traffic seen, idle since, packets (empty when not polling)."""
        return self._live.traffic(mn_id)

    def wanted_flows(self, maar: str) -> list[Flow]:
        """Every flow the MAAR's switch should hold now: base flows, then one group per MN."""
        flows = self._checked(maar, base_flows(self._switches[maar].ports, self.pipeline))
        for per_maar in self._installed.values():
            flows += per_maar.get(maar, ())
        return flows

    # ---- events -----------------------------------------------------------------------------------
    def handle(self, event, now: float) -> list:
        kind = type(event)
        if kind is CoreOutput:
            self._core_output(event.effects, now)
        elif kind is BarrierReplied:
            self._barrier(event.maar, event.xid, now)
        elif kind is PortLearnt:
            self._port_learnt(event, now)
        elif kind is FlowStatsReplied:
            self._stats_reply(event)
        elif kind is QueryFlows:
            self._query(event, now)
        elif kind is SwitchUp:
            self._connected.add(event.maar)
            if event.maar in self._switches:
                self._live.switch_up(event.maar, next(self._ids), now)
                self._request_stats(event.maar, None, now)
        elif kind is SwitchDown:
            self._switch_down(event.maar)
        elif kind is TimerFired and type(event.key) is MirrorKey:
            self._timer(event.key, now)
        out, self._out = self._out, []
        return out

    def _core_output(self, effects: Iterable, now: float) -> None:
        if not self._switches:  # a signalling-only domain: nothing to render or hold
            self._out += [e for e in effects if type(e) is not BindingChanged]
            return
        rest = []
        for e in effects:
            kind = type(e)
            if kind is BindingChanged:
                self._binding_changed(e, now)
                continue
            if kind is DataPlaneChanged and self._local is not None:
                self._local_changed(e, now)
            rest.append(e)
        for e in rest:  # flows first: a PBA (or, at a MAAR, an RA) may have to wait for them
            if type(e) is Send and type(e.msg) is BindingAck or type(e) is Advertise and self._local is not None:
                on = self._hold_reason(e)
                if on is not None:
                    self._hold(e, on, now)
                    continue
            self._out.append(e)

    def _binding_changed(self, e: BindingChanged, now: float) -> None:
        old = self._sessions.pop(e.mn_id, None)
        if self._live.timeout:
            self._live.session(e.mn_id, old, e.session, now)
            if len(self._live) and not self._polling:
                self._polling = True
                self._poll_at = now + self._live.timeout / POLLS_PER_TIMEOUT
                self._out.append(SetTimer(MirrorKey(MirrorTimer.POLL, 0), self._poll_at))
        if old is not None and old.mac and self._at.get((old.serving, old.mac)) == e.mn_id:
            del self._at[(old.serving, old.mac)]
            self._unclaim((old.serving, old.mac))
        s = e.session
        if s is not None:
            self._sessions[e.mn_id] = s
            if s.mac:
                key = (s.serving, s.mac)
                self._at[key] = e.mn_id
                self._unclaimed.pop(key, None)
                port = self._ports.get(key)
                if port is not None and (old is None or (old.serving, old.mac) != key):
                    self._out.append(PortBound(s.serving, s.mac, port))
        else:
            self._forget(e.mn_id)
        self._resync(e.mn_id, now)

    def _local_changed(self, e: DataPlaneChanged, now: float) -> None:
        if e.state.empty:
            self._local_state.pop(e.mn_id, None)
            self._forget(e.mn_id)
        else:
            self._local_state[e.mn_id] = e.state
        self._resync(e.mn_id, now)

    def _forget(self, mn_id: str) -> None:
        """The MN has no state any more: nothing of it is confirmed or waited for."""
        self._confirmed.pop(mn_id, None)
        _, waiting = self._confirming.pop(mn_id, (0.0, {}))
        for maar, xid in waiting.items():  # their replies no longer confirm anything
            self._barrier_mn.pop((maar, xid), None)

    def _tracked(self, mn_id: str) -> bool:
        return mn_id in self._sessions or mn_id in self._local_state

    def _unclaim(self, key: tuple[str, bytes]) -> None:
        """A learnt port no session is served at: kept, but only the newest MAX_UNCLAIMED_PORTS."""
        if key in self._ports:
            self._unclaimed[key] = None
            self._unclaimed.move_to_end(key)
            while len(self._unclaimed) > MAX_UNCLAIMED_PORTS:
                del self._ports[self._unclaimed.popitem(last=False)[0]]

    # ---- rendering and pushing --------------------------------------------------------------------
    def _checked(self, maar: str, flows: Iterable[Flow]) -> list[Flow]:
        """The flows the pipeline declaration allows; the others are refused and noted."""
        ok = []
        for f in flows:
            why = undeclared(self.pipeline, f)
            if why is None:
                ok.append(f)
            else:
                self._out.append(Noted(NoteKind.FLOW_REFUSED, maar, why))
        return ok

    def _states(self, mn_id: str) -> dict[str, MnDataPlane]:
        """MAAR -> its state for the MN: derived from the CMD's session, or our own MAAR core's."""
        if self._local is not None:
            state = self._local_state.get(mn_id)
            return {self._local: state} if state is not None else {}
        s = self._sessions.get(mn_id)
        return {} if s is None else dataplanes(s, self._ports.get((s.serving, s.mac)))

    def _wanted(self, mn_id: str) -> dict[str, tuple[Flow, ...]]:
        out = {}
        for maar, state in self._states(mn_id).items():
            sw = self._switches.get(maar)
            if sw is not None:
                out[maar] = tuple(self._checked(maar, mn_flows(mn_id, state, sw.ports, sw.view)))
        return out

    def _resync(self, mn_id: str, now: float) -> dict[str, int]:
        """Bring every switch involved with the MN (before or after) to what its session wants.
        Returns MAAR -> barrier xid of the switches it pushed to."""
        want = self._wanted(mn_id)
        old = self._installed.get(mn_id, {})
        cookie = cookie_of(mn_id)
        barriers = {}
        for maar in sorted(old.keys() | want.keys()):
            flows = want.get(maar, ())
            if old.get(maar, ()) == flows or maar not in self._connected:
                continue  # unchanged, or the reconciliation at (re)connection brings it
            xid = barriers[maar] = next(self._ids)
            self._out += [ReplaceFlows(maar, cookie, flows, xid), Noted(NoteKind.GROUP_PUSHED, maar)]
            self._live.pushed(maar, mn_id, xid)  # its counters restart at 0
        if want:
            self._installed[mn_id] = want
        else:
            self._installed.pop(mn_id, None)
        if barriers and self._tracked(mn_id):  # a removal confirms nothing anyone waits for
            for maar, xid in barriers.items():
                self._barrier_mn[(maar, xid)] = mn_id
            pushed, waiting = self._confirming.get(mn_id, (now, {}))
            for maar in barriers.keys() & waiting.keys():  # superseded: its reply (if any) confirms nothing
                self._barrier_mn.pop((maar, waiting[maar]), None)
            self._confirming[mn_id] = (pushed, {**waiting, **barriers})
        return barriers

    # ---- held answers -----------------------------------------------------------------------------
    def _hold_reason(self, send) -> Optional[tuple]:
        """What a PBA (or a local RA) must wait for: the barrier of the switch whose flows it
        announces (the PBA's destination's; in a local mirror, our own), or the MN's port."""
        mn_id = send.mn_id if type(send) is Advertise else send.msg.mn_id
        switch = self._local if self._local is not None else send.dst
        confirming = self._confirming.get(mn_id)
        xid = confirming[1].get(switch) if confirming else None
        if xid is not None:
            return ("barrier", switch, xid)
        s = self._sessions.get(mn_id)
        if (s is not None and s.serving == send.dst and s.mac and send.dst in self._connected
                and (s.serving, s.mac) not in self._ports):
            # The RS's packet-in (the MN's port) has not arrived: the serving MAAR has no flows towards
            # the MN yet, so its PBA waits for the packet-in and then for the barrier.
            return ("port", mn_id)
        return None

    def _hold(self, send, on: tuple, now: float) -> None:
        ident = next(self._ids)
        self._holds[ident] = _Hold(send, on)
        self._waiting[on].append(ident)
        self._out.append(SetTimer(MirrorKey(MirrorTimer.HOLD, ident), now + self._hold_timeout))

    def _release(self, on: tuple) -> None:
        for ident in self._waiting.pop(on, ()):
            hold = self._holds.pop(ident, None)
            if hold is not None:
                self._out += [CancelTimer(MirrorKey(MirrorTimer.HOLD, ident)), hold.send]

    def _move_holds(self, old: tuple, new: tuple) -> None:
        idents = self._waiting.pop(old, [])
        for ident in idents:
            self._holds[ident].on = new
        self._waiting[new].extend(idents)

    # ---- switch events ----------------------------------------------------------------------------
    def _barrier(self, maar: str, xid: int, now: float) -> None:
        self._release(("barrier", maar, xid))
        mn_id = self._barrier_mn.pop((maar, xid), None)
        confirming = self._confirming.get(mn_id) if mn_id is not None else None
        if confirming is None or confirming[1].get(maar) != xid:
            return  # a reconciliation's barrier, or superseded by a newer push to the same switch
        pushed, waiting = confirming
        del waiting[maar]
        if not waiting:
            del self._confirming[mn_id]
            if self._tracked(mn_id):
                self._confirmed[mn_id] = (pushed, now)
                self._out.append(FlowsConfirmed(mn_id, pushed, now))

    def _port_learnt(self, ev: PortLearnt, now: float) -> None:
        key = (ev.maar, ev.mac)
        if ev.maar not in self._switches or self._ports.get(key) == ev.port:
            return
        self._ports[key] = ev.port
        self._out.append(Noted(NoteKind.PORT_LEARNT, ev.maar))
        mn_id = self._at.get(key)
        if mn_id is None:
            self._unclaim(key)
            return
        self._out.append(PortBound(ev.maar, ev.mac, ev.port))
        # Its session is served here: its flows towards the MN can go in now.
        xid = self._resync(mn_id, now).get(ev.maar)
        if xid is not None:
            self._move_holds(("port", mn_id), ("barrier", ev.maar, xid))
        else:
            self._release(("port", mn_id))

    def _switch_down(self, maar: str) -> None:
        self._connected.discard(maar)
        for xid, req in list(self._stats.items()):
            if req.maar == maar:
                self._finish_stats(xid, None)
        for (at, xid), mn_id in list(self._barrier_mn.items()):
            if at != maar:
                continue
            # This barrier will never be answered: let its PBAs go, and the MN's flows there are
            # confirmed by the reconciliation when the switch comes back, not by this push.
            del self._barrier_mn[(at, xid)]
            self._release(("barrier", maar, xid))
            pushed, waiting = self._confirming.get(mn_id, (0.0, {}))
            if waiting.get(maar) == xid:
                del waiting[maar]
                if not waiting:
                    del self._confirming[mn_id]
        for ident, hold in list(self._holds.items()):
            if hold.on[0] == "port" and hold.send.dst == maar:
                self._release(hold.on)

    # ---- flow stats: reconciliation and queries ---------------------------------------------------
    def _request_stats(self, maar: str, token: Optional[int], now: float, poll: bool = False) -> None:
        xid = next(self._ids)
        self._stats[xid] = _Stats(maar, token, poll_at=now if poll else None)
        self._out += [RequestFlowStats(maar, xid, self._tunnel_exit if poll else None),
                      SetTimer(MirrorKey(MirrorTimer.STATS, xid), now + self._stats_timeout)]

    def _poll(self, now: float) -> None:
        """Ask every connected switch that is an end of an anchor for its tunnel-exit counters (one
        request in flight per switch), and come back in a quarter of the idle timeout."""
        asking = {r.maar for r in self._stats.values() if r.poll_at is not None}
        for maar in self._live.switches():
            if maar in self._connected and maar not in asking:
                self._request_stats(maar, None, now, poll=True)
        self._polling = bool(len(self._live))
        if self._polling:  # a steady cadence: a late firing does not push every later poll back
            period = self._live.timeout / POLLS_PER_TIMEOUT
            self._poll_at = self._poll_at + period if self._poll_at + period > now else now + period
            self._out.append(SetTimer(MirrorKey(MirrorTimer.POLL, 0), self._poll_at))

    def _query(self, ev: QueryFlows, now: float) -> None:
        busy = sum(1 for r in self._stats.values() if r.token is not None) >= MAX_QUERIES
        if ev.maar not in self._connected or busy:
            if busy:
                self._out.append(Noted(NoteKind.QUERY_REFUSED, ev.maar, f"{MAX_QUERIES} queries in flight"))
            self._out.append(FlowStatsReady(ev.token, None))
            return
        self._request_stats(ev.maar, ev.token, now)

    def _stats_reply(self, ev: FlowStatsReplied) -> None:
        req = self._stats.get(ev.xid)
        if req is None or req.maar != ev.maar:
            return  # late (timed out) or not ours
        req.flows.extend(ev.flows)
        if not ev.more:
            self._out.append(CancelTimer(MirrorKey(MirrorTimer.STATS, ev.xid)))
            self._finish_stats(ev.xid, tuple(req.flows))

    def _finish_stats(self, xid: int, flows: Optional[tuple[InstalledFlow, ...]]) -> None:
        req = self._stats.pop(xid)
        if req.token is not None:
            self._out.append(FlowStatsReady(req.token, flows))
        elif req.poll_at is not None:
            if flows is not None:
                self._out += [AnchorIdle(a.mn_id, a.maar, a.prefix)
                              for a in self._live.observe(req.maar, xid, req.poll_at, flows)]
        elif flows is not None and req.maar in self._connected:
            self._reconcile(req.maar, flows)

    def _reconcile(self, maar: str, installed: tuple[InstalledFlow, ...]) -> None:
        """Delete what no session wants, add what is missing, then a barrier."""
        delete, add = diff(self.pipeline, self.wanted_flows(maar), installed)
        self._out += [ApplyDiff(maar, delete, add, next(self._ids)),
                      Noted(NoteKind.RECONCILED, maar, f"{len(delete)} removed, {len(add)} added")]

    def _timer(self, key: MirrorKey, now: float) -> None:
        if key.kind is MirrorTimer.HOLD:
            hold = self._holds.pop(key.ident, None)
            if hold is not None:
                idents = self._waiting.get(hold.on, [])
                idents.remove(key.ident)
                if not idents:
                    self._waiting.pop(hold.on, None)
                self._out.append(hold.send)
        elif key.kind is MirrorTimer.POLL:
            self._poll(now)
        elif key.kind is MirrorTimer.STATS and key.ident in self._stats:
            req = self._stats[key.ident]
            self._finish_stats(key.ident, None)
            if req.token is None and req.poll_at is None and req.maar in self._connected:
                self._out.append(Noted(NoteKind.NOT_RECONCILED, req.maar, "no complete flow stats in time; asked again"))
                self._request_stats(req.maar, None, now)
