"""tshark (Wireshark's dissector) as the independent judge of what we put on the wire.

tshark 4.0 does not know RFC 8885's options 65-70; our Lua plugin (tools/wireshark/rfc8885.lua) adds
them. The main judge loads it and checks every decoded value against the values the sample messages
were built from; a second run without the plugin checks option boundaries with tshark alone.
"""
import ipaddress
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ryu_dmm.wire import BindingAck, BindingUpdate, Heartbeat, LocalPrefix, MobileNodeIdentifier, Prefix, encode, encode_mh
from ryu_dmm.wire.options import (
    AnchoredPrefix, DlifLinkLayerAddress, DlifLinkLocalAddress, PreviousMaar, ServingMaar, UnknownOption,
)
from ryu_dmm.lab.packets import ipv6_packet, udp4_packet, udp6_packet, write_pcap
from ryu_dmm.lab.samples import ALL

pytestmark = pytest.mark.tshark
RFC8885 = {65, 66, 67, 68, 69, 70}
PLUGIN = Path(__file__).resolve().parent.parent / "tools" / "wireshark" / "rfc8885.lua"


def frames(msg):
    yield "ipv6-raw", ipv6_packet(encode_mh(msg, "2001:db8:ff::1", "2001:db8:ff::100"), "2001:db8:ff::1", "2001:db8:ff::100")
    yield "udp4", udp4_packet(encode(msg), "192.0.2.1", "192.0.2.100")
    yield "udp6", udp6_packet(encode(msg), "2001:db8:ff::1", "2001:db8:ff::100")


def run_tshark(tmp, messages, plugin):
    """Dissect every message in every framing; returns [((name, framing, msg), <packet>)]."""
    from tests.conftest import need
    need(shutil.which("tshark") is not None, "tshark is not installed")
    cases = [(name, framing, msg, pkt) for name, msg in messages.items() for framing, pkt in frames(msg)]
    pcap = tmp / "all.pcap"
    with open(pcap, "wb") as out:
        write_pcap(out, [c[3] for c in cases])
    cmd = ["tshark", "-n", "-r", str(pcap), "-T", "pdml"]
    if plugin:
        assert PLUGIN.is_file(), f"the Wireshark plugin is missing: {PLUGIN}"
        cmd[1:1] = ["-X", f"lua_script:{PLUGIN}"]
    # A private HOME: no personal preferences, and no installed copy of the plugin loaded twice.
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "WIRESHARK_"))}
    env["HOME"] = str(home)
    run = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60, env=env)
    assert "lua" not in run.stderr.lower(), run.stderr
    packets = ET.fromstring(run.stdout).findall("packet")
    assert len(packets) == len(cases)
    return [(c[:3], p) for c, p in zip(cases, packets)]


@pytest.fixture(scope="module")
def dissected(tmp_path_factory):
    return run_tshark(tmp_path_factory.mktemp("pcap"), ALL, plugin=True)


@pytest.fixture(scope="module")
def dissected_builtin(tmp_path_factory):
    return run_tshark(tmp_path_factory.mktemp("pcap"), ALL, plugin=False)


def fields(packet, name):
    return [f for f in packet.iter("field") if f.get("name") == name]


def show(packet, name):
    return [f.get("show") for f in fields(packet, name)]


def test_nothing_malformed_and_no_warnings(dissected):
    for (name, framing, _msg), packet in dissected:
        assert not packet.findall(".//proto[@name='_ws.malformed']"), (name, framing)
        assert not fields(packet, "_ws.lua.error"), (name, framing)
        protos = [p.get("name") for p in packet.iter("proto")]
        assert "mipv6" in protos, (name, framing, protos)
        for expert in fields(packet, "_ws.expert"):
            assert "Note" in expert.get("showname", ""), (name, framing, expert.get("showname"))
        if framing == "ipv6-raw":
            assert show(packet, "mip6.csum") != ["0x0000"]


def test_header_and_known_options_decode_to_our_values(dissected):
    for (name, framing, msg), packet in dissected:
        ctx = (name, framing)
        if isinstance(msg, Heartbeat):
            assert show(packet, "mip6.mhtype") == ["13"], ctx
            assert show(packet, "mip6.hb.u_flag") == [str(int(msg.unsolicited))], ctx
            assert show(packet, "mip6.hb.r_flag") == [str(int(msg.response))], ctx
            assert show(packet, "mip6.hb.seqnr") == [str(msg.sequence)], ctx
            assert show(packet, "mip6.rc") == [str(msg.restart_counter)], ctx
            continue
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


