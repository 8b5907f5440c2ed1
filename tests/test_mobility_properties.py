"""Random movement of several MNs over several MAARs, in every mode, over a lossy, duplicating,
reordering network with skewed MAAR clocks, with the CMD's flow mirror driving fake OpenFlow
switches whose barrier replies are lost or late and which go away for a while. Once the network is
quiet the domain must be consistent, and every switch must forward each MN's prefixes as that
MAAR's own core says.

Deterministic: hypothesis runs derandomized (the same examples on every run, no example database),
so CI never sees a failure a developer could not replay. ``DMM_SOAK=N`` runs N examples instead of
the default 1000 (a soak: ``DMM_SOAK=20000 pytest tests/test_mobility_properties.py``)."""
import os

from hypothesis import HealthCheck, given, settings, strategies as st

from ryu_dmm.mobility.config import Dereg, Timers
from ryu_dmm.mobility.maar import Role
from ryu_dmm.mobility.views import dataplanes
from ryu_dmm.pipeline import ETH_IPV6
from tests.sim import DMM_MODES, PORTS, Net, domain

LIFETIME = 400  # long: the first check must come before any lifetime runs out
RETRANSMISSIONS_DONE = 35.0  # 1+2+4+8+16 s of back-off, plus margin

EXAMPLES = int(os.environ.get("DMM_SOAK", "1000"))
CN = "2001:db8:99::1"
# per-MAAR clock offsets; with the delays below they stay inside the timestamp window, as RFC 5213
# requires of a deployment (a node further off is refused with 156, which is not what this tests)
skews = st.one_of(st.just((0.0,) * 4), st.tuples(*[st.sampled_from([-0.1, -0.05, 0.0, 0.05, 0.1, 0.15])] * 4))

moves = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 3), st.floats(0.001, 1.5), st.booleans()),
                 min_size=1, max_size=14)


def settle(n: Net, limit: int = 2000) -> None:
    """Run until no message is in flight and no PBU awaits an answer."""
    for _ in range(limit):
        busy = any(kind == "msg" for _, _, kind, _ in n._queue) or n.cmd.retx.pending or any(
            m.retx.pending for m in n.maars.values())
        if not busy:
            return
        n.run(0.01)
    raise AssertionError("the network never went quiet")


def check_invariants(n: Net, attached: dict[str, str], after_lifetimes: bool) -> None:
    """``attached``: MN -> the MAAR it is attached to now. Stale claims of MNs that left (say an
    unconfirmed registration whose PBA was lost) are cleaned by lifetimes, as in PMIPv6, so they are
    only required to be gone ``after_lifetimes``; they must never carry a route or a tunnel."""
    cmd = n.cmd
    maars = {m.address: m for m in n.maars.values()}
    failed = {r.mn_id for _, _, r in n.reports if r.kind in ("failed", "rejected")}
    assert all(b.handover is None and len(b.pmaars) <= n.domain.timers.max_pmaars for b in cmd.cache.values())
    # each prefix anchored at exactly one MAAR, always from that MAAR's own pool
    seen = {}
    for m in maars.values():
        for b in m.bindings.values():
            assert b.prefix not in seen, (b.prefix, m.info.name, seen.get(b.prefix))
            assert m.pool.contains(b.prefix)
            seen[b.prefix] = m.info.name
    for mn, maar in attached.items():
        bce = cmd.cache.get(mn)
        if mn in failed and (bce is None or bce.serving != n.maars[maar].address):
            continue  # its registration was reported as failed
        assert bce is not None and bce.serving == n.maars[maar].address, (mn, maar, bce)
        s = maars[bce.serving].bindings.get(mn)
        assert s is not None and s.role is Role.SERVING and s.prefix == bce.prefix, (mn, bce, s)
        assert s.anchors == dict(bce.pmaars), (mn, s.anchors, bce.pmaars)  # uplink to every P-MAAR
        for addr, prefix in bce.pmaars:  # every P-MAAR tunnels its prefix to the serving MAAR
            p = maars[addr].bindings.get(mn)
            assert p is not None and p.role is Role.ANCHOR and p.prefix == prefix and p.serving_maar == bce.serving, (mn, addr, p)
        # what the CMD mirrors into the flow tables equals what each MAAR holds
        for addr, state in dataplanes(bce, s.port).items():
            assert state == maars[addr].dataplane(mn), (mn, addr)
    for m in maars.values():
        for mn, b in m.bindings.items():
            bce = cmd.cache.get(mn)
            listed = bce is not None and (m.address == bce.serving or (m.address, b.prefix) in bce.pmaars)
            if after_lifetimes:
                assert listed, (m.info.name, mn, b)
            elif not listed:  # no route or tunnel for a session the CMD does not hold us part of
                assert m.dataplane(mn).empty, (m.info.name, mn, b)
    if after_lifetimes:
        assert set(cmd.cache) <= set(attached), (set(cmd.cache), attached)
    # what each MAAR last told its data plane is what its state says
    for (name, mn), state in n.dataplane.items():
        assert state == n.maars[name].dataplane(mn), (name, mn)


