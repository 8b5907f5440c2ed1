"""Anchor liveness (flowmirror/liveness.py) event by event: counters read from flow stats, resets by
pushes and reconnections, the idle verdict, and the mirror's polling (one request in flight per
switch, table from_tunnel only). Counts and times are hand-worked."""
from ryu_dmm.flowmirror import CoreOutput, FlowMirror, FlowStatsReplied, MirrorKey, MirrorTimer, RequestFlowStats, SwitchUp
from ryu_dmm.flowmirror.liveness import AnchorLiveness
from ryu_dmm.mobility.events import AnchorIdle, BindingChanged, SetTimer, TimerFired
from ryu_dmm.mobility.views import Session
from ryu_dmm.pipeline import InstalledFlow, cookie_of, load
from ryu_dmm.wire import Prefix
from tests.test_flowmirror import A1, A2, MAC, switches

P1, P2 = Prefix.parse("2001:db8:1::/64"), Prefix.parse("2001:db8:2::/64")
S = Session("mn1", A2, P2, MAC, ((A1, P1),), 1e9)  # served at maar2, its old prefix anchored at maar1
TO = 100.0


def exit_flow(maar: str, packets: int, mn: str = "mn1", prefix: Prefix = P1) -> InstalledFlow:
    """The from_tunnel flow of ``prefix`` (table 3): ipv6_dst at the serving MAAR, ipv6_src at the anchor."""
    field = "ipv6_dst" if maar == A2 else "ipv6_src"
    return InstalledFlow(3, 100, cookie_of(mn), (("eth_type", 0x86DD), (field, str(prefix))), (), packets)


def live(now=0.0) -> AnchorLiveness:
    lv = AnchorLiveness(TO)
    lv.session("mn1", None, S, now)
    return lv


def test_idle_only_once_both_ends_were_read_a_full_timeout_after_the_last_traffic():
    lv = live()
    assert lv.observe(A2, 10, 50.0, [exit_flow(A2, 0)]) == []
    assert lv.observe(A2, 11, 100.0, [exit_flow(A2, 0)]) == []  # maar2 at 100 = 0 + TO, maar1 never read
    (a,) = lv.observe(A1, 12, 100.0, [exit_flow(A1, 0)])
    assert (a.mn_id, a.maar, a.prefix) == ("mn1", A1, P1)


def test_packets_either_way_restart_the_clock_at_the_poll_that_saw_them():
    lv = live()
    lv.observe(A1, 10, 30.0, [exit_flow(A1, 2)])  # 2 uplink packets before 30
    lv.observe(A2, 11, 60.0, [exit_flow(A2, 3)])  # 3 downlink packets before 60
    (t,) = lv.traffic("mn1")
    assert (t.last_traffic, t.idle_since, t.uplink_packets, t.downlink_packets) == (60.0, 60.0, 2, 3)
    assert lv.observe(A1, 12, 159.0, [exit_flow(A1, 2)]) == []
    assert lv.observe(A2, 13, 159.0, [exit_flow(A2, 3)]) == []  # 99 s idle: kept
    assert lv.observe(A1, 14, 160.0, [exit_flow(A1, 2)]) == []
    assert len(lv.observe(A2, 15, 160.0, [exit_flow(A2, 3)])) == 1


def test_push_resets_counters_for_later_polls_only():
    lv = live()
    lv.observe(A2, 10, 10.0, [exit_flow(A2, 7)])
    lv.pushed(A2, "mn1", 20)  # flows replaced by push 20: counters restart at 0
    lv.observe(A2, 15, 30.0, [exit_flow(A2, 7)])  # asked before the push: compared with 7, nothing new
    assert lv.traffic("mn1")[0].downlink_packets == 7
    lv.observe(A2, 21, 40.0, [exit_flow(A2, 7)])  # after it: 7 new packets, although the count did not move
    (t,) = lv.traffic("mn1")
    assert (t.downlink_packets, t.last_traffic) == (14, 40.0)
    lv.observe(A2, 22, 50.0, [exit_flow(A2, 2)])  # fell without a push we know of: 2 new
    assert lv.traffic("mn1")[0].downlink_packets == 16


def test_reconnection_restarts_the_idle_clock_and_other_cookies_do_not_count():
    lv = live()
    lv.switch_up(A1, 5, 70.0)
    assert lv.traffic("mn1")[0].idle_since == 70.0 and lv.traffic("mn1")[0].last_traffic is None
    lv.observe(A1, 6, 80.0, [exit_flow(A1, 9, mn="mn2"), exit_flow(A1, 9, prefix=P2)])
    assert lv.traffic("mn1")[0].uplink_packets == 0


def test_a_handover_restarts_the_clock_and_a_release_forgets_the_anchor():
    lv = live()
    lv.observe(A1, 1, 90.0, [exit_flow(A1, 0)])
    moved = Session("mn1", "2001:db8:ff::3", Prefix.parse("2001:db8:3::/64"), MAC, ((A1, P1), (A2, P2)), 1e9)
    lv.session("mn1", S, moved, 95.0)
    assert sorted((t.maar, t.idle_since) for t in lv.traffic("mn1")) == [(A1, 95.0), (A2, 95.0)]
    assert sorted(lv.switches()) == sorted([A1, A2, "2001:db8:ff::3"])
    lv.session("mn1", moved, None, 96.0)
    assert lv.traffic("mn1") == [] and len(lv) == 0 and lv.switches() == []


def test_mirror_polls_from_tunnel_with_one_request_in_flight_per_switch():
    m = FlowMirror(load(), switches(), anchor_idle_timeout=TO)
    m.handle(SwitchUp(A1), 0.0)
    m.handle(SwitchUp(A2), 0.0)
    out = m.handle(CoreOutput((BindingChanged("mn1", S),)), 1.0)
    assert SetTimer(MirrorKey(MirrorTimer.POLL, 0), 1.0 + TO / 4) in out
    polls = []
    for k in range(1, 6):  # the switches never answer: still one poll each in flight
        out = m.handle(TimerFired(MirrorKey(MirrorTimer.POLL, 0)), 1.0 + k * TO / 4)
        polls += [e for e in out if type(e) is RequestFlowStats]
    assert sorted((e.maar, e.table_id) for e in polls) == [(A1, 3), (A2, 3)]
    replies = {e.maar: e.xid for e in polls}
    m.handle(FlowStatsReplied(A1, replies[A1], (exit_flow(A1, 0),)), 200.0)
    out = m.handle(FlowStatsReplied(A2, replies[A2], (exit_flow(A2, 0),)), 200.0)
    assert [e for e in out if type(e) is AnchorIdle] == []  # asked at 26, idle since 1: not yet
    assert [t.uplink_packets for t in m.anchor_traffic("mn1")] == [0]


def test_no_timeout_no_polls():
    m = FlowMirror(load(), switches())
    m.handle(SwitchUp(A1), 0.0)
    out = m.handle(CoreOutput((BindingChanged("mn1", S),)), 1.0)
    assert not [e for e in out if type(e) is SetTimer and e.key.kind is MirrorTimer.POLL]
    assert m.anchor_traffic("mn1") == []
