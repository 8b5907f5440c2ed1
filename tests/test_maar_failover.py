"""A MAAR with several CMDs (issue 10 item 4, docs/failover.md): the sans-IO fail-over decision and
what the MAAR core does with it. Expected times come from the documented budget (failover_timeout,
RFC 5213's INITIAL_BINDACK_TIMEOUT of 1 s, FACTS.md), sequence numbers from RFC 6275 §9.5.1
(each new PBU one more, modulo 2**16), timestamps from RFC 5213 §5.5 (fresh at each transmission)."""
import dataclasses

import pytest

from ryu_dmm.mobility import messages as M
from ryu_dmm.mobility.config import Timers
from ryu_dmm.mobility.events import (
    Advertise, Attach, CancelTimer, Received, Report, ReportKind, RetxKey, Send, SetTimer, TimerFired, TimerKey,
    TimerKind,
)
from ryu_dmm.mobility.failover import KEY, CmdFailover
from ryu_dmm.mobility.heartbeat import HeartbeatKey
from ryu_dmm.mobility.maar import MaarCore, Role
from ryu_dmm.wire import BindingUpdate, Heartbeat, RestartCounter, Status
from tests.sim import CMD, START, domain

CMD2, CMD3 = "2001:db8:ff::101", "2001:db8:ff::102"
MAC = bytes.fromhex("020000000001")
FAILOVER = 2.0  # [timers] failover_timeout, the documented default
TIMERS = Timers(lifetime=40, heartbeat_interval=1.0, missing_heartbeats_allowed=3)


def sends(effects, to=None):
    return [e.msg for e in effects if type(e) is Send and (to is None or e.dst == to)]


def core(*cmds: str, timers: Timers = TIMERS) -> MaarCore:
    return MaarCore(dataclasses.replace(domain(2, timers=timers), cmd_addresses=cmds), "maar1", 3, 10)


# ---- the decision alone ---------------------------------------------------------------------------
def test_the_clock_runs_from_the_first_request_and_a_word_from_the_cmd_stops_it():
    f = CmdFailover((CMD, CMD2), FAILOVER)
    pbu = Send(CMD, BindingUpdate(1, 40))
    assert f.sent([pbu], START) == [SetTimer(KEY, START + FAILOVER)]
    assert f.sent([pbu], START + 1) == []  # a retransmission: the clock keeps its start
    assert f.sent([Send(CMD2, BindingUpdate(2, 40))], START + 1) == []  # not the current CMD
    assert f.heard(CMD2) == []  # a word from another CMD says nothing of this one
    assert f.heard(CMD) == [CancelTimer(KEY)]
    assert f.fire(START + FAILOVER, lambda _: True) is None  # a stale timer: nothing due
    assert f.sent([Send(CMD, Heartbeat(1, response=True))], START + 3) == []  # answers are not requests
    assert f.sent([Send(CMD, Heartbeat(9))], START + 3) == [SetTimer(KEY, START + 3 + FAILOVER)]
    assert f.fire(START + 3 + FAILOVER - 0.5, lambda _: True) is None  # not yet
    assert f.fire(START + 3 + FAILOVER, lambda _: True) == CMD2 and f.current == CMD2 and f.moves == 1


def test_the_next_cmd_skips_one_known_to_be_down_and_wraps_around():
    f = CmdFailover((CMD, CMD2, CMD3), FAILOVER)
    f.sent([Send(CMD, BindingUpdate(1, 40))], START)
    assert f.fire(START + FAILOVER, lambda peer: peer != CMD2) == CMD3
    f.sent([Send(CMD3, BindingUpdate(2, 40))], START + 3)
    assert f.fire(START + 3 + FAILOVER, lambda peer: False) == CMD  # none known alive: simply the next


@pytest.mark.parametrize("cmds,timeout", [((CMD,), FAILOVER), ((CMD, CMD2), 0.0)])
def test_one_cmd_or_timeout_zero_never_moves(cmds, timeout):
    f = CmdFailover(cmds, timeout)
    assert f.sent([Send(CMD, BindingUpdate(1, 40))], START) == []
    assert f.fire(START + 100, lambda _: True) is None and f.current == CMD


def test_the_list_must_be_distinct_and_not_empty():
    for bad in ((), (CMD, CMD)):
        with pytest.raises(ValueError):
            CmdFailover(bad, FAILOVER)