def host(prefix) -> str:
    return prefix.address.rstrip(":") + "::a" if prefix.address.endswith("::") else prefix.address


def check_forwarding(n: Net, attached: dict[str, str]) -> None:
    """Every switch forwards each attached MN's prefixes (its own and every old one) exactly as its
    MAAR core's data-plane state says: routed to the MN, tunnelled to the serving MAAR or to the
    anchor, or dropped where that MAAR holds nothing for the prefix (no stale tunnel)."""
    failed = {r.mn_id for _, _, r in n.reports if r.kind in ("failed", "rejected")}
    dlif = {m.address: m.mac.hex(":") for m in n.domain.maars}
    for mn, maar in attached.items():
        s = n.cmd.session(mn)
        if s is None or (mn in failed and s.serving != n.maars[maar].address):
            continue
        for name, core in n.maars.items():
            state = core.dataplane(mn)
            local = {r.prefix: r for r in state.local}
            to_serving = {t.prefix: t for t in state.to_serving}
            to_anchor = {t.prefix: t for t in state.to_anchor}
            for prefix in [s.prefix] + [p for _, p in s.pmaars]:
                addr = host(prefix)
                down = n.forward(name, {"in_port": PORTS.core, "eth_type": ETH_IPV6, "ipv6_src": CN, "ipv6_dst": addr})
                if prefix in local:
                    r = local[prefix]
                    assert (down.outputs, down.eth_dst) == ((r.port,), r.mac.hex(":")), (name, mn, prefix, down)
                    up = n.forward(name, {"in_port": r.port, "eth_type": ETH_IPV6, "ipv6_src": addr, "ipv6_dst": CN})
                    assert up.outputs == (PORTS.core,), (name, mn, prefix, up)
                elif prefix in to_serving:
                    assert (down.outputs, down.tun_ipv6_dst) == ((PORTS.tunnel,), to_serving[prefix].serving_maar), \
                        (name, mn, prefix, down)
                else:
                    assert down.dropped, (name, mn, prefix, down)
                if prefix in to_anchor:
                    t = to_anchor[prefix]
                    up = n.forward(name, {"in_port": t.port, "eth_type": ETH_IPV6, "ipv6_src": addr, "ipv6_dst": CN})
                    assert (up.outputs, up.tun_ipv6_dst) == ((PORTS.tunnel,), t.anchor_maar), (name, mn, prefix, up)
                    back = n.forward(name, {"in_port": PORTS.tunnel, "eth_type": ETH_IPV6, "ipv6_src": CN,
                                            "ipv6_dst": addr})
                    assert (back.outputs, back.eth_src, back.eth_dst) == ((t.port,), dlif[t.anchor_maar],
                                                                           t.mac.hex(":")), (name, mn, prefix, back)


