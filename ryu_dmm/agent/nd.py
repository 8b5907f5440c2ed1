"""Neighbour Discovery frames the agent handles (RFC 4861), in plain ``struct``: it reads Router and
Neighbor Solicitations and MLD Reports (what an MN sends first on a link, RFC 4862 §5.4, RFC 3810
§6.1) and writes Router and Neighbor Advertisements (and, for the CMD, MLD Queries) as whole
Ethernet frames."""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Optional, Union

from ..mobility.events import RaPrefix
from ..wire.addr import pack6, unpack6
from ..wire.checksum import internet_checksum
from ..wire.constants import ETH_IPV6, ICMPV6, ND_NA, ND_NS, ND_RA, ND_RS

RS, RA, NS, NA = ND_RS, ND_RA, ND_NS, ND_NA
MLD_QUERY, MLD_REPORT_V1, MLD_REPORT_V2 = 130, 131, 143  # ICMPv6 types (RFC 2710 §3, RFC 3810 §5)
HOP_BY_HOP = 0  # IPv6 next header
ROUTER_ALERT, ALERT_MLD = 5, 0  # Hop-by-Hop option type and its value for MLD (RFC 2711 §2.1)
ALL_NODES = "ff02::1"
_IP, _ICMP = 14, 14 + 40  # offsets of the IPv6 and ICMPv6 headers in an Ethernet frame
_MLD_RECORD = 20  # an MLDv2 address record without sources and auxiliary data (RFC 3810 §5.2.4)
_SOLICITED_NODE = bytes.fromhex("ff0200000000000000000001ff")  # ff02::1:ff00:0/104
# Advertised link MTU: leaves room for the tunnel headers (outer IPv6 40 + GRE with key 8, or
# VXLAN 8 + UDP 8 + Ethernet 14) on a 1500-byte underlay, so an MN's flows fit through a tunnel
# after a handover (OVS's userspace tunnels neither fragment nor send Packet Too Big).
TUNNEL_SAFE_MTU = 1400


@dataclass(frozen=True)
class Solicitation:
    kind: int  # RS or NS
    src_mac: bytes
    src_ip: str
    target: Optional[str] = None  # NS only


@dataclass(frozen=True)
class MldReport:
    """An MLD Report: a host announces the groups it listens to, on link-up and again after a carrier
    change (Linux: "we might have roamed"), so it is often the first frame of an MN at a new MAAR."""

    version: int  # 1 (RFC 2710) or 2 (RFC 3810)
    src_mac: bytes
    src_ip: str  # link-local, or :: before the host has one (RFC 3810 §5.2.13)


def classify(frame: bytes) -> Union[Solicitation, MldReport, str, None]:
    """An RS or NS that passes RFC 4861's validation (§6.1.1, §7.1.1) as a ``Solicitation``, an MLD
    Report that passes RFC 3810's (§5, §5.2.13) as an ``MldReport``; a frame that claims to be one
    but fails it (or a truncated IPv6 frame) as the reason, a short string; any other frame (other
    IPv6 traffic, our own advertisements) as None."""
    if len(frame) < 14 or struct.unpack_from("!H", frame, 12)[0] != ETH_IPV6:
        return None
    if len(frame) < _IP + 40:
        return "truncated IPv6 header"
    if frame[_IP] >> 4 != 6:
        return "IP version is not 6"
    if frame[_IP + 6] == HOP_BY_HOP:
        return _mld(frame)
    if frame[_IP + 6] != ICMPV6:
        return None  # not ICMPv6 (or behind other extension headers, which RS/NS from hosts do not use)
    if len(frame) <= _ICMP:
        return "truncated ICMPv6 header"
    kind = frame[_ICMP]
    if kind not in (RS, NS):
        return None
    plen = struct.unpack_from("!H", frame, _IP + 4)[0]
    if _ICMP + plen > len(frame):
        return "IPv6 payload length overruns the frame"
    icmp = frame[_ICMP:_ICMP + plen]  # without any Ethernet padding
    if frame[_IP + 7] != 255:
        return "hop limit is not 255"
    least = 8 if kind == RS else 24
    if len(icmp) < least:
        return f"ICMP length {len(icmp)} below {least}"
    src, dst = frame[_IP + 8:_IP + 24], frame[_IP + 24:_IP + 40]
    if internet_checksum(src + dst + struct.pack("!I3xB", len(icmp), ICMPV6) + icmp):
        return "bad ICMPv6 checksum"
    if icmp[1] != 0:
        return "ICMP code is not 0"
    pos, has_sllao = least, False
    while pos < len(icmp):
        if pos + 2 > len(icmp) or icmp[pos + 1] == 0 or pos + icmp[pos + 1] * 8 > len(icmp):
            return "option of length 0 or overrunning the message"
        has_sllao = has_sllao or icmp[pos] == 1
        pos += icmp[pos + 1] * 8
    unspecified = src == bytes(16)
    if unspecified and has_sllao:
        return "source link-layer address option from the unspecified address"
    src_mac, src_ip = frame[6:12], unpack6(src)
    if src_mac[0] & 1:  # IEEE 802: a source address is never a group address
        return "multicast source MAC"
    if kind == RS:
        return Solicitation(RS, src_mac, src_ip)
    target = icmp[8:24]
    if target[0] == 0xFF:
        return "multicast target"
    if unspecified and dst[:13] != _SOLICITED_NODE:
        return "unspecified source to other than a solicited-node address"
    return Solicitation(NS, src_mac, src_ip, unpack6(target))


