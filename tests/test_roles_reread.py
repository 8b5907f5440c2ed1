"""The store re-read after a promotion (ryu_dmm/store/reread.py, the shell's ``CmdApp._reread``):
hand-worked sequences of what happens here while a load runs. A session accepted or changed
during the load, or whose commit is pending, survives the adopt; one another instance deleted and
nobody touched here goes; versions never go back; concurrent requests share loads; the bound."""
import types

from ryu_dmm.cmd import CmdApp
from ryu_dmm.mobility import messages as M
from ryu_dmm.mobility.cmd import CmdCore
from ryu_dmm.mobility.events import BindingChanged, Persist, Received
from ryu_dmm.mobility.views import Record
from ryu_dmm.runtime import hub
from ryu_dmm.store.gate import DurabilityGate
from ryu_dmm.store.reread import MAX_TOUCHED, Reread
from tests.test_store_units import A1, A2, A3, MAC, P1, P2, P3, domain

NOW = 1_800_000_000.0


def accept(core, mn="mn9", at=NOW + 2):
    """A first registration of ``mn`` at A3 (P3), accepted: the PBU's Persist names it."""
    out = core.handle(Received(A3, M.pbu(1, at, mn, P3, 40, 1, 3)), at)
    assert [e.mn_id for e in out if type(e) is Persist] == [mn]
    return out


def running():
    r = Reread()
    assert r.request() == (True, 1)
    return r


def test_without_the_rule_a_session_accepted_during_the_load_is_dropped():
    # The review's demonstration, as CmdCore.adopt alone does it: the snapshot was read before mn9 came.
    core = CmdCore(domain())
    accept(core)
    out = core.adopt([], NOW + 3)
    assert core.record("mn9") is None and BindingChanged("mn9", None) in out


def test_a_session_accepted_during_the_load_survives_the_adopt():
    core, r = CmdCore(domain()), running()
    r.started()
    r.touch(["mn9"])  # (the shell: _core_event, as the PBU is handled while the load runs)
    held = accept(core) and core.record("mn9")
    assert r.adopt(core, [], NOW + 3) == [] and core.record("mn9") == held
    assert r.counts["kept"] == 1


def test_a_session_changed_during_the_load_keeps_its_change():
    core, r = CmdCore(domain()), running()
    old = Record("mn1", A1, P1, MAC, (), NOW + 20, 3, 0, 1, False)
    core.restore([old], {}, NOW)
    r.started()
    # the snapshot reads mn1 as stored (old); then its MAAR re-registers it with a longer lifetime
    core.handle(Received(A1, M.pbu(2, NOW + 2, "mn1", P1, 100, 2, 3, MAC)), NOW + 2)
    r.touch(["mn1"])
    new = core.record("mn1")
    assert new.last_seq == 2 and new.expires > old.expires  # the PBU's sequence number; a later end
    assert r.adopt(core, [old], NOW + 3) == [] and core.record("mn1") == new


def test_standby_a_session_whose_commit_was_pending_when_the_load_began_survives():
    # Accepted just before the load; its batch is written while the load runs (after the snapshot
    # read the sessions), so at the adopt the gate no longer holds it: only the start tells.
    core, r, gate = CmdCore(domain()), running(), DurabilityGate()
    for e in accept(core):
        if type(e) is Persist:
            gate.stage(e.mn_id, e.record)
    r.started(gate.unsettled())
    assert gate.committed(gate.take()) == [] and gate.unsettled() == set()
    r.adopt(core, [], NOW + 3)
    assert core.record("mn9") is not None


def test_a_session_another_instance_deleted_and_nobody_touched_here_goes():
    core, r = CmdCore(domain()), running()
    gone = Record("gone", A2, P2, MAC, (), NOW + 20, 3, 0, 1, False)
    core.restore([gone], {}, NOW)
    r.started()
    r.touch(["mn9"])
    accept(core)
    out = r.adopt(core, [], NOW + 3)
    assert core.record("gone") is None and BindingChanged("gone", None) in out
    assert core.record("mn9") is not None


