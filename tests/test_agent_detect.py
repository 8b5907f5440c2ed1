"""Attachment detection from an MN's first frame on a link: DAD probes (RFC 4862 §5.4.2), MLD
Reports (RFC 2710 §3, RFC 3810 §5.2) and any frame from a MAC not attached here. The frames are
built here byte by byte from the RFCs' layouts (with this file's own checksum), and cross-checked
with scapy's dissector; the agent runs in this process with its access link replaced by a list."""
import ipaddress
import socket
import struct

import pytest
from scapy.layers.inet6 import (
    ICMPv6MLQuery2, ICMPv6MLReport2, IPv6, IPv6ExtHdrHopByHop, RouterAlert,
)
from scapy.layers.l2 import Ether

from ryu_dmm.agent import guard, nd
from ryu_dmm.agent.main import mn_id_of
from ryu_dmm.wire import decode
from tests.test_agent_bounds import local_agent  # noqa: F401 - the fixture

MN_MAC = bytes.fromhex("020000000a01")
MN_LL = "fe80::a01"
SOLICITED = "ff02::1:ff00:a01"  # solicited-node group of fe80::a01 (RFC 4291 §2.7.1)
MLDV2_ROUTERS = "ff02::16"  # where MLDv2 Reports go (RFC 3810 §5.2.14)


