"""Restart and rebuild cases a review found wrong, as they must behave (docs/store.md): each was
first written to show the bug, then the fix made it pass."""
import logging
import os
import types

from ryu_dmm import cmd as cmdmod
from ryu_dmm.domainconf import StoreSettings
from ryu_dmm.flowmirror import CoreOutput, PortBound, PortLearnt
from ryu_dmm.mobility import messages as M
from ryu_dmm.mobility.cmd import REBUILD_CHUNK, CmdCore
from ryu_dmm.mobility.config import Domain, MaarInfo, Mode, Timers
from ryu_dmm.mobility.events import (
    Attach, BindingChanged, Persist, PersistMeta, Received, RetxKey, Send, TimerFired, TimerKey, TimerKind,
)
from ryu_dmm.mobility.maar import MaarCore, Role
from ryu_dmm.mobility.views import Record, Session
from ryu_dmm.store import Batch, SqliteStore, StoreError
from ryu_dmm.wire import BindingUpdate, Heartbeat, Prefix, RestartCounter
from tests.sim import Net, domain as sim_domain

CMD = "2001:db8:ff::100"
A1, A2 = "2001:db8:ff::1", "2001:db8:ff::2"
P1, P2 = Prefix.parse("2001:db8:1::/64"), Prefix.parse("2001:db8:2::/64")
MAC = bytes.fromhex("020000000a01")
NOW = 1_800_000_000.0


def dom(**timers):
    maars = tuple(MaarInfo(f"maar{i}", a, Prefix.parse(f"2001:db8:{i}::/48")) for i, a in enumerate((A1, A2), 1))
    return Domain(CMD, maars, Mode.PROXY, timers=Timers(lifetime=400, heartbeat_interval=1.0, **timers))


def sends(effects, cls=None):
    return [e for e in effects if type(e) is Send and (cls is None or type(e.msg) is cls)]


def hb(seq, counter):
    return Heartbeat(seq, options=(RestartCounter(counter),))


def anchored_at_maar1():
    """mn1 registered at maar1, then moved to maar2: maar1 anchors P for it."""
    cmd, m1 = CmdCore(dom(), 1), MaarCore(dom(), "maar1")
    (reg,) = sends(m1.handle(Attach("mn1", MAC, 1), NOW), BindingUpdate)
    for e in sends(cmd.handle(Received(A1, reg.msg), NOW)):
        m1.handle(Received(CMD, e.msg), NOW)
    p1 = m1.bindings["mn1"].prefix
    out = cmd.handle(Received(A2, M.pbu(1, NOW + 1, "mn1", P2, 400, M.HI_BETWEEN_MAARS, 3)), NOW + 1)
    (h,) = [e for e in sends(out, BindingUpdate) if e.dst == A1]
    for e in sends(m1.handle(Received(CMD, h.msg), NOW + 1)):
        cmd.handle(Received(A1, e.msg), NOW + 1)
    assert m1.bindings["mn1"].role is Role.ANCHOR and cmd.session("mn1").pmaars == ((A1, p1),)
    return cmd, m1, p1


def test_an_audit_is_not_ordered_against_the_serving_maars_pbus():
    cmd, m1, p1 = anchored_at_maar1()
    at = m1.bindings["mn1"].expires
    # just before maar1's audit, maar2 re-registers with a clock 50 ms ahead (inside the window)
    cmd.handle(Received(A2, M.pbu(2, at + 0.05, "mn1", P2, 400, M.HI_REREGISTRATION, 3)), at)
    (audit,) = sends(m1.handle(TimerFired(TimerKey(TimerKind.EXPIRE, "mn1")), at), BindingUpdate)
    (answer,) = sends(cmd.handle(Received(A1, audit.msg), at + 0.001))
    assert answer.msg.status == 0 and answer.msg.lifetime > 0  # renewed: the CMD still lists maar1
    m1.handle(Received(CMD, answer.msg), at + 0.002)
    assert m1.bindings["mn1"].role is Role.ANCHOR


def test_a_refused_or_unanswered_audit_keeps_the_anchor_and_asks_again():
    _, m1, p1 = anchored_at_maar1()
    t = m1.bindings["mn1"].expires
    (audit,) = sends(m1.handle(TimerFired(TimerKey(TimerKind.EXPIRE, "mn1")), t), BindingUpdate)
    m1.handle(Received(CMD, M.pba_for(audit.msg, 157, 0)), t + 0.01)
    assert m1.bindings["mn1"].role is Role.ANCHOR and m1.bindings["mn1"].expires > t
    t = m1.bindings["mn1"].expires
    (audit,) = sends(m1.handle(TimerFired(TimerKey(TimerKind.EXPIRE, "mn1")), t), BindingUpdate)
    for i in range(1, 6):  # the CMD is down: every try unanswered
        m1.handle(TimerFired(RetxKey(CMD, audit.msg.sequence)), t + 2 ** i)
    assert m1.bindings["mn1"].role is Role.ANCHOR and m1.bindings["mn1"].prefix == p1
    # only the CMD's "not listed" (accepted, lifetime 0) ends it
    t = m1.bindings["mn1"].expires
    (audit,) = sends(m1.handle(TimerFired(TimerKey(TimerKind.EXPIRE, "mn1")), t), BindingUpdate)
    m1.handle(Received(CMD, M.pba_for(audit.msg, 0, 0)), t + 0.01)
    assert "mn1" not in m1.bindings


