"""Inputs to the cores and the effects they return, timer keys and report kinds. All immutable.

Timer keys are typed tuples (cheap to hash) whose first fields differ in type between kinds of key
(or whose lengths differ: ``heartbeat.HeartbeatKey`` has one field), so keys of different owners
(the cores, the heartbeat monitor, the CMD's flow mirror) never compare equal on the one heap a
shell drives.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Hashable, NamedTuple, Optional, Union

from ..wire import Message, Prefix
from .dataplane import MnDataPlane

if TYPE_CHECKING:
    from .views import Record, Session


# ---- timer keys and report kinds ----------------------------------------------------------------
class TimerKind(Enum):
    LIFETIME = "life"  # CMD: a session's lifetime (plus MinDelayBeforeBCEDelete) ran out
    AGGREGATE = "agg"  # CMD, relay/locator: answer the S-MAAR with the P-MAARs that answered
    REREGISTER = "rereg"  # MAAR: refresh the serving registration
    EXPIRE = "expire"  # MAAR: a binding's lifetime ran out
    ADVERTISE = "ra"  # MAAR: the next unsolicited Router Advertisement to an attached MN
    REBUILD = "rebuild"  # CMD: the next PBUs re-sending a restarted MAAR its bindings (mn_id: that MAAR)
    FAILOVER = "failover"  # MAAR: the current CMD has been silent since a request too long (mn_id "")


class TimerKey(NamedTuple):
    """A per-MN timer of a core: one live entry per kind and MN."""

    kind: TimerKind
    mn_id: str


class RetxKey(NamedTuple):
    """Retransmission of the PBU sent to ``peer`` with sequence number ``seq``."""

    peer: str
    seq: int


class ReportKind(str, Enum):
    """What a Report tells; the values are the names shown in stats and the agent's event log."""

    REGISTERED = "registered"
    HANDOVER = "handover"
    MOVED = "moved"
    RENEWED = "renewed"
    DEREGISTERED = "deregistered"
    FAILED = "failed"
    REJECTED = "rejected"
    # RFC 5847 liveness of a signalling peer (mobility/heartbeat.py); the peer is named in the detail
    PEER_UNREACHABLE = "peer_unreachable"
    PEER_REACHABLE = "peer_reachable"
    PEER_RESTARTED = "peer_restarted"
    RELEASED = "released"  # CMD: an idle P-MAAR left an MN's session (docs/anchor-release.md)
    FAILOVER = "failover"  # MAAR: it moved to the next CMD of its list (docs/failover.md)


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


@dataclass(frozen=True, slots=True)
class AnchorIdle:
    """CMD: no packet of the MN's ``prefix``, anchored at ``maar``, crossed its tunnel for
    ``timers.anchor_idle_timeout`` (the flow mirror's counters): that P-MAAR may leave the session."""

    mn_id: str
    maar: str
    prefix: Prefix


Event = Union[Received, TimerFired, Attach, Detach, AnchorIdle]


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
class BindingChanged:
    """The CMD's binding for one MN changed where it is served or anchored (None: session ended).
    The CMD's flow mirror renders every MAAR's flows from it, as MaarCore's DataPlaneChanged does
    for one MAAR."""

    mn_id: str
    session: Optional[Session]


@dataclass(frozen=True, slots=True)
class Persist:
    """The CMD's record of one session changed (None: it ended). It comes before the effects it
    explains: the shell stages it for the binding store, and an accepted PBA about that MN leaves
    only once the change is committed (docs/store.md, the durability rule)."""

    mn_id: str
    record: Optional[Record]


@dataclass(frozen=True, slots=True)
class PersistMeta:
    """Something else the CMD must find again after a restart, by key: ``seq:PEER``, its own PBU
    sequence numbers to a peer reserved up to a value (so that a MAAR never takes a new PBU for a
    copy of an old one), and ``counter:PEER``, a peer's last known RFC 5847 Restart Counter."""

    key: str
    value: str


@dataclass(frozen=True, slots=True)
class RaPrefix:
    """One Prefix Information entry; ``dlif`` names the anchoring MAAR whose DLIF advertises it."""

    prefix: Prefix
    preferred: int
    valid: int
    dlif: Optional[str] = None


@dataclass(frozen=True, slots=True)
class Advertise:
    """Send the MN a Router Advertisement with these prefixes (new one preferred, old ones deprecated;
    a withdrawn one with valid lifetime 0). ``router_lifetime``: for the serving MAAR's own RA (the
    DLIFs' RAs carry 0); the MAAR sends one at least every ``timers.ra_interval`` while the MN is
    attached, so neither it nor the prefixes' lifetimes lapse between two."""

    mn_id: str
    mac: bytes
    port: int
    prefixes: tuple[RaPrefix, ...]
    router_lifetime: int = 1800


@dataclass(frozen=True, slots=True)
class Report:
    """Something an operator must see: a completed handover, or a failure that was not swallowed."""

    kind: ReportKind
    mn_id: str
    detail: str = ""
    status: Optional[int] = None
    duration: Optional[float] = None  # a completed handover: its PBU's arrival to its last PBA


Effect = Union[Send, SetTimer, CancelTimer, DataPlaneChanged, BindingChanged, Persist, PersistMeta, Advertise,
               Report]
