"""Inputs to the cores and the effects they return. All immutable values."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Optional, Union

from ..wire import Message, Prefix
from .dataplane import MnDataPlane


# ---- inputs -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Received:
    """A decoded PBU/PBA and the signalling address it came from."""

    src: str
    msg: Message


@dataclass(frozen=True, slots=True)
class TimerFired:
    key: Hashable


@dataclass(frozen=True, slots=True)
class Attach:
    """An MN appeared on an access port (its Router Solicitation after link-up, or a lower-layer hint)."""

    mn_id: str
    mac: bytes
    port: int
    att: int = 3  # IEEE 802.3
    handoff: int = 1  # attachment over a new interface


@dataclass(frozen=True, slots=True)
class Detach:
    """Layer-2 detachment: stops re-registration; only lifetime expiry de-registers (RFC 8885 §3.5)."""

    mn_id: str


Event = Union[Received, TimerFired, Attach, Detach]


# ---- effects ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Send:
    dst: str
    msg: Message


@dataclass(frozen=True, slots=True)
class SetTimer:
    key: Hashable
    at: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    key: Hashable


@dataclass(frozen=True, slots=True)
class DataPlaneChanged:
    """The complete data-plane state this MAAR now wants for one MN (empty: remove all of it)."""

    mn_id: str
    state: MnDataPlane


@dataclass(frozen=True, slots=True)
class RaPrefix:
    """One Prefix Information entry; ``dlif`` names the anchoring MAAR whose DLIF advertises it."""

    prefix: Prefix
    preferred: int
    valid: int
    dlif: Optional[str] = None


@dataclass(frozen=True, slots=True)
class Advertise:
    """Send the MN a Router Advertisement with these prefixes (new one preferred, old ones deprecated)."""

    mn_id: str
    mac: bytes
    port: int
    prefixes: tuple[RaPrefix, ...]


@dataclass(frozen=True, slots=True)
class Report:
    """Something an operator must see: a completed handover, or a failure that was not swallowed."""

    kind: str  # "registered", "handover", "moved", "renewed", "deregistered", "failed", "rejected"
    mn_id: str
    detail: str = ""
    status: Optional[int] = None
    duration: Optional[float] = None  # a completed handover: its PBU's arrival to its last PBA


Effect = Union[Send, SetTimer, CancelTimer, DataPlaneChanged, Advertise, Report]
