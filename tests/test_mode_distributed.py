"""The fully distributed MAAR (docs/mode-distributed.md), message by message.

Every message crosses the real codec. Expected messages, statuses and states are worked out by hand
from the design in docs/mode-distributed.md, RFC 5213 (status codes 153, 154, 157, 129; lifetimes;
retransmission at 1 s doubling, FACTS.md) and RFC 8885 (Serving MAAR, Anchored Prefix, DLIF).
"""
import heapq
import socket
import itertools
import os
import random

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ryu_dmm.mobility.config import Domain, MaarInfo, Timers
from ryu_dmm.mobility.dataplane import LocalRoute, MnDataPlane, TunnelToAnchor, TunnelToServing
from ryu_dmm.mobility.distributed import DistributedMaar
from ryu_dmm.mobility.maar import Role
from ryu_dmm.mobility.events import Advertise, Attach, CancelTimer, DataPlaneChanged, Detach, Received, Report, \
    Send, SetTimer, TimerFired
from ryu_dmm.mobility import messages as M
from ryu_dmm.wire import AnchoredPrefix, BindingAck, BindingUpdate, Prefix, decode, encode

T0 = 1_700_000_000.0
ADDR = {f"maar{i}": f"2001:db8:ff::{i}" for i in (1, 2, 3)}
PREF = {f"maar{i}": Prefix.parse(f"2001:db8:{i}::/64") for i in (1, 2, 3)}  # each pool's first /64
MAC = bytes.fromhex("02000000000a")
MN = "mn-1@dmm"


class Mesh:
    """Three DistributedMaars; messages delivered in order after ``latency``, timers on a virtual clock."""

    def __init__(self, latency=0.001, lifetime=400, loss=0.0, dup=0.0, jitter=0.0, seed=0, skew=None, **timers):
        maars = tuple(MaarInfo(n, a, Prefix.parse(f"2001:db8:{n[-1]}::/48"), mac=bytes.fromhex(f"02000000ff0{n[-1]}"))
                      for n, a in ADDR.items())
        self.domain = Domain("2001:db8:ff::100", maars, timers=Timers(lifetime=lifetime, **timers))
        self.nodes = {a: DistributedMaar(self.domain, n) for n, a in ADDR.items()}
        self.name = {a: n for n, a in ADDR.items()}
        self.now, self.latency = T0, latency
        self.queue, self.count, self.timers = [], itertools.count(), {}
        self.log, self.effects, self.down = [], [], set()
        self.latency_of = {}  # source address -> its own one-way latency
        self.loss, self.dup, self.jitter, self.rng = loss, dup, jitter, random.Random(seed)
        self.skew = {ADDR[n]: s for n, s in (skew or {}).items()}  # node -> seconds its clock is ahead

    def node(self, name):
        return self.nodes[ADDR[name]]

    def clock(self, addr, at=None):
        return (self.now if at is None else at) + self.skew.get(addr, 0.0)

    def inject(self, name, event):
        self._apply(ADDR[name], self.node(name).handle(event, self.clock(ADDR[name])))

    def _apply(self, addr, effects):
        for e in effects:
            self.effects.append((self.now, self.name[addr], e))
            if type(e) is Send:
                if self.rng.random() < self.loss:
                    continue
                for _ in range(2 if self.rng.random() < self.dup else 1):
                    delay = self.latency_of.get(addr, self.latency) + self.rng.random() * self.jitter
                    heapq.heappush(self.queue, (self.now + delay, next(self.count), "msg", (addr, e.dst, encode(e.msg))))
            elif type(e) is SetTimer:
                token = next(self.count)
                self.timers[(addr, e.key)] = token
                heapq.heappush(self.queue, (max(self.now, e.at - self.skew.get(addr, 0.0)), token, "timer", (addr, e.key)))
            elif type(e) is CancelTimer:
                self.timers.pop((addr, e.key), None)

    def run(self, seconds):
        end = self.now + seconds
        while self.queue and self.queue[0][0] <= end:
            at, token, kind, payload = heapq.heappop(self.queue)
            self.now = at
            if kind == "msg":
                src, dst, raw = payload
                msg = decode(raw)
                if dst in self.down:
                    continue
                self.log.append((at, self.name[src], self.name[dst], msg))
                self._apply(dst, self.nodes[dst].handle(Received(src, msg), self.clock(dst, at)))
            elif self.timers.get(payload) == token:
                del self.timers[payload]
                self._apply(payload[0], self.nodes[payload[0]].handle(TimerFired(payload[1]), self.clock(payload[0], at)))
        self.now = end

    def messages(self, since=0):
        """(src, dst, 'PBU'|'PBA', status or None) in delivery order."""
        return [(s, d, "PBU" if type(m) is BindingUpdate else "PBA", getattr(m, "status", None))
                for _, s, d, m in self.log[since:]]

    def last(self, name, kind):
        return [e for _, n, e in self.effects if n == name and type(e) is kind][-1]

    def reports(self, name, kind):
        return [e for _, n, e in self.effects if n == name and type(e) is Report and e.kind == kind]


