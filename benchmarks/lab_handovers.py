"""Handover figures from the real lab, per mode and flow control: runs ``python -m ryu_dmm.lab`` on
a 10-handover path (docs/lab/long-path.json) for each and prints medians and maxima. Needs root and OVS.

Besides the handover's timings: when the new MAAR's data plane (``s_maar_ready``) and the last
previous MAAR's (``p_maars_ready``) were ready, ms after detection (with ``--flow-control maar``
each MAAR's own barrier reply; with ``cmd`` the CMD confirms every switch together, so both are its
one confirmation), and the signalling messages per handover on the wire (PBUs and PBAs that
tshark found for that handover: the S-MAAR's PBU and PBA, each P-MAAR's PBU and PBA, and in
locator mode each direct PBA).

Usage: python benchmarks/lab_handovers.py [--modes proxy,locator,relay] [--flow-control cmd,maar] [--runs 1]
       [--reattach carrier|bounce] [--store sqlite|memory] [--openflow tls|plain|tls,plain]
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
KEYS = ("signalling_ms", "s_maar_ready_ms", "p_maars_ready_ms", "messages", "old_flow_interruption_ms",
        "old_flow_lost_pings", "link_move_ms", "detected_after_move_ms")


def messages(w: dict) -> int:
    """PBUs and PBAs of one handover in tshark's verdict (wire_verdict.per_handover; distributed mode:
    distributed_verdict counts them)."""
    if "messages" in w:
        return w["messages"]
    n = ("pbu" in w) + ("pba" in w)
    return n + sum(("pbu" in r) + ("pba" in r) + ("direct_pba" in r) for r in w.get("pmaars", []))


def derived(report: dict) -> list:
    """The report's handovers with the figures this benchmark adds."""
    out = []
    for h, w in zip(report["handovers"], report["wire_verdict"]["per_handover"]):
        ready = dict(h["dataplane_ready_ms"])
        s_ready = ready.pop(h["to"])
        out.append({**h, "s_maar_ready_ms": s_ready, "p_maars_ready_ms": max(ready.values(), default=None),
                    "messages": messages(w)})
    return out


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
    ap.add_argument("--flow-control", default="cmd,maar", help="who programs the switches, as a list (cmd, maar)")
    ap.add_argument("--store", default="sqlite", choices=("sqlite", "memory"),
                    help="the CMD's binding store (memory: no PBA waits for a commit)")
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
    print(f"{'mode':14} {'flows':5} {'n':>3} " + " ".join(f"{k[:-3] if k.endswith('_ms') else k:>34}" for k in KEYS))
    for fc in args.flow_control.split(","):
        for mode in args.modes.split(","):
            rows: dict = {v: [] for v in variants}
            for _ in range(args.runs):
                for variant in variants:
                    with tempfile.TemporaryDirectory() as out:
                        p = subprocess.run([sys.executable, "-m", "ryu_dmm.lab", "--mode", mode, "--flow-control", fc,
                                            "--store", args.store, "--topology", args.topology, "--reattach",
                                            args.reattach, "--out", out, *(["--of-plain"] if variant == "plain" else [])],
                                           capture_output=True, text=True, timeout=600)
                        try:
                            report = json.loads((Path(out) / "report.json").read_text())
                        except OSError:
                            report = {"ok": False}
                        if p.returncode != 0 or not report["ok"]:
                            sys.exit(f"{mode} ({variant}), flows by {fc}: the lab run failed:\n{p.stdout}\n{p.stderr}")
                        rows[variant] += derived(report)
            for variant, got in rows.items():
                cells = []
                for k in KEYS:
                    vals = [h[k] for h in got if h[k] is not None]
                    cells.append(f"{statistics.median(vals):>8.1f} (p90 {p90(vals):>6.1f}, max {max(vals):>6.1f})"
                                 if vals else f"{'-':>34}")
                detected = sorted({h["detected_by"] for h in got})
                label = f"{mode}/{variant}" if len(variants) > 1 else mode
                print(f"{label:14} {fc:5} {len(got):3d} " + " ".join(f"{c:>34}" for c in cells)
                      + f"  detected by {', '.join(detected)}", flush=True)
    print("medians (p90, maxima); signalling: the MN detected at the new MAAR -> registration confirmed, P-MAARs "
          "switched and all flows confirmed by barrier; s_maar_ready / p_maars_ready: detected -> the new MAAR's / the "
          "last previous MAAR's flows confirmed (flows by cmd: one confirmation for all); messages: PBUs and PBAs per "
          "handover on the wire; old_flow_interruption: largest gap "
          "between replies of a 20 ms ping on the old address; link_move: the link move itself (the floor), until the "
          "MN can reach the new switch; detected_after_move: link move started -> the new MAAR's agent acts on the "
          "MN's first frame (an RS, MLD report, DAD probe or data)")


if __name__ == "__main__":
    main()
