"""Prometheus metrics of the CMD: ``GET http://127.0.0.1:9460/metrics`` (docs/observability.md).

Collected when scraped, from the public ``DomainView`` that REST reads (the same counters, the same
sessions): nothing is updated on the signalling path for metrics' sake beyond the ``Stats``
counters REST shows anyway (the histograms are observed in ``Stats`` once per handover and per
flow confirmation). The text is made by ``prometheus_client`` and served, as FAUCET does, by a WSGI
app on Ryu's hub: its own listening socket, served by ``rest.serve`` (eventlet's WSGI server with a
connection cap and header and request deadlines); ``prometheus_client.start_http_server`` (a thread
of its own) hangs under eventlet's monkey patching.

Labels are bounded: ``maar`` is a configured MAAR's name (or ``other`` for every other address),
``status`` a PBA status (at most 256), ``reason`` and ``where`` are fixed by the code, ``pmaars`` at
most ``[timers] max_pmaars`` + 1 values. Nothing is labelled per MN.

The per-MAAR session counts and the P-MAAR list lengths need a walk over every session: it yields
to the hub every ``WALK_YIELD_EVERY`` sessions and its result is reused for ``WALK_MAX_AGE``
seconds (scrapes close together walk once); ``dmm_session_walk_seconds`` tells what it cost.
"""
from __future__ import annotations

import errno
import logging
import socket
import sys
import time
from typing import Callable, Optional

import eventlet
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.process_collector import ProcessCollector

from . import __version__, rest
from .domainconf import CmdSettings
from .domainview import DomainView
from .flowmirror import NoteKind
from .logsafe import Guard
from .runtime import cfg, hub
from .stats import OTHER, status_name

DEFAULT_PORT = 9460  # FAUCET uses 9302/9303; the agents default to 9461 and up (agent/metrics.py)
DEFAULT_LISTEN = "127.0.0.1"
PATH = "/metrics"
WALK_MAX_AGE = 1.0  # seconds a walk over the sessions is reused at least ...
WALK_SHARE = 0.05  # ... and longer if need be, so that walks take at most this share of the time
WALK_YIELD_EVERY = 500  # sessions looked at between two hub yields (about 1 ms of work)
MAX_CONNECTIONS = 8  # scrapes served at once; more wait in the kernel's accept queue

