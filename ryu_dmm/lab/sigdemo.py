"""``make demo`` / ``python -m ryu_dmm.lab.sigdemo``: the signalling-only demo on real processes.

A private network namespace holds the CMD (``ryu-manager ryu_dmm.cmd``) and one MAAR agent process
per MAAR, each on its own IPv6 address; an MN moves across the MAARs (explicit attach triggers, as a
lower layer would give) and the demo reports, per handover, the signalling time measured by the
agents and the session the CMD shows over REST. Everything it starts is stopped by pid and the
namespace is deleted by name, also on Ctrl-C. No switch and no real host: that is ``make lab``
(``ryu_dmm.lab``); this demo needs only root and iproute2.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from .. import domainconf
from ..agent.main import request
from ..mobility.config import Domain, Mode, Timers
from .common import lab_maars, remove_namespace, wait_until

BIN = Path(sys.executable).parent
CMD_ADDRESS = "2001:db8:ff::100"
REST_PORT = 8080


def make_domain(n_maars: int, mode: Mode) -> Domain:
    return Domain(CMD_ADDRESS, lab_maars(f"maar{i}" for i in range(1, n_maars + 1)), mode=mode,
                  timers=Timers(lifetime=120))


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


# ---- outside the namespace ------------------------------------------------------------------------
def outer(args) -> int:
    if os.geteuid() != 0:
        print("make demo: must run as root (it creates a network namespace)", file=sys.stderr)
        return 2
    if shutil.which("ip") is None:
        print("make demo: the 'ip' command (iproute2) is missing", file=sys.stderr)
        return 2
    ns = f"dmmlab{os.getpid()}"
    domain = make_domain(args.maars, Mode(args.mode))
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    inner_proc = None

    def stop(_signum, _frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)
    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        for addr in [CMD_ADDRESS] + [m.address for m in domain.maars]:
            sh("ip", "-n", ns, "addr", "add", f"{addr}/128", "dev", "lo", "nodad")
        inner_proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "ryu_dmm.lab.sigdemo",
                                       "--inside", "--mode", args.mode, "--maars", str(args.maars),
                                       "--out", str(out), "--namespace", ns])
        return inner_proc.wait()
    except KeyboardInterrupt:
        print("\nlab: interrupted, cleaning up", file=sys.stderr)
        return 130
    finally:
        if inner_proc is not None and inner_proc.poll() is None:
            inner_proc.terminate()
            try:
                inner_proc.wait(10)
            except subprocess.TimeoutExpired:
                inner_proc.kill()
        remove_namespace(ns)


# ---- inside the namespace -------------------------------------------------------------------------
def rest(path: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{REST_PORT}{path}", timeout=2) as r:
        return json.loads(r.read())


def inner(args) -> int:
    domain = make_domain(args.maars, Mode(args.mode))
    out = Path(args.out)
    work = Path(tempfile.mkdtemp(prefix="ryu-dmm-lab-"))
    cfg = work / "domain.ini"
    # All processes share one namespace here, so the CMD listens on its own address, not on [::].
    settings = domainconf.CmdSettings(listen=CMD_ADDRESS)
    cfg.write_text(domainconf.render(domain, settings, ryu={"wsapi_host": "127.0.0.1", "wsapi_port": REST_PORT}))
    procs: list[subprocess.Popen] = []

    def stop(_signum, _frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)
    try:
        log = open(out / "cmd.log", "w")
        procs.append(subprocess.Popen([str(BIN / "ryu-manager"), "--config-file", str(cfg), "ryu_dmm.cmd"],
                                      stdout=log, stderr=subprocess.STDOUT, cwd=work))
        wait_until(lambda: rest("/dmm/v1/stats"), 30, "the CMD's REST API")
        controls = {}
        for m in domain.maars:
            controls[m.name] = str(work / f"{m.name}.sock")
            alog = open(out / f"{m.name}.log", "w")
            procs.append(subprocess.Popen([str(BIN / "ryu-dmm-maar"), "--config", str(cfg), "--name", m.name,
                                           "--control", controls[m.name], "--state-dir", str(work)],
                                          stdout=alog, stderr=subprocess.STDOUT))
        for name, path in controls.items():
            wait_until(lambda p=path: request(p, {"op": "state"})["ok"], 10, f"agent {name} (see {out}/{name}.log)")
        report = scenario(domain, controls)
        report["mode"] = args.mode
        report["namespace"] = args.namespace
        (out / "report.json").write_text(json.dumps(report, indent=1))
        print_report(report)
        print(f"\nreport: {out / 'report.json'}; logs: {out}/*.log")
        return 0 if report["ok"] else 1
    except KeyboardInterrupt:
        return 130
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        shutil.rmtree(work, ignore_errors=True)


def scenario(domain: Domain, controls: dict) -> dict:
    """One MN visits every MAAR in turn; after each move, check the CMD's session and time it."""
    mn, mac = "mn1@lab", "02:00:00:00:01:01"
    names = [m.name for m in domain.maars]
    addr = {m.name: m.address for m in domain.maars}
    marks = {n: 0 for n in names}

    def events(name):
        got = request(controls[name], {"op": "events", "since": marks[name]})
        marks[name] = got["next"]
        return got["events"]

    steps, previous = [], []
    for i, name in enumerate(names):
        for n in names:
            events(n)  # skip what came before this step
        if previous:
            request(controls[previous[-1]], {"op": "detach", "mn": mn})
        t0 = request(controls[name], {"op": "attach", "mn": mn, "mac": mac, "port": 1})["t"]
        seen = {n: [] for n in names}

        def done():
            for n in names:
                seen[n] += events(n)
            served = [e for e in seen[name] if e["event"] == "report" and e["kind"] in ("registered", "handover")]
            moved = all(any(e["event"] == "report" and e["kind"] == "moved" for e in seen[p]) for p in previous)
            return served and moved
        wait_until(done, 10, f"the move to {name}")
        s_maar = next(e for e in seen[name] if e["event"] == "report" and e["kind"] in ("registered", "handover"))
        p_times = [next(e["t"] for e in seen[p] if e["event"] == "report" and e["kind"] == "moved") for p in previous]
        session = rest(f"/dmm/v1/sessions/{mn}")
        want = sorted(addr[p] for p in previous)
        ok = session["serving_maar"]["name"] == name and sorted(p["address"] for p in session["previous_maars"]) == want
        dp = next((e for e in reversed(seen[name]) if e["event"] == "dataplane"), None)
        want_anchors = {addr[p] for p in previous}
        tunnels = next((e["t"] for e in seen[name] if e["event"] == "dataplane"
                        and {a for _, a in e["to_anchor"]} >= want_anchors), None) if previous else None
        steps.append({
            "to": name, "from": previous[-1] if previous else None,
            "signalling_ms": round((s_maar["t"] - t0) * 1000, 3),
            "pmaars_updated_ms": round((max(p_times) - t0) * 1000, 3) if p_times else None,
            "smaar_tunnels_ms": round((tunnels - t0) * 1000, 3) if tunnels else None,
            "previous_maars": [p["name"] for p in session["previous_maars"]],
            "serving_dataplane": dp, "rest_consistent": ok,
        })
        previous.append(name)
    stats = rest("/dmm/v1/stats")
    return {"ok": all(s["rest_consistent"] for s in steps), "steps": steps, "cmd_stats": stats,
            "note": "signalling only (no switches, no hosts): `make lab` runs the full lab"}