def test_a_rebuild_cut_short_by_a_cmd_restart_is_done_again():
    records = [Record(f"mn{i}", A1, Prefix.parse(f"2001:db8:1:{i:x}::/64"), MAC, (), NOW + 1000, 3, 0, 1)
               for i in range(REBUILD_CHUNK * 4)]
    c = CmdCore(dom(), 77)
    c.restore(records, {}, NOW)
    c.watch_peers({A1: 5}, NOW)
    out = c.handle(Received(A1, hb(1, 6)), NOW)
    assert not any(type(e) is PersistMeta and e.key == "counter:" + A1 for e in out)  # not before the end
    c2 = CmdCore(dom(), 77)  # killed now: restarts with counter:A1 still 5
    c2.restore(records, {}, NOW + 0.1)
    c2.watch_peers({A1: 5}, NOW + 0.1)
    out = c2.handle(Received(A1, hb(2, 6)), NOW + 1)
    assert len(sends(out, BindingUpdate)) == REBUILD_CHUNK  # rebuilt again from the start
    t = NOW + 1
    for _ in range(3):
        (step,) = [e for e in out if type(e).__name__ == "SetTimer" and e.key == TimerKey(TimerKind.REBUILD, A1)]
        t = step.at
        out = c2.handle(TimerFired(step.key), t)
        for e in sends(out, BindingUpdate):  # answered, so the retransmitter has room
            c2.handle(Received(A1, M.pba_for(e.msg, 0, e.msg.lifetime)), t)
    assert PersistMeta("counter:" + A1, "6") in out  # stored with the last step


def test_a_rebuild_pbu_does_not_outlive_the_session():
    cmd = CmdCore(dom(), 77)
    cmd.restore([Record("mn1", A1, P1, MAC, (), NOW + 300, 3, 0, 1)], {}, NOW)
    cmd.watch_peers({A1: 5}, NOW)
    (rebuild,) = sends(cmd.handle(Received(A1, hb(1, 6)), NOW), BindingUpdate)  # lost on the way
    cmd.cache["mn1"].expires = NOW - 20  # the session ends
    cmd.handle(TimerFired(TimerKey(TimerKind.LIFETIME, "mn1")), NOW + 0.5)
    assert cmd.session("mn1") is None
    assert sends(cmd.handle(TimerFired(RetxKey(A1, rebuild.msg.sequence)), NOW + 1.0), BindingUpdate) == []


def test_restore_gives_a_prefix_stored_twice_to_the_newer_session():
    older = Record("A", A1, P1, MAC, (), 2e9, 3, 100 << 16, 1)
    newer = Record("B", A1, P1, MAC, (), 2e9, 3, 200 << 16, 1)  # took P1 after A released it
    core = CmdCore(dom())
    out = core.restore([older, newer], {}, NOW)
    assert core.session("B").prefix == P1 and core.session("A") is None and Persist("A", None) in out
    refused = core.handle(Received(A1, M.pbu(9, NOW, "C", P1, 400, 1, 3)), NOW)
    assert [e.msg.status for e in sends(refused)] == [155]


def test_move_aside_never_takes_a_file_in_use_or_from_another_schema(tmp_path):
    st = StoreSettings(dir=str(tmp_path), on_corrupt="move-aside")
    first = SqliteStore(st.path)
    first.load()
    fake = types.SimpleNamespace(settings=types.SimpleNamespace(store=st), store=SqliteStore(st.path),
                                 logger=logging.getLogger("test"), _store_info={})
    try:
        cmdmod.CmdApp._load_store(fake)
        raise AssertionError("a second CMD started on a file in use")
    except SystemExit as exc:
        assert exc.code == 2
    assert sorted(os.listdir(tmp_path)) == ["cmd.sqlite", "cmd.sqlite-wal"]
    first.write(Batch(1, meta={"schema": "2"}))
    first.close()
    try:
        SqliteStore(st.path).load()
    except StoreError as exc:
        assert exc.kind == "schema"


def test_a_port_learnt_before_the_session_is_stored_once_the_session_comes():
    net = Net(sim_domain(2), switches=True)
    mirror, a1 = net.mirror, "2001:db8:ff::1"
    assert not any(type(e) is PortBound for e in mirror.handle(PortLearnt(a1, MAC, 3), 0.0))  # nobody's yet
    session = Session("mn1", a1, P1, MAC, (), 1e10, False)
    out = mirror.handle(CoreOutput((BindingChanged("mn1", session),)), 0.1)
    assert PortBound(a1, MAC, 3) in out
    assert not any(type(e) is PortBound for e in mirror.handle(PortLearnt(a1, MAC, 3), 0.2))  # unchanged
    assert PortBound(a1, MAC, 4) in mirror.handle(PortLearnt(a1, MAC, 4), 0.3)  # moved to another port


def test_an_audit_for_an_anchor_the_session_does_not_list_is_told_not_here_whatever_its_stamp():
    """After a CMD lost its state, the serving MAAR's re-registration may come first (a newer
    stamp): the P-MAAR's audit must still get "not listed" (accepted, lifetime 0), not 157."""
    cmd = CmdCore(dom(), 2)
    cmd.handle(Received(A2, M.pbu(5, NOW + 0.05, "mn1", P2, 400, M.HI_REREGISTRATION, 3, MAC)), NOW)
    audit = M.pbu(9, NOW, "mn1", Prefix.parse("2001:db8:1:7::/64"), 0, M.HI_UNKNOWN, 3)
    (answer,) = sends(cmd.handle(Received(A1, audit), NOW + 0.01))
    assert (answer.msg.status, answer.msg.lifetime) == (0, 0)
