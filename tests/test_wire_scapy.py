"""Our codec against scapy's Mobility Header dissector (with our option layers), both ways."""
from scapy.layers.inet import UDP
from scapy.layers.inet6 import IPv6, in6_chksum, MIP6MH_BA, MIP6MH_BU, MIP6OptMNID

from ryu_dmm.wire import BindingAck, BindingUpdate, Heartbeat, RestartCounter, decode, encode, encode_mh
from ryu_dmm.lab import scapy_layers as L
from ryu_dmm.lab.packets import ipv6_packet
from ryu_dmm.lab.samples import PBA_WITH_PMAARS, PBU, PBU_TO_PMAAR

SRC, DST = "2001:db8:ff::1", "2001:db8:ff::100"


def scapy_view(msg):
    pkt = IPv6(ipv6_packet(encode_mh(msg, SRC, DST), SRC, DST))
    return pkt[MIP6MH_BU] if isinstance(msg, BindingUpdate) else pkt[MIP6MH_BA]


def test_scapy_dissects_our_pbu():
    mh = scapy_view(PBU)
    assert (mh.seq, mh.mhtime * 4, mh.flags.A, mh.flags.P, mh.reserved) == (7, 3600, True, True, 0x10)
    opts = {type(o): o for o in mh.options}
    assert opts[MIP6OptMNID].id == b"mn1@dmm.example"
    assert opts[L.MIP6OptHomeNetworkPrefix].prefix == "2001:db8:2:7::"
    assert opts[L.MIP6OptHomeNetworkPrefix].plen == 64
    assert opts[L.MIP6OptHandoffIndicator].hi == 3
    assert opts[L.MIP6OptAccessTechType].att == 3
    assert opts[L.MIP6OptMNLinkLayerId].lli == bytes.fromhex("0200000000aa")
    assert opts[L.MIP6OptLinkLocalAddress].lla == "fe80::aa"
    assert opts[L.MIP6OptTimestamp].timestamp == PBU.timestamp
    # scapy recomputes the checksum the way RFC 6275 says: ours must match.
    zeroed = bytes(mh)[:4] + b"\0\0" + bytes(mh)[6:]
    assert in6_chksum(135, IPv6(src=SRC, dst=DST), zeroed) == mh.cksum


def test_scapy_dissects_rfc8885_options():
    mh = scapy_view(PBA_WITH_PMAARS)
    assert (mh.status, mh.seq, mh.flags.P, mh.res2) == (0, 7, True, 0x02)
    pmaars = [o for o in mh.options if isinstance(o, L.MIP6OptPreviousMAAR)]
    assert [(o.pmaar, o.prefix, o.plen) for o in pmaars] == [
        ("2001:db8:ff::1", "2001:db8:1:1::", 64), ("2001:db8:ff::3", "2001:db8:3::", 48)]
    kinds = {type(o) for o in mh.options}
    assert {L.MIP6OptDLIFLinkLocal, L.MIP6OptDLIFLinkLayer, L.MIP6OptAnchoredPrefix, L.MIP6OptLocalPrefix} <= kinds
    serving = scapy_view(PBU_TO_PMAAR)
    assert [o.smaar for o in serving.options if isinstance(o, L.MIP6OptServingMAAR)] == ["2001:db8:ff::2"]


def test_our_decoder_reads_scapy_built_packets():
    pkt = IPv6(src=SRC, dst=DST) / MIP6MH_BU(seq=42, flags="AP", reserved=0x10, mhtime=25, options=[
        MIP6OptMNID(id=b"mn9"), L.MIP6OptHomeNetworkPrefix(prefix="2001:db8:9::", plen=64),
        L.MIP6OptHandoffIndicator(hi=1), L.MIP6OptAccessTechType(att=4),
        L.MIP6OptTimestamp(timestamp=123456), L.MIP6OptServingMAAR(smaar="2001:db8::5"),
        L.MIP6OptPreviousMAAR(pmaar="2001:db8::6", prefix="2001:db8:6::", plen=56),
    ])
    raw = bytes(pkt)
    msg = decode(raw[40:], SRC, DST)  # checksum computed by scapy verifies with ours
    assert isinstance(msg, BindingUpdate)
    assert (msg.sequence, msg.lifetime, msg.a, msg.p, msg.d) == (42, 100, True, True, True)
    assert msg.mn_id == "mn9" and str(msg.hnps[0]) == "2001:db8:9::/64"
    assert (msg.handoff, msg.att, msg.timestamp, msg.serving_maar) == (1, 4, 123456, "2001:db8::5")
    assert [(p.maar, str(p.prefix)) for p in msg.previous_maars] == [("2001:db8::6", "2001:db8:6::/56")]

    ba = IPv6(src=SRC, dst=DST) / MIP6MH_BA(status=157, flags="P", res2=2, seq=42, mhtime=0,
                                            options=[MIP6OptMNID(id=b"mn9")])
    got = decode(bytes(ba)[40:], SRC, DST)
    assert isinstance(got, BindingAck) and (got.status, got.p, got.d, got.mn_id) == (157, True, True, "mn9")


def test_udp_framing_dissects_in_scapy():
    from scapy.layers.inet import IP
    pkt = IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5436, dport=5436) / encode(PBU)
    again = IP(bytes(pkt))
    assert decode(bytes(again[UDP].payload)) == PBU


def test_scapy_dissects_our_heartbeat():
    msg = Heartbeat(0xA1B2C3D4, response=True, options=(RestartCounter(0x01020304),))
    pkt = IPv6(ipv6_packet(encode_mh(msg, SRC, DST), SRC, DST))
    hb = pkt[L.MIP6MH_HB]
    assert (hb.mhtype, hb.seq, hb.flags.R, hb.flags.U, hb.reserved) == (13, 0xA1B2C3D4, True, False, 0)
    assert [o.counter for o in hb.options if isinstance(o, L.MIP6OptRestartCounter)] == [0x01020304]
    zeroed = bytes(hb)[:4] + b"\0\0" + bytes(hb)[6:]
    assert in6_chksum(135, IPv6(src=SRC, dst=DST), zeroed) == hb.cksum


def test_our_decoder_reads_a_scapy_built_heartbeat():
    pkt = IPv6(src=SRC, dst=DST) / L.MIP6MH_HB(flags="U", seq=5, options=[L.MIP6OptRestartCounter(counter=9)])
    raw = bytes(pkt)
    assert raw[40 + 14:40 + 20] == bytes.fromhex("1c0400000009")  # scapy aligned the option at 4n+2 too
    assert decode(raw[40:], SRC, DST) == Heartbeat(5, unsolicited=True, options=(RestartCounter(9),))
