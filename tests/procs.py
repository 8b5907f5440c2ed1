"""Helpers for tests that start real processes: free ports, waiting, stopping by own pid."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


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


def clean_env() -> dict:
    """Environment for a child that must import the package as the venv installed it (editable:
    this checkout), not through PYTHONPATH."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env
