"""What goes into the flow mirror and what comes out. All immutable.

Switches are named by their MAAR's signalling address; OpenFlow transaction ids (``xid``) of
barriers and flow-stats requests are chosen by the mirror, so that replies are correlated per
request whatever else is in flight on the same switch.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple, Optional

from ..pipeline import Flow, InstalledFlow


# ---- events -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CoreOutput:
    """The effects of one CmdCore.handle() call: BindingChanged effects are rendered into flows,
    PBAs to a MAAR whose switch has not confirmed that MN's flows yet are held, the rest passes."""

    effects: tuple


@dataclass(frozen=True, slots=True)
class PortLearnt:
    """A frame from ``mac`` (an MN's Router Solicitation) reached the controller from ``port``."""

    maar: str
    mac: bytes
    port: int


@dataclass(frozen=True, slots=True)
class PortBound:
    """Effect: the MN served at ``maar`` with ``mac`` is on access port ``port`` (a learnt port that
    now belongs to a session, or changed): what the CMD stores so that after a restart the serving
    switch's flows towards the MN need not wait for its next frame."""

    maar: str
    mac: bytes
    port: int


@dataclass(frozen=True, slots=True)
class BarrierReplied:
    maar: str
    xid: int


@dataclass(frozen=True, slots=True)
class SwitchUp:
    """The MAAR's switch (re)connected: its flows are reconciled from its flow stats."""

    maar: str


@dataclass(frozen=True, slots=True)
class SwitchDown:
    maar: str


@dataclass(frozen=True, slots=True)
class FlowStatsReplied:
    """One part of a multipart flow-stats reply; ``more``: further parts follow (OFPMPF_REPLY_MORE)."""

    maar: str
    xid: int
    flows: tuple[InstalledFlow, ...]
    more: bool = False


@dataclass(frozen=True, slots=True)
class QueryFlows:
    """Someone (REST) wants the switch's installed flows; answered by FlowStatsReady(token)."""

    maar: str
    token: int


class MirrorTimer(Enum):
    HOLD = "hold"  # a held answer is released even if its switch never confirms
    STATS = "stats"  # a flow-stats request got no (complete) answer in time
    POLL = "poll"  # ask the switches for their tunnel-exit counters (anchor liveness)


class MirrorKey(NamedTuple):
    kind: MirrorTimer
    ident: int


# ---- effects ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ReplaceFlows:
    """Delete the switch's flows tagged ``cookie`` (all tables), add ``flows``, then a barrier ``xid``."""

    maar: str
    cookie: int
    flows: tuple[Flow, ...]
    barrier: int


@dataclass(frozen=True, slots=True)
class ApplyDiff:
    """Reconciliation: delete exactly these entries (strict), add these flows, then a barrier."""

    maar: str
    delete: tuple[InstalledFlow, ...]
    add: tuple[Flow, ...]
    barrier: int


@dataclass(frozen=True, slots=True)
class RequestFlowStats:
    """Ask the switch for its flows with transaction id ``xid``: of table ``table_id`` (None: every
    table), any cookie."""

    maar: str
    xid: int
    table_id: Optional[int] = None


@dataclass(frozen=True, slots=True)
class FlowStatsReady:
    """The answer to QueryFlows(token): the switch's flows, or None (not connected, busy, timed out)."""

    token: int
    flows: Optional[tuple[InstalledFlow, ...]]


@dataclass(frozen=True, slots=True)
class FlowsConfirmed:
    """Every switch involved acknowledged (barrier) the MN's flows pushed at ``pushed_at``."""

    mn_id: str
    pushed_at: float
    confirmed_at: float


class NoteKind(Enum):
    """Things an operator sees counted in stats (the value is the counter's name) and in the log."""

    GROUP_PUSHED = "flow_groups_pushed"
    PORT_LEARNT = "mn_ports_learnt"
    RECONCILED = "reconciliations"
    NOT_RECONCILED = "reconciliation_timeouts"
    FLOW_REFUSED = "flows_refused"
    QUERY_REFUSED = "flow_queries_refused"


@dataclass(frozen=True, slots=True)
class Noted:
    kind: NoteKind
    maar: str
    detail: str = ""
