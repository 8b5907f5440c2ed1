"""Legacy PMIPv6 fallback (the draft's Appendix A.5): maar1 acts as LMA, every MN's prefix comes from
its pool and every other serving MAAR tunnels it there (docs/mode-legacy.md).

Driven in the simulation with the fake switches. Expected values worked by hand: the LMA's pool is
2001:db8:1::/48 carved in /64s, so the first MN gets 2001:db8:1::/64 (P1) and the second
2001:db8:1:1::/64; RFC 5213 §5.3.1: a MAG asks with the ALL_ZERO prefix and the LMA's PBA carries
the one it assigns; messages are delivered in the order sent (constant 2 ms latency).
"""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ryu_dmm.domainconf import ConfigError, parse, render
from ryu_dmm.mobility import messages as M
from ryu_dmm.mobility.config import ALL_ZERO, Domain, Mode, Timers
from ryu_dmm.mobility.dataplane import EMPTY, LocalRoute, MnDataPlane, TunnelToAnchor, TunnelToServing
from ryu_dmm.mobility.events import Received
from ryu_dmm.mobility.maar import Role
from ryu_dmm.mobility.views import dataplanes
from ryu_dmm.pipeline import ETH_IPV6
from ryu_dmm.wire import Prefix
from tests.sim import CMD, PORTS, Net, domain
from tests.test_mobility_properties import (
    CN, EXAMPLES, LIFETIME, RETRANSMISSIONS_DONE, check_forwarding, host, moves, settle,
)

A1, A2, A3 = "2001:db8:ff::1", "2001:db8:ff::2", "2001:db8:ff::3"
P1 = Prefix.parse("2001:db8:1::/64")
P1B = Prefix.parse("2001:db8:1:1::/64")
MAC = bytes.fromhex("020000000001")


def net(**kw) -> Net:
    return Net(domain(3, mode=Mode.LEGACY, lma="maar1", **kw), switches=True)


def up(n: Net, serving: str, prefix: Prefix = P1, port: int = 1):
    """MN -> CN: where the packet leaves the domain, through the tunnels it is put in."""
    return n.carry(serving, {"in_port": port, "eth_type": ETH_IPV6, "ipv6_src": host(prefix), "ipv6_dst": CN})


def down(n: Net, entry: str, prefix: Prefix = P1):
    """CN -> MN, entering the domain at ``entry``'s core port (the LMA: where the prefix is routed)."""
    return n.carry(entry, {"in_port": PORTS.core, "eth_type": ETH_IPV6, "ipv6_src": CN, "ipv6_dst": host(prefix)})


def move(n: Net, frm, to: str, mn: str = "mn1") -> int:
    if frm is not None:
        n.detach(frm, mn)
    mark = len(n.log)
    n.attach(to, mn)
    n.run(1.0)
    settle(n)
    return mark


def pbu_sent(n: Net, mark: int) -> list:
    """(src, dst, lifetime, HNP, Serving MAAR) of each PBU since ``mark``."""
    return [(n.name[d.src], n.name[d.dst], d.msg.lifetime, d.msg.hnps, d.msg.serving_maar) for d in n.log[mark:]
            if type(d.msg).__name__ == "BindingUpdate"]


def test_first_registration_away_from_the_lma_tunnels_to_it():
    n = net()
    mark = move(n, None, "maar2")
    assert n.messages(mark) == [("maar2", "cmd", "PBU"), ("cmd", "maar1", "PBU*"), ("maar1", "cmd", "PBA*"),
                                ("cmd", "maar2", "PBA*")]
    assert n.log[mark].msg.hnps == (ALL_ZERO,)  # the MAAR asks; the CMD assigns from the LMA's pool
    assert n.log[mark + 1].msg.hnps == (P1,) and n.log[mark + 1].msg.serving_maar == A2
    pba = n.log[mark + 3].msg
    assert pba.hnps == (P1,) and [(p.maar, p.prefix) for p in pba.previous_maars] == [(A1, P1)]
    assert n.dataplane[("maar2", "mn1")] == MnDataPlane(to_anchor=(TunnelToAnchor(P1, A1, MAC, 1),))
    assert n.dataplane[("maar1", "mn1")] == MnDataPlane(to_serving=(TunnelToServing(P1, A2),))
    assert ("maar3", "mn1") not in n.dataplane
    ra = [e for _, name, e in n.adverts if name == "maar2"][-1]
    assert [(p.prefix, p.preferred > 0, p.dlif) for p in ra.prefixes] == [(P1, True, None)]
    # one tunnel each way, through the LMA
    assert up(n, "maar2") == [("maar1", PORTS.core)]
    assert down(n, "maar1") == [("maar2", 1)]
    assert [r.detail for r in n.reports_of("registered", "cmd")] == ["maar2 via the LMA"]
    check_forwarding(n, {"mn1": "maar2"})


