"""``make lab`` / ``python -m ryu_dmm.lab``: build the lab, run the handover scenario, report.

Each MN attaches to its first MAAR and gets a prefix by SLAAC from our Router Advertisement, opens a
long-lived flow to the CN (a ping and a paced TCP stream from that first address), then moves along
its path (a real link move); at each MAAR it opens a new flow. The report shows per handover the
signalling time, the old flow's interruption and losses, the flows installed, and whether old flows
went through real tunnels while new ones stayed local; it is written as JSON with a plot.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..agent.main import request
from ..mobility.config import Mode
from . import topology as topo_mod
from .common import LabError, wait_until
from .net import CN_ADDR, Lab, preflight, run

PING_INTERVAL = 0.02
TUNNEL_FILTER = {"gre": "ip6 proto 47", "vxlan": "ip6 and udp port 4789"}
TCP_RATE = 200_000  # bytes/s of the old TCP flow


def _events(lab: Lab, maar: str, since: int):
    got = request(lab.control(maar), {"op": "events", "since": since})
    return got["events"], got["next"]


def run_scenario(lab: Lab, out: Path) -> dict:
    topo = lab.topo
    marks = {m: 0 for m in topo.maars}
    for m in topo.maars:
        marks[m] = _events(lab, m, 0)[1]
    capture = subprocess.Popen(["ip", "netns", "exec", lab.core_ns, "tcpdump", "-n", "-U", "-i", "br0", "-w",
                                str(lab.work / "underlay.pcap"), TUNNEL_FILTER[lab.tunnel]],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lab.procs.append(capture)
    old_addr, flows = {}, []
    for mn, path in topo.mns:
        j, ns = lab.mns[mn]
        lab.attach_first(mn)
        pool = lab.maars[path[0]].info.pool.network
        old_addr[mn] = wait_until(lambda: next((a for a, s in lab.addresses(mn).items()
                                              if ipaddress.IPv6Address(a) in pool and s == "preferred"), None),
                                 15, f"{mn}'s address by SLAAC")
        port = 5000 + j
        flows.append(lab.start(lab.cn_ns, [sys.executable, "-m", "ryu_dmm.lab.traffic", "sink", CN_ADDR, str(port),
                                           str(lab.work / f"tcp-{mn}.json")], f"sink-{mn}.log"))
        time.sleep(0.2)
        flows.append(lab.start(ns, [sys.executable, "-m", "ryu_dmm.lab.traffic", "source", old_addr[mn], CN_ADDR,
                                    str(port), str(TCP_RATE)], f"source-{mn}.log"))
        flows.append(lab.start(ns, ["ping", "-6", "-D", "-n", "-i", str(PING_INTERVAL), "-I", old_addr[mn], CN_ADDR],
                               f"ping-old-{mn}.log"))
    time.sleep(topo.dwell)
    handovers = []
    steps = max(len(p) for _, p in topo.mns)
    for s in range(1, steps):
        for mn, path in topo.mns:
            if s >= len(path):
                continue
            handovers.append(handover(lab, mn, path[:s], path[s], marks, old_addr[mn]))
        time.sleep(topo.dwell)
    for p in flows:
        p.send_signal(signal.SIGTERM)
    for p in flows:
        p.wait(10)
    time.sleep(0.3)
    capture.send_signal(signal.SIGTERM)
    capture.wait(10)
    tunnelled = gre_inner(lab.work / "underlay.pcap")
    ends = {}  # each handover's window lasts until that MN's next move (or the end)
    for h in reversed(handovers):
        h["t_end"] = ends.get(h["mn"], time.time())
        ends[h["mn"]] = h["t_move"]
    for h in handovers:
        old = ipaddress.IPv6Network(h["old_prefix"])
        new = ipaddress.IPv6Network(h["new_prefix"])
        window = [(src, dst) for t, src, dst in tunnelled if h["t_move"] + 0.5 <= t <= h["t_end"]]
        pings = ping_replies(lab.work / f"ping-old-{h['mn']}.log")
        after = [t for t, _ in pings if t > h["t_move"]]
        h.update(old_flow_gap(pings, h["t_move"], topo.dwell))
        h["old_flow_survived"] = bool(after)
        h["old_flow_local"] = old == new  # back at the MAAR anchoring the old prefix: no tunnel
        h["old_flow_tunnelled_packets"] = sum(1 for src, dst in window if src in old or dst in old)
        h["new_flow_tunnelled_packets"] = sum(1 for src, dst in window if src in new or dst in new)
    report = {"mode": lab.mode.value, "tunnel": lab.tunnel, "maars": list(topo.maars),
              "namespaces": list(lab.namespaces), "mns": {mn: list(p) for mn, p in topo.mns},
              "old_addresses": old_addr, "handovers": handovers, "tunnel_packets_seen": len(tunnelled),
              "cmd_stats": lab.rest("/dmm/v1/stats")}
    report["tcp"] = {mn: tcp_series(lab.work / f"tcp-{mn}.json") for mn, _ in topo.mns}
    for h in handovers:  # the old TCP stream still delivers after this handover
        h["old_tcp_kbytes_after"] = round(sum(v * 0.1 for t, v in report["tcp"][h["mn"]] if t > h["t_move"] + 0.5) / 1000, 1)
    report["ok"] = all(h["old_flow_survived"] and h["old_tcp_kbytes_after"] > 0
                       and (h["old_flow_tunnelled_packets"] > 0) != h["old_flow_local"]
                       and h["new_flow_replies"] > 0 and h["new_flow_tunnelled_packets"] == 0 and h["rest_consistent"]
                       for h in handovers)
    return report


def handover(lab: Lab, mn: str, visited: tuple, to: str, marks: dict, old_address: str) -> dict:
    t_move = time.time()
    lab.move(mn, to)
    pool = lab.maars[to].info.pool.network
    new_addr = wait_until(lambda: next((a for a, s in lab.addresses(mn).items()
                                       if ipaddress.IPv6Address(a) in pool and s == "preferred"), None),
                         15, f"{mn}'s new address at {to}")
    previous = [m for m in dict.fromkeys(visited) if m != to]
    seen = {}

    def settled():
        for m in lab.topo.maars:
            ev, marks[m] = _events(lab, m, marks[m])
            seen.setdefault(m, []).extend(ev)
        served = any(e["event"] == "report" and e["kind"] in ("handover", "registered") for e in seen[to])
        moved = all(any(e["event"] == "report" and e["kind"] == "moved" for e in seen[p]) for p in previous)
        return served and moved
    wait_until(settled, 10, f"{mn}'s handover to {to}")
    t_rs = next(e["t"] for e in seen[to] if e["event"] == "rs")
    t_conf = next(e["t"] for e in seen[to] if e["event"] == "report" and e["kind"] in ("handover", "registered"))
    t_moved = [next(e["t"] for e in seen[p] if e["event"] == "report" and e["kind"] == "moved") for p in previous]
    j, ns = lab.mns[mn]
    new_flow = run("ip", "netns", "exec", ns, "ping", "-6", "-n", "-c", "3", "-i", "0.1", "-W", "1", CN_ADDR, check=False)
    replies = len(re.findall(r"bytes from", new_flow))
    (lab.work / f"ping-new-{mn}-{to}.log").write_text(new_flow)
    session = wait_until(lambda: (lambda s: s if s["flows_confirmed"] and s["flows_confirmed"]["pushed_at"] > t_rs
                                 else None)(lab.rest(f"/dmm/v1/sessions/mn-{lab_mac(j)}@dmm")), 5,
                        f"{mn}'s flows confirmed by barrier")
    t_flows = session["flows_confirmed"]["confirmed_at"]
    installed = {m: lab.rest(f"/dmm/v1/maars/{m}/flows")["installed_count"] for m in lab.topo.maars}
    return {
        "mn": mn, "from": visited[-1], "to": to, "t_move": t_move, "new_address": new_addr,
        # the MN's own prefixes (its addresses' /64), not the MAARs' whole pools: with several MNs a
        # pool holds other MNs' prefixes too
        "old_prefix": str(ipaddress.IPv6Network(f"{old_address}/{lab.maars[visited[0]].info.prefix_length}", strict=False)),
        "new_prefix": str(ipaddress.IPv6Network(f"{new_addr}/{lab.maars[to].info.prefix_length}", strict=False)),
        # attach trigger (the RS at the new MAAR) to the last of: S-MAAR registration confirmed,
        # P-MAARs switched, every switch's flows confirmed by barrier
        "signalling_ms": round((max([t_conf, t_flows] + t_moved) - t_rs) * 1000, 3),
        "flows_confirmed_ms": round((t_flows - t_rs) * 1000, 3),
        "s_maar_confirmed_ms": round((t_conf - t_rs) * 1000, 3),
        "rs_after_move_ms": round((t_rs - t_move) * 1000, 1),
        "new_flow_replies": replies, "flows_installed": installed,
        "rest_consistent": session["serving_maar"]["name"] == to
        and sorted(p["name"] for p in session["previous_maars"]) == sorted(previous),
    }


def lab_mac(j: int) -> str:
    return f"02000000 0a{j:02x}".replace(" ", "")


def ping_replies(path: Path) -> list[tuple[float, int]]:
    got = []
    for line in path.read_text().splitlines():
        m = re.match(r"\[(\d+\.\d+)\] .*icmp_seq=(\d+)", line)
        if m:
            got.append((float(m.group(1)), int(m.group(2))))
    return got


def old_flow_gap(pings: list, t_move: float, dwell: float) -> dict:
    window = [(t, s) for t, s in pings if t_move - 1.0 <= t <= t_move + dwell]
    gaps = [b[0] - a[0] for a, b in zip(window, window[1:])]
    seqs = [s for _, s in window]
    lost = (max(seqs) - min(seqs) + 1 - len(set(seqs))) if seqs else None
    return {"old_flow_interruption_ms": round(max(gaps) * 1000, 1) if gaps else None, "old_flow_lost_pings": lost}


def gre_inner(pcap: Path) -> list:
    if not pcap.exists():
        return []
    out = run("tcpdump", "-n", "-tt", "-r", str(pcap), check=False)
    packets: list[str] = []  # one line per packet: tcpdump puts VXLAN's inner packet on its own line
    for line in out.splitlines():
        if re.match(r"\d+\.\d+ ", line) or not packets:
            packets.append(line)
        else:
            packets[-1] += " " + line
    found = []
    for line in packets:
        m = re.match(r"(\d+\.\d+) .*?(?:GREv0|VXLAN).*?IP6 ([0-9a-f:]+)(?:\.\d+)? > ([0-9a-f:]+)(?:\.\d+)?:", line)
        if m is None:
            continue
        try:
            found.append((float(m.group(1)), ipaddress.IPv6Address(m.group(2)), ipaddress.IPv6Address(m.group(3))))
        except ValueError:
            continue
    return found


def tcp_series(path: Path, bucket: float = 0.1) -> list:
    if not path.exists():
        return []
    samples = json.loads(path.read_text())
    if not samples:
        return []
    t0 = samples[0][0]
    bins: dict[int, int] = {}
    for t, n in samples:
        bins[int((t - t0) / bucket)] = bins.get(int((t - t0) / bucket), 0) + n
    return [[t0 + k * bucket, bins.get(k, 0) / bucket] for k in range(max(bins) + 1)]


def plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 3.5))
    for mn, series in report["tcp"].items():
        if series:
            t0 = series[0][0]
            ax.plot([t - t0 for t, _ in series], [v / 1000 for _, v in series], label=f"{mn}: old TCP flow")
            for h in report["handovers"]:
                if h["mn"] == mn:
                    ax.axvline(h["t_move"] - t0, color="grey", linestyle="--")
                    ax.text(h["t_move"] - t0, ax.get_ylim()[1] * 0.9, f" {h['to']}", fontsize=8)
    ax.set_xlabel("seconds")
    ax.set_ylabel("kB/s received by the CN")
    ax.set_title(f"ryu-dmm lab, {report['mode']} mode: the old flow across handovers")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def print_report(report: dict) -> None:
    print(f"\nryu-dmm lab, {report['mode']} mode; old addresses: {report['old_addresses']}")
    print("signalling: from the MN's RS at the new MAAR until its registration is confirmed, the P-MAARs")
    print("have switched and every switch has confirmed its flows by barrier (flows: that last part alone)")
    print(f"{'handover':22} {'signalling':>10} {'flows':>7} {'old flow':>9} {'lost':>5} {'old via':>8} "
          f"{'new flow':>9} {'new via':>8}  REST")
    print(f"{'':22} {'ms':>10} {'ms':>7} {'gap ms':>9} {'pings':>5} {'tunnel':>8} {'replies':>9} {'tunnel':>8}")
    for h in report["handovers"]:
        print(f"{h['mn'] + ': ' + h['from'] + '->' + h['to']:22} {h['signalling_ms']:10.3f} "
              f"{h['flows_confirmed_ms']:7.3f} {h['old_flow_interruption_ms']!s:>9} {h['old_flow_lost_pings']!s:>5} "
              f"{h['old_flow_tunnelled_packets']:8d} {h['new_flow_replies']:9d} {h['new_flow_tunnelled_packets']:8d}  "
              f"{'ok' if h['rest_consistent'] else 'MISMATCH'}  old TCP after: {h['old_tcp_kbytes_after']} kB")
    print(f"tunnelled packets captured on the underlay: {report['tunnel_packets_seen']}; "
          f"overall: {'PASS' if report['ok'] else 'FAIL'}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ryu_dmm.lab", description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=[m.value for m in Mode], default="proxy")
    ap.add_argument("--topology", help="JSON topology file (default: 3 MAARs, one MN visiting them in turn)")
    ap.add_argument("--maars", type=int, default=3, help="MAARs in the default topology")
    ap.add_argument("--dwell", type=float, default=3.0, help="seconds at each MAAR (default topology)")
    ap.add_argument("--tunnel", choices=["gre", "vxlan"], default="gre", help="tunnel ports (GRE or VXLAN over IPv6)")
    ap.add_argument("--out", default="lab-out", help="folder for report.json, the plot and the logs")
    args = ap.parse_args(argv)
    try:
        topo = topo_mod.load(args.topology) if args.topology else topo_mod.default(args.maars, args.dwell)
        preflight()
    except (ValueError, LabError) as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ryu-dmm-lab-"))
    lab = Lab(topo, Mode(args.mode), work, args.tunnel)

    def interrupted(_s, _f):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupted)
    code = 1
    try:
        t0 = time.monotonic()
        lab.build()
        print(f"lab: built in {time.monotonic() - t0:.1f} s ({len(topo.maars)} MAARs, {len(topo.mns)} MN(s))")
        report = run_scenario(lab, out)
        (out / "report.json").write_text(json.dumps(report, indent=1))
        plot(report, out / "old-flow.png")
        print_report(report)
        print(f"report: {out / 'report.json'}; plot: {out / 'old-flow.png'}; logs and the underlay capture: {out}/logs")
        code = 0 if report["ok"] else 1
    except KeyboardInterrupt:
        print("\nlab: interrupted, cleaning up", file=sys.stderr)
        code = 130
    except LabError as exc:
        print(f"lab: {exc}", file=sys.stderr)
    finally:
        t0 = time.monotonic()
        lab.teardown()
        logs = out / "logs"
        logs.mkdir(exist_ok=True)
        for f in list(work.glob("*.log")) + list(work.glob("ovs-*/*.log")) + [work / "domain.ini", work / "underlay.pcap"]:
            if f.exists():
                (logs / f.name if f.parent == work else logs / f"{f.parent.name}-{f.name}").write_bytes(f.read_bytes())
        subprocess.run(["rm", "-rf", str(work)])
        print(f"lab: torn down in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
