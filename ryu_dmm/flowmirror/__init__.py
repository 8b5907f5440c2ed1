"""The CMD's flow mirror: every MAAR switch's flow table kept equal to the CMD's sessions (sans-IO)."""
from .events import (
    ApplyDiff, BarrierReplied, CoreOutput, FlowStatsReady, FlowStatsReplied, FlowsConfirmed, MirrorKey, MirrorTimer,
    Noted, NoteKind, PortBound, PortLearnt, QueryFlows, ReplaceFlows, RequestFlowStats, SwitchDown, SwitchUp,
)
from .liveness import AnchorTraffic
from .mirror import FlowMirror, Switch

__all__ = [
    "AnchorTraffic", "ApplyDiff", "BarrierReplied", "CoreOutput", "FlowMirror", "FlowStatsReady", "FlowStatsReplied",
    "FlowsConfirmed", "MirrorKey", "MirrorTimer", "NoteKind", "Noted", "PortBound", "PortLearnt", "QueryFlows",
    "ReplaceFlows", "RequestFlowStats",
    "Switch", "SwitchDown", "SwitchUp",
]
