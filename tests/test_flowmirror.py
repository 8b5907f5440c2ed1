"""The CMD's flow mirror at the level of its events and effects.

Expected behaviour is the design's rule (docs/architecture.md): a PBA to a MAAR leaves only after
that MAAR's switch confirmed (barrier) the flows its announcement relies on, or after the hold
timeout; a (re)connected switch is brought to exactly the wanted flows; each flow-stats request is
answered to its own requester.
"""
from importlib import resources

import pytest

from ryu_dmm.flowmirror import (
    ApplyDiff, BarrierReplied, CoreOutput, FlowMirror, FlowsConfirmed, FlowStatsReady, FlowStatsReplied, MirrorKey,
    MirrorTimer, Noted, NoteKind, PortBound, PortLearnt, QueryFlows, ReplaceFlows, RequestFlowStats, Switch, SwitchDown,
    SwitchUp,
)
from ryu_dmm.flowmirror.mirror import HOLD_TIMEOUT, MAX_QUERIES, MAX_UNCLAIMED_PORTS
from ryu_dmm.mobility import messages as M
from ryu_dmm.mobility.events import BindingChanged, Report, ReportKind, Send, SetTimer, TimerFired
from ryu_dmm.mobility.views import Session
from ryu_dmm.pipeline import PIPELINE, InstalledFlow, MaarView, SwitchPorts, cookie_of, flow_key, load, match_key, parse
from ryu_dmm.wire import Prefix

A1, A2 = "2001:db8:ff::1", "2001:db8:ff::2"
MAC = bytes.fromhex("020000000a01")
P1, P2 = Prefix.parse("2001:db8:1::/64"), Prefix.parse("2001:db8:2::/64")
PORTS = SwitchPorts(core=1, tunnel=2, agent=3, access=(10,))
BASE_A1 = 10  # docs/pipeline.md: per access port 5 punted ICMPv6 types, 1 flow into uplink and 1 for
# unrouted frames; 3 more
T = 1000.0


def switches():
    dlif = {A1: bytes.fromhex("02000000aa01"), A2: bytes.fromhex("02000000aa02")}
    return {a: Switch(PORTS, MaarView(dlif[a], bytes.fromhex("02000000ffff"), 7, dlif)) for a in (A1, A2)}


def pba(mn="mn1"):
    return Send(A1, M.pba_for(M.pbu(1, T, mn, P1, 40, 1, 3, MAC), 0, 40))


def at_maar1(mn="mn1", pmaars=()):
    return BindingChanged(mn, Session(mn, A1, P1, MAC, pmaars, T + 40))


def up(mirror, *maars):
    """Connect switches holding nothing yet (reconciled against empty flow stats)."""
    for m in maars:
        req = next(e for e in mirror.handle(SwitchUp(m), T) if type(e) is RequestFlowStats)
        mirror.handle(FlowStatsReplied(m, req.xid, ()), T)


def of(effects, kind):
    return [e for e in effects if type(e) is kind]


def test_a_signalling_only_domain_passes_everything_but_binding_changes():
    m = FlowMirror(load(), {})
    report = Report(ReportKind.REGISTERED, "mn1")
    assert m.handle(CoreOutput((pba(), at_maar1(), report)), T) == [pba(), report]


def test_pba_waits_for_the_port_then_for_the_barrier():
    m = FlowMirror(load(), switches())
    up(m, A1, A2)
    out = m.handle(CoreOutput((pba(), at_maar1())), T)
    assert not of(out, Send) and not of(out, ReplaceFlows)  # no port yet: nothing towards the MN
    assert of(out, SetTimer)[0].key.kind is MirrorTimer.HOLD
    out = m.handle(PortLearnt(A1, MAC, 10), T + 0.01)
    push = of(out, ReplaceFlows)
    assert len(push) == 1 and push[0].maar == A1 and push[0].cookie == cookie_of("mn1")
    assert len(push[0].flows) == 2 and not of(out, Send)  # docs/pipeline.md: 2 flows per local prefix
    out = m.handle(BarrierReplied(A1, push[0].barrier + 1000), T + 0.02)  # someone else's barrier
    assert not of(out, Send)
    out = m.handle(BarrierReplied(A1, push[0].barrier), T + 0.03)
    assert of(out, Send) == [pba()]
    assert of(out, FlowsConfirmed) == [FlowsConfirmed("mn1", T + 0.01, T + 0.03)]
    assert m.flows_confirmed("mn1") == (T + 0.01, T + 0.03)