def checksum(src: str, dst: str, icmp: bytes) -> int:
    """RFC 8200 §8.1 pseudo-header + ICMPv6 message, 16-bit one's complement sum (RFC 1071)."""
    data = (ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed + struct.pack("!I", len(icmp))
            + bytes(3) + bytes([58]) + icmp)
    data += bytes(len(data) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv6_frame(src: str, dst: str, icmp: bytes, hop_limit: int, hbh: bytes = b"", src_mac: bytes = MN_MAC,
               fix_checksum: bool = True) -> bytes:
    if fix_checksum:
        icmp = icmp[:2] + struct.pack("!H", checksum(src, dst, icmp)) + icmp[4:]
    first = 0 if hbh else 58
    ip = struct.pack("!IHBB", 6 << 28, len(hbh) + len(icmp), first, hop_limit)
    ip += ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed
    dst_mac = bytes.fromhex("3333") + ipaddress.IPv6Address(dst).packed[-4:]  # RFC 2464 §7
    return dst_mac + src_mac + b"\x86\xdd" + ip + hbh + icmp


# Hop-by-Hop header (RFC 8200 §4.3): next header 58, length 0 (8 bytes), Router Alert option
# (type 5, length 2, value 0 = MLD, RFC 2711), PadN with no data (type 1, length 0)
HBH_MLD = bytes([58, 0, 5, 2, 0, 0, 1, 0])


def mldv2_report(records: list[tuple[int, str, list[str]]], count: int | None = None) -> bytes:
    """RFC 3810 §5.2: type 143, reserved, checksum, reserved (16), number of records, then per record:
    record type, aux data length (0), number of sources, multicast address, sources."""
    body = b"".join(struct.pack("!BBH", rtype, 0, len(srcs)) + ipaddress.IPv6Address(group).packed
                    + b"".join(ipaddress.IPv6Address(s).packed for s in srcs) for rtype, group, srcs in records)
    return struct.pack("!BBHHH", 143, 0, 0, 0, len(records) if count is None else count) + body


CHANGE_TO_EXCLUDE = 4  # RFC 3810 §5.2.12: a join
JOIN = mldv2_report([(CHANGE_TO_EXCLUDE, SOLICITED, [])])


def test_mldv2_report_as_linux_sends_it_on_link_up():
    frame = ipv6_frame(MN_LL, MLDV2_ROUTERS, JOIN, 1, HBH_MLD)
    pkt = Ether(frame)  # independent decoder: scapy sees a valid MLDv2 report behind a router alert
    assert pkt[IPv6ExtHdrHopByHop].options[0].value == 0 and isinstance(pkt[IPv6ExtHdrHopByHop].options[0], RouterAlert)
    rep = pkt[ICMPv6MLReport2]
    assert rep.records_number == 1 and rep.records[0].dst == SOLICITED
    again = Ether(frame)
    again[ICMPv6MLReport2].cksum = None
    assert Ether(bytes(again))[ICMPv6MLReport2].cksum == rep.cksum
    assert nd.classify(frame) == nd.MldReport(2, MN_MAC, MN_LL)
    # before its link-local address is usable a host reports from :: (RFC 3810 §5.2.13)
    assert nd.classify(ipv6_frame("::", MLDV2_ROUTERS, JOIN, 1, HBH_MLD)) == nd.MldReport(2, MN_MAC, "::")
    # records with sources, and padding after the IPv6 payload, are fine
    two = mldv2_report([(CHANGE_TO_EXCLUDE, SOLICITED, []), (1, "ff0e::1", ["2001:db8::1", "2001:db8::2"])])
    assert nd.classify(ipv6_frame(MN_LL, MLDV2_ROUTERS, two, 1, HBH_MLD) + bytes(6)).version == 2


def test_mldv1_report():
    # RFC 2710 §3: type 131, code, checksum, maximum response delay, reserved, multicast address
    report = struct.pack("!BBHHH", 131, 0, 0, 0, 0) + ipaddress.IPv6Address(SOLICITED).packed
    assert nd.classify(ipv6_frame(MN_LL, SOLICITED, report, 1, HBH_MLD)) == nd.MldReport(1, MN_MAC, MN_LL)


def _patched(frame: bytes, offset: int, value: bytes) -> bytes:
    return frame[:offset] + value + frame[offset + len(value):]


GOOD = ipv6_frame(MN_LL, MLDV2_ROUTERS, JOIN, 1, HBH_MLD)
HBH_AT, ICMP_AT = 14 + 40, 14 + 40 + 8


@pytest.mark.parametrize("why,frame", [
    ("hop limit", ipv6_frame(MN_LL, MLDV2_ROUTERS, JOIN, 255, HBH_MLD)),
    ("router alert", ipv6_frame(MN_LL, MLDV2_ROUTERS, JOIN, 1, bytes([58, 0, 1, 4, 0, 0, 0, 0]))),  # PadN only
    ("router alert", ipv6_frame(MN_LL, MLDV2_ROUTERS, JOIN, 1, bytes([58, 0, 5, 2, 0, 1, 1, 0]))),  # RSVP's value
    ("link-local", ipv6_frame("2001:db8:1::a", MLDV2_ROUTERS, JOIN, 1, HBH_MLD)),
    ("checksum", _patched(GOOD, ICMP_AT + 2, bytes([GOOD[ICMP_AT + 2] ^ 0xFF]))),
    ("record", ipv6_frame(MN_LL, MLDV2_ROUTERS, mldv2_report([(CHANGE_TO_EXCLUDE, SOLICITED, [])], count=2), 1,
                          HBH_MLD)),
    ("record", ipv6_frame(MN_LL, MLDV2_ROUTERS, JOIN[:8] + JOIN[8:11] + b"\x05" + JOIN[12:], 1, HBH_MLD)),  # 5 sources
    ("length 4", ipv6_frame(MN_LL, MLDV2_ROUTERS, bytes([143, 0, 0, 0]), 1, HBH_MLD)),
    ("option overruns", ipv6_frame(MN_LL, MLDV2_ROUTERS, JOIN, 1, bytes([58, 0, 5, 9, 0, 0, 1, 0]))),
    ("hop-by-hop header overruns", GOOD[:HBH_AT] + bytes([58, 3]) + bytes(6)),
    ("truncated hop-by-hop", GOOD[:HBH_AT + 4]),
    ("overruns the frame", GOOD[:-1]),
    ("multicast source MAC", _patched(GOOD, 6, b"\x03")),
], ids=lambda v: v if isinstance(v, str) else "")
def test_malformed_mld_reports_are_reasons(why, frame):
    got = nd.classify(frame)
    assert isinstance(got, str) and why in got, got


def test_other_frames_behind_a_hop_by_hop_header_are_not_reports():
    query = struct.pack("!BBHHH", 130, 0, 0, 1, 0) + bytes(16) + struct.pack("!BBH", 2, 125, 0)
    assert nd.classify(ipv6_frame(MN_LL, "ff02::1", query, 1, HBH_MLD)) is None  # a query (another router's)
    udp = bytes([17, 0, 5, 2, 0, 0, 1, 0])  # Hop-by-Hop then UDP
    assert nd.classify(ipv6_frame(MN_LL, "ff02::1", bytes(8), 1, udp, fix_checksum=False)) is None


def test_dad_probe_per_rfc_4862():
    # RFC 4862 §5.4.2: an NS from ::, to the solicited-node group of the tentative address, that
    # address as the target, no source link-layer address option; hop limit 255 (RFC 4861 §7.1.1)
    ns = struct.pack("!BBHI", 135, 0, 0, 0) + ipaddress.IPv6Address(MN_LL).packed
    got = nd.classify(ipv6_frame("::", SOLICITED, ns, 255))
    assert got == nd.Solicitation(nd.NS, MN_MAC, "::", MN_LL)


def test_unicast_source():
    assert nd.unicast_source(GOOD) == MN_MAC
    assert nd.unicast_source(_patched(GOOD, 6, b"\x03")) is None  # a group address is never a source
    assert nd.unicast_source(GOOD[:13]) is None


def test_mld_query_for_a_port_that_came_up():
    mac = bytes.fromhex("0200000000aa")
    pkt = Ether(nd.mld_query(mac, "fe80::aa"))
    assert (pkt.src, pkt.dst) == ("02:00:00:00:00:aa", "33:33:00:00:00:01")
    assert (pkt[IPv6].src, pkt[IPv6].dst, pkt[IPv6].hlim) == ("fe80::aa", "ff02::1", 1)  # RFC 3810 §5
    assert isinstance(pkt[IPv6ExtHdrHopByHop].options[0], RouterAlert) and pkt[IPv6ExtHdrHopByHop].options[0].value == 0
    q = pkt[ICMPv6MLQuery2]
    assert (q.type, q.mrd, q.mladdr, q.sources_number) == (130, 1, "::", 0)  # a general query, 1 ms
    again = Ether(bytes(pkt))
    again[ICMPv6MLQuery2].cksum = None
    assert Ether(bytes(again))[ICMPv6MLQuery2].cksum == q.cksum
    with pytest.raises(ValueError):
        nd.mld_query(mac, "fe80::aa", 32768)


# ---- the agent ---------------------------------------------------------------------------------------
def _feed(agent, *frames, pkttype=socket.PACKET_HOST):
    for f in frames:
        agent.access.frames.append(f)
        if pkttype != socket.PACKET_HOST:
            agent.access.recvfrom = lambda _n, f=f: (agent.access.frames.pop(0), ("g1", 0x86DD, pkttype, 1, b""))
        agent._on_access()


def _pbus(sink) -> list:
    sink.settimeout(0.2)
    got = []
    try:
        while True:
            got.append(decode(sink.recv(4096)))
    except socket.timeout:
        return got


def _detected(agent) -> list:
    return [(e["event"], e.get("via"), e["mn"]) for e in agent.events if e["event"] in ("rs", "detected")]


UDP_FROM_OLD_PREFIX = ipv6_frame("2001:db8:7::a", "2001:db8:cc::1", bytes(8), 64, bytes([17, 0, 1, 4, 0, 0, 0, 0]),
                                 fix_checksum=False)


@pytest.mark.parametrize("via,frame", [
    ("mld", GOOD),
    ("dad", ipv6_frame("::", SOLICITED, struct.pack("!BBHI", 135, 0, 0, 0) + ipaddress.IPv6Address(MN_LL).packed, 255)),
    ("frame", UDP_FROM_OLD_PREFIX),  # e.g. its old flow's next packet, which no uplink flow routes yet
], ids=["mld", "dad", "frame"])
def test_first_frame_of_an_unknown_mac_attaches_once(local_agent, via, frame, capsys):
    agent, sink, _ = local_agent
    mn = mn_id_of(MN_MAC)
    _feed(agent, frame, frame, GOOD, UDP_FROM_OLD_PREFIX)
    (pbu,) = _pbus(sink)  # one registration: the later frames come from an MN attached here
    assert pbu.mn_id == mn and pbu.mn_ll_id == MN_MAC
    assert _detected(agent) == [("detected", via, mn)]
    assert agent._mn_ll.get(mn) == ((MN_MAC, MN_LL) if via == "mld" else None)  # its link-local, if it said
    capsys.readouterr()


def test_an_rs_is_answered_even_from_an_attached_mn(local_agent, capsys):
    agent, sink, _ = local_agent
    rs = struct.pack("!BBHI", 133, 0, 0, 0)
    _feed(agent, GOOD, ipv6_frame(MN_LL, "ff02::2", rs, 255))
    assert _detected(agent) == [("detected", "mld", mn_id_of(MN_MAC)), ("rs", None, mn_id_of(MN_MAC))]
    capsys.readouterr()


def test_our_own_frames_and_group_sources_attach_nothing(local_agent, capsys):
    agent, sink, _ = local_agent
    # what we send ourselves (RAs from a peer's DLIF MAC among them) comes back as outgoing
    _feed(agent, UDP_FROM_OLD_PREFIX, pkttype=socket.PACKET_OUTGOING)
    _feed(agent, _patched(UDP_FROM_OLD_PREFIX, 6, b"\x03"), _patched(UDP_FROM_OLD_PREFIX, 6, agent.core.info.mac))
    assert _pbus(sink) == [] and _detected(agent) == [] and not agent.core.bindings
    capsys.readouterr()


def test_detection_is_under_the_attach_limits(local_agent, capsys):
    agent, sink, _ = local_agent
    agent.limiter = guard.AttachLimiter(new_limit=2)
    macs = [(0x020000000b00 + i).to_bytes(6, "big") for i in range(4)]
    _feed(agent, *(UDP_FROM_OLD_PREFIX[:6] + m + UDP_FROM_OLD_PREFIX[12:] for m in macs))
    assert len(_pbus(sink)) == 2 and len(agent.core.bindings) == 2
    assert agent.counters["refused_new_mn_rate"] == 2 and agent.counters["refused_attaches"] == 2
    capsys.readouterr()
