"""PBU answer latency of a real CMD (``ryu-manager ryu_dmm.cmd``) with and without REST clients
listing every session page by page, in the same run (loopback only).

1. registers SESSIONS MNs (closed loop, 8 MAARs: 127.0.0.2-9);
2. baseline: an open loop of registrations paced at RATE/s for SECONDS: p50/p99/max answer time;
3. the same while one client lists all sessions with ?limit=LIMIT at PACED pages/s (an operator's
   tool: 10 pages of 1000/s lists 100,000 sessions in 10 s), and while CLIENTS processes list them
   as fast as the CMD answers, following next_cursor, over and over (pages/s and page times too).
   The phases alternate ROUNDS times; the CMD has a CPU of its own, the clients share the others.
Target: REST adds under 5 ms to the p99. The PBUs measured are re-registrations of registered MNs.

4. hub holds, in-process and so independent of other load on the machine: the same REST app over a
   DomainView of a CmdCore holding SESSIONS sessions, served by ``rest.serve`` on this process's
   hub, and a greenthread that only yields (``sleep(0)``) and records how long each turn of the hub
   took, with and without CLIENTS processes listing: the longest time one REST request kept the
   hub from anything else (a PBU included).
Usage: python benchmarks/rest_load.py [--sessions 100000]
"""
from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from cmd_udp import N_MAARS, Client, free_udp_port, pct  # noqa: E402

BIN = Path(sys.executable).parent
CPUS = sorted(os.sched_getaffinity(0))
# With 2+ CPUs the CMD gets one of its own and the clients share the others, so that what the CMD's
# PBU latency shows is its hub, not the clients competing with it for a CPU.
CMD_CPUS, CLIENT_CPUS = ({CPUS[-1]}, set(CPUS[:-1])) if len(CPUS) > 1 else (set(CPUS), set(CPUS))


def pin(cpus: set) -> None:
    os.sched_setaffinity(0, cpus)
_CURSOR = re.compile(rb'"next_cursor": (null|"([^"]*)")')


def start_cmd(work: Path, extra: str = "") -> tuple[subprocess.Popen, int, int]:
    udp, rest = free_udp_port(), free_udp_port()
    maars = "".join(f"\n[maar:m{i}]\naddress = ::ffff:127.0.0.{i + 2}\npool = 2001:db8:{i + 1}::/48\n"
                    for i in range(N_MAARS))
    (work / "d.ini").write_text(f"[DEFAULT]\nwsapi_host = 127.0.0.1\nwsapi_port = {rest}\n"
                                f"[dmm]\ncmd_address = ::1\nport = {udp}\n{extra}[store]\ndir = state\n[timers]\nlifetime = 3600\n"
                                + maars)
    proc = subprocess.Popen([str(BIN / "ryu-manager"), "--config-file", str(work / "d.ini"),
                             "--ofp-tcp-listen-port", str(free_udp_port()), "ryu_dmm.cmd"],
                            stdout=open(work / "cmd.log", "w"), stderr=subprocess.STDOUT, cwd=work,
                            preexec_fn=lambda: pin(CMD_CPUS))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{rest}/dmm/v1/stats", timeout=1).read()
            return proc, udp, rest
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise SystemExit("the CMD did not start: see " + str(work / "cmd.log"))


def register(port: int, n: int, window: int = 64) -> float:
    """``n`` new MNs, closed loop; returns registrations per second."""
    c = Client(port)
    t0 = time.perf_counter()
    for _ in range(min(window, n)):
        c.send()
    done = 0
    while done < n:
        got = c.receive(0.5)
        if got == 0:  # an answer lost: keep the window full
            for _ in range(min(window, n - c.n)):
                c.send()
            continue
        done += got
        for _ in range(min(got, n - c.n)):
            c.send()
    return n / (time.perf_counter() - t0)


