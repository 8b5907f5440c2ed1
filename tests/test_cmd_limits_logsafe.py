"""ryu_dmm.logsafe in-process: escaping, per-key rate limits with summaries, bounded state, the guard."""
import logging
from pathlib import Path

import pytest

from ryu_dmm import logsafe
from ryu_dmm.logsafe import Guard, SafeLog, escape


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def logger():
    log = logging.getLogger(f"test.logsafe.{id(object())}")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    handler = Records()
    log.addHandler(handler)
    log.records = handler.lines
    return log


@pytest.mark.parametrize("value,expected", [
    ("mn1@example.net", "mn1@example.net"),
    ("evil\nFORGED: line", "evil\\nFORGED: line"),
    ("a\rb\tc\x00d\x1b[31m\x7f", "a\\rb\\tc\\x00d\\x1b[31m\\x7f"),
    ("back\\slash", "back\\\\slash"),  # a literal backslash cannot pass for an escape
    ("caf\u00e9 \u202e", "caf\\xe9 \\u202e"),  # non-ASCII and a bidi override: escaped
    ("caf\udce9", "caf\\udce9"),  # an undecodable byte kept by surrogateescape
    ("\U0001f600", "\\U0001f600"),
    (b"\x00\xff", "00ff"),
    (42, "42"),
])
def test_escape_is_one_printable_ascii_line(value, expected):
    out = escape(value)
    assert out == expected
    assert out.isascii() and out.isprintable()


def test_escape_cuts_long_values_and_says_so():
    assert escape("x" * 201, 200) == "x" * 200 + "...(+1 chars)"
    assert escape("x" * 200, 200) == "x" * 200  # at the bound: kept whole


def test_rate_limit_per_key_then_one_summary(logger):
    clock = Clock()
    log = SafeLog(logger, lines=5, interval=10.0, clock=clock)
    written = [log.warning("::1", "decode_error.truncated", "bad from %s: %s", "::1", i) for i in range(5000)]
    assert written.count(True) == 5 and written[:5] == [True] * 5  # exactly the first N
    assert len(logger.records) == 5
    log.warning("::2", "decode_error.truncated", "bad from %s", "::2")  # another source: its own budget
    log.warning("::1", "send_error.111", "cannot send")  # another reason: its own budget
    assert len(logger.records) == 7
    clock.t += 9.99
    log.flush()
    assert len(logger.records) == 7  # window not over yet
    clock.t += 0.01
    log.flush()
    assert logger.records[7:] == [
        "suppressed 4995 similar message(s) (decode_error.truncated from ::1) in the last 10 s"]
    assert len(log) == 0  # every key forgotten once its window ended
    assert log.suppressed_total == 4995


def test_summary_also_when_the_next_message_opens_a_new_window(logger):
    clock = Clock()
    log = SafeLog(logger, lines=1, interval=10.0, clock=clock)
    log.warning("a", "r", "one")
    log.warning("a", "r", "two")
    clock.t += 10
    assert log.warning("a", "r", "three")
    assert logger.records == ["one", "suppressed 1 similar message(s) (r from a) in the last 10 s", "three"]


def test_key_table_is_bounded_and_extra_keys_share_one_budget(logger):
    clock = Clock()
    log = SafeLog(logger, lines=2, interval=10.0, max_keys=3, clock=clock)
    for i in range(1000):  # a spoofed-source flood: a new source each time
        log.warning(f"2001:db8::{i:x}", "decode_error.truncated", "bad from %s", f"2001:db8::{i:x}")
    assert len(log) == 4  # 3 tracked keys + the overflow bucket
    assert len(logger.records) == 3 + 2  # one line for each tracked key, then the overflow's budget
    assert logger.records[-1].startswith("[more sources than tracked] bad from 2001:db8::")
    clock.t += 10
    log.flush()
    assert logger.records[-1] == "suppressed 995 similar message(s) (* from *) in the last 10 s"


def test_untrusted_arguments_are_escaped_and_keys_too(logger):
    log = SafeLog(logger, clock=Clock())
    log.warning("evil\nsource", "rejected.129", "%s %s (status %s)", "rejected", "mn\nFORGED 2024 line", 129)
    assert logger.records == ["rejected mn\\nFORGED 2024 line (status 129)"]
    assert all("\n" not in line for line in logger.records)


def test_traceback_once_per_where_and_kind_escaped(logger):
    counts = []
    guard = Guard(counts.append, SafeLog(logger, clock=Clock()))

    def boom(text):
        raise ValueError(text)
    for _ in range(3):
        assert guard.call("datagram", boom, "payload\nFORGED line") is False
    assert counts == ["internal_error.datagram"] * 3
    first, *rest = logger.records
    head, *trace = first.split("\n")
    assert head == "internal error in datagram (contained): ValueError: payload\\nFORGED line"
    assert trace and all(line.startswith("  | ") for line in trace)
    assert trace[-2:] == ["  | ValueError: payload", "  | FORGED line"]  # every line marked as continuation
    assert rest == ["internal error in datagram (contained): ValueError: payload\\nFORGED line"] * 2  # no traceback


def test_guard_contains_and_never_raises_itself(logger):
    def broken_count(_key):
        raise RuntimeError("counter broken")
    guard = Guard(broken_count, SafeLog(logger, clock=Clock()))
    wrapped = guard.wrap("timer", lambda key: 1 / 0)
    assert wrapped("k") is None  # contained although the guard's own counter fails
    assert guard.wrap("timer", lambda key: key * 2)(21) == 42


def test_defaults_are_the_documented_ones():
    text = (Path(__file__).parent.parent / "docs" / "limits-rest.md").read_text()
    assert (logsafe.LINES, logsafe.INTERVAL, logsafe.MAX_KEYS, logsafe.MAX_CHARS) == (5, 10.0, 256, 200)
    for fragment in ("5 lines", "10 s", "256", "200 characters"):
        assert fragment in text


def test_a_tuple_reason_is_joined_and_only_formatted_when_enabled(logger):
    clock = Clock()
    log = SafeLog(logger, lines=1, clock=clock)
    assert log.warning("::1", ("rejected", 129), "first") and not log.warning("::1", ("rejected", 129), "second")
    logger.setLevel(logging.ERROR)
    assert not log.warning("::1", ("rejected", 130), "off")
    logger.setLevel(logging.DEBUG)
    clock.t += 10
    log.flush()
    assert logger.records == ["first", "suppressed 1 similar message(s) (rejected.129 from ::1) in the last 10 s"]