def test_first_attachment_serves_at_once_and_asks_every_peer():
    m = Mesh()
    m.inject("maar1", Attach(MN, MAC, 5))
    # served at once: route and RA before any answer
    assert m.last("maar1", DataPlaneChanged).state == MnDataPlane(local=(LocalRoute(PREF["maar1"], MAC, 5),))
    ra = m.last("maar1", Advertise)
    assert [(p.prefix, p.preferred, p.valid) for p in ra.prefixes] == [(PREF["maar1"], 400, 400)]
    m.run(0.01)
    assert m.messages() == [("maar1", "maar2", "PBU", None), ("maar1", "maar3", "PBU", None),
                            ("maar2", "maar1", "PBA", 153), ("maar3", "maar1", "PBA", 153)]
    pbu = m.log[0][3]
    assert pbu.mn_id == MN and pbu.hnps == (PREF["maar1"],) and pbu.serving_maar == ADDR["maar1"]
    assert pbu.handoff == 4 and pbu.lifetime == 400 and pbu.mn_ll_id == MAC and pbu.timestamp is not None
    assert [r.detail for r in m.reports("maar1", "registered")] == ["at maar1 with 0 P-MAAR(s)"]
    assert not m.node("maar2").bindings and not m.node("maar3").bindings


def test_handover_the_previous_maar_tunnels_and_the_new_one_learns_its_prefix():
    m = Mesh()
    m.inject("maar1", Attach(MN, MAC, 5))
    m.run(1)
    m.inject("maar1", Detach(MN))
    since = len(m.log)
    m.inject("maar2", Attach(MN, MAC, 7))
    m.run(0.01)
    assert m.messages(since) == [("maar2", "maar1", "PBU", None), ("maar2", "maar3", "PBU", None),
                                 ("maar1", "maar2", "PBA", 0), ("maar3", "maar2", "PBA", 153)]
    pba = m.log[since + 2][3]
    assert pba.find(AnchoredPrefix).prefix == PREF["maar1"] and pba.serving_maar == ADDR["maar2"]
    assert pba.hnps == (PREF["maar2"],)  # the echo of the asker's HNP (RFC 5213 §6.9.1)
    assert M.dlif_of(pba, None)[0] == bytes.fromhex("02000000ff01")  # maar1's DLIF link-layer address
    assert m.node("maar1").dataplane(MN) == MnDataPlane(to_serving=(TunnelToServing(PREF["maar1"], ADDR["maar2"]),))
    assert m.node("maar2").dataplane(MN) == MnDataPlane(local=(LocalRoute(PREF["maar2"], MAC, 7),),
                                                        to_anchor=(TunnelToAnchor(PREF["maar1"], ADDR["maar1"], MAC, 7),))
    ra = m.last("maar2", Advertise)  # old prefix deprecated, from maar1's DLIF (RFC 8885 §3.7)
    assert [(p.prefix, p.preferred > 0, p.valid > 0, p.dlif) for p in ra.prefixes] == [
        (PREF["maar2"], True, True, None), (PREF["maar1"], False, True, ADDR["maar1"])]
    assert [r.detail for r in m.reports("maar2", "handover")] == ["at maar2 with 1 P-MAAR(s)"]
    assert [r.detail for r in m.reports("maar1", "moved")] == ["now at maar2"]


def test_return_to_an_earlier_maar_reuses_its_prefix_and_the_others_tunnel_to_it():
    m = Mesh()
    for name, port in (("maar1", 5), ("maar2", 6), ("maar3", 7), ("maar1", 8)):
        m.inject(name, Attach(MN, MAC, port))
        m.run(1)
    assert m.node("maar1").dataplane(MN) == MnDataPlane(
        local=(LocalRoute(PREF["maar1"], MAC, 8),),
        to_anchor=(TunnelToAnchor(PREF["maar2"], ADDR["maar2"], MAC, 8),
                   TunnelToAnchor(PREF["maar3"], ADDR["maar3"], MAC, 8)))
    for name in ("maar2", "maar3"):
        assert m.node(name).dataplane(MN) == MnDataPlane(to_serving=(TunnelToServing(PREF[name], ADDR["maar1"]),))
    assert m.node("maar1").pool.in_use == 1  # the same prefix, not a new one


