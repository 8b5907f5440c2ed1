"""What IPsec costs the signalling, printed in one run (needs root, strongSwan, nftables, OVS):

1. the CMD process's PBUs/s and latency with one MAAR talking to it plaintext and through
   strongSwan's userspace ESP (kernel-libipsec, the lab's set-up): two namespaces joined by a veth,
   the same client (benchmarks/cmd_udp.py's) on the MAAR's address and port 5436, a fresh CMD
   (memory store) for each variant;
2. handover signalling latency in the lab (``python -m ryu_dmm.lab``, default topology, MNs moving
   one at a time) with IPsec and with ``--no-ipsec``, alternated ``--runs`` times.

Usage: python benchmarks/cmd_ipsec.py [--seconds 5] [--runs 2] [--skip-lab]
On a shared machine run it under the namespace lock: flock /tmp/ryu-dmm-ovs.lock python benchmarks/...
Every process it starts is stopped by its pid, every namespace removed by name.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ryu_dmm.lab import ipsec
from ryu_dmm.lab.common import remove_namespace, wait_until

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
CMD, MAAR = "2001:db8:fe::100", "2001:db8:fe::1"
PORT = 5436


def sh(*args: str, **kw) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=60, **kw)


def client(seconds: float, window: int) -> None:
    """Inside the MAAR's namespace: measure and print one JSON line."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import cmd_udp
    print(json.dumps(cmd_udp.measure("cmd", PORT, seconds, window, host=CMD, sources=[(MAAR, PORT)])))


def pbu_rates(seconds: float, window: int) -> list[dict]:
    tag = f"bip{os.getpid() % 100000}"
    cns, mns = f"{tag}c", f"{tag}m"
    work = Path(tempfile.mkdtemp(prefix="ryu-dmm-bench-ipsec-"))
    procs: list = []
    rows = []
    try:
        for ns in (cns, mns):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", "vc", "netns", cns, "type", "veth", "peer", "name", "vm", "netns", mns)
        for ns, dev, addr in ((cns, "vc", CMD), (mns, "vm", MAAR)):
            sh("ip", "-n", ns, "addr", "add", f"{addr}/64", "dev", dev, "nodad")
            sh("ip", "-n", ns, "link", "set", dev, "up")
        (work / "d.ini").write_text(f"[DEFAULT]\nwsapi_host = 127.0.0.1\nwsapi_port = 18080\n[dmm]\n"
                                    f"cmd_address = {CMD}\nlisten = ::\nport = {PORT}\n[store]\nbackend = memory\n"
                                    f"[timers]\nlifetime = 3600\n[maar:maar1]\naddress = {MAAR}\n"
                                    "pool = 2001:db8:1::/48\n")
        for variant in ("plaintext", "ipsec"):
            if variant == "ipsec":
                hosts = ipsec.plan(("cmd", cns, CMD), [("maar1", mns, MAAR)], False, work / "ipsec")
                ipsec.configure(hosts, work / "ipsec", PORT)
                ipsec.start(hosts, procs)
            cmd = subprocess.Popen(["ip", "netns", "exec", cns, str(BIN / "ryu-manager"), "--config-file",
                                    str(work / "d.ini"), "--ofp-tcp-listen-port", "16653", "ryu_dmm.cmd"],
                                   stdout=open(work / f"cmd-{variant}.log", "w"), stderr=subprocess.STDOUT,
                                   cwd=work)
            try:
                wait_until(lambda: "ryu-dmm CMD started" in (work / f"cmd-{variant}.log").read_text(), 30,
                           "the CMD")
                time.sleep(0.5)
                out = subprocess.run(["ip", "netns", "exec", mns, sys.executable, __file__, "--client",
                                      "--seconds", str(seconds), "--window", str(window)],
                                     capture_output=True, text=True, timeout=seconds * 4 + 60)
                if out.returncode != 0 or not out.stdout.strip():
                    raise RuntimeError(f"the client failed: {out.stderr.strip()[-800:]}")
                row = json.loads(out.stdout.strip().splitlines()[-1])
            finally:
                cmd.terminate()
                cmd.wait(15)
            row["name"] = variant
            if variant == "ipsec":
                row["dropped"] = {h.name: ipsec.dropped(h) for h in hosts}
            rows.append(row)
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        for ns in (cns, mns):
            remove_namespace(ns)
    return rows


def lab_latency(runs: int) -> dict:
    got: dict = {"ipsec": [], "plaintext": []}
    for _ in range(runs):
        for variant in ("ipsec", "plaintext"):
            out = Path(tempfile.mkdtemp(prefix="ryu-dmm-bench-lab-"))
            args = [sys.executable, "-m", "ryu_dmm.lab", "--no-concurrent", "--out", str(out)]
            if variant == "plaintext":
                args.append("--no-ipsec")
            subprocess.run(args, capture_output=True, timeout=900, cwd=ROOT)
            try:
                report = json.loads((out / "report.json").read_text())
            except (OSError, ValueError):
                continue
            got[variant] += [h["signalling_ms"] for h in report["handovers"] if h.get("signalling_ms") is not None]
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--runs", type=int, default=2, help="lab runs per variant (alternated)")
    ap.add_argument("--skip-lab", action="store_true")
    ap.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        return client(args.seconds, args.window)
    rows = pbu_rates(args.seconds, args.window)
    print(f"CMD over a veth, one MAAR (port {PORT}), window {args.window}, {args.seconds:.0f} s per phase; "
          f"ESP: strongSwan {ipsec.ESP_NOTE}")
    print(f"{'variant':10} {'peak PBU/s':>10} | at half peak: {'rate/s':>8} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7}")
    for r in rows:
        print(f"{r['name']:10} {r['peak']:10,.0f} | {'':14}{r['rate']:8,.0f} {r['p50']:7.3f} {r['p90']:7.3f} "
              f"{r['p99']:7.3f}")
    print(f"ESP peak = {rows[1]['peak'] / rows[0]['peak'] * 100:.0f}% of plaintext's; "
          f"plaintext dropped by require_ipsec during the ESP run: {rows[1].get('dropped')}")
    if not args.skip_lab:
        lat = lab_latency(args.runs)
        print(f"lab handovers (default topology, one MN at a time, {args.runs} run(s) per variant): signalling_ms")
        for k, v in lat.items():
            if v:
                print(f"  {k:10} n={len(v):3d} median {statistics.median(v):6.2f} min {min(v):6.2f} max {max(v):6.2f}")
        if lat["ipsec"] and lat["plaintext"]:
            print(f"  IPsec adds {statistics.median(lat['ipsec']) - statistics.median(lat['plaintext']):+.2f} ms "
                  "to the median (target: at most 1 ms)")


if __name__ == "__main__":
    main()