# name -> (type, help, label names). Counters are named without ``_total`` (the exposition adds it).
FAMILIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "dmm_info": ("gauge", "The CMD: its version, mobility mode and de-registration policy (always 1).",
                 ("version", "mode", "dereg")),
    "dmm_pbu_received": ("counter", "PBUs received, by sending MAAR.", ("maar",)),
    "dmm_pba_received": ("counter", "PBAs received (from P-MAARs), by MAAR and status.", ("maar", "status")),
    "dmm_pbu_sent": ("counter", "PBUs sent (to P-MAARs), by MAAR.", ("maar",)),
    "dmm_pba_sent": ("counter", "PBAs sent, by MAAR and status.", ("maar", "status")),
    "dmm_heartbeat_received": ("counter", "RFC 5847 Heartbeats received (requests and responses), by MAAR.",
                               ("maar",)),
    "dmm_heartbeat_sent": ("counter", "RFC 5847 Heartbeats sent (requests and responses), by MAAR.", ("maar",)),
    "dmm_decode_errors": ("counter", "Datagrams dropped because they are not a well-formed PBU/PBA/Heartbeat, by reason.",
                          ("reason",)),
    "dmm_internal_errors": ("counter", "Exceptions contained (a bug), by where they were caught.", ("where",)),
    "dmm_send_errors": ("counter", "Signalling messages the socket refused to send.", ()),
    "dmm_openflow_tls_refused": ("counter", "OpenFlow connections whose TLS handshake failed or took too long "
                                            "(docs/security.md).", ()),
    "dmm_packet_in_unparsed": ("counter", "Packet-ins whose frame has no unicast Ethernet source (too short, or a group address).", ()),
    "dmm_mobility_events": ("counter", "Mobility events of the CMD core (registered, handover, moved, renewed, "
                                       "deregistered, released, failed, rejected).", ("event",)),
    "dmm_handover_duration_seconds": ("histogram", "Completed handovers: the S-MAAR's PBU to the last P-MAAR's "
                                                   "PBA, seconds.", ("mode",)),
    "dmm_flows_confirmed_seconds": ("histogram", "An MN's flow group pushed to the switches involved until every "
                                                 "barrier reply came, seconds.", ()),
    "dmm_sessions": ("gauge", "Mobility sessions (binding cache entries).", ()),
    "dmm_sessions_by_pmaars": ("gauge", "Sessions by the length of their P-MAAR list.", ("pmaars",)),
    "dmm_maar_sessions": ("gauge", "Sessions a MAAR serves, or anchors a prefix of as a P-MAAR.", ("maar", "role")),
    "dmm_session_walk_seconds": ("gauge", "Seconds the last walk over the sessions took (for the two gauges above).",
                                 ()),
    "dmm_switch_connected": ("gauge", "1 while the MAAR's OpenFlow switch is connected (MAARs with a datapath_id).",
                             ("maar",)),
    "dmm_receive_kernel_drops": ("counter", "Datagrams the kernel dropped on a signalling socket (from /proc).",
                                 ("socket",)),
    "dmm_receive_queued_bytes": ("gauge", "Bytes waiting in a signalling socket's receive queue.", ("socket",)),
    "dmm_receive_buffer_bytes": ("gauge", "A signalling socket's receive buffer as the kernel granted it.",
                                 ("socket",)),
    "dmm_peer_reachable": ("gauge", "1 while the MAAR answers RFC 5847 heartbeats (0 after the allowed misses).",
                           ("maar",)),
    "dmm_peer_restart_counter": ("gauge", "The MAAR's RFC 5847 Restart Counter as last heard (absent until then).",
                                 ("maar",)),
    "dmm_peer_restarts": ("counter", "Restart Counter changes seen (the MAAR lost its bindings; the CMD rebuilt it).",
                          ("maar",)),
    "dmm_store_info": ("gauge", "The binding store: backend, and the CMD's own Restart Counter (always 1).",
                       ("backend", "restart_counter")),
    "dmm_store_commits": ("counter", "Group commits of the binding store.", ()),
    "dmm_store_changes_committed": ("counter", "Binding changes committed.", ()),
    "dmm_store_failed_writes": ("counter", "Group commits that failed (retried; their PBAs wait).", ()),
    "dmm_store_pending_changes": ("gauge", "Changes staged or being written.", ()),
    "dmm_store_held_pbas": ("gauge", "Accepted PBAs waiting for their change to be committed.", ()),
    "dmm_store_dropped_pbas": ("counter", "Accepted PBAs dropped because too many were waiting (their MAARs send "
                                          "again).", ()),
    "dmm_store_last_commit_seconds": ("gauge", "Duration of the last group commit.", ()),
    "dmm_store_restored_sessions": ("gauge", "Sessions loaded from the store at start-up.", ()),
    "dmm_store_checks": ("counter", "Active-active check-and-sets: won (carried out) or lost (another instance "
                                    "changed the MN first: re-read, handled again).", ("outcome",)),
    "dmm_store_takeovers": ("counter", "Dead instances whose sessions this instance took over.", ()),
    "dmm_store_instance_alive": ("gauge", "1 while the instance's lease is alive (active-active).", ("instance",)),
    "dmm_store_instance_sessions": ("gauge", "Sessions whose timers the instance holds (active-active).",
                                    ("instance",)),
    "dmm_http_refused": ("counter", "HTTP requests refused by the [rest] access rules (docs/security.md), by "
                                    "listener (rest, metrics) and reason (unauthorized: 401, forbidden: 403).",
                         ("listener", "reason")),
    "dmm_protocol_checks": ("counter", "Receipt checks of the CMD core (docs/security.md): pbu_without_d, "
                                       "pba_without_d (taken), pba_echo_mismatch (ignored).", ("check",)),
}
_NOTE_HELP = {
    NoteKind.GROUP_PUSHED: "MN flow groups pushed (delete by cookie, adds, barrier), by switch.",
    NoteKind.PORT_LEARNT: "MN access ports learnt from packet-ins, by switch.",
    NoteKind.RECONCILED: "Reconciliations of a (re)connected switch from its flow stats, by switch.",
    NoteKind.NOT_RECONCILED: "Reconciliations whose flow stats did not come in time (asked again), by switch.",
    NoteKind.FLOW_REFUSED: "Rendered flows refused by the pipeline declaration, by switch.",
    NoteKind.QUERY_REFUSED: "REST flow queries refused (too many in flight), by switch.",
}
NOTE_FAMILIES = {kind.value: f"dmm_{kind.value}" for kind in NoteKind}
for _kind, _help in _NOTE_HELP.items():
    FAMILIES[NOTE_FAMILIES[_kind.value]] = ("counter", _help, ("maar",))

