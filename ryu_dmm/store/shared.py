"""Per-MN consistency between several CMDs on one store, as a sans-IO state machine (active-active,
docs/deploy-cmds.md).

Every event about an MN is handled by the local core at once, but what it caused is carried out
only after the shared store confirmed that the sessions the event read had not changed meanwhile:
a check-and-set on their versions writes the sessions it changed (``Persist``) and checks the
others (``VERIFY``). Won: its effects go out (the PBA after the store acknowledged: the durability
rule). Lost: another instance changed the MN first; the shell reloads the sessions as they are now
into the core (``CmdCore.reload``), drops the effects and handles the event again, so the answer
comes from the winner's state. While an MN's check is in flight, its next events wait here, in
order; so one instance never races itself.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Optional

from ..mobility.events import Persist
from ..mobility.views import Record

MAX_WAITING = 65536  # events waiting behind an MN's check, over all MNs; one more is dropped (its MAAR sends again)
MAX_WAITING_PER_MN = 16
MAX_TRIES = 4  # an event handled again after this many lost checks in a row is dropped (counted)
MAX_OPEN = 65536  # checks submitted and not settled (Redis slow or away); an event beyond is not handled
VERIFY = object()  # (mirrors redisstore.VERIFY: check the version only)


@dataclass(frozen=True)
class Current:
    """A session as the store holds it now (after a lost check-and-set, or read for a take-over)."""

    mn_id: str
    version: int
    record: Optional[Record]  # None: no session
    owner: str  # the instance holding its timers ("" if none)


@dataclass
class Check:
    """One event's check-and-set: (MN, version it saw, Record | None | VERIFY) per session."""

    subject: Optional[str]
    event: object
    effects: list
    items: list
    tries: int
    at: float = 0.0  # when the event came: it is handled again as of then (a PBU's timestamp window)
    sent: bool = False


@dataclass
class SharedGate:
    max_waiting: int = MAX_WAITING
    max_per_mn: int = MAX_WAITING_PER_MN
    max_tries: int = MAX_TRIES
    max_open: int = MAX_OPEN
    versions: dict = field(default_factory=dict)  # MN -> the version this instance last saw (absent: 0)
    _busy: dict = field(default_factory=dict)  # MN -> its Check in flight
    _waiting: dict = field(default_factory=dict)  # MN -> deque of (event) behind it
    _waiting_count: int = 0
    _todo: list = field(default_factory=list)
    _open: int = 0  # checks submitted, not settled
    dropped: int = 0  # events dropped: too many waiting
    gave_up: int = 0  # events dropped after MAX_TRIES lost checks
    won: int = 0
    lost: int = 0

    def busy(self, mn_id: str) -> bool:
        return mn_id in self._busy

    def full(self) -> bool:
        """``max_open`` checks are unsettled: the shell drops the next event before handling it
        (counted; its MAAR retransmits), so the core never changes what cannot be checked."""
        if self._open >= self.max_open:
            self.dropped += 1
            return True
        return False

    def wait(self, mn_id: str, event) -> bool:
        """Keep ``event`` (with its arrival time, as the shell likes) until ``mn_id``'s check is
        settled; False: dropped (a bound was reached)."""
        q = self._waiting.get(mn_id)
        if self._waiting_count >= self.max_waiting or (q is not None and len(q) >= self.max_per_mn):
            self.dropped += 1
            return False
        self._waiting.setdefault(mn_id, deque()).append(event)
        self._waiting_count += 1
        return True

    def submit(self, subject: Optional[str], event, effects: list, tries: int = 0, at: float = 0.0) -> Check:
        """The core handled ``event`` into ``effects``: check (and write) before carrying them out."""
        items, seen = [], set()
        for e in effects:
            if type(e) is Persist and e.mn_id not in seen:
                seen.add(e.mn_id)
                items.append((e.mn_id, self.versions.get(e.mn_id, 0), e.record))
        if subject is not None and subject not in seen:
            items.append((subject, self.versions.get(subject, 0), VERIFY))
        check = Check(subject, event, [e for e in effects if type(e) is not Persist], items, tries, at)
        for mn_id, _, _ in items:
            self._busy[mn_id] = check
        self._todo.append(check)
        self._open += 1
        return check

    def take(self) -> list[Check]:
        """The checks to send now (all in one pipeline)."""
        todo, self._todo = self._todo, []
        for c in todo:
            c.sent = True
        return todo

    def settled(self, check: Check, won: bool, versions: dict, now_held: list) -> Optional[object]:
        """The store answered. ``won``: ``versions`` are the written sessions' new ones. Lost:
        ``now_held`` lists (MN, version) of the sessions that had changed, which the shell reloads.
        Returns the event to handle again (lost, tries left), else None."""
        self._open -= 1
        for mn_id, _, _ in check.items:
            if self._busy.get(mn_id) is check:
                del self._busy[mn_id]
        if won:
            self.won += 1
            for mn_id, v in versions.items():
                if v:
                    self.versions[mn_id] = v
                else:
                    self.versions.pop(mn_id, None)
            return None
        self.lost += 1
        for mn_id, v in now_held:
            if v:
                self.versions[mn_id] = v
            else:
                self.versions.pop(mn_id, None)
        if check.tries + 1 >= self.max_tries:
            self.gave_up += 1
            return None
        return check.event

    def next_waiting(self, mn_id: str):
        """The next event that waited for ``mn_id`` (None: none, or the MN is busy again)."""
        if mn_id in self._busy:
            return None
        q = self._waiting.get(mn_id)
        if not q:
            return None
        event = q.popleft()
        self._waiting_count -= 1
        if not q:
            del self._waiting[mn_id]
        return event

    @property
    def todo(self) -> bool:
        """Checks wait to be sent (the shell kicks its writer)."""
        return bool(self._todo)

    def state(self) -> dict:
        return {"checks_won": self.won, "checks_lost": self.lost, "in_flight": self._open,
                "waiting": self._waiting_count, "dropped": self.dropped, "gave_up": self.gave_up}


