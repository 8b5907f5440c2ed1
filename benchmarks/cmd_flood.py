"""A real CMD (``ryu-manager ryu_dmm.cmd``) under a PBU flood from loopback: what it answers, what the
kernel drops (as the CMD itself counts it), and how REST answers meanwhile.

A sender process offers RATE PBUs/s for SECONDS (at most RATE * SECONDS datagrams, in 1 ms
batches) from 8 MAAR addresses (127.0.0.2-9), cycling over MNS MNs (registrations first, then
re-registrations with fresh timestamps: the binding cache stays bounded); a receiver process counts
the PBAs; a third polls ``/dmm/v1/stats`` and ``/dmm/v1/sessions?limit=100`` every 100 ms. The CMD
has a CPU of its own, the three clients share the others. Targets: every datagram either handled
or counted as a kernel drop; REST under 50 ms. Usage: python benchmarks/cmd_flood.py
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import selectors
import socket
import struct
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from cmd_udp import N_MAARS, pct  # noqa: E402
from rest_load import CLIENT_CPUS, CMD_CPUS, pin, start_cmd  # noqa: E402

from ryu_dmm.mobility import messages as M  # noqa: E402
from ryu_dmm.wire import Prefix, Timestamp, encode  # noqa: E402

ID = b"mnf000000000"


def templates() -> list[tuple[bytearray, int, int, int]]:
    """Per MAAR: an encoded PBU and the offsets of its MN ID digits, prefix and timestamp."""
    out = []
    for k in range(N_MAARS):
        prefix = Prefix((0x20010DB8 << 96 | (k + 1) << 80 | 0xABCD << 64).to_bytes(16, "big"), 64)
        ts = Timestamp.from_seconds(1e9)
        data = bytearray(encode(M.pbu(1, ts.seconds, ID.decode(), prefix, 3600, 1, 3)))
        out.append((data, data.find(ID) + 3, data.find(prefix.packed), data.find(ts.body())))
    return out


def sender(socks, port: int, rate: float, seconds: float, mns: int, out) -> None:
    pin(CLIENT_CPUS)
    tpl = templates()
    dest = ("127.0.0.1", port)
    sent = errors = 0
    t0 = time.perf_counter()
    total = int(rate * seconds)
    while sent + errors < total:
        due = min(total, int((time.perf_counter() - t0) * rate) + 1)
        now = int(time.time() * 65536)
        while sent + errors < due:
            n = (sent + errors) % mns
            k = n % N_MAARS
            data, at_id, at_prefix, at_ts = tpl[k]
            data[at_id:at_id + 9] = b"%09d" % n
            struct.pack_into("!H", data, at_prefix + 6, (n // N_MAARS) & 0xFFFF)  # prefix bits 48-63
            struct.pack_into("!Q", data, at_ts, now)
            struct.pack_into("!H", data, 6, (n // mns) & 0xFFFF)  # sequence: one per round over the MNs
            try:
                socks[k].sendto(data, dest)
                sent += 1
            except OSError:
                errors += 1
        if time.perf_counter() - t0 > seconds + 1:  # the sender itself cannot keep up: stop on time
            break
        time.sleep(0.001)
    out.put(("sender", sent, errors, time.perf_counter() - t0))


def receiver(socks, seconds: float, out) -> None:
    pin(CLIENT_CPUS)
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    got, per_second = 0, []
    t0 = time.perf_counter()
    quiet = None
    while time.perf_counter() - t0 < seconds + 10:
        events = sel.select(0.2)
        if not events:
            if time.perf_counter() - t0 > seconds and quiet is None:
                quiet = time.perf_counter()
            if quiet is not None and time.perf_counter() - quiet > 1.0:
                break
            continue
        quiet = None
        for key, _ in events:
            while True:
                try:
                    key.fileobj.recv(4096)
                    got += 1
                except BlockingIOError:
                    break
        second = int(time.perf_counter() - t0)
        while len(per_second) <= second:
            per_second.append(got)
    out.put(("receiver", got, per_second))


def poller(rest: int, seconds: float, out) -> None:
    pin(CLIENT_CPUS)
    lat = []
    t0 = time.perf_counter()
    i = 0
    while time.perf_counter() - t0 < seconds:
        path = "/dmm/v1/stats" if i % 2 == 0 else "/dmm/v1/sessions?limit=100"
        i += 1
        s = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{rest}{path}", timeout=30) as r:
            r.read()
        lat.append(time.perf_counter() - s)
        time.sleep(max(0.0, 0.1 - (time.perf_counter() - s)))
    out.put(("poller", lat))


def stats(rest: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{rest}/dmm/v1/stats", timeout=30) as r:
        return json.loads(r.read())


def handled(body: dict) -> int:
    m = body["messages"]
    return m.get("pbu_received", 0) + sum(v for k, v in m.items() if k.startswith("decode_error."))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=100_000.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--mns", type=int, default=100_000)
    ap.add_argument("--rcvbuf", type=int, default=None, help="[dmm] rcvbuf (default: the CMD's)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ryu-dmm-flood-"))
    proc, udp, rest = start_cmd(work, "" if args.rcvbuf is None else f"rcvbuf = {args.rcvbuf}\n")
    try:
        socks = []
        for i in range(N_MAARS):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((f"127.0.0.{i + 2}", 0))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
            socks.append(s)
        before = stats(rest)
        ctx = multiprocessing.get_context("fork")  # the children share the client sockets
        out = ctx.Queue()
        procs = [ctx.Process(target=receiver, args=(socks, args.seconds, out)),
                 ctx.Process(target=poller, args=(rest, args.seconds, out)),
                 ctx.Process(target=sender, args=(socks, udp, args.rate, args.seconds, args.mns, out))]
        for p in procs:
            p.start()
        results = {}
        for _ in procs:
            r = out.get(timeout=args.seconds + 60)
            results[r[0]] = r[1:]
        for p in procs:
            p.join(10)
        time.sleep(0.5)
        after = stats(rest)
    finally:
        proc.terminate()
        proc.wait(10)
    sent, errors, send_time = results["sender"]
    answered, per_second = results["receiver"]
    (lat,) = results["poller"]
    drops = after["receive_path"]["kernel_drops"] - before["receive_path"]["kernel_drops"]
    done = handled(after) - handled(before)
    udp_info = after["receive_path"]["sockets"]["udp"]
    rates = [b - a for a, b in zip([0] + per_second, per_second)][:int(args.seconds)]
    print(f"python {sys.version.split()[0]}, CMD on CPU {sorted(CMD_CPUS)}, clients on {sorted(CLIENT_CPUS)}; "
          f"rcvbuf asked {udp_info['rcvbuf_requested']:,}, granted {udp_info['rcvbuf']:,} "
          f"(forced: {udp_info['rcvbuf_forced']})")
    print(f"offered: {sent:,} PBUs in {send_time:.1f} s = {sent / send_time:,.0f}/s (target {args.rate:,.0f}/s); "
          f"send errors {errors}")
    print(f"handled by the CMD: {done:,} ({done / args.seconds:,.0f}/s over {args.seconds:.0f} s); "
          f"answered (PBAs received): {answered:,}; per second: {', '.join(f'{r:,}' for r in rates)}")
    print(f"kernel drops counted by the CMD: {drops:,} ({drops / max(sent, 1) * 100:.1f} % of offered); "
          f"offered - handled = {sent - done:,} ({'equal' if sent - done == drops else 'NOT equal'})")
    print(f"REST during the flood: {len(lat)} requests, p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms, "
          f"max {max(lat) * 1000:.1f} ms (target < 50 ms)")
    pbas = {k[9:]: v - before["messages"].get(k, 0) for k, v in after["messages"].items() if k.startswith("pba_sent.")}
    print(f"PBAs sent by status: {', '.join(f'{k} {v:,}' for k, v in sorted(pbas.items()) if v)}")
    print(f"internal errors: {sum(v for k, v in after['messages'].items() if k.startswith('internal_error'))}; "
          f"sessions: {after['sessions']:,}")


if __name__ == "__main__":
    main()
