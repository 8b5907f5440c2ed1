"""Which CMD instance is OpenFlow master of which MAAR switch, as a sans-IO state machine.

Every switch connects to every CMD instance; per switch one instance holds a lease in a shared
store (Redis: ``redislease.py``) and is master, the others are slaves (docs/openflow-roles.md).
This module decides from lease outcomes and the switch's role replies; it does no I/O and reads
no clock: events and ``now`` (a monotonic clock) in, effects out.

- ``Round`` (every ``renew_interval``): ``Claim`` each connected switch (take the lease if it is
  free, renew it if it is ours), and drop mastership whose lease may have expired unrenewed.
- ``Leases``: the claims' outcomes (holder, generation). The holder asks its switch to be master
  with the lease's generation id (``RequestRole``); the others ask to be slaves.
- ``RoleReplied``: the switch confirmed; only then ``Promoted`` (the shell reconciles the switch
  from the shared state and may write to it). ``Demoted``: it must not write any more.

Our lease counts as held until ``sent_at + lease_ttl - guard``, ``sent_at`` being when the claim
that granted or renewed it was sent: earlier than the store started the lease, so this instance
stops writing before any other can take it over. The switch fences as well: it refuses a role
request whose generation id is older than one it has seen, and writes from a slave.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Optional

LEASE_TTL = 1.5  # seconds a lease lives without renewal: a dead master's switches are free after it
RENEW_INTERVAL = 0.5  # seconds between rounds (claims and renewals)
GUARD = 0.3  # seconds before the lease's end at which we stop acting as master (>= the store's timeout)


class Role(Enum):
    UNKNOWN = "unknown"  # connected, no lease outcome yet (or the store is unreachable)
    SLAVE = "slave"
    PROMOTING = "promoting"  # we hold the lease; the switch has not confirmed the master role yet
    MASTER = "master"


# ---- events ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Connected:
    maar: str


@dataclass(frozen=True, slots=True)
class Disconnected:
    maar: str


@dataclass(frozen=True, slots=True)
class Round:
    """Time for claims and renewals (and to give up leases that may have run out)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """A lease as the store answered: who holds it (None: nobody) and the switch's generation id."""

    maar: str
    holder: Optional[str]
    generation: int


@dataclass(frozen=True, slots=True)
class Leases:
    """The answers to one round's claims, sent at ``sent_at``; ``outcomes`` empty: the store did not answer."""

    sent_at: float
    outcomes: tuple[Outcome, ...]


@dataclass(frozen=True, slots=True)
class RoleReplied:
    """The switch's OFPT_ROLE_REPLY: the role it now gives us and its generation id."""

    maar: str
    master: bool
    generation: int


@dataclass(frozen=True, slots=True)
class RoleRefused:
    """The switch refused our role request (OFPRRFC_STALE: a newer generation id was seen)."""

    maar: str


# ---- effects --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Claim:
    """Take the switch's lease if free (the generation id goes up), renew it if ours; ``bump``: ours,
    but the switch saw a newer generation id (the store lost some): take a higher one."""

    maar: str
    bump: bool = False


@dataclass(frozen=True, slots=True)
class Release:
    """Give the lease up if still ours (we lost the switch or stop): another instance takes it at once."""

    maar: str


@dataclass(frozen=True, slots=True)
class RequestRole:
    """Send OFPT_ROLE_REQUEST: master or slave, with this generation id."""

    maar: str
    master: bool
    generation: int


@dataclass(frozen=True, slots=True)
class Promoted:
    """We are the switch's master: reconcile its flows from the shared state; writes allowed."""

    maar: str
    generation: int


@dataclass(frozen=True, slots=True)
class Demoted:
    """We are no longer the switch's master: no flow-mod, barrier or packet-out may go to it."""

    maar: str


@dataclass
class _Switch:
    connected: bool = False
    role: Role = Role.UNKNOWN
    holder: Optional[str] = None  # from the latest outcome
    generation: int = 0  # from the latest outcome
    held_until: float = 0.0  # our lease's local end; 0: not ours
    requested: Optional[tuple[bool, int]] = None  # the last role request sent: (master, generation)
    bump: bool = False