GIVEN = dict(mode=st.sampled_from(DMM_MODES), dereg=st.sampled_from(list(Dereg)), steps=moves,
             loss=st.sampled_from([0.0, 0.05, 0.15]), dup=st.sampled_from([0.0, 0.1]),
             jitter=st.sampled_from([0.0, 0.02, 0.1, 0.5]), skew=skews, max_pmaars=st.sampled_from([8, 1, 2]),
             seed=st.integers(0, 2**16), barrier_loss=st.sampled_from([0.0, 0.2, 1.0]),
             of_jitter=st.sampled_from([0.0, 0.05, 1.5]),
             outages=st.lists(st.tuples(st.integers(0, 13), st.integers(0, 3), st.booleans()), max_size=3))


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(**GIVEN)
def test_domain_converges(mode, dereg, steps, loss, dup, jitter, skew, max_pmaars, seed, barrier_loss, of_jitter,
                          outages):
    converges(mode, dereg, steps, loss, dup, jitter, skew, max_pmaars, seed, barrier_loss, of_jitter, outages, "cmd")


@settings(max_examples=EXAMPLES // 3, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(**GIVEN)
def test_domain_converges_with_maars_programming_their_switches(mode, dereg, steps, loss, dup, jitter, skew,
                                                                max_pmaars, seed, barrier_loss, of_jitter, outages):
    """flow_control = maar: each MAAR's own mirror drives its switch (docs/flow-control.md)."""
    converges(mode, dereg, steps, loss, dup, jitter, skew, max_pmaars, seed, barrier_loss, of_jitter, outages, "maar")


def converges(mode, dereg, steps, loss, dup, jitter, skew, max_pmaars, seed, barrier_loss, of_jitter, outages,
              flow_control):
    # delays up to half a second need a wider timestamp window than the 300 ms default
    window = 0.3 if jitter <= 0.1 else 1.0
    d = domain(4, mode=mode, dereg=dereg,
               timers=Timers(lifetime=LIFETIME, aggregate_timeout=1.0, timestamp_window=window,
                             max_pmaars=max_pmaars))
    spread = max(skew) - min(skew)
    min_gap = 0.0
    if spread and jitter:
        # Timestamps order two attachments of one MN only if the clocks are closer than the time
        # between the two PBUs: with skew AND reordering (jitter; loss and duplication, whose copies
        # arrive late; a round trip over 1 s, whose retransmission re-stamps a registration just
        # before the move) a move faster than the skew spread can be ordered the wrong way round
        # (docs/mobility.md, known limits). Such moves are kept to networks that do not reorder;
        # with reordering, PBUs of two attachments are further apart than the skew and the delay.
        loss = dup = 0.0
        jitter = min(jitter, 0.1)
        min_gap = spread + jitter + 0.01
    n = Net(d, loss=loss, dup=dup, jitter=jitter, seed=seed, skew={m.address: s for m, s in zip(d.maars, skew)},
            switches=True, barrier_loss=barrier_loss, of_jitter=of_jitter, flow_control=flow_control)
    where = {}
    for i, (mn_i, maar_i, gap, leave) in enumerate(steps):
        gap = max(gap, min_gap)
        mn, maar = f"mn{mn_i + 1}", f"maar{maar_i + 1}"
        if mn in where:
            n.detach(where.pop(mn), mn)
        if not leave:
            n.attach(maar, mn, port=mn_i + 1)
            where[mn] = maar
        down = {n.maars[f"maar{j + 1}"].address: clear for step, j, clear in outages if step == i}
        for switch, clear in down.items():  # out for this step's gap: what changes meanwhile is missed
            n.disconnect_switch(switch, clear_flows=clear)
        n.run(gap)
        for switch in down:
            n.connect_switch(switch)
    n.loss = n.dup = n.jitter = n.barrier_loss = n.of_jitter = 0.0  # the network goes quiet
    n.run(RETRANSMISSIONS_DONE)
    settle(n)
    check_invariants(n, where, after_lifetimes=False)  # before any expiry could have tidied up
    check_forwarding(n, where)
    n.run(3 * LIFETIME)
    settle(n)
    check_invariants(n, where, after_lifetimes=True)
    check_forwarding(n, where)
