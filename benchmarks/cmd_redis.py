"""Several CMDs on one Redis (docs/deploy-cmds.md): throughput and latency next to SQLite, and
fail-over times, in one run.

(a) Signalling, each row with a fresh store and the same client as cmd_store.py (8 MAAR sockets on
127.0.0.2-9; registrations of MNS MNs, then their re-registrations, every one a binding change):
  1. one CMD, SQLite (synchronous = full; the single-machine default);
  2. one CMD, Redis (``backend = redis``: pipelined MULTI/EXEC group commits);
  3. one CMD, Redis active-active (a check-and-set per event);
  4. two CMDs, Redis active-active, MAARs 0-3 sending to the first and 4-7 to the second (an MN is
     always served by one MAAR here, so its PBUs always reach the same instance);
  5. the same with each MN's PBUs sent to both in turn (MIXED_MNS MNs, each pass over them to the
     other instance): each PBU finds that instance's copy of the session stale, loses its check
     once, re-reads and is handled again.
Peak: the closed loop (WINDOW in flight) with its p50/p99; then an open loop paced at half of the
SQLite peak (the same offered load for every row) with its p50/p99.
Then Redis alone: check-and-sets per second from one plain client (500 per pipeline), and the
script's rate in Redis's own thread (Debian's redis-benchmark, 100 per pipeline).
(b) Fail-over: two active-active CMDs (lease LEASE s), TAKEOVER_MNS sessions registered at the
first, which is killed with SIGKILL: seconds until the second has taken over all of them.
(c) Redis fail-over: one CMD through three sentinels to a primary and its replica; a paced load of
FAILOVER_RATE PBUs/s; the primary is killed with SIGKILL: the longest time without an accepted PBA,
and how many PBUs were never answered (their MAARs would retransmit).

Redis: Debian's redis-server (append-only file, fsync every second) started by ryu_dmm/lab/redisd.py
on a free loopback port, stopped by pid. This machine has 2 cores shared by every process of a row.

Usage: python benchmarks/cmd_redis.py [--seconds 5] [--skip-failover]
"""
from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cmd_store  # benchmarks/ is on sys.path when this script runs
from cmd_store import MNS, domain_file, prefix, rest_get, start_cmd
from cmd_udp import N_MAARS, pct
from ryu_dmm.lab import redisd
from ryu_dmm.mobility import messages as M
from ryu_dmm.wire import encode

LEASE = 1.0
MIXED_MNS = 4000  # MNs of the mixed row: each pass over them goes to the other instance
TAKEOVER_MNS = 2000
FAILOVER_RATE = 500


