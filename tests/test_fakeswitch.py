"""ofsync's OpenFlow 1.3 messages applied by the fake switch (tests/fakeswitch.py), from the bytes on
the wire. Expected values come from the pipeline declaration and OpenFlow 1.3 semantics, not from the
fake: the tables a flow lands in, the ports and rewritten fields the rendered flows declare, what
ADD / DELETE / DELETE_STRICT / barrier / multipart stats must do."""
import itertools
import ipaddress
import random

import pytest

from ryu_dmm import ofsync
from ryu_dmm.lab import ofreference
from ryu_dmm.flowmirror import ApplyDiff, ReplaceFlows
from ryu_dmm.mobility.dataplane import LocalRoute, MnDataPlane, TunnelToAnchor, TunnelToServing
from ryu_dmm.pipeline import ETH_IPV6, ICMPV6, Flow, MaarView, SwitchPorts, base_flows, cookie_of, diff, \
    load, mn_flows
from ryu_dmm.wire import Prefix
from tests.fakeswitch import CONTROLLER, MAX_MSG_LEN, BarrierMode, FakeSwitch, Rejected, Unsupported

PORTS = SwitchPorts(core=1, tunnel=2, agent=3, access=(10, 11))
MAAR_MAC, GW_MAC, MN_MAC = (bytes.fromhex(h) for h in ("020000000003", "02000000ffff", "020000000a01"))
ANCHOR, ANCHOR_DLIF = "2001:db8:ff::1", bytes.fromhex("020000000001")
SERVING = "2001:db8:ff::2"
KEY = 0x444D4D
VIEW = MaarView(MAAR_MAC, GW_MAC, KEY, {ANCHOR: ANCHOR_DLIF})
P1, P2 = Prefix.parse("2001:db8:1::/64"), Prefix.parse("2001:db8:2::/64")
LOCAL1 = MnDataPlane(local=(LocalRoute(P1, MN_MAC, 10),))
MOVED1 = MnDataPlane(to_serving=(TunnelToServing(P1, SERVING),))
LOCAL2 = MnDataPlane(local=(LocalRoute(P2, MN_MAC, 11),))
CN = "2001:db8:99::1"


def mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def ip6(**fields) -> dict:
    return {"eth_type": ETH_IPV6, **fields}


@pytest.fixture(scope="module")
def pipeline():
    return load()


@pytest.fixture
def sw():
    return FakeSwitch(dpid=0x11)


def install(dp, pipeline, flows) -> None:
    for f in flows:
        dp.send_msg(ofreference.flow_mod(dp, pipeline, f))


_XIDS = itertools.count(1_000_000)


def replace(dp, pipeline, cookie: int, flows) -> int:
    """What the CMD sends for a ReplaceFlows effect; returns the barrier's xid."""
    xid = next(_XIDS)
    for msg in ofreference.messages(dp, pipeline, ReplaceFlows("maar", cookie, tuple(flows), xid)):
        dp.send_msg(msg)
    return xid


def reconcile(dp, pipeline, wanted, stats) -> tuple[int, int]:
    """What the CMD sends to reconcile a switch from its flow stats; returns (deleted, added)."""
    delete, add = diff(pipeline, wanted, ofsync.installed(stats))
    for msg in ofreference.messages(dp, pipeline, ApplyDiff("maar", delete, add, next(_XIDS))):
        dp.send_msg(msg)
    return len(delete), len(add)


def flow_stats(dp) -> list:
    """The switch's flows as the CMD asks for them (cmd.flow_stats), gathering the multipart parts."""
    p, o = dp.ofproto_parser, dp.ofproto
    req = p.OFPFlowStatsRequest(dp, 0, o.OFPTT_ALL, o.OFPP_ANY, o.OFPG_ANY, 0, 0, p.OFPMatch())
    dp.send_msg(req)
    replies = dp.replies()
    assert [r.xid for r in replies] == [req.xid] * len(replies)
    assert [bool(r.flags & o.OFPMPF_REPLY_MORE) for r in replies] == [True] * (len(replies) - 1) + [False]
    return [st for r in replies for st in r.body]