def lister(rest: int, limit: int, stop, out, rate: float = 0.0) -> None:
    """List every session, page by page (at most ``rate`` pages/s; 0: as fast as the CMD answers)
    until ``stop`` is set; reports page times and listings."""
    pages, times, listings = 0, [], 0
    t_next = time.perf_counter()
    base = f"http://127.0.0.1:{rest}/dmm/v1/sessions?limit={limit}"
    while not stop.is_set():
        cursor = None
        while not stop.is_set():
            if rate:
                t_next += 1 / rate
                time.sleep(max(0.0, t_next - time.perf_counter()))
            t0 = time.perf_counter()
            with urllib.request.urlopen(base + (f"&cursor={cursor}" if cursor else ""), timeout=30) as r:
                body = r.read()
            times.append(time.perf_counter() - t0)
            pages += 1
            m = _CURSOR.search(body, 0, 400)  # the scalars come before the sessions: no full parse
            cursor = m.group(2).decode() if m and m.group(2) else None
            if cursor is None:
                listings += 1
                break
    out.put((pages, times, listings))


def measure(port: int, rate: float, seconds: float) -> dict:
    lat = Client(port).open_loop(rate, seconds)
    return {"n": len(lat), "p50": pct(lat, 50), "p99": pct(lat, 99), "max": max(lat) * 1000}


def pinned_lister(*args) -> None:
    pin(CLIENT_CPUS)
    lister(*args)


