"""``flow_control = maar``: each MAAR's agent programs its own switch (docs/flow-control.md).

The flow mirror in a MAAR's agent (``local``), the agent's OpenFlow channel, and the real agent
process driving the fake OpenFlow switch (tests/fakeswitch.py, which applies the bytes the agent
sends and answers as a switch) over TCP. Expected forwarding is worked out by hand from the
pipeline table in docs/pipeline.md and RFC 8885 §3 (the P-MAAR tunnels its prefix to the S-MAAR;
the serving MAAR routes its own prefix natively).
"""
import contextlib
import ipaddress
import socket
import struct
import time

import pytest
from ryu.ofproto import ofproto_v1_3 as ofp, ofproto_v1_3_parser as parser
from scapy.layers.inet6 import ICMPv6ND_RS, IPv6
from scapy.layers.l2 import Ether

from ryu_dmm.agent.main import request
from ryu_dmm.agent.switch import MAX_PENDING, BadMessage, ChannelClosed, OfChannel, PacketIn, packet_out
from ryu_dmm.flowmirror import BarrierReplied, CoreOutput, FlowMirror, FlowsConfirmed, MirrorKey, ReplaceFlows, \
    SwitchUp, configured_switches
from ryu_dmm.flowmirror.mirror import HOLD_TIMEOUT
from ryu_dmm.mobility import messages as M
from ryu_dmm.mobility.dataplane import EMPTY, LocalRoute, MnDataPlane, TunnelToServing
from ryu_dmm.mobility.events import Advertise, DataPlaneChanged, RaPrefix, Send, SetTimer, TimerFired
from ryu_dmm import domainconf, pipeline
from ryu_dmm.wire import BindingAck, BindingUpdate, Prefix, decode, encode
from tests.fakeswitch import BarrierMode, FakeSwitch
from tests.procs import free_port, running_agent, wait_for

A1, A2 = "::ffff:127.0.0.2", "::ffff:127.0.0.3"
P1 = Prefix.parse("2001:db8:1::/64")
MAC = bytes.fromhex("02000000 0a01".replace(" ", ""))
MN = "mn1"


def config(cmd_port: int, mode: str = "proxy") -> str:
    return f"""
[dmm]
cmd_address = ::ffff:127.0.0.1
port = {cmd_port}
mode = {mode}
flow_control = maar
[timers]
heartbeat_interval = 0
""" + "".join(f"""
[maar:maar{i}]
address = ::ffff:127.0.0.{i + 1}
pool = 2001:db8:{i}::/48
mac = 02:00:00:00:ff:0{i}
datapath_id = {i}
core_port = 1
tunnel_port = 2
agent_port = 3
access_ports = 10,11
""" for i in (1, 2))


# ---- the flow mirror of one MAAR (local) --------------------------------------------------------
def local_mirror():
    domain, settings = domainconf.parse(config(5436))
    return FlowMirror(pipeline.load(), configured_switches(domain, settings, only=A1), local=A1)


def test_local_mirror_renders_our_state_and_holds_ra_and_pba_for_the_barrier():
    m = local_mirror()
    m.handle(SwitchUp(A1), 0.0)
    state = MnDataPlane(local=(LocalRoute(P1, MAC, 11),))
    ra = Advertise(MN, MAC, 11, (RaPrefix(P1, 3600, 3600),))
    pba = Send("::ffff:127.0.0.1", M.pba_for(M.pbu(1, 1.0, MN, P1, 3600, 3, 3, serving=A2), 0, 3600))
    out = m.handle(CoreOutput((DataPlaneChanged(MN, state), ra, pba)), 1.0)
    pushes = [e for e in out if type(e) is ReplaceFlows]
    assert [p.maar for p in pushes] == [A1] and len(pushes[0].flows) == 2  # a local prefix: uplink + downlink
    assert DataPlaneChanged(MN, state) in out  # passed on: the agent shows it
    assert ra not in out and pba not in out  # both wait for our switch's barrier
    assert any(type(e) is SetTimer and e.at == 1.0 + HOLD_TIMEOUT for e in out)
    out = m.handle(BarrierReplied(A1, pushes[0].barrier), 1.01)
    assert ra in out and pba in out and FlowsConfirmed(MN, 1.0, 1.01) in out


