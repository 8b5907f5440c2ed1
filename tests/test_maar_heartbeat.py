"""The MAAR core and RFC 5847: Heartbeats with the CMD, what it does when the CMD restarted (tell it
again what it holds) and when it restarted itself (take back what the CMD says it holds)."""
from ryu_dmm.mobility import messages as M
from ryu_dmm.mobility.config import Timers
from ryu_dmm.mobility.dataplane import LocalRoute, MnDataPlane, TunnelToAnchor, TunnelToServing
from ryu_dmm.mobility.events import (
    Advertise, Attach, DataPlaneChanged, RaPrefix, Received, Report, ReportKind, Send, SetTimer, TimerFired, TimerKey,
    TimerKind,
)
from ryu_dmm.mobility.heartbeat import HeartbeatKey
from ryu_dmm.mobility.maar import MaarCore, Role
from ryu_dmm.wire import Heartbeat, Prefix, RestartCounter, Status
from tests.sim import CMD, START, domain

A1, A2 = "2001:db8:ff::1", "2001:db8:ff::2"
P1, P2 = Prefix.parse("2001:db8:1::/64"), Prefix.parse("2001:db8:2::/64")
MAC = bytes.fromhex("020000000001")
ACCESS_PORT = 10
TIMERS = Timers(lifetime=40, heartbeat_interval=1.0, missing_heartbeats_allowed=3)


def sends(effects):
    return [e.msg for e in effects if type(e) is Send]


def core(counter: int = 3) -> MaarCore:
    return MaarCore(domain(2, timers=TIMERS), "maar1", restart_counter=counter, access_port=ACCESS_PORT)


def beat(maar: MaarCore, now: float, cmd_counter: int) -> list:
    """One heartbeat round: our request, the CMD's answer carrying ``cmd_counter``."""
    (req,) = sends(maar.handle(TimerFired(HeartbeatKey(CMD)), now))
    return maar.handle(Received(CMD, Heartbeat(req.sequence, response=True, options=(RestartCounter(cmd_counter),))),
                       now + 0.01)


def serving_and_anchoring(maar: MaarCore, now: float) -> None:
    """mn1 attached and registered here; mn2 anchored here, served at maar2."""
    (pbu,) = sends(maar.handle(Attach("mn1", MAC, ACCESS_PORT), now))
    maar.handle(Received(CMD, M.pba_for(pbu, Status.ACCEPTED, 40)), now)
    (pbu2,) = sends(maar.handle(Attach("mn2", bytes.fromhex("020000000002"), ACCESS_PORT), now))
    maar.handle(Received(CMD, M.pba_for(pbu2, Status.ACCEPTED, 40)), now)
    p2 = maar.bindings["mn2"].prefix
    (pba,) = sends(maar.handle(Received(CMD, M.pbu(7, now, "mn2", p2, 40, M.HI_BETWEEN_MAARS, 3, serving=A2)), now))
    assert pba.accepted and maar.bindings["mn2"].role is Role.ANCHOR
    assert maar.bindings["mn1"].role is Role.SERVING


def test_start_watches_the_cmd_and_requests_carry_our_counter():
    maar = core(counter=3)
    (first,) = maar.start(START)
    assert first == SetTimer(HeartbeatKey(CMD), first.at) and START <= first.at < START + 1
    effects = maar.handle(TimerFired(HeartbeatKey(CMD)), first.at)
    assert effects == [Send(CMD, Heartbeat(1, options=(RestartCounter(3),))), SetTimer(HeartbeatKey(CMD), first.at + 1)]
    # the CMD's own requests are answered with our counter
    assert maar.handle(Received(CMD, Heartbeat(77, options=(RestartCounter(1),))), START) == [
        Send(CMD, Heartbeat(77, response=True, options=(RestartCounter(3),)))]
    assert maar.handle(Received(A2, Heartbeat(5)), START) == []  # not our peer: counted only
    assert maar.heartbeats.counters["not_a_peer"] == 1


def test_cmd_unreachable_after_three_misses():
    maar = core()
    maar.start(START)
    reports = []
    for i in range(4):
        reports += [e for e in maar.handle(TimerFired(HeartbeatKey(CMD)), START + i) if type(e) is Report]
    assert [r.kind for r in reports] == [ReportKind.PEER_UNREACHABLE]
    assert not maar.heartbeats.view(CMD).reachable