def test_registration_at_the_lma_routes_natively():
    n = net()
    mark = move(n, None, "maar1")
    assert n.messages(mark) == [("maar1", "cmd", "PBU"), ("cmd", "maar1", "PBA")]
    assert n.log[mark].msg.hnps == (ALL_ZERO,) and n.log[mark + 1].msg.hnps == (P1,)
    assert n.dataplane[("maar1", "mn1")] == MnDataPlane(local=(LocalRoute(P1, MAC, 1),))
    assert up(n, "maar1") == [("maar1", PORTS.core)] and down(n, "maar1") == [("maar1", 1)]
    # a second MN gets the LMA's next prefix, wherever it attaches
    mark = move(n, None, "maar3", "mn2")
    assert n.log[mark + 1].msg.hnps == (P1B,) and n.cmd.session("mn2").pmaars == ((A1, P1B),)


def test_handovers_keep_the_one_prefix_and_the_one_anchor():
    n = net()
    move(n, None, "maar1")
    # LMA -> maar2: the LMA becomes the anchor, as a P-MAAR in relay mode; nobody else is told
    mark = move(n, "maar1", "maar2")
    assert n.messages(mark) == [("maar2", "cmd", "PBU"), ("cmd", "maar1", "PBU*"), ("maar1", "cmd", "PBA*"),
                                ("cmd", "maar2", "PBA*")]
    assert n.maars["maar1"].bindings["mn1"].role is Role.ANCHOR
    assert up(n, "maar2") == [("maar1", PORTS.core)] and down(n, "maar1") == [("maar2", 1)]
    # maar2 -> maar3: the LMA re-points its tunnel; maar2, which anchors nothing, drops the MN
    mark = move(n, "maar2", "maar3")
    assert pbu_sent(n, mark) == [("maar3", "cmd", 3600, (ALL_ZERO,), None), ("cmd", "maar2", 3600, (P1,), A3),
                                 ("cmd", "maar1", 3600, (P1,), A3)]
    assert "mn1" not in n.maars["maar2"].bindings and n.dataplane[("maar2", "mn1")] == EMPTY
    assert n.cmd.session("mn1").pmaars == ((A1, P1),) and n.cmd.session("mn1").prefix == P1
    assert up(n, "maar3") == [("maar1", PORTS.core)] and down(n, "maar1") == [("maar3", 1)]
    assert up(n, "maar2") == [("maar2", PORTS.agent), ("maar2", "CONTROLLER")]  # no stale flow at maar2
    check_forwarding(n, {"mn1": "maar3"})
    # back to the LMA: it routes the prefix natively again; maar3 drops the MN
    mark = move(n, "maar3", "maar1")
    assert pbu_sent(n, mark) == [("maar1", "cmd", 3600, (P1,), None), ("cmd", "maar3", 3600, (P1,), A1)]
    assert n.dataplane[("maar1", "mn1")] == MnDataPlane(local=(LocalRoute(P1, MAC, 1),))
    assert up(n, "maar1") == [("maar1", PORTS.core)] and down(n, "maar1") == [("maar1", 1)]
    assert [r.detail for r in n.reports_of("handover", "cmd")] == ["to maar2", "to maar3", "to maar1"]
    check_forwarding(n, {"mn1": "maar1"})


