"""ND frames the agent writes, judged by scapy's dissector; the ones it reads, built by scapy."""
from scapy.layers.inet6 import (
    ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6ND_RA, ICMPv6ND_RS, ICMPv6NDOptMTU, ICMPv6NDOptPrefixInfo, ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import Ether

from ryu_dmm.agent import nd
from ryu_dmm.mobility.events import RaPrefix
from ryu_dmm.wire import Prefix

MAC, MN = bytes.fromhex("0200000000aa"), bytes.fromhex("020000000a01")


def test_router_advertisement_decodes_in_scapy_with_valid_checksum():
    prefixes = (RaPrefix(Prefix.parse("2001:db8:2::/64"), 3600, 3600),
                RaPrefix(Prefix.parse("2001:db8:1::/64"), 0, 3600, "2001:db8:ff::1"))
    frame = nd.router_advertisement(MAC, "fe80::aa", MN, "fe80::a01", prefixes)
    pkt = Ether(frame)
    ra = pkt[ICMPv6ND_RA]
    assert pkt[IPv6].hlim == 255 and ra.routerlifetime == 1800
    infos = [(o.prefix, o.prefixlen, o.preferredlifetime, o.validlifetime, o.A, o.L)
             for o in pkt.getlayer(ICMPv6ND_RA).iterpayloads() if isinstance(o, ICMPv6NDOptPrefixInfo)]
    assert infos == [("2001:db8:2::", 64, 3600, 3600, 1, 1), ("2001:db8:1::", 64, 0, 3600, 1, 1)]
    assert pkt[ICMPv6NDOptSrcLLAddr].lladdr == "02:00:00:00:00:aa"
    assert pkt[ICMPv6NDOptMTU].mtu == nd.TUNNEL_SAFE_MTU
    again = Ether(bytes(frame))
    again[ICMPv6ND_RA].cksum = None
    assert Ether(bytes(again))[ICMPv6ND_RA].cksum == ra.cksum


def test_neighbor_advertisement():
    pkt = Ether(nd.neighbor_advertisement(MAC, "fe80::aa", MN, "fe80::a01"))
    na = pkt[ICMPv6ND_NA]
    assert (na.R, na.S, na.O, na.tgt) == (1, 1, 1, "fe80::aa")


def test_parse_solicitations_and_ignore_the_rest():
    rs = Ether(src="02:00:00:00:0a:01", dst="33:33:00:00:00:02") / IPv6(src="fe80::a01", dst="ff02::2") / ICMPv6ND_RS()
    got = nd.parse(bytes(rs))
    assert got == nd.Solicitation(nd.RS, MN, "fe80::a01")
    ns = Ether(src="02:00:00:00:0a:01") / IPv6(src="fe80::a01", dst="ff02::1:ff00:aa") / ICMPv6ND_NS(tgt="fe80::aa")
    assert nd.parse(bytes(ns)).target == "fe80::aa"
    hop64 = Ether(bytes(rs))
    hop64[IPv6].hlim = 64
    assert nd.parse(bytes(hop64)) is None
    assert nd.parse(b"") is None and nd.parse(bytes(100)) is None and nd.parse(bytes(rs)[:60]) is None


def test_one_ra_per_dlif():
    from ryu_dmm.mobility.config import MaarInfo
    own = MaarInfo("maar2", "2001:db8:ff::2", Prefix.parse("2001:db8:2::/48"))
    anchor = MaarInfo("maar1", "2001:db8:ff::1", Prefix.parse("2001:db8:1::/48"))
    prefixes = (RaPrefix(Prefix.parse("2001:db8:2::/64"), 3600, 3600),
                RaPrefix(Prefix.parse("2001:db8:1::/64"), 0, 3600, anchor.address))
    frames = [Ether(f) for f in nd.ra_frames(own, {anchor.address: anchor}, MN, "fe80::a01", prefixes, 1800)]
    got = [(f.src, f[IPv6].src, f[ICMPv6ND_RA].routerlifetime, f[ICMPv6NDOptPrefixInfo].prefix,
            f[ICMPv6NDOptPrefixInfo].preferredlifetime) for f in frames]
    assert got == [(own.mac.hex(":"), own.link_local, 1800, "2001:db8:2::", 3600),
                   (anchor.mac.hex(":"), anchor.link_local, 0, "2001:db8:1::", 0)]
