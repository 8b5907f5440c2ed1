"""Redis services for tests, the lab and benchmarks: Debian's ``redis-server`` and ``redis-sentinel``
started with a generated configuration on a loopback port and a private folder, waited for until
they answer, and stopped by their own pid (never by name; never through systemd).

    with redis_cluster(folder) as c:      # a primary, a replica and three sentinels
        c.sentinel_addresses              # for [store] sentinels (service: SERVICE)
        c.primary.kill()                  # SIGKILL: the sentinels fail over to the replica

A port is picked free just before the process starts; when another process takes it in between
(other test runs share the machine), the server exits at once and the start is retried on a new port.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from .common import LabError

SERVICE = "dmm"  # the sentinels' name for the primary
START_TIMEOUT = 10.0  # seconds a server has to answer PING
START_TRIES = 5  # attempts on new ports when the picked one was taken meanwhile
DOWN_AFTER_MS = 1000  # a sentinel's subjective-down time for the primary (lab and tests: fast fail-over)
FAILOVER_TIMEOUT_MS = 3000


def binary(name: str) -> str:
    """The Debian binary ``name`` (redis-server, redis-sentinel) or a LabError saying how to get it."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None)
    if path is None:
        raise LabError(f"{name} is not installed (tools/setup.sh installs the Debian packages redis-server "
                       "and redis-sentinel)")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(port: int, *args: str, timeout: float = 1.0) -> bytes:
    """One RESP command to 127.0.0.1:port; the whole raw reply (no client library needed)."""
    body = b"".join(b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"*%d\r\n" % len(args) + body)
        reply = b""
        while (end := _reply_end(reply, 0)) is None:
            chunk = s.recv(65536)
            if not chunk:
                raise OSError("connection closed mid-reply")
            reply += chunk
        return reply[:end]


def _reply_end(data: bytes, at: int) -> Optional[int]:
    """Where the RESP value starting at ``at`` ends, or None if ``data`` does not hold all of it yet."""
    eol = data.find(b"\r\n", at)
    if eol < 0:
        return None
    kind, head = data[at:at + 1], data[at + 1:eol]
    if kind == b"$":
        end = eol + 2 + int(head) + 2 if int(head) >= 0 else eol + 2  # ($-1: nil)
        return end if len(data) >= end else None
    if kind == b"*":
        at = eol + 2
        for _ in range(max(int(head), 0)):
            at = _reply_end(data, at)
            if at is None:
                return None
        return at
    return eol + 2


def answers(port: int) -> bool:
    try:
        return command(port, "PING", timeout=0.3).startswith(b"+PONG")
    except OSError:
        return False


def _is(port: int, pid: int) -> bool:
    """The server answering on ``port`` is process ``pid`` (not another one that had the port first)."""
    try:
        return f"process_id:{pid}\r\n".encode() in command(port, "INFO", "server", timeout=0.3)
    except OSError:
        return False


@dataclass
class RedisProcess:
    """One running redis-server or redis-sentinel that we started."""

    role: str  # "primary", "replica", "sentinel" or "server"
    port: int
    folder: Path
    proc: subprocess.Popen = field(repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM our own pid (Redis then saves and exits), SIGKILL if it does not go."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def kill(self) -> None:
        """SIGKILL (a crash): nothing is saved."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def log(self) -> str:
        path = self.folder / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""


def server_config(port: int, folder: Path, replica_of: Optional[int] = None, appendonly: bool = True) -> str:
    """redis.conf for a private server on 127.0.0.1:port keeping its files in ``folder``. Append-only
    file fsynced every second (Redis's recommended setting), no RDB snapshots."""
    lines = [f"port {port}", "bind 127.0.0.1", "protected-mode no", "daemonize no", f'dir "{folder}"',
             f'logfile "{folder / "redis.log"}"', 'save ""', f"appendonly {'yes' if appendonly else 'no'}",
             "appendfsync everysec"]
    if replica_of is not None:
        lines += [f"replicaof 127.0.0.1 {replica_of}", "replica-read-only yes"]
    return "\n".join(lines) + "\n"


def sentinel_config(port: int, folder: Path, primary_port: int, quorum: int = 2) -> str:
    """sentinel.conf watching the primary on 127.0.0.1:primary_port as ``SERVICE``. Sentinel rewrites
    this file as it learns the replicas and other sentinels."""
    return "\n".join([
        f"port {port}", "bind 127.0.0.1", "protected-mode no", "daemonize no", f'dir "{folder}"',
        f'logfile "{folder / "redis.log"}"', f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} {quorum}",
        f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
        f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}", f"sentinel parallel-syncs {SERVICE} 1",
    ]) + "\n"


