"""Flows rendered from the mobility state, installed in the fake OpenFlow switch through ofsync (the
bytes a real switch gets): forwarding decisions."""
import pytest

from ryu_dmm.lab import ofreference
from ryu_dmm.mobility.config import Mode
from ryu_dmm.pipeline import ETH_IPV6, Flow, MaarView, SwitchPorts, check, cookie_of, load, render
from tests.fakeswitch import CONTROLLER, FakeSwitch
from tests.sim import Net, domain

PORTS = SwitchPorts(core=1, tunnel=2, agent=3, access=(10, 11))
A1, A2, A3 = "2001:db8:ff::1", "2001:db8:ff::2", "2001:db8:ff::3"
MN_MAC = bytes.fromhex("020000000001")
GW = bytes.fromhex("02000000ffff")


@pytest.fixture(scope="module")
def pipeline():
    return load()


def view(n: Net, name: str) -> MaarView:
    return MaarView(n.maars[name].info.mac, GW, 0x444D4D, {m.address: m.mac for m in n.domain.maars})


def switch(pipeline, flows) -> FakeSwitch:
    sw = FakeSwitch()
    dp = sw.connect()
    for f in flows:
        dp.send_msg(ofreference.flow_mod(dp, pipeline, f))
    return sw


def hexmac(b: bytes) -> str:
    return b.hex(":")


def tables_after_three_visits():
    n = Net(domain(3, mode=Mode.PROXY))
    for i, maar in enumerate(("maar1", "maar2", "maar3")):
        n.attach(maar, "mn1", port=10)
        n.run(0.1)
    states = {name: {mn: st for (m, mn), st in n.dataplane.items() if m == name} for name in n.maars}
    return n, states


def test_pipeline_declaration(pipeline):
    assert [t.name for t in pipeline.tables] == ["classify", "uplink", "downlink", "from_tunnel"]
    assert [t.id for t in pipeline.tables] == [0, 1, 2, 3]


def test_forwarding_at_serving_and_previous_maars(pipeline):
    n, states = tables_after_three_visits()
    s = switch(pipeline, render(states["maar3"], PORTS, view(n, "maar3"), pipeline))
    up = {"in_port": 10, "eth_type": ETH_IPV6, "ipv6_dst": "2001:db8:99::1"}
    # new flows use the local prefix: routed natively, no tunnel
    d = s.forward(dict(up, ipv6_src="2001:db8:3::a"))
    assert (d.outputs, d.eth_src, d.eth_dst, d.tun_ipv6_dst) == ((1,), hexmac(n.maars["maar3"].info.mac), hexmac(GW), None)
    # old flows keep their address: uplink into the tunnel to the anchoring MAAR
    d = s.forward(dict(up, ipv6_src="2001:db8:1::a"))
    assert (d.outputs, d.tun_ipv6_dst, d.tunnel_id) == ((2,), A1, 0x444D4D)
    assert s.forward(dict(up, ipv6_src="2001:db8:2::a")).tun_ipv6_dst == A2
    # downlink for an old prefix arriving from the tunnel goes to the MN with the anchor's DLIF MAC
    d = s.forward({"in_port": 2, "eth_type": ETH_IPV6, "ipv6_src": "2001:db8:99::1", "ipv6_dst": "2001:db8:1::a"})
    assert (d.outputs, d.eth_src, d.eth_dst) == ((10,), hexmac(n.maars["maar1"].info.mac), hexmac(MN_MAC))
    # downlink for the local prefix from the core
    assert s.forward({"in_port": 1, "eth_type": ETH_IPV6, "ipv6_dst": "2001:db8:3::a"}).outputs == (10,)
    # RS from the MN goes to the agent and the controller
    assert s.forward({"in_port": 10, "eth_type": ETH_IPV6, "ip_proto": 58, "icmpv6_type": 133}).outputs == (
        3, CONTROLLER)
    # unknown prefixes are not forwarded: copied to the agent and the controller (an MN just arrived)
    assert s.forward(dict(up, ipv6_src="2001:db8:77::1")).outputs == (3, CONTROLLER)

    p = switch(pipeline, render(states["maar1"], PORTS, view(n, "maar1"), pipeline))
    # at the anchor, downlink for its prefix goes into the tunnel to the serving MAAR
    d = p.forward({"in_port": 1, "eth_type": ETH_IPV6, "ipv6_dst": "2001:db8:1::a"})
    assert (d.outputs, d.tun_ipv6_dst, d.tunnel_id) == ((2,), A3, 0x444D4D)
    # uplink tunnelled back by the serving MAAR is routed natively there
    d = p.forward({"in_port": 2, "eth_type": ETH_IPV6, "ipv6_src": "2001:db8:1::a", "ipv6_dst": "2001:db8:99::1"})
    assert d.outputs == (1,)


def test_rendering_is_idempotent_per_mn_constant_and_removable(pipeline):
    n, states = tables_after_three_visits()
    v = view(n, "maar3")
    once, twice = render(states["maar3"], PORTS, v, pipeline), render(states["maar3"], PORTS, v, pipeline)
    assert once == twice
    base = render({}, PORTS, v, pipeline)
    per_mn = len(once) - len(base)
    assert per_mn == 2 * (1 + 2)  # local route + one tunnel per P-MAAR, two flows each
    many = {f"mn{i}": st for i in range(50) for st in states["maar3"].values()}
    assert len(render(many, PORTS, v, pipeline)) - len(base) == 50 * per_mn
    sw = switch(pipeline, once)
    dp = sw.datapath
    dp.send_msg(ofreference.delete_cookie(dp, cookie_of("mn1")))
    assert sorted((e.table_id, e.priority, e.cookie) for e in sw.entries) == sorted(
        (pipeline.table(f.table).id, f.priority, f.cookie) for f in base)


def test_undeclared_use_is_refused(pipeline):
    with pytest.raises(ValueError, match="does not match on"):
        check(pipeline, [Flow("downlink", 1, (("in_port", 1),))])
    with pytest.raises(ValueError, match="has no action"):
        check(pipeline, [Flow("classify", 1, (), (("set_field:eth_dst", 1),))])
    with pytest.raises(ValueError, match="cannot go to"):
        check(pipeline, [Flow("uplink", 1, (), goto="classify")])