def _norm(k, v):
    """Match values compared as prefixes and MAC strings, whichever form (wire tuple or rendered) they have."""
    if k in ("ipv6_src", "ipv6_dst"):
        if isinstance(v, tuple):
            mask = int(ipaddress.IPv6Address(v[1]))
            length = bin(mask).count("1")
            assert mask == ((1 << length) - 1) << (128 - length), "non-contiguous mask"
            v = f"{v[0]}/{length}"
        return k, str(ipaddress.IPv6Network(v))
    return k, mac(v) if isinstance(v, bytes) else v


def flow_id(pipeline, f: Flow) -> tuple:
    """A rendered flow's identity on a switch: table id from the pipeline declaration, priority, cookie, match."""
    return pipeline.table(f.table).id, f.priority, f.cookie, frozenset(_norm(k, v) for k, v in f.match)


def stat_id(st) -> tuple:
    return st.table_id, st.priority, st.cookie, frozenset(_norm(k, v) for k, v in st.match.items())


# ---- forwarding of the rendered pipeline -------------------------------------------------------------
# What an MN sends first on a link: RS, NS (DAD probes too), NA (RFC 4861, 4862), MLDv1 and MLDv2
# Reports (RFC 2710 §3, RFC 3810 §5.2)
ATTACH_TYPES = (133, 135, 136, 131, 143)


def test_nd_and_mld_from_access_ports_go_to_agent_and_controller(sw, pipeline):
    dp = sw.connect()
    install(dp, pipeline, base_flows(PORTS))
    classify = pipeline.table("classify").id
    for port in PORTS.access:
        for t in ATTACH_TYPES:
            d = sw.forward(ip6(in_port=port, ip_proto=ICMPV6, icmpv6_type=t))
            assert d.outputs == (PORTS.agent, CONTROLLER) and d.tables == (classify,)
    # other traffic from an MN goes to uplink, where nothing routes it yet: copied to the agent and
    # the controller (an MN that just arrived is detected from its first frame), not forwarded
    d = sw.forward(ip6(in_port=10, ip_proto=ICMPV6, icmpv6_type=128, ipv6_src="2001:db8:1::a", ipv6_dst=CN))
    assert d.outputs == (PORTS.agent, CONTROLLER) and d.tables == (classify, pipeline.table("uplink").id)
    # the agent's RAs go out of every access port; traffic from the core to the downlink table
    assert sw.forward({"in_port": PORTS.agent}).outputs == PORTS.access
    assert sw.forward(ip6(in_port=PORTS.core, ipv6_dst="2001:db8:1::a")).tables == (
        classify, pipeline.table("downlink").id)
    # a non-IPv6 frame from an MN matches nothing
    assert sw.forward({"in_port": 10, "eth_type": 0x0800}).dropped


def test_local_route_rewrites_macs_both_ways(sw, pipeline):
    dp = sw.connect()
    install(dp, pipeline, base_flows(PORTS) + mn_flows("mn1", LOCAL1, PORTS, VIEW))
    down = sw.forward(ip6(in_port=PORTS.core, ipv6_src=CN, ipv6_dst="2001:db8:1::a"))
    assert down.outputs == (10,)
    assert (down.eth_src, down.eth_dst) == (mac(MAAR_MAC), mac(MN_MAC))
    up = sw.forward(ip6(in_port=10, ipv6_src="2001:db8:1::a", ipv6_dst=CN))
    assert up.outputs == (PORTS.core,) and (up.eth_src, up.eth_dst) == (mac(MAAR_MAC), mac(GW_MAC))
    assert up.tun_ipv6_dst is None
    # the uplink flow is bound to the MN's port and prefix: anything else is only copied to the agent
    # and the controller, never forwarded
    assert sw.forward(ip6(in_port=11, ipv6_src="2001:db8:1::a", ipv6_dst=CN)).outputs == (PORTS.agent, CONTROLLER)
    assert sw.forward(ip6(in_port=10, ipv6_src="2001:db8:7::a", ipv6_dst=CN)).outputs == (PORTS.agent, CONTROLLER)
    assert sw.forward(ip6(in_port=PORTS.core, ipv6_dst="2001:db8:1:1::a")).dropped  # outside the /64