def test_active_active_versions_never_go_back_and_deletions_are_taken():
    core, r = CmdCore(domain()), running()
    a = Record("a", A1, P1, MAC, (), NOW + 20, 3, 0, 1, False)  # ours at version 10
    b = Record("b", A2, P2, MAC, (), NOW + 20, 3, 0, 1, False)  # another instance moved it: 12
    c = Record("c", A3, P3, MAC, (), NOW + 20, 3, 0, 1, False)  # another instance deleted it
    core.restore([a, b, c], {}, NOW)
    held = {"a": 10, "b": 11, "c": 5, "d": 3}  # "d": being checked (its event changed nothing yet)
    r.started()
    a_older = Record("a", A1, P1, MAC, (), NOW + 10, 3, 0, 0, False)
    b_newer = Record("b", A3, P3, MAC, ((A2, P2),), NOW + 30, 3, 5, 2, False)
    # (c is deleted, so P3 is free: b's new serving prefix stands for whatever the other instance gave it)
    out = r.adopt(core, [a_older, b_newer], NOW + 3, {"a": 7, "b": 12, "d": 3}, held, {"d"}.__contains__)
    assert core.record("a") == a  # version 7 < 10: the snapshot is older than what we hold
    assert core.record("b") == b_newer and core.record("c") is None
    assert held == {"a": 10, "b": 12, "d": 3}  # c's version gone with it; none lowered
    assert BindingChanged("c", None) in out


def test_a_busy_mn_is_left_to_its_check():
    core, r = CmdCore(domain()), running()
    m = Record("mn1", A1, P1, MAC, (), NOW + 20, 3, 0, 1, False)
    core.restore([m], {}, NOW)
    r.started()
    held = {"mn1": 4}
    assert r.adopt(core, [], NOW + 1, {}, held, {"mn1"}.__contains__) == []
    assert core.record("mn1") == m and held == {"mn1": 4}


def test_requests_during_a_load_coalesce_into_one_more():
    r = Reread()
    assert r.request() == (True, 1)
    assert r.request() == (False, 2) and r.request() == (False, 2)  # two promotions meanwhile
    r.started()
    assert r.finished() is True and r.completed == 1 and r.running  # one more load, for both
    r.started()
    assert r.finished() is False and r.completed == 2 and not r.running
    assert r.request() == (True, 3)
    assert r.counts["coalesced"] == 2


def test_touched_is_bounded_and_an_overflow_loads_again():
    assert MAX_TOUCHED == 65536
    core, r = CmdCore(domain()), Reread(max_touched=2)
    r.request()
    r.started()
    r.touch(["x", "y", "x"])  # at the bound
    assert r.adopt(core, [], NOW) == []
    assert r.finished() is False
    r.request()
    r.started()
    r.touch(["x", "y", "z"])  # one more: the snapshot cannot be trusted
    assert r.adopt(core, [], NOW) is None and r.counts["overflowed"] == 1
    assert r.finished() is True and r.running  # the caller loads again
    r.started()
    assert r.adopt(core, [], NOW) == [] and r.finished() is False


def test_concurrent_rereads_in_the_shell_share_loads_and_each_waits_for_one_begun_after_it():
    """CmdApp._reread with the load replaced: three promotions and a feed gap at once give two
    loads, one at a time; every promotion returns after a load that began after it asked."""
    loads, log = [], []

    def load():
        loads.append(len(log))
        log.append(("start", len(loads)))
        hub.sleep(0.05)  # (Redis round trips: other greenthreads run)
        log.append(("end", len(loads)))
    app = types.SimpleNamespace(rereads=Reread(), _reread_done=hub.Event(), _reread_once=load,
                                guard=types.SimpleNamespace(call=lambda where, fn, *a: fn(*a) or True))
    done = []

    def promoted(name, wait=True):
        CmdApp._reread(app, wait)
        done.append((name, app.rereads.completed))
    threads = [hub.spawn(promoted, "p1")]
    hub.sleep(0.01)  # p1's load runs
    threads += [hub.spawn(promoted, "p2"), hub.spawn(promoted, "p3"), hub.spawn(promoted, "gap", False)]
    for t in threads:
        hub.joinall([t])
    assert log == [("start", 1), ("end", 1), ("start", 2), ("end", 2)]  # never two at once
    assert sorted(done) == [("gap", 0), ("p1", 2), ("p2", 2), ("p3", 2)]  # p2, p3 after load 2
    assert app.rereads.counts["coalesced"] == 3 and not app.rereads.running


