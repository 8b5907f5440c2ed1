"""A private Open vSwitch instance (own ovsdb-server and ovs-vswitchd, own folder and sockets),
stopped by its own control sockets and pids: nothing system-wide is touched."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


def available() -> bool:
    return os.geteuid() == 0 and Path(SCHEMA).exists() and Path("/usr/sbin/ovs-vswitchd").exists()


class Ovs:
    def __init__(self, folder: Path) -> None:
        self.dir = folder
        self.db = folder / "db.sock"
        self.started = False

    def _run(self, *args: str, check: bool = True) -> str:
        # OVS_RUNDIR keeps every socket (bridge .mgmt ones included) in our folder.
        env = dict(os.environ, OVS_RUNDIR=str(self.dir), OVS_LOGDIR=str(self.dir), OVS_DBDIR=str(self.dir))
        out = subprocess.run(args, capture_output=True, text=True, timeout=30, env=env)
        if check and out.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def vsctl(self, *args: str) -> str:
        return self._run("ovs-vsctl", f"--db=unix:{self.db}", "--timeout=10", *args)

    def ofctl(self, *args: str) -> str:
        return self._run("ovs-ofctl", "-O", "OpenFlow13", *args)

    def start(self) -> "Ovs":
        d = self.dir
        self._run("ovsdb-tool", "create", str(d / "conf.db"), SCHEMA)
        self._run("ovsdb-server", str(d / "conf.db"), f"--remote=punix:{self.db}", f"--pidfile={d}/ovsdb-server.pid",
                  f"--unixctl={d}/ovsdb-server.ctl", f"--log-file={d}/ovsdb-server.log", "--detach")
        self.started = True
        self.vsctl("--no-wait", "init")
        self._run("ovs-vswitchd", f"unix:{self.db}", f"--pidfile={d}/ovs-vswitchd.pid",
                  f"--unixctl={d}/ovs-vswitchd.ctl", f"--log-file={d}/ovs-vswitchd.log", "--detach")
        return self

    def restart_vswitchd(self) -> None:
        """Stop ovs-vswitchd (every flow is lost) and start it again on the same database."""
        d = self.dir
        pid = int((d / "ovs-vswitchd.pid").read_text())
        self._run("ovs-appctl", "-t", str(d / "ovs-vswitchd.ctl"), "exit", check=False)
        _wait_gone(pid)
        self._run("ovs-vswitchd", f"unix:{self.db}", f"--pidfile={d}/ovs-vswitchd.pid",
                  f"--unixctl={d}/ovs-vswitchd.ctl", f"--log-file={d}/ovs-vswitchd.log", "--detach")

    def bridge(self, name: str, dpid: int, controller_port: int, ports: dict[str, int]) -> str:
        """A userspace bridge with OpenFlow 1.3 towards our controller; ``ports``: internal port
        name -> OpenFlow port number, plus a flow-based ip6gre tunnel port as 'tunnel' if named."""
        self.vsctl("add-br", name, "--", "set", "bridge", name, "datapath_type=netdev", "protocols=OpenFlow13",
                   "fail_mode=secure", f"other-config:datapath-id={dpid:016x}")
        for pname, ofport in ports.items():
            if pname.endswith("tun"):
                self.vsctl("add-port", name, pname, "--", "set", "interface", pname, "type=ip6gre",
                           "options:remote_ip=flow", "options:key=flow", f"ofport_request={ofport}")
            else:
                self.vsctl("add-port", name, pname, "--", "set", "interface", pname, "type=internal",
                           f"ofport_request={ofport}")
        self.vsctl("set-controller", name, f"tcp:127.0.0.1:{controller_port}")
        return name

    def flows(self, bridge: str) -> list[str]:
        out = self.ofctl("dump-flows", f"unix:{self.dir}/{bridge}.mgmt", "--no-stats")
        return sorted(line.strip() for line in out.splitlines() if line.strip() and "NXST" not in line and "OFPST" not in line)

    def stop(self) -> None:
        if not self.started:
            return
        for daemon in ("ovs-vswitchd", "ovsdb-server"):
            ctl = self.dir / f"{daemon}.ctl"
            pidfile = self.dir / f"{daemon}.pid"
            pid = int(pidfile.read_text()) if pidfile.exists() else None
            # --cleanup: vswitchd removes its datapath and ports (userspace internal ports are tap
            # devices in this network namespace and would otherwise stay behind)
            self._run("ovs-appctl", "-t", str(ctl), "exit", *(["--cleanup"] if daemon == "ovs-vswitchd" else []),
                      check=False)
            if pid is not None:
                _wait_gone(pid)
        self.started = False


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
