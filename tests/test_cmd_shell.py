"""The Ryu shell itself (``ryu_dmm.cmd.CmdApp``), in-process, without root: fake datapaths (the fake
OpenFlow switch) answer what the shell really sends, the signalling endpoint and the timer heap's
driver are replaced by recorders. What is checked is the wiring: a PBU through decode -> core ->
mirror -> OpenFlow and back; packet-ins, barrier and flow-stats replies turned into mirror events;
REST's flow query; a switch that goes away.
"""
import time

import pytest
from ryu.controller import ofp_event
from ryu.controller.handler import DEAD_DISPATCHER, MAIN_DISPATCHER
from ryu.lib import hub
from scapy.layers.inet6 import ICMPv6ND_RS, IPv6
from scapy.layers.l2 import Ether

from ryu_dmm import cmd
from ryu_dmm.flowmirror import MirrorKey
from ryu_dmm.mobility import messages as M
from ryu_dmm.pipeline import ETH_IPV6, SwitchPorts, base_flows
from ryu_dmm.wire import BindingAck, BindingUpdate, Prefix, decode, encode
from tests.fakeswitch import FakeSwitch

A1, A2 = "2001:db8:ff::1", "2001:db8:ff::2"
MAC = "02:00:00:00:0a:01"
P1, P2 = Prefix.parse("2001:db8:1::/64"), Prefix.parse("2001:db8:2::/64")
BASE = len(base_flows(SwitchPorts(1, 2, 3, (10,))))
CONFIG = """
[dmm]
cmd_address = 2001:db8:ff::100
mode = proxy
[store]
backend = memory
""" + "".join(f"""
[maar:maar{i}]
address = 2001:db8:ff::{i}
pool = 2001:db8:{i}::/48
datapath_id = {i}
core_port = 1
tunnel_port = 2
agent_port = 3
access_ports = 10
""" for i in (1, 2))


class Wsgi:
    def register(self, controller, data):
        self.data = data


class Endpoint:
    """Records what the shell sends; answers go to the sender's port 5436."""

    current_source = "-"

    def __init__(self):
        self.sent = []

    def sockaddr(self, dst):
        return (dst, 5436)

    def heard(self, src, addr):
        pass

    def send(self, data, sockaddr):
        self.sent.append((sockaddr[0], decode(data)))

    def take(self):
        out, self.sent = self.sent, []
        return out


class Timers:
    def __init__(self):
        self.armed = {}

    def set(self, key, at):
        self.armed[key] = at

    def cancel(self, key):
        self.armed.pop(key, None)


@pytest.fixture
def app(tmp_path, monkeypatch):
    (tmp_path / "d.ini").write_text(CONFIG)
    monkeypatch.setattr(cmd, "config_path", lambda: str(tmp_path / "d.ini"))
    a = cmd.CmdApp(wsgi=Wsgi())
    a.endpoint, a.timers = Endpoint(), Timers()
    return a


def pump(app, dp):
    """Hand the switch's replies to the shell's OpenFlow handlers, as Ryu would."""
    for reply in dp.replies():
        name = type(reply).__name__
        if name == "OFPBarrierReply":
            app._barrier_reply(ofp_event.EventOFPBarrierReply(reply))
        elif name == "OFPFlowStatsReply":
            app._flow_stats_reply(ofp_event.EventOFPFlowStatsReply(reply))
        else:
            raise AssertionError(f"unexpected reply {name}")


def connect(app, switch):
    dp = switch.connect()
    ev = ofp_event.EventOFPStateChange(dp)
    ev.state = MAIN_DISPATCHER
    app._state_change(ev)
    pump(app, dp)  # flow stats -> reconciliation -> barrier
    pump(app, dp)
    return dp


def rs_packet_in(app, dp, port=10):
    p = dp.ofproto_parser
    frame = bytes(Ether(src=MAC, dst="33:33:00:00:00:02") / IPv6(src="fe80::a01", dst="ff02::2") / ICMPv6ND_RS())
    msg = p.OFPPacketIn(dp, buffer_id=dp.ofproto.OFP_NO_BUFFER, total_len=len(frame), reason=0, table_id=0,
                        cookie=0, match=p.OFPMatch(in_port=port), data=frame)
    app._packet_in(ofp_event.EventOFPPacketIn(msg))


def pbu(seq, prefix, handoff):
    return encode(M.pbu(seq, time.time(), "mn1", prefix, 40, handoff, 3, bytes.fromhex(MAC.replace(":", ""))))


