"""Crash tests of the CMD's binding store: a real ``ryu-manager ryu_dmm.cmd`` with the SQLite store,
in relay and proxy mode, under a seeded workload of registrations, re-registrations and handovers of
hundreds of MNs from fake MAARs (UDP sockets on 127.0.0.4x that also answer the CMD's PBUs to
P-MAARs), killed with SIGKILL four times and started again.

Where the kills land (seeded):
- between a commit and its PBA: strace delivers SIGKILL on entering the N-th ``sendto`` of the CMD's
  hub thread during the first registrations, when every datagram the CMD sends is a PBA released by
  a commit; the trace names the PBA, and that MN's change must be on disk although it never left;
- inside a group commit: SIGKILL on entering the N-th ``pwrite64`` to the WAL (a batch's frames
  partly written) or the N-th ``fdatasync`` of the WAL (written, not synced, its PBAs held);
- at a seeded point of the workload (the test sends SIGKILL).
strace counts per thread, so the CMD runs with one eventlet tpool thread (EVENTLET_THREADPOOL_SIZE):
every store write comes from that thread. The CMD has no test hook.

After each kill (checked on a copy of the files, so that the next CMD recovers the WAL itself) and
each restart (REST): every MN whose accepted PBA a MAAR received has its session with the serving
MAAR, prefix and P-MAAR list that PBA reported, or the state of the one operation it had in flight
(a change whose PBA was not sent may or may not be there); every row decodes; no prefix is bound
twice; operations in flight complete after the restart; at the end every MN moves once more and the
store holds exactly what the last PBAs reported. Expected states come from the test's own model of
RFC 8885 handovers (the new MAAR serves, the old one joins the P-MAAR list, a MAAR the MN returns to
leaves it, the oldest anchor goes beyond max_pmaars); every PBA is checked against it too.
"""
from __future__ import annotations

import json
import os
import random
import re
import selectors
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

from ryu_dmm.mobility import messages as M
from ryu_dmm.wire import BindingAck, BindingUpdate, Prefix, decode, encode
from tests.conftest import need
from tests.procs import BIN, clean_env, free_port, stop, tcp_open, wait_for

MAARS = [f"127.0.0.{41 + i}" for i in range(4)]
MAX_PMAARS = 2  # below the number of MAARs: the oldest anchor is released now and then
N_MNS = 300
WINDOW = 24  # operations in flight (each on a different MN)
RETX = 1.0  # seconds before a fake MAAR sends its PBU again (fresh timestamp, same sequence number)


def v6(ipv4: str) -> str:
    return f"::ffff:{ipv4}"


def ntop(packed: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6, packed)


def config(mode: str, udp: int, rest: int) -> str:
    maars = "".join(f"\n[maar:m{i}]\naddress = {v6(a)}\npool = 2001:db8:{41 + i}::/48\n" for i, a in enumerate(MAARS))
    # timestamp_window: a PBU retransmitted after a restart, or delayed by strace, must not be
    # refused as too old; ordering across MAARs still comes from the timestamps.
    return (f"[DEFAULT]\nwsapi_host = 127.0.0.1\nwsapi_port = {rest}\n\n[dmm]\ncmd_address = ::ffff:127.0.0.1\n"
            f"listen = ::\nport = {udp}\nmode = {mode}\nmetrics_port = 0\n\n[timers]\nlifetime = 3600\n"
            f"timestamp_window = 30\nmax_pmaars = {MAX_PMAARS}\n\n[store]\ndir = state\n" + maars)


@dataclass(frozen=True)
class State:
    """What an accepted PBA tells its MAAR: it serves the MN with ``prefix``; ``pmaars`` anchor the rest."""

    serving: str
    prefix: Prefix
    pmaars: tuple[tuple[str, Prefix], ...]


@dataclass
class Op:
    maar: int
    seq: int
    expected: State
    msg: BindingUpdate  # the copy sent last
    sent: float


@dataclass
class Mn:
    mn_id: str
    mac: bytes
    state: Optional[State] = None  # from the last accepted PBA received
    seq: Optional[int] = None  # its PBU's sequence number
    pending: Optional[Op] = None

    def allowed(self) -> list[tuple[State, int]]:
        out = [(self.state, self.seq)] if self.state is not None else []
        return out + ([(self.pending.expected, self.pending.seq)] if self.pending else [])


