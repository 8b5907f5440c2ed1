"""A real CMD (ryu-manager) with the SQLite binding store (and the Redis one), killed with SIGKILL and
started again: every session whose PBA was sent comes back with its P-MAAR list, lifetime and
sequence state."""
import dataclasses
import json

import pytest
import redis
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path

from ryu_dmm.mobility import messages as M
from ryu_dmm.wire import BindingAck, BindingUpdate, Prefix, Timestamp, decode, encode
from tests.procs import MANAGER, clean_env, free_port, stop, tcp_open, wait_for

MAAR1, MAAR2 = "127.0.0.31", "127.0.0.32"
P1, P2 = Prefix.parse("2001:db8:1::/64"), Prefix.parse("2001:db8:2::/64")


def config(udp: int, rest: int, store: str = "dir = state", extra: str = "") -> str:
    return f"""
[DEFAULT]
wsapi_host = 127.0.0.1
wsapi_port = {rest}

[dmm]
cmd_address = ::ffff:127.0.0.1
listen = ::
port = {udp}
mode = relay
metrics_port = 0

[store]
{store}

[maar:maar1]
address = ::ffff:{MAAR1}
pool = 2001:db8:1::/48

[maar:maar2]
address = ::ffff:{MAAR2}
pool = 2001:db8:2::/48
{extra}"""


class Cmd:
    def __init__(self, tmp: Path, store: str = "dir = state", extra: str = ""):
        self.tmp = tmp
        tmp.mkdir(exist_ok=True)
        self.udp, self.rest, self.of = free_port(socket.AF_INET, socket.SOCK_DGRAM), free_port(), free_port()
        (tmp / "d.ini").write_text(config(self.udp, self.rest, store, extra))
        self.proc = None
        self.runs = 0

    def start(self):
        self.runs += 1
        log = open(self.tmp / f"cmd{self.runs}.log", "w")
        self.proc = subprocess.Popen([*MANAGER, "--config-file", str(self.tmp / "d.ini"),
                                      "--ofp-tcp-listen-port", str(self.of), "ryu_dmm.cmd"], cwd=self.tmp,
                                     env=clean_env(), stdout=log, stderr=subprocess.STDOUT)
        assert wait_for(lambda: tcp_open(self.rest) or self.proc.poll() is not None, 30), self.log()
        assert self.proc.poll() is None, self.log()

    def log(self) -> str:
        return (self.tmp / f"cmd{self.runs}.log").read_text()

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def get(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.rest}{path}", timeout=3) as r:
            return json.loads(r.read())


def peer(address):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((address, 0))
    s.settimeout(3)
    return s


