"""Whole packets around a Mobility Header, and a pcap writer: for tools, captures and tests.

The signalling endpoints hand the MH to a socket and never need these; captures and scapy/tshark
cross-checks do.
"""
from __future__ import annotations

import socket
import struct
from typing import BinaryIO, Iterable

from ..wire import pack6
from ..wire.checksum import internet_checksum
from ..wire.constants import IPPROTO_MH, PMIP6_CNTL_PORT

LINKTYPE_RAW = 101  # each record starts with an IPv4 or IPv6 header
_UDP = struct.Struct("!HHHH")


def ipv6_packet(payload: bytes, src: str, dst: str, next_header: int = IPPROTO_MH, hop_limit: int = 64) -> bytes:
    return struct.pack("!IHBB", 6 << 28, len(payload), next_header, hop_limit) + pack6(src) + pack6(dst) + payload


def udp6_packet(mh: bytes, src: str, dst: str, sport: int = PMIP6_CNTL_PORT, dport: int = PMIP6_CNTL_PORT) -> bytes:
    length = 8 + len(mh)
    pseudo = pack6(src) + pack6(dst) + struct.pack("!I3xB", length, socket.IPPROTO_UDP)
    csum = internet_checksum(pseudo + _UDP.pack(sport, dport, length, 0) + mh) or 0xFFFF
    return ipv6_packet(_UDP.pack(sport, dport, length, csum) + mh, src, dst, socket.IPPROTO_UDP)


def udp4_packet(mh: bytes, src: str, dst: str, sport: int = PMIP6_CNTL_PORT, dport: int = PMIP6_CNTL_PORT) -> bytes:
    """IPv4/UDP framing of RFC 5844 §4.2.2.1 (the MH checksum stays 0, UDP's covers it)."""
    s4, d4 = socket.inet_aton(src), socket.inet_aton(dst)
    length = 8 + len(mh)
    pseudo = s4 + d4 + struct.pack("!xBH", socket.IPPROTO_UDP, length)
    csum = internet_checksum(pseudo + _UDP.pack(sport, dport, length, 0) + mh) or 0xFFFF
    udp = _UDP.pack(sport, dport, length, csum) + mh
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, socket.IPPROTO_UDP, 0, s4, d4)
    hdr = hdr[:10] + internet_checksum(hdr).to_bytes(2, "big") + hdr[12:]
    return hdr + udp


def write_pcap(out: BinaryIO, packets: Iterable[bytes], start: float = 0.0) -> None:
    """Write raw-IP packets as a classic pcap file, one microsecond apart."""
    out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RAW))
    for i, pkt in enumerate(packets):
        t = start + i * 1e-6
        out.write(struct.pack("<IIII", int(t), int((t % 1) * 1e6), len(pkt), len(pkt)))
        out.write(pkt)
