"""Prometheus metrics of a MAAR agent: ``GET http://127.0.0.1:<port>/metrics`` (docs/observability.md).

The port is ``--metrics-port``; by default 9461 plus the position of the MAAR's ``[maar:NAME]``
section in the domain file (the first MAAR 9461, the second 9462, ...), so that the agents of one
domain on one host do not collide; a default port that is taken is given up with a warning, a port
given on the command line must open; 0 disables metrics.

Collected when scraped from the agent's own counters, its core's bindings and pool, and a ``Stats``
(``ryu_dmm.stats``) counting messages by peer and status and the core's reports. Served by a small
HTTP/1.1 responder on the agent's select loop (no thread): each connection sends one request, gets
one answer and is closed; at most ``MAX_CONNECTIONS`` at once (a new one closes the oldest), each
closed ``DEADLINE`` seconds after it was accepted whatever it did, a request head over
``HEAD_MAX`` bytes is answered 431. Every label is bounded: ``maar`` is this agent, ``peer`` the
CMD (``cmd``), a MAAR of the domain or ``other``.
"""
from __future__ import annotations

import argparse
import itertools
import selectors
import socket
import time
from enum import Enum
from typing import TYPE_CHECKING, Callable, NamedTuple, Optional

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.process_collector import ProcessCollector

from .. import __version__
from ..stats import OTHER, status_name
from . import guard

if TYPE_CHECKING:
    from .main import Agent

DEFAULT_PORT_BASE = 9461
DEFAULT_LISTEN = "127.0.0.1"
PATH = b"/metrics"
MAX_CONNECTIONS = 8
DEADLINE = 10.0  # seconds a connection may live: request, answer and all
HEAD_MAX = 8192  # bytes of request line and headers
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # generate_latest's format (as make_wsgi_app serves it)

FAMILIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "dmm_agent_info": ("gauge", "The agent: its version and the domain's mobility mode (always 1).",
                       ("maar", "version", "mode")),
    "dmm_agent_attaches": ("counter", "Attach triggers (RS or control attach) handed to the MAAR core.", ("maar",)),
    "dmm_agent_refused_attaches": ("counter", "Attach triggers refused, by reason: the rate limits "
                                              "(mac_rate, new_mn_rate, limiter_full), [auth] (unauthorized, "
                                              "port_cap).", ("maar", "reason")),
    "dmm_agent_protocol_checks": ("counter", "Receipt checks of the MAAR core (docs/security.md): pbu_without_d, "
                                             "pba_without_d (taken); pba_echo_mismatch, direct_pba_refused, "
                                             "serving_maar_refused (refused).", ("maar", "check")),
    "dmm_agent_bindings": ("gauge", "Bindings the MAAR core holds (served or anchored MNs).", ("maar",)),
    "dmm_agent_pool_in_use": ("gauge", "Prefixes of the MAAR's pool in use.", ("maar",)),
    "dmm_agent_pool_capacity": ("gauge", "Prefixes the MAAR's pool holds.", ("maar",)),
    "dmm_agent_pbu_sent": ("counter", "PBUs sent, by peer.", ("maar", "peer")),
    "dmm_agent_pba_received": ("counter", "PBAs received, by peer and status.", ("maar", "peer", "status")),
    "dmm_agent_pbu_received": ("counter", "PBUs received, by peer.", ("maar", "peer")),
    "dmm_agent_pba_sent": ("counter", "PBAs sent, by peer and status.", ("maar", "peer", "status")),
    "dmm_agent_heartbeat_sent": ("counter", "RFC 5847 Heartbeats sent (requests and responses), by peer.",
                                 ("maar", "peer")),
    "dmm_agent_heartbeat_received": ("counter", "RFC 5847 Heartbeats received (requests and responses), by peer.",
                                     ("maar", "peer")),
    "dmm_agent_restart_counter": ("gauge", "This MAAR's RFC 5847 Restart Counter (changes at every start).", ("maar",)),
    "dmm_agent_peer_reachable": ("gauge", "1 while the peer answers Heartbeats (0 after missing_heartbeats_allowed "
                                          "unanswered in a row).", ("maar", "peer")),
    "dmm_agent_peer_restart_counter": ("gauge", "The peer's last Restart Counter (absent until one is heard).",
                                       ("maar", "peer")),
    "dmm_agent_peer_heartbeats_missed": ("gauge", "Heartbeat requests to the peer unanswered in a row.",
                                         ("maar", "peer")),
    "dmm_agent_peer_restarts": ("counter", "Restarts of the peer seen (Restart Counter changes).", ("maar", "peer")),
    "dmm_agent_mobility_events": ("counter", "Mobility events of the MAAR core (registered, handover, moved, "
                                             "renewed, deregistered, failed, rejected, peer_unreachable, "
                                             "peer_reachable, peer_restarted).", ("maar", "event")),
}
_REFUSED = "refused_"
# The agent's bad-input and failure counters (guard.COUNTERS) other than the refusals.
COUNTER_FAMILIES = {name: f"dmm_agent_{name}" for name in guard.COUNTERS
                    if not name.startswith(_REFUSED)}
