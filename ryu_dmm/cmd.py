"""The CMD as a Ryu application: ``ryu-manager [--config-file FILE] ryu_dmm.cmd``.

A thin shell: datagrams are decoded and handed to ``CmdCore``, whose effects pass through the
``FlowMirror`` (which renders the switches' flows and holds PBAs until their flows are confirmed);
the shell carries out what comes out on sockets, OpenFlow datapaths and one timer heap, and turns
OpenFlow events back into mirror events. It holds no mobility or flow state. See
docs/architecture.md; containment of exceptions, safe logs and other bounds: docs/limits-rest.md.
"""
import dataclasses
import itertools
import logging
import sys
import time
from typing import NoReturn

from . import domainconf, httpaccess, metrics, ofsync, oftls, packetin, pipeline, rest, store
from .ipsec import enforce
from .roles.keeper import keeper_for
from .logsafe import Guard, SafeLog, contained
from .domainview import DomainView
from .flowmirror import (
    ApplyDiff, BarrierReplied, CoreOutput, FlowMirror, FlowsConfirmed, FlowStatsReady, FlowStatsReplied, MirrorKey,
    Noted, NoteKind, PortBound, PortLearnt, QueryFlows, ReplaceFlows, RequestFlowStats, SwitchDown, SwitchUp,
    configured_switches,
)
from .hubexit import install_clean_exit
from .hubtimers import HubTimers
from .mobility.cmd import SEQ_BLOCK, CmdCore
from .mobility.config import Mode
from .mobility.events import (
    AnchorIdle, CancelTimer, Persist, PersistMeta, Received, Report, ReportKind, Send, SetTimer, TimerFired,
)
from .runtime import FRAMEWORK, App, DEAD_DISPATCHER, MAIN_DISPATCHER, cfg, hub, ofp_event, ofproto_v1_3, set_ev_cls, wsgi
from .signalling import Endpoint
from .stats import Stats
from .store.sqlite import move_aside
from .sharedwriter import SharedWriter
from .store.reread import Reread
from .store.shared import VERIFY, SharedCore
from .storewriter import StoreWriter
from .wire import BindingAck, BindingUpdate
from .wire import DecodeError, decode, encode

QUERY_TIMEOUT = 5.0  # seconds a REST request waits for a switch's flows (the mirror answers by then)
_SWITCH_EFFECTS = (ReplaceFlows, ApplyDiff, RequestFlowStats)
_WARN = (NoteKind.NOT_RECONCILED, NoteKind.FLOW_REFUSED, NoteKind.QUERY_REFUSED)
# Reports an operator sees in the log; routine ones are only counted (in /dmm/v1/stats) unless debugging.
_REPORT_LEVEL = {ReportKind.FAILED: logging.WARNING, ReportKind.REJECTED: logging.WARNING,
                 ReportKind.PEER_UNREACHABLE: logging.WARNING, ReportKind.PEER_RESTARTED: logging.WARNING,
                 ReportKind.PEER_REACHABLE: logging.INFO}


def config_path():
    """The last ``--config-file`` given to ryu-manager (it is also read by Ryu), or None."""
    files = list(getattr(cfg.CONF, "config_file", None) or [])
    return files[-1] if files else None


def _store_unusable(exc, backend: str = "sqlite") -> NoReturn:
    """Stop start-up before anything is bound, saying why (and, for a corrupt file, what to do)."""
    advice = (" Nothing was changed; fix or remove the file, or set [store] on_corrupt = move-aside to start "
              "empty and keep it aside." if exc.kind == "corrupt" and backend == "sqlite" else " Nothing was changed.")
    print(f"ryu_dmm.cmd: cannot use the binding store: {exc}.{advice}", file=sys.stderr, flush=True)
    raise SystemExit(2) from None


def _stored_seqs(meta: dict) -> dict[str, int]:
    """The CMD's own PBU sequence-number starts kept in the store's meta (``seq:PEER``), by peer."""
    return {k[4:]: int(v) for k, v in meta.items() if k.startswith("seq:")}