def _start(role: str, folder: Path, make_config, binary_name: str) -> RedisProcess:
    folder.mkdir(parents=True, exist_ok=True)
    exe = binary(binary_name)
    last = ""
    for _ in range(START_TRIES):
        port = free_port()
        conf = folder / ("sentinel.conf" if binary_name == "redis-sentinel" else "redis.conf")
        conf.write_text(make_config(port))
        proc = subprocess.Popen([exe, str(conf)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, cwd=folder)
        rp = RedisProcess(role, port, folder, proc)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None and not _is(port, proc.pid):
            time.sleep(0.02)
        if proc.poll() is None and _is(port, proc.pid):
            return rp
        last = rp.log()[-500:]
        rp.kill()  # its port was taken meanwhile (it exited), or it never answered: try another port
    raise LabError(f"{binary_name} did not start in {folder}: {last}")


def start_server(folder: Path, replica_of: Optional[int] = None, appendonly: bool = True,
                 role: str = "server") -> RedisProcess:
    """A redis-server on a free loopback port, answering PING when this returns."""
    return _start(role, Path(folder), lambda p: server_config(p, Path(folder), replica_of, appendonly),
                  "redis-server")


def start_sentinel(folder: Path, primary_port: int, quorum: int = 2) -> RedisProcess:
    return _start("sentinel", Path(folder), lambda p: sentinel_config(p, Path(folder), primary_port, quorum),
                  "redis-sentinel")


@dataclass
class RedisCluster:
    """A primary, its replica and the sentinels watching them (docs/deploy-cmds.md)."""

    primary: RedisProcess
    replica: RedisProcess
    sentinels: list[RedisProcess]

    @property
    def sentinel_addresses(self) -> str:
        """Every sentinel as ``[store] sentinels`` lists them (the service is ``SERVICE``)."""
        return ", ".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def processes(self) -> list[RedisProcess]:
        return [*self.sentinels, self.replica, self.primary]

    def primary_port(self) -> Optional[int]:
        """The primary's port as the first sentinel that answers reports it (None: none answered)."""
        for s in self.sentinels:
            try:
                reply = command(s.port, "SENTINEL", "get-master-addr-by-name", SERVICE).split(b"\r\n")
            except OSError:
                continue
            if len(reply) >= 5 and reply[0] == b"*2":
                return int(reply[4])
        return None

    def wait_primary(self, port: int, timeout: float = 15.0) -> float:
        """Wait until every live sentinel names ``port`` the primary with no other flag than ``master``
        (clients refuse a primary flagged down or disconnected) and it says it is one; seconds waited."""
        started = time.monotonic()
        _wait(lambda: self._settled_on(port), f"the sentinels to settle on {port} as the primary", timeout)
        return time.monotonic() - started

    def _settled_on(self, port: int) -> bool:
        live = [s for s in self.sentinels if s.alive()]
        if not live or b"role:master" not in command(port, "INFO", "replication"):
            return False
        for s in live:
            fields = _pairs(command(s.port, "SENTINEL", "master", SERVICE))
            if fields.get(b"port") != str(port).encode() or fields.get(b"flags") != b"master":
                return False
        return True

    def stop(self) -> None:
        for p in self.processes():
            p.stop()


def start_cluster(folder: Path, sentinels: int = 3) -> RedisCluster:
    """A primary, one replica replicating it (link up when this returns) and ``sentinels`` sentinels
    (quorum: a majority) that all see the primary and the replica."""
    folder = Path(folder)
    started: list[RedisProcess] = []
    try:
        primary = start_server(folder / "primary", role="primary")
        started.append(primary)
        replica = start_server(folder / "replica", replica_of=primary.port, role="replica")
        started.append(replica)
        _wait(lambda: b"master_link_status:up" in command(replica.port, "INFO", "replication"), "replication link")
        quorum = sentinels // 2 + 1
        sents = []
        for i in range(sentinels):
            sents.append(start_sentinel(folder / f"sentinel{i + 1}", primary.port, quorum))
            started.append(sents[-1])
        for s in sents:  # each sentinel has found the replica and the other sentinels
            _wait(lambda s=s: _sentinel_sees(s.port, sentinels - 1), f"sentinel on {s.port} to see the others")
        return RedisCluster(primary, replica, sents)
    except BaseException:
        for p in reversed(started):
            p.stop()
        raise


def _pairs(reply: bytes) -> dict:
    """A RESP array of bulk strings (field, value, ...) as a dict of bytes."""
    items = [t for t in reply.split(b"\r\n")[1:] if t and not t.startswith((b"$", b"*"))]
    return dict(zip(items[::2], items[1::2]))


def _sentinel_sees(port: int, others: int) -> bool:
    info = command(port, "INFO", "sentinel").decode(errors="replace")
    return f"slaves=1,sentinels={others + 1}" in info


def _wait(predicate, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise LabError(f"timed out waiting for {what}")


@contextlib.contextmanager
def redis_server(folder: Path, appendonly: bool = True) -> Iterator[RedisProcess]:
    """A private redis-server for the block; stopped by its pid afterwards."""
    server = start_server(folder, appendonly=appendonly)
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def redis_cluster(folder: Path, sentinels: int = 3) -> Iterator[RedisCluster]:
    """A primary, a replica and ``sentinels`` sentinels for the block; every one stopped by its pid."""
    cluster = start_cluster(folder, sentinels)
    try:
        yield cluster
    finally:
        cluster.stop()


def main(argv=None) -> int:
    """``python -m ryu_dmm.lab.redisd FOLDER``: a cluster (``start_cluster``) in this process's network
    namespace until SIGTERM or SIGINT, then every process stopped by its pid. ``FOLDER/cluster.json``
    names each one's role, port and pid once all answer. The lab starts this inside its core
    namespace (``ip netns exec``), whose loopback the CMD instances share (lab/ha.py)."""
    import json
    import sys
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m ryu_dmm.lab.redisd FOLDER", file=sys.stderr)
        return 2
    folder = Path(args[0])

    def stop(_s, _f):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)
    try:
        with redis_cluster(folder) as c:
            listing = [{"role": p.role, "port": p.port, "pid": p.pid} for p in c.processes()]
            (folder / "cluster.json.tmp").write_text(json.dumps({"service": SERVICE, "processes": listing}))
            (folder / "cluster.json.tmp").rename(folder / "cluster.json")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    except LabError as exc:
        print(f"redisd: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