@dataclass(frozen=True)
class Row:
    state: State
    seq: int
    mac: bytes
    handover: bool


def read_rows(path: Path) -> dict[str, Row]:
    """The sessions table, decoded here from the documented layout (prefix: 16 bytes and a length;
    P-MAAR list: 33 bytes each), not by the store's own code."""
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = {}
        for mn_id, serving, prefix, mac, pm, last_seq, handover in db.execute(
                "SELECT mn_id, serving, prefix, mac, pmaars, last_seq, handover FROM sessions"):
            assert isinstance(mn_id, bytes) and len(prefix) == 17 and len(pm) % 33 == 0, mn_id
            mn_id = mn_id.decode("utf-8", "surrogateescape")  # stored as the MN-ID option's bytes
            pmaars = tuple((ntop(pm[i:i + 16]), Prefix(pm[i + 16:i + 32], pm[i + 32])) for i in range(0, len(pm), 33))
            rows[mn_id] = Row(State(ntop(socket.inet_pton(socket.AF_INET6, serving)), Prefix(prefix[:16], prefix[16]),
                                    pmaars), last_seq, bytes(mac), bool(handover))
        return rows
    finally:
        db.close()


class Cmd:
    """The CMD process, optionally started under strace with a syscall injection."""

    def __init__(self, tmp: Path, mode: str):
        self.tmp = tmp
        self.udp, self.rest, self.of = free_port(socket.AF_INET, socket.SOCK_DGRAM), free_port(), free_port()
        (tmp / "d.ini").write_text(config(mode, self.udp, self.rest))
        self.state = tmp / "state"
        self.proc = None
        self.pid = 0  # ryu-manager itself (strace's child when traced)
        self.runs = 0

    @property
    def trace(self) -> Path:
        """strace's output prefix: one file per thread (-ff), so that no line is split."""
        return self.tmp / f"trace{self.runs}"

    def start(self, strace: tuple = ()):
        self.runs += 1
        argv = [str(BIN / "ryu-manager"), "--config-file", str(self.tmp / "d.ini"), "--ofp-tcp-listen-port",
                str(self.of), "ryu_dmm.cmd"]
        if strace:
            argv = ["strace", "-ff", "-qq", "-o", str(self.trace), *strace, *argv]
        env = clean_env()
        env["EVENTLET_THREADPOOL_SIZE"] = "1"
        with open(self.tmp / f"cmd{self.runs}.log", "w") as log:
            self.proc = subprocess.Popen(argv, cwd=self.tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
        assert wait_for(lambda: tcp_open(self.rest) or self.proc.poll() is not None, 30), self.log()
        assert self.proc.poll() is None, self.log()
        self.pid = self.proc.pid
        if strace:
            self.pid = int(Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()[0])

    def log(self) -> str:
        return (self.tmp / f"cmd{self.runs}.log").read_text()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self):
        os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(10)

    def get(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.rest}{path}", timeout=5) as r:
            return json.loads(r.read())

    def copy_store(self, name: str) -> Path:
        """The store's files as the kill left them (the CMD must recover the originals itself)."""
        folder = self.tmp / name
        folder.mkdir()
        for f in self.state.iterdir():
            shutil.copy(f, folder / f.name)
        return folder / "cmd.sqlite"