def test_a_duplicated_discovery_is_answered_again_and_changes_nothing():
    m = Mesh()
    m.inject("maar1", Attach(MN, MAC, 5))
    m.run(1)
    m.inject("maar2", Attach(MN, MAC, 7))
    m.run(0.01)  # a copy within the timestamp window (a later one is refused 156, as any stale PBU)
    pbu = next(msg for _, s, d, msg in m.log if (s, d) == ("maar2", "maar1") and type(msg) is BindingUpdate)
    before = len([e for _, n, e in m.effects if n == "maar1" and type(e) is DataPlaneChanged])
    out = m.node("maar1").handle(Received(ADDR["maar2"], pbu), m.now)
    (send,) = [e for e in out if type(e) is Send]  # (and its lifetime restarts)
    assert send.dst == ADDR["maar2"] and send.msg.status == 0 and send.msg.find(AnchoredPrefix).prefix == PREF["maar1"]
    assert before == len([e for _, n, e in m.effects if n == "maar1" and type(e) is DataPlaneChanged])


@pytest.mark.parametrize("first", ["maar2", "maar3"])
def test_concurrent_attachments_are_ordered_by_timestamp(first):
    """The MN attaches at maar2 and 10 ms later at maar3, while maar2's discovery is still in flight
    (50 ms one way): the later attachment wins everywhere, whatever reaches maar1 first."""
    m = Mesh(latency=0.05)
    m.inject("maar1", Attach(MN, MAC, 5))
    m.run(1)
    m.inject("maar2", Attach(MN, MAC, 6))
    m.now += 0.01
    m.latency_of[ADDR["maar3"]] = 0.05 if first == "maar2" else 0.02  # maar3's discovery overtakes maar2's
    m.inject("maar3", Attach(MN, MAC, 7))
    m.run(2)
    at_maar1 = [s for _, s, d, msg in m.log if d == "maar1" and type(msg) is BindingUpdate]
    assert at_maar1[0] == first
    assert m.node("maar3").bindings[MN].role is Role.SERVING
    assert m.node("maar3").bindings[MN].anchors == {ADDR["maar1"]: PREF["maar1"], ADDR["maar2"]: PREF["maar2"]}
    for name in ("maar1", "maar2"):
        assert m.node(name).dataplane(MN) == MnDataPlane(to_serving=(TunnelToServing(PREF[name], ADDR["maar3"]),))
    statuses = [st for s, d, kind, st in m.messages() if (s, d) == ("maar3", "maar2") and kind == "PBA"]
    assert statuses == [157]  # maar2's older discovery refused by maar3 (RFC 5213 status 157)


def test_a_peer_that_never_answers_is_given_up_after_the_retransmissions():
    m = Mesh()
    m.down.add(ADDR["maar3"])
    m.inject("maar1", Attach(MN, MAC, 5))
    m.run(40)
    tries = [e for t, n, e in m.effects if n == "maar1" and type(e) is Send and e.dst == ADDR["maar3"]]
    times = [round(t - T0, 3) for t, n, e in m.effects if n == "maar1" and type(e) is Send and e.dst == ADDR["maar3"]]
    assert len(tries) == 5 and times == [0.0, 1.0, 3.0, 7.0, 15.0]  # 1 s, doubling (RFC 5213 §6.9.4)
    assert [r.detail for r in m.reports("maar1", "failed")] == ["maar3 did not answer"]
    assert [r.detail for r in m.reports("maar1", "registered")] == ["at maar1 with 0 P-MAAR(s)"]


def test_refresh_while_attached_and_deregistration_after_the_mn_left():
    m = Mesh(lifetime=100)
    m.inject("maar1", Attach(MN, MAC, 5))
    m.run(1)
    m.inject("maar2", Attach(MN, MAC, 7))
    m.run(1)
    since = len(m.log)
    m.run(100)  # refreshed at 0.8 x 100 s: maar1 still anchors after the first lifetime
    refresh = [(s, d, msg) for _, s, d, msg in m.log[since:] if type(msg) is BindingUpdate]
    assert [(s, d, msg.handoff, msg.lifetime) for s, d, msg in refresh] == [("maar2", "maar1", 5, 100)]
    assert m.node("maar1").bindings[MN].role is Role.ANCHOR
    m.inject("maar2", Detach(MN))
    since = len(m.log)
    m.run(200)  # no more refreshes; at expiry maar2 de-registers maar1, and both forget the MN
    dereg = [(s, d, kind, st) for s, d, kind, st in m.messages(since)]
    assert dereg == [("maar2", "maar1", "PBU", None), ("maar1", "maar2", "PBA", 0)]
    assert m.log[since][3].lifetime == 0
    assert MN not in m.node("maar1").bindings and MN not in m.node("maar2").bindings
    assert m.node("maar1").dataplane(MN).empty and m.node("maar2").dataplane(MN).empty


