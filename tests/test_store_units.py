"""The binding store's pieces without processes: the durability gate (hand-worked sequences), the
SQLite backend (round trip, atomicity, corrupt and locked files) and the core's records/restore."""
import sqlite3
import time

import pytest

from ryu_dmm.mobility import messages as M
from ryu_dmm.mobility.cmd import SEQ_BLOCK, CmdCore
from ryu_dmm.mobility.config import Domain, MaarInfo, Mode, Timers
from ryu_dmm.mobility.events import (
    BindingChanged, Persist, Received, PersistMeta, Send, SetTimer, TimerKey, TimerKind,
)
from ryu_dmm.mobility.views import Record
from ryu_dmm.store import Batch, DurabilityGate, SqliteStore, StoreError
from ryu_dmm.wire import BindingAck, Prefix

A1, A2, A3 = "2001:db8:ff::1", "2001:db8:ff::2", "2001:db8:ff::3"
P1, P2, P3 = (Prefix.parse(f"2001:db8:{i}::/64") for i in (1, 2, 3))
MAC = bytes.fromhex("020000000a01")


def record(mn="mn1", serving=A2, prefix=P2, pmaars=((A1, P1),), handover=False):
    return Record(mn, serving, prefix, MAC, pmaars, 1_800_000_000.5, 3, 123456789 << 16, 65535, handover)


def pba(mn="mn1", status=0):
    return Send(A1, BindingAck(status, 1, 40, M.pbu(1, 1.0, mn, P1, 40, 1, 3).options))


# ---- the gate --------------------------------------------------------------------------------------
def test_a_pba_waits_for_the_commit_of_its_change_and_only_that():
    gate = DurabilityGate(max_batch=10)
    assert not gate.must_wait("mn1")
    gate.stage("mn1", record())
    assert gate.must_wait("mn1") and not gate.must_wait("mn2")
    assert gate.hold(pba("mn1"))
    batch = gate.take()
    assert batch.sessions == {"mn1": record()} and gate.must_wait("mn1")  # in flight: still waits
    assert gate.take() is None  # nothing staged meanwhile
    assert gate.committed(batch) == [pba("mn1")] and not gate.must_wait("mn1") and gate.held == 0


def test_a_change_staged_during_a_write_holds_its_pba_until_the_next_commit():
    gate = DurabilityGate()
    gate.stage("mn1", record())
    first = gate.take()
    gate.stage("mn1", None)  # the session ended while the first batch was written
    gate.hold(pba("mn1"))
    assert gate.committed(first) == []  # the PBA reports the second change
    second = gate.take()
    assert second.sessions == {"mn1": None} and gate.committed(second) == [pba("mn1")]


def test_changes_coalesce_per_mn_and_batches_are_bounded():
    gate = DurabilityGate(max_batch=2)
    for mn in ("a", "b", "c"):
        gate.stage(mn, record(mn))
    gate.stage("a", None)  # the latest wins, in the position "a" was first staged
    first = gate.take()
    assert list(first.sessions) == ["a", "b"] and first.sessions["a"] is None
    assert list(gate.take().sessions) == ["c"]


def test_a_failed_write_is_staged_again_under_newer_changes():
    gate = DurabilityGate()
    gate.stage("a", record("a"))
    gate.stage_meta("seq:x", "5")
    batch = gate.take()
    gate.stage("a", None)
    gate.hold(pba("a"))
    gate.failed(batch)
    assert gate.failures == 1 and gate.must_wait("a")
    again = gate.take()
    assert again.sessions == {"a": None} and again.meta == {"seq:x": "5"}
    assert gate.committed(again) == [pba("a")]


def test_held_pbas_are_bounded():
    gate = DurabilityGate(max_held=2)
    gate.stage("a", record("a"))
    assert gate.hold(pba("a")) and gate.hold(pba("a")) and not gate.hold(pba("a"))
    assert gate.dropped == 1 and gate.held == 2


# ---- SQLite ----------------------------------------------------------------------------------------
def test_sqlite_round_trip_and_restart_counter_kept(tmp_path):
    path = str(tmp_path / "s" / "cmd.sqlite")
    store = SqliteStore(path)
    first = store.load()
    assert first.fresh and first.sessions == [] and 0 < first.restart_counter < 2**32
    r2 = record("mn2", A3, P3, ((A1, P1), (A2, P2)), handover=True)
    store.write(Batch(1, {"mn1": record(), "mn2": r2}, {(A2, MAC): 10}, {"seq:" + A1: "1024"}))
    store.write(Batch(2, {"mn1": None}, {}, {}))
    store.close()
    again = SqliteStore(path)
    loaded = again.load()
    again.close()
    assert not loaded.fresh and loaded.restart_counter == first.restart_counter
    assert loaded.sessions == [r2] and loaded.ports == {(A2, MAC): 10} and loaded.meta["seq:" + A1] == "1024"