class Maars:
    """The fake MAARs and the workload: one operation in flight per MN, WINDOW in all, each PBU sent
    again every RETX seconds until its PBA comes; the CMD's PBUs to P-MAARs are answered at once."""

    def __init__(self, cmd: Cmd, rng: random.Random):
        self.cmd, self.rng = cmd, rng
        self.mns = {f"mn-{i}@crash": Mn(f"mn-{i}@crash", bytes([2, 0, 0, 0, i >> 8, i & 0xFF]))
                    for i in range(N_MNS)}
        self.socks = []
        self.sel = selectors.DefaultSelector()
        for i, a in enumerate(MAARS):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
            s.bind((a, 0))
            s.setblocking(False)
            self.sel.register(s, selectors.EVENT_READ, i)
            self.socks.append(s)
        self.next_prefix = [0] * len(MAARS)
        self.next_seq = [0] * len(MAARS)
        self.inflight: dict[str, Mn] = {}
        self.acked = 0  # accepted PBAs received
        self.answered = 0  # PBUs of the CMD answered

    def close(self):
        for s in self.socks:
            s.close()

    # ---- operations -----------------------------------------------------------------------------
    def new_prefix(self, k: int) -> Prefix:
        self.next_prefix[k] += 1
        return Prefix(((0x20010DB8 << 96) | ((0x41 + k) << 80) | (self.next_prefix[k] << 64)).to_bytes(16, "big"), 64)

    def begin(self, mn: Mn, move: bool = False) -> None:
        """Start the next operation of ``mn``: a registration if it has no session, else a move to
        another MAAR or (unless ``move``) now and then a re-registration."""
        s = mn.state
        if s is None:
            k = self.rng.randrange(len(MAARS))
            prefix, hi = self.new_prefix(k), M.HI_NEW_INTERFACE
            expected = State(v6(MAARS[k]), prefix, ())
        elif not move and self.rng.random() < 0.25:
            k = MAARS.index(s.serving[7:])
            prefix, hi, expected = s.prefix, M.HI_REREGISTRATION, s
        else:
            k = self.rng.choice([i for i, a in enumerate(MAARS) if v6(a) != s.serving])
            back = dict(s.pmaars).get(v6(MAARS[k]))  # the MN returns to a MAAR that anchors a prefix for it
            prefix, hi = back or self.new_prefix(k), M.HI_BETWEEN_MAARS
            pmaars = [(a, p) for a, p in s.pmaars if a != v6(MAARS[k])] + [(s.serving, s.prefix)]
            expected = State(v6(MAARS[k]), prefix, tuple(pmaars[-MAX_PMAARS:]))
        seq = self.next_seq[k] = (self.next_seq[k] + 1) & 0xFFFF
        mn.pending = Op(k, seq, expected, None, 0.0)
        self._send(mn, prefix, hi)
        self.inflight[mn.mn_id] = mn

    def _send(self, mn: Mn, prefix: Optional[Prefix] = None, hi: Optional[int] = None):
        op = mn.pending
        if op.msg is not None:
            prefix, hi = op.msg.hnps[0], op.msg.handoff
        op.msg = M.pbu(op.seq, time.time(), mn.mn_id, prefix, 3600, hi, 3, mn.mac)
        op.sent = time.monotonic()
        self.socks[op.maar].sendto(encode(op.msg), ("127.0.0.1", self.cmd.udp))

    def resend_all(self):
        for mn in self.inflight.values():
            self._send(mn)

    # ---- the loop -------------------------------------------------------------------------------
    def pump(self, timeout: float) -> None:
        for key, _ in self.sel.select(timeout):
            k = key.data
            while True:
                try:
                    data, addr = key.fileobj.recvfrom(65535)
                except BlockingIOError:
                    break
                msg = decode(data)
                if type(msg) is BindingUpdate:  # we are a P-MAAR (or the new serving MAAR being confirmed)
                    key.fileobj.sendto(encode(M.pba_for(msg, 0, msg.lifetime)), addr)
                    self.answered += 1
                else:
                    self._on_pba(k, msg)
        now = time.monotonic()
        for mn in self.inflight.values():
            if now - mn.pending.sent > RETX:
                self._send(mn)

    def _on_pba(self, k: int, pba: BindingAck) -> None:
        mn = self.inflight.get(pba.mn_id)
        op = mn.pending if mn is not None else None
        if op is None or op.maar != k or pba.sequence != op.seq or pba.timestamp != op.msg.timestamp:
            return  # late: answers an earlier copy, or an operation already completed
        assert pba.status == 0, f"{pba.mn_id}: PBA status {pba.status} for {op}\n{self.cmd.log()[-3000:]}"
        got = State(v6(MAARS[k]), pba.hnps[0], tuple((p.maar, p.prefix) for p in pba.previous_maars))
        assert got == op.expected, f"{pba.mn_id}: the PBA reports {got}, the model expects {op.expected}"
        mn.state, mn.seq, mn.pending = got, op.seq, None
        del self.inflight[mn.mn_id]
        self.acked += 1

    def run(self, until, registrations_only: bool = False, new: bool = True, timeout: float = 30.0) -> None:
        """Keep WINDOW operations in flight (``new``) until ``until()`` is true."""
        deadline = time.monotonic() + timeout
        while not until():
            assert time.monotonic() < deadline, f"stuck: {len(self.inflight)} in flight\n{self.cmd.log()[-3000:]}"
            if new and len(self.inflight) < WINDOW:
                idle = [m for m in self.mns.values()
                        if m.pending is None and not (registrations_only and m.state is not None)]
                for mn in self.rng.sample(idle, min(len(idle), WINDOW - len(self.inflight))):
                    self.begin(mn)
            self.pump(0.02)

    def drain(self) -> None:
        """After a kill: the PBAs already in our sockets count as received."""
        before = -1
        while before != self.acked + self.answered:
            before = self.acked + self.answered
            self.pump(0.1)

    # ---- checks ---------------------------------------------------------------------------------
    def check_disk(self, db: Path) -> dict[str, Row]:
        """The store after a kill: see the module docstring. Returns the rows."""
        rows = read_rows(db)
        assert set(rows) <= set(self.mns), "a session for an MN that never registered"
        for mn in self.mns.values():
            row = rows.get(mn.mn_id)
            if row is None:
                assert mn.state is None, f"{mn.mn_id}: lost, though its PBA reported {mn.state}"
                continue
            assert (row.state, row.seq) in mn.allowed(), (
                f"{mn.mn_id}: stored {row}, PBA said {mn.state} (seq {mn.seq}), in flight {mn.pending}")
            assert row.mac == mn.mac
            anchors = dict(row.state.pmaars)
            assert row.state.serving not in anchors and len(anchors) == len(row.state.pmaars), row
        prefixes = [p for r in rows.values() for p in (r.state.prefix, *(p for _, p in r.state.pmaars))]
        assert len(prefixes) == len(set(prefixes)), "a prefix bound twice"
        return rows

    def committed_unanswered(self, rows: dict[str, Row]) -> list[str]:
        """MNs whose change is on disk though its PBA never reached their MAAR."""
        return [m.mn_id for m in self.mns.values() if m.pending is not None and m.mn_id in rows
                and (rows[m.mn_id].state, rows[m.mn_id].seq) == (m.pending.expected, m.pending.seq)
                and (m.state, m.seq) != (m.pending.expected, m.pending.seq)]

    def check_restored(self, rows: dict[str, Row]) -> None:
        """The restarted CMD (REST) holds exactly what was on disk after the kill."""
        body = self.cmd.get("/dmm/v1/sessions?limit=1000")
        assert body["total"] == len(rows) and body["next_cursor"] is None
        got = {s["mn_id"]: (State(s["serving_maar"]["address"], Prefix.parse(s["prefix"]),
                                  tuple((p["address"], Prefix.parse(p["prefix"])) for p in s["previous_maars"])),
                            s["handover_in_progress"]) for s in body["sessions"]}
        assert got == {m: (r.state, r.handover) for m, r in rows.items()}
        for mn_id in self.rng.sample(sorted(self.mns), 5):
            try:
                one = self.cmd.get(f"/dmm/v1/sessions/{mn_id}")
                assert mn_id in rows and one["serving_maar"]["address"] == rows[mn_id].state.serving
            except urllib.error.HTTPError as exc:
                assert exc.code == 404 and mn_id not in rows


