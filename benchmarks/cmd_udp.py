"""The CMD process (``ryu-manager ryu_dmm.cmd``) over UDP on loopback, next to a bare Python UDP
echo server measured in the same run, with the same client.

1. peak: a closed loop keeping WINDOW requests in flight for SECONDS: answers per second;
2. latency: an open loop paced at half of that peak: p50/p90/p99 of request-to-answer times.
Requests to the CMD are registrations of new MNs (each a new BCE), spread over 8 MAARs (loopback
addresses 127.0.0.2-9, seen by the CMD as ::ffff:127.0.0.x). Usage: python benchmarks/cmd_udp.py
"""
from __future__ import annotations

import argparse
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ryu_dmm.mobility import messages as M
from ryu_dmm.wire import Prefix

BIN = Path(sys.executable).parent
N_MAARS = 8
ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", int(sys.argv[1])))
while True:
    data, addr = s.recvfrom(65535)
    s.sendto(data, addr)
"""


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """One socket per MAAR address; requests are PBUs built at send time (fresh timestamps).
    ``host``/``sources``: another CMD address and the (address, port) of each MAAR socket
    (benchmarks/cmd_ipsec.py: one MAAR on port 5436, which its IPsec traffic selectors name)."""

    def __init__(self, port: int, host: str = "127.0.0.1", sources: list | None = None) -> None:
        self.dest = (host, port)
        self.socks = []
        self.sel = selectors.DefaultSelector()
        for source in sources or [(f"127.0.0.{i + 2}", 0) for i in range(N_MAARS)]:
            s = socket.socket(socket.AF_INET6 if ":" in source[0] else socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(source)
            s.setblocking(False)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
            self.sel.register(s, selectors.EVENT_READ)
            self.socks.append(s)
        self.n = 0
        self.blocks = [0] * len(self.socks)

    def send(self) -> None:
        k = self.n % len(self.socks)
        self.n += 1
        b = self.blocks[k]
        self.blocks[k] += 1
        prefix = Prefix((0x20010DB8 << 96 | (k + 1) << 80 | b << 64).to_bytes(16, "big"), 64)
        msg = M.pbu(self.n & 0xFFFF, time.time(), f"mn{self.n}", prefix, 3600, 1, 3)
        from ryu_dmm.wire import encode
        self.socks[k].sendto(encode(msg), self.dest)

    def close(self) -> None:
        self.sel.close()
        for s in self.socks:
            s.close()

    def receive(self, timeout: float) -> int:
        got = 0
        for key, _ in self.sel.select(timeout):
            while True:
                try:
                    key.fileobj.recv(65535)
                    got += 1
                except BlockingIOError:
                    break
        return got

    def closed_loop(self, seconds: float, window: int) -> float:
        for _ in range(window):
            self.send()
        inflight, done, t0 = window, 0, time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < seconds:
            got = self.receive(0.5)
            if got == 0 and inflight:  # lost answers: refill the window
                inflight = 0
            done += got
            inflight -= got
            while inflight < window:
                self.send()
                inflight += 1
        self.receive(0.2)
        return done / elapsed

    def open_loop(self, rate: float, seconds: float) -> list[float]:
        """Paced sends; latency of each answer matched by send order per socket (FIFO on loopback)."""
        sent = {k: [] for k in range(len(self.socks))}
        lat: list[float] = []
        interval, t0 = 1.0 / rate, time.perf_counter()
        nxt = t0
        while time.perf_counter() - t0 < seconds:
            now = time.perf_counter()
            while nxt <= now:
                k = self.n % len(self.socks)
                sent[k].append(time.perf_counter())
                self.send()
                nxt += interval
            for key, _ in self.sel.select(max(0.0, nxt - time.perf_counter())):
                k = self.socks.index(key.fileobj)
                while True:
                    try:
                        key.fileobj.recv(65535)
                    except BlockingIOError:
                        break
                    if sent[k]:  # (a late answer to the previous phase, on a reused address: not ours)
                        lat.append(time.perf_counter() - sent[k].pop(0))
        return lat


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))] * 1000


def measure(name: str, port: int, seconds: float, window: int, **client) -> dict:
    c = Client(port, **client)
    peak = c.closed_loop(seconds, window)
    c.close()  # its addresses are the next client's
    c = Client(port, **client)
    lat = c.open_loop(peak / 2, seconds)
    c.close()
    return {"name": name, "peak": peak, "rate": peak / 2, "n": len(lat), "p50": pct(lat, 50), "p90": pct(lat, 90),
            "p99": pct(lat, 99)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--window", type=int, default=64)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ryu-dmm-bench-"))
    echo_port, cmd_port = free_udp_port(), free_udp_port()
    maars = "".join(f"\n[maar:m{i}]\naddress = ::ffff:127.0.0.{i + 2}\npool = 2001:db8:{i + 1}::/48\n"
                    for i in range(N_MAARS))
    (work / "d.ini").write_text(f"[DEFAULT]\nwsapi_host = 127.0.0.1\nwsapi_port = {free_udp_port()}\n"
                                f"[dmm]\ncmd_address = ::1\nport = {cmd_port}\n[store]\ndir = state\n[timers]\nlifetime = 3600\n"
                                + maars)
    procs = [subprocess.Popen([sys.executable, "-c", ECHO, str(echo_port)]),
             subprocess.Popen([str(BIN / "ryu-manager"), "--config-file", str(work / "d.ini"),
                               "--ofp-tcp-listen-port", str(free_udp_port()), "ryu_dmm.cmd"],
                              stdout=open(work / "cmd.log", "w"), stderr=subprocess.STDOUT, cwd=work)]
    try:
        time.sleep(3)  # both up (ryu-manager takes about a second)
        rows = [measure("python UDP echo", echo_port, args.seconds, args.window),
                measure("ryu_dmm.cmd", cmd_port, args.seconds, args.window)]
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
    print(f"one client process, {N_MAARS} sockets, window {args.window}, {args.seconds:.0f} s per phase, "
          f"python {sys.version.split()[0]}")
    print(f"{'server':16} {'peak/s':>9} | at half peak: {'rate/s':>8} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'answers':>8}")
    for r in rows:
        print(f"{r['name']:16} {r['peak']:9,.0f} | {'':14}{r['rate']:8,.0f} {r['p50']:7.3f} {r['p90']:7.3f} "
              f"{r['p99']:7.3f} {r['n']:8d}")
    print(f"CMD peak = {rows[1]['peak'] / rows[0]['peak'] * 100:.0f}% of the echo loop's")


if __name__ == "__main__":
    main()