class Election:
    """One CMD instance's view of the mastership of every configured switch (module docstring)."""

    def __init__(self, instance: str, switches, lease_ttl: float = LEASE_TTL, guard: float = GUARD) -> None:
        if not 0 < guard < lease_ttl:
            raise ValueError("the guard must be shorter than the lease")
        self.instance = instance
        self.lease_ttl, self.guard = lease_ttl, guard
        self._sw = {maar: _Switch() for maar in switches}

    # ---- read-only queries ----------------------------------------------------------------------
    def is_master(self, maar: str) -> bool:
        sw = self._sw.get(maar)
        return sw is not None and sw.role is Role.MASTER

    def state(self) -> dict:
        """Per switch: this instance's role, the lease's holder (which instance is master) and its
        generation id, as of the latest round."""
        return {maar: {"role": sw.role.value if sw.connected else "disconnected", "master": sw.holder,
                       "generation": sw.generation}
                for maar, sw in self._sw.items()}

    def next_deadline(self) -> Optional[float]:
        """The earliest local end of a lease we hold: the shell's next round is due by then."""
        ends = [sw.held_until for sw in self._sw.values() if sw.held_until]
        return min(ends) if ends else None

    # ---- events ---------------------------------------------------------------------------------
    def handle(self, event, now: float) -> list:
        kind = type(event)
        out: list = []
        if kind is Round:
            self._expire(now, out)
            for maar, s in self._sw.items():
                if s.connected:
                    out.append(Claim(maar, s.bump))
                    s.bump = False
        elif kind is Leases:
            self._expire(now, out)
            for o in event.outcomes:
                s = self._sw.get(o.maar)
                if s is not None:
                    self._outcome(o, s, event.sent_at, now, out)
        elif event.maar in self._sw:
            self._switch_event(event, self._sw[event.maar], now, out)
        return out

    def _switch_event(self, event, sw: _Switch, now: float, out: list) -> None:
        kind = type(event)
        if kind is Connected:
            sw.connected, sw.role, sw.requested = True, Role.UNKNOWN, None
        elif kind is Disconnected:
            was = sw.role
            sw.connected, sw.role, sw.requested = False, Role.UNKNOWN, None
            if was is Role.MASTER:
                out.append(Demoted(event.maar))
            if sw.held_until:
                sw.held_until = 0.0
                out.append(Release(event.maar))
        elif kind is RoleReplied:
            if (sw.role is Role.PROMOTING and event.master and event.generation == sw.generation
                    and sw.held_until > now):
                sw.role = Role.MASTER
                out.append(Promoted(event.maar, event.generation))
            elif not event.master and sw.role in (Role.PROMOTING, Role.MASTER):
                self._step_down(event.maar, sw, out)
        elif kind is RoleRefused:
            if sw.role in (Role.PROMOTING, Role.MASTER):
                self._step_down(event.maar, sw, out)
                sw.bump = sw.held_until > 0  # still ours in the store: the next claim takes a newer id

    def _outcome(self, o: Outcome, sw: _Switch, sent_at: float, now: float, out: list) -> None:
        sw.holder, sw.generation = o.holder, o.generation
        if not sw.connected:
            return
        ours = o.holder == self.instance and sent_at + self.lease_ttl - self.guard > now
        if ours:
            sw.held_until = sent_at + self.lease_ttl - self.guard
            if sw.role is Role.MASTER and sw.requested == (True, o.generation):
                return  # a renewal
            if sw.role is Role.MASTER:  # a new generation (a bump): confirm it again before writing
                out.append(Demoted(o.maar))
            sw.role = Role.PROMOTING  # asked again every round until the switch answers
            self._request(o.maar, sw, True, o.generation, out)
            return
        if o.holder == self.instance:  # granted, but the answer came too late to count on it
            sw.held_until = 0.0
            out.append(Release(o.maar))
        if sw.role in (Role.PROMOTING, Role.MASTER):
            self._step_down(o.maar, sw, out)
        if o.holder is not None:
            sw.role = Role.SLAVE
            if sw.requested != (False, o.generation) and o.generation > 0:
                self._request(o.maar, sw, False, o.generation, out)

    def _expire(self, now: float, out: list) -> None:
        for maar, sw in self._sw.items():
            if sw.held_until and sw.held_until <= now:
                sw.held_until = 0.0
                if sw.role in (Role.PROMOTING, Role.MASTER):
                    self._step_down(maar, sw, out)

    def _step_down(self, maar: str, sw: _Switch, out: list) -> None:
        """Stop writing to the switch; tell it we are a slave (so it stops sending us packet-ins)."""
        if sw.role is Role.MASTER:
            out.append(Demoted(maar))
        sw.role = Role.UNKNOWN
        if sw.connected and sw.generation > 0:
            self._request(maar, sw, False, sw.generation, out)

    @staticmethod
    def _request(maar: str, sw: _Switch, master: bool, generation: int, out: list) -> None:
        sw.requested = (master, generation)
        out.append(RequestRole(maar, master, generation))
