"""Handover figures from the real lab, per mode: runs ``python -m ryu_dmm.lab`` on a 10-handover
path (docs/lab/long-path.json) for each mode and prints medians and maxima. Needs root and OVS.

Usage: python benchmarks/lab_handovers.py [--modes proxy,locator,relay] [--runs 1]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEYS = ("signalling_ms", "flows_confirmed_ms", "old_flow_interruption_ms", "old_flow_lost_pings", "rs_after_move_ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", default="proxy,locator,relay")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--topology", default=str(ROOT / "docs" / "lab" / "long-path.json"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (the lab builds namespaces and Open vSwitch instances)")
    print(f"{'mode':8} {'n':>3} " + " ".join(f"{k[:-3] if k.endswith('_ms') else k:>26}" for k in KEYS))
    for mode in args.modes.split(","):
        rows = []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as out:
                p = subprocess.run([sys.executable, "-m", "ryu_dmm.lab", "--mode", mode, "--topology",
                                    args.topology, "--out", out], capture_output=True, text=True, timeout=600)
                report = json.loads((Path(out) / "report.json").read_text())
                if p.returncode != 0 or not report["ok"]:
                    sys.exit(f"{mode}: the lab run failed:\n{p.stdout}\n{p.stderr}")
                rows += report["handovers"]
        cells = []
        for k in KEYS:
            vals = [h[k] for h in rows if h[k] is not None]
            cells.append(f"{statistics.median(vals):>12.1f} (max {max(vals):>7.1f})")
        print(f"{mode:8} {len(rows):3d} " + " ".join(f"{c:>26}" for c in cells))
    print("signalling: RS at the new MAAR -> registration confirmed, P-MAARs switched and all flows confirmed by "
          "barrier; flows_confirmed: RS -> last barrier reply; old_flow_interruption: largest gap between replies "
          "of a 20 ms ping on the old address; rs_after_move: link move started -> RS seen by the new MAAR")


if __name__ == "__main__":
    main()
