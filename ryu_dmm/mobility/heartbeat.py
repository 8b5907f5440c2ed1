"""RFC 5847 liveness of signalling peers: Heartbeat requests and answers, missed answers, restarts.

Sans-IO like the cores, which each own one ``Heartbeats`` (the MAAR: the CMD as its one peer; the
CMD: every MAAR). It sends a request (R=0, a 32-bit sequence number per peer, our Restart Counter
option) to each watched peer every ``interval`` seconds; a request still unanswered when the next
one is due is a miss, and ``missing_allowed`` misses in a row make the peer unreachable (RFC 5847
§5: HEARTBEAT_INTERVAL, MISSING_HEARTBEATS_ALLOWED). It answers every request from a watched peer
(R=1, the same sequence number, our counter). A Restart Counter that differs from the one known for
a peer means the peer restarted and lost its state: ``handle_message`` returns ``PeerRestarted`` so
that the owning core re-establishes what it holds (FACTS.md, "Liveness and restart").

Bounded: state is kept for watched peers only (the domain's configured peers); a Heartbeat from any
other address is dropped and counted in ``counters["not_a_peer"]``.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import NamedTuple, Optional

from ..wire import Heartbeat, RestartCounter
from .events import Effect, Report, ReportKind, Send, SetTimer



class HeartbeatKey(NamedTuple):
    """The next request to ``peer``. One field: a 1-tuple never equals the cores' 2-field keys
    (``TimerKey``, ``RetxKey``) nor the shells' (``MirrorKey``, ``HttpKey``) on a shared heap."""

    peer: str


@dataclass(frozen=True, slots=True)
class PeerRestarted:
    """``peer``'s Restart Counter went from ``old`` to ``new``: it lost its bindings."""

    peer: str
    old: int
    new: int


@dataclass(frozen=True, slots=True)
class PeerView:
    """What the monitor knows of one peer, for REST, the agent's ``state`` and metrics."""

    peer: str
    reachable: bool
    last_heard: Optional[float]  # when its last accepted Heartbeat (request or answer) came
    restart_counter: Optional[int]  # the counter it last sent, or the one we were told to expect
    missed: int  # our requests unanswered in a row
    restarts: int  # counter changes seen since we started


@dataclass(slots=True)
class _Peer:
    seq: int = 0  # the sequence number of our last request
    outstanding: bool = False  # that request is unanswered
    missed: int = 0
    reachable: bool = True
    last_heard: Optional[float] = None
    counter: Optional[int] = None
    restarts: int = 0


def _phase(peer: str) -> float:
    """A fixed number in [0, 1) per peer address (no randomness: runs are reproducible)."""
    return zlib.crc32(peer.encode()) / 2**32


class Heartbeats:
    """Heartbeat state of one node towards its peers. ``interval`` 0 sends no requests (requests
    from peers are still answered and their counters still watched)."""

    def __init__(self, own_counter: int, interval: float, missing_allowed: int) -> None:
        if not 0 <= own_counter <= 0xFFFF_FFFF:
            raise ValueError(f"restart counter {own_counter} out of 0..2**32-1")
        if interval < 0 or missing_allowed < 1:
            raise ValueError("heartbeat interval must be >= 0 and missing_allowed >= 1")
        self.own_counter = own_counter
        self.interval = interval
        self.missing_allowed = missing_allowed
        self._peers: dict[str, _Peer] = {}
        self.counters = {"not_a_peer": 0, "unexpected_responses": 0}

    def watch(self, peer: str, now: float, known_counter: Optional[int] = None,
              first_at: Optional[float] = None) -> list[Effect]:
        """Start monitoring ``peer`` (again: its state starts afresh). ``known_counter``: its Restart
        Counter as last known (say, persisted before our own restart), so that a change is seen at
        its first answer. ``first_at``: when to send the first request (default: see below)."""
        self._peers[peer] = _Peer(counter=known_counter)
        if not self.interval:
            return []
        # The first request within one interval, at an offset derived from the peer's address: N
        # peers watched at once (a CMD starting) do not all fire together, and every later request
        # keeps that phase. A peer that restarted meanwhile is noticed sooner by its own request.
        at = now + self.interval * _phase(peer) if first_at is None else first_at
        return [SetTimer(HeartbeatKey(peer), at)]

    def handle_timer(self, key: HeartbeatKey, now: float) -> list[Effect]:
        """Send the next request to ``key.peer``; count a miss if the previous one is unanswered."""
        p = self._peers.get(key.peer)
        if p is None or not self.interval:
            return []
        effects: list[Effect] = []
        if p.outstanding:
            p.missed += 1
            if p.missed == self.missing_allowed and p.reachable:
                p.reachable = False
                effects.append(Report(ReportKind.PEER_UNREACHABLE, "", f"{key.peer}: {p.missed} heartbeats "
                                      "unanswered"))
        p.seq = (p.seq + 1) & 0xFFFF_FFFF
        p.outstanding = True
        effects.append(Send(key.peer, Heartbeat(p.seq, options=(RestartCounter(self.own_counter),))))
        effects.append(SetTimer(key, now + self.interval))
        return effects

    def handle_message(self, src: str, hb: Heartbeat, now: float) -> tuple[list[Effect], Optional[PeerRestarted]]:
        """A Heartbeat from ``src``: answer a request, take an answer to our outstanding request
        (another is dropped and counted), and report a changed Restart Counter."""
        p = self._peers.get(src)
        if p is None:
            self.counters["not_a_peer"] += 1
            return [], None
        effects: list[Effect] = []
        if not hb.response:
            effects.append(Send(src, Heartbeat(hb.sequence, response=True,
                                               options=(RestartCounter(self.own_counter),))))
        elif p.outstanding and hb.sequence == p.seq:
            p.outstanding, p.missed = False, 0
            if not p.reachable:
                p.reachable = True
                effects.append(Report(ReportKind.PEER_REACHABLE, "", f"{src}: answers heartbeats again"))
        else:  # late (its request was counted as missed), duplicated or never asked for
            self.counters["unexpected_responses"] += 1
            return effects, None
        p.last_heard = now
        counter = hb.restart_counter
        if counter is None or counter == p.counter:
            return effects, None
        if p.counter is None:  # the first counter we learn of this peer: nothing to compare with
            p.counter = counter
            return effects, None
        restarted = PeerRestarted(src, p.counter, counter)
        p.counter = counter
        p.restarts += 1
        effects.append(Report(ReportKind.PEER_RESTARTED, "", f"{src}: restart counter {restarted.old} -> "
                              f"{restarted.new}"))
        return effects, restarted

    # ---- views ---------------------------------------------------------------------------------
    def view(self, peer: str) -> Optional[PeerView]:
        p = self._peers.get(peer)
        if p is None:
            return None
        return PeerView(peer, p.reachable, p.last_heard, p.counter, p.missed, p.restarts)

    def views(self) -> list[PeerView]:
        return [self.view(peer) for peer in self._peers]

    def known_counters(self) -> dict[str, int]:
        """Peer -> its last known Restart Counter (for the CMD to persist across its restarts)."""
        return {peer: p.counter for peer, p in self._peers.items() if p.counter is not None}
