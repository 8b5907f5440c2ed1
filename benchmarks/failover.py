"""MAAR fail-over between two CMDs, timed (docs/failover.md): runs the scenario of
tests/test_failover_e2e.py (two ``ryu_dmm.cmd`` processes with their own stores, one agent given
both, the first CMD killed with SIGKILL) several times, with a registration in flight and with the
agent idle, and prints how long until the MNs' sessions are at the second CMD.

Usage (from the checkout): python benchmarks/failover.py [--runs 5]
"""
import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the scenario and its process helpers live with the tests

from tests.test_failover_e2e import FAILOVER_TIMEOUT, HEARTBEAT, fail_over  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    got: dict = {"in flight: mn2 at B after its attach": [], "in flight: mn1 at B after the kill": [],
                 "idle: mn1 at B after the kill": []}
    for _ in range(args.runs):
        for in_flight in (True, False):  # alternated: the machine's load hits both alike
            with tempfile.TemporaryDirectory() as tmp:
                r = fail_over(Path(tmp), in_flight)
            if in_flight:
                got["in flight: mn2 at B after its attach"].append(r["mn2"])
                got["in flight: mn1 at B after the kill"].append(r["mn1"])
            else:
                got["idle: mn1 at B after the kill"].append(r["mn1"])
    print(f"failover_timeout {FAILOVER_TIMEOUT} s, heartbeat_interval {HEARTBEAT} s, {args.runs} runs each")
    for what, vals in got.items():
        print(f"{what:40} median {statistics.median(vals):.3f} s  min {min(vals):.3f}  max {max(vals):.3f}")


if __name__ == "__main__":
    main()