# What the plugin must show for one RFC 8885 option, worked out from the option's values with the
# standard library only (not with our encoder nor ryu_dmm.wire's text helpers).
def _addr(text):
    return ipaddress.IPv6Address(text).compressed


def _prefix(p):
    return f"{ipaddress.IPv6Address(bytes(p.packed)).compressed}/{p.length}"


def expected_fields(opt):
    if isinstance(opt, (AnchoredPrefix, LocalPrefix)):
        name = "rfc8885.anchored_prefix" if isinstance(opt, AnchoredPrefix) else "rfc8885.local_prefix"
        return {"rfc8885.type": str(opt.TYPE), "rfc8885.length": "18", "rfc8885.reserved": "0x00",
                "rfc8885.prefix_length": str(opt.prefix.length), name: _prefix(opt.prefix)}
    if isinstance(opt, PreviousMaar):
        return {"rfc8885.type": "67", "rfc8885.length": "34", "rfc8885.reserved": "0x00",
                "rfc8885.prefix_length": str(opt.prefix.length),
                "rfc8885.previous_maar.address": _addr(opt.maar),
                "rfc8885.previous_maar.prefix": _prefix(opt.prefix)}
    if isinstance(opt, ServingMaar):
        return {"rfc8885.type": "68", "rfc8885.length": "16", "rfc8885.serving_maar": _addr(opt.address)}
    if isinstance(opt, DlifLinkLocalAddress):
        return {"rfc8885.type": "69", "rfc8885.length": "16", "rfc8885.dlif_link_local": _addr(opt.address)}
    if isinstance(opt, DlifLinkLayerAddress):
        return {"rfc8885.type": "70", "rfc8885.length": str(2 + len(opt.link_layer)),
                "rfc8885.reserved16": "0x0000",
                "rfc8885.dlif_link_layer": ":".join(f"{b:02x}" for b in opt.link_layer)}
    raise AssertionError(f"not an RFC 8885 option: {opt!r}")


def decoded_options(packet):
    """One {field name: shown value} per option item of the plugin, in packet order."""
    return [{f.get("name"): f.get("show") for f in item.iter("field") if f.get("name", "").startswith("rfc8885.")}
            for item in packet.iter("proto") if item.get("name") == "rfc8885"]


# The expectations above, for the samples that carry RFC 8885 options, spelled out by hand.
BY_HAND = {
    "pbu_to_pmaar": [
        {"rfc8885.type": "68", "rfc8885.length": "16", "rfc8885.serving_maar": "2001:db8:ff::2"}],
    "pba_pmaars": [
        {"rfc8885.type": "67", "rfc8885.length": "34", "rfc8885.reserved": "0x00", "rfc8885.prefix_length": "64",
         "rfc8885.previous_maar.address": "2001:db8:ff::1", "rfc8885.previous_maar.prefix": "2001:db8:1:1::/64"},
        {"rfc8885.type": "67", "rfc8885.length": "34", "rfc8885.reserved": "0x00", "rfc8885.prefix_length": "48",
         "rfc8885.previous_maar.address": "2001:db8:ff::3", "rfc8885.previous_maar.prefix": "2001:db8:3::/48"},
        {"rfc8885.type": "69", "rfc8885.length": "16", "rfc8885.dlif_link_local": "fe80::1"},
        {"rfc8885.type": "70", "rfc8885.length": "8", "rfc8885.reserved16": "0x0000",
         "rfc8885.dlif_link_layer": "02:00:00:00:00:aa"},
        {"rfc8885.type": "65", "rfc8885.length": "18", "rfc8885.reserved": "0x00", "rfc8885.prefix_length": "64",
         "rfc8885.anchored_prefix": "2001:db8:1:1::/64"},
        {"rfc8885.type": "66", "rfc8885.length": "18", "rfc8885.reserved": "0x00", "rfc8885.prefix_length": "64",
         "rfc8885.local_prefix": "2001:db8:2:7::/64"}],
    "pba_typical": [
        {"rfc8885.type": "67", "rfc8885.length": "34", "rfc8885.reserved": "0x00", "rfc8885.prefix_length": "64",
         "rfc8885.previous_maar.address": "2001:db8:ff::1", "rfc8885.previous_maar.prefix": "2001:db8:1:1::/64"}],
}