def test_tunnel_to_serving_and_to_anchor(sw, pipeline):
    dp = sw.connect()
    here = MnDataPlane(to_anchor=(TunnelToAnchor(P2, ANCHOR, MN_MAC, 11),))
    install(dp, pipeline, base_flows(PORTS) + mn_flows("mn1", MOVED1, PORTS, VIEW) + mn_flows("mn2", here, PORTS, VIEW))
    down = sw.forward(ip6(in_port=PORTS.core, ipv6_src=CN, ipv6_dst="2001:db8:1::a"))
    assert down.outputs == (PORTS.tunnel,)
    assert (down.tun_ipv6_dst, down.tunnel_id) == (SERVING, KEY)
    # the moved MN's uplink, tunnelled back by its serving MAAR, is routed natively here
    back = sw.forward(ip6(in_port=PORTS.tunnel, tunnel_id=KEY, ipv6_src="2001:db8:1::a", ipv6_dst=CN))
    assert back.outputs == (PORTS.core,) and back.eth_dst == mac(GW_MAC)
    assert back.tables == tuple(pipeline.table(t).id for t in ("classify", "from_tunnel"))
    # an MN attached here with a prefix anchored elsewhere: uplink into the tunnel to the anchor ...
    up = sw.forward(ip6(in_port=11, ipv6_src="2001:db8:2::a", ipv6_dst=CN))
    assert up.outputs == (PORTS.tunnel,) and (up.tun_ipv6_dst, up.tunnel_id) == (ANCHOR, KEY)
    # ... and its downlink from that tunnel to its port, with the anchor's DLIF MAC as source
    d = sw.forward(ip6(in_port=PORTS.tunnel, tunnel_id=KEY, ipv6_src=CN, ipv6_dst="2001:db8:2::a"))
    assert d.outputs == (11,) and (d.eth_src, d.eth_dst) == (mac(ANCHOR_DLIF), mac(MN_MAC))


def test_set_fields_are_seen_per_output_and_never_back_out_of_the_ingress_port(sw, pipeline):
    dp = sw.connect()
    f = Flow("classify", 10, (("in_port", 10),), (("output", 10), ("output", 11), ("set_field:eth_dst", GW_MAC),
                                                     ("output", 12)))
    dp.send_msg(ofreference.flow_mod(dp, pipeline, f))
    d = sw.forward({"in_port": 10, "eth_dst": "02:00:00:00:00:09"})
    # OpenFlow 1.3: a packet goes back out of its ingress port only through OFPP_IN_PORT
    assert d.outputs == (11, 12)
    assert [dict(fields)["eth_dst"] for _, fields in d.sent] == ["02:00:00:00:00:09", mac(GW_MAC)]


