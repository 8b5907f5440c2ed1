"""Anchor liveness from the switches' own counters: is an MN's old prefix still carrying traffic?

RFC 8885 keeps a P-MAAR in a session while it "is still involved in an active flow". Every packet
of an old prefix crosses the tunnel between the serving MAAR and the anchor, and leaves it through
one ``from_tunnel`` flow (pipeline.md): downlink at the serving MAAR (``ipv6_dst`` = the prefix),
uplink at the anchor (``ipv6_src`` = the prefix). So the packet counters of table ``from_tunnel``
of the two switches count both directions, and nothing else: the flow mirror polls that table and
feeds the replies here. Pure bookkeeping (no effects, no clock): the mirror asks, this tells it which
anchors have been idle for the timeout. See docs/anchor-release.md.

Counters restart at 0 when the mirror replaces an MN's flows (delete by cookie, then add) or a
switch reconnects (possibly restarted); a reply to a request sent before such a reset is compared
with the counts before it, a later one with 0; a reconnection restarts the idle clocks of its
anchors (what the switch counted since the last poll may be lost). Any doubt counts as traffic: a
wrong guess keeps an anchor one timeout longer, never releases one early.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

from ..mobility.views import Session
from ..pipeline import InstalledFlow, canonical, cookie_of
from ..wire import Prefix

AnchorKey = tuple[str, str]  # (MN, P-MAAR address)


@dataclass(frozen=True, slots=True)
class AnchorTraffic:
    """What REST shows of one anchor: when traffic was last seen (the request time of the poll that
    saw it: at most one poll interval after the packet; None: none since it became an anchor or the
    CMD started), since when it is idle, and packets counted leaving its tunnel at either end."""

    maar: str
    prefix: Prefix
    last_traffic: Optional[float]
    idle_since: float
    uplink_packets: int
    downlink_packets: int


@dataclass(slots=True)
class _Counter:
    """One end's counter: the value last read, and the poll id after which it restarted at 0."""

    seen: int = 0
    reset_after: int = 0  # 0: no reset pending


@dataclass(slots=True)
class _Anchor:
    mn_id: str
    maar: str  # the P-MAAR
    prefix: Prefix
    serving: str
    idle_since: float  # last traffic seen, or when the anchor (or its serving MAAR) became what it is
    last_traffic: Optional[float] = None
    uplink: int = 0
    downlink: int = 0
    ends: dict[str, _Counter] = field(default_factory=dict)  # switch -> its counter
    polled: dict[str, float] = field(default_factory=dict)  # switch -> request time of its latest reply


class AnchorLiveness:
    """Anchors of every session, their counters at both tunnel ends and their idle clocks.
    At most one entry per (MN, P-MAAR) of the CMD's sessions: bounded by the core's sessions x
    ``max_pmaars``."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._anchors: dict[AnchorKey, _Anchor] = {}
        self._at: dict[str, set[AnchorKey]] = {}  # switch -> anchors it is an end of

    def __len__(self) -> int:
        return len(self._anchors)

    def switches(self) -> list[str]:
        """The switches worth polling: an end of at least one anchor."""
        return [m for m, keys in self._at.items() if keys]

    def traffic(self, mn_id: str) -> list[AnchorTraffic]:
        return [AnchorTraffic(a.maar, a.prefix, a.last_traffic, a.idle_since, a.uplink, a.downlink)
                for a in self._anchors.values() if a.mn_id == mn_id] if self._anchors else []

    # ---- what the sessions say ----------------------------------------------------------------
    def session(self, mn_id: str, old: Optional[Session], new: Optional[Session], now: float) -> None:
        """The MN's session changed. An anchor that stays, with the same serving MAAR and prefix,
        keeps its clock; a new one, or one whose MN moved on (a handover: the release loses
        against it), starts idle now."""
        before = {(mn_id, a): p for a, p in old.pmaars} if old is not None else {}
        after = {(mn_id, a): p for a, p in new.pmaars} if new is not None else {}
        for key in before:
            a = self._anchors.get(key)
            if a is not None and (after.get(key) != a.prefix or new.serving != a.serving):
                self._drop(key)
        for key, prefix in after.items():
            if key not in self._anchors:
                a = self._anchors[key] = _Anchor(mn_id, key[1], prefix, new.serving, now)
                for end in (a.serving, a.maar):
                    a.ends[end] = _Counter()
                    self._at.setdefault(end, set()).add(key)

    def _drop(self, key: AnchorKey) -> None:
        a = self._anchors.pop(key)
        for end in a.ends:
            keys = self._at.get(end)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._at[end]

    def pushed(self, maar: str, mn_id: str, after: int) -> None:
        """The MN's flows at ``maar`` were replaced by the push with id ``after``: their counters
        restart at 0 for every poll sent after it."""
        for key in self._at.get(maar, ()):
            if key[0] == mn_id:
                self._anchors[key].ends[maar].reset_after = after

    def switch_up(self, maar: str, after: int, now: float) -> None:
        """``maar``'s switch (re)connected, maybe restarted: every counter there may be back at 0,
        and what it counted since the last poll is lost. Unknown counts as traffic: the idle clock
        of every anchor with an end there restarts now."""
        for key in self._at.get(maar, ()):
            a = self._anchors[key]
            a.ends[maar].reset_after = after
            a.idle_since = max(a.idle_since, now)

    # ---- what the switches say ----------------------------------------------------------------
    def observe(self, maar: str, poll: int, requested_at: float, flows: Iterable[InstalledFlow]) -> list[_Anchor]:
        """A complete reply to poll ``poll`` (sent at ``requested_at``) for ``maar``'s table
        from_tunnel. Returns the anchors now idle for the timeout at both ends."""
        keys = self._at.get(maar)
        if not keys:
            return []
        counts: dict[tuple[int, str], int] = {}
        for f in flows:
            for name, value in f.match:
                if name in ("ipv6_src", "ipv6_dst"):
                    counts[(f.cookie, value)] = counts.get((f.cookie, value), 0) + f.packets
        idle = []
        for key in keys:
            a = self._anchors[key]
            end = a.ends[maar]
            base = end.seen
            if end.reset_after and poll > end.reset_after:
                base, end.reset_after = 0, 0
            count = counts.get((cookie_of(a.mn_id), canonical("ipv6_dst", str(a.prefix))), 0)
            new = count - base if count >= base else count  # below: restarted unseen; all since then is new
            end.seen = count
            if new > 0:
                if maar == a.maar:
                    a.uplink += new
                else:
                    a.downlink += new
                a.idle_since = a.last_traffic = max(a.idle_since, requested_at)
            a.polled[maar] = requested_at
            if self.timeout and all(a.polled.get(e, -1.0) >= a.idle_since + self.timeout for e in a.ends):
                idle.append(a)
        return idle