def last_traced(trace: Path, syscall: str) -> tuple[str, list[str]]:
    """The traced call the injected SIGKILL interrupted (strace shows it returning ``?``), and the
    calls its thread made before it."""
    for path in trace.parent.glob(trace.name + ".*"):
        lines = path.read_text().splitlines()
        killed = [i for i, ln in enumerate(lines) if ln.startswith(f"{syscall}(") and ln.endswith("= ?")]
        if killed:
            return lines[killed[-1]], lines[:killed[-1]]
    raise AssertionError(f"strace did not kill the CMD in {syscall}")


def crash_and_recover(tmp: Path, mode: str, seed: int) -> None:
    need(shutil.which("strace") is not None, "strace is not installed (tools/setup.sh installs it as root)")
    rng = random.Random(seed)
    cmd = Cmd(tmp, mode)
    maars = Maars(cmd, rng)
    wal = str(cmd.state / "cmd.sqlite-wal")
    try:
        # 1. Between a commit and its PBA: the N-th datagram of the first registrations.
        n = rng.randrange(40, 200)
        cmd.start(("-xx", "-s", "512", "-e", "trace=sendto", "-e", f"inject=sendto:signal=SIGKILL:when={n}"))
        maars.run(lambda: not cmd.alive(), registrations_only=True)
        maars.drain()
        rows = maars.check_disk(cmd.copy_store("after1"))
        line, _ = last_traced(cmd.trace, "sendto")
        data = bytes.fromhex(re.search(r'"((?:\\x[0-9a-f]{2})+)"', line).group(1).replace("\\x", ""))
        waiting = maars.committed_unanswered(rows)
        if len(data) == 1:  # the store writer's thread waking the hub after a commit (eventlet.tpool)
            assert waiting, "killed after a commit, yet no committed change waits for its PBA"
        else:  # a PBA that commit released
            pba = decode(data)
            assert type(pba) is BindingAck and pba.status == 0, pba
            assert pba.mn_id in waiting, f"{pba.mn_id}: its PBA was about to leave, its change is not on disk"

        # 2. Inside a group commit: on entering the N-th write of a WAL frame (mostly not its batch's first).
        n = rng.randrange(10, 60)
        cmd.start(("-y", "-s", "0", "-P", wal, "-e", "trace=pwrite64,fdatasync", "-e",
                   f"inject=pwrite64:signal=SIGKILL:when={n}"))
        maars.check_restored(rows)
        maars.resend_all()
        maars.run(lambda: not cmd.alive())
        maars.drain()
        rows = maars.check_disk(cmd.copy_store("after2"))
        last_traced(cmd.trace, "pwrite64")

        # 3. At a seeded point of the workload.
        k = rng.randrange(50, 300)
        cmd.start()
        maars.check_restored(rows)
        maars.resend_all()
        target = maars.acked + k
        maars.run(lambda: maars.acked >= target)
        cmd.kill9()
        maars.drain()
        rows = maars.check_disk(cmd.copy_store("after3"))

        # 4. A batch written but not synced: on entering the N-th fdatasync of the WAL. Each frame
        # takes 5 ms more to write, so that the next batch fills meanwhile (its PBAs must wait).
        n = rng.randrange(3, 20)
        cmd.start(("-y", "-s", "0", "-P", wal, "-e", "trace=pwrite64,fdatasync", "-e",
                   "inject=pwrite64:delay_enter=5ms", "-e", f"inject=fdatasync:signal=SIGKILL:when={n}"))
        maars.check_restored(rows)
        maars.resend_all()
        maars.run(lambda: not cmd.alive())
        maars.drain()
        last_traced(cmd.trace, "fdatasync")
        rows = maars.check_disk(cmd.copy_store("after4"))

        # 5. After the last restart: what was in flight completes, then every MN moves (or registers).
        cmd.start()
        maars.check_restored(rows)
        maars.resend_all()
        maars.run(lambda: not maars.inflight, new=False)
        before = {m.mn_id: m.state for m in maars.mns.values()}
        for mn in maars.mns.values():
            maars.begin(mn, move=True)
        maars.run(lambda: not maars.inflight, new=False)
        for m in maars.mns.values():
            assert m.state is not None and (before[m.mn_id] is None or m.state.serving != before[m.mn_id].serving)
        assert wait_for(lambda: maars.pump(0.05) or not any(  # the P-MAARs' answers close the handovers
            s["handover_in_progress"] for s in cmd.get("/dmm/v1/sessions?limit=1000")["sessions"]), 10)
        assert stop(cmd.proc, timeout=15) == 0, cmd.log()
        rows = read_rows(cmd.state / "cmd.sqlite")
        assert {m: (r.state, r.seq, r.handover) for m, r in rows.items()} == {
            m.mn_id: (m.state, m.seq, False) for m in maars.mns.values()}
    finally:
        maars.close()
        if cmd.proc is not None and cmd.proc.poll() is None:
            cmd.kill9()


@pytest.mark.parametrize("mode,seed", [("relay", 8885), ("proxy", 5213)])
def test_sessions_whose_pba_was_sent_survive_kills_anywhere(tmp_path, mode, seed):
    crash_and_recover(tmp_path, mode, seed)
