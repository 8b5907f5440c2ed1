"""Small helpers shared by the lab tools (the lab runner, ``sigdemo``): polling, namespace removal."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Callable, Iterable, TypeVar

from ..mobility.config import MaarInfo
from ..wire import Prefix

T = TypeVar("T")


class LabError(RuntimeError):
    """The lab cannot go on; the message says why."""


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.02) -> T:
    """Poll ``predicate`` until it returns something true; OSError/ValueError count as 'not yet'."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = predicate()
            if got:
                return got
        except (OSError, ValueError, LabError):
            pass
        time.sleep(interval)
    raise LabError(f"timed out waiting for {what}")


def lab_maars(names: Iterable[str]) -> tuple[MaarInfo, ...]:
    """The labs' MAARs: the i-th is 2001:db8:ff::i with pool 2001:db8:i::/48 and datapath id i."""
    return tuple(MaarInfo(name, f"2001:db8:ff::{i:x}", Prefix.parse(f"2001:db8:{i:x}::/48"), datapath_id=i)
                 for i, name in enumerate(names, start=1))


def remove_namespace(ns: str) -> None:
    """Stop what still runs inside our namespace (it is all ours), by pid, then delete it by name."""
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