def _mld(frame: bytes) -> Union[MldReport, str, None]:
    """An MLD Report behind its Hop-by-Hop header: sent with a Router Alert for MLD, hop limit 1,
    from a link-local source or :: (RFC 3810 §5, §5.2.13); v2 address records within the message."""
    at = _ICMP
    if len(frame) < at + 8:
        return "truncated hop-by-hop header"
    end = at + (frame[at + 1] + 1) * 8
    if end > len(frame):
        return "hop-by-hop header overruns the frame"
    if frame[at] != ICMPV6:
        return None
    if len(frame) <= end:
        return "truncated ICMPv6 header"
    kind = frame[end]
    if kind not in (MLD_REPORT_V1, MLD_REPORT_V2):
        return None
    plen = struct.unpack_from("!H", frame, _IP + 4)[0]
    if _ICMP + plen > len(frame):
        return "IPv6 payload length overruns the frame"
    if _ICMP + plen < end:
        return "IPv6 payload length below its hop-by-hop header"
    icmp = frame[end:_ICMP + plen]
    pos, alert = at + 2, None
    while pos < end:  # the options: Pad1 is one byte, every other one has a length byte
        if frame[pos] == 0:
            pos += 1
            continue
        if pos + 2 > end or pos + 2 + frame[pos + 1] > end:
            return "hop-by-hop option overruns its header"
        if frame[pos] == ROUTER_ALERT and frame[pos + 1] == 2:
            alert = struct.unpack_from("!H", frame, pos + 2)[0]
        pos += 2 + frame[pos + 1]
    if alert != ALERT_MLD:
        return "MLD report without a router alert for MLD"
    if frame[_IP + 7] != 1:
        return "hop limit is not 1"
    src, dst = frame[_IP + 8:_IP + 24], frame[_IP + 24:_IP + 40]
    if src != bytes(16) and (src[0], src[1] & 0xC0) != (0xFE, 0x80):
        return "MLD report from other than a link-local address or ::"
    least = 24 if kind == MLD_REPORT_V1 else 8
    if len(icmp) < least:
        return f"ICMP length {len(icmp)} below {least}"
    if internet_checksum(src + dst + struct.pack("!I3xB", len(icmp), ICMPV6) + icmp):
        return "bad ICMPv6 checksum"
    if kind == MLD_REPORT_V2:
        pos = 8
        for _ in range(struct.unpack_from("!H", icmp, 6)[0]):
            if pos + _MLD_RECORD > len(icmp):
                return "MLDv2 address record overruns the message"
            aux, sources = icmp[pos + 1], struct.unpack_from("!H", icmp, pos + 2)[0]
            pos += _MLD_RECORD + 16 * sources + 4 * aux
        if pos > len(icmp):
            return "MLDv2 address record overruns the message"
    src_mac = frame[6:12]
    if src_mac[0] & 1:
        return "multicast source MAC"
    return MldReport(1 if kind == MLD_REPORT_V1 else 2, src_mac, unpack6(src))


def unicast_source(frame: bytes) -> Optional[bytes]:
    """The source MAC of an Ethernet frame, or None if it has none or it is a group address (a
    source never is: IEEE 802)."""
    if len(frame) < 14 or frame[6] & 1:
        return None
    return frame[6:12]


def parse(frame: bytes) -> Optional[Solicitation]:
    """A valid RS or NS in an Ethernet frame, else None (anything malformed is just not one)."""
    got = classify(frame)
    return got if isinstance(got, Solicitation) else None