def test_an_anchor_whose_serving_maar_went_silent_expires_on_its_own():
    m = Mesh(lifetime=100)
    m.inject("maar1", Attach(MN, MAC, 5))
    m.run(1)
    m.inject("maar2", Attach(MN, MAC, 7))
    m.run(1)
    m.down.add(ADDR["maar1"])  # maar1 hears nothing more (maar2's refreshes are lost)
    m.run(100 + 10 + 1)  # lifetime + MinDelayBeforeBCEDelete (10 s, RFC 5213 §9)
    assert MN not in m.node("maar1").bindings


def test_pbus_from_outside_the_domain_or_for_another_serving_maar_are_refused():
    m = Mesh()
    pbu = M.pbu(1, m.now, MN, PREF["maar2"], 400, 4, 3, MAC, serving=ADDR["maar2"])
    (out,) = m.node("maar1").handle(Received("2001:db8:ff::99", pbu), m.now)
    assert out.msg.status == 154  # MAG_NOT_AUTHORIZED_FOR_PROXY_REG
    (out,) = m.node("maar1").handle(Received(ADDR["maar3"], pbu), m.now)
    assert out.msg.status == 129  # administratively prohibited: maar3 speaking for maar2


# ---- random movement (the property test of tests/test_mobility_properties.py, for this mode) ----
LIFETIME = 400
EXAMPLES = int(os.environ.get("DMM_SOAK", "300"))
moves = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2), st.floats(0.001, 1.5), st.booleans()),
                 min_size=1, max_size=12)
skews = st.one_of(st.just((0.0,) * 3), st.tuples(*[st.sampled_from([-0.1, -0.05, 0.0, 0.05, 0.1])] * 3))


def settle(m: Mesh, limit: int = 4000) -> None:
    for _ in range(limit):
        if not any(k == "msg" for _, _, k, _ in m.queue) and not any(n.retx.pending for n in m.nodes.values()):
            return
        m.run(0.05)
    raise AssertionError("the network never went quiet")


def check(m: Mesh, where: dict, after_lifetimes: bool) -> None:
    """Every MN attached somewhere has exactly one serving MAAR (where it is); every other MAAR that
    holds a binding for it tunnels its prefix to that MAAR and is in its P-MAAR list, or, if the
    serving MAAR never heard its answer, lasts no longer than its lifetime (no stale tunnel then)."""
    owner = {}
    for node in m.nodes.values():
        for b in node.bindings.values():
            assert b.prefix not in owner and node.pool.contains(b.prefix), (b.prefix, node.info.name)
            owner[b.prefix] = node.address
    for mn in {b.mn_id for node in m.nodes.values() for b in node.bindings.values()} | set(where):
        here = {node.info.name: node.bindings[mn] for node in m.nodes.values() if mn in node.bindings}
        serving = [n for n, b in here.items() if b.role is Role.SERVING and b.attached]
        if mn not in where:
            assert serving == [], (mn, serving)
            if after_lifetimes:
                assert here == {}, (mn, here)
            continue
        assert serving == [where[mn]], (mn, serving, where[mn])
        s = here[where[mn]]
        failed = {r.detail.split()[0] for _, n, r in m.effects if n == where[mn] and type(r) is Report
                  and r.kind == "failed" and r.mn_id == mn}
        for name, b in here.items():
            if name == where[mn]:
                continue
            if not after_lifetimes and (name in failed or b.role is Role.SERVING):
                continue  # its answer never came: it expires (checked after the lifetimes)
            assert b.role is Role.ANCHOR and b.serving_maar == ADDR[where[mn]], (mn, name, b)
            assert s.anchors.get(ADDR[name]) == b.prefix, (mn, name, s.anchors)
        for addr, prefix in s.anchors.items():  # nothing listed that does not tunnel to us
            b = m.nodes[addr].bindings.get(mn)
            assert b is not None and b.prefix == prefix and b.serving_maar == ADDR[where[mn]], (mn, addr, b)


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=moves, loss=st.sampled_from([0.0, 0.05, 0.15]), dup=st.sampled_from([0.0, 0.1]),
       jitter=st.sampled_from([0.0, 0.02, 0.1]), skew=skews, seed=st.integers(0, 2**16))
