"""The CMD's binding store: signalling throughput and latency per backend, and restart time.

(a) ``ryu-manager ryu_dmm.cmd`` with ``[store] backend = memory``, then SQLite with ``synchronous =
full`` and ``normal``, one after the other, each with a fresh store. cmd_udp.py's client (8 MAAR
sockets on 127.0.0.2-9) sends registrations of MNS MNs, then their re-registrations, each with a
fresh timestamp (every one a binding change to commit); every answer is checked accepted. Peak: its
closed loop (WINDOW in flight), with the latency of each answer; then its open loop paced at half of
the memory backend's peak.
(b) Restart: an SQLite file of N sessions (2 P-MAARs each) written with the store's own
``SqliteStore.write`` in large batches, then ``ryu-manager`` started on it: seconds from the process
start to the first answered PBU (a new MN's registration, sent every 20 ms) and to the first one
accepted, the CMD's own ``load_seconds`` (reading the file) and its memory; an empty store for
reference.

Usage: python benchmarks/cmd_store.py [--seconds 5] [--sizes 100000,1000000] [--skip-signalling]
"""
from __future__ import annotations

import argparse
import collections
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import cmd_udp  # benchmarks/ is on sys.path when this script runs
from cmd_udp import N_MAARS, free_udp_port, pct
from ryu_dmm.mobility import messages as M
from ryu_dmm.mobility.views import Record
from ryu_dmm.store import Batch, SqliteStore
from ryu_dmm.wire import Prefix, Timestamp, encode

BIN = Path(sys.executable).parent
MNS = 40_000  # a multiple of N_MAARS: MN j is always served by MAAR j % N_MAARS
BUILD_BATCH = 50_000  # sessions per SqliteStore.write when building a large store


def prefix(maar: int, index: int) -> Prefix:
    """The ``index``-th /64 of MAAR ``maar``'s /40 pool (2001:db8:XX00::/40, room for 2^24 prefixes)."""
    return Prefix(((0x20010DB8 << 96) | ((maar + 1) << 88) | (index << 64)).to_bytes(16, "big"), 64)


def domain_file(work: Path, store: str) -> tuple[Path, int, int]:
    """A domain of N_MAARS MAARs at 127.0.0.2-9; returns (file, PMIPv6 port, REST port)."""
    udp, rest = free_udp_port(), free_udp_port()
    maars = "".join(f"\n[maar:m{i}]\naddress = ::ffff:127.0.0.{i + 2}\npool = 2001:db8:{i + 1:02x}00::/40\n"
                    for i in range(N_MAARS))
    path = work / "d.ini"
    path.write_text(f"[DEFAULT]\nwsapi_host = 127.0.0.1\nwsapi_port = {rest}\n[dmm]\ncmd_address = ::1\n"
                    f"port = {udp}\nmetrics_port = 0\n[timers]\nlifetime = 3600\nmax_sessions = 1000000\n"
                    f"[store]\ndir = state\n{store}\n" + maars)
    return path, udp, rest


def start_cmd(conf: Path) -> subprocess.Popen:
    with open(conf.parent / "cmd.log", "w") as log:
        return subprocess.Popen([str(BIN / "ryu-manager"), "--config-file", str(conf), "--ofp-tcp-listen-port",
                                 str(free_udp_port()), "ryu_dmm.cmd"], stdout=log, stderr=subprocess.STDOUT,
                                cwd=conf.parent)