def test_a_switch_that_never_answers_delays_a_pba_by_the_hold_timeout_only():
    m = FlowMirror(load(), switches())
    up(m, A1)
    m.handle(PortLearnt(A1, MAC, 10), T)
    out = m.handle(CoreOutput((pba(), at_maar1())), T)
    timer = of(out, SetTimer)[0]
    assert timer.at == T + HOLD_TIMEOUT and not of(out, Send)
    assert m.handle(TimerFired(timer.key), timer.at) == [pba()]
    assert m.handle(TimerFired(timer.key), timer.at) == []  # released once


def test_disconnected_switch_gets_nothing_and_is_reconciled_on_connection():
    m = FlowMirror(load(), switches())
    m.handle(PortLearnt(A1, MAC, 10), T)
    out = m.handle(CoreOutput((pba(), at_maar1())), T)
    # nothing to wait for (the switch is not there); the learnt port now belongs to mn1's session
    assert out == [PortBound(A1, MAC, 10), pba()]
    req = of(m.handle(SwitchUp(A1), T), RequestFlowStats)[0]
    wanted = m.wanted_flows(A1)
    stale = InstalledFlow(2, 5, 0x99, match_key([("eth_type", 0x86DD), ("ipv6_dst", "2001:db8:77::/64")]))
    tables = {t.name: t.id for t in m.pipeline.tables}
    present = [InstalledFlow(*flow_key(m.pipeline, f)) for f in wanted[1:]]
    assert m.handle(FlowStatsReplied(A1, req.xid, tuple(present[:3]), more=True), T) == []
    out = m.handle(FlowStatsReplied(A1, req.xid, tuple(present[3:]) + (stale,)), T)
    diff = of(out, ApplyDiff)
    assert len(diff) == 1 and diff[0].delete == (stale,) and diff[0].add == (wanted[0],)
    assert of(out, Noted)[0].kind is NoteKind.RECONCILED


def test_a_flow_whose_actions_changed_while_the_switch_was_away_is_replaced():
    """Same table, priority, cookie and match, other actions: the MN moved while the switch was
    disconnected, so its local route must become a tunnel to the new serving MAAR."""
    m = FlowMirror(load(), switches())
    m.handle(PortLearnt(A1, MAC, 10), T)
    m.handle(CoreOutput((at_maar1(),)), T)
    old = [InstalledFlow(*flow_key(m.pipeline, f)) for f in m.wanted_flows(A1)]  # what it held then
    m.handle(CoreOutput((BindingChanged("mn1", Session("mn1", A2, P2, MAC, ((A1, P1),), T + 40)),)), T + 1)
    req = of(m.handle(SwitchUp(A1), T + 2), RequestFlowStats)[0]
    diff = of(m.handle(FlowStatsReplied(A1, req.xid, tuple(old)), T + 2), ApplyDiff)[0]
    downlink = [e for e in diff.delete if e.table_id == 2]
    assert len(downlink) == 1 and ("output", 10) in downlink[0].actions  # the local route goes
    new = [f for f in diff.add if f.table == "downlink"]
    assert len(new) == 1 and ("set_field:tun_ipv6_dst", A2) in new[0].actions  # the tunnel comes
    assert match_key(new[0].match) == downlink[0].match  # the same flow identity, other actions


