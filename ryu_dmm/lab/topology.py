"""A lab topology as data: how many MAARs, which MNs visit which MAARs in which order, timing.

JSON, e.g. ``{"maars": 4, "mns": {"mn1": ["maar1", "maar2", "maar3"], "mn2": ["maar4", "maar1"]},
"dwell": 3.0, "concurrent": true}``. A user describes a bigger lab without touching code.

``concurrent`` (default true): the MNs whose paths have a next MAAR move at the same time, each
step's moves starting together; false moves them one after the other, each waiting for the
previous one to settle (a handover measured alone).
"""
from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Topology:
    maars: tuple[str, ...]
    mns: tuple[tuple[str, tuple[str, ...]], ...]  # (MN name, MAARs it visits in order)
    dwell: float = 3.0  # seconds at each MAAR
    concurrent: bool = True  # the MNs of one step move at the same time

    def __post_init__(self) -> None:
        if not 1 <= len(self.maars) <= 50:
            raise ValueError("topology: between 1 and 50 MAARs")
        if not 1 <= len(self.mns) <= 20:
            raise ValueError("topology: between 1 and 20 MNs")
        for mn, path in self.mns:
            if not path or any(m not in self.maars for m in path):
                raise ValueError(f"topology: {mn} visits an unknown MAAR ({', '.join(path)})")
            if any(a == b for a, b in zip(path, path[1:])):
                raise ValueError(f"topology: {mn} moves from a MAAR to itself")
        if not 0.5 <= self.dwell <= 600:
            raise ValueError("topology: dwell must be between 0.5 and 600 s")
        if not isinstance(self.concurrent, bool):
            raise ValueError("topology: concurrent must be true or false")


def default(n_maars: int = 3, dwell: float = 3.0) -> Topology:
    names = tuple(f"maar{i}" for i in range(1, n_maars + 1))
    return Topology(names, (("mn1", names),), dwell)


def with_concurrency(topo: Topology, concurrent: bool) -> Topology:
    return Topology(topo.maars, topo.mns, topo.dwell, concurrent)


def load(path: str) -> Topology:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        maars = data["maars"]
        names = tuple(f"maar{i}" for i in range(1, maars + 1)) if isinstance(maars, int) else tuple(maars)
        mns = tuple((str(mn), tuple(p)) for mn, p in data["mns"].items())
        return Topology(names, mns, float(data.get("dwell", 3.0)), data.get("concurrent", True))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a usable topology ({exc})") from None