def test_local_mirror_hold_ends_at_the_timeout_and_an_empty_state_removes_the_group():
    m = local_mirror()
    m.handle(SwitchUp(A1), 0.0)
    ra = Advertise(MN, MAC, 11, (RaPrefix(P1, 3600, 3600),))
    out = m.handle(CoreOutput((DataPlaneChanged(MN, MnDataPlane(local=(LocalRoute(P1, MAC, 11),))), ra)), 1.0)
    timer = next(e for e in out if type(e) is SetTimer and type(e.key) is MirrorKey)
    assert m.handle(TimerFired(timer.key), timer.at) == [ra]  # a silent switch never stalls the RA
    out = m.handle(CoreOutput((DataPlaneChanged(MN, EMPTY),)), 2.0)
    push = next(e for e in out if type(e) is ReplaceFlows)
    assert push.flows == ()
    assert not [f for f in m.wanted_flows(A1) if f.cookie]  # only base flows (cookie 0) remain


def test_local_mirror_refuses_other_switches():
    domain, settings = domainconf.parse(config(5436))
    with pytest.raises(ValueError):
        FlowMirror(pipeline.load(), configured_switches(domain, settings), local=A1)


# ---- the OpenFlow channel ----------------------------------------------------------------------
def test_channel_frames_split_messages_answers_echo_and_refuses_openflow_1_0():
    ch = OfChannel()
    echo = struct.pack("!BBHI", 4, 2, 12, 77) + b"ping"
    barrier = struct.pack("!BBHI", 4, 21, 8, 5)
    events, answer = ch.feed(echo[:5], A1)
    assert events == [] and answer == b""
    events, answer = ch.feed(echo[5:] + barrier, A1)
    assert answer == struct.pack("!BBHI", 4, 3, 12, 77) + b"ping"  # OFPT_ECHO_REPLY, same xid and data
    assert events == [BarrierReplied(A1, 5)]
    with pytest.raises(ChannelClosed):
        OfChannel().feed(struct.pack("!BBHI", 1, 0, 8, 1), A1)  # HELLO of OpenFlow 1.0


def test_packet_out_is_what_ryu_serializes():
    class Dp:
        ofproto, ofproto_parser = ofp, parser
    frame = bytes(Ether(src="02:00:00:00:ff:01") / IPv6() / ICMPv6ND_RS())
    ref = parser.OFPPacketOut(Dp(), ofp.OFP_NO_BUFFER, ofp.OFPP_CONTROLLER, [parser.OFPActionOutput(11)], frame)
    ref.xid = 0
    ref.serialize()
    assert packet_out(11, frame) == bytes(ref.buf)


def packet_in(port: int, frame: bytes, xid: int = 0) -> bytes:
    """OFPT_PACKET_IN as OpenFlow 1.3 §7.4.1 lays it out: no buffer, reason ACTION, table 0, a match
    holding OXM in_port (class 0x8000, field 0, length 4) padded to 8 bytes, 2 bytes of pad, the frame."""
    match = struct.pack("!HHIi4x", 1, 12, 0x80000004, port)
    body = struct.pack("!IHBBQ", 0xFFFFFFFF, len(frame), 1, 0, 0) + match + b"\0\0" + frame
    return struct.pack("!BBHI", 4, 10, 8 + len(body), xid) + body


def test_channel_reads_a_packet_in():
    frame = bytes(Ether(src="02:00:00:00:0a:01", dst="33:33:00:00:00:02") / IPv6() / ICMPv6ND_RS())
    events, _ = OfChannel().feed(packet_in(11, frame), A1)
    assert events == [PacketIn(11, frame)]



def header(kind: int, length: int, xid: int) -> bytes:
    return struct.pack("!BBHI", 4, kind, length, xid)


# Lengths from OpenFlow 1.3.5 §7: ofp_switch_features 32 bytes, ofp_error_msg 12, ofp_packet_in 32
# with an empty match (type 1, length 4, padded to 8) followed by pad[2]: 34 at the least.
SHORT_FEATURES = header(6, 16, 1) + struct.pack("!Q", 1)  # a datapath id and nothing more: 16 < 32
SHORT_ERROR = header(1, 10, 2) + b"\0\1"  # the error type without its code: 10 < 12
JUNK_PACKET_IN = header(10, 12, 3) + b"junk"  # 12 bytes
PI_FIXED = struct.pack("!IHBBQ", 0xFFFFFFFF, 0, 1, 0, 0)  # buffer_id NO_BUFFER, total_len, reason, table, cookie
# 34 bytes, well formed, but its match has no in_port (OpenFlow requires it in a packet-in's match)
PACKET_IN_NO_PORT = header(10, 34, 4) + PI_FIXED + struct.pack("!HH4x", 1, 4) + b"\0\0"
# a match claiming 200 bytes inside a 42-byte message
PACKET_IN_BAD_MATCH = header(10, 42, 5) + PI_FIXED + struct.pack("!HH12x", 1, 200) + b"\0\0"
BARRIER = header(21, 8, 9)