_COUNTER_HELP = {
    "decode_errors": "Signalling datagrams that are not a well-formed PBU/PBA/Heartbeat.",
    "bad_control": "Control requests refused as malformed.",
    "bad_openflow": "OpenFlow messages from the MAAR's own switch skipped as malformed (flow_control = maar).",
    "bad_frames": "Access-link frames claiming to be RS/NS that fail validation.",
    "internal_errors": "Exceptions contained (a bug or an unencodable message).",
    "send_errors": "Send failures on the signalling or access socket.",
    "recv_errors": "Receive failures on a socket.",
    "suppressed_lines": "Event lines held back by the line limiter.",
}
for _name, _family in COUNTER_FAMILIES.items():
    FAMILIES[_family] = ("counter", _COUNTER_HELP.get(_name, _name.replace("_", " ") + "."), ("maar",))

_KINDS = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily}


def tcp_port(text: str) -> int:
    """``--metrics-port``'s type: 0..65535."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is 0..65535 (0: no metrics), not {text!r}")
    return value


def default_port(domain, name: str) -> int:
    """9461 for the domain's first MAAR, 9462 for its second, ..."""
    return DEFAULT_PORT_BASE + [m.name for m in domain.maars].index(name)


class AgentCollector:
    """A prometheus_client collector over one running ``Agent``."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        core = agent.core
        # peer label: "cmd" for the one CMD, or cmd1, cmd2, ... in the order of the list (docs/failover.md)
        cmds = core.failover.cmds
        self._cmds = {a: "cmd" if len(cmds) == 1 else f"cmd{i}" for i, a in enumerate(cmds, 1)}
        self._names = {**self._cmds, **{a: m.name for a, m in core.peers.items()}}

    def collect(self):
        agent, core = self.agent, self.agent.core
        me = core.info.name
        out = {name: _KINDS[kind](name, text, labels=labels) for name, (kind, text, labels) in FAMILIES.items()}
        out["dmm_agent_info"].add_metric([me, __version__, agent.domain.mode.value], 1)
        snap = agent.stats.snapshot()
        out["dmm_agent_attaches"].add_metric([me], snap["counters"].get("attaches", 0))
        counters = dict(agent.counters)
        for name, n in sorted(counters.items()):
            if name.startswith(_REFUSED) and name != "refused_attaches":  # that one is their sum
                out["dmm_agent_refused_attaches"].add_metric([me, name[len(_REFUSED):]], n)
        for name, family in COUNTER_FAMILIES.items():
            out[family].add_metric([me], counters.get(name, 0))
        for check, n in sorted(core.counters.items()):
            out["dmm_agent_protocol_checks"].add_metric([me, check], n)
        out["dmm_agent_bindings"].add_metric([me], len(core.bindings))
        out["dmm_agent_pool_in_use"].add_metric([me], core.pool.in_use)
        out["dmm_agent_pool_capacity"].add_metric([me], core.pool.capacity)
        for cmd, label in self._cmds.items():  # shown from the start, 0 included
            out["dmm_agent_pbu_sent"].add_metric([me, label], snap["messages"].get(("pbu_sent", cmd, None), 0))
        for (kind, peer, status), n in sorted(snap["messages"].items(), key=_order):
            peer_name = self._names.get(peer, OTHER)
            if status is None:
                if kind != "pbu_sent" or peer not in self._cmds:
                    out[f"dmm_agent_{kind}"].add_metric([me, peer_name], n)
            else:
                out[f"dmm_agent_{kind}"].add_metric([me, peer_name, status_name(status)], n)
        for event, n in sorted(snap["reports"].items()):
            out["dmm_agent_mobility_events"].add_metric([me, event], n)
        out["dmm_agent_restart_counter"].add_metric([me], core.heartbeats.own_counter)
        for v in core.heartbeats.views():
            labels = [me, self._names.get(v.peer, OTHER)]
            out["dmm_agent_peer_reachable"].add_metric(labels, int(v.reachable))
            if v.restart_counter is not None:
                out["dmm_agent_peer_restart_counter"].add_metric(labels, v.restart_counter)
            out["dmm_agent_peer_heartbeats_missed"].add_metric(labels, v.missed)
            out["dmm_agent_peer_restarts"].add_metric(labels, v.restarts)
        return list(out.values())


def _order(item):
    (kind, peer, status), _ = item
    return kind, peer, -1 if status is None else status


def registry(agent: Agent) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(AgentCollector(agent))
    ProcessCollector(registry=reg)
    return reg


# ---- HTTP on the select loop ----------------------------------------------------------------------
class HttpTimer(Enum):
    DEADLINE = "metrics-http-deadline"


class HttpKey(NamedTuple):
    """A connection's deadline on the loop's timer heap (its first field's type is its own, so it
    never equals a core's key)."""

    kind: HttpTimer
    conn: int


class _Conn:
    __slots__ = ("sock", "head", "out")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.head = b""
        self.out = b""


def _response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8",
              extra: str = "", head_only: bool = False) -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n{extra}"
            "Connection: close\r\n\r\n").encode() + (b"" if head_only else body)