def downlink(switch, prefix):
    return switch.forward({"in_port": 1, "eth_type": ETH_IPV6, "ipv6_src": "2001:db8:99::1",
                           "ipv6_dst": f"{prefix.address}a"})


def test_a_pbu_goes_through_core_mirror_and_openflow_and_its_pba_waits_for_the_switch(app):
    sw1, sw2 = FakeSwitch(1), FakeSwitch(2)
    dp1, dp2 = connect(app, sw1), connect(app, sw2)
    assert len(sw1.entries) == len(sw2.entries) == BASE  # reconciled from empty flow stats
    app.on_datagram(pbu(1, P1, 1), A1, (A1, 5436))
    assert app.endpoint.take() == []  # held: the switch does not know the MN's port yet
    held = [k for k in app.timers.armed if type(k) is MirrorKey]
    assert len(held) == 1
    rs_packet_in(app, dp1)
    assert app.endpoint.take() == []  # now waiting for the barrier of the flows just pushed
    assert downlink(sw1, P1).outputs == (10,)
    pump(app, dp1)
    (dst, pba), = app.endpoint.take()
    assert dst == A1 and isinstance(pba, BindingAck) and pba.status == 0 and pba.sequence == 1
    assert held[0] not in app.timers.armed  # the hold's timer was cancelled
    # handover to maar2 (proxy): PBA to maar2 after its barrier; PBU with Serving MAAR to maar1 at once
    app.on_datagram(pbu(1, P2, 3), A2, (A2, 5436))
    (dst, to_pmaar), = app.endpoint.take()
    assert dst == A1 and isinstance(to_pmaar, BindingUpdate) and to_pmaar.serving_maar == A2
    rs_packet_in(app, dp2)
    pump(app, dp1)
    pump(app, dp2)
    (dst, pba2), = app.endpoint.take()
    assert dst == A2 and [(p.maar, p.prefix) for p in pba2.previous_maars] == [(A1, P1)]
    d = downlink(sw1, P1)
    assert d.outputs == (2,) and d.tun_ipv6_dst == A2  # the old anchor tunnels to the new MAAR
    assert downlink(sw2, P2).outputs == (10,)
    s = app.view.session("mn1")
    assert s.serving == A2 and app.view.flows_confirmed("mn1") is not None


def test_rest_flow_query_is_answered_from_the_switch(app):
    sw1 = FakeSwitch(1)
    dp1 = connect(app, sw1)
    maar1 = app.view.maar("maar1")
    waiter = hub.spawn(app.view.installed_flows, maar1)
    hub.sleep(0)  # the request is out; the greenthread waits for the reply
    pump(app, dp1)
    flows = waiter.wait()
    assert len(flows) == BASE and sorted(f.table_id for f in flows) == sorted(
        {"classify": 0, "uplink": 1}[f.table] for f in base_flows(SwitchPorts(1, 2, 3, (10,))))


def test_a_switch_that_goes_away_releases_held_pbas_and_is_reconciled_when_back(app):
    sw1 = FakeSwitch(1)
    dp1 = connect(app, sw1)
    rs_packet_in(app, dp1)  # port known first: the PBA waits for the barrier only
    app.on_datagram(pbu(1, P1, 1), A1, (A1, 5436))
    assert app.endpoint.take() == []
    dp1.replies()  # the barrier reply is lost with the connection
    sw1.disconnect(clear_flows=True)
    ev = ofp_event.EventOFPStateChange(dp1)
    ev.state = DEAD_DISPATCHER
    app._state_change(ev)
    (dst, pba), = app.endpoint.take()
    assert dst == A1 and pba.status == 0
    assert not app.view.connected(app.view.maar("maar1"))
    connect(app, sw1)  # an ovs-vswitchd restart: every flow is back from the reconciliation
    assert len(sw1.entries) == BASE + 2 and downlink(sw1, P1).outputs == (10,)


def test_a_held_pba_leaves_when_its_timer_fires(app):
    connect(app, FakeSwitch(1))
    app.on_datagram(pbu(1, P1, 1), A1, (A1, 5436))
    key, = [k for k in app.timers.armed if type(k) is MirrorKey]
    app._on_timer(key)
    (dst, pba), = app.endpoint.take()
    assert dst == A1 and pba.status == 0