def stored_mn_ids(backend: str, tmp_path: Path, url: str) -> list:
    """What the store holds, read by its own tools (sqlite3, redis-py), not by the CMD's code."""
    if backend == "redis":
        return sorted(redis.Redis.from_url(url).hkeys("dmm:sessions"))
    db = sqlite3.connect(tmp_path / "state" / "cmd.sqlite")
    try:
        return [r[0] for r in db.execute("SELECT mn_id FROM sessions")]
    finally:
        db.close()  # an open reader would keep the next CMD out (exclusive locking)


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_sessions_survive_kill9_with_their_pmaar_list(tmp_path, backend, request):
    url = request.getfixturevalue("redis_url") if backend == "redis" else ""
    cmd = Cmd(tmp_path, f"backend = redis\nurl = {url}" if url else "dir = state")
    cmd.start()
    m1, m2 = peer(MAAR1), peer(MAAR2)
    try:
        m1.sendto(encode(M.pbu(7, time.time(), "mn-a", P1, 3600, 1, 3, bytes.fromhex("020000000a01"))),
                  ("127.0.0.1", cmd.udp))
        assert decode(m1.recvfrom(4096)[0]).status == 0
        # handover to maar2 (relay): the CMD asks maar1, which answers; then maar2 gets its PBA
        m2.sendto(encode(M.pbu(3, time.time(), "mn-a", P2, 3600, 3, 3)), ("127.0.0.1", cmd.udp))
        data, addr = m1.recvfrom(4096)
        ask = decode(data)
        assert isinstance(ask, BindingUpdate) and ask.serving_maar == f"::ffff:{MAAR2}"
        m1.sendto(encode(M.pba_for(ask, 0, ask.lifetime)), addr)
        pba = decode(m2.recvfrom(4096)[0])
        assert isinstance(pba, BindingAck) and pba.status == 0
        assert [(p.maar, p.prefix) for p in pba.previous_maars] == [(f"::ffff:{MAAR1}", P1)]
        before = cmd.get("/dmm/v1/sessions/mn-a")
        cmd.kill9()  # the PBA left: its change was committed

        assert stored_mn_ids(backend, tmp_path, url) == [b"mn-a"]
        cmd.start()
        after = cmd.get("/dmm/v1/sessions/mn-a")
        # the same absolute deadline: the time spent restarting is gone from the remaining lifetime
        assert 0 < before.pop("lifetime_remaining") - after.pop("lifetime_remaining") < 30
        assert after == before
        stats = cmd.get("/dmm/v1/stats")["store"]
        assert stats["backend"] == backend and stats["restored_sessions"] == 1 and stats["new"] is False
        # the serving MAAR's retransmission of its PBU is answered as before, with the P-MAAR list
        m2.sendto(encode(M.pbu(3, time.time(), "mn-a", P2, 3600, 3, 3)), ("127.0.0.1", cmd.udp))
        again = decode(m2.recvfrom(4096)[0])
        assert again.status == 0 and [(p.maar, p.prefix) for p in again.previous_maars] == [(f"::ffff:{MAAR1}", P1)]
        # a stale sequence number from the serving MAAR is still refused (sequence state came back)
        stale = M.pbu(2, time.time(), "mn-a", P2, 3600, 5, 3)
        stale = dataclasses.replace(stale, options=tuple(o for o in stale.options if type(o) is not Timestamp))
        m2.sendto(encode(stale), ("127.0.0.1", cmd.udp))
        assert decode(m2.recvfrom(4096)[0]).status != 0
    finally:
        m1.close()
        m2.close()
        if cmd.proc.poll() is None:
            assert stop(cmd.proc, timeout=15) == 0, cmd.log()


def test_a_corrupt_store_stops_start_up_clearly_and_move_aside_starts_empty(tmp_path):
    cmd = Cmd(tmp_path)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "cmd.sqlite").write_bytes(b"this is not a database" * 100)
    out = subprocess.run([*MANAGER, "--config-file", str(tmp_path / "d.ini"),
                          "--ofp-tcp-listen-port", str(cmd.of), "ryu_dmm.cmd"], cwd=tmp_path, env=clean_env(),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "cannot use the binding store" in out.stderr and "cmd.sqlite" in out.stderr
    assert (tmp_path / "state" / "cmd.sqlite").read_bytes().startswith(b"this is not")  # untouched
    (tmp_path / "d.ini").write_text(config(cmd.udp, cmd.rest).replace("dir = state", "dir = state\non_corrupt = move-aside"))
    cmd.start()
    try:
        assert cmd.get("/dmm/v1/stats")["store"]["moved_aside"].startswith(str(tmp_path / "state" / "cmd.sqlite.corrupt-"))
        assert cmd.get("/dmm/v1/stats")["sessions"] == 0
    finally:
        assert stop(cmd.proc, timeout=15) == 0, cmd.log()


def test_an_unreachable_redis_stops_start_up_clearly(tmp_path):
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    cmd = Cmd(tmp_path, f"backend = redis\nurl = {url}\ntimeout = 0.2")
    out = subprocess.run([*MANAGER, "--config-file", str(tmp_path / "d.ini"),
                          "--ofp-tcp-listen-port", str(cmd.of), "ryu_dmm.cmd"], cwd=tmp_path, env=clean_env(),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "cannot use the binding store: redis " + url in out.stderr and "Traceback" not in out.stderr