class CmdApp(App):
    """The CMD process: PMIPv6 signalling, OpenFlow towards the MAARs' switches, REST."""

    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]
    _CONTEXTS = {"wsgi": wsgi.WSGIApplication}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        path = config_path()
        # REST listens on localhost unless the file says otherwise (Ryu's own default is 0.0.0.0)
        cfg.CONF.set_default("wsapi_host", httpaccess.DEFAULT_HOST)
        try:
            self.domain, self.settings = domainconf.load(path)
            if self.domain.mode is Mode.DISTRIBUTED:
                raise domainconf.ConfigError("[dmm] mode = distributed has no CMD: start only the MAAR agents "
                                             "(docs/mode-distributed.md)")
            self.pipeline = pipeline.load()
            limits = rest.ServerLimits.from_conf(cfg.CONF)
            access = self.settings.rest
            httpaccess.check_listener("[DEFAULT] wsapi_host", cfg.CONF.wsapi_host, access)
            if self.settings.metrics_port != 0:
                httpaccess.check_listener("[dmm] metrics_listen", self.settings.metrics_listen, access)
            self.tls = httpaccess.server_context(access)
            of_tls = oftls.from_conf(cfg.CONF)
            of_ctx = oftls.context(of_tls) if of_tls is not None else None
            if self.settings.require_ipsec:
                refused = enforce.check(self.settings.port)
                if refused:
                    raise domainconf.ConfigError(refused)
        except (domainconf.ConfigError, ValueError) as exc:
            # Before anything is bound or started: nothing is half-applied.
            print(f"ryu_dmm.cmd: bad configuration: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        self.config_path = path or "<embedded default>"
        st = self.settings.store
        if st.backend == "redis" and st.active_active and not st.instance:  # its name among the CMDs
            self.settings = dataclasses.replace(self.settings, store=dataclasses.replace(
                st, instance=f"{self.domain.cmd_address}:{self.settings.port}"))
        self.store = store.open_store(self.settings.store)
        self.shared = self.sharedwriter = None  # several CMDs on one Redis: SharedCore, SharedWriter
        self._store_info: dict = {}
        self.loaded = self._load_store()  # a bad store stops start-up here, before anything is bound
        self.core = CmdCore(self.domain, self.loaded.restart_counter)
        st = self.settings.store
        if st.backend == "redis" and st.active_active:  # several CMDs on one Redis (docs/deploy-cmds.md)
            self.shared = SharedCore(self.core, st.instance)
        # flow_control = maar: each MAAR's agent drives its own switch; we drive none (signalling only)
        own = self.settings.flow_control == "cmd"
        self.mirror = FlowMirror(self.pipeline, configured_switches(self.domain, self.settings) if own else {},
                                 # (legacy mode: the LMA is never released, so no counters are polled)
                                 anchor_idle_timeout=0.0 if self.domain.lma else self.domain.timers.anchor_idle_timeout)
        self.stats = Stats(self.domain.mode.value, peers=self.core.maars)  # by MAAR; others as "other"
        self.guard = Guard(self.stats.count, SafeLog(self.logger))  # its .log: escaped, rate-limited lines
        self.openflow = "tls" if of_ctx is not None else "tcp"
        if of_ctx is not None:
            oftls.install(of_ctx, FRAMEWORK, self._of_refused)
        self.endpoint = self.timers = self._flusher = self.metrics = self.writer = None
        self.gate = store.DurabilityGate(self.settings.store.max_batch) if self.store.backend != "memory" else None
        self._datapaths = {}  # MAAR address -> its connected datapath
        self._maar_of = {m.datapath_id: m.address for m in self.domain.maars if own and m.datapath_id is not None}
        self._queries = {}  # token -> (hub.Event, [flows]) of REST requests waiting for flow stats
        self._tokens = itertools.count(1)
        # [roles] (docs/openflow-roles.md): the mirror sees a switch only while this instance is its master
        self.roles = keeper_for(self.settings, self.domain, self.guard, self._promoted, self._demoted)
        self.rereads = Reread()  # the shared store re-read into the core, one load at a time (store/reread.py)
        self._reread_done = hub.Event()
        self.feed = (self.roles.feed(self._others_changed, lambda: self._reread(wait=False))
                     if self.roles is not None and self.shared is not None else None)
        self.view = DomainView(self.domain, self.settings, self.core, self.mirror, self.stats, self.query_flows,
                               lambda: self.endpoint.receive_path() if self.endpoint is not None else {},
                               self.store_state, self.store if self.shared is not None else None,
                               self.roles.state if self.roles is not None else None, self.ipsec_state)
        kwargs["wsgi"].register(rest.DmmRestController, rest.registration(self.view, self.guard))
        rest.install_server(limits, self.guard.log, self.tls, self.http_guard("rest"))

    def start(self):
        thread = super().start()
        s = self.settings
        try:
            self.endpoint = Endpoint(s.listen, s.port, s.raw_mh, self.domain.cmd_address, self.core.maars,
                                     s.rcvbuf, self.guard.error)
        except OSError as exc:
            print(f"ryu_dmm.cmd: cannot open the PMIPv6 endpoint on [{s.listen}]:{s.port}"
                  f"{' (and raw MH)' if s.raw_mh else ''}: {exc.strerror}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        # Prometheus (docs/observability.md), under the same access rules as REST
        self.metrics = metrics.start(self.view, s, self.guard, self.tls, self.http_guard("metrics"))
        self.timers = HubTimers(self.guard.wrap("timer", self._on_timer))
        if self.gate is not None:
            self.writer = StoreWriter(self.store, self.gate, self._send_all, self._store_failed)
            self.writer.start()
        if self.shared is not None:
            self.sharedwriter = SharedWriter(self.store, self.shared.gate, self._settle, self._adopted, self._store_failed,
                                             self.settings.store.lease)
        self._restore(self.loaded)
        if self.sharedwriter is not None:
            self.sharedwriter.start()
        if self.roles is not None:
            self.roles.start()
        if self.feed is not None:
            self.feed.start()
        self.endpoint.serve(self.on_datagram)
        self._flusher = hub.spawn(self.guard.repeat, hub.sleep, 1.0, "log_flush", self.guard.log.flush)
        install_clean_exit(self.logger)
        self.logger.info("ryu-dmm CMD started: %s mode, %d MAAR(s), PMIPv6 on [%s]:%d, OpenFlow over %s, config %s, "
                         "store %s (%d session(s) restored in %.2f s)", self.domain.mode.value, len(self.domain.maars),
                         s.listen, self.endpoint.bound_port, self.openflow.upper(), self.config_path,
                         self._store_info.get("file") or self._store_info.get("redis", "memory"),
                         len(self.core), self._store_info.get("load_seconds", 0.0))
        for text in self.endpoint.shortfalls():
            self.logger.warning("%s", text)
        return thread

    def _of_refused(self, addr, exc: BaseException) -> None:
        """An OpenFlow connection whose TLS handshake failed (plain TCP, no or a foreign certificate,
        too slow): counted as ``openflow_tls_refused``, one rate-limited line."""
        self.stats.count("openflow_tls_refused")
        self.guard.log.warning(addr[0] if addr else "?", "openflow_tls_refused",
                               "OpenFlow connection from %s refused: TLS handshake failed: %s", addr,
                               f"{type(exc).__name__}: {exc}"[:200])

    def http_guard(self, listener: str):
        """The access checks of ``[rest]`` (httpaccess.py) for one listener; refusals counted as
        ``http_refused.<listener>.<reason>`` in /dmm/v1/stats (and dmm_http_refused_total)."""
        def refused(reason: str) -> None:
            self.stats.count(f"http_refused.{listener}.{reason}")
        return lambda app: httpaccess.guarded(app, self.settings.rest, refused)

    def stop(self):
        if self.feed is not None:
            self.feed.stop()
        if self.roles is not None:
            self.roles.stop()  # gives our switches' leases up: another instance takes over at once
        if self._flusher is not None:
            hub.kill(self._flusher)
        if self.timers is not None:
            self.timers.stop()
        if self.metrics is not None:
            self.metrics.stop()
        if self.endpoint is not None:
            self.endpoint.close()
        if self.sharedwriter is not None:
            self.sharedwriter.stop()
        if self.writer is not None:
            self.writer.stop()
        else:
            self.store.close()
        super().stop()

    # ---- the binding store (docs/store.md) ------------------------------------------------------
    def _load_store(self) -> store.Loaded:
        started = time.monotonic()
        st = self.settings.store
        try:
            with store.long_lived():
                loaded = self.store.load()
        except store.StoreError as exc:
            if st.on_corrupt != "move-aside" or exc.kind != "corrupt" or self.store.backend != "sqlite":
                _store_unusable(exc, self.store.backend)
            aside = move_aside(st.path)
            self.logger.error("binding store unusable (%s): moved to %s; starting with no sessions", exc, aside)
            self._store_info["moved_aside"] = aside
            try:
                loaded = self.store.load()
            except store.StoreError as again:
                _store_unusable(again)
        seqs = _stored_seqs(loaded.meta)
        if seqs:  # this run may use a block from each stored start: reserve it before anything is sent
            try:
                self.store.write(store.Batch(0, meta={f"seq:{peer}": str((n + SEQ_BLOCK) & 0xFFFF)
                                                      for peer, n in seqs.items()}))
            except store.StoreError as exc:
                _store_unusable(exc, self.store.backend)
        self._store_info.update(self.store.describe(), restart_counter=loaded.restart_counter,
                                load_seconds=round(time.monotonic() - started, 3),
                                restored_sessions=len(loaded.sessions), new=loaded.fresh)
        return loaded

    def _restore(self, loaded: store.Loaded) -> None:
        """The stored sessions back into the core (timers re-armed) and the flow mirror (flows
        rendered, reconciled when each switch connects), then the access ports learnt before; then
        heartbeats with every MAAR, with the Restart Counters they had."""
        now = time.time()
        meta = loaded.meta
        seqs = _stored_seqs(meta)
        counters = {k[8:]: int(v) for k, v in meta.items() if k.startswith("counter:")}
        renotify = None
        if self.shared is not None:  # finish only our own unfinished handovers (others' owners do theirs)
            self.shared.gate.versions = self.store.versions
            me, owners = self.settings.store.instance, self.store.owners
            renotify = lambda r: owners.get(r.mn_id, me) == me  # noqa: E731
        with store.long_lived():
            effects = (self.core.restore(loaded.sessions, seqs, now, renotify)
                       + self.core.watch_peers(counters, now))
            if self.shared is not None:  # a session of a MAAR this instance does not know stays for the others
                effects = [e for e in effects if type(e) is not Persist]
            self._apply(self.mirror.handle(CoreOutput(tuple(effects)), now))
        self._learn_ports(loaded.ports)

    def _learn_ports(self, ports: dict) -> None:
        """Stored access ports of the MNs served now into the mirror; the others are deleted."""
        for (maar, mac), port in ports.items():
            if self.mirror.has_switch(maar) and self.mirror.learnt_port(maar, mac)[0] is not None:
                self._mirror_event(PortLearnt(maar, mac, port))
            elif self.gate is not None:
                self.gate.stage_port((maar, mac), None)  # nobody is served there with that MAC any more
        if self.writer is not None:
            self.writer.kick()

    def _store_failed(self, exc: Exception) -> None:
        self.stats.count("store.write_failed")
        self.guard.log.log(logging.ERROR, "store", "store_failed",
                           "binding store write failed (retrying; accepted PBAs wait): %s", exc)

    def ipsec_state(self) -> dict:
        """require_ipsec, and the plaintext signalling the kernel dropped (read from nftables)."""
        s = self.settings
        return {"required": s.require_ipsec, "plaintext_dropped": enforce.counters() if s.require_ipsec else {}}

    def store_state(self) -> dict:
        body = dict(self._store_info)
        if self.writer is not None:
            body.update(self.writer.state())
        if self.roles is not None:
            body["reread"] = self.rereads.state()
        if self.sharedwriter is not None:
            body["active_active"] = state = self.sharedwriter.state()
            try:  # which instance holds which sessions' timers
                state["instances"] = self.store.instances()
            except store.StoreError as exc:
                state["instances"] = {"error": str(exc)}
            # switch -> the instance that is its OpenFlow master (docs/openflow-roles.md); without
            # [roles] every instance programs the switches connected to it
            roles = self.roles.state()["switches"] if self.roles is not None else {}
            state["switch_masters"] = {self.view.name_of(a): v["master"] for a, v in roles.items()}
        return body

    # ---- signalling and timers -------------------------------------------------------------------
    def on_datagram(self, data: bytes, src: str, addr: tuple, raw_dst=None) -> None:
        """One PMIPv6 message from UDP (``raw_dst`` None) or raw IPv6 (checksum verified against
        the source and ``raw_dst``). The endpoint contains whatever this raises."""
        try:
            msg = decode(data, src, raw_dst) if raw_dst else decode(data)
        except DecodeError as exc:
            self.stats.count(f"decode_error.{exc.reason}")
            self.guard.log.warning(src, f"decode_error.{exc.reason}", "dropped datagram from [%s]:%d: %s",
                                   addr[0], addr[1], exc)
            return
        self.endpoint.heard(src, addr)
        self.stats.received(msg, src)
        self._core_event(Received(src, msg))

    def _core_event(self, event) -> None:
        now = time.time()
        if self.shared is None:
            effects = self.core.handle(event, now)
            if self.rereads.running:  # what the running re-read loaded of these MNs is stale
                self.rereads.touch([e.mn_id for e in effects if type(e) is Persist])
            self._apply(self.mirror.handle(CoreOutput(tuple(effects)), now))
        else:  # several CMDs (docs/deploy-cmds.md): carried out once the store confirms (_settle)
            self._shared_out(self.shared.handle(event, now), now)

    def _shared_out(self, effects: list, now: float) -> None:
        if effects:
            self._apply(self.mirror.handle(CoreOutput(tuple(effects)), now))
        while self.shared.errors:
            self.guard.error("core", self.shared.errors.pop(0))
        if self.shared.gate.todo:
            self.sharedwriter.kick()

    def _settle(self, check, won: bool, versions: dict, current: list) -> None:
        """The store's verdict on one event (SharedWriter): won, its effects go out; lost, the sessions
        another CMD changed are reloaded into the core and the event is handled again, as of when it
        came (a PBU that waited out a Redis fail-over is still inside its timestamp window)."""
        now = time.time()
        self.shared.dead = frozenset(self.sharedwriter.dead)
        if self.rereads.running:  # written or reloaded here: newer than the running re-read's snapshot
            self.rereads.touch([mn for mn, _, _ in check.items] + [c.mn_id for c in current])
        self._shared_out(self.shared.settled(check, won, versions, current, now), now)
        if won and self.feed is not None:  # the switches' masters render what we changed
            self.feed.publish([mn for mn, _, value in check.items if value is not VERIFY])

    def _adopted(self, adopted: list) -> None:
        """Sessions of a dead instance this one now owns."""
        now = time.time()
        self.rereads.touch([c.mn_id for c, _ in adopted])
        self._shared_out(self.shared.adopted(adopted, now), now)

    def _on_timer(self, key) -> None:
        (self._mirror_event if type(key) is MirrorKey else self._core_event)(TimerFired(key))

    def _mirror_event(self, event) -> None:
        self._apply(self.mirror.handle(event, time.time()))

    def _apply(self, effects) -> None:
        reports = []
        gate = self.gate
        staged = False
        for e in effects:
            kind = type(e)
            try:  # one effect failing (e.g. a PBA that cannot be encoded) leaves the others carried out
                if kind is Send:
                    msg = e.msg
                    if gate is not None and type(msg) is BindingAck and msg.accepted and gate.must_wait(msg.mn_id):
                        if not gate.hold(e):  # the durability rule (docs/store.md)
                            self.stats.count("store.pba_dropped")
                        continue
                    if gate is not None and type(msg) is BindingUpdate and gate.meta_must_wait(f"seq:{e.dst}"):
                        if not gate.hold(e, f"seq:{e.dst}"):  # its sequence number is not reserved yet
                            self.stats.count("store.pbu_dropped")
                        continue
                    self._send(e)
                elif kind is Persist:
                    if gate is not None:
                        gate.stage(e.mn_id, e.record)
                        staged = True
                elif kind is PortBound:
                    if gate is not None:
                        gate.stage_port((e.maar, e.mac), e.port)
                        staged = True
                elif kind is PersistMeta:
                    if gate is not None:
                        gate.stage_meta(e.key, e.value)
                        staged = True
                elif kind is SetTimer:
                    self.timers.set(e.key, e.at)
                elif kind is CancelTimer:
                    self.timers.cancel(e.key)
                elif kind is Report:
                    reports.append(e)  # routine events only counted (in /dmm/v1/stats) unless debugging
                    level = _REPORT_LEVEL.get(e.kind, logging.DEBUG)
                    self.guard.log.log(level, self.endpoint.current_source, (e.kind.value, e.status),  # key: its peer
                                       "%s %s %s (status %s)", e.kind.value, e.mn_id, e.detail, e.status)
                elif kind in _SWITCH_EFFECTS:
                    dp = self._datapaths.get(e.maar)
                    if dp is not None and (self.roles is None or self.roles.is_master(e.maar)):
                        dp.send(ofsync.encode(self.pipeline, e))  # one write: the push's messages, packed
                elif kind is Noted:
                    self.stats.note(e.kind.value, e.maar)
                    if e.kind in _WARN or e.kind is NoteKind.RECONCILED:
                        self.guard.log.log(logging.WARNING if e.kind in _WARN else logging.INFO, e.maar,
                                           e.kind.value, "%s %s: %s", e.kind.value, e.maar, e.detail)
                elif kind is AnchorIdle:  # the mirror's counters say so; the core decides
                    self._core_event(e)
                elif kind is FlowsConfirmed:
                    self.stats.flow_latency(e.confirmed_at - e.pushed_at)
                elif kind is FlowStatsReady:
                    waiting = self._queries.get(e.token)
                    if waiting is not None:
                        waiting[1].append(e.flows)
                        waiting[0].set()
            except Exception as exc:  # noqa: BLE001 - containment boundary
                self.guard.error("send" if kind is Send else "effect", exc)
        self.stats.reported(reports)
        if staged:
            self.writer.kick()

    def _send(self, e: Send) -> None:
        data = encode(e.msg)
        try:
            self.endpoint.send(data, self.endpoint.sockaddr(e.dst))
            self.stats.sent(e.msg, e.dst)
        except OSError as exc:
            self.stats.count("send_error")
            self.guard.log.warning(e.dst, f"send_error.{exc.errno}", "cannot send to %s: %s", e.dst, exc)

    def _send_all(self, sends) -> None:
        """PBAs a commit released (StoreWriter)."""
        for e in sends:
            try:
                self._send(e)
            except Exception as exc:  # noqa: BLE001 - containment boundary
                self.guard.error("send", exc)

    def query_flows(self, maar: str):
        """A switch's installed flows for REST: the mirror correlates the request; this greenthread waits."""
        token = next(self._tokens)
        event, got = self._queries[token] = (hub.Event(), [])
        try:
            self._mirror_event(QueryFlows(maar, token))
            return got[0] if event.wait(QUERY_TIMEOUT) and got else None
        finally:
            del self._queries[token]

    # ---- OpenFlow --------------------------------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    @contained("openflow")
    def _state_change(self, ev):
        dp = ev.datapath
        maar = self._maar_of.get(dp.id)
        if maar is None:
            if ev.state == MAIN_DISPATCHER:
                self.logger.info("switch %016x connected (not a configured MAAR)", dp.id)
            return
        if ev.state == MAIN_DISPATCHER:
            self.logger.info("switch %016x connected (%s)", dp.id, self.view.name_of(maar))
            self._datapaths[maar] = dp
            if self.roles is None:
                self._mirror_event(SwitchUp(maar))
            else:  # SwitchUp once the switch confirmed us as its master (_promoted)
                self.roles.connected(maar, dp)
        elif self._datapaths.get(maar) is dp:
            del self._datapaths[maar]
            if self.roles is None:
                self._mirror_event(SwitchDown(maar))
            else:
                self.roles.disconnected(maar)

    def _promoted(self, maars: list) -> None:
        """This instance became these switches' master: with a shared store (Redis), its sessions and
        ports first, as another instance may have changed them; then the mirror reconciles each
        switch (docs/openflow-roles.md)."""
        if self.store.backend == "redis":
            self._reread()
        for maar in [m for m in maars if self.roles.is_master(m)]:  # (still: it may have ended meanwhile)
            self.logger.info("master of %s's switch", self.view.name_of(maar))
            self._mirror_event(SwitchUp(maar))

    def _reread(self, wait: bool = True) -> None:
        """The shared store's sessions and ports into the core and the mirror (a promotion, or the
        change feed subscribed again). One load at a time: a request made during one is served by
        one more load after it, which ``wait`` waits for (a promotion reconciles from it). What
        changed here during the load stays as it is (store/reread.py)."""
        run, ticket = self.rereads.request()
        while run:
            self.guard.call("roles", self._reread_once)  # (a bug costs this load, never the next ones)
            run = self.rereads.finished()
            done, self._reread_done = self._reread_done, hub.Event()
            done.set()
        while wait and self.rereads.completed < ticket:
            self._reread_done.wait(1.0)

    def _reread_once(self) -> None:
        """One load, adopted but for what it cannot know; if Redis cannot answer, what this instance
        knows stays."""
        self.rereads.started(self.gate.unsettled() if self.gate is not None else ())
        try:
            loaded = self.store.load()
        except store.StoreError as exc:
            self.stats.count("roles.refresh_failed")
            self.guard.log.log(logging.ERROR, "roles", "refresh_failed", "cannot re-read the sessions: %s", exc)
            return
        now, shared = time.time(), self.shared.gate if self.shared is not None else None
        if shared is None:
            effects = self.rereads.adopt(self.core, loaded.sessions, now)
        else:
            effects = self.rereads.adopt(self.core, loaded.sessions, now, dict(self.store.versions), shared.versions,
                                         shared.busy)
        if effects is None:
            self.stats.count("roles.refresh_overflowed")
            return
        self._apply(self.mirror.handle(CoreOutput(tuple(effects)), now))
        self._learn_ports(loaded.ports)

    def _others_changed(self, mn_ids: list) -> None:
        """Sessions another instance changed (roles/feed.py): read them, so that this instance's
        mirror pushes them to the switches it is master of. One of ours being checked is left to
        its check; a read older than what a check of ours settled meanwhile is ignored."""
        gate, now = self.shared.gate, time.time()
        for c in self.store.read([m for m in mn_ids if not gate.busy(m)]):
            held = gate.versions.get(c.mn_id, 0)
            if gate.busy(c.mn_id) or held == c.version or 0 < c.version < held:
                continue
            if c.version:
                gate.versions[c.mn_id] = c.version
            else:
                gate.versions.pop(c.mn_id, None)
            self.rereads.touch([c.mn_id])
            effects = self.core.reload(c.mn_id, c.record, now, renotify=False)
            self._apply(self.mirror.handle(CoreOutput(tuple(effects)), now))

    def _demoted(self, maar: str) -> None:
        self.logger.warning("no longer master of %s's switch", self.view.name_of(maar))
        self._mirror_event(SwitchDown(maar))

    @set_ev_cls(ofp_event.EventOFPRoleReply, MAIN_DISPATCHER)
    @contained("openflow")
    def _role_reply(self, ev):
        maar = self._maar_of.get(ev.msg.datapath.id)
        if maar is not None and self.roles is not None:
            self.roles.role_reply(maar, ev.msg.role, ev.msg.generation_id)

    @set_ev_cls(ofp_event.EventOFPErrorMsg, MAIN_DISPATCHER)
    @contained("openflow")
    def _error_msg(self, ev):
        maar = self._maar_of.get(ev.msg.datapath.id)
        if maar is not None and self.roles is not None:
            self.roles.error(maar, ev.msg)

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    @contained("openflow")
    def _barrier_reply(self, ev):
        maar = self._maar_of.get(ev.msg.datapath.id)
        if maar is not None:
            self._mirror_event(BarrierReplied(maar, ev.msg.xid))

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    @contained("openflow")
    def _flow_stats_reply(self, ev):
        msg = ev.msg
        maar = self._maar_of.get(msg.datapath.id)
        if maar is not None:
            more = bool(msg.flags & msg.datapath.ofproto.OFPMPF_REPLY_MORE)
            self._mirror_event(FlowStatsReplied(maar, msg.xid, ofsync.installed(msg.body), more))

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    @contained("openflow")
    def _packet_in(self, ev):
        """A frame an MN sent on an access port (its RS, NS, MLD report or an unrouted frame: the
        pipeline's [punt]) tells us its port."""
        msg = ev.msg
        maar = self._maar_of.get(msg.datapath.id)
        if maar is None:
            return
        mac = packetin.mn_source(msg.data)
        if mac is None:
            self.stats.count("packet_in.unparsed")
        else:
            self._mirror_event(PortLearnt(maar, mac, msg.match["in_port"]))

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    @contained("openflow")
    def _port_status(self, ev):
        """An access port came up: ask who is there (an MLD query out of that port), so an MN that
        just arrived answers at once instead of when it next sends something."""
        msg = ev.msg
        dp, desc = msg.datapath, msg.desc
        maar = self._maar_of.get(dp.id)
        if maar and self.roles is not None and not self.roles.is_master(maar):
            return  # the master asks (a slave's packet-out would be refused)
        query = maar and packetin.port_up_query(self.domain, self.settings, maar, msg.reason, desc.port_no,
                                                desc.state, desc.config)
        if query:
            ofp, parser = dp.ofproto, dp.ofproto_parser
            dp.send_msg(parser.OFPPacketOut(dp, ofp.OFP_NO_BUFFER, ofp.OFPP_CONTROLLER,
                                            [parser.OFPActionOutput(desc.port_no)], query))
            self.stats.count("port_up_queries")
