"""ryu_dmm.ofwire (the CMD's struct-packed OpenFlow messages) against Ryu's serializer, byte for byte.

The reference is independent of the encoder: the Ryu objects ``ofreference.messages`` builds for the same
effect, serialized by Ryu 4.34 with the same xids. Checked over every kind of flow the renderer makes
(base flows, local routes, tunnels to a serving MAAR and to an anchor; several prefixes, ports,
MACs, keys, cookies and table ids), flows hypothesis draws within the dmm-edge declaration, deletes
of entries read back from a switch, barriers and the flow-stats request. Then the bytes applied by
the fake switch (``FakeDatapath.send``) give the same tables and replies as the Ryu objects.
"""
import dataclasses
import ipaddress

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from ryu.ofproto import ofproto_v1_3 as ofp, ofproto_v1_3_parser as parser

from ryu_dmm import ofsync, ofwire
from ryu_dmm.lab import ofreference
from ryu_dmm.flowmirror import ApplyDiff, ReplaceFlows, RequestFlowStats
from ryu_dmm.mobility.dataplane import LocalRoute, MnDataPlane, TunnelToAnchor, TunnelToServing
from ryu_dmm.pipeline import Flow, InstalledFlow, MaarView, SwitchPorts, base_flows, cookie_of, diff, load, mn_flows
from ryu_dmm.wire import Prefix
from tests.fakeswitch import FakeSwitch, Unsupported

PIPELINE = load()


class Dp:
    """What ofsync and Ryu's serialize need of a datapath."""
    ofproto, ofproto_parser, id = ofp, parser, 1


def ryu(effect, pipeline=PIPELINE) -> list[bytes]:
    """Ryu's bytes for ``effect``: ofsync's Ryu objects, serialized; the flow-mods (which leave their xid
    to the datapath's counter there) with the push's barrier xid, as ``encode`` gives them."""
    out = []
    for m in ofreference.messages(Dp(), pipeline, effect):
        if m.xid is None:
            m.set_xid(effect.barrier)
        m.serialize()
        out.append(bytes(m.buf))
    return out


def split(buf: bytes) -> list[bytes]:
    out = []
    while buf:
        n = int.from_bytes(buf[2:4], "big")
        out.append(buf[:n])
        buf = buf[n:]
    return out


def same(effect, pipeline=PIPELINE) -> None:
    ours, ref = split(ofsync.encode(pipeline, effect)), ryu(effect, pipeline)
    assert len(ours) == len(ref)
    for i, (a, b) in enumerate(zip(ours, ref)):
        assert a.hex() == b.hex(), f"message {i} of {effect}"


# ---- every kind of rendered flow ---------------------------------------------------------------------
MACS = [bytes.fromhex(h) for h in ("020000000003", "02000000ffff", "020000000a01", "ffffffffffff", "000000000000")]
PREFIXES = [Prefix.parse(p) for p in ("2001:db8:1::/64", "2001:db8:2::/48", "2001:db8:3:4::/63", "::/0",
                                       "2001:db8::1/128", "fe80::/10", "2001:db8:ffff:ffff:ffff:ffff:ffff:fffe/127")]
ADDRS = ["2001:db8:ff::1", "2001:db8:ff::2", "::ffff:127.0.0.2", "fd00::abcd:1"]
PORT_SETS = [SwitchPorts(1, 2, 3, (10, 11)), SwitchPorts(7, 0xFFFFFF00, 65534, (4, 5, 6)),
             SwitchPorts(100, 200, 300, (1,))]
KEYS = [0, 0x444D4D, 2**64 - 1]


