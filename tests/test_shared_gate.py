"""Active-active without processes: the shared gate (hand-worked sequences: versions, waiting,
bounds, retries) and ``CmdCore.reload`` (another CMD's session replaces what this core held)."""
import time

from ryu_dmm.mobility import messages as M
from ryu_dmm.mobility.cmd import CmdCore
from ryu_dmm.mobility.events import (
    BindingChanged, CancelTimer, Persist, Received, RetxKey, Send, SetTimer, TimerKey, TimerKind,
)
from ryu_dmm.mobility.views import Record
from ryu_dmm.store.shared import VERIFY, SharedGate
from tests.test_store_units import A1, A2, A3, MAC, P1, P2, P3, domain, record


def test_an_event_checks_what_it_read_and_writes_what_it_changed():
    gate = SharedGate(versions={"mn1": 7})
    pba = Send(A1, "pba")
    check = gate.submit("mn1", "ev", [Persist("mn1", record()), pba, Persist("mn2", None)])
    assert check.items == [("mn1", 7, record()), ("mn2", 0, None)] and check.effects == [pba]
    assert gate.busy("mn1") and gate.busy("mn2")
    only_read = gate.submit("mn3", "ev3", [pba])
    assert only_read.items == [("mn3", 0, VERIFY)]
    assert gate.take() == [check, only_read] and gate.take() == []
    assert gate.settled(check, True, {"mn1": 12, "mn2": 0}, []) is None
    assert gate.versions == {"mn1": 12} and not gate.busy("mn1")


def test_a_lost_check_hands_the_event_back_and_events_behind_it_wait_in_order():
    gate = SharedGate(versions={"mn1": 3})
    check = gate.submit("mn1", "first", [Persist("mn1", record())])
    assert gate.wait("mn1", "second") and gate.wait("mn1", "third")
    assert gate.next_waiting("mn1") is None  # still busy
    assert gate.settled(check, False, {}, [("mn1", 9)]) == "first"  # handled again, against version 9
    assert gate.versions["mn1"] == 9
    again = gate.submit("mn1", "first", [Persist("mn1", record())], tries=1)
    assert again.items == [("mn1", 9, record())] and gate.next_waiting("mn1") is None
    gate.settled(again, True, {"mn1": 10}, [])
    assert [gate.next_waiting("mn1"), gate.next_waiting("mn1"), gate.next_waiting("mn1")] == ["second", "third", None]


def test_bounds_waiting_per_mn_overall_and_tries():
    gate = SharedGate(max_waiting=20, max_per_mn=16, max_tries=4)
    gate.submit("mn1", "e", [])
    assert all(gate.wait("mn1", i) for i in range(16)) and not gate.wait("mn1", 16)
    gate.submit("mn2", "e", [])
    assert all(gate.wait("mn2", i) for i in range(4)) and not gate.wait("mn2", 4)  # 20 waiting overall
    assert gate.dropped == 2
    c = gate.submit("mn3", "e", [], tries=3)  # its fourth try lost: given up
    assert gate.settled(c, False, {}, [("mn3", 5)]) is None and gate.gave_up == 1


def test_unsettled_checks_are_bounded():
    gate = SharedGate(max_open=3)
    checks = [gate.submit(f"mn{i}", "e", []) for i in range(3)]
    assert gate.full() and gate.dropped == 1  # the next event is not handled
    gate.settled(checks[0], True, {}, [])
    assert not gate.full() and gate.state()["in_flight"] == 2


def test_reload_replaces_the_session_its_timers_and_pbus():
    core = CmdCore(domain())
    now = time.time()
    core.handle(Received(A1, M.pbu(1, now, "mn1", P1, 40, 1, 3, MAC)), now)
    out = core.handle(Received(A2, M.pbu(1, now + 0.01, "mn1", P2, 40, 3, 3)), now + 0.01)
    asked = [e for e in out if type(e) is Send and e.dst == A1][0]  # relay: A1 is asked, no answer yet
    # another CMD moved the MN to A3 meanwhile (handover done there): A1 and A2 anchor
    theirs = Record("mn1", A3, P3, MAC, ((A1, P1), (A2, P2)), now + 30, 3, 0, 4, False)
    out = core.reload("mn1", theirs, now + 0.02)
    assert CancelTimer(RetxKey(A1, asked.msg.sequence)) in out  # our PBU to A1 is not sent again
    assert CancelTimer(TimerKey(TimerKind.AGGREGATE, "mn1")) in out
    assert SetTimer(TimerKey(TimerKind.LIFETIME, "mn1"), now + 30 + core.timers.min_delay_before_bce_delete) in out
    assert [e.session.serving for e in out if type(e) is BindingChanged] == [A3]
    assert core.record("mn1") == theirs and not core.retx.outstanding(A1, "mn1")
    assert not [e for e in out if type(e) is Send]
    # A3's copy of its PBU is answered from the reloaded session, with both P-MAARs
    ans = [e for e in core.handle(Received(A3, M.pbu(4, now, "mn1", P3, 40, 3, 3)), now + 0.03) if type(e) is Send]
    assert len(ans) == 1 and ans[0].msg.status == 0 and len(ans[0].msg.previous_maars) == 2
    # gone in the store: gone here, flows removed
    out = core.reload("mn1", None, now + 0.04)
    assert BindingChanged("mn1", None) in out and core.session("mn1") is None and len(core) == 0


def test_reload_of_an_unfinished_handover_tells_its_pmaars_again():
    core = CmdCore(domain())
    now = 1_800_000_000.0
    mid = Record("mn2", A3, P3, MAC, ((A1, P1),), now + 20, 3, 0, 9, True)
    sends = [e for e in core.reload("mn2", mid, now) if type(e) is Send]
    assert [(e.dst, e.msg.serving_maar, e.msg.mn_id) for e in sends] == [(A1, A3, "mn2")]