def print_report(report: dict) -> None:
    print(f"\nryu-dmm lab demo ({report['mode']} mode): one MN visiting every MAAR")
    print("times from the attach trigger: S-MAAR registration confirmed / S-MAAR tunnels to every P-MAAR"
          " in its data plane / every P-MAAR switched to the S-MAAR")
    print(f"{'step':18} {'confirmed ms':>12} {'tunnels ms':>10} {'P-MAARs ms':>10}  previous MAARs (REST)  consistent")

    def ms(v):
        return f"{v:.3f}" if v is not None else "-"
    for s in report["steps"]:
        step = f"{s['from'] or 'attach'} -> {s['to']}"
        print(f"{step:18} {s['signalling_ms']:12.3f} {ms(s['smaar_tunnels_ms']):>10} {ms(s['pmaars_updated_ms']):>10}"
              f"  {','.join(s['previous_maars']) or '-':21} {s['rest_consistent']}")
    print(report["note"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ryu_dmm.lab.sigdemo", description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=[m.value for m in Mode], default="proxy")
    ap.add_argument("--maars", type=int, default=3, help="number of MAARs (2..200)")
    ap.add_argument("--out", default="lab-out", help="folder for the JSON report and the logs")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--namespace", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not 2 <= args.maars <= 200:
        ap.error("--maars must be between 2 and 200")
    return inner(args) if args.inside else outer(args)


if __name__ == "__main__":
    sys.exit(main())
