"""A private Open vSwitch instance: its own ovsdb-server and ovs-vswitchd, with database, sockets,
pid files and logs in one folder (OVS_RUNDIR keeps even the bridges' .mgmt sockets there),
optionally inside a network namespace. Stopped by its own control sockets and pids."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Optional

from .common import LabError

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


class PrivateOvs:
    def __init__(self, folder: Path, netns: Optional[str] = None) -> None:
        self.dir = folder
        self.netns = netns
        self.db = folder / "db.sock"
        self.started = False

    def run(self, *args: str, check: bool = True) -> str:
        """Run a command beside this instance (in its namespace, with its OVS_* folders)."""
        d = str(self.dir)
        env = dict(os.environ, OVS_RUNDIR=d, OVS_LOGDIR=d, OVS_DBDIR=d)
        cmd = ("ip", "netns", "exec", self.netns, *args) if self.netns else args
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
        if check and out.returncode != 0:
            raise LabError(f"{' '.join(args)}: {out.stderr.strip() or out.stdout.strip()}")
        return out.stdout

    def vsctl(self, *args: str) -> str:
        return self.run("ovs-vsctl", f"--db=unix:{self.db}", "--timeout=10", *args)

    def appctl(self, daemon: str, *args: str, check: bool = True) -> str:
        return self.run("ovs-appctl", "-t", str(self.dir / f"{daemon}.ctl"), *args, check=check)

    def start(self) -> "PrivateOvs":
        d = self.dir
        self.run("ovsdb-tool", "create", str(d / "conf.db"), SCHEMA)
        self.run("ovsdb-server", str(d / "conf.db"), f"--remote=punix:{self.db}", f"--pidfile={d}/ovsdb-server.pid",
                 f"--unixctl={d}/ovsdb-server.ctl", f"--log-file={d}/ovsdb-server.log", "--detach")
        self.started = True
        self.vsctl("--no-wait", "init")
        self._start_vswitchd()
        return self

    def _start_vswitchd(self) -> None:
        d = self.dir
        self.run("ovs-vswitchd", f"unix:{self.db}", f"--pidfile={d}/ovs-vswitchd.pid",
                 f"--unixctl={d}/ovs-vswitchd.ctl", f"--log-file={d}/ovs-vswitchd.log", "--detach")

    def restart_vswitchd(self) -> None:
        """Stop ovs-vswitchd (every flow is lost) and start it again on the same database."""
        pid = self._pid("ovs-vswitchd")
        self.appctl("ovs-vswitchd", "exit", check=False)
        if pid is not None:
            _wait_gone(pid)
        self._start_vswitchd()

    def kill9(self) -> None:
        """Crash both daemons (SIGKILL, by pid) and drop the database and sockets they leave: the
        next ``start`` begins from an empty configuration."""
        for daemon in ("ovs-vswitchd", "ovsdb-server"):
            pid = self._pid(daemon)
            if pid is not None:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
                _wait_gone(pid)
        for name in ("conf.db", ".conf.db.~lock~", "db.sock", "ovsdb-server.ctl", "ovs-vswitchd.ctl",
                     "ovsdb-server.pid", "ovs-vswitchd.pid"):
            (self.dir / name).unlink(missing_ok=True)

    def stop(self) -> None:
        if not self.started:
            return
        for daemon in ("ovs-vswitchd", "ovsdb-server"):
            pid = self._pid(daemon)
            # --cleanup: vswitchd removes its datapath and ports (userspace internal ports are tap
            # devices in its network namespace and would otherwise outlive it)
            self.appctl(daemon, "exit", *(["--cleanup"] if daemon == "ovs-vswitchd" else []), check=False)
            if pid is not None:
                _wait_gone(pid)
        self.started = False

    def _pid(self, daemon: str) -> Optional[int]:
        path = self.dir / f"{daemon}.pid"
        return int(path.read_text()) if path.exists() else None


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Wait for our daemon to exit (a zombie counts as gone: PID 1 here reaps slowly)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except (FileNotFoundError, IndexError):
            return
        if state == "Z":
            return
        time.sleep(0.05)
    os.kill(pid, 9)
