"""Property: decode(encode(m)) == m for any message, in both framings; options end aligned."""
from hypothesis import given, settings

from ryu_dmm.wire import decode, encode, encode_mh
from ryu_dmm.wire.options import DECODERS
from tests.strategies import addresses, messages


@settings(max_examples=500, deadline=None)
@given(messages)
def test_udp_framing_round_trip(msg):
    raw = encode(msg)
    assert len(raw) % 8 == 0
    assert decode(raw) == msg


@settings(max_examples=300, deadline=None)
@given(messages, addresses, addresses)
def test_ipv6_framing_round_trip_with_checksum(msg, src, dst):
    assert decode(encode_mh(msg, src, dst), src, dst) == msg


@settings(max_examples=300, deadline=None)
@given(messages)
def test_every_option_meets_its_alignment(msg):
    raw = encode(msg)
    pos, kinds = 12, {}
    while pos < len(raw):
        otype = raw[pos]
        if otype == 0:
            pos += 1
            continue
        if otype in DECODERS:
            cls = DECODERS[otype][0].__self__
            x, y = cls.ALIGN
            assert pos % x == y % x, (cls.__name__, pos)
            kinds[otype] = kinds.get(otype, 0) + 1
        pos += 2 + raw[pos + 1]
    assert pos == len(raw)