def test_malformed_messages_cost_one_event_each_and_keep_the_rest_of_the_read(caplog):
    ch = OfChannel()
    bad = SHORT_FEATURES + SHORT_ERROR + JUNK_PACKET_IN + PACKET_IN_NO_PORT + PACKET_IN_BAD_MATCH
    events, answer = ch.feed(bad + BARRIER, A1)
    assert [(type(e), getattr(e, "xid", None)) for e in events] == [(BadMessage, 1), (BadMessage, 2), (BadMessage, 3),
                                                                    (BadMessage, 4), (BadMessage, 5),
                                                                    (BarrierReplied, 9)]
    assert [e.type for e in events[:5]] == [6, 1, 10, 10, 10]
    assert all("shorter" in e.reason for e in events[:3]) and not any("shorter" in e.reason for e in events[3:5])
    assert answer == b""
    # the framing held: the next read starts at a message boundary
    assert ch.feed(header(21, 8, 10), A1) == ([BarrierReplied(A1, 10)], b"")
    assert not [r for r in caplog.records if r.name.startswith("ryu")]  # no parser traceback logged


def test_a_message_at_its_minimum_length_is_read():
    features = header(6, 32, 1) + struct.pack("!QIBB2xII", 7, 0, 254, 0, 0, 0)  # ofp_switch_features, 32 bytes
    error = header(1, 12, 2) + struct.pack("!HH", 5, 1)  # ofp_error_msg with no data, 12 bytes
    events, _ = OfChannel().feed(features + error, A1)
    assert [type(e).__name__ for e in events] == ["Connected", "SwitchError"]
    assert events[0].dpid == 7 and (events[1].type, events[1].code, events[1].xid) == (5, 1, 2)


def test_a_header_shorter_than_a_header_closes_the_channel_but_keeps_what_came_before():
    with pytest.raises(ChannelClosed) as got:
        OfChannel().feed(BARRIER + header(21, 7, 11) + BARRIER, A1)
    assert got.value.events == [BarrierReplied(A1, 9)]

# ---- the agent process driving the fake switch -------------------------------------------------
class SwitchLink:
    """The fake switch behind a TCP connection to the agent: every byte the agent sends is applied by
    the fake; the fake's replies go back as the bytes it serialized."""

    def __init__(self, port: int, switch: FakeSwitch):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.dp, self.buf = switch.connect(), b""
        self.sock.sendall(struct.pack("!BBHI", 4, 0, 8, 1))  # our HELLO

    def pump(self, wait: float = 0.02) -> None:
        self.sock.settimeout(wait)
        try:
            self.buf += self.sock.recv(1 << 20)
        except socket.timeout:
            pass
        while len(self.buf) >= 8 and len(self.buf) >= struct.unpack_from("!H", self.buf, 2)[0]:
            n = struct.unpack_from("!H", self.buf, 2)[0]
            self.dp.send(self.buf[:n])
            self.buf = self.buf[n:]
        for reply in self.dp.replies():
            self.sock.sendall(bytes(reply.buf))

    def until(self, cond, timeout: float = 5.0):
        end = time.time() + timeout
        while time.time() < end:
            self.pump()
            got = cond()
            if got:
                return got
        return cond()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)


@contextlib.contextmanager
def agent_and_switch(tmp_path, mode: str = "proxy", dpid: int = 1):
    """maar1's agent process (flow_control = maar), a socket playing the CMD, and a fake switch of
    datapath id ``dpid`` connected to the agent."""
    cmd = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    cmd.bind(("127.0.0.1", 0))
    cmd.settimeout(3)
    (tmp_path / "d.ini").write_text(config(cmd.getsockname()[1], mode))
    port, of = free_port(socket.AF_INET, socket.SOCK_DGRAM), free_port()
    control = str(tmp_path / "maar1.sock")
    with running_agent(tmp_path / "d.ini", "maar1", port, control, tmp_path / "agent.log",
                       "--openflow-listen", f"127.0.0.1:{of}"):
        sw = FakeSwitch(dpid=dpid)
        link = SwitchLink(of, sw)
        try:
            yield {"cmd": cmd, "control": control, "switch": sw, "link": link, "port": port, "mode": mode, "of": of}
        finally:
            link.sock.close()


@pytest.fixture(params=["proxy", "relay"])
def maar_agent(tmp_path, request):
    with agent_and_switch(tmp_path, request.param) as got:
        yield got


def events(control, kind):
    return [e for e in request(control, {"op": "events"})["events"] if e["event"] == kind]


BASE = len(pipeline.base_flows(pipeline.SwitchPorts(1, 2, 3, (10, 11))))