def test_any_mn_id_bytes_are_stored_and_come_back(tmp_path):
    """MN IDs are whatever bytes the MN-ID option carried (the fuzzer found one that is not UTF-8)."""
    odd = b"mn-\xe7\xff\x00@x".decode("utf-8", "surrogateescape")
    store = SqliteStore(str(tmp_path / "cmd.sqlite"))
    store.load()
    store.write(Batch(1, {odd: record(odd), "mn1": record()}))
    store.write(Batch(2, {"mn1": None}))
    store.close()
    again = SqliteStore(str(tmp_path / "cmd.sqlite"))
    assert again.load().sessions == [record(odd)]
    again.close()


def test_a_failed_batch_leaves_nothing_half_written(tmp_path):
    store = SqliteStore(str(tmp_path / "cmd.sqlite"))
    store.load()
    store.write(Batch(1, {"mn1": record()}))
    bad = Batch(2, {"mn2": record("mn2"), "mn3": record("mn3", pmaars=(("not an address", P1),))})
    with pytest.raises(StoreError):
        store.write(bad)
    store.close()
    db = sqlite3.connect(tmp_path / "cmd.sqlite")
    assert db.execute("SELECT mn_id FROM sessions").fetchall() == [(b"mn1",)]
    db.close()


@pytest.mark.parametrize("content", [b"not a database at all" * 200, b"SQLite format 3\0" + b"\xff" * 5000])
def test_an_unreadable_file_is_a_clear_error(tmp_path, content):
    (tmp_path / "cmd.sqlite").write_bytes(content)
    with pytest.raises(StoreError) as err:
        SqliteStore(str(tmp_path / "cmd.sqlite")).load()
    assert str(tmp_path / "cmd.sqlite") in str(err.value)
    assert (tmp_path / "cmd.sqlite").read_bytes() == content  # left as it was


