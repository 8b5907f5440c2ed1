"""RS/NS validation (RFC 4861 §6.1.1 and §7.1.1) on frames built by scapy: a frame that claims to
be a solicitation but fails a check is a reason (counted by the agent), other traffic is None."""
import pytest
from scapy.layers.inet6 import ICMPv6EchoRequest, ICMPv6ND_NS, ICMPv6ND_RA, ICMPv6ND_RS, ICMPv6NDOptSrcLLAddr, IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from ryu_dmm.agent import nd

MN_MAC = "02:00:00:00:0a:01"


def rs(**ip):
    ip = {"src": "fe80::a01", "dst": "ff02::2", **ip}
    return Ether(src=MN_MAC, dst="33:33:00:00:00:02") / IPv6(**ip) / ICMPv6ND_RS() / ICMPv6NDOptSrcLLAddr(lladdr=MN_MAC)


def ns(tgt="fe80::aa", **ip):
    ip = {"src": "fe80::a01", "dst": "ff02::1:ff00:aa", **ip}
    return Ether(src=MN_MAC) / IPv6(**ip) / ICMPv6ND_NS(tgt=tgt)


def test_valid_solicitations_and_ethernet_padding():
    assert nd.classify(bytes(rs())) == nd.Solicitation(nd.RS, bytes.fromhex("020000000a01"), "fe80::a01")
    # an RS without options padded to a 60-byte Ethernet minimum: the IPv6 payload length rules
    bare = bytes(Ether(src=MN_MAC) / IPv6(src="::", dst="ff02::2") / ICMPv6ND_RS())
    assert len(bare) == 62 and nd.classify(bare + bytes(4)).kind == nd.RS
    got = nd.classify(bytes(ns()))
    assert (got.kind, got.target) == (nd.NS, "fe80::aa")
    dad = nd.classify(bytes(ns(src="::", dst="ff02::1:ff00:aa")))  # DAD probe: to the solicited-node group
    assert (dad.kind, dad.src_ip) == (nd.NS, "::")


@pytest.mark.parametrize("frame", [
    b"", bytes(13),
    bytes(Ether(src=MN_MAC) / IPv6(src="fe80::a01", dst="ff02::1") / ICMPv6EchoRequest()),  # other ICMPv6
    bytes(Ether(src=MN_MAC) / IPv6(src="fe80::a01", dst="ff02::1", nh=17) / Raw(bytes(20))),  # not ICMPv6
    bytes(Ether() / IPv6(src="fe80::1", dst="ff02::1") / ICMPv6ND_RA()),  # ours, or another router's
    bytes(Ether(type=0x0800) / Raw(bytes(60))),  # IPv4
], ids=["empty", "short", "echo", "udp", "ra", "ipv4"])
def test_other_traffic_is_not_a_solicitation(frame):
    assert nd.classify(frame) is None and nd.parse(frame) is None


def _with(frame: bytes, offset: int, value: int) -> bytes:
    return frame[:offset] + bytes([value]) + frame[offset + 1:]


def _eth_ip(dst="ff02::2", **ip):
    return Ether(src=MN_MAC) / IPv6(src="fe80::a01", dst=dst, **ip)


@pytest.mark.parametrize("why,frame", [  # why: a word the reason must contain (which RFC 4861 check failed)
    ("truncated", bytes(rs())[:14 + 39]),
    ("overruns", bytes(rs())[:-1]),  # the IPv6 payload length says one byte more than the frame holds
    ("hop limit", bytes(_eth_ip(hlim=64) / ICMPv6ND_RS())),
    ("checksum", _with(bytes(rs()), 14 + 40 + 2, bytes(rs())[14 + 40 + 2] ^ 0xFF)),
    ("code", bytes(_eth_ip() / ICMPv6ND_RS(code=1))),
    ("length 4", bytes(_eth_ip(nh=58, hlim=255) / Raw(bytes([133, 0, 0, 0])))),  # RS: ICMP length >= 8
    ("length 16", bytes(_eth_ip(nh=58, hlim=255, dst="ff02::1") / Raw(bytes([135, 0]) + bytes(14)))),  # NS: >= 24
    ("option", bytes(_eth_ip() / ICMPv6ND_RS() / Raw(bytes([1, 0]) + bytes(6)))),  # option length 0
    ("option", bytes(_eth_ip() / ICMPv6ND_RS() / Raw(bytes([1, 2]) + bytes(6)))),  # 16 bytes claimed, 8 there
    ("unspecified", bytes(rs(src="::"))),  # an SLLAO from the unspecified address
    ("multicast target", bytes(ns(tgt="ff02::1"))),
    ("solicited-node", bytes(ns(src="::", dst="ff02::1"))),
    ("version", _with(bytes(rs()), 14, 0x45)),
    ("multicast source MAC", _with(bytes(rs()), 6, 0x03)),  # the group bit in the Ethernet source
], ids=lambda v: v if isinstance(v, str) else "")
def test_malformed_solicitations_are_reasons(why, frame):
    got = nd.classify(frame)
    assert isinstance(got, str) and why in got
    assert nd.parse(frame) is None