def test_agent_programs_its_switch_and_advertises_only_after_the_barrier(maar_agent):
    sw, link, cmd, control = maar_agent["switch"], maar_agent["link"], maar_agent["cmd"], maar_agent["control"]
    # connection: features, flow stats, then the reconciliation installs the base flows
    # (per access port 5 punted ICMPv6 types + 1 into uplink + 1 unrouted, and 3 more: docs/pipeline.md)
    assert link.until(lambda: len(sw.entries) == 2 * 7 + 3 == BASE), len(sw.entries)
    assert request(control, {"op": "state"})["switch"]["connected"]
    # the MN's RS comes in as a packet-in from access port 11: that attaches it, on port 11
    rs = bytes(Ether(src="02:00:00:00:0a:01", dst="33:33:00:00:00:02") / IPv6(src="fe80::a01", dst="ff02::2")
               / ICMPv6ND_RS())
    link.send(packet_in(11, rs))
    link.pump()
    data, addr = cmd.recvfrom(4096)
    pbu = decode(data)
    assert isinstance(pbu, BindingUpdate) and pbu.hnps[0] == P1 and pbu.mn_ll_id == MAC
    sw.barrier_mode = BarrierMode.HOLD
    cmd.sendto(encode(M.pba_for(pbu, 0, 3600)), addr)
    assert link.until(lambda: len(sw.entries) == BASE + 2)  # local route: uplink + downlink
    mn = pbu.mn_id
    link.until(lambda: False, 0.2)
    assert events(control, "advertise") == []  # flows pushed, barrier not answered: no RA yet
    sw.datapath.release()
    assert link.until(lambda: events(control, "advertise"))
    confirmed = events(control, "flows-confirmed")
    assert confirmed and confirmed[0]["mn"] == mn and confirmed[0]["t"] <= events(control, "advertise")[0]["t"]
    # downlink from the core to P1 leaves on port 11 towards the MN's MAC; uplink from it goes to the core
    d = sw.forward({"in_port": 1, "eth_type": 0x86DD, "ipv6_src": "2001:db8:cc::1", "ipv6_dst": "2001:db8:1::5"})
    assert d.outputs == (11,) and d.eth_dst == "02:00:00:00:0a:01"
    d = sw.forward({"in_port": 11, "eth_type": 0x86DD, "ipv6_src": "2001:db8:1::5", "ipv6_dst": "2001:db8:cc::1"})
    assert d.outputs == (1,)
    # the MN moved to maar2 (proxy mode): the CMD's PBU with Serving MAAR; our PBA waits for our tunnel
    sw.barrier_mode = BarrierMode.HOLD
    cmd.sendto(encode(M.pbu(7, time.time(), mn, P1, 3600, 3, 3, None, serving=A2)), addr)
    assert link.until(lambda: any(e.outputs_to(2) for e in sw.entries if e.table_id == 2))
    cmd.settimeout(0.15)
    with pytest.raises(socket.timeout):
        cmd.recvfrom(4096)  # the PBA is held while the barrier is unanswered
    sw.datapath.release()
    link.pump()
    cmd.settimeout(3)
    pba = decode(cmd.recvfrom(4096)[0])
    assert isinstance(pba, BindingAck) and pba.status == 0 and pba.serving_maar == A2
    d = sw.forward({"in_port": 1, "eth_type": 0x86DD, "ipv6_src": "2001:db8:cc::1", "ipv6_dst": "2001:db8:1::5"})
    assert d.outputs == (2,) and ipaddress.ip_address(d.tun_ipv6_dst) == ipaddress.ip_address(A2)  # into the tunnel


def test_a_silent_switch_holds_the_pba_no_longer_than_the_hold_timeout(maar_agent):
    sw, link, cmd, control = maar_agent["switch"], maar_agent["link"], maar_agent["cmd"], maar_agent["control"]
    assert link.until(lambda: len(sw.entries) == BASE)
    assert request(control, {"op": "attach", "mn": MN, "mac": "02:00:00:00:0a:01", "port": 10})["ok"]
    data, addr = cmd.recvfrom(4096)
    cmd.sendto(encode(M.pba_for(decode(data), 0, 3600)), addr)
    assert link.until(lambda: events(control, "advertise"))
    sw.barrier_mode = BarrierMode.DROP
    t0 = time.time()
    cmd.sendto(encode(M.pbu(7, time.time(), MN, P1, 3600, 3, 3, None, serving=A2)), addr)
    cmd.settimeout(0.05)
    got = None
    while got is None and time.time() - t0 < 3:
        link.pump()
        try:
            got = decode(cmd.recvfrom(4096)[0])
        except socket.timeout:
            pass
    assert isinstance(got, BindingAck) and got.status == 0
    assert HOLD_TIMEOUT - 0.05 <= time.time() - t0 < HOLD_TIMEOUT + 0.5