# ---- flow-mods, barriers, stats ----------------------------------------------------------------------
def test_replace_swaps_one_cookie_group_then_the_barrier_answers(sw, pipeline):
    dp = sw.connect()
    before = base_flows(PORTS) + mn_flows("mn1", LOCAL1, PORTS, VIEW) + mn_flows("mn2", LOCAL2, PORTS, VIEW)
    install(dp, pipeline, before)
    assert dp.replies() == []  # flow-mods succeed silently
    moved = mn_flows("mn1", MOVED1, PORTS, VIEW)
    xid = replace(dp, pipeline, cookie_of("mn1"), moved)
    replies = dp.replies()
    assert [(type(r).__name__, r.xid) for r in replies] == [("OFPBarrierReply", xid)]
    assert replies[0].datapath is dp and dp.sent[-1].xid == xid
    want = base_flows(PORTS) + mn_flows("mn2", LOCAL2, PORTS, VIEW) + moved
    assert {stat_id(st) for st in flow_stats(dp)} == {flow_id(pipeline, f) for f in want}
    assert sw.forward(ip6(in_port=PORTS.core, ipv6_dst="2001:db8:1::a")).outputs == (PORTS.tunnel,)
    assert sw.forward(ip6(in_port=PORTS.core, ipv6_dst="2001:db8:2::a")).outputs == (11,)
    replace(dp, pipeline, cookie_of("mn1"), [])  # an MN without state: its group is gone
    assert sw.forward(ip6(in_port=PORTS.core, ipv6_dst="2001:db8:1::a")).dropped


def test_delete_cookie_leaves_other_cookies_alone(sw, pipeline):
    dp = sw.connect()
    keep = base_flows(PORTS) + mn_flows("mn2", LOCAL2, PORTS, VIEW)
    install(dp, pipeline, keep + mn_flows("mn1", LOCAL1, PORTS, VIEW))
    dp.send_msg(ofreference.delete_cookie(dp, cookie_of("mn1")))
    assert {stat_id(st) for st in flow_stats(dp)} == {flow_id(pipeline, f) for f in keep}
    # cookie_mask 0: the cookie does not restrict a delete at all (OpenFlow 1.3 section 6.4)
    p, o = dp.ofproto_parser, dp.ofproto
    dp.send_msg(p.OFPFlowMod(dp, cookie=cookie_of("nobody"), cookie_mask=0, table_id=pipeline.table("downlink").id,
                             command=o.OFPFC_DELETE, out_port=o.OFPP_ANY, out_group=o.OFPG_ANY))
    assert {stat_id(st) for st in flow_stats(dp)} == {flow_id(pipeline, f) for f in keep if f.table != "downlink"}


def test_reconcile_by_stats_converges_a_stale_switch(pipeline):
    sw = FakeSwitch(dpid=2, stats_per_reply=3)  # the CMD must gather several multipart parts
    dp = sw.connect()
    stale = mn_flows("gone", LOCAL1, PORTS, VIEW)
    wanted_mn = mn_flows("mn2", LOCAL2, PORTS, VIEW)
    install(dp, pipeline, base_flows(PORTS) + stale + wanted_mn[:1])
    # a controller restart: a new connection, the switch kept its flows
    sw.disconnect(clear_flows=False)
    dp = sw.connect()
    wanted = base_flows(PORTS) + wanted_mn
    assert reconcile(dp, pipeline, wanted, flow_stats(dp)) == (len(stale), len(wanted_mn) - 1)
    assert [type(r).__name__ for r in dp.replies()] == ["OFPBarrierReply"]
    assert {stat_id(st) for st in flow_stats(dp)} == {flow_id(pipeline, f) for f in wanted}
    assert reconcile(dp, pipeline, wanted, flow_stats(dp)) == (0, 0)
    # an ovs-vswitchd restart: everything is missing
    sw.disconnect(clear_flows=True)
    dp = sw.connect()
    assert reconcile(dp, pipeline, wanted, flow_stats(dp)) == (0, len(wanted))
    assert [type(r).__name__ for r in dp.replies()] == ["OFPBarrierReply"]
    assert len(flow_stats(dp)) == len(wanted)