class Client(cmd_store.Client):
    """cmd_store's client; MAAR k sends to ``ports[k % len(ports)]``, or with ``alternate`` each PBU
    to the next port in turn (an MN's PBUs then reach every instance: each finds its cache stale)."""

    def __init__(self, ports: list[int], alternate: bool = False) -> None:
        super().__init__(ports[0])
        self.dests = [("127.0.0.1", p) for p in ports]
        self.alternate = alternate
        self.mns = MIXED_MNS if alternate else MNS

    def send(self) -> None:
        j = self.n % self.mns
        k = j % N_MAARS
        turn = self.n // self.mns  # alternate: each pass over the MNs goes to the next instance
        self.n += 1
        msg = M.pbu(self.n & 0xFFFF, time.time(), f"mn{j}", prefix(k, j // N_MAARS), 3600, M.HI_NEW_INTERFACE, 3)
        self.sent_at[k].append(time.perf_counter())
        self.socks[k].sendto(encode(msg), self.dests[(turn if self.alternate else k) % len(self.dests)])


def wait_up(rests: list[int], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    for port in rests:
        while True:
            try:
                rest_get(port, "/dmm/v1/stats")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"CMD on REST port {port} did not come up") from None
                time.sleep(0.2)


def cmds(work: Path, stores: list[str]):
    """Start one CMD per store text; returns (processes, PMIPv6 ports, REST ports)."""
    procs, udps, rests = [], [], []
    for i, store in enumerate(stores):
        d = work / f"cmd{i}"
        d.mkdir()
        conf, udp, rest = domain_file(d, store)
        procs.append(start_cmd(conf))
        udps.append(udp)
        rests.append(rest)
    wait_up(rests)
    return procs, udps, rests


def stop_all(procs) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
            p.wait(30)


def signalling(seconds: float, window: int) -> list[dict]:
    rows: list[dict] = []
    half = None
    with tempfile.TemporaryDirectory(prefix="ryu-dmm-bench-redis-") as tmp:
        work = Path(tmp)
        with redisd.redis_server(work / "redis") as server:
            aa = f"backend = redis\nurl = {server.url}\nactive_active = true\nlease = {LEASE}"
            setups = [("1 CMD, SQLite full", ["synchronous = full"]),
                      ("1 CMD, Redis", [f"backend = redis\nurl = {server.url}"]),
                      ("1 CMD, Redis a-a", [aa + "\ninstance = a"]),
                      ("2 CMDs, Redis a-a", [aa + "\ninstance = a", aa + "\ninstance = b"]),
                      ("2 CMDs, a-a, mixed", [aa + "\ninstance = a", aa + "\ninstance = b"])]
            for n, (name, stores) in enumerate(setups):
                mixed = name.endswith("mixed")
                redisd.command(server.port, "FLUSHALL")
                run = work / f"run{n}"
                run.mkdir()
                procs, udps, rests = cmds(run, stores)
                try:
                    c = Client(udps, mixed)
                    peak = c.closed_loop(seconds, window)
                    while c.receive(1.0):
                        pass
                    half = half or peak / 2
                    lat = Client(udps, mixed).open_loop(half, seconds)
                    lost = sum(rest_get(r, "/dmm/v1/stats")["store"].get("active_active", {}).get("checks_lost", 0)
                               for r in rests)
                finally:
                    stop_all(procs)
                rows.append({"name": name, "peak": peak, "p50_peak": pct(c.lat, 50), "p99_peak": pct(c.lat, 99),
                             "refused": c.refused, "rate": half, "p50": pct(lat, 50), "p99": pct(lat, 99),
                             "n": len(lat), "lost": lost})
    return rows


def redis_alone(seconds: float) -> float:
    """Check-and-sets per second that Redis alone takes from one client (RedisStore.cas, 500 events per
    pipeline, one new session each): the shared part of the scaling model in docs/deploy-cmds.md."""
    from ryu_dmm.domainconf import StoreSettings
    from ryu_dmm.store.redisstore import RedisStore
    with tempfile.TemporaryDirectory(prefix="ryu-dmm-bench-cas-") as tmp:
        with redisd.redis_server(Path(tmp) / "redis") as server:
            store = RedisStore(StoreSettings(backend="redis", url=server.url, active_active=True, instance="x"))
            store.load()
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                store.cas([[(f"mn{n + i}", 0, cmd_store.record(n + i, 2e9, 0))] for i in range(500)])
                n += 500
            rate = n / (time.perf_counter() - t0)
            store.close()
            return rate


def redis_script_rate() -> dict:
    """The check-and-set script's rate in Redis itself (its single thread), offered by Debian's
    redis-benchmark (100 per pipeline, random MNs): writing a new session each, and checking only."""
    import redis
    from ryu_dmm.store.redisstore import CAS_LUA
    rates = {}
    with tempfile.TemporaryDirectory(prefix="ryu-dmm-bench-script-") as tmp:
        with redisd.redis_server(Path(tmp) / "redis") as server:
            client = redis.Redis(port=server.port)
            sha = client.script_load(CAS_LUA)
            client.close()
            keys = ["4", "dmm:sessions", "dmm:versions", "dmm:owners", "dmm:clock", "dmm", "x", "mn:__rand_int__", "0"]
            for name, value in (("write", "x" * 90), ("verify", "=")):
                out = subprocess.run(["redis-benchmark", "-p", str(server.port), "-n", "300000", "-P", "100", "-r",
                                      "100000000", "-q", "EVALSHA", sha, *keys, value],
                                     capture_output=True, text=True, timeout=300).stdout
                rates[name] = float(out.rsplit(": ", 1)[1].split()[0])
    return rates


def takeover() -> dict:
    with tempfile.TemporaryDirectory(prefix="ryu-dmm-bench-takeover-") as tmp:
        work = Path(tmp)
        with redisd.redis_server(work / "redis") as server:
            aa = f"backend = redis\nurl = {server.url}\nactive_active = true\nlease = {LEASE}"
            procs, udps, rests = cmds(work, [aa + "\ninstance = a", aa + "\ninstance = b"])
            try:
                c = Client([udps[0]])
                for _ in range(TAKEOVER_MNS):
                    c.send()
                got, deadline = 0, time.monotonic() + 30
                while got < TAKEOVER_MNS and time.monotonic() < deadline:
                    got += c.receive(0.5)
                procs[0].send_signal(signal.SIGKILL)
                procs[0].wait(10)
                killed = time.monotonic()
                while time.monotonic() - killed < 30:  # until the survivor holds every session's timers
                    st = rest_get(rests[1], "/dmm/v1/stats")["store"]["active_active"]
                    if st["instances"].get("a", {}).get("sessions_owned", 1) == 0:
                        took = [t for t in st["takeovers"] if t["instance"] == "a"]
                        return {"seconds": time.monotonic() - killed, "sessions": sum(t["sessions"] for t in took),
                                "adopt_seconds": sum(t["seconds"] for t in took), "answered": got,
                                "rounds": len(took)}
                    time.sleep(0.02)
                raise RuntimeError("no take-over within 30 s")
            finally:
                stop_all(procs)


def redis_failover(seconds: float = 10.0) -> dict:
    with tempfile.TemporaryDirectory(prefix="ryu-dmm-bench-sentinel-") as tmp:
        work = Path(tmp)
        with redisd.redis_cluster(work / "redis") as cluster:
            store = (f"backend = redis\nsentinels = {cluster.sentinel_addresses}\nservice = {redisd.SERVICE}\n"
                     "timeout = 0.5")
            procs, udps, _ = cmds(work, [store])
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind(("127.0.0.2", 0))
                s.setblocking(False)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)  # the held PBAs come at once
                accepted: list[float] = []
                refused = 0
                sent = 0
                t0 = time.monotonic()
                killed = None
                while (now := time.monotonic()) - t0 < seconds:
                    if killed is None and now - t0 > seconds / 3:
                        cluster.primary.kill()
                        killed = now
                    while sent < (now - t0) * FAILOVER_RATE:
                        sent += 1
                        j = sent % MNS
                        s.sendto(encode(M.pbu(sent & 0xFFFF, time.time(), f"mn{j}", prefix(0, j), 3600,
                                              M.HI_NEW_INTERFACE, 3)), ("127.0.0.1", udps[0]))
                    refused += drain(s, accepted)
                    time.sleep(0.001)
                time.sleep(2.0)
                refused += drain(s, accepted)
                s.close()
                gaps = [b - a for a, b in zip(accepted, accepted[1:]) if a >= killed - 1]
                return {"gap": max(gaps) if gaps else float("nan"), "sent": sent, "accepted": len(accepted),
                        "refused": refused, "unanswered": sent - len(accepted) - refused}
            finally:
                stop_all(procs)


def drain(s: socket.socket, accepted: list) -> int:
    """Read every answer waiting: the accepted ones' times into ``accepted``; returns how many were refused."""
    refused = 0
    try:
        while True:
            data = s.recv(65535)
            if data[2] != 6:  # not a PBA (MH type 6): the CMD's RFC 5847 Heartbeat
                continue
            if data[6] == 0:  # its status
                accepted.append(time.monotonic())
            else:
                refused += 1
    except BlockingIOError:
        return refused


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--skip-failover", action="store_true")
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}; {MNS:,} MNs over {N_MAARS} MAARs; window {args.window}; "
          f"{args.seconds:.0f} s per phase")
    rows = signalling(args.seconds, args.window)
    print(f"{'setup':20} {'peak/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'refused':>7} | at {rows[0]['rate']:,.0f}/s: "
          f"{'p50 ms':>7} {'p99 ms':>7} {'answers':>8} | checks lost")
    for r in rows:
        print(f"{r['name']:20} {r['peak']:8,.0f} {r['p50_peak']:7.2f} {r['p99_peak']:7.2f} {r['refused']:7d} | "
              f"{'':>10}{r['p50']:7.2f} {r['p99']:7.2f} {r['n']:8d} | {r['lost']}")
    print(f"Redis alone: {redis_alone(args.seconds):,.0f} check-and-sets/s (one client, 500 per pipeline)")
    if shutil.which("redis-benchmark"):
        r = redis_script_rate()
        print(f"the script in Redis (redis-benchmark, 100 per pipeline): {r['write']:,.0f}/s writing a new session, "
              f"{r['verify']:,.0f}/s checking only")
    if not args.skip_failover:
        t = takeover()
        print(f"instance killed (lease {LEASE:g} s): {t['sessions']} of {t['answered']} sessions taken over "
              f"{t['seconds']:.2f} s after the kill (adopting them took {t['adopt_seconds']:.2f} s, "
              f"{t['rounds']} take-over(s))")
        f = redis_failover()
        print(f"Redis primary killed under {FAILOVER_RATE} PBUs/s through Sentinel: longest time without an accepted "
              f"PBA {f['gap']:.2f} s; of {f['sent']} PBUs {f['refused']} refused, {f['unanswered']} never answered")


if __name__ == "__main__":
    main()