def test_heartbeats_decode_to_hand_known_values(dissected):
    """The heartbeat samples' fields as written down by hand (not read from the messages)."""
    want = {"hb_request": ("0", "0", "2309737967", "305419896"), "hb_response": ("0", "1", "2309737967", "4275878552")}
    seen = set()
    for (name, framing, _msg), packet in dissected:
        if name in want:
            got = tuple(show(packet, f)[0] for f in ("mip6.hb.u_flag", "mip6.hb.r_flag", "mip6.hb.seqnr", "mip6.rc"))
            assert got == want[name], (name, framing)
            seen.add((name, framing))
    assert len(seen) == 6  # both messages in the three framings


def test_expected_values_match_the_sample_sources():
    for name, msg in ALL.items():
        assert [expected_fields(o) for o in msg.options if o.TYPE in RFC8885] == BY_HAND.get(name, []), name


def test_rfc8885_options_decode_to_the_sample_values(dissected):
    seen = set()
    for (name, framing, msg), packet in dissected:
        ours = [o for o in msg.options if o.TYPE in RFC8885]
        assert decoded_options(packet) == [expected_fields(o) for o in ours], (name, framing)
        for item in (p for p in packet.iter("proto") if p.get("name") == "rfc8885"):
            raw_len = int(fields(item, "rfc8885.length")[0].get("show"))
            assert int(item.get("size")) == 2 + raw_len, (name, framing)
        assert not [f for f in packet.iter("field") if (f.get("show") or "").startswith("Unknown (0x")], (name, framing)
        seen.update(o.TYPE for o in ours)
    assert seen == RFC8885


def test_builtin_dissector_sees_rfc8885_options_with_our_type_and_length(dissected_builtin):
    """Without the plugin, tshark 4.0 shows 65-70 as unknown: type and length from the raw bytes."""
    seen = set()
    for (name, framing, msg), packet in dissected_builtin:
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


BAD = {
    "bad_lengths": BindingAck(0, 7, 3600, (
        MobileNodeIdentifier.nai("mn1@dmm.example"),
        UnknownOption(65, bytes(16)),                       # Anchored Prefix: 16, not 18
        UnknownOption(67, bytes(33)),                       # Previous MAAR: 33, not 34
        UnknownOption(68, bytes(18)),                       # Serving MAAR: 18, not 16
        UnknownOption(70, b"\x00\x00"),                     # DLIF Link-Layer: no address
        UnknownOption(66, bytes((0, 129)) + bytes(16)),     # Local Prefix: prefix length 129
        LocalPrefix(Prefix.parse("2001:db8:1::/64")),       # a good one after the bad ones
    )),
}


def test_wrong_lengths_raise_expert_errors_and_later_options_still_decode(tmp_path):
    for (name, framing, _msg), packet in run_tshark(tmp_path, BAD, plugin=True):
        ctx = (name, framing)
        items = [p for p in packet.iter("proto") if p.get("name") == "rfc8885"]
        assert [show(i, "rfc8885.type")[0] for i in items] == ["65", "67", "68", "70", "66", "66"], ctx
        bad = [[f.get("showname") for f in fields(i, "rfc8885.bad_length")] for i in items]
        assert bad == [["Wrong option length 16 for Anchored Prefix (expected 18)"],
                       ["Wrong option length 33 for Previous MAAR (expected 34)"],
                       ["Wrong option length 18 for Serving MAAR (expected 16)"],
                       ["Wrong option length 2 for DLIF Link-Layer Address (expected at least 3)"], [], []], ctx
        assert [len(fields(i, "rfc8885.bad_prefix_length")) for i in items] == [0, 0, 0, 0, 1, 0], ctx
        severities = [e.get("showname") for e in fields(packet, "_ws.expert")]
        assert len(severities) == 5 and all("Error/Malformed" in s for s in severities), ctx
        # Nothing is decoded from a body of the wrong length; the good option after it is.
        for i in items[:4]:
            names = {f.get("name") for f in i.iter("field") if f.get("name", "").startswith("rfc8885.")}
            assert names == {"rfc8885.type", "rfc8885.length", "rfc8885.bad_length", "rfc8885.data"}, ctx
        assert show(packet, "rfc8885.local_prefix") == ["::/129", "2001:db8:1::/64"], ctx
        assert not fields(packet, "_ws.lua.error"), ctx