def test_a_switch_with_another_datapath_id_is_refused(tmp_path):
    with agent_and_switch(tmp_path, dpid=9) as got:
        assert got["link"].until(lambda: events(got["control"], "switch-disconnected"))
        assert not got["switch"].entries and request(got["control"], {"op": "state"})["switch"]["refused"] == 1



def test_a_connection_that_says_nothing_does_not_disturb_the_switch(tmp_path):
    with agent_and_switch(tmp_path) as got:
        sw, link, control, of = got["switch"], got["link"], got["control"], got["of"]
        assert link.until(lambda: len(sw.entries) == BASE)
        silent = [socket.create_connection(("127.0.0.1", of), timeout=5) for _ in range(MAX_PENDING + 1)]
        try:
            def seen():
                s = request(control, {"op": "state"})["switch"]
                return s if s["pending"] == MAX_PENDING and s["refused_pending"] == 1 else None
            state = link.until(seen)
            assert state and state["connected"]  # the switch that is up stays up
            # ... and is still served: its malformed messages are counted, the packet-in behind them attaches the MN
            rs = bytes(Ether(src="02:00:00:00:0a:01", dst="33:33:00:00:00:02") / IPv6(src="fe80::a01", dst="ff02::2")
                       / ICMPv6ND_RS())
            link.send(SHORT_ERROR + JUNK_PACKET_IN + packet_in(11, rs))
            link.pump()
            pbu = decode(got["cmd"].recvfrom(4096)[0])
            assert isinstance(pbu, BindingUpdate) and pbu.mn_ll_id == MAC
            assert link.until(lambda: request(control, {"op": "state"})["counters"]["bad_openflow"] == 2)
            state = request(control, {"op": "state"})["switch"]
            assert state["connected"] and state["bad_messages"] == 2
            # the silent ones are closed at the handshake deadline (5 s)
            assert link.until(lambda: request(control, {"op": "state"})["switch"]["pending"] == 0, 8)
            state = request(control, {"op": "state"})["switch"]
            assert state["handshake_timeouts"] == MAX_PENDING and state["connected"]
            assert silent[0].recv(64)  # it got our HELLO and features request ...
            silent[0].settimeout(2)
            while silent[0].recv(64):
                pass  # ... and then end of stream
        finally:
            for s in silent:
                s.close()
        # the same switch reconnecting (hello and features with our datapath id) replaces the old connection
        sw2 = FakeSwitch(dpid=1)
        link2 = SwitchLink(of, sw2)
        try:
            assert link2.until(lambda: len(sw2.entries) >= BASE)
            state = request(control, {"op": "state"})["switch"]
            assert state["connected"] and state["pending"] == 0
            link.sock.settimeout(2)
            while link.sock.recv(1 << 20):
                pass  # the old connection was closed (end of stream; a timeout here fails)
        finally:
            link2.sock.close()


def test_a_pending_connection_that_does_not_read_is_closed_without_stalling_the_agent(tmp_path):
    """A peer that floods echo requests (whose replies we owe) and reads nothing fills its socket
    buffers: before it is identified the agent never waits for it, so control requests (served by
    the same loop) keep being answered at once, and the switch that is up stays up."""
    with agent_and_switch(tmp_path) as got:
        sw, link, control, of = got["switch"], got["link"], got["control"], got["of"]
        assert link.until(lambda: len(sw.entries) == BASE)
        flood = socket.create_connection(("127.0.0.1", of), timeout=5)
        flood.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        echo = header(2, 65535, 7) + bytes(65535 - 8)  # OFPT_ECHO_REQUEST, the largest there is
        flood.settimeout(0.05)
        slowest, sent, t_end = 0.0, 0, time.time() + 10
        try:
            flood.sendall(header(0, 8, 1))  # HELLO, and never a features reply
            while time.time() < t_end:
                try:
                    sent += flood.send(echo)
                except socket.timeout:
                    pass
                except OSError:
                    break  # closed by the agent
                t0 = time.monotonic()
                state = request(control, {"op": "state"}, timeout=3)["switch"]
                slowest = max(slowest, time.monotonic() - t0)
                if state["pending"] == 0 and sent > 0:
                    break
            assert state["pending"] == 0 and state["connected"] and sent > 1 << 20, (state, sent)
            assert slowest < 1.0, slowest  # a blocking write would have held the loop SEND_TIMEOUT (2 s)
        finally:
            flood.close()