def hub_holds(sessions: int, seconds: float, limit: int, clients: int) -> list:
    import logging

    import eventlet
    from ryu.app.wsgi import WSGIApplication

    from ryu_dmm import domainconf, pipeline, rest
    from ryu_dmm.domainview import DomainView
    from ryu_dmm.flowmirror import FlowMirror
    from ryu_dmm.logsafe import Guard, SafeLog
    from ryu_dmm.mobility import messages as M
    from ryu_dmm.mobility.cmd import CmdCore
    from ryu_dmm.mobility.events import Received
    from ryu_dmm.stats import Stats
    from ryu_dmm.wire import Prefix

    maars = "".join(f"[maar:m{i}]\naddress = ::ffff:127.0.0.{i + 2}\npool = 2001:db8:{i + 1}::/48\n"
                    for i in range(N_MAARS))
    pin(CMD_CPUS)  # this process plays the CMD now
    domain, settings = domainconf.parse("[dmm]\ncmd_address = ::1\n[timers]\nlifetime = 3600\n" + maars)
    core = CmdCore(domain)
    now = time.time()
    for n in range(sessions):
        k = n % N_MAARS
        prefix = Prefix((0x20010DB8 << 96 | (k + 1) << 80 | (n // N_MAARS) << 64).to_bytes(16, "big"), 64)
        core.handle(Received(f"::ffff:127.0.0.{k + 2}", M.pbu(n & 0xFFFF, now, f"mn{n}", prefix, 3600, 1, 3)), now)
    stats = Stats("proxy")
    view = DomainView(domain, settings, core, FlowMirror(pipeline.load(), {}), stats, lambda m: None)
    app = WSGIApplication()
    app.register(rest.DmmRestController, rest.registration(view, Guard(stats.count, SafeLog(logging.getLogger()))))
    sock = eventlet.listen(("127.0.0.1", 0))
    eventlet.spawn(rest.serve, sock, app, rest.ServerLimits(), SafeLog(logging.getLogger("bench")))
    out = []
    pauses: list = []
    started = {}

    def on_gc(phase, info):  # the collector's pauses: they hold the hub like any other work
        if phase == "start":
            started[info["generation"]] = time.perf_counter()
        elif info["generation"] in started:
            pauses.append((info["generation"], time.perf_counter() - started.pop(info["generation"])))
    gc.callbacks.append(on_gc)
    for load in (0, clients):
        pauses.clear()
        stop, q = multiprocessing.Event(), multiprocessing.Queue()
        procs = [multiprocessing.Process(target=pinned_lister, args=(sock.getsockname()[1], limit, stop, q))
                 for _ in range(load)]
        for p in procs:
            p.start()
        gaps, t_end = [], time.perf_counter() + seconds
        last = time.perf_counter()
        while last < t_end:
            eventlet.sleep(0)
            t = time.perf_counter()
            gaps.append(t - last)
            last = t
        stop.set()
        pages = 0
        while any(p.is_alive() for p in procs) or not q.empty():  # let the hub serve their last pages
            eventlet.sleep(0.01)
            while not q.empty():
                pages += q.get()[0]
        out.append((load, pages, gaps, list(pauses)))
    gc.callbacks.remove(on_gc)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=2000.0, help="PBUs per second while measuring")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=2, help="REST listing processes in the flat-out phase")
    ap.add_argument("--paced", type=float, default=10.0, help="pages per second of the paced listing")
    ap.add_argument("--limit", type=int, default=1000, help="sessions per page (1000: the largest)")
    ap.add_argument("--rounds", type=int, default=2, help="alternations of the two phases")
    ap.add_argument("--hub-seconds", type=float, default=10.0, help="part 4 (0: skip it)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ryu-dmm-rest-load-"))
    proc, udp, rest = start_cmd(work)
    pin(CLIENT_CPUS)  # this process and the listers it forks
    try:
        t0 = time.perf_counter()
        reg_rate = register(udp, args.sessions)
        print(f"registered {args.sessions:,} sessions in {time.perf_counter() - t0:.1f} s ({reg_rate:,.0f}/s)")
        rows, results = [], {}
        loads = [("no REST load", 0, 0.0), (f"1 client, {args.paced:g} pages/s", 1, args.paced),
                 (f"{args.clients} clients flat out", args.clients, 0.0)]
        for _ in range(args.rounds):  # alternating, so that a busy machine hurts each alike
            for name, clients, rate in loads:
                stop, out = multiprocessing.Event(), multiprocessing.Queue()
                listers = [multiprocessing.Process(target=lister, args=(rest, args.limit, stop, out, rate))
                           for _ in range(clients)]
                for p in listers:
                    p.start()
                time.sleep(1.0 if clients else 0.0)  # listings under way
                rows.append((name, measure(udp, args.rate, args.seconds)))
                stop.set()
                results.setdefault(name, []).extend(out.get(timeout=60) for _ in listers)
                for p in listers:
                    p.join(10)
        stats = urllib.request.urlopen(f"http://127.0.0.1:{rest}/dmm/v1/stats", timeout=10).read()
    finally:
        proc.terminate()
        proc.wait(10)
    span = args.rounds * (args.seconds + 1.0)
    print(f"python {sys.version.split()[0]}, CMD on CPU {sorted(CMD_CPUS)}, clients on {sorted(CLIENT_CPUS)}; "
          f"PBUs paced at {args.rate:,.0f}/s for {args.seconds:.0f} s per phase; sessions at start {args.sessions:,}")
    print(f"{'phase':34} {'answers':>8} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}")
    for name, r in rows:
        print(f"{name:34} {r['n']:8d} {r['p50']:7.3f} {r['p99']:7.3f} {r['max']:7.1f}")
    base = statistics.median(r["p99"] for name, r in rows if name == loads[0][0])
    for name, _, _ in loads[1:]:
        pages = sum(r[0] for r in results[name])
        times = [t for r in results[name] for t in r[1]]
        print(f"{name}: {pages} pages of {args.limit} ({pages / span:.1f}/s), {sum(r[2] for r in results[name])} "
              f"complete listings; page time p50 {pct(times, 50):.1f} ms, p99 {pct(times, 99):.1f} ms; p99 added "
              f"(median of rounds): {statistics.median(r['p99'] for n, r in rows if n == name) - base:+.3f} ms "
              f"(target < 5 ms)")
    body = json.loads(stats)
    print(f"CMD: {body['sessions']:,} sessions, internal errors "
          f"{sum(v for k, v in body['messages'].items() if k.startswith('internal_error'))}, "
          f"kernel drops {body['receive_path']['kernel_drops']}")
    if args.hub_seconds:
        print(f"hub turns in-process ({args.sessions:,} sessions, {args.hub_seconds:.0f} s each):")
        for load, pages, gaps, pauses in hub_holds(args.sessions, args.hub_seconds, args.limit, args.clients):
            full = [p for g, p in pauses if g == 2]
            print(f"  {load} clients listing (limit {args.limit}, {pages} pages): "
                  f"longest turn {max(gaps) * 1000:.2f} ms, p99.9 {pct(gaps, 99.9):.3f} ms, "
                  f"turns > 1 ms: {sum(g > 0.001 for g in gaps)} of {len(gaps):,}; "
                  f"garbage collections {len(pauses)}, longest {max((p for _, p in pauses), default=0) * 1000:.1f} ms, "
                  f"full ones {len(full)} (longest {max(full, default=0) * 1000:.1f} ms)")


if __name__ == "__main__":
    main()