_FLAT = {"send_error": "dmm_send_errors", "packet_in.unparsed": "dmm_packet_in_unparsed",
         "openflow_tls_refused": "dmm_openflow_tls_refused"}
_PREFIXED = {"decode_error.": "dmm_decode_errors", "internal_error.": "dmm_internal_errors"}
_HTTP_REFUSED = "http_refused."  # http_refused.<listener>.<reason> (cmd.py, httpaccess.py)
_KINDS = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily, "histogram": HistogramMetricFamily}


def family(name: str, families: dict = FAMILIES):
    kind, text, labels = families[name]
    return _KINDS[kind](name, text, labels=labels)


def buckets(cumulative) -> list[tuple[str, float]]:
    """``Stats`` histogram buckets as prometheus_client takes them: (``le`` text, count)."""
    return [("+Inf" if bound == float("inf") else repr(float(bound)), n) for bound, n in cumulative]


def _no_pause() -> None:
    pass


class SessionWalk:
    """Per-MAAR session counts and P-MAAR list lengths: one walk over a snapshot of the MN IDs,
    pausing (a hub yield) every ``WALK_YIELD_EVERY`` sessions. A result is reused for ``max_age``
    seconds, or for the last walk's duration divided by ``share`` if that is longer (however often
    someone scrapes, walking takes at most that share of the time); a scrape that comes while a
    walk runs takes the previous result."""

    def __init__(self, view: DomainView, pause: Callable[[], None] = _no_pause, max_age: float = WALK_MAX_AGE,
                 clock: Callable[[], float] = time.monotonic, share: float = WALK_SHARE) -> None:
        self.view, self.pause, self.max_age, self.clock, self.share = view, pause, max_age, clock, share
        self._result: Optional[dict] = None
        self._at = 0.0
        self._running = False

    def get(self) -> dict:
        fresh = self._result is not None and \
            self.clock() - self._at < max(self.max_age, self._result["seconds"] / self.share)
        if fresh or (self._running and self._result is not None):
            return self._result
        self._running = True
        try:
            self._result, self._at = self._walk(), self.clock()
        finally:
            self._running = False
        return self._result

    def _walk(self) -> dict:
        started = time.perf_counter()
        view = self.view
        by_len = [0] * (view.domain.timers.max_pmaars + 1)
        serving = {m.address: 0 for m in view.maars()}
        anchoring = dict(serving)
        for i, mn_id in enumerate(view.session_ids()):
            if i % WALK_YIELD_EVERY == WALK_YIELD_EVERY - 1:
                self.pause()
            s = view.session(mn_id)
            if s is None:
                continue  # ended while we paused
            n = len(s.pmaars)
            if n >= len(by_len):
                by_len.extend([0] * (n + 1 - len(by_len)))
            by_len[n] += 1
            if s.serving in serving:
                serving[s.serving] += 1
            for a, _ in s.pmaars:
                if a in anchoring:
                    anchoring[a] += 1
        return {"by_pmaars": by_len, "serving": serving, "anchoring": anchoring,
                "seconds": time.perf_counter() - started}