def test_flow_queries_are_answered_each_to_its_own_requester_during_a_reconciliation():
    m = FlowMirror(load(), switches())
    recon = of(m.handle(SwitchUp(A1), T), RequestFlowStats)[0]
    q1 = of(m.handle(QueryFlows(A1, token=1), T), RequestFlowStats)[0]
    q2 = of(m.handle(QueryFlows(A1, token=2), T), RequestFlowStats)[0]
    assert len({recon.xid, q1.xid, q2.xid}) == 3
    entry = InstalledFlow(0, 1, 0, ())
    out = m.handle(FlowStatsReplied(A1, q2.xid, (entry,)), T)
    assert out == [out[0], FlowStatsReady(2, (entry,))] and not of(out, ApplyDiff)
    out = m.handle(FlowStatsReplied(A1, q1.xid, ()), T)
    assert of(out, FlowStatsReady) == [FlowStatsReady(1, ())]
    out = m.handle(FlowStatsReplied(A1, recon.xid, ()), T)
    assert of(out, ApplyDiff) and not of(out, FlowStatsReady)


def test_second_reply_part_for_a_finished_query_is_ignored_and_answers_stay_separate():
    m = FlowMirror(load(), switches())
    up(m, A1)
    q1 = of(m.handle(QueryFlows(A1, token=1), T), RequestFlowStats)[0]
    q2 = of(m.handle(QueryFlows(A1, token=2), T), RequestFlowStats)[0]
    e1, e2 = InstalledFlow(0, 1, 0, ()), InstalledFlow(1, 2, 0, ())
    assert of(m.handle(FlowStatsReplied(A1, q2.xid, (e2,)), T), FlowStatsReady) == [FlowStatsReady(2, (e2,))]
    assert of(m.handle(FlowStatsReplied(A1, q1.xid, (e1,)), T), FlowStatsReady) == [FlowStatsReady(1, (e1,))]
    assert m.handle(FlowStatsReplied(A1, q1.xid, (e2,)), T) == []


def test_queries_are_bounded_and_a_lost_switch_answers_none():
    m = FlowMirror(load(), switches())
    up(m, A1)
    assert of(m.handle(QueryFlows(A2, token=99), T), FlowStatsReady) == [FlowStatsReady(99, None)]  # not connected
    for token in range(MAX_QUERIES):
        assert of(m.handle(QueryFlows(A1, token=token), T), RequestFlowStats)
    out = m.handle(QueryFlows(A1, token=100), T)
    assert of(out, FlowStatsReady) == [FlowStatsReady(100, None)] and of(out, Noted)[0].kind is NoteKind.QUERY_REFUSED
    out = m.handle(SwitchDown(A1), T)
    assert sorted(r.token for r in of(out, FlowStatsReady)) == list(range(MAX_QUERIES))
    assert all(r.flows is None for r in of(out, FlowStatsReady))


def test_a_query_times_out_with_none_and_a_reconciliation_is_asked_again():
    m = FlowMirror(load(), switches())
    recon = of(m.handle(SwitchUp(A1), T), RequestFlowStats)[0]
    query = m.handle(QueryFlows(A1, token=5), T)
    q_timer = next(e for e in query if type(e) is SetTimer)
    assert m.handle(TimerFired(q_timer.key), q_timer.at) == [FlowStatsReady(5, None)]
    out = m.handle(TimerFired(MirrorKey(MirrorTimer.STATS, recon.xid)), T + 3)
    again = of(out, RequestFlowStats)
    assert again and again[0].xid != recon.xid and of(out, Noted)[0].kind is NoteKind.NOT_RECONCILED


