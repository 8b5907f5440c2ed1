"""The flow mirror: MAAR switches' flow tables kept equal to the CMD's sessions, or to one MAAR core's state (sans-IO)."""
from .events import (
    ApplyDiff, BarrierReplied, CoreOutput, FlowStatsReady, FlowStatsReplied, FlowsConfirmed, MirrorKey, MirrorTimer,
    Noted, NoteKind, PortBound, PortLearnt, QueryFlows, ReplaceFlows, RequestFlowStats, SwitchDown, SwitchUp,
)
from .liveness import AnchorTraffic
from .mirror import FlowMirror, Switch, configured_switches

__all__ = [
    "AnchorTraffic", "ApplyDiff", "BarrierReplied", "CoreOutput", "FlowMirror", "FlowStatsReady", "FlowStatsReplied",
    "FlowsConfirmed", "MirrorKey", "MirrorTimer", "NoteKind", "Noted", "PortBound", "PortLearnt", "QueryFlows",
    "ReplaceFlows", "RequestFlowStats",
    "Switch", "SwitchDown", "SwitchUp", "configured_switches",
]