def test_garbage_costs_a_counter(app):
    app.on_datagram(b"\x00" * 7, A1, (A1, 5436))
    assert sum(v for k, v in app.stats.counters.items() if k.startswith("decode_error")) == 1
    assert app.endpoint.take() == []


@pytest.fixture
def durable_app(tmp_path, monkeypatch):
    """The shell with the SQLite store; its writer is driven by hand (no greenthread)."""
    from ryu_dmm.storewriter import StoreWriter
    (tmp_path / "d.ini").write_text(CONFIG.replace("backend = memory", f"dir = {tmp_path}"))
    monkeypatch.setattr(cmd, "config_path", lambda: str(tmp_path / "d.ini"))
    a = cmd.CmdApp(wsgi=Wsgi())
    a.endpoint, a.timers = Endpoint(), Timers()
    a.writer = StoreWriter(a.store, a.gate, a._send_all, a._store_failed)
    a.writer.kick = lambda: None
    yield a
    a.store.close()


def test_an_accepted_pba_leaves_only_after_its_change_is_committed(durable_app):
    """The durability rule (docs/store.md), in a signalling-only path (no switch connected)."""
    app = durable_app
    app.on_datagram(pbu(1, P1, 1), A1, (A1, 5436))
    assert app.endpoint.take() == [] and app.gate.held == 1
    rows = app.store._db.execute("SELECT mn_id FROM sessions").fetchall()
    assert rows == []  # not committed yet, not answered yet
    app.writer._drain()  # one group commit
    (dst, pba), = app.endpoint.take()
    assert dst == A1 and pba.status == 0
    assert app.store._db.execute("SELECT mn_id FROM sessions").fetchall() == [(b"mn1",)]
    # a rejection is not held: it reports no change
    app.on_datagram(encode(M.pbu(2, time.time() - 100, "mn1", P1, 40, 1, 3)), A1, (A1, 5436))
    (dst, refused), = app.endpoint.take()
    assert refused.status != 0
    assert app.store_state()["commits"] == 1 and app.store_state()["held_pbas"] == 0


def packet_in(app, dp, frame, port=10):
    p = dp.ofproto_parser
    msg = p.OFPPacketIn(dp, buffer_id=dp.ofproto.OFP_NO_BUFFER, total_len=len(frame), reason=1, table_id=1,
                        cookie=0, match=p.OFPMatch(in_port=port), data=frame)
    app._packet_in(ofp_event.EventOFPPacketIn(msg))


def test_any_frame_the_pipeline_punts_tells_the_port(app):
    """Not only an RS: an MLD report, or the MN's first unrouted data frame (packet-ins from the
    uplink table's lowest flow) also give the CMD the MN's port, which a held PBA waits for."""
    from scapy.layers.inet6 import UDP, ICMPv6MLReport2, IPv6ExtHdrHopByHop, RouterAlert
    dp1 = connect(app, FakeSwitch(1))
    app.on_datagram(pbu(1, P1, 1), A1, (A1, 5436))
    assert app.endpoint.take() == []  # held: no port known for the MN
    mld = Ether(src=MAC) / IPv6(src="fe80::a01", dst="ff02::16", hlim=1) / IPv6ExtHdrHopByHop(
        options=[RouterAlert(value=0)]) / ICMPv6MLReport2()
    packet_in(app, dp1, bytes(mld))
    pump(app, dp1)
    (dst, pba), = app.endpoint.take()
    assert dst == A1 and pba.status == 0
    dp2 = connect(app, FakeSwitch(2))
    app.on_datagram(pbu(1, P2, 3), A2, (A2, 5436))
    app.endpoint.take()  # the PBU with Serving MAAR to maar1
    data = Ether(src=MAC) / IPv6(src=f"{P1.address}a", dst="2001:db8:cc::1") / UDP()  # its old flow
    packet_in(app, dp2, bytes(data), port=10)
    pump(app, dp1)
    pump(app, dp2)
    (dst, pba2), = app.endpoint.take()
    assert dst == A2 and [(p.maar, p.prefix) for p in pba2.previous_maars] == [(A1, P1)]
    packet_in(app, dp2, bytes(data)[:10])  # no Ethernet source: counted, nothing learnt
    packet_in(app, dp2, b"\xff" * 6 + b"\x03" + bytes(60))  # a group source MAC
    assert app.stats.counters["packet_in.unparsed"] == 2


