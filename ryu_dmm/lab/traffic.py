"""Traffic for the lab, run inside the hosts' namespaces: a TCP sink on the CN recording what
arrives when, and a paced TCP source on the MN bound to one of its addresses (a long-lived flow).

``python -m ryu_dmm.lab.traffic sink ADDR PORT OUT.json`` / ``source SRC DST PORT RATE``.
Both stop on SIGTERM; the sink then writes (time, bytes) samples to OUT.json.
"""
from __future__ import annotations

import json
import signal
import socket
import sys
import time


def _stop_on_term() -> None:
    def stop(_s, _f):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)


def sink(addr: str, port: int, out: str) -> None:
    _stop_on_term()
    samples: list[tuple[float, int]] = []
    srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, port))
    srv.listen(8)
    try:
        conn, _ = srv.accept()
        while True:
            data = conn.recv(65536)
            if not data:
                break
            samples.append((time.time(), len(data)))
    except KeyboardInterrupt:
        pass
    finally:
        with open(out, "w") as f:
            json.dump(samples, f)


def source(src: str, dst: str, port: int, rate: float) -> None:
    """Send ``rate`` bytes per second in 1 KiB writes from ``src`` until terminated."""
    _stop_on_term()
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.bind((src, 0))
    for _ in range(50):
        try:
            s.connect((dst, port))
            break
        except OSError:
            time.sleep(0.1)
    chunk, interval = b"x" * 1024, 1024 / rate
    nxt = time.monotonic()
    try:
        while True:
            s.sendall(chunk)
            nxt += interval
            time.sleep(max(0.0, nxt - time.monotonic()))
    except (KeyboardInterrupt, OSError):
        pass
    finally:
        s.close()


if __name__ == "__main__":
    cmd, *rest = sys.argv[1:]
    if cmd == "sink":
        sink(rest[0], int(rest[1]), rest[2])
    elif cmd == "source":
        source(rest[0], rest[1], int(rest[2]), float(rest[3]))
    else:
        sys.exit(f"unknown command {cmd}")
