"""Issue 8 item 3: an MN's identity is the exact bytes of its MN Identifier option."""
from ryu_dmm.mobility import messages as M
from ryu_dmm.mobility.cmd import CmdCore
from ryu_dmm.mobility.events import Received, Send
from ryu_dmm.wire import BindingUpdate, MobileNodeIdentifier, Prefix, Status, decode, encode
from ryu_dmm.wire.options import show_mn_id
from tests.sim import START, domain

A1, A2 = "2001:db8:ff::1", "2001:db8:ff::2"
RAW = b"mn\xff@dmm"  # not UTF-8
ESCAPED = "mn\\xff@dmm"  # a different MN whose NAI is the backslash-escaped text of RAW (10 bytes)


def pbu_with_id(identifier: bytes, prefix: Prefix, seq: int = 1) -> BindingUpdate:
    msg = M.pbu(seq, START, "placeholder", prefix, 40, 1, 3)
    opts = tuple(MobileNodeIdentifier(identifier) if type(o) is MobileNodeIdentifier else o for o in msg.options)
    return decode(encode(BindingUpdate(msg.sequence, msg.lifetime, opts, msg.flags)))


def test_non_utf8_id_and_its_escaped_text_are_two_mns():
    assert ESCAPED.encode() != RAW and len(ESCAPED.encode()) == 10 and len(RAW) == 7
    cmd = CmdCore(domain(2))
    first = pbu_with_id(RAW, Prefix.parse("2001:db8:1::/64"))
    second = pbu_with_id(ESCAPED.encode(), Prefix.parse("2001:db8:2::/64"))
    assert first.mn_id != second.mn_id
    for src, msg in ((A1, first), (A2, second)):
        (send,) = [e for e in cmd.handle(Received(src, msg), START) if type(e) is Send]
        assert send.msg.status == Status.ACCEPTED
        assert send.msg.find(MobileNodeIdentifier).identifier == msg.find(MobileNodeIdentifier).identifier
    assert len(cmd) == 2  # two sessions: the second did not take over the first
    assert {s.serving for s in cmd.sessions()} == {A1, A2}


def test_identity_round_trips_to_the_exact_bytes():
    for raw in (RAW, b"\xed\xb3\xbf", b"\x80", "m\u00e9@x".encode(), b"a\\xff"):
        text = MobileNodeIdentifier(raw).text
        assert MobileNodeIdentifier.nai(text).identifier == raw
        # the PBU a core builds for that identity carries the same bytes on the wire
        sent = decode(encode(M.pbu(1, START, text, Prefix.parse("2001:db8:1::/64"), 40, 1, 3)))
        assert sent.find(MobileNodeIdentifier).identifier == raw and sent.mn_id == text


def test_show_mn_id_is_unambiguous_and_one_line():
    assert show_mn_id("mn1@example.net") == "mn1@example.net"
    assert show_mn_id("m\u00e9@x") == "m\u00e9@x"  # printable UTF-8 as is
    assert show_mn_id(MobileNodeIdentifier(RAW).text) == "mn\\xff@dmm"
    assert show_mn_id(ESCAPED) == "mn\\x5cxff@dmm"  # the backslash itself is escaped
    assert show_mn_id(RAW) == show_mn_id(MobileNodeIdentifier(RAW).text)  # bytes accepted too
    forged = "mn1\n2024-01-01 cmd: registered mn2"
    shown = show_mn_id(forged)
    assert "\n" not in shown and shown == "mn1\\x0a2024-01-01 cmd: registered mn2"
    assert show_mn_id("a\u2028b\x85") == "a\\xe2\\x80\\xa8b\\xc2\\x85"  # Unicode line breaks too
    ids = [RAW, ESCAPED.encode(), b"mn\\x5cxff@dmm", b"mn\n", b"mn\\x0a", b"\xc3", "\u00c3".encode()]
    shown_all = [show_mn_id(i) for i in ids]
    assert len(set(shown_all)) == len(ids)