# ---- the MAAR core -----------------------------------------------------------------------------------
def test_a_registration_in_flight_moves_to_the_next_cmd_and_completes_there():
    maar = core(CMD, CMD2)
    start = [e for e in maar.start(START)]
    assert SetTimer(HeartbeatKey(CMD), START) in start and any(e.key == HeartbeatKey(CMD2) for e in start)
    effects = maar.handle(Attach("mn1", MAC, 10), START)
    (first,) = sends(effects, CMD)
    assert SetTimer(KEY, START + FAILOVER) in effects  # the silence clock starts with the PBU
    # RFC 5213: retransmitted after INITIAL_BINDACK_TIMEOUT (1 s), still to the first CMD
    (again,) = sends(maar.handle(TimerFired(RetxKey(CMD, first.sequence)), START + 1), CMD)
    assert again.sequence == first.sequence and again.timestamp > first.timestamp
    # the first CMD said nothing for failover_timeout: the registration goes to the next one at once
    moved = maar.handle(TimerFired(KEY), START + FAILOVER)
    assert any(type(e) is Report and e.kind is ReportKind.FAILOVER for e in moved)
    assert maar.cmd == CMD2 and sends(moved, CMD) == []
    (pbu,) = [m for m in sends(moved, CMD2) if type(m) is BindingUpdate]
    assert pbu.sequence == (first.sequence + 1) & 0xFFFF  # numbering goes on (RFC 6275 §9.5.1)
    assert pbu.timestamp == M.pbu(0, START + FAILOVER, "x", first.hnps[0], 4, 1, 3).timestamp  # fresh
    assert (pbu.mn_id, pbu.hnps, pbu.mn_ll_id, pbu.lifetime) == (first.mn_id, first.hnps, first.mn_ll_id,
                                                                   first.lifetime)
    assert CancelTimer(RetxKey(CMD, first.sequence)) in moved  # no more copies to the silent CMD
    assert SetTimer(HeartbeatKey(CMD2), START + FAILOVER) in moved  # tell it our counter now
    assert SetTimer(KEY, START + FAILOVER + FAILOVER) in moved  # and watch the new one's silence
    done = maar.handle(Received(CMD2, M.pba_for(pbu, Status.ACCEPTED, 40)), START + FAILOVER + 0.01)
    assert maar.bindings["mn1"].role is Role.SERVING
    assert CancelTimer(KEY) in done and any(type(e) is Advertise for e in done)
    # a late PBA from the CMD we left changes nothing; its PBUs are refused (RFC 5213 status 154)
    assert maar.handle(Received(CMD, M.pba_for(again, Status.ACCEPTED, 40)), START + 3) == []
    (pba,) = sends(maar.handle(Received(CMD, M.pbu(9, START + 3, "mn1", first.hnps[0], 40, 1, 3)), START + 3))
    assert pba.status == Status.MAG_NOT_AUTHORIZED_FOR_PROXY_REG


def test_an_idle_maar_moves_on_unanswered_heartbeats_and_tells_the_next_cmd_what_it_serves():
    maar = core(CMD, CMD2)
    maar.start(START)
    (pbu,) = sends(maar.handle(Attach("mn1", MAC, 10), START))
    maar.handle(Received(CMD, M.pba_for(pbu, Status.ACCEPTED, 40)), START)
    t = START + 10
    effects = maar.handle(TimerFired(HeartbeatKey(CMD)), t)
    (req,) = sends(effects, CMD)
    assert type(req) is Heartbeat and not req.response and SetTimer(KEY, t + FAILOVER) in effects
    maar.handle(TimerFired(HeartbeatKey(CMD)), t + 1)  # unanswered, and the next
    moved = maar.handle(TimerFired(KEY), t + FAILOVER)
    assert maar.cmd == CMD2
    rereg = TimerKey(TimerKind.REREGISTER, "mn1")
    assert SetTimer(rereg, t + FAILOVER) in moved  # re-registered at once (paced, as after a CMD restart)
    (again,) = sends(maar.handle(TimerFired(rereg), t + FAILOVER), CMD2)
    assert type(again) is BindingUpdate and again.mn_id == "mn1" and again.hnps == pbu.hnps
    assert again.sequence == (pbu.sequence + 1) & 0xFFFF


def test_an_answering_cmd_is_kept_and_a_standby_restart_is_no_resync():
    maar = core(CMD, CMD2)
    maar.start(START)
    (pbu,) = sends(maar.handle(Attach("mn1", MAC, 10), START))
    # the CMD is alive (its Heartbeat request), though slow with the PBA: no fail-over
    assert CancelTimer(KEY) in maar.handle(Received(CMD, Heartbeat(5, options=(RestartCounter(1),))), START + 1.5)
    assert maar.handle(TimerFired(KEY), START + FAILOVER) == [] and maar.cmd == CMD
    # a standby CMD's counter changes: it holds nothing of ours, nothing to tell it
    for counter in (1, 2):
        effects = maar.handle(TimerFired(HeartbeatKey(CMD2)), START + counter * 3)
        (req,) = sends(effects, CMD2)
        got = maar.handle(Received(CMD2, Heartbeat(req.sequence, response=True,
                                                   options=(RestartCounter(counter),))), START + counter * 3)
        assert not any(type(e) is Report and e.kind is ReportKind.RENEWED for e in got)


def test_a_single_cmd_never_arms_the_clock():
    maar = MaarCore(domain(2, timers=TIMERS), "maar1", 3, 10)
    effects = maar.start(START) + maar.handle(Attach("mn1", MAC, 10), START)
    assert not any(getattr(e, "key", None) == KEY for e in effects)


def test_at_the_bound_every_pbu_in_flight_moves_and_none_is_evicted():
    """timers.max_outstanding PBUs in flight to the silent CMD (the retransmitter's bound): all of
    them move to the next CMD, none fails."""
    maar = core(CMD, CMD2, timers=dataclasses.replace(TIMERS, max_outstanding=2))
    first = [sends(maar.handle(Attach(f"mn{i}", bytes((2, 0, 0, 0, 0, i)), 10), START), CMD)[0] for i in (1, 2)]
    moved = maar.handle(TimerFired(KEY), START + FAILOVER)
    pbus = [m for m in sends(moved, CMD2) if type(m) is BindingUpdate]
    assert sorted(p.mn_id for p in pbus) == ["mn1", "mn2"] and maar.retx.count(CMD2) == 2
    assert maar.retx.count(CMD) == 0 and set(maar.bindings) == {"mn1", "mn2"}
    assert not any(type(e) is Report and e.kind is ReportKind.FAILED for e in moved)
    assert sorted(p.sequence for p in pbus) == [(max(f.sequence for f in first) + k) & 0xFFFF for k in (1, 2)]
