"""The short fuzz run (issue 8): 5,000 seeded random and mutated datagrams against a real CMD, with the
properties ``benchmarks/fuzz_cmd.py`` checks after its full 100,000-datagram run (``make fuzz``;
figures in docs/fuzzing.md): every datagram accounted for, every PBU answered once with its own
sequence number, 154 to every stranger, no internal error, a normal PBU accepted afterwards, RSS
bounded, REST consistent."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import fuzz_cmd  # noqa: E402

COUNT = 5000


def test_short_fuzz_run_keeps_every_property(tmp_path):
    figures = fuzz_cmd.run(COUNT, seed=1, rate=2500.0, work=tmp_path)
    print(fuzz_cmd.show(figures))
    assert fuzz_cmd.check(figures) == []
    # and the run reached what it is meant to reach: the option parser, every check of the CMD, handovers
    c = figures["cmd"]
    assert figures["sent"] == COUNT and figures["alive"]
    assert {"option-overrun", "bad-option-length", "bad-mh-length", "truncated"} <= set(c["decode_errors"])
    statuses = {k for k, v in figures["answered_by_status"].items() if v}
    assert {"maar.0", "maar.152", "maar.155", "maar.156", "maar.160", "stranger.154"} <= statuses
    assert figures["events"].get("handover", 0) > 0 and figures["cmd_pbus_to_maars"] > 0


def test_the_stream_is_the_same_for_a_seed():
    """Deterministic: the same seed gives the same datagrams (their timestamps still markers), another
    seed others."""
    def stream(seed):
        gen = fuzz_cmd.Generator(seed)
        return [gen.next(i % 7 - 1, i) for i in range(2000)]
    assert stream(1) == stream(1) and stream(1) != stream(2)
