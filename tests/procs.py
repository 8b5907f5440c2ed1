"""Helpers for tests that start real processes: free ports, waiting, stopping by own pid, and
the CMD and a MAAR agent as running processes."""
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


def manager_command(runtime: str) -> list[str]:
    """How tests start the CMD's manager: ``ryu-manager`` from this venv (``DMM_RUNTIME`` unset or
    ``ryu``), or ``osken-manager`` from the os-ken venv (``osken``; ``DMM_OSKEN_VENV``, default
    ``.venv-osken``, which ``tools/setup.sh`` makes with ``DMM_OSKEN=1``). ``--user-flags`` gives
    osken-manager Ryu's ``--wsapi-port`` (docs/runtime.md)."""
    if runtime == "ryu":
        return [str(BIN / "ryu-manager")]
    if runtime == "osken":
        venv = Path(os.environ.get("DMM_OSKEN_VENV", ROOT / ".venv-osken"))
        return [str(venv / "bin" / "osken-manager"), "--user-flags", str(ROOT / "ryu_dmm" / "oskenflags.py")]
    raise ValueError(f"DMM_RUNTIME must be ryu or osken, not {runtime!r}")


RUNTIME = os.environ.get("DMM_RUNTIME") or "ryu"
MANAGER = manager_command(RUNTIME)  # the argv prefix that starts the CMD: [*MANAGER, ..., "ryu_dmm.cmd"]


def free_port(family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(family, kind) as s:
        s.bind(("127.0.0.1", 0) if family == socket.AF_INET else ("::1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def tcp_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def stop(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 10.0) -> int:
    """Signal our own child and wait; kill it if it does not go. Returns its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            raise
    return proc.returncode


def clean_env(state: Path = None) -> dict:
    """Environment for a child that must import the package as the venv installed it (editable:
    this checkout), not through PYTHONPATH. ``state``: its default state folder (the binding store,
    restart counters) when its configuration names none."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if state is not None:
        env["RYU_DMM_STATE_DIR"] = str(state)
    return env


@contextlib.contextmanager
def running_cmd(config: Path, of_port: int, rest_port: int, log: Path, *extra: str):
    """``ryu-manager --config-file CONFIG ryu_dmm.cmd`` (or ``osken-manager``: ``MANAGER``) until
    its REST port answers; stopped by its own pid when the block ends (and it must exit 0).
    ``extra``: more manager options (say, OpenFlow TLS's)."""
    with open(log, "w") as out:
        proc = subprocess.Popen([*MANAGER, "--config-file", str(config),
                                 "--ofp-tcp-listen-port", str(of_port), *extra, "ryu_dmm.cmd"],
                                cwd=config.parent, env=clean_env(config.parent / "dmm-state"), stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: tcp_open(rest_port) or proc.poll() is not None, 30), log.read_text()
        assert proc.poll() is None, log.read_text()
        yield proc
    finally:
        if proc.returncode != -signal.SIGKILL:  # (the test itself may have killed it: a crash on purpose)
            assert stop(proc, timeout=15) == 0, log.read_text()


@contextlib.contextmanager
def running_agent(config: Path, name: str, port: int, control: str, log: Path, *extra: str):
    """``ryu-dmm-maar`` for MAAR ``name`` until its control socket answers; stopped by its own pid
    when the block ends (and it must exit 0). Its restart counter is kept in ``dmm-state`` beside
    ``config`` (never in /var/lib); ``extra``: more command-line arguments."""
    from ryu_dmm.agent.main import request

    def alive() -> bool:
        try:
            return request(control, {"op": "state"}, timeout=0.2)["ok"]
        except OSError:
            return False
    with open(log, "w") as out:
        proc = subprocess.Popen([str(BIN / "ryu-dmm-maar"), "--config", str(config), "--name", name,
                                 "--port", str(port), "--control", control, *extra],
                                env=clean_env(config.parent / "dmm-state"), stdout=out, stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: proc.poll() is not None or alive(), 10), log.read_text()
        assert proc.poll() is None, log.read_text()
        yield proc
    finally:
        assert stop(proc, timeout=10) == 0, log.read_text()
