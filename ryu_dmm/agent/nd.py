"""Neighbour Discovery frames the agent handles (RFC 4861), in plain ``struct``: it reads Router and
Neighbor Solicitations and writes Router and Neighbor Advertisements as whole Ethernet frames."""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Optional, Union

from ..mobility.events import RaPrefix
from ..wire.addr import pack6, unpack6
from ..wire.checksum import internet_checksum
from ..wire.constants import ETH_IPV6, ICMPV6, ND_NA, ND_NS, ND_RA, ND_RS

RS, RA, NS, NA = ND_RS, ND_RA, ND_NS, ND_NA
ALL_NODES = "ff02::1"
_IP, _ICMP = 14, 14 + 40  # offsets of the IPv6 and ICMPv6 headers in an Ethernet frame
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


def classify(frame: bytes) -> Union[Solicitation, str, None]:
    """An RS or NS that passes RFC 4861's validation (§6.1.1, §7.1.1) as a ``Solicitation``; a
    frame that claims to be one but fails it (or a truncated IPv6 frame) as the reason, a short
    string; any other frame (other IPv6 traffic, our own advertisements) as None."""
    if len(frame) < 14 or struct.unpack_from("!H", frame, 12)[0] != ETH_IPV6:
        return None
    if len(frame) < _IP + 40:
        return "truncated IPv6 header"
    if frame[_IP] >> 4 != 6:
        return "IP version is not 6"
    if frame[_IP + 6] != ICMPV6:
        return None  # not ICMPv6 (or behind extension headers, which RS/NS from hosts do not use)
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


def parse(frame: bytes) -> Optional[Solicitation]:
    """A valid RS or NS in an Ethernet frame, else None (anything malformed is just not one)."""
    got = classify(frame)
    return got if isinstance(got, Solicitation) else None


def _frame(src_mac: bytes, dst_mac: bytes, src_ip: str, dst_ip: str, icmp: bytes) -> bytes:
    pseudo = pack6(src_ip) + pack6(dst_ip) + struct.pack("!I3xB", len(icmp), ICMPV6)
    csum = internet_checksum(pseudo + icmp)
    icmp = icmp[:2] + struct.pack("!H", csum) + icmp[4:]
    ip = struct.pack("!IHBB", 6 << 28, len(icmp), ICMPV6, 255) + pack6(src_ip) + pack6(dst_ip)
    return dst_mac + src_mac + struct.pack("!H", ETH_IPV6) + ip + icmp


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
