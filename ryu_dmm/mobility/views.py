"""Every MAAR's data-plane state for one session, derived from the CMD's binding cache entry.

The CMD mirrors the domain into the MAARs' flow tables from its own BCEs (no side channel to the
agents): what it derives here equals what each MAAR core holds once signalling has converged (the
property test checks exactly that).
"""
from __future__ import annotations

from typing import Optional

from .cmd import Bce
from .dataplane import LocalRoute, MnDataPlane, TunnelToAnchor, TunnelToServing


def dataplanes(bce: Bce, port: Optional[int]) -> dict[str, MnDataPlane]:
    """MAAR address -> that MAAR's state for ``bce``'s MN. ``port``: the MN's access port at the
    serving MAAR, once known (until then the serving MAAR gets no flows towards the MN)."""
    out: dict[str, MnDataPlane] = {}
    if port is not None and bce.mac:
        out[bce.serving] = MnDataPlane(
            local=(LocalRoute(bce.prefix, bce.mac, port),),
            to_anchor=tuple(TunnelToAnchor(p, a, bce.mac, port) for a, p in sorted(bce.pmaars)))
    for addr, prefix in bce.pmaars:
        out[addr] = MnDataPlane(to_serving=(TunnelToServing(prefix, bce.serving),))
    return out
