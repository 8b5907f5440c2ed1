"""``CmdCore.adopt``: an instance promoted to a switch's master takes the shared store's sessions
as they are (docs/openflow-roles.md): changed ones replaced, gone ones dropped quietly, new ones
added; nothing sent, nothing persisted; prefix ownership follows."""
from ryu_dmm.mobility import messages as M
from ryu_dmm.mobility.cmd import CmdCore
from ryu_dmm.mobility.events import BindingChanged, CancelTimer, Persist, Received, Send, SetTimer, TimerKey, TimerKind
from ryu_dmm.mobility.views import Record
from ryu_dmm.wire import Prefix
from tests.test_store_units import A1, A2, A3, MAC, P1, P2, P3, domain

NOW = 1_800_000_000.0


def test_adopt_replaces_drops_and_adds_and_sends_nothing():
    core = CmdCore(domain())
    kept = Record("kept", A1, P1, MAC, (), NOW + 20, 3, 0, 1, False)
    moved = Record("moved", A2, P2, MAC, (), NOW + 20, 3, 0, 1, False)
    gone = Record("gone", A3, P3, MAC, (), NOW + 20, 3, 0, 1, False)
    core.restore([kept, moved, gone], {}, NOW)
    # meanwhile another instance handled a handover of "moved" to A3 and a new MN, and "gone" ended
    moved2 = Record("moved", A3, Prefix.parse("2001:db8:3:1::/64"), MAC, ((A2, P2),), NOW + 30, 3, 5, 2, False)
    new = Record("new", A1, Prefix.parse("2001:db8:1:1::/64"), MAC, (), NOW + 30, 3, 0, 1, False)
    out = core.adopt([kept, moved2, new], NOW + 1)
    assert [core.record(m) for m in ("kept", "moved", "new", "gone")] == [kept, moved2, new, None]
    assert not [e for e in out if type(e) in (Send, Persist)]
    changed = {e.mn_id: e.session for e in out if type(e) is BindingChanged}
    assert set(changed) == {"moved", "new", "gone"} and changed["gone"] is None  # "kept": no effect at all
    assert changed["moved"].serving == A3 and changed["moved"].pmaars == ((A2, P2),)
    assert CancelTimer(TimerKey(TimerKind.LIFETIME, "gone")) in out
    assert SetTimer(TimerKey(TimerKind.LIFETIME, "moved"), NOW + 30 + core.timers.min_delay_before_bce_delete) in out
    # ownership: P3 (gone's) is free again; P2 is still moved's (its anchor): another MN cannot take it
    free = core.handle(Received(A3, M.pbu(1, NOW + 2, "mn9", P3, 40, 1, 3)), NOW + 2)
    taken = core.handle(Received(A2, M.pbu(1, NOW + 2, "mn8", P2, 40, 1, 3)), NOW + 2)
    assert [e.msg.status for e in free if type(e) is Send][:1] == [0]
    assert [e.msg.status for e in taken if type(e) is Send] == [155]


def test_adopting_what_the_cache_holds_changes_nothing():
    core = CmdCore(domain())
    r = Record("mn1", A1, P1, MAC, (), NOW + 20, 3, 0, 1, False)
    core.restore([r], {}, NOW)
    assert core.adopt([r], NOW + 1) == []


def test_adopting_a_handover_in_progress_leaves_its_pbus_to_its_owner():
    core = CmdCore(domain())
    mid = Record("mn1", A2, P2, MAC, ((A1, P1),), NOW + 20, 3, 0, 4, True)  # another instance is handing over
    out = core.adopt([mid], NOW)
    assert not [e for e in out if type(e) is Send]
    # held as stored, handover mark included (its owner finishes it; the owner's next change,
    # through the change feed, brings the finished session)
    assert core.record("mn1") == mid and core.session("mn1").handover_in_progress


def test_a_session_being_checked_is_skipped():
    core = CmdCore(domain())
    r = Record("mn1", A1, P1, MAC, (), NOW + 20, 3, 0, 1, False)
    core.restore([r], {}, NOW)
    assert core.adopt([], NOW + 1, skip={"mn1"}.__contains__) == [] and core.record("mn1") == r
