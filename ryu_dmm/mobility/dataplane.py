"""A MAAR's data-plane state as a value: what the OpenFlow pipeline renders, per MN.

- ``local``: a prefix anchored here for an MN attached here: routed natively to its port.
- ``to_serving``: a prefix anchored here for an MN now elsewhere: downlink into the tunnel to the
  S-MAAR.
- ``to_anchor``: a prefix anchored at another MAAR for an MN attached here: uplink by source prefix
  into the tunnel to that anchor; downlink arriving from that tunnel goes to the MN's port.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..wire import Prefix


@dataclass(frozen=True, slots=True)
class LocalRoute:
    prefix: Prefix
    mac: bytes
    port: int


@dataclass(frozen=True, slots=True)
class TunnelToServing:
    prefix: Prefix
    serving_maar: str


@dataclass(frozen=True, slots=True)
class TunnelToAnchor:
    prefix: Prefix
    anchor_maar: str
    mac: bytes
    port: int


@dataclass(frozen=True, slots=True)
class MnDataPlane:
    local: tuple[LocalRoute, ...] = ()
    to_serving: tuple[TunnelToServing, ...] = ()
    to_anchor: tuple[TunnelToAnchor, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.local or self.to_serving or self.to_anchor)


EMPTY = MnDataPlane()
