"""Public, immutable views of the CMD's binding cache, and every MAAR's data plane derived from one.

``Session`` is what leaves the CMD core: in ``BindingChanged`` effects (the flow mirror renders the
MAARs' flows from it) and from ``CmdCore.session()``/``sessions()`` (REST reads those). The core's
own ``Bce`` stays private and mutable.

The CMD mirrors the domain into the MAARs' flow tables from its own sessions (no side channel to
the agents): what ``dataplanes`` derives equals what each MAAR core holds once signalling has
converged (the property test checks exactly that).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..wire import Prefix
from .dataplane import LocalRoute, MnDataPlane, TunnelToAnchor, TunnelToServing


@dataclass(frozen=True, slots=True)
class Session:
    """One mobility session as the CMD holds it now."""

    mn_id: str
    serving: str  # the serving MAAR's address
    prefix: Prefix  # the prefix the serving MAAR anchors
    mac: bytes  # the MN's link-layer identifier (b"" if none was signalled)
    pmaars: tuple[tuple[str, Prefix], ...]  # (P-MAAR address, prefix it anchors)
    expires: float
    handover_in_progress: bool = False

    def involves(self, maar: str) -> bool:
        return self.serving == maar or any(a == maar for a, _ in self.pmaars)


@dataclass(frozen=True, slots=True)
class Record:
    """Everything the CMD needs to rebuild one session after a restart: what the binding store
    keeps (docs/store.md). ``handover``: P-MAARs may not all have heard of the last move yet."""

    mn_id: str
    serving: str
    prefix: Prefix
    mac: bytes
    pmaars: tuple[tuple[str, Prefix], ...]
    expires: float
    att: int
    last_ts: int  # the last accepted timestamp (RFC 5213 format), 0 if none
    last_seq: int  # the serving MAAR's last accepted sequence number
    handover: bool = False


def dataplanes(session: Session, port: Optional[int]) -> dict[str, MnDataPlane]:
    """MAAR address -> that MAAR's state for the session's MN. ``port``: the MN's access port at
    the serving MAAR, once known (until then the serving MAAR gets no flows towards the MN)."""
    out: dict[str, MnDataPlane] = {}
    if port is not None and session.mac:
        # Legacy mode (docs/mode-legacy.md): the MN's one prefix is anchored at the LMA, listed as the
        # session's P-MAAR; the serving MAAR then only tunnels it there and routes nothing locally.
        anchored_elsewhere = any(p == session.prefix for _, p in session.pmaars)
        out[session.serving] = MnDataPlane(
            local=() if anchored_elsewhere else (LocalRoute(session.prefix, session.mac, port),),
            to_anchor=tuple(TunnelToAnchor(p, a, session.mac, port) for a, p in sorted(session.pmaars)))
    for addr, prefix in session.pmaars:
        out[addr] = MnDataPlane(to_serving=(TunnelToServing(prefix, session.serving),))
    return out
