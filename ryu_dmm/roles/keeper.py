"""The shell side of OpenFlow roles in the CMD process: one greenthread runs the election's rounds
against Redis, role requests go out on the datapaths, role replies and errors come back from the
CMD's OpenFlow handlers. What promotion and demotion mean for the CMD (reconcile the switches from
the shared state; stop writing to one) is the two callbacks the CMD gives: ``on_promoted`` gets
every switch a round promoted at once (docs/openflow-roles.md)."""
from __future__ import annotations

import os
import socket
import time
from typing import Callable, Optional

from ..runtime import hub
from .feed import ChangeFeed
from .election import (
    Claim, Connected, Demoted, Disconnected, Election, Leases, Promoted, Release, RequestRole, RoleRefused,
    RoleReplied, Round,
)


class RoleKeeper:
    def __init__(self, election: Election, leases, renew_interval: float, on_promoted: Callable[[list], None],
                 on_demoted: Callable[[str], None], guard) -> None:
        self.election, self._leases, self._interval = election, leases, renew_interval
        self._promoted, self._demoted, self._guard = on_promoted, on_demoted, guard
        self._dps: dict = {}  # MAAR address -> its datapath (this instance's connection)
        self._wake = hub.Event()
        self._thread = self._feed = None
        self.counts = {"rounds": 0, "store_failed": 0, "promoted": 0, "demoted": 0, "role_refused": 0,
                       "writes_refused": 0}

    def start(self) -> None:
        self._thread = hub.spawn(self._loop)

    def stop(self) -> None:
        """Stop the rounds and give up our leases, so the other instances take over at once."""
        if self._thread is not None:
            hub.kill(self._thread)
            self._thread = None
        held = [m for m in self._dps if self.election.is_master(m)]
        for maar in list(self._dps):
            self._event(Disconnected(maar), release=False)
        if held:
            self._guard.call("roles", self._leases.release, held)
        self._leases.close()

    # ---- from the CMD's OpenFlow handlers ----------------------------------------------------------
    def connected(self, maar: str, dp) -> None:
        self._dps[maar] = dp
        self._event(Connected(maar))
        self._wake.set()  # its first claim now, not at the next round

    def disconnected(self, maar: str) -> None:
        self._event(Disconnected(maar))
        self._dps.pop(maar, None)

    def role_reply(self, maar: str, role: int, generation: int) -> None:
        ofp = self._dps[maar].ofproto if maar in self._dps else None
        if ofp is not None:
            self._event(RoleReplied(maar, role == ofp.OFPCR_ROLE_MASTER, generation))

    def error(self, maar: str, msg) -> None:
        """An OFPT_ERROR: a refused role request, or a write refused because we are a slave there."""
        ofp = msg.datapath.ofproto
        if msg.type == ofp.OFPET_ROLE_REQUEST_FAILED:
            self.counts["role_refused"] += 1
            self._event(RoleRefused(maar))
        elif msg.type == ofp.OFPET_BAD_REQUEST and msg.code == ofp.OFPBRC_IS_SLAVE:
            self.counts["writes_refused"] += 1  # should stay 0: a write raced a take-over

    def is_master(self, maar: str) -> bool:
        return self.election.is_master(maar)

    def feed(self, on_changed: Callable[[list], None], on_gap: Callable[[], None]) -> ChangeFeed:
        """The change feed (feed.py) on the leases' Redis, for active-active instances."""
        self._feed = ChangeFeed(self._leases.client, self._leases.channel, self.election.instance, on_changed,
                                on_gap, self._guard)
        return self._feed

    def state(self) -> dict:
        feed = {f"feed_{k}": v for k, v in self._feed.counts.items()} if self._feed is not None else {}
        return {"instance": self.election.instance, "switches": self.election.state(), **self.counts, **feed}

    # ---- the election's effects ----------------------------------------------------------------------
    def _event(self, event, release: bool = True) -> None:
        self._apply(self.election.handle(event, time.monotonic()), release)

    def _apply(self, effects, release: bool = True) -> None:
        releases, promoted = [], []
        for e in effects:
            kind = type(e)
            if kind is RequestRole:
                dp = self._dps.get(e.maar)
                if dp is not None:
                    ofp = dp.ofproto
                    role = ofp.OFPCR_ROLE_MASTER if e.master else ofp.OFPCR_ROLE_SLAVE
                    self._guard.call("roles", dp.send_msg, dp.ofproto_parser.OFPRoleRequest(dp, role, e.generation))
            elif kind is Promoted:
                self.counts["promoted"] += 1
                promoted.append(e.maar)
            elif kind is Demoted:
                self.counts["demoted"] += 1
                self._guard.call("roles", self._demoted, e.maar)
            elif kind is Release:
                releases.append(e.maar)
        if promoted:  # together: the shared state is read once for all of them; in a greenthread of its
            hub.spawn(self._guard.call, "roles", self._promoted, promoted)  # own, so renewals go on meanwhile
        if releases and release:  # off this greenthread: an OpenFlow handler must not wait for Redis
            hub.spawn(self._guard.call, "roles", self._leases.release, releases)

    def _loop(self) -> None:
        while True:
            self._guard.call("roles", self._round)
            now = time.monotonic()
            deadline = self.election.next_deadline()
            wait = self._interval if deadline is None else max(0.0, min(self._interval, deadline - now))
            self._wake.wait(wait)
            self._wake.clear()

    def _round(self) -> None:
        effects = self.election.handle(Round(), time.monotonic())
        claims = [e for e in effects if type(e) is Claim]
        self._apply([e for e in effects if type(e) is not Claim])  # leases that ran out: step down first
        sent_at = time.monotonic()
        try:
            outcomes = self._leases.round(claims)
        except Exception as exc:  # noqa: BLE001 - Redis unreachable or slow: our leases run out locally
            self.counts["store_failed"] += 1
            self._guard.log.warning("roles", "store_failed", "switch leases: Redis did not answer: %s", exc)
            outcomes = ()
        self.counts["rounds"] += 1
        self._apply(self.election.handle(Leases(sent_at, outcomes), time.monotonic()))


def keeper_for(settings, domain, guard, on_promoted: Callable[[list], None],
               on_demoted: Callable[[str], None]) -> Optional[RoleKeeper]:
    """The keeper ``[roles]`` asks for (``settings``: ``domainconf.CmdSettings``), or None: no
    ``redis``, one instance. ``redis = store``: the binding store's Redis (its URL or Sentinels)."""
    roles, st = settings.roles, settings.store
    if not roles.redis:
        return None
    from .redislease import RedisLeases
    instance = roles.instance or st.instance or f"{socket.gethostname()}-{os.getpid()}"
    dpids = {m.address: m.datapath_id for m in domain.maars if m.datapath_id is not None}
    if roles.redis == "store":
        leases = RedisLeases.from_url(st.url, instance, dpids, roles.lease_ttl, roles.key_prefix, st.sentinels,
                                      st.service)
    else:
        leases = RedisLeases.from_url(roles.redis, instance, dpids, roles.lease_ttl, roles.key_prefix)
    return RoleKeeper(Election(instance, dpids, roles.lease_ttl), leases, roles.renew_interval,
                      on_promoted, on_demoted, guard)