def test_reregistration_and_end_of_session():
    n = net(timers=Timers(lifetime=40))
    move(n, None, "maar2")
    n.run(40 * 0.8 + 1)  # re-registration with the assigned prefix (HI 5), answered with the anchor
    rereg = [d.msg for d in n.log if n.name[d.src] == "maar2" and type(d.msg).__name__ == "BindingUpdate"][-1]
    assert rereg.hnps == (P1,) and rereg.handoff == 5
    assert n.maars["maar2"].bindings["mn1"].anchors == {A1: P1}
    n.detach("maar2", "mn1")
    n.run(2 * 40 + 30)
    settle(n)
    assert n.cmd.session("mn1") is None and not n.maars["maar1"].bindings and not n.maars["maar2"].bindings
    assert down(n, "maar1") == []
    # P1 left quarantine (MinDelayBeforeBCEDelete, 10 s): the next MN may have it
    mark = move(n, None, "maar3", "mn2")
    assert n.log[mark + 1].msg.hnps == (P1,)


def test_cmd_refuses_a_prefix_outside_the_lma_pool():
    n = net()
    move(n, None, "maar2")
    core = n.cmd
    own = Prefix.parse("2001:db8:2::/64")  # maar2's own pool: not the LMA's
    out = core.handle(Received(A2, M.pbu(7, n.now, "mn9", own, 40, 1, 3)), n.now)
    (pba,) = [e.msg for e in out if type(e).__name__ == "Send"]
    assert pba.status == 155


def test_configuration_names_the_lma():
    d = domain(3, mode=Mode.LEGACY, lma="maar1")
    assert parse(render(d))[0].lma == "maar1"
    text = render(d)
    with pytest.raises(ConfigError, match=r"\[dmm\] lma: missing"):
        parse(text.replace("lma = maar1\n", ""))
    with pytest.raises(ConfigError, match=r"\[dmm\] lma: 'maar9' is not a configured MAAR"):
        parse(text.replace("lma = maar1", "lma = maar9"))
    with pytest.raises(ConfigError, match=r"\[dmm\] lma: only with mode = legacy"):
        parse(text.replace("mode = legacy", "mode = proxy"))
    with pytest.raises(ValueError):
        Domain(CMD, d.maars, Mode.PROXY, lma="maar1")


def check_legacy(n: Net, attached: dict[str, str], after_lifetimes: bool) -> None:
    """Legacy invariants: each attached MN's one prefix is the LMA's; its serving MAAR holds it, and
    the LMA routes it natively (MN there) or tunnels it to the serving MAAR; no other MAAR holds a
    route or tunnel for it; what the CMD mirrors equals what each MAAR core holds."""
    lma = n.maars["maar1"]
    failed = {r.mn_id for _, _, r in n.reports if r.kind in ("failed", "rejected")}
    for mn, maar in attached.items():
        s = n.cmd.session(mn)
        if mn in failed and (s is None or s.serving != n.maars[maar].address):
            continue
        assert s is not None and s.serving == n.maars[maar].address, (mn, maar, s)
        assert lma.pool.contains(s.prefix) and s.pmaars == (() if maar == "maar1" else ((A1, s.prefix),))
        b = n.maars[maar].bindings[mn]
        assert b.role is Role.SERVING and b.prefix == s.prefix, (mn, b)
        if maar != "maar1":
            a = lma.bindings[mn]
            assert a.role is Role.ANCHOR and a.prefix == s.prefix and a.serving_maar == s.serving, (mn, a)
        for name, core in n.maars.items():
            want = dataplanes(s, b.port).get(core.address, EMPTY)
            assert core.dataplane(mn) == want, (mn, name)
    for core in n.maars.values():
        for mn, b in core.bindings.items():
            s = n.cmd.session(mn)
            listed = s is not None and core.address in (s.serving, *(a for a, _ in s.pmaars))
            assert listed or (not after_lifetimes and core.dataplane(mn).empty), (core.info.name, mn, b)
    if after_lifetimes:
        assert set(n.cmd.mn_ids()) <= set(attached)


@settings(max_examples=min(EXAMPLES, 200), derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=moves, loss=st.sampled_from([0.0, 0.05, 0.15]), dup=st.sampled_from([0.0, 0.1]),
       jitter=st.sampled_from([0.0, 0.02, 0.1]), seed=st.integers(0, 2**16))