def states():
    for i, p in enumerate(PREFIXES):
        q = PREFIXES[(i + 3) % len(PREFIXES)]
        mac, port = MACS[i % len(MACS)], (10, 11, 4, 1)[i % 4]
        a, s = ADDRS[i % len(ADDRS)], ADDRS[(i + 1) % len(ADDRS)]
        yield f"mn{i}-local", MnDataPlane(local=(LocalRoute(p, mac, port), LocalRoute(q, mac, port)))
        yield f"mn{i}-moved", MnDataPlane(to_serving=(TunnelToServing(p, s), TunnelToServing(q, a)))
        yield f"mn{i}-visiting", MnDataPlane(local=(LocalRoute(q, mac, port),),
                                             to_anchor=(TunnelToAnchor(p, a, mac, port),
                                                        TunnelToAnchor(q, s, MACS[(i + 1) % len(MACS)], port)))


def rendered():
    for k, ports in enumerate(PORT_SETS):
        key = KEYS[k % len(KEYS)]
        view = MaarView(MACS[k], MACS[k + 1], key, {ADDRS[0]: MACS[2], ADDRS[2]: MACS[3]})
        yield "base", cookie_of("base"), base_flows(ports)
        for mn_id, state in states():
            yield mn_id, cookie_of(mn_id), mn_flows(mn_id, state, ports, view)


CASES = list(rendered())


def test_the_cases_cover_every_kind_of_rendered_flow():
    kinds = {(f.table, tuple(k for k, _ in f.match), tuple(k for k, _ in f.actions), f.goto)
             for _, _, flows in CASES for f in flows}
    assert len(kinds) >= 10
    assert {f.table for _, _, flows in CASES for f in flows} == {t.name for t in PIPELINE.tables}
    prefixes = {dict(f.match).get("ipv6_dst") for _, _, flows in CASES for f in flows}
    assert {"::/0", "2001:db8::1/128", "2001:db8:2::/48"} <= prefixes


@pytest.mark.parametrize("case", range(len(CASES)), ids=[c[0] for c in CASES])
def test_replace_flows_is_byte_identical_to_ryu(case):
    mn_id, cookie, flows = CASES[case]
    same(ReplaceFlows("maar", cookie, tuple(flows), case + 1))
    same(ReplaceFlows("maar", cookie, (), 0xFFFFFFFF))  # an MN without state: delete and barrier only


def test_every_flow_alone_and_under_other_table_ids():
    renumbered = dataclasses.replace(PIPELINE, tables=tuple(dataclasses.replace(t, id=t.id * 40 + 7)
                                                            for t in PIPELINE.tables))
    for i, (_, _, flows) in enumerate(CASES):
        for f in flows:
            for pl in (PIPELINE, renumbered):
                assert ofwire.flow_add(i, pl.table(f.table).id, None if f.goto is None else pl.table(f.goto).id, f) \
                    == ryu(ReplaceFlows("m", 0, (f,), i), pl)[1]


def installed_entries(flows) -> tuple[InstalledFlow, ...]:
    """The entries as the CMD reads them back from a switch holding ``flows`` (via Ryu's parser)."""
    sw = FakeSwitch()
    dp = sw.connect()
    dp.send(ofsync.encode(PIPELINE, ReplaceFlows("m", 0, tuple(flows), 1)))
    dp.send(ofsync.encode(PIPELINE, RequestFlowStats("m", 2)))
    return ofsync.installed([st for r in dp.replies() if r.xid == 2 for st in r.body])


def test_apply_diff_deletes_entries_read_back_from_a_switch():
    everything = [f for _, _, flows in CASES[:40] for f in flows]
    entries = installed_entries(everything)
    assert len(entries) > 40  # the same match and priority under another cookie replaces an entry
    same(ApplyDiff("maar", entries, (), 41))
    delete, add = diff(PIPELINE, [f for _, _, flows in CASES[40:80] for f in flows], entries)
    assert delete and add
    same(ApplyDiff("maar", delete, add, 42))
    # as the mirror's match_key gives them: MACs as text, prefixes as addr/len, /128 included
    entry = InstalledFlow(3, 100, 2**64 - 1, (("eth_dst", "02:00:00:00:0a:01"), ("eth_type", 0x86DD),
                                              ("ipv6_dst", "2001:db8::1/128"), ("tunnel_id", 5)))
    same(ApplyDiff("maar", (entry,), (), 1))