def shell(core, shared=None, read=None):
    """What CmdApp's ``_core_event``, ``_settle`` and ``_others_changed`` use of the app, with a
    re-read running."""
    r = running()
    r.started()
    app = types.SimpleNamespace(core=core, shared=shared, rereads=r, mirror=types.SimpleNamespace(
        handle=lambda ev, now: []), _apply=lambda effects: None, _shared_out=lambda effects, now: None, feed=None,
        sharedwriter=types.SimpleNamespace(dead=set()), store=types.SimpleNamespace(read=read))
    return app, r


def test_the_shell_marks_a_pbu_handled_during_the_load_standby():
    import time
    core = CmdCore(domain())
    app, r = shell(core)
    now = time.time()
    CmdApp._core_event(app, Received(A3, M.pbu(1, now, "mn9", P3, 40, 1, 3)))
    assert core.record("mn9") is not None
    r.adopt(core, [], now + 1)
    assert core.record("mn9") is not None


def test_the_shell_marks_a_check_settled_during_the_load():
    import time
    from ryu_dmm.store.shared import SharedCore
    core = CmdCore(domain())
    shared = SharedCore(core, "a")
    app, r = shell(core, shared)
    now = time.time()
    shared.handle(Received(A3, M.pbu(1, now, "mn9", P3, 40, 1, 3)), now)
    [check] = shared.gate.take()
    CmdApp._settle(app, check, True, {"mn9": 5}, [])  # won, version 5; the snapshot was read before
    assert not shared.gate.busy("mn9")
    r.adopt(core, [], now + 1, {}, shared.gate.versions, shared.gate.busy)
    assert core.record("mn9") is not None and shared.gate.versions == {"mn9": 5}


def test_the_shell_marks_what_the_feed_reloaded_during_the_load():
    import time
    from ryu_dmm.store.shared import Current, SharedCore
    core = CmdCore(domain())
    shared = SharedCore(core, "a")
    new = Record("mn1", A1, P1, MAC, (), NOW + 20, 3, 0, 1, False)  # another instance registered it
    app, r = shell(core, shared, lambda ids: [Current("mn1", 8, new, "b")])
    CmdApp._others_changed(app, ["mn1"])
    r.adopt(core, [], time.time(), {}, shared.gate.versions, shared.gate.busy)  # (read before it existed)
    assert core.record("mn1") == new and shared.gate.versions == {"mn1": 8}


def test_the_feed_never_takes_a_read_older_than_what_a_check_of_ours_settled():
    from ryu_dmm.store.shared import Current, SharedCore
    core = CmdCore(domain())
    ours = Record("mn1", A1, P1, MAC, (), NOW + 30, 3, 0, 2, False)
    core.restore([ours], {}, NOW)
    shared = SharedCore(core, "a")
    shared.gate.versions["mn1"] = 10  # our check won version 10 while the feed's read was on its way
    older = Record("mn1", A2, P2, MAC, (), NOW + 20, 3, 0, 1, False)
    app, _ = shell(core, shared, lambda ids: [Current("mn1", 7, older, "b")])
    CmdApp._others_changed(app, ["mn1"])
    assert core.record("mn1") == ours and shared.gate.versions == {"mn1": 10}