def test_legacy_domain_converges(steps, loss, dup, jitter, seed):
    d = domain(4, mode=Mode.LEGACY, lma="maar1", timers=Timers(lifetime=LIFETIME, aggregate_timeout=1.0))
    n = Net(d, loss=loss, dup=dup, jitter=jitter, seed=seed, switches=True)
    where = {}
    for mn_i, maar_i, gap, leave in steps:
        mn, maar = f"mn{mn_i + 1}", f"maar{maar_i + 1}"
        if mn in where:
            n.detach(where.pop(mn), mn)
        if not leave:
            n.attach(maar, mn, port=mn_i + 1)
            where[mn] = maar
        n.run(gap)
    n.loss = n.dup = n.jitter = 0.0
    n.run(RETRANSMISSIONS_DONE)
    settle(n)
    check_legacy(n, where, after_lifetimes=False)
    check_forwarding(n, where)
    n.run(3 * LIFETIME)
    settle(n)
    check_legacy(n, where, after_lifetimes=True)
    check_forwarding(n, where)


def _walk(mode: Mode) -> tuple[list, dict]:
    """MN mn1 walks maar1 -> maar2 -> maar3. Per handover: ms from the new MAAR's PBU to its PBA (when
    it can route), and ms the CMD reports for the whole handover. At the end, per prefix of the MN:
    where its uplink leaves the domain (the MAAR anchoring it: a tunnel if not maar3), checking that
    the downlink entering there reaches the MN."""
    kw = {"lma": "maar1"} if mode is Mode.LEGACY else {}
    n = Net(domain(3, mode=mode, **kw), switches=True)
    move(n, None, "maar1")
    times = []
    for frm, to in (("maar1", "maar2"), ("maar2", "maar3")):
        n.detach(frm, "mn1")
        start, mark = n.now, len(n.log)
        n.attach(to, "mn1")
        n.run(1.0)
        settle(n)
        answer = next(d.at for d in n.log[mark:] if n.name[d.dst] == to and type(d.msg).__name__ == "BindingAck")
        (ho,) = [r for r in n.reports_of("handover", "cmd") if r.detail == f"to {to}"]
        times.append((round((answer - start) * 1000, 3), round(ho.duration * 1000, 3)))
    s = n.cmd.session("mn1")
    exits = {}
    for prefix in [s.prefix] + [p for _, p in s.pmaars if p != s.prefix]:
        ((exit_maar, port),) = up(n, "maar3", prefix)
        assert port == PORTS.core and down(n, exit_maar, prefix) == [("maar3", 1)]
        exits[str(prefix)] = exit_maar
    return times, exits


def test_legacy_compared_with_dmm_for_the_same_walk():
    """Hand-worked with 2 ms per message and 1 ms per OpenFlow message: the CMD holds its PBA to the
    new MAAR until that MAAR's switch confirmed the MN's flows (a barrier: 1 ms there, 1 ms back). Proxy
    answers the new MAAR at once (2 + 1 + 2 = 5 ms, the barrier overlapping nothing); relay and legacy
    answer once the anchor has (2 + 2 + 2 + 2 = 8 ms, the barrier long done); the CMD's own handover
    is the round trip to the anchor (4 ms) in all three. In DMM the newest prefix leaves at maar3, with
    no tunnel, and each old one crosses one tunnel to its anchor; in legacy mode the MN's one prefix
    crosses one tunnel to the LMA, whatever the flow's age."""
    proxy, legacy, relay = _walk(Mode.PROXY), _walk(Mode.LEGACY), _walk(Mode.RELAY)
    assert proxy[0] == [(5.0, 4.0), (5.0, 4.0)]
    assert relay[0] == legacy[0] == [(8.0, 4.0), (8.0, 4.0)]
    p1, p2, p3 = "2001:db8:1::/64", "2001:db8:2::/64", "2001:db8:3::/64"
    assert proxy[1] == relay[1] == {p3: "maar3", p1: "maar1", p2: "maar2"}
    assert legacy[1] == {p1: "maar1"}