def test_barrier_and_flow_stats_request():
    for xid in (0, 1, 0x12345678, 0xFFFFFFFF):
        same(RequestFlowStats("maar", xid))
        same(RequestFlowStats("maar", xid, 3))  # one table: the anchor-liveness poll of from_tunnel
        assert ofwire.barrier(xid) == ryu(ReplaceFlows("m", 1, (), xid))[-1]


# ---- hypothesis: any flow within the declaration -----------------------------------------------------
def _prefix(packed: bytes, length: int) -> str:
    return str(ipaddress.IPv6Network((packed, length), strict=False))


U = {8: st.integers(0, 255), 16: st.integers(0, 0xFFFF), 32: st.integers(0, 0xFFFFFF00), 64: st.integers(0, 2**64 - 1)}
MATCH_VALUES = {"in_port": U[32], "eth_type": U[16], "ip_proto": U[8], "icmpv6_type": U[8], "tunnel_id": U[64],
                "eth_src": st.binary(min_size=6, max_size=6), "eth_dst": st.binary(min_size=6, max_size=6),
                "ipv6_src": st.builds(_prefix, st.binary(min_size=16, max_size=16), st.integers(0, 128)),
                "ipv6_dst": st.builds(_prefix, st.binary(min_size=16, max_size=16), st.integers(0, 128))}
ACTION_VALUES = {"output": st.one_of(st.just("CONTROLLER"), U[32]), "set_field:tunnel_id": U[64],
                 "set_field:eth_src": MATCH_VALUES["eth_src"], "set_field:eth_dst": MATCH_VALUES["eth_dst"],
                 "set_field:tun_ipv6_dst": st.binary(min_size=16, max_size=16).map(
                     lambda b: str(ipaddress.IPv6Address(b)))}


@st.composite
def declared_flows(draw):
    table = draw(st.sampled_from(PIPELINE.tables))
    names = draw(st.lists(st.sampled_from(table.match), unique=True))
    match = tuple((n, draw(MATCH_VALUES[n])) for n in names)
    actions = tuple((k, draw(ACTION_VALUES[k])) for k in draw(st.lists(st.sampled_from(table.actions), max_size=6)))
    goto = draw(st.one_of(st.none(), st.sampled_from(table.next))) if table.next else None
    return Flow(table.name, draw(U[16]), match, actions, goto, draw(U[64]))


@settings(max_examples=800, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(declared_flows(), max_size=8), U[64], st.integers(0, 0xFFFFFFFF),
       st.permutations(range(0, 250, 10)))
def test_declared_flows_are_byte_identical_to_ryu(flows, cookie, xid, ids):
    pl = dataclasses.replace(PIPELINE, tables=tuple(dataclasses.replace(t, id=i) for t, i in zip(PIPELINE.tables,
                                                                                                   sorted(ids[:4]))))
    same(ReplaceFlows("maar", cookie, tuple(flows), xid), pl)
    entries = tuple(InstalledFlow(pl.table(f.table).id, f.priority, f.cookie, f.match) for f in flows)
    same(ApplyDiff("maar", entries, tuple(flows), xid), pl)


# ---- refusals ---------------------------------------------------------------------------------------
def test_the_encoder_covers_the_declaration():
    for t in PIPELINE.tables:
        assert set(t.match) <= ofwire.MATCH_FIELDS
        assert {a.split(":", 1)[1] for a in t.actions if a.startswith("set_field:")} <= ofwire.SET_FIELDS
        assert {a for a in t.actions if not a.startswith("set_field:")} <= {"output"}


