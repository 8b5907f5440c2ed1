"""The agent's RFC 5847 Restart Counter: one small file per MAAR, incremented at every start.

The agent keeps no bindings across a restart (the CMD, the domain's source of truth, rebuilds
them), so every start is a restart that lost state and must show a new counter. The file holds the
counter as decimal text; it is replaced atomically (written beside it, then renamed), so a crash
leaves the old or the new value, never half of one.
"""
from __future__ import annotations

import os
import time
from typing import Optional

MAX_COUNTER = 0xFFFF_FFFF


def counter_path(state_dir: str, name: str) -> str:
    return os.path.join(state_dir, f"maar-{name}.restart")


def _time_based() -> int:
    return int(time.time()) & MAX_COUNTER


def next_counter(state_dir: str, name: str) -> tuple[int, Optional[str]]:
    """This start's counter, stored for the next start; and a warning, or None. If the file cannot
    be read or written, a counter from the clock (seconds, so it differs between two starts a
    second apart or more) and a warning saying why."""
    path = counter_path(state_dir, name)
    warning = None
    try:
        os.makedirs(state_dir, exist_ok=True)
        try:
            with open(path) as f:
                text = f.read(32).strip()
            counter = (int(text) + 1) & MAX_COUNTER if text.isdigit() else None
            if counter is None:
                warning = f"{path} holds no counter ({text[:20]!r}): starting from a time-based one"
                counter = _time_based()
        except FileNotFoundError:
            counter = 1
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(f"{counter}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return counter, warning
    except OSError as exc:
        return _time_based(), (f"cannot keep the restart counter in {path} ({exc.strerror or exc}): "
                               "using a time-based one")
