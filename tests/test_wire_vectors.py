"""Exact bytes worked out by hand from the RFC 5213 / RFC 8885 layouts (FACTS.md)."""
import pytest

from ryu_dmm.wire import (
    AccessTechnologyTypeOption, AnchoredPrefix, BindingAck, BindingUpdate, DlifLinkLayerAddress,
    DlifLinkLocalAddress, HandoffIndicatorOption, HomeNetworkPrefix, LinkLocalAddress, LocalPrefix,
    MNLinkLayerIdentifier, MobileNodeIdentifier, Prefix, PreviousMaar, ServingMaar, Timestamp, decode,
    encode,
)

P = Prefix.parse("2001:db8:1::/64")
PB = "20010db8000100000000000000000000"
A9 = "20010db8000000000000000000000009"
BU_HEAD = "0001" "8210" "000a"  # seq 1, flags A|P|D, lifetime 10 units = 40 s
BA_HEAD = "00" "22" "0001" "000a"  # status 0, flags P|D, seq 1, lifetime 40 s


def mh(mh_type: int, body: str) -> bytes:
    size = 6 + len(body) // 2
    return bytes.fromhex(f"3b{size // 8 - 1:02x}{mh_type:02x}000000" + body)


VECTORS = [
    # HNP at offset 12 = 8n+4: no padding; 12 + 20 = 32.
    ("hnp", (HomeNetworkPrefix(P),), "1612" "0040" + PB),
    ("anchored", (AnchoredPrefix(P),), "4112" "0040" + PB),
    ("local", (LocalPrefix(P),), "4212" "0040" + PB),
    # MN-ID "mn": no alignment; ends at 17, PadN of 7 to 24.
    ("mnid", (MobileNodeIdentifier.nai("mn"),), "0803016d6e" "0105" "0000000000"),
    # HI and ATT: no alignment; end at 20, PadN of 4.
    ("hi-att", (HandoffIndicatorOption(3), AccessTechnologyTypeOption(4)), "17020003" "18020004" "01020000"),
    # Timestamp 8n+2: PadN of 6 to reach 18, ends at 28, PadN of 4.
    ("timestamp", (Timestamp(0x0000_6553F100_8000),), "010400000000" "1b08" "00006553f1008000" "01020000"),
    # Link-local Address 8n+6: PadN of 2 to reach 14, ends at 32.
    ("lla", (LinkLocalAddress("fe80::1"),), "0100" "1a10" "fe800000000000000000000000000001"),
    ("serving", (ServingMaar("2001:db8::9"),), "0100" "4410" + A9),
    ("dlif-lla", (DlifLinkLocalAddress("fe80::1"),), "0100" "4510" "fe800000000000000000000000000001"),
    # MN-LL-ID 8n+2: PadN of 6, 10 bytes to 28, PadN of 4.
    ("mnllid", (MNLinkLayerIdentifier(bytes.fromhex("0200000000aa")),),
     "010400000000" "1908" "0000" "0200000000aa" "01020000"),
    # DLIF link-layer address: no alignment; ends at 22, PadN of 2.
    ("dlif-ll", (DlifLinkLayerAddress(bytes.fromhex("0200000000aa")),), "4608" "0000" "0200000000aa" "0100"),
    # Previous MAAR 8n+4: at 12 directly; reserved, plen, P-MAAR address, prefix: 12 + 36 = 48.
    ("pmaar", (PreviousMaar("2001:db8::9", P),), "4322" "0040" + A9 + PB),
    # MN-ID of 4 chars ends at 19: HNP needs 8n+4, so exactly one Pad1.
    ("pad1", (MobileNodeIdentifier.nai("abcd"), HomeNetworkPrefix(P)), "080501" "61626364" "00" "1612" "0040" + PB),
]


@pytest.mark.parametrize("name,options,body", VECTORS, ids=[v[0] for v in VECTORS])
def test_bu_bytes(name, options, body):
    msg = BindingUpdate(1, 40, options)
    want = mh(5, BU_HEAD + body)
    assert encode(msg) == want
    assert decode(want) == msg


@pytest.mark.parametrize("name,options,body", VECTORS, ids=[v[0] for v in VECTORS])
def test_ba_bytes(name, options, body):
    msg = BindingAck(0, 1, 40, options)
    want = mh(6, BA_HEAD + body)
    assert encode(msg) == want
    assert decode(want) == msg


def test_header_fields():
    raw = encode(BindingUpdate(0xBEEF, 262140, (HomeNetworkPrefix(P),), 0xFE10))
    assert raw[:6] == bytes.fromhex("3b0305000000")
    assert raw[6:12] == bytes.fromhex("beef" "fe10" "ffff")
    ba = encode(BindingAck(159, 0x1234, 0, (), 0xE2))
    assert ba == bytes.fromhex("3b0106000000" "9fe2" "1234" "0000" "01020000")


def test_flags_and_lifetime_api():
    bu = decode(mh(5, "0001" "fe10" "000a" "01020000"))
    assert (bu.a, bu.h, bu.l, bu.k, bu.m, bu.r, bu.p, bu.d) == (True,) * 8
    assert bu.lifetime == 40 and bu.is_proxy
    ba = decode(mh(6, "80" "e2" "0001" "0000" "01020000"))
    assert (ba.k, ba.r, ba.p, ba.d) == (True,) * 4
    assert ba.status == 128 and not ba.accepted


def test_lifetime_must_be_multiple_of_four():
    with pytest.raises(ValueError):
        encode(BindingUpdate(1, 41))
    with pytest.raises(ValueError):
        encode(BindingUpdate(1, 262144))


def test_encoding_does_not_mutate():
    opts = [HomeNetworkPrefix(P)]
    msg = BindingUpdate(1, 40, tuple(opts))
    assert encode(msg) == encode(msg)
    with pytest.raises(AttributeError):
        msg.sequence = 2  # frozen