@pytest.mark.parametrize("flow", [
    Flow("uplink", 1, (("ipv4_src", "10.0.0.1"),)),
    Flow("uplink", 1, (("tun_ipv6_dst", "2001:db8::1"),)),  # settable, not matched by the pipeline
    Flow("uplink", 1, (), (("set_field:ipv6_src", "2001:db8::1"),)),
    Flow("uplink", 1, (), (("set_field:ip_proto", 6),)),
    Flow("uplink", 1, (), (("drop", None),)),
    Flow("uplink", 1, (("in_port", "1"),)),
    Flow("uplink", 1, (("in_port", 2**32),)),
    Flow("uplink", 1, (("eth_src", b"\x02\x00"),)),
    Flow("uplink", 1, (("ipv6_src", "2001:db8::1/64"),)),  # host bits: refused, as ofsync's Ryu path does
    Flow("nowhere", 1, ()),
    Flow("classify", 1, (), goto="nowhere"),
])
def test_what_the_cmd_does_not_send_raises(flow):
    with pytest.raises(ValueError):
        ofsync.encode(PIPELINE, ReplaceFlows("maar", 1, (flow,), 1))


@pytest.mark.parametrize("text", ["2001:db8::/064", "2001:db8::1", "::/0", "::ffff:127.0.0.2/128", "2001:db8::1/64",
                                  "2001:db8::/129", "2001:db8::/-1", "2001:db8::/ 64", "2001:db8::/x", "2001:db8::/",
                                  "2001:db8:::/64", "10.0.0.0/8", "2001:db8::%eth0/64"])
def test_prefixes_as_ryus_path_takes_them_or_both_refuse(text):
    flow = Flow("downlink", 1, (("ipv6_dst", text),))
    effect = ReplaceFlows("maar", 1, (flow,), 1)
    try:
        ref = ryu(effect)
    except Exception:  # noqa: BLE001 - ipaddress's ValueError, or Ryu's (netaddr's) own
        with pytest.raises(ValueError):
            ofsync.encode(PIPELINE, effect)
    else:
        assert split(ofsync.encode(PIPELINE, effect)) == ref


def test_not_a_switch_effect():
    with pytest.raises(TypeError):
        ofsync.encode(PIPELINE, object())


# ---- the fake switch applies the bytes ----------------------------------------------------------------
def test_the_fake_switch_gets_the_same_tables_and_replies_from_the_bytes():
    wire_sw, ryu_sw = FakeSwitch(), FakeSwitch()
    wdp, rdp = wire_sw.connect(), ryu_sw.connect()
    effects = [ReplaceFlows("m", cookie, tuple(flows), i + 100) for i, (_, cookie, flows) in enumerate(CASES[:30])]
    effects.append(RequestFlowStats("m", 7))
    effects.append(ApplyDiff("m", installed_entries([f for _, _, fl in CASES[10:20] for f in fl]),
                             tuple(f for _, _, fl in CASES[30:35] for f in fl), 9))
    effects.append(RequestFlowStats("m", 8))
    for e in effects:
        assert wdp.send(ofsync.encode(PIPELINE, e)) is True
        for m in ofreference.messages(rdp, PIPELINE, e):
            if m.xid is None:
                m.set_xid(e.barrier)
            rdp.send_msg(m)
    assert [(type(m).__name__, m.xid) for m in wdp.sent] == [(type(m).__name__, m.xid) for m in rdp.sent]
    assert len(wdp.sent) > 200
    assert [(e.table_id, e.priority, e.cookie, e.key) for e in wire_sw.entries] == \
        [(e.table_id, e.priority, e.cookie, e.key) for e in ryu_sw.entries]
    got, want = wdp.replies(), rdp.replies()
    assert [(type(r).__name__, r.xid) for r in got] == [(type(r).__name__, r.xid) for r in want]
    assert [r.buf for r in got] == [r.buf for r in want]


def test_send_takes_whole_messages_and_is_discarded_on_a_dead_connection():
    sw = FakeSwitch()
    dp = sw.connect()
    buf = ofsync.encode(PIPELINE, ReplaceFlows("m", 3, tuple(base_flows(PORT_SETS[0])), 5))
    with pytest.raises(Unsupported):
        dp.send(buf[:-3])
    with pytest.raises(Unsupported):
        dp.send(buf + b"\x04\x14\x00")
    sw.disconnect(clear_flows=True)
    assert dp.send(buf) is False and sw.entries == []
