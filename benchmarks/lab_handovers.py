"""Handover figures from the real lab, per mode: runs ``python -m ryu_dmm.lab`` on a 10-handover
path (docs/lab/long-path.json) for each mode and prints medians and maxima. Needs root and OVS.

Usage: python benchmarks/lab_handovers.py [--modes proxy,locator,relay] [--runs 1] [--reattach carrier|bounce]
                                          [--openflow tls|plain|tls,plain]
With ``--openflow tls,plain`` each mode runs with OpenFlow over TLS (the lab's default) and in plain
TCP (``--of-plain``), alternated run by run so that the machine's load hits both alike.
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
KEYS = ("signalling_ms", "flows_confirmed_ms", "old_flow_interruption_ms", "old_flow_lost_pings", "link_move_ms",
        "link_gap_ms", "detected_after_move_ms")


def p90(vals: list) -> float:
    """The 90th percentile, linear between the two nearest ranks."""
    vals = sorted(vals)
    k = (len(vals) - 1) * 0.9
    lo = int(k)
    hi = min(lo + 1, len(vals) - 1)
    return vals[lo] + (vals[hi] - vals[lo]) * (k - lo)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", default="proxy,locator,relay")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--topology", default=str(ROOT / "docs" / "lab" / "long-path.json"))
    ap.add_argument("--reattach", default="carrier", choices=("carrier", "bounce"))
    ap.add_argument("--openflow", default="tls", help="tls, plain, or tls,plain (alternated)")
    args = ap.parse_args()
    variants = args.openflow.split(",")
    if not variants or set(variants) - {"tls", "plain"}:
        sys.exit("--openflow: tls, plain or tls,plain")
    if os.geteuid() != 0:
        sys.exit("needs root (the lab builds namespaces and Open vSwitch instances)")
    print(f"{'mode':14} {'n':>3} " + " ".join(f"{k[:-3] if k.endswith('_ms') else k:>34}" for k in KEYS))
    for mode in args.modes.split(","):
        rows: dict = {v: [] for v in variants}
        for _ in range(args.runs):
            for variant in variants:
                with tempfile.TemporaryDirectory() as out:
                    p = subprocess.run([sys.executable, "-m", "ryu_dmm.lab", "--mode", mode, "--topology",
                                        args.topology, "--reattach", args.reattach, "--out", out,
                                        *(["--of-plain"] if variant == "plain" else [])],
                                       capture_output=True, text=True, timeout=600)
                    report = json.loads((Path(out) / "report.json").read_text())
                    if p.returncode != 0 or not report["ok"]:
                        sys.exit(f"{mode} ({variant}): the lab run failed:\n{p.stdout}\n{p.stderr}")
                    rows[variant] += report["handovers"]
        for variant, got in rows.items():
            cells = []
            for k in KEYS:
                vals = [h[k] for h in got if h[k] is not None]
                cells.append(f"{statistics.median(vals):>8.1f} (p90 {p90(vals):>6.1f}, max {max(vals):>6.1f})")
            detected = sorted({h["detected_by"] for h in got})
            label = f"{mode}/{variant}" if len(variants) > 1 else mode
            print(f"{label:14} {len(got):3d} " + " ".join(f"{c:>34}" for c in cells)
                  + f"  detected by {', '.join(detected)}")
    print("signalling: the MN detected at the new MAAR -> registration confirmed, P-MAARs switched and all flows "
          "confirmed by barrier; flows_confirmed: detected -> last barrier reply; old_flow_interruption: largest gap "
          "between replies of a 20 ms ping on the old address; link_move: the link move itself (the floor), until the "
          "MN can reach the new switch; link_gap: the MN on no switch (old port deleted -> link up at the new one), "
          "the floor; detected_after_move: link move started -> the new MAAR's agent acts on the "
          "MN's first frame (an RS, MLD report, DAD probe or data)")


if __name__ == "__main__":
    main()
