"""RFC 5847 Heartbeat (MH type 13) and Restart Counter option (28): bytes worked out by hand from
the layouts in FACTS.md ("Liveness and restart"), and every malformed case named."""
import random

import pytest

from ryu_dmm.wire import DecodeError, Heartbeat, RestartCounter, UnknownOption, decode, encode, encode_mh
from ryu_dmm.wire.checksum import internet_checksum

SRC, DST = "2001:db8:ff::1", "2001:db8:ff::100"


def test_request_with_restart_counter_bytes():
    # MH header: payload 59, length (24 / 8) - 1 = 2, type 13, reserved, checksum 0;
    # reserved field with U=0 R=0, sequence 1; at offset 12 the Restart Counter needs 4n+2: PadN
    # of length 0 (2 bytes) to 14, type 28 length 4, counter 5, ends at 20; PadN of 4 to 24.
    want = bytes.fromhex("3b020d000000" "0000" "00000001" "0100" "1c04" "00000005" "01020000")
    msg = Heartbeat(1, options=(RestartCounter(5),))
    assert encode(msg) == want
    assert decode(want) == msg
    assert msg.restart_counter == 5 and not msg.response and not msg.unsolicited


def test_response_flags_and_32_bit_sequence():
    # R = 0x0001, U = 0x0002 in the low bits of the reserved field; no options: 12 bytes, PadN of 4.
    want = bytes.fromhex("3b010d000000" "0001" "fffffffe" "01020000")
    assert encode(Heartbeat(0xFFFFFFFE, response=True)) == want
    assert decode(want) == Heartbeat(0xFFFFFFFE, False, True)
    both = decode(bytes.fromhex("3b010d000000" "0003" "00000000" "01020000"))
    assert (both.unsolicited, both.response, both.restart_counter) == (True, True, None)


def test_reserved_bits_are_ignored_on_receipt():
    msg = decode(bytes.fromhex("3b010d000000" "fffc" "0000002a" "01020000"))
    assert msg == Heartbeat(42)


def test_restart_counter_largest_value_and_range():
    raw = encode(Heartbeat(7, options=(RestartCounter(0xFFFFFFFF),)))
    assert raw[14:20] == bytes.fromhex("1c04ffffffff")
    with pytest.raises(ValueError):
        encode(Heartbeat(7, options=(RestartCounter(1 << 32),)))
    with pytest.raises(ValueError):
        encode(Heartbeat(1 << 32))
    with pytest.raises(ValueError):
        encode(Heartbeat(-1))


def test_checksum_over_pseudo_header():
    msg = Heartbeat(9, response=True, options=(RestartCounter(3),))
    mh = encode_mh(msg, SRC, DST)
    pseudo = bytes.fromhex("20010db800ff00000000000000000001" "20010db800ff00000000000000000100") + \
        len(mh).to_bytes(4, "big") + b"\x00\x00\x00\x87"
    assert internet_checksum(pseudo + mh) == 0
    assert decode(mh, SRC, DST) == msg
    with pytest.raises(DecodeError) as err:
        decode(mh, SRC, "2001:db8:ff::101")
    assert err.value.reason == "bad-checksum"


def test_options_after_the_counter_and_unknown_ones_are_kept():
    msg = Heartbeat(3, options=(RestartCounter(1), UnknownOption(200, b"xy")))
    assert decode(encode(msg)) == msg
    assert msg.restart_counter == 1


@pytest.mark.parametrize("raw,reason", [
    ("3b000d000000" "0000", "truncated"),  # 8 bytes: no room for the sequence number
    ("3b020d000000" "0000" "00000001" "1c03000000" "00000000000000", "bad-option-length"),  # counter of 3 bytes
    ("3b010d000000" "0000" "00000001" "1c050000", "option-overrun"),
    ("3b020d000000" "0000" "00000001" "0100" "1c04" "00000005" "010200", "bad-mh-length"),
    ("3a010d000000" "0000" "00000001" "01020000", "bad-payload-proto"),
])
def test_each_defect_is_named(raw, reason):
    with pytest.raises(DecodeError) as err:
        decode(bytes.fromhex(raw))
    assert err.value.reason == reason


def test_seeded_bit_flips_give_a_heartbeat_or_a_decode_error():
    rng = random.Random(5847)
    raw = encode(Heartbeat(0x01020304, True, False, (RestartCounter(77),)))
    for _ in range(3000):
        buf = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        try:
            decode(bytes(buf))
        except DecodeError:
            pass