class MetricsHttp:
    """``GET /metrics`` on a listening socket served by a ``Loop`` (agent/loop.py). ``render``
    returns the exposition; ``on_error(where, exc)`` is told about an exception it raised (then 500).
    The owner routes ``HttpKey`` timers to ``on_timer``."""

    def __init__(self, loop, host: str, port: int, render: Callable[[], bytes],
                 on_error: Callable[[str, BaseException], None], max_connections: int = MAX_CONNECTIONS,
                 deadline: float = DEADLINE) -> None:
        self.loop, self.render, self.on_error = loop, render, on_error
        self.max_connections, self.deadline = max_connections, deadline
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart past TIME_WAIT
            self.sock.bind((host, port))
            self.sock.listen(16)
            self.sock.setblocking(False)
        except OSError:
            self.sock.close()
            raise
        self.address = self.sock.getsockname()[:2]
        self._conns: dict[int, _Conn] = {}  # oldest first
        self._ids = itertools.count(1)
        self.served = 0
        loop.add_reader(self.sock, self._accept, "metrics")

    def _accept(self) -> None:
        try:
            sock, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        sock.setblocking(False)
        while len(self._conns) >= self.max_connections:
            self._close(next(iter(self._conns)))
        ident = next(self._ids)
        self._conns[ident] = _Conn(sock)
        self.loop.add_reader(sock, lambda: self._readable(ident), "metrics")
        self.loop.timers.set(HttpKey(HttpTimer.DEADLINE, ident), time.time() + self.deadline)

    def _readable(self, ident: int) -> None:
        c = self._conns.get(ident)
        if c is None:
            return
        try:
            data = c.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(ident)
            return
        c.head += data
        end = c.head.find(b"\r\n\r\n")
        if end < 0:
            end = c.head.find(b"\n\n")
        if end < 0 and len(c.head) <= HEAD_MAX:
            return  # more of the head to come
        c.out = self._answer(c.head[:end]) if 0 <= end <= HEAD_MAX else \
            _response("431 Request Header Fields Too Large", b"request head too large\n")
        self.loop.selector.modify(c.sock, selectors.EVENT_WRITE,
                                  ("metrics", lambda: self._writable(ident)))
        self._writable(ident)

    def _answer(self, head: bytes) -> bytes:
        parts = head.split(b"\r\n", 1)[0].split(b"\n", 1)[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return _response("400 Bad Request", b"not an HTTP request\n")
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            return _response("405 Method Not Allowed", b"GET or HEAD only\n", extra="Allow: GET, HEAD\r\n")
        if target != PATH:
            return _response("404 Not Found", b"not found: the metrics are at /metrics\n")
        try:
            body = self.render()
        except Exception as exc:  # noqa: BLE001 - one scrape fails, the agent goes on
            self.on_error("metrics", exc)
            return _response("500 Internal Server Error", b"internal error (counted in internal_errors)\n")
        self.served += 1
        return _response("200 OK", body, CONTENT_TYPE, head_only=method == b"HEAD")

    def _writable(self, ident: int) -> None:
        c = self._conns.get(ident)
        if c is None:
            return
        try:
            sent = c.sock.send(c.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(ident)
            return
        c.out = c.out[sent:]
        if not c.out:
            self._close(ident)

    def _close(self, ident: int) -> None:
        c = self._conns.pop(ident, None)
        if c is None:
            return
        self.loop.remove_reader(c.sock)
        self.loop.timers.cancel(HttpKey(HttpTimer.DEADLINE, ident))
        c.sock.close()

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"

    def on_timer(self, key: HttpKey) -> None:
        self._close(key.conn)

    def __len__(self) -> int:
        return len(self._conns)

    def close(self) -> None:
        for ident in list(self._conns):
            self._close(ident)
        self.loop.remove_reader(self.sock)
        self.sock.close()


def serve(agent: Agent, host: str, port: Optional[int], default: int,
          on_error: Callable[[str, BaseException], None]) -> tuple[Optional[MetricsHttp], Optional[str]]:
    """The agent's metrics server on [host]:port (``port`` None: ``default``, given up if taken;
    0: none). Returns (server or None, a warning or None); raises OSError if an explicit port
    cannot be opened."""
    chosen = default if port is None else port
    if chosen == 0:
        return None, None
    reg = registry(agent)
    try:
        server = MetricsHttp(agent.loop, host, chosen, lambda: generate_latest(reg), on_error)
    except OSError as exc:
        if port is not None:
            raise
        return None, f"metrics disabled: cannot listen on [{host}]:{chosen} (the default; use --metrics-port): " \
                     f"{exc.strerror}"
    return server, None