def test_cmd_restart_makes_us_tell_it_everything_again():
    maar = core()
    maar.start(START)
    serving_and_anchoring(maar, START)
    assert [e for e in beat(maar, START + 1, 1) if type(e) is SetTimer] == []  # first counter: just learnt
    effects = beat(maar, START + 2, 2)  # the CMD restarted
    mn1, mn2 = TimerKey(TimerKind.REREGISTER, "mn1"), TimerKey(TimerKind.EXPIRE, "mn2")
    t = START + 2.01
    assert [e for e in effects if type(e) is SetTimer] == [SetTimer(mn1, t), SetTimer(mn2, t + 0.001)]
    assert [r.kind for r in effects if type(r) is Report] == [ReportKind.PEER_RESTARTED, ReportKind.RENEWED]
    # the serving binding re-registers (HI 5, its prefix, MAC, full lifetime) ...
    (rereg,) = sends(maar.handle(TimerFired(mn1), t))
    assert (rereg.mn_id, rereg.hnps, rereg.handoff, rereg.lifetime, rereg.mn_ll_id) == ("mn1", (P1,), 5, 40, MAC)
    # ... and the anchor asks with the renewal exchange (lifetime 0)
    (audit,) = sends(maar.handle(TimerFired(mn2), t + 0.001))
    assert (audit.mn_id, audit.lifetime, audit.handoff) == ("mn2", 0, 4)
    # a CMD that no longer lists the anchor answers lifetime 0: it goes
    effects = maar.handle(Received(CMD, M.pba_for(audit, Status.ACCEPTED, 0)), t + 0.01)
    assert "mn2" not in maar.bindings and DataPlaneChanged("mn2", MnDataPlane()) in effects


def test_anchor_kept_when_the_restarted_cmd_still_lists_it():
    maar = core()
    maar.start(START)
    serving_and_anchoring(maar, START)
    beat(maar, START + 1, 1)
    beat(maar, START + 2, 2)
    (audit,) = sends(maar.handle(TimerFired(TimerKey(TimerKind.EXPIRE, "mn2")), START + 2.011))
    maar.handle(Received(CMD, M.pba_for(audit, Status.ACCEPTED, 28)), START + 2.02)
    b = maar.bindings["mn2"]
    assert b.role is Role.ANCHOR and b.expires == START + 2.02 + 28
    assert maar.dataplane("mn2") == MnDataPlane(to_serving=(TunnelToServing(b.prefix, A2),))


def test_restarted_maar_takes_back_a_served_mn_from_the_cmd():
    maar = core()  # restarted: no bindings
    pbu = M.pbu(40, START, "mn1", P1, 40, M.HI_REREGISTRATION, 3, mac=MAC, serving=A1)
    effects = maar.handle(Received(CMD, pbu), START)
    pba, rereg = sends(effects)
    assert (pba.status, pba.lifetime, pba.sequence) == (Status.ACCEPTED, 40, 40)
    assert (rereg.mn_id, rereg.hnps, rereg.handoff, rereg.mn_ll_id, rereg.lifetime) == ("mn1", (P1,), 5, MAC, 40)
    b = maar.bindings["mn1"]
    assert (b.role, b.mac, b.port, b.attached) == (Role.REGISTERING, MAC, ACCESS_PORT, True)
    assert maar.pool.in_use == 1
    # the PBA to our registration brings back the P-MAAR list; the data plane and an RA follow
    answer = M.pba_for(rereg, Status.ACCEPTED, 40, M.previous_maar_options([(A2, P2)], maar.peers))
    effects = maar.handle(Received(CMD, answer), START + 0.01)
    assert DataPlaneChanged("mn1", MnDataPlane(local=(LocalRoute(P1, MAC, ACCESS_PORT),),
                                               to_anchor=(TunnelToAnchor(P2, A2, MAC, ACCESS_PORT),))) in effects
    (ra,) = [e for e in effects if type(e) is Advertise]
    assert (ra.mac, ra.port, ra.prefixes) == (MAC, ACCESS_PORT, (RaPrefix(P1, 40, 40), RaPrefix(P2, 0, 40, A2)))
    assert maar.bindings["mn1"].role is Role.SERVING


def test_restarted_maar_takes_back_an_anchor_from_the_cmd():
    maar = core()
    pbu = M.pbu(41, START, "mn1", P1, 40, M.HI_BETWEEN_MAARS, 3, serving=A2)
    (pba,) = sends(maar.handle(Received(CMD, pbu), START))
    assert pba.status == Status.ACCEPTED
    assert maar.dataplane("mn1") == MnDataPlane(to_serving=(TunnelToServing(P1, A2),))


def test_a_serving_pbu_without_mn_ll_id_or_with_a_foreign_prefix_is_refused():
    maar = core()
    no_mac = M.pbu(1, START, "mn1", P1, 40, M.HI_REREGISTRATION, 3, serving=A1)
    (pba,) = sends(maar.handle(Received(CMD, no_mac), START))
    assert pba.status == Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX and not maar.bindings
    foreign = M.pbu(2, START, "mn1", P2, 40, M.HI_REREGISTRATION, 3, mac=MAC, serving=A1)
    (pba,) = sends(maar.handle(Received(CMD, foreign), START))
    assert pba.status == Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX and not maar.bindings