class SharedCore:
    """One CMD's core among several on one store (active-active), sans-IO: what the shell did with
    the gate's verdicts, so that it can be run and tested without Redis (tests/test_shared_gate.py
    runs two of them against a model of the store). ``handle`` and ``settled`` return the effects
    to carry out now; the checks they submit wait in the gate for the shell's writer. A failing
    event (a bug) is kept in ``errors`` for the shell to report, never costing the events behind it."""

    def __init__(self, core, instance: str, gate: Optional[SharedGate] = None) -> None:
        self.core, self.instance = core, instance
        self.gate = gate if gate is not None else SharedGate()
        self.dead: frozenset = frozenset()  # instances whose lease ran out (the shell's lease rounds)
        self.errors: list[Exception] = []

    def handle(self, event, now: float, tries: int = 0, at: float = 0.0) -> list:
        """``event`` (``at``: when it came, if earlier than ``now``: it is handled as of then)."""
        when = at or now
        gate, subject = self.gate, self.core.subject(event)
        if subject is not None and gate.busy(subject):  # its previous event is being checked: after it
            gate.wait(subject, (event, when))
            return []
        if subject is not None and gate.full():  # the store is slow or away: not handled at all
            return []
        effects = self.core.handle(event, when)
        if subject is None and not any(type(e) is Persist for e in effects):
            return effects
        if any(type(e) is Persist and e.mn_id == subject for e in effects):  # we become its owner:
            effects += self.core.finish_handover(subject, when)  # another CMD's open handover is ours now
        gate.submit(subject, event, effects, tries, when)
        return []

    def settled(self, check: Check, won: bool, versions: dict, current: list, now: float) -> list:
        """The store's verdict on ``check``: won, its effects; lost, the changed sessions reloaded
        (``current``: ``Current`` of each) and the event handled again. Then the events that waited."""
        again = self.gate.settled(check, won, versions, [(c.mn_id, c.version) for c in current])
        effects: list = []
        try:
            if won:
                effects += check.effects
            else:
                for c in current:  # an unfinished handover is finished by its owner, unless that is us or dead
                    mine = c.owner in ("", self.instance) or c.owner in self.dead
                    effects += self.core.reload(c.mn_id, c.record, now, renotify=mine)
                if again is not None:
                    effects += self.handle(again, now, check.tries + 1, check.at)
        except Exception as exc:  # noqa: BLE001 - reported by the shell
            self.errors.append(exc)
        for mn_id, _, _ in check.items:
            while (waiting := self.gate.next_waiting(mn_id)) is not None:
                try:
                    effects += self.handle(waiting[0], now, 0, waiting[1])
                except Exception as exc:  # noqa: BLE001 - reported by the shell
                    self.errors.append(exc)
        return effects

    def adopted(self, adopted: list, now: float) -> list:
        """Sessions of a dead instance this one now owns ((``Current``, new version) each): their
        timers armed here, their unfinished handovers sent to the P-MAARs again."""
        effects: list = []
        for current, version in adopted:
            self.gate.versions[current.mn_id] = version
            effects += self.core.reload(current.mn_id, current.record, now)
        return effects