def test_a_handover_pushes_both_switches_and_the_end_of_a_session_removes_every_group():
    m = FlowMirror(load(), switches())
    up(m, A1, A2)
    m.handle(PortLearnt(A2, MAC, 10), T)
    moved = BindingChanged("mn1", Session("mn1", A2, P2, MAC, ((A1, P1),), T + 40))
    out = m.handle(CoreOutput((moved,)), T)
    pushes = {e.maar: e for e in of(out, ReplaceFlows)}
    assert set(pushes) == {A1, A2}
    assert len(pushes[A2].flows) == 4 and len(pushes[A1].flows) == 2  # local + one tunnel; one tunnel
    out = m.handle(CoreOutput((BindingChanged("mn1", None),)), T + 1)
    assert {(e.maar, e.flows) for e in of(out, ReplaceFlows)} == {(A1, ()), (A2, ())}
    assert m.flows_confirmed("mn1") is None


def test_flows_the_declaration_does_not_allow_are_refused_and_counted():
    text = resources.files(PIPELINE[0]).joinpath(PIPELINE[1]).read_text()
    narrow = parse(text.replace('match = ["eth_type", "ipv6_dst"]', 'match = ["eth_type"]'))  # downlink
    m = FlowMirror(narrow, switches())
    up(m, A1)
    m.handle(PortLearnt(A1, MAC, 10), T)
    out = m.handle(CoreOutput((at_maar1(),)), T)
    refused = [e for e in of(out, Noted) if e.kind is NoteKind.FLOW_REFUSED]
    assert len(refused) == 1 and "does not match on ipv6_dst" in refused[0].detail
    push = of(out, ReplaceFlows)[0]
    assert [f.table for f in push.flows] == ["uplink"]  # the declared half still goes in


@pytest.mark.parametrize("reconnect", ["down-up", "up-again"])
def test_a_switch_lost_mid_push_releases_its_held_pbas(reconnect):
    m = FlowMirror(load(), switches())
    up(m, A1)
    m.handle(PortLearnt(A1, MAC, 10), T)
    out = m.handle(CoreOutput((pba(), at_maar1())), T)
    assert not of(out, Send)
    out = m.handle(SwitchDown(A1), T + 0.1)
    assert of(out, Send) == [pba()]
    assert m.flows_confirmed("mn1") is None


def test_ports_learnt_for_macs_without_a_session_are_bounded():
    """An access port spoofing Router Solicitations from ever new MACs: the mirror keeps at most
    MAX_UNCLAIMED_PORTS such ports, and never forgets the port of an MN whose session is served."""
    m = FlowMirror(load(), switches())
    up(m, A1)
    m.handle(PortLearnt(A1, MAC, 10), T)
    m.handle(CoreOutput((at_maar1(),)), T)  # MAC's port is claimed by mn1's session
    for i in range(MAX_UNCLAIMED_PORTS + 50):
        m.handle(PortLearnt(A1, (0x020000100000 + i).to_bytes(6, "big"), 10), T)
    assert len(m._ports) == MAX_UNCLAIMED_PORTS + 1 and (A1, MAC) in m._ports
    # the newest unclaimed ones are kept, the oldest forgotten
    assert (A1, (0x020000100000 + MAX_UNCLAIMED_PORTS + 49).to_bytes(6, "big")) in m._ports
    assert (A1, (0x020000100000).to_bytes(6, "big")) not in m._ports
    assert len(m.wanted_flows(A1)) == BASE_A1 + 2  # mn1 still has its local route


def test_lost_barrier_replies_leave_no_bookkeeping_behind():
    m = FlowMirror(load(), switches())
    up(m, A1, A2)
    m.handle(PortLearnt(A1, MAC, 10), T)
    for i in range(100):  # a switch that never answers barriers, pushes superseding each other
        pmaars = ((A2, P2),) if i % 2 else ()
        m.handle(CoreOutput((at_maar1(pmaars=pmaars),)), T + i)
    assert len(m._barrier_mn) <= 2  # at most the latest push per switch
    m.handle(CoreOutput((BindingChanged("mn1", None),)), T + 200)
    pending = {k for k in m._barrier_mn}
    assert all(m._barrier_mn[k] != "mn1" for k in pending) and "mn1" not in m._confirming
