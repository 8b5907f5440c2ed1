"""The CMD core's side of RFC 5847: heartbeats with every MAAR, peers' Restart Counters persisted,
and a restarted MAAR rebuilt from the sessions (hand-worked sequences)."""
from ryu_dmm.mobility import messages as M
from ryu_dmm.mobility.cmd import REBUILD_CHUNK, CmdCore
from ryu_dmm.mobility.config import Domain, MaarInfo, Mode, Timers
from ryu_dmm.mobility.events import PersistMeta, Received, Send, SetTimer, TimerFired, TimerKey, TimerKind
from ryu_dmm.mobility.heartbeat import HeartbeatKey
from ryu_dmm.mobility.views import Record
from ryu_dmm.wire import BindingUpdate, Heartbeat, Prefix, RestartCounter

A1, A2, A3 = "2001:db8:ff::1", "2001:db8:ff::2", "2001:db8:ff::3"
P1, P2 = Prefix.parse("2001:db8:1::/64"), Prefix.parse("2001:db8:2::/64")
MAC = bytes.fromhex("020000000a01")
NOW = 1_800_000_000.0


def core(counter=77):
    maars = tuple(MaarInfo(f"maar{i}", a, Prefix.parse(f"2001:db8:{i}::/48")) for i, a in enumerate((A1, A2, A3), 1))
    return CmdCore(Domain("2001:db8:ff::100", maars, Mode.PROXY, timers=Timers(lifetime=400, heartbeat_interval=1.0)),
                   counter)


def hb(seq, counter, response=False):
    return Heartbeat(seq, response=response, options=(RestartCounter(counter),))


def test_heartbeats_go_to_every_maar_and_carry_our_restart_counter():
    c = core()
    out = c.watch_peers({}, NOW)
    assert {e.key for e in out if type(e) is SetTimer} == {HeartbeatKey(A1), HeartbeatKey(A2), HeartbeatKey(A3)}
    (request,) = [e for e in c.handle(TimerFired(HeartbeatKey(A1)), NOW) if type(e) is Send]
    assert request.dst == A1 and not request.msg.response and request.msg.restart_counter == 77


def test_a_maar_counter_is_persisted_and_a_change_rebuilds_what_it_holds():
    c = core()
    c.restore([Record("served", A1, P1, MAC, (), NOW + 100, 3, 0, 1),
               Record("moved", A2, P2, MAC, ((A1, Prefix.parse("2001:db8:1:7::/64")),), NOW + 100, 3, 0, 1),
               Record("elsewhere", A3, Prefix.parse("2001:db8:3::/64"), MAC, (), NOW + 100, 3, 0, 1)], {}, NOW)
    c.watch_peers({A1: 5}, NOW)
    out = c.handle(Received(A1, hb(1, 5)), NOW)  # the counter we knew: an answer, nothing else
    assert [type(e) for e in out] == [Send] and out[0].msg.response and out[0].msg.restart_counter == 77
    out = c.handle(Received(A1, hb(2, 6)), NOW + 1)  # it restarted and lost its bindings
    assert PersistMeta("counter:" + A1, "6") in out
    pbus = {e.msg.mn_id: e.msg for e in out if type(e) is Send and type(e.msg) is BindingUpdate}
    assert set(pbus) == {"served", "moved"} and all(e.dst == A1 for e in out if type(e) is Send and e.msg in pbus.values())
    served, moved = pbus["served"], pbus["moved"]
    # RFC 8885 options: it serves "served" itself (with the MN's link-layer id); it anchors "moved" for A2
    assert served.serving_maar == A1 and served.hnps == (P1,) and served.mn_ll_id == MAC
    assert served.handoff == M.HI_REREGISTRATION and 0 < served.lifetime <= 100
    assert moved.serving_maar == A2 and moved.hnps == (Prefix.parse("2001:db8:1:7::/64"),)
    assert moved.handoff == M.HI_BETWEEN_MAARS


def test_a_large_rebuild_goes_in_steps():
    c = core()
    c.restore([Record(f"mn{i}", A1, Prefix.parse(f"2001:db8:1:{i:x}::/64"), MAC, (), NOW + 100, 3, 0, 1)
               for i in range(REBUILD_CHUNK + 10)], {}, NOW)
    c.watch_peers({A1: 5}, NOW)
    out = c.handle(Received(A1, hb(1, 9)), NOW)
    assert sum(type(e) is Send and type(e.msg) is BindingUpdate for e in out) == REBUILD_CHUNK
    step = [e for e in out if type(e) is SetTimer and e.key == TimerKey(TimerKind.REBUILD, A1)]
    assert len(step) == 1
    out = c.handle(TimerFired(step[0].key), step[0].at)
    assert sum(type(e) is Send and type(e.msg) is BindingUpdate for e in out) == 10
    assert not any(type(e) is SetTimer and e.key.__class__ is TimerKey and e.key.kind is TimerKind.REBUILD
                   for e in out)