class CmdCollector:
    """A prometheus_client collector over a ``DomainView``: every family of ``FAMILIES``."""

    def __init__(self, view: DomainView, pause: Callable[[], None] = _no_pause,
                 max_age: float = WALK_MAX_AGE) -> None:
        self.view = view
        self.walk = SessionWalk(view, pause, max_age)

    def _name(self, address: str) -> str:
        return OTHER if address == OTHER else self.view.name_of(address)

    def collect(self):
        view = self.view
        snap = view.counters()
        maars = view.maars()
        out = {name: family(name) for name in FAMILIES}
        out["dmm_info"].add_metric([__version__, view.domain.mode.value, view.domain.dereg.value], 1)
        # messages, with every MAAR present from the start (so that rate() sees the first one)
        for m in maars:
            out["dmm_pbu_received"].add_metric([m.name], snap["messages"].get(("pbu_received", m.address, None), 0))
            out["dmm_pbu_sent"].add_metric([m.name], snap["messages"].get(("pbu_sent", m.address, None), 0))
            for kind in ("heartbeat_received", "heartbeat_sent"):
                out[f"dmm_{kind}"].add_metric([m.name], snap["messages"].get((kind, m.address, None), 0))
        for (kind, peer, status), n in sorted(snap["messages"].items(), key=_order):
            if status is None:
                if peer == OTHER:
                    out[f"dmm_{kind}"].add_metric([OTHER], n)
            else:
                out[f"dmm_{kind}"].add_metric([self._name(peer), status_name(status)], n)
        for listener in ("rest", "metrics"):
            for reason in ("unauthorized", "forbidden"):
                key = f"{_HTTP_REFUSED}{listener}.{reason}"
                out["dmm_http_refused"].add_metric([listener, reason], snap["counters"].get(key, 0))
        for key, n in sorted(snap["counters"].items()):
            if key in _FLAT:
                continue
            for prefix, name in _PREFIXED.items():
                if key.startswith(prefix):
                    out[name].add_metric([key[len(prefix):]], n)
        for key, name in _FLAT.items():
            out[name].add_metric([], snap["counters"].get(key, 0))
        for event, n in sorted(snap["reports"].items()):
            out["dmm_mobility_events"].add_metric([event], n)
        out["dmm_handover_duration_seconds"].add_metric([snap["mode"]], buckets(snap["handover_seconds"]),
                                                        snap["handover_seconds_sum"])
        out["dmm_flows_confirmed_seconds"].add_metric([], buckets(snap["flows_confirmed_seconds"]),
                                                      snap["flows_confirmed_seconds_sum"])
        # switches: every MAAR with a switch, every note kind
        switched = [m for m in maars if view.has_switch(m)]
        for m in switched:
            for kind, name in NOTE_FAMILIES.items():
                out[name].add_metric([m.name], snap["noted"].get((kind, m.address), 0))
        for (kind, maar), n in sorted(snap["noted"].items()):
            if maar == OTHER or not any(m.address == maar for m in switched):
                out[NOTE_FAMILIES[kind]].add_metric([self._name(maar)], n)
        for m in maars:
            if m.datapath_id is not None:
                out["dmm_switch_connected"].add_metric([m.name], 1 if view.connected(m) else 0)
        # the receive path (/proc)
        for name, sock in sorted(view.receive_path().get("sockets", {}).items()):
            if sock.get("kernel_drops") is not None:
                out["dmm_receive_kernel_drops"].add_metric([name], sock["kernel_drops"])
                out["dmm_receive_queued_bytes"].add_metric([name], sock["queued_bytes"])
            out["dmm_receive_buffer_bytes"].add_metric([name], sock["rcvbuf"])
        # heartbeats and the binding store
        peers = view.peers()
        for m in maars:
            p = peers.get(m.name)
            if p is not None:
                out["dmm_peer_reachable"].add_metric([m.name], 1 if p["reachable"] else 0)
                out["dmm_peer_restarts"].add_metric([m.name], p["restarts"])
                if p["restart_counter"] is not None:
                    out["dmm_peer_restart_counter"].add_metric([m.name], p["restart_counter"])
        st = view.store()
        out["dmm_store_info"].add_metric([str(st.get("backend", "")), str(st.get("restart_counter", ""))], 1)
        out["dmm_store_restored_sessions"].add_metric([], st.get("restored_sessions", 0))
        for key in ("commits", "changes_committed", "failed_writes", "pending_changes", "held_pbas", "dropped_pbas"):
            out[f"dmm_store_{key}"].add_metric([], st.get(key, 0))
        out["dmm_store_last_commit_seconds"].add_metric([], st.get("last_commit_ms", 0.0) / 1000)
        aa = st.get("active_active")
        if isinstance(aa, dict):  # several CMDs on one Redis (docs/deploy-cmds.md)
            out["dmm_store_checks"].add_metric(["won"], aa.get("checks_won", 0))
            out["dmm_store_checks"].add_metric(["lost"], aa.get("checks_lost", 0))
            out["dmm_store_takeovers"].add_metric([], aa.get("takeover_count", 0))
            for name, inst in sorted(aa.get("instances", {}).items()):
                if isinstance(inst, dict):
                    out["dmm_store_instance_alive"].add_metric([name], 1 if inst.get("alive") else 0)
                    out["dmm_store_instance_sessions"].add_metric([name], inst.get("sessions_owned", 0))
        for check, n in sorted(view.protocol().items()):
            out["dmm_protocol_checks"].add_metric([check], n)
        # sessions
        out["dmm_sessions"].add_metric([], view.session_count())
        walk = self.walk.get()
        for n, count in enumerate(walk["by_pmaars"]):
            out["dmm_sessions_by_pmaars"].add_metric([str(n)], count)
        for m in maars:
            out["dmm_maar_sessions"].add_metric([m.name, "serving"], walk["serving"].get(m.address, 0))
            out["dmm_maar_sessions"].add_metric([m.name, "anchoring"], walk["anchoring"].get(m.address, 0))
        out["dmm_session_walk_seconds"].add_metric([], walk["seconds"])
        return list(out.values())