def test_a_row_that_is_not_a_session_is_a_clear_error(tmp_path):
    store = SqliteStore(str(tmp_path / "cmd.sqlite"))
    store.load()
    store.close()
    db = sqlite3.connect(tmp_path / "cmd.sqlite")
    db.execute("INSERT INTO sessions VALUES (x'6d6e78', '2001:db8:ff::1', x'00', x'', x'', 0, 3, 0, 0, 0)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="mnx"):  # named (x'6d6e78' is b"mnx")
        SqliteStore(str(tmp_path / "cmd.sqlite")).load()


def test_a_second_user_of_the_file_is_refused(tmp_path):
    first = SqliteStore(str(tmp_path / "cmd.sqlite"))
    first.load()
    with pytest.raises(StoreError, match="in use"):
        SqliteStore(str(tmp_path / "cmd.sqlite")).load()
    first.close()


def test_another_schema_is_refused(tmp_path):
    store = SqliteStore(str(tmp_path / "cmd.sqlite"))
    store.load()
    store.write(Batch(1, meta={"schema": "99"}))
    store.close()
    with pytest.raises(StoreError, match="schema"):
        SqliteStore(str(tmp_path / "cmd.sqlite")).load()


# ---- the core's records and restore ------------------------------------------------------------------
def domain(mode=Mode.RELAY):
    maars = tuple(MaarInfo(f"maar{i}", a, Prefix.parse(f"2001:db8:{i}::/48")) for i, a in enumerate((A1, A2, A3), 1))
    return Domain("2001:db8:ff::100", maars, mode, timers=Timers(lifetime=40))


def test_every_accepted_change_is_persisted_before_its_answer():
    core = CmdCore(domain())
    now = time.time()
    out = core.handle(Received(A1, M.pbu(5, now, "mn1", P1, 40, 1, 3, MAC)), now)
    stamp = M.pbu(5, now, "mn1", P1, 40, 1, 3).timestamp
    assert type(out[0]) is Persist and out[0].record == Record("mn1", A1, P1, MAC, (), now + 40, 3, stamp, 5)
    sends = [e for e in out if type(e) is Send]
    assert out.index(out[0]) < out.index(sends[0])
    # a copy of the same PBU changes nothing: answered, nothing persisted
    again = core.handle(Received(A1, M.pbu(5, now, "mn1", P1, 40, 1, 3, MAC)), now)
    assert not any(type(e) is Persist for e in again)
    # a rejected PBU persists nothing
    assert not any(type(e) is Persist for e in core.handle(Received(A1, M.pbu(6, now - 100, "mn1", P1, 40, 1, 3)), now))


def test_the_cmd_reserves_its_sequence_numbers_in_blocks():
    core = CmdCore(domain())
    now = time.time()
    core.handle(Received(A1, M.pbu(1, now, "mn1", P1, 40, 1, 3, MAC)), now)
    out = core.handle(Received(A2, M.pbu(1, now + 0.01, "mn1", P2, 40, 3, 3)), now + 0.01)
    assert PersistMeta("seq:" + A1, str(SEQ_BLOCK)) in out  # the first PBU to A1 had sequence 0
    core.retx.start_at(A1, SEQ_BLOCK // 2 - 1)  # as if 510 more had gone: more than half is still reserved
    out = core.handle(Received(A3, M.pbu(1, now + 0.02, "mn1", P3, 40, 3, 3)), now + 0.02)
    assert not any(type(e) is PersistMeta and e.key == "seq:" + A1 for e in out)
    core.retx.start_at(A1, SEQ_BLOCK // 2 + 5)  # half used up: the next block is reserved
    out = core.handle(Received(A1, M.pbu(2, now + 0.03, "mn1", P1, 40, 3, 3)), now + 0.03)
    out += core.handle(Received(A2, M.pbu(2, now + 0.04, "mn1", P2, 40, 3, 3)), now + 0.04)
    assert PersistMeta("seq:" + A1, str(SEQ_BLOCK // 2 + 5 + SEQ_BLOCK)) in out


def test_restore_rebuilds_the_cache_rearms_timers_and_renotifies_an_unfinished_handover():
    core = CmdCore(domain())
    now = 1_800_000_000.0
    done = Record("mn1", A2, P2, MAC, ((A1, P1),), now + 20, 3, 0, 4, False)
    mid = Record("mn2", A3, P3, MAC, ((A1, Prefix.parse("2001:db8:1:1::/64")),), now - 5, 3, 0, 9, True)
    gone = Record("mn3", "2001:db8:ff::99", P1, MAC, (), now + 20, 3, 0, 1, False)  # a MAAR no longer configured
    out = core.restore([done, mid, gone], {A1: 2048}, now)
    assert core.record("mn1") == done and core.session("mn2").handover_in_progress
    assert Persist("mn3", None) in out and core.session("mn3") is None
    timers = {e.key: e.at for e in out if type(e) is SetTimer}
    delay = core.timers.min_delay_before_bce_delete
    assert timers[TimerKey(TimerKind.LIFETIME, "mn1")] == now + 20 + delay
    assert timers[TimerKey(TimerKind.LIFETIME, "mn2")] == now - 5 + delay  # past: the heap fires it at once
    assert {e.mn_id for e in out if type(e) is BindingChanged} == {"mn1", "mn2"}
    renotify = [e for e in out if type(e) is Send]
    assert [(e.dst, e.msg.serving_maar, e.msg.sequence) for e in renotify] == [(A1, A3, 2048)]
    # prefix ownership came back: another MN cannot take mn1's prefix
    refused = core.handle(Received(A2, M.pbu(1, now, "mn9", P2, 40, 1, 3)), now)
    assert [e.msg.status for e in refused if type(e) is Send] == [155]
    # the serving MAAR's copy of its PBU is answered from the restored session, with its P-MAAR list
    answer = [e for e in core.handle(Received(A3, M.pbu(9, now, "mn2", P3, 40, 3, 3)), now) if type(e) is Send]
    assert len(answer) == 1 and answer[0].msg.status == 0 and len(answer[0].msg.previous_maars) == 1


def test_a_pbu_waits_for_its_sequence_numbers_reservation():
    """The CMD's PBU must not use a number a restart could hand out again (docs/store.md)."""
    gate = DurabilityGate()
    pbu = Send(A1, M.pbu(0, 1.0, "mn1", P1, 40, 3, 3))
    gate.stage_meta("seq:" + A1, "1024")
    assert gate.meta_must_wait("seq:" + A1) and not gate.meta_must_wait("seq:" + A2)
    assert gate.hold(pbu, "seq:" + A1)
    batch = gate.take()
    assert gate.meta_must_wait("seq:" + A1)  # being written
    gate.failed(batch)
    assert gate.meta_must_wait("seq:" + A1) and gate.held == 1
    assert gate.committed(gate.take()) == [pbu] and not gate.meta_must_wait("seq:" + A1)