def test_the_port_learnt_before_a_handover_is_stored_with_the_session(durable_app):
    """The MN's first frame at the new MAAR comes before that MAAR's PBU: its port is learnt while
    the session is still elsewhere. It must reach the store once the session moves there, or a
    restarted CMD has no flows towards the MN at its serving switch (the lab's CMD restart found
    its reconciliation deleting them)."""
    from scapy.layers.inet6 import UDP
    app = durable_app
    dp1, dp2 = connect(app, FakeSwitch(1)), connect(app, FakeSwitch(2))
    rs_packet_in(app, dp1, port=10)
    app.on_datagram(pbu(1, P1, 1), A1, (A1, 5436))
    pump(app, dp1)
    app.writer._drain()
    data = Ether(src=MAC) / IPv6(src=f"{P1.address}a", dst="2001:db8:cc::1") / UDP()  # its old flow, unrouted
    packet_in(app, dp2, bytes(data), port=10)  # before maar2's PBU
    app.on_datagram(pbu(1, P2, 3), A2, (A2, 5436))
    pump(app, dp1)
    pump(app, dp2)
    app.writer._drain()
    mac = bytes.fromhex(MAC.replace(":", ""))
    assert sorted(app.store._db.execute("SELECT maar, mac, port FROM ports").fetchall()) == [(A1, mac, 10), (A2, mac, 10)]


def test_an_access_port_that_comes_up_is_asked_who_is_there(app):
    """OVS says which port came up, not who is behind it: the CMD sends an MLD general query out of
    that port (from the MAAR's MAC and link-local), which every host there answers with a report."""
    from scapy.layers.inet6 import ICMPv6MLQuery2
    dp = connect(app, FakeSwitch(1))
    sent = []
    dp.send_msg = sent.append  # the fake switch does not take packet-outs: record them
    o, p = dp.ofproto, dp.ofproto_parser

    def status(reason, port_no, state=0, config=0):
        desc = p.OFPPort(port_no, "02:00:00:00:00:10", f"a{port_no}", config, state, 0, 0, 0, 0, 0, 0)
        app._port_status(ofp_event.EventOFPPortStatus(p.OFPPortStatus(dp, reason, desc)))
    status(o.OFPPR_ADD, 10)
    status(o.OFPPR_MODIFY, 10)
    status(o.OFPPR_ADD, 10, state=o.OFPPS_LINK_DOWN)  # added while its link is down: asked when it comes up
    status(o.OFPPR_MODIFY, 10, config=o.OFPPC_PORT_DOWN)
    status(o.OFPPR_DELETE, 10)
    status(o.OFPPR_ADD, 1)  # the core port
    assert len(sent) == 2 and app.stats.counters["port_up_queries"] == 2
    out = sent[0]
    assert out.in_port == o.OFPP_CONTROLLER and [(a.port) for a in out.actions] == [10]
    q = Ether(out.data)
    maar1 = app.domain.maar("maar1")
    assert (q.src, q[IPv6].src, q[IPv6].dst, q[IPv6].hlim) == (maar1.mac.hex(":"), maar1.link_local, "ff02::1", 1)
    assert q[ICMPv6MLQuery2].mladdr == "::"


def test_with_flow_control_maar_the_cmd_only_signals(tmp_path, monkeypatch):
    """flow_control = maar (docs/flow-control.md): the CMD drives no switch; a switch that connects
    to it anyway gets nothing, and PBAs are not held for any barrier."""
    (tmp_path / "d.ini").write_text(CONFIG.replace("mode = proxy", "mode = proxy\nflow_control = maar"))
    monkeypatch.setattr(cmd, "config_path", lambda: str(tmp_path / "d.ini"))
    app = cmd.CmdApp(wsgi=Wsgi())
    app.endpoint, app.timers = Endpoint(), Timers()
    sw1 = FakeSwitch(1)
    dp1 = connect(app, sw1)
    assert sw1.entries == [] and dp1.sent == []
    app.on_datagram(pbu(1, P1, 1), A1, (A1, 5436))
    (dst, pba), = app.endpoint.take()  # at once: nothing to wait for
    assert dst == A1 and pba.status == 0 and not [k for k in app.timers.armed if type(k) is MirrorKey]
    app.on_datagram(pbu(1, P2, 3), A2, (A2, 5436))
    sent = app.endpoint.take()  # proxy: the PBA to maar2 and the PBU with Serving MAAR to maar1, at once
    assert sorted(d for d, _ in sent) == sorted([A1, A2]) and sw1.entries == [] and dp1.sent == []