def test_random_moves_converge(steps, loss, dup, jitter, skew, seed):
    spread = max(skew) - min(skew)
    min_gap = spread + jitter + 0.01 if spread and jitter else 0.0  # as in test_mobility_properties.py
    m = Mesh(lifetime=LIFETIME, loss=loss, dup=dup, jitter=jitter, seed=seed,
             skew=dict(zip(ADDR, skew)), timestamp_window=0.3)
    where = {}
    for mn_i, maar_i, gap, leave in steps:
        mn, maar = f"mn{mn_i + 1}", f"maar{maar_i + 1}"
        if mn in where:
            m.inject(where.pop(mn), Detach(mn))
        if not leave:
            m.inject(maar, Attach(mn, bytes((2, 0, 0, 0, 0, mn_i + 1)), mn_i + 1))
            where[mn] = maar
        m.run(max(gap, min_gap))
    m.loss = m.dup = m.jitter = 0.0  # the network goes quiet
    m.run(35)
    settle(m)
    check(m, where, after_lifetimes=False)
    m.run(3 * LIFETIME)
    settle(m)
    check(m, where, after_lifetimes=True)


# ---- the agents, with no CMD ----------------------------------------------------------------------
def distributed_config(port: int) -> str:
    return "[dmm]\nmode = distributed\n[timers]\nheartbeat_interval = 0\n" + "".join(f"""
[maar:maar{i}]
address = ::ffff:127.0.0.{i + 1}
pool = 2001:db8:{i}::/48
datapath_id = {i}
core_port = 1
tunnel_port = 2
agent_port = 3
access_ports = 10
""" for i in (1, 2))


def test_two_agents_find_the_previous_maar_without_a_cmd(tmp_path):
    from ryu_dmm.agent.main import request
    from tests.procs import free_port, running_agent, wait_for

    port = free_port(socket.AF_INET, socket.SOCK_DGRAM)
    (tmp_path / "d.ini").write_text(distributed_config(port))
    ctl = {n: str(tmp_path / f"{n}.sock") for n in ("maar1", "maar2")}
    with running_agent(tmp_path / "d.ini", "maar1", port, ctl["maar1"], tmp_path / "a1.log",
                       "--openflow-listen", f"127.0.0.1:{free_port()}"), \
            running_agent(tmp_path / "d.ini", "maar2", port, ctl["maar2"], tmp_path / "a2.log",
                          "--openflow-listen", f"127.0.0.1:{free_port()}"):
        def reports(n, kind):
            return [e["detail"] for e in request(ctl[n], {"op": "events"})["events"]
                    if e["event"] == "report" and e["kind"] == kind]
        assert request(ctl["maar1"], {"op": "attach", "mn": MN, "mac": "02:00:00:00:00:0a", "port": 10})["ok"]
        assert wait_for(lambda: reports("maar1", "registered") == ["at maar1 with 0 P-MAAR(s)"], 5)
        assert request(ctl["maar1"], {"op": "detach", "mn": MN})["ok"]
        assert request(ctl["maar2"], {"op": "attach", "mn": MN, "mac": "02:00:00:00:00:0a", "port": 10})["ok"]
        assert wait_for(lambda: reports("maar2", "handover") == ["at maar2 with 1 P-MAAR(s)"], 5)
        s2 = request(ctl["maar2"], {"op": "state"})["bindings"][MN]
        s1 = request(ctl["maar1"], {"op": "state"})["bindings"][MN]
        assert s2["local"] == ["2001:db8:2::/64"] and s2["to_anchor"] == [["2001:db8:1::/64", "::ffff:127.0.0.2"]]
        assert s1["local"] == [] and s1["to_serving"] == [["2001:db8:1::/64", "::ffff:127.0.0.3"]]


def test_the_cmd_refuses_a_distributed_domain(tmp_path):
    import subprocess
    from tests.procs import MANAGER, clean_env

    (tmp_path / "d.ini").write_text(distributed_config(5436))
    out = subprocess.run([*MANAGER, "--config-file", str(tmp_path / "d.ini"), "ryu_dmm.cmd"], cwd=tmp_path,
                         env=clean_env(tmp_path / "state"), capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "mode = distributed has no CMD" in out.stderr
