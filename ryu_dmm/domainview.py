"""A read-only view of the running domain: what REST and the Prometheus metrics may see of the CMD.

It reads the CMD core, the flow mirror and the counters only through their public queries, and
asks the shell for a switch's installed flows through one callable (each request correlated on its
own, so several may run at once and during a reconciliation), and for the signalling sockets'
receive path (buffers, kernel drops) through another.

Cost: every query here runs on the hub between datagrams. ``sessions()`` builds a view per session
and must be consumed at once (it iterates the live binding cache); a caller that wants to spread a
long walk over several hub turns takes ``session_ids()`` (a copy of the keys in registration order,
about 1 ms per 100,000 sessions) and looks each id up with ``session()`` as it goes.
"""
from __future__ import annotations

from typing import Callable, Iterator, Optional

from .domainconf import CmdSettings
from .flowmirror import AnchorTraffic, FlowMirror
from .mobility.cmd import CmdCore
from .mobility.config import Domain, MaarInfo
from .mobility.views import Record, Session
from .pipeline import Flow, InstalledFlow, Pipeline
from .stats import Stats
from .store import StoreError

FlowQuery = Callable[[str], Optional[tuple[InstalledFlow, ...]]]


def _nothing() -> dict:
    return {}


def _session(r: Record) -> Session:
    return Session(r.mn_id, r.serving, r.prefix, r.mac, r.pmaars, r.expires, r.handover)


class DomainView:
    def __init__(self, domain: Domain, settings: CmdSettings, core: CmdCore, mirror: FlowMirror, stats: Stats,
                 query_flows: FlowQuery, receive_path: Callable[[], dict] = _nothing,
                 store_state: Callable[[], dict] = _nothing, shared=None,
                 roles_state: Optional[Callable[[], dict]] = None) -> None:
        self.domain = domain
        self.settings = settings
        self._core, self._mirror, self._stats, self._query = core, mirror, stats, query_flows
        self._receive_path = receive_path
        self._store_state = store_state
        self._shared = shared  # active-active: the Redis store every instance reads sessions from
        self._roles_state = roles_state  # None: one instance, no OpenFlow roles
        self._by_name = {m.name: m for m in domain.maars}
        self._by_address = domain.by_address()

    @property
    def pipeline(self) -> Pipeline:
        return self._mirror.pipeline

    # ---- MAARs ----------------------------------------------------------------------------------
    def maars(self) -> tuple[MaarInfo, ...]:
        return self.domain.maars

    def maar(self, name: str) -> Optional[MaarInfo]:
        return self._by_name.get(name)

    def name_of(self, address: str) -> str:
        info = self._by_address.get(address)
        return info.name if info else address

    def connected(self, maar: MaarInfo) -> bool:
        return self._mirror.connected(maar.address)

    def has_switch(self, maar: MaarInfo) -> bool:
        return self._mirror.has_switch(maar.address)

    def wanted_flows(self, maar: MaarInfo) -> list[Flow]:
        return self._mirror.wanted_flows(maar.address)

    def installed_flows(self, maar: MaarInfo) -> Optional[tuple[InstalledFlow, ...]]:
        """The switch's flows now (blocks this request only), or None if it cannot tell."""
        return self._query(maar.address)

    # ---- sessions -------------------------------------------------------------------------------
    # Active-active (docs/deploy-cmds.md): sessions are read from the shared store, so that every
    # instance answers alike (an instance's own cache holds only the sessions it has handled); if the
    # store cannot answer, from this instance's cache.
    def session(self, mn_id: str) -> Optional[Session]:
        if self._shared is not None:
            try:
                got = self._shared.read([mn_id])[0].record
                return _session(got) if got is not None else None
            except StoreError:
                pass
        return self._core.session(mn_id)

    def sessions(self) -> Iterator[Session]:
        """Every session now; consume it without yielding to the hub (it walks the live cache)."""
        if self._shared is not None:
            try:
                return iter([_session(r) for r in self._shared.records()])
            except StoreError:
                pass
        return self._core.sessions()

    def session_ids(self) -> list[str]:
        """The MN IDs of every session now, in registration order: a snapshot (no view is built)."""
        if self._shared is not None:
            try:
                return self._shared.mn_ids()
            except StoreError:
                pass
        return self._core.mn_ids()

    def session_count(self) -> int:
        if self._shared is not None:
            try:
                return self._shared.count()
            except StoreError:
                pass
        return len(self._core)

    def flows_confirmed(self, mn_id: str) -> Optional[tuple[float, float]]:
        return self._mirror.flows_confirmed(mn_id)

    def anchor_traffic(self, mn_id: str) -> dict[str, AnchorTraffic]:
        """P-MAAR address -> what its tunnel carried for the MN (empty without anchor_idle_timeout)."""
        return {t.maar: t for t in self._mirror.anchor_traffic(mn_id)}

    # ---- counters -------------------------------------------------------------------------------
    def stats(self) -> dict:
        body = self._stats.as_dict()
        body["sessions"] = self.session_count()
        body["mode"] = self.domain.mode.value
        body["dereg"] = self.domain.dereg.value
        body["receive_path"] = self._receive_path()
        body["store"] = self._store_state()
        body["peers"] = self.peers()
        body["protocol"] = self.protocol()
        if self._roles_state is not None:  # which instance is master of which switch (docs/openflow-roles.md)
            body["roles"] = self.roles()
        return body

    def roles(self) -> dict:
        """This instance's name, per switch (by MAAR name) its role here and the instance that is its
        master, with the generation id; rounds and role changes counted."""
        state = self._roles_state()
        state["switches"] = {self.name_of(a): v for a, v in state["switches"].items()}
        return state

    def protocol(self) -> dict:
        """The CMD core's receipt checks (docs/security.md): PBUs/PBAs without the D flag taken, PBAs
        ignored for a wrong echo. Fixed keys."""
        return dict(self._core.counters)

    def peers(self) -> dict:
        """RFC 5847 heartbeat state of every MAAR, by name: reachable, last heard, restart counter."""
        return {self.name_of(v.peer): {"reachable": v.reachable, "last_heard": v.last_heard,
                                       "restart_counter": v.restart_counter, "missed": v.missed,
                                       "restarts": v.restarts}
                for v in self._core.peers()}

    def store(self) -> dict:
        """The binding store: backend, file, restart counter, commits, pending changes, held PBAs."""
        return self._store_state()

    def counters(self) -> dict:
        """The raw counts behind ``stats()`` (by peer, status, MAAR) and the latency histograms:
        a copy (``Stats.snapshot``), cheap enough for every metrics scrape."""
        return self._stats.snapshot()

    def receive_path(self) -> dict:
        """The signalling sockets' buffers and kernel drop counters now (read from /proc)."""
        return self._receive_path()