def _order(item):
    (kind, peer, status), _ = item
    return kind, peer, -1 if status is None else status


def registry(view: DomainView, pause: Callable[[], None] = _no_pause) -> CollectorRegistry:
    """The CMD's registry: its own collector and the process's (CPU, memory, file descriptors)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(CmdCollector(view, pause))
    ProcessCollector(registry=reg)
    return reg


def wsgi_app(reg: CollectorRegistry, guard: Guard):
    """``GET /metrics``: the text exposition (HEAD: its headers; other methods as prometheus_client
    answers them); 404 elsewhere. An exception while collecting is contained: counted as
    ``dmm_internal_errors_total{where="metrics"}``, answered 500."""
    metrics = make_wsgi_app(reg)

    def app(environ, start_response):
        if environ.get("PATH_INFO") != PATH:
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [f"not found: the metrics are at {PATH}\n".encode()]
        try:
            if environ.get("REQUEST_METHOD") == "HEAD":  # prometheus_client answers GET only: its headers, no body
                metrics(dict(environ, REQUEST_METHOD="GET"), start_response)
                return [b""]
            return metrics(environ, start_response)
        except Exception as exc:  # noqa: BLE001 - containment boundary: one scrape, one error count
            guard.error("metrics", exc)
            start_response("500 Internal Server Error", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"internal error (counted in dmm_internal_errors_total{where=\"metrics\"})\n"]
    return app


class _WarningsOnly:
    """The server's log without its access and start-up lines (a scrape every few seconds is no news)."""

    def __init__(self, log) -> None:
        self._log = log

    def log(self, level: int, *args, **kwargs) -> bool:
        return self._log.log(level, *args, **kwargs) if level >= logging.WARNING else False


class MetricsServer:
    """The metrics' own listening socket, served on the hub until ``stop`` (over TLS with ``tls``)."""

    def __init__(self, sock, app, guard: Guard, tls=None) -> None:
        self.sock = sock
        self.address = sock.getsockname()[:2]
        limits = rest.ServerLimits(max_connections=MAX_CONNECTIONS)
        self._thread = hub.spawn(guard.call, "metrics_server", rest.serve, sock, app, limits, _WarningsOnly(guard.log),
                                 tls)

    def stop(self) -> None:
        hub.kill(self._thread)
        self.sock.close()


def listen(host: str, port: int):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # No SO_REUSEPORT (eventlet's default): a second CMD must not share this port with the first.
    return eventlet.listen((host, port), family=family, reuse_port=False)


def start(view: DomainView, settings: CmdSettings, guard: Guard, tls=None,
          access: Callable = lambda app: app) -> Optional[MetricsServer]:
    """Serve the CMD's metrics as ``settings`` say: None if disabled (port 0) or if the default
    port is taken (a warning says so). A port set in the configuration that cannot be opened stops
    the CMD (SystemExit 2) with a message, as the signalling port does. Over TLS with ``tls``, each
    request through ``access(app)`` first (the ``[rest]`` rules, httpaccess.py)."""
    port = DEFAULT_PORT if settings.metrics_port is None else settings.metrics_port
    if port == 0:
        return None
    host = settings.metrics_listen
    try:
        if port == getattr(cfg.CONF, "wsapi_port", None):  # Ryu binds REST after us: it would fail instead
            raise OSError(errno.EADDRINUSE, "it is [DEFAULT] wsapi_port, REST's port")
        sock = listen(host, port)
    except OSError as exc:
        if settings.metrics_port is not None:
            print(f"ryu_dmm.cmd: cannot open the metrics port on [{host}]:{port}: {exc.strerror}",
                  file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        guard.log.log(logging.WARNING, "metrics", "listen", "metrics disabled: cannot listen on [%s]:%d "
                      "(the default; set [dmm] metrics_port): %s", host, port, exc.strerror)
        return None
    server = MetricsServer(sock, access(wsgi_app(registry(view, lambda: hub.sleep(0)), guard)), guard, tls)
    guard.log.log(logging.INFO, "metrics", "listen", "Prometheus metrics on %s://%s:%d%s", "https" if tls else "http",
                  f"[{host}]" if ":" in host else host, server.address[1], PATH)
    return server