def rest_get(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return json.loads(r.read())


class Client(cmd_udp.Client):
    """cmd_udp's client sending registrations of MNS MNs, then their re-registrations; the closed
    loop also times each answer (FIFO per socket on loopback) and counts refusals."""

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.sent_at = [collections.deque() for _ in self.socks]
        self.lat: list[float] = []
        self.refused = 0

    def send(self) -> None:
        j = self.n % MNS
        k = j % N_MAARS  # == self.n % N_MAARS, which cmd_udp's open loop expects
        self.n += 1
        msg = M.pbu(self.n & 0xFFFF, time.time(), f"mn{j}", prefix(k, j // N_MAARS), 3600, M.HI_NEW_INTERFACE, 3)
        self.sent_at[k].append(time.perf_counter())
        self.socks[k].sendto(encode(msg), self.dest)

    def receive(self, timeout: float) -> int:
        got = 0
        for key, _ in self.sel.select(timeout):
            waiting = self.sent_at[self.socks.index(key.fileobj)]
            while True:
                try:
                    data = key.fileobj.recv(65535)
                except BlockingIOError:
                    break
                got += 1
                self.refused += data[6] != 0  # the PBA's status
                if waiting:
                    self.lat.append(time.perf_counter() - waiting.popleft())
        return got


def signalling(seconds: float, window: int) -> list[dict]:
    rows: list[dict] = []
    half = None
    for name, store in (("memory", "backend = memory"), ("sqlite full", "synchronous = full"),
                        ("sqlite normal", "synchronous = normal")):
        with tempfile.TemporaryDirectory(prefix="ryu-dmm-bench-store-") as work:
            rows.append(measure(name, Path(work), store, seconds, window, half))
            half = half or rows[0]["peak"] / 2
    return rows


def measure(name: str, work: Path, store: str, seconds: float, window: int, half) -> dict:
    """One backend: peak, then latency at ``half`` (this peak's half when None: the memory backend)."""
    conf, udp, rest = domain_file(work, store)
    proc = start_cmd(conf)
    try:
        time.sleep(3)  # up (ryu-manager takes about a second)
        c = Client(udp)
        peak = c.closed_loop(seconds, window)
        while c.receive(1.0):  # late answers go to a MAAR's latest port: none may reach the next client
            pass
        half = half or peak / 2
        lat = Client(udp).open_loop(half, seconds)
        st = rest_get(rest, "/dmm/v1/stats")["store"]
    finally:
        proc.terminate()
        proc.wait(30)
    return {"name": name, "peak": peak, "p50_peak": pct(c.lat, 50), "p99_peak": pct(c.lat, 99), "refused": c.refused,
            "rate": half, "p50": pct(lat, 50), "p99": pct(lat, 99), "n": len(lat),
            "batch": st["changes_committed"] / st["commits"] if st.get("commits") else None}


def record(j: int, expires: float, ts: int) -> Record:
    """Session j: served by MAAR j % N_MAARS, anchored before by the next two MAARs."""
    k = j % N_MAARS
    i = j // N_MAARS
    pmaars = tuple((f"::ffff:127.0.0.{(k + d) % N_MAARS + 2}", prefix((k + d) % N_MAARS, (d << 22) | i))
                   for d in (1, 2))
    mac = bytes([2, 0, 0, j >> 16 & 255, j >> 8 & 255, j & 255])
    return Record(f"mn{j}", f"::ffff:127.0.0.{k + 2}", prefix(k, i), mac, pmaars, expires, 3, ts, j & 0xFFFF)


def build(path: Path, n: int) -> float:
    started = time.perf_counter()
    store = SqliteStore(str(path), "normal")
    store.load()
    now = time.time()
    ts = Timestamp.from_seconds(now).ticks
    for gen, first in enumerate(range(0, n, BUILD_BATCH), 1):
        store.write(Batch(gen, {f"mn{j}": record(j, now + 3600, ts)
                                for j in range(first, min(n, first + BUILD_BATCH))}))
    store.close()
    return time.perf_counter() - started


def first_answer(conf: Path, udp: int, rest: int, timeout: float = 300.0) -> dict:
    """Start the CMD on ``conf``'s store: seconds until a PBU is answered, and until one is accepted
    (probes queued while it was restoring are refused as too old: RFC 5213's timestamp window)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.2", 0))
    s.settimeout(0.02)
    t0 = time.perf_counter()
    answered = None
    proc = start_cmd(conf)
    try:
        while time.perf_counter() - t0 < timeout:
            s.sendto(encode(M.pbu(1, time.time(), "probe", prefix(0, 3 << 22), 3600, M.HI_NEW_INTERFACE, 3)),
                     ("127.0.0.1", udp))
            try:
                data = s.recv(65535)
            except socket.timeout:
                if proc.poll() is not None:
                    raise RuntimeError((conf.parent / "cmd.log").read_text()) from None
                continue
            answered = answered or time.perf_counter() - t0
            if data[6] != 0:  # the PBA's status
                continue
            accepted = time.perf_counter() - t0
            st = rest_get(rest, "/dmm/v1/stats")
            rss = next(int(ln.split()[1]) for ln in open(f"/proc/{proc.pid}/status") if ln.startswith("VmRSS"))
            return {"answered": answered, "accepted": accepted, "load": st["store"]["load_seconds"],
                    "sessions": st["sessions"], "rss_mib": rss / 1024}
        raise RuntimeError("no answer")
    finally:
        s.close()
        proc.terminate()
        proc.wait(60)


def restart(sizes: list[int]) -> list[dict]:
    rows = []
    for n in [0] + sizes:
        with tempfile.TemporaryDirectory(prefix="ryu-dmm-bench-restart-") as work:
            conf, udp, rest = domain_file(Path(work), "")
            db = Path(work) / "state" / "cmd.sqlite"
            built = build(db, n) if n else 0.0
            size = db.stat().st_size if n else 0
            rows.append({"n": n, "build": built, "mib": size / 2**20, **first_answer(conf, udp, rest)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--sizes", default="100000,1000000", help="stored sessions for the restart figures")
    ap.add_argument("--skip-signalling", action="store_true")
    ap.add_argument("--skip-restart", action="store_true")
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}; {MNS:,} MNs over {N_MAARS} MAARs; window {args.window}; "
          f"{args.seconds:.0f} s per phase")
    if not args.skip_signalling:
        rows = signalling(args.seconds, args.window)
        print(f"{'store':14} {'peak/s':>8} {'of mem':>6} {'p50 ms':>7} {'p99 ms':>7} {'refused':>7} | at "
              f"{rows[0]['rate']:,.0f}/s (half the memory peak): {'p50 ms':>7} {'p99 ms':>7} {'answers':>8} "
              "| changes/commit")
        for r in rows:
            batch = f"{r['batch']:.1f}" if r["batch"] else "-"
            print(f"{r['name']:14} {r['peak']:8,.0f} {r['peak'] / rows[0]['peak'] * 100:5.0f}% {r['p50_peak']:7.2f} "
                  f"{r['p99_peak']:7.2f} {r['refused']:7d} | {'':36}{r['p50']:7.2f} {r['p99']:7.2f} {r['n']:8d} "
                  f"| {batch}")
    if not args.skip_restart:
        rows = restart([int(x) for x in args.sizes.split(",") if x])
        print(f"{'sessions':>9} {'file MiB':>8} {'built s':>7} | first answer s, accepted s | {'load s':>6} "
              f"{'RSS MiB':>7}")
        for r in rows:
            print(f"{r['n']:9,} {r['mib']:8.0f} {r['build']:7.1f} | {r['answered']:14.2f} {r['accepted']:11.2f} | "
                  f"{r['load']:6.2f} {r['rss_mib']:7.0f}")


if __name__ == "__main__":
    main()