def _frame(src_mac: bytes, dst_mac: bytes, src_ip: str, dst_ip: str, icmp: bytes, hop_limit: int = 255,
           hop_by_hop: bytes = b"") -> bytes:
    pseudo = pack6(src_ip) + pack6(dst_ip) + struct.pack("!I3xB", len(icmp), ICMPV6)
    csum = internet_checksum(pseudo + icmp)
    icmp = icmp[:2] + struct.pack("!H", csum) + icmp[4:]
    first = HOP_BY_HOP if hop_by_hop else ICMPV6
    ip = struct.pack("!IHBB", 6 << 28, len(hop_by_hop) + len(icmp), first, hop_limit) + pack6(src_ip) + pack6(dst_ip)
    return dst_mac + src_mac + struct.pack("!H", ETH_IPV6) + ip + hop_by_hop + icmp


def mld_query(src_mac: bytes, src_ll: str, max_response_ms: int = 1) -> bytes:
    """An MLDv2 General Query to all nodes (RFC 3810 §5.1): every listener answers with a Report within
    ``max_response_ms`` (below 32768, where the code is the delay itself), so a host that just came up
    on a port makes itself known. Hop limit 1 and a Router Alert for MLD, from a link-local (§5)."""
    if not 1 <= max_response_ms < 32768:
        raise ValueError("max_response_ms must be 1..32767 (the exact-value range of the Maximum Response Code)")
    # Hop-by-Hop header: next header ICMPv6, length 0 (8 bytes): Router Alert (MLD), then PadN of 0 bytes
    hbh = struct.pack("!BBBBHBB", ICMPV6, 0, ROUTER_ALERT, 2, ALERT_MLD, 1, 0)
    # type, code, checksum, Maximum Response Code, reserved, Multicast Address (:: for a general
    # query), Resv/S/QRV (robustness 2), QQIC (125 s), number of sources
    body = struct.pack("!BBHHH", MLD_QUERY, 0, 0, max_response_ms, 0) + bytes(16) + struct.pack("!BBH", 2, 125, 0)
    return _frame(src_mac, bytes.fromhex("333300000001"), src_ll, ALL_NODES, body, hop_limit=1, hop_by_hop=hbh)


def router_advertisement(src_mac: bytes, src_ll: str, dst_mac: bytes, dst_ip: str, prefixes: tuple[RaPrefix, ...],
                         router_lifetime: int = 1800, mtu: int = TUNNEL_SAFE_MTU) -> bytes:
    """An RA with one Prefix Information option per prefix (on-link, autonomous), the router's
    source link-layer address and the link MTU."""
    body = struct.pack("!BBHBBHII", RA, 0, 0, 64, 0, router_lifetime, 0, 0)
    body += struct.pack("!BBHI", 5, 1, 0, mtu)
    for p in prefixes:
        body += struct.pack("!BBBBIII", 3, 4, p.prefix.length, 0xC0, p.valid, p.preferred, 0) + p.prefix.packed
    body += struct.pack("!BB", 1, 1) + src_mac
    return _frame(src_mac, dst_mac, src_ll, dst_ip, body)


def neighbor_advertisement(src_mac: bytes, target: str, dst_mac: bytes, dst_ip: str) -> bytes:
    """A solicited NA for ``target`` from a router (flags R, S, O) with its target link-layer address."""
    body = struct.pack("!BBHI", NA, 0, 0, 0xE0000000) + pack6(target) + struct.pack("!BB", 2, 1) + src_mac
    return _frame(src_mac, dst_mac, target, dst_ip, body)


def ra_frames(own, peers: dict, dst_mac: bytes, dst_ip: str, prefixes: tuple[RaPrefix, ...],
              router_lifetime: int) -> list[bytes]:
    """One RA per logical interface (RFC 8885 §3.7): the serving MAAR's own prefix from its own MAC and
    link-local, as a default router for ``router_lifetime`` seconds; each old prefix, deprecated, from
    its anchoring MAAR's DLIF (``peers[anchor]``: that MAAR's MAC and link-local), router lifetime 0.
    ``own`` and the peers are ``MaarInfo`` values."""
    groups: dict = {}
    for p in prefixes:
        groups.setdefault(p.dlif, []).append(p)
    frames = []
    for anchor, group in groups.items():
        info = own if anchor is None else peers.get(anchor, own)
        frames.append(router_advertisement(info.mac, info.link_local, dst_mac, dst_ip, tuple(group),
                                           router_lifetime=router_lifetime if anchor is None else 0))
    return frames