def test_flow_stats_are_split_into_multipart_replies_and_count_packets(pipeline):
    sw = FakeSwitch(stats_per_reply=4)
    dp = sw.connect()
    flows = base_flows(PORTS)
    install(dp, pipeline, flows)
    for _ in range(3):
        sw.forward(ip6(in_port=11, ip_proto=ICMPV6, icmpv6_type=133))
    dp.send_msg(dp.ofproto_parser.OFPFlowStatsRequest(dp))
    replies = dp.replies()
    sizes = [4] * (len(flows) // 4) + [len(flows) % 4] * bool(len(flows) % 4)
    assert len(sizes) >= 3 and [len(r.body) for r in replies] == sizes
    assert [r.flags for r in replies] == [dp.ofproto.OFPMPF_REPLY_MORE] * (len(sizes) - 1) + [0]
    counts = {stat_id(st): st.packet_count for st in flow_stats(dp)}
    rs = Flow("classify", 300, (("in_port", 11), ("eth_type", ETH_IPV6), ("ip_proto", ICMPV6), ("icmpv6_type", 133)))
    assert counts.pop(flow_id(pipeline, rs)) == 3 and set(counts.values()) == {0}
    # instructions come back as sent: the RS flow's actions are the pipeline's
    st = next(s for s in flow_stats(dp) if stat_id(s) == flow_id(pipeline, rs))
    assert [a.port for a in st.instructions[0].actions] == [PORTS.agent, dp.ofproto.OFPP_CONTROLLER]


def test_many_flow_stats_fit_the_16_bit_message_length(pipeline):
    sw = FakeSwitch()
    dp = sw.connect()
    flows = [f for i in range(400) for f in mn_flows(f"mn{i}", MnDataPlane(
        local=(LocalRoute(Prefix.parse(f"2001:db8:{i:x}::/64"), MN_MAC, 10),)), PORTS, VIEW)]
    install(dp, pipeline, flows)
    dp.send_msg(dp.ofproto_parser.OFPFlowStatsRequest(dp))
    replies = dp.replies()
    assert len(replies) > 1 and all(r.msg_len <= MAX_MSG_LEN for r in replies)
    assert sum(len(r.body) for r in replies) == len(flows)


def test_add_replaces_an_identical_entry_and_keeps_its_counters(sw, pipeline):
    dp = sw.connect()
    pkt = ip6(in_port=PORTS.core, ipv6_dst="2001:db8:1::a")
    install(dp, pipeline, base_flows(PORTS) + mn_flows("mn1", LOCAL1, PORTS, VIEW))
    n = len(sw.entries)
    sw.forward(pkt)
    # the same table, priority and match under another cookie: replaced, not added (OpenFlow 1.3 section 6.4)
    install(dp, pipeline, [f for f in mn_flows("mn9", MOVED1, PORTS, VIEW) if f.table == "downlink"])
    assert len(sw.entries) == n
    assert sw.forward(pkt).outputs == (PORTS.tunnel,)
    down = [st for st in flow_stats(dp) if st.table_id == pipeline.table("downlink").id]
    assert [(st.cookie, st.packet_count) for st in down] == [(cookie_of("mn9"), 2)]
    fm = ofreference.flow_mod(dp, pipeline, mn_flows("mn1", LOCAL1, PORTS, VIEW)[1])
    fm.flags = dp.ofproto.OFPFF_RESET_COUNTS
    dp.send_msg(fm)
    down = [st for st in flow_stats(dp) if st.table_id == pipeline.table("downlink").id]
    assert [(st.cookie, st.packet_count) for st in down] == [(cookie_of("mn1"), 0)]
    # another priority is another entry
    install(dp, pipeline, [Flow("downlink", 99, (("eth_type", ETH_IPV6), ("ipv6_dst", str(P1))), (("output", 1),))])
    assert len(sw.entries) == n + 1 and sw.forward(pkt).outputs == (10,)


def test_delete_non_strict_strict_and_out_port(sw, pipeline):
    dp = sw.connect()
    p, o = dp.ofproto_parser, dp.ofproto
    classify = pipeline.table("classify").id
    install(dp, pipeline, base_flows(PORTS))
    n = len(sw.entries)

    def delete(command, match, priority=0, out_port=o.OFPP_ANY, table_id=classify):
        dp.send_msg(p.OFPFlowMod(dp, table_id=table_id, command=command, priority=priority, match=match,
                                 out_port=out_port, out_group=o.OFPG_ANY))

    # DELETE_STRICT needs the priority and the whole match
    delete(o.OFPFC_DELETE_STRICT, p.OFPMatch(in_port=11))
    delete(o.OFPFC_DELETE_STRICT, p.OFPMatch(in_port=11, eth_type=ETH_IPV6), priority=49)
    assert len(sw.entries) == n
    delete(o.OFPFC_DELETE_STRICT, p.OFPMatch(in_port=11, eth_type=ETH_IPV6), priority=50)
    assert len(sw.entries) == n - 1
    assert sw.forward(ip6(in_port=11, ip_proto=ICMPV6, icmpv6_type=133)).outputs == (PORTS.agent, CONTROLLER)
    # an out_port other than ANY restricts a delete to entries that output there: OFPFlowMod's default
    # out_port is 0, so a delete that forgets OFPP_ANY removes nothing here
    delete(o.OFPFC_DELETE, p.OFPMatch(), out_port=0)
    assert len(sw.entries) == n - 1
    delete(o.OFPFC_DELETE, p.OFPMatch(), out_port=PORTS.agent)  # the 10 ND/MLD flows
    assert len(sw.entries) == n - 1 - 2 * len(ATTACH_TYPES)
    # non-strict: every entry at least as specific as the match, whatever its priority
    install(dp, pipeline, base_flows(PORTS))
    delete(o.OFPFC_DELETE, p.OFPMatch(in_port=10))
    assert sw.forward(ip6(in_port=10, ip_proto=ICMPV6, icmpv6_type=133)).dropped
    assert sw.forward(ip6(in_port=11, ip_proto=ICMPV6, icmpv6_type=133)).outputs == (PORTS.agent, CONTROLLER)
    assert len(sw.entries) == n - len(ATTACH_TYPES) - 1
    # an empty match in every table: all
    delete(o.OFPFC_DELETE, p.OFPMatch(), table_id=o.OFPTT_ALL)
    assert sw.entries == []


def test_masked_matches_as_parsed_from_the_wire(sw, pipeline):
    dp = sw.connect()
    install(dp, pipeline, [Flow("downlink", 100, (("eth_type", ETH_IPV6), ("ipv6_dst", "2001:db8:1::/48")),
                                (("output", 7),))])
    assert sw.entries[0].match["ipv6_dst"] == ("2001:db8:1::", "ffff:ffff:ffff::")  # (address, mask) from Ryu
    p, o = dp.ofproto_parser, dp.ofproto

    def delete(dst):
        dp.send_msg(p.OFPFlowMod(dp, table_id=o.OFPTT_ALL, command=o.OFPFC_DELETE, out_port=o.OFPP_ANY,
                                 out_group=o.OFPG_ANY, match=p.OFPMatch(eth_type=ETH_IPV6, ipv6_dst=dst)))

    # a non-strict delete by a /64 inside that /48 is less general than the entry: nothing goes
    delete(("2001:db8:1:5::", "ffff:ffff:ffff:ffff::"))
    assert len(sw.entries) == 1
    delete(("2001:db8::", "ffff:ffff::"))  # a /32 around it: it goes
    assert sw.entries == []


def test_only_what_went_on_the_wire_is_applied(sw, pipeline):
    dp = sw.connect()
    fm = ofreference.flow_mod(dp, pipeline, base_flows(PORTS)[0])
    dp.send_msg(fm)
    fm.priority, fm.cookie = 1, 99  # changing the object afterwards changes nothing on the switch
    (entry,) = sw.entries
    assert (entry.priority, entry.cookie) == (300, 0) and entry.match is not fm.match
    assert type(dp.sent[0]).__name__ == "OFPFlowMod" and dp.sent[0] is not fm
    # host bits under a mask never reach the switch: Ryu's encoder clears them
    dp.send_msg(dp.ofproto_parser.OFPFlowMod(dp, table_id=2, match=dp.ofproto_parser.OFPMatch(
        eth_type=ETH_IPV6, ipv6_dst=("2001:db8::1", "ffff:ffff:ffff:ffff::"))))
    assert sw.entries[-1].match["ipv6_dst"] == ("2001:db8::", "ffff:ffff:ffff:ffff::")


# ---- faults and connections ---------------------------------------------------------------------------
def test_barrier_replies_dropped_held_and_released(sw, pipeline):
    dp = sw.connect()
    p = dp.ofproto_parser
    sw.barrier_mode = BarrierMode.DROP
    replace(dp, pipeline, cookie_of("mn1"), mn_flows("mn1", LOCAL1, PORTS, VIEW))
    assert dp.replies() == [] and dp.held() == ()
    assert sw.forward(ip6(in_port=PORTS.core, ipv6_dst="2001:db8:1::a")).tables == (0,)  # flows applied anyway
    sw.barrier_mode = BarrierMode.HOLD
    x1 = replace(dp, pipeline, cookie_of("mn2"), mn_flows("mn2", LOCAL2, PORTS, VIEW))
    x2 = replace(dp, pipeline, cookie_of("mn1"), [])
    assert dp.replies() == [] and dp.held() == (x1, x2)
    assert dp.release(x2) == 1 and [r.xid for r in dp.replies()] == [x2]
    assert dp.release() == 1 and [r.xid for r in dp.replies()] == [x1]
    # a seeded policy: the same decisions on every run
    rng = random.Random(7)
    sw.barrier_mode = lambda xid: rng.choice(list(BarrierMode))
    xids = []
    for _ in range(20):
        b = p.OFPBarrierRequest(dp)
        dp.send_msg(b)
        xids.append(b.xid)
    rng2 = random.Random(7)
    modes = [rng2.choice(list(BarrierMode)) for _ in xids]
    assert [r.xid for r in dp.replies()] == [x for x, m in zip(xids, modes) if m is BarrierMode.REPLY]
    assert dp.held() == tuple(x for x, m in zip(xids, modes) if m is BarrierMode.HOLD)


def test_disconnect_loses_replies_and_optionally_flows(sw, pipeline):
    dp = sw.connect()
    install(dp, pipeline, base_flows(PORTS))
    sw.barrier_mode = BarrierMode.HOLD
    dp.send_msg(dp.ofproto_parser.OFPBarrierRequest(dp))
    dp.send_msg(dp.ofproto_parser.OFPFlowStatsRequest(dp))
    sw.disconnect(clear_flows=False)
    assert dp.replies() == [] and dp.held() == () and not dp.is_active
    # sends on the dead connection are discarded, as Ryu's Datapath does
    assert dp.send_msg(ofreference.delete_cookie(dp, 0)) is False and len(sw.entries) == len(base_flows(PORTS))
    new = sw.connect()
    b = new.ofproto_parser.OFPBarrierRequest(new)
    new.send_msg(b)
    assert new is not dp and new.id == dp.id and b.xid == 1  # a new connection counts xids afresh
    sw.disconnect(clear_flows=True)
    assert sw.entries == [] and sw.datapath is None


# ---- strictness ---------------------------------------------------------------------------------------
def test_what_the_fake_does_not_implement_raises(sw, pipeline):
    dp = sw.connect()
    p, o = dp.ofproto_parser, dp.ofproto
    with pytest.raises(Unsupported, match="OFPT_GROUP_MOD"):
        dp.send_msg(p.OFPGroupMod(dp, o.OFPGC_ADD, o.OFPGT_ALL, 1, []))
    with pytest.raises(Unsupported, match="multipart request type"):
        dp.send_msg(p.OFPPortDescStatsRequest(dp, 0))
    with pytest.raises(Unsupported, match="command"):
        dp.send_msg(p.OFPFlowMod(dp, command=o.OFPFC_MODIFY))
    with pytest.raises(Unsupported, match="instruction"):
        dp.send_msg(p.OFPFlowMod(dp, instructions=[p.OFPInstructionActions(o.OFPIT_WRITE_ACTIONS, [])]))
    with pytest.raises(Unsupported, match="action OFPActionPushVlan"):
        dp.send_msg(p.OFPFlowMod(dp, instructions=[p.OFPInstructionActions(o.OFPIT_APPLY_ACTIONS,
                                                                             [p.OFPActionPushVlan()])]))
    with pytest.raises(Unsupported, match="set_field ipv6_src"):
        dp.send_msg(p.OFPFlowMod(dp, instructions=[p.OFPInstructionActions(
            o.OFPIT_APPLY_ACTIONS, [p.OFPActionSetField(ipv6_src="::1")])]))
    with pytest.raises(Unsupported, match="match field vlan_vid"):
        dp.send_msg(p.OFPFlowMod(dp, match=p.OFPMatch(vlan_vid=5)))
    with pytest.raises(Unsupported, match="timeouts"):
        dp.send_msg(p.OFPFlowMod(dp, idle_timeout=10))
    assert sw.entries == []
    # what a switch accepts without a reply, and the echo it answers
    dp.send_msg(p.OFPSetConfig(dp, 0, 128))
    dp.send_msg(p.OFPHello(dp))
    assert dp.replies() == []
    dp.send_msg(p.OFPEchoRequest(dp, data=b"ping"))
    assert [(type(r).__name__, r.data) for r in dp.replies()] == [("OFPEchoReply", b"ping")]


def test_what_a_switch_would_refuse_raises(sw, pipeline):
    dp = sw.connect()
    p, o = dp.ofproto_parser, dp.ofproto
    with pytest.raises(Rejected, match="BAD_PREREQ"):  # ipv6_dst without eth_type=IPv6
        dp.send_msg(p.OFPFlowMod(dp, match=p.OFPMatch(ipv6_dst="2001:db8::1")))
    with pytest.raises(Rejected, match="BAD_PREREQ"):  # in a delete's match too
        dp.send_msg(p.OFPFlowMod(dp, command=o.OFPFC_DELETE, match=p.OFPMatch(ipv6_dst="2001:db8::1")))
    with pytest.raises(Rejected, match="BAD_PREREQ"):  # icmpv6_type without ip_proto=58
        dp.send_msg(p.OFPFlowMod(dp, match=p.OFPMatch(eth_type=ETH_IPV6, ip_proto=6, icmpv6_type=133)))
    with pytest.raises(Rejected, match="BAD_TABLE_ID"):  # goto_table only goes forward
        dp.send_msg(p.OFPFlowMod(dp, table_id=2, instructions=[p.OFPInstructionGotoTable(1)]))
    assert sw.entries == []
    # two entries of one priority matching one packet: OpenFlow leaves the outcome undefined
    install(dp, pipeline, [Flow("downlink", 100, (("eth_type", ETH_IPV6), ("ipv6_dst", "2001:db8:1::/64")),
                                (("output", 7),)),
                           Flow("downlink", 100, (("eth_type", ETH_IPV6), ("ipv6_dst", "2001:db8::/32")),
                                (("output", 8),))])
    dp.send_msg(p.OFPFlowMod(dp, table_id=0, priority=1, instructions=[p.OFPInstructionGotoTable(2)]))
    assert sw.forward(ip6(in_port=1, ipv6_dst="2001:db8:2::1")).outputs == (8,)
    with pytest.raises(Rejected, match="overlapping"):
        sw.forward(ip6(in_port=1, ipv6_dst="2001:db8:1::1"))
