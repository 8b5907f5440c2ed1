"""Strict decoding: each defect gives one typed DecodeError; nothing else ever escapes."""
import random

import pytest
from hypothesis import given, settings, strategies as st

from ryu_dmm.wire import (
    BindingUpdate, DecodeError, HandoffIndicatorOption, HomeNetworkPrefix, MobileNodeIdentifier, Prefix,
    Status, UnknownOption, decode, encode, encode_mh, missing_mandatory,
)
from ryu_dmm.lab.samples import ALL, PBU

GOOD = encode(PBU)


def with_header(body: bytes, mh_type: int = 5) -> bytes:
    """A Mobility Header around ``body``, Pad1-padded to a multiple of 8 bytes."""
    body += bytes(-(6 + len(body)) % 8)
    size = 6 + len(body)
    return bytes((59, size // 8 - 1, mh_type, 0, 0, 0)) + body


@pytest.mark.parametrize("data,reason", [
    (b"", "truncated"),
    (GOOD[:5], "truncated"),
    (GOOD[:-8], "bad-mh-length"),
    (GOOD + bytes(8), "bad-mh-length"),
    (bytes((58,)) + GOOD[1:], "bad-payload-proto"),
    (GOOD[:2] + b"\x07" + GOOD[3:], "unsupported-mh-type"),
    (with_header(bytes(2)), "truncated"),  # 8 bytes: BU data cut short
    (with_header(bytes(6) + b"\x16\x30" + bytes(8)), "option-overrun"),
    (with_header(bytes(6) + b"\x43\x20" + bytes(32) + bytes(2)), "bad-option-length"),  # P-MAAR 32 != 34
    (with_header(bytes(6) + b"\x16\x12\x00\x81" + bytes(16) + bytes(4)), "bad-prefix-length"),
    (with_header(bytes(6) + b"\x43\x22\x00\xff" + bytes(32) + bytes(4)), "bad-prefix-length"),
    (with_header(bytes(6) + b"\x44\x0f" + bytes(15) + bytes(3)), "bad-option-length"),
    (with_header(bytes(6) + b"\x17\x01\x00" + bytes(7)), "bad-option-length"),
    (with_header(bytes(6) + b"\x1b\x07" + bytes(7) + bytes(1)), "bad-option-length"),
    (with_header(bytes(6) + b"\x08\x01\x01" + bytes(7)), "bad-option-length"),
    (with_header(bytes(6) + b"\x00" * 11 + b"\x16"), "truncated"),  # type byte without length
])
def test_each_defect_is_named(data, reason):
    with pytest.raises(DecodeError) as err:
        decode(data)
    assert err.value.reason == reason
    assert isinstance(err.value, ValueError)


def test_checksum_verified_over_pseudo_header():
    mh = encode_mh(PBU, "2001:db8::1", "2001:db8::2")
    assert decode(mh, "2001:db8::1", "2001:db8::2") == PBU
    with pytest.raises(DecodeError) as err:
        decode(mh, "2001:db8::1", "2001:db8::3")
    assert err.value.reason == "bad-checksum"
    flipped = mh[:20] + bytes((mh[20] ^ 1,)) + mh[21:]
    with pytest.raises(DecodeError):
        decode(flipped, "2001:db8::1", "2001:db8::2")


def test_udp_framing_has_zero_checksum():
    assert encode(PBU)[4:6] == b"\x00\x00"


def test_unknown_options_are_kept_and_padding_anywhere():
    body = bytes(6) + b"\x00" + b"\x01\x01\x00" + b"\x63\x03abc" + b"\x00" + b"\x01\x00" + b"\x17\x02\x00\x05"
    msg = decode(with_header(body))
    assert msg.unknown_options == (UnknownOption(0x63, b"abc"),)
    assert msg.handoff == 5


def test_not_bytes():
    with pytest.raises(DecodeError):
        decode("not bytes")  # type: ignore[arg-type]


def test_missing_mandatory_options_map_to_status_codes():
    mnid, hnp = MobileNodeIdentifier.nai("a"), HomeNetworkPrefix(Prefix.parse("2001:db8::/64"))
    hi = HandoffIndicatorOption(1)
    from ryu_dmm.wire import AccessTechnologyTypeOption
    att = AccessTechnologyTypeOption(3)
    assert missing_mandatory(BindingUpdate(1, 4, (hnp, hi, att))) == Status.MISSING_MN_IDENTIFIER_OPTION == 160
    assert missing_mandatory(BindingUpdate(1, 4, (mnid, hi, att))) == Status.MISSING_HOME_NETWORK_PREFIX_OPTION == 158
    assert missing_mandatory(BindingUpdate(1, 4, (mnid, hnp, att))) == Status.MISSING_HANDOFF_INDICATOR_OPTION == 161
    assert missing_mandatory(BindingUpdate(1, 4, (mnid, hnp, hi))) == Status.MISSING_ACCESS_TECH_TYPE_OPTION == 162
    assert missing_mandatory(BindingUpdate(1, 4, (mnid, hnp, hi, att))) is None


def _decode_or_typed_error(data: bytes) -> None:
    try:
        decode(data)
    except DecodeError:
        pass


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data):
    _decode_or_typed_error(data)


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(sorted(ALL)), st.data())
def test_fuzz_mutated_messages(name, data):
    raw = bytearray(encode(ALL[name]))
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    _decode_or_typed_error(bytes(raw))
    cut = data.draw(st.integers(0, len(raw)))
    _decode_or_typed_error(bytes(raw[:cut]))


def test_fuzz_seeded_bit_flips_all_samples():
    rng = random.Random(5436)
    for msg in ALL.values():
        raw = encode(msg)
        for _ in range(2000):
            buf = bytearray(raw)
            for _ in range(rng.randint(1, 4)):
                buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
            _decode_or_typed_error(bytes(buf))
