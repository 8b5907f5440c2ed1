"""tshark (Wireshark's dissector) as the independent judge of what we put on the wire."""
import subprocess
import xml.etree.ElementTree as ET

import pytest

from ryu_dmm.wire import BindingAck, BindingUpdate, encode, encode_mh
from ryu_dmm.lab.packets import ipv6_packet, udp4_packet, udp6_packet, write_pcap
from ryu_dmm.lab.samples import ALL

pytestmark = pytest.mark.tshark
RFC8885 = {65, 66, 67, 68, 69, 70}


def frames(msg):
    yield "ipv6-raw", ipv6_packet(encode_mh(msg, "2001:db8:ff::1", "2001:db8:ff::100"), "2001:db8:ff::1", "2001:db8:ff::100")
    yield "udp4", udp4_packet(encode(msg), "192.0.2.1", "192.0.2.100")
    yield "udp6", udp6_packet(encode(msg), "2001:db8:ff::1", "2001:db8:ff::100")


@pytest.fixture(scope="module")
def dissected(tmp_path_factory):
    import shutil
    from tests.conftest import need
    need(shutil.which("tshark") is not None, "tshark is not installed")
    cases = [(name, framing, msg, pkt) for name, msg in ALL.items() for framing, pkt in frames(msg)]
    pcap = tmp_path_factory.mktemp("pcap") / "all.pcap"
    with open(pcap, "wb") as out:
        write_pcap(out, [c[3] for c in cases])
    pdml = subprocess.run(["tshark", "-n", "-r", str(pcap), "-T", "pdml"], check=True, capture_output=True,
                          text=True, timeout=60).stdout
    packets = ET.fromstring(pdml).findall("packet")
    assert len(packets) == len(cases)
    return list(zip(cases, packets))


def fields(packet, name):
    return [f for f in packet.iter("field") if f.get("name") == name]


def show(packet, name):
    return [f.get("show") for f in fields(packet, name)]


def test_nothing_malformed_and_no_warnings(dissected):
    for (name, framing, _msg, _), packet in dissected:
        assert not packet.findall(".//proto[@name='_ws.malformed']"), (name, framing)
        protos = [p.get("name") for p in packet.iter("proto")]
        assert "mipv6" in protos, (name, framing, protos)
        for expert in fields(packet, "_ws.expert"):
            assert "Note" in expert.get("showname", ""), (name, framing, expert.get("showname"))
        if framing == "ipv6-raw":
            assert show(packet, "mip6.csum") != ["0x0000"]


def test_header_and_known_options_decode_to_our_values(dissected):
    for (name, framing, msg, _), packet in dissected:
        ctx = (name, framing)
        if isinstance(msg, BindingUpdate):
            assert show(packet, "mip6.mhtype") == ["5"], ctx
            assert show(packet, "mip6.bu.seqnr") == [str(msg.sequence)], ctx
            assert show(packet, "mip6.bu.a_flag") == [str(int(msg.a))], ctx
            assert show(packet, "mip6.bu.p_flag") == ["1"], ctx
            assert show(packet, "mip6.bu.lifetime") == [str(msg.lifetime // 4)], ctx
        else:
            assert isinstance(msg, BindingAck)
            assert show(packet, "mip6.mhtype") == ["6"], ctx
            assert show(packet, "mip6.ba.status") == [str(msg.status)], ctx
            assert show(packet, "mip6.ba.seqnr") == [str(msg.sequence)], ctx
            assert show(packet, "mip6.ba.lifetime") == [str(msg.lifetime // 4)], ctx
        assert show(packet, "mip6.mnid.identifier") == [msg.mn_id], ctx
        assert show(packet, "mip6.nemo.mnp.mnp") == [p.address for p in msg.hnps], ctx
        assert show(packet, "mip6.nemo.mnp.pfl") == [str(p.length) for p in msg.hnps], ctx
        assert show(packet, "mip6.hi") == ([str(msg.handoff)] if msg.handoff else []), ctx
        assert show(packet, "mip6.att") == ([str(msg.att)] if msg.att else []), ctx
        ts = fields(packet, "mip6.options.ts")
        assert [bytes.fromhex(f.get("value"))[2:] for f in ts] == (
            [msg.timestamp.to_bytes(8, "big")] if msg.timestamp is not None else []), ctx


def test_rfc8885_options_show_with_our_type_and_length(dissected):
    seen = set()
    for (name, framing, msg, _), packet in dissected:
        ours = [(o.TYPE, len(o.body())) for o in msg.options if o.TYPE in RFC8885]
        theirs = []
        for f in packet.iter("field"):
            if f.get("name") == "" and (f.get("show") or "").startswith("Unknown (0x"):
                raw = bytes.fromhex(f.get("value"))
                assert int(f.get("size")) == 2 + raw[1]
                theirs.append((raw[0], raw[1]))
        assert theirs == ours, (name, framing)
        seen.update(t for t, _ in ours)
    assert seen == RFC8885
