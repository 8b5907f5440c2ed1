"""REST API of the CMD (JSON over Ryu's WSGI server): mobility sessions, MAARs, statistics.

It reads only the public ``DomainView``; every error is a JSON body ``{"error": ..., "status": ...}``.
The API is described in docs/openapi.yaml, its bounds in docs/limits-rest.md.

Routing works on the raw request path (eventlet's ``RAW_PATH_INFO``), split at ``/`` first and each
segment percent-decoded afterwards as UTF-8 (undecodable bytes kept by ``surrogateescape``), so an
MN ID may hold ``/`` (as ``%2F``) or any byte. Every request runs on the hub between datagrams, so
none may hold it long: session listings are paginated (a snapshot of the MN IDs, read page by page
with an opaque cursor), and every walk over sessions or flows yields to the hub every few dozen
items (``hub.sleep(0)``). The server Ryu starts is given a connection cap and header and request
deadlines (``install_server``).
"""
from __future__ import annotations

import collections
import json
import logging
import re
import secrets
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Callable, Optional
from urllib.parse import parse_qsl, quote, unquote_to_bytes

import eventlet.wsgi
from oslo_config import cfg as oslo_cfg
from webob import Response

from .domainview import DomainView
from .logsafe import Guard, SafeLog, escape
from .mobility.views import Session
from .runtime import hub, wsgi
from .wire import mac_text

APP_KEY = "ryu_dmm_cmd"
STATE_KEY = "ryu_dmm_rest"
PREFIX = "/dmm/v1"

LIMIT_DEFAULT = 100  # sessions per page when ?limit is absent
LIMIT_MAX = 1000  # largest ?limit accepted
SCAN_MAX = 10_000  # MN IDs a page examines at most (a ?maar filter may match few): the page may be short
YIELD_EVERY = 50  # items rendered between two hub yields (about 0.4 ms of work)
COUNT_YIELD_EVERY = 500  # sessions counted between two hub yields in /maars/{name}
LISTINGS_MAX = 8  # listings (snapshots of MN IDs) kept for cursors; the least recently used goes first
LISTING_TTL = 60.0  # seconds a listing lives after its last page was served
COUNT_MAX_AGE = 1.0  # seconds the per-MAAR session counts may be reused
MAX_QUERY_FIELDS = 16

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})  # RFC 9110, 5789
ALLOW = "GET, HEAD, OPTIONS"
_LIMIT = re.compile(r"[0-9]{1,10}")  # ASCII only: str.isdigit() also takes '²' and other digits
_CURSOR = re.compile(r"([A-Za-z0-9_-]{12})\.([0-9]{1,10})")


# ---- the server: connection cap, header and request deadlines --------------------------------------
SERVER_OPTS = [
    oslo_cfg.IntOpt("wsapi_max_connections", default=64,
                    help="REST: connections served at once; more wait in the kernel's accept queue"),
    oslo_cfg.FloatOpt("wsapi_header_timeout", default=10.0,
                      help="REST: seconds for a request line and its headers (idle keep-alive included)"),
    oslo_cfg.FloatOpt("wsapi_request_timeout", default=30.0,
                      help="REST: seconds from a request's headers to the end of its response"),
]
wsgi.CONF.register_opts(SERVER_OPTS)  # Ryu's configuration (``[DEFAULT]``), read after its files were parsed


@dataclass(frozen=True)
class ServerLimits:
    max_connections: int = 64
    header_timeout: float = 10.0
    request_timeout: float = 30.0

    BOUNDS = {"max_connections": (1, 10_000), "header_timeout": (0.1, 3600.0), "request_timeout": (0.1, 3600.0)}

    def __post_init__(self) -> None:
        for name, (low, high) in self.BOUNDS.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"[DEFAULT] wsapi_{name}: {value} is outside {low:g}..{high:g}")

    @classmethod
    def from_conf(cls, conf) -> ServerLimits:
        """From Ryu's configuration (``[DEFAULT] wsapi_*``, next to ``wsapi_port``); ValueError if bad."""
        values = {}
        for name in cls.BOUNDS:
            try:
                values[name] = getattr(conf, f"wsapi_{name}")
            except Exception as exc:  # noqa: BLE001 - oslo.config's own errors name the option
                raise ValueError(f"[DEFAULT] wsapi_{name}: {exc}") from None
        return cls(**values)


class _Expired(BaseException):
    """A deadline passed. Not an ``Exception``: it must pass through every handler on its way out."""


class _HeaderExpired(_Expired):
    pass


class _RequestExpired(_Expired):
    pass


_408 = json.dumps({"error": "request timeout: the request line and headers did not arrive in time",
                   "status": 408}).encode()


class _Protocol(eventlet.wsgi.HttpProtocol):
    """eventlet's HTTP/1.1 handler with two deadlines per request (eventlet's own ``socket_timeout``
    only bounds each read, so a client sending a byte now and then would hold a connection forever):
    the request line and headers within ``header_timeout`` of the connection being accepted or of
    the previous response (a silent close if no request line came: an idle keep-alive connection;
    else 408), and the response complete within ``request_timeout`` after that (else the connection
    is closed; not for a WebSocket upgrade). A request with a body is answered and the connection
    closed: no body is read."""

    limits: ServerLimits = ServerLimits()
    tls = None  # an ssl.SSLContext (green): the connection is TLS, its handshake within header_timeout

    def setup(self):
        if self.tls is not None:
            deadline = hub.Timeout(self.limits.header_timeout, _HeaderExpired())
            try:
                self.request = self.tls.wrap_socket(self.request, server_side=True, do_handshake_on_connect=False)
                self.request.do_handshake()
            except (_HeaderExpired, ssl.SSLError, OSError, ValueError):
                # No TLS, a bad or missing client certificate, or too slow: eventlet closes the
                # connection quietly on socket.timeout (its "expected" end of a connection).
                raise socket.timeout("TLS handshake failed") from None
            finally:
                deadline.cancel()
        super().setup()

    def handle_one_request(self):
        self.raw_requestline = b""
        self._deadline = hub.Timeout(self.limits.header_timeout, _HeaderExpired())
        try:
            super().handle_one_request()
        except _Expired as exc:
            self.close_connection = 1
            if isinstance(exc, _HeaderExpired) and self.raw_requestline:
                try:
                    self.wfile.write(b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
                                     b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_408), _408))
                    self.wfile.flush()
                except OSError:
                    pass
        finally:
            self._deadline.cancel()

    def get_environ(self):
        env = super().get_environ()  # called once the headers are complete, before the application
        self._deadline.cancel()
        # A WebSocket (another Ryu app's, on the shared server) lives as long as its peer wants.
        websocket = env.get("HTTP_UPGRADE", "").lower() == "websocket"
        self._deadline = hub.Timeout(None if websocket else self.limits.request_timeout, _RequestExpired())
        if env.get("CONTENT_LENGTH", "0") not in ("", "0") or "HTTP_TRANSFER_ENCODING" in env:
            self.close_connection = 1
        return env


class _ServerLog:
    """eventlet's server log (an access line per request, its own errors) through ``SafeLog``:
    escaped, and rate-limited per client address."""

    def __init__(self, log: SafeLog) -> None:
        self._log = log

    def _write(self, level: int, msg: str, args) -> None:
        text = msg % args if args else str(msg)
        self._log.log(level, text.split(" ", 1)[0], "http", "%s", text.rstrip("\n"))

    def info(self, msg, *args):
        self._write(logging.INFO, msg, args)

    def error(self, msg, *args):
        self._write(logging.ERROR, msg, args)

    warning = error

    def debug(self, msg, *args):
        pass


def serve(sock, app, limits: ServerLimits, log: SafeLog, tls=None) -> None:
    """Serve ``app`` on the listening ``sock`` with ``limits`` until the socket closes; over TLS
    with the ``ssl.SSLContext`` ``tls`` if given (httpaccess.server_context)."""
    protocol = type("LimitedHttpProtocol", (_Protocol,), {"limits": limits, "tls": tls})
    eventlet.wsgi.server(sock, app, log=_ServerLog(log), max_size=limits.max_connections, protocol=protocol,
                         socket_timeout=limits.request_timeout, keepalive=True, log_x_forwarded_for=False,
                         debug=False)


_ryu_start_service = wsgi.start_service


def install_server(limits: ServerLimits, log: SafeLog, tls=None, guard: Callable = lambda app: app) -> None:
    """Have Ryu start its REST server with ``limits``, over TLS with ``tls`` if given, every request
    first through ``guard(app)`` (httpaccess.guarded: client address and bearer token).

    ``ryu-manager`` starts the server itself, after every app is instantiated:
    ``ryu.app.wsgi.start_service`` binds it and its ``serve_forever`` calls ``eventlet.wsgi.server``
    with eventlet's defaults (1024 connections, no timeouts, tracebacks sent to clients). Ryu has no
    option for any of that, so we wrap that function (the manager looks it up at call time): Ryu
    still builds and binds its server, whose ``serve_forever`` then passes our limits. The server
    stays Ryu's one: other Ryu REST apps in the same process share it and its limits."""
    def start_service(app_mgr):
        server = _ryu_start_service(app_mgr)
        if server is not None:
            server.serve_forever = lambda: serve(server.server, guard(server.handle), limits, log, tls)
        return server

    wsgi.start_service = start_service


# ---- responses --------------------------------------------------------------------------------
def _json(body, status: int = 200, headers: Optional[dict] = None) -> Response:
    return _raw(json.dumps(body, sort_keys=True).encode(), status, headers)


def _raw(body: bytes, status: int = 200, headers: Optional[dict] = None) -> Response:
    resp = Response(status=status, content_type="application/json", charset="utf-8", body=body)
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def _error(status: int, message: str, headers: Optional[dict] = None) -> Response:
    return _json({"error": message, "status": status}, status, headers)


def _show(value):
    return mac_text(value) if isinstance(value, bytes) else value


def _quoted(text: str) -> str:
    return "'" + escape(text) + "'"


def mn_id_fields(mn_id: str) -> dict:
    """``mn_id`` as JSON can carry it unambiguously: itself when it is valid Unicode text; else (an
    NAI whose bytes are not UTF-8, kept by the codec with ``surrogateescape``) a readable form with
    U+FFFD for each undecodable byte plus ``mn_id_hex``, the exact bytes."""
    try:
        mn_id.encode("utf-8")
        return {"mn_id": mn_id}
    except UnicodeEncodeError:
        try:
            raw = mn_id.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raw = mn_id.encode("utf-8", "surrogatepass")
        return {"mn_id": raw.decode("utf-8", "replace"), "mn_id_hex": raw.hex()}


def _traffic(t) -> Optional[dict]:
    """An anchor's tunnel traffic as the flow mirror counted it (docs/anchor-release.md); None when
    not polled (anchor_idle_timeout 0, or no switch)."""
    if t is None:
        return None
    return {"last_traffic": t.last_traffic, "idle_since": t.idle_since,
            "packets": {"uplink": t.uplink_packets, "downlink": t.downlink_packets}}


def segment(text: str) -> str:
    """One raw path segment, percent-decoded to bytes and read as UTF-8 (surrogateescape). The WSGI
    server gives the raw request line as Latin-1 text: back to those bytes first, so raw (unescaped)
    non-ASCII bytes in a path are the same bytes as their percent-escapes."""
    return unquote_to_bytes(text.encode("latin-1")).decode("utf-8", "surrogateescape")


def raw_path(environ: dict) -> str:
    raw = environ.get("RAW_PATH_INFO")
    if raw is None:
        uri = environ.get("REQUEST_URI") or environ.get("RAW_URI")
        raw = uri.split("?", 1)[0] if uri else quote(environ.get("PATH_INFO", "").encode("latin-1"), safe="/")
    return raw


# ---- state shared by requests: listings for cursors, per-MAAR counts ------------------------------
class Listing:
    __slots__ = ("id", "ids", "maar", "used")

    def __init__(self, ids: list, maar: Optional[str], now: float) -> None:
        self.id = secrets.token_urlsafe(9)  # 12 characters of [A-Za-z0-9_-]
        self.ids, self.maar, self.used = ids, maar, now


class Listings:
    """Snapshots of the MN IDs that cursors walk: at most ``max_listings``, each dropped ``ttl``
    seconds after its last page (or earlier, least recently used first, when a new one needs room)."""

    def __init__(self, max_listings: int = LISTINGS_MAX, ttl: float = LISTING_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_listings, self.ttl, self.clock = max_listings, ttl, clock
        self._live: collections.OrderedDict[str, Listing] = collections.OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._live)

    def create(self, ids: list, maar: Optional[str]) -> Listing:
        listing = Listing(ids, maar, self.clock())
        self.keep(listing)
        return listing

    def get(self, listing_id: str) -> Optional[Listing]:
        self._expire()
        return self._live.get(listing_id)

    def keep(self, listing: Listing) -> None:
        """(Re)insert as the most recently used."""
        listing.used = self.clock()
        self._live[listing.id] = listing
        self._live.move_to_end(listing.id)
        self._expire()
        while len(self._live) > self.max_listings:
            self._live.popitem(last=False)
            self.evicted += 1

    def _expire(self) -> None:
        now = self.clock()
        while self._live:
            oldest = next(iter(self._live.values()))
            if now - oldest.used < self.ttl:
                break
            del self._live[oldest.id]


class MaarCounts:
    """Sessions each MAAR serves or anchors for others: one walk over every session for all MAARs,
    yielding to the hub every ``COUNT_YIELD_EVERY`` sessions; reused for ``max_age`` seconds, and
    requests arriving while a walk runs wait for it instead of starting their own."""

    def __init__(self, max_age: float = COUNT_MAX_AGE, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age, self.clock = max_age, clock
        self._counts: Optional[dict] = None
        self._at = 0.0
        self._running: Optional[hub.Event] = None
        self.walks = 0

    def get(self, view: DomainView) -> dict:
        """MAAR address -> (serving, anchoring)."""
        for _ in range(2):
            if self._counts is not None and self.clock() - self._at < self.max_age:
                return self._counts
            if self._running is None:
                break
            self._running.wait()
        done = self._running = hub.Event()
        try:
            counts = self._walk(view)
            self._counts, self._at = counts, self.clock()
            return counts
        finally:
            self._running = None
            done.set()

    def _walk(self, view: DomainView) -> dict:
        self.walks += 1
        out = {m.address: [0, 0] for m in view.maars()}
        ids = view.session_ids()
        for i, mn_id in enumerate(ids):
            if i % COUNT_YIELD_EVERY == 0:  # also right after the copy of the ids
                hub.sleep(0)
            s = view.session(mn_id)
            if s is None:
                continue
            if s.serving in out:
                out[s.serving][0] += 1
            for a in {a for a, _ in s.pmaars}:
                if a in out:
                    out[a][1] += 1
        return {a: tuple(c) for a, c in out.items()}


class RestState:
    def __init__(self, guard: Guard, listings: Optional[Listings] = None, counts: Optional[MaarCounts] = None):
        self.guard = guard
        self.listings = listings or Listings()
        self.counts = counts or MaarCounts()


def registration(view: DomainView, guard: Guard, state: Optional[RestState] = None) -> dict:
    """The data to ``WSGIApplication.register(DmmRestController, ...)`` with."""
    return {APP_KEY: view, STATE_KEY: state or RestState(guard)}


class _BadRequest(Exception):
    pass


def _query(environ: dict) -> dict:
    try:
        pairs = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True, encoding="utf-8",
                          errors="surrogateescape", max_num_fields=MAX_QUERY_FIELDS)
    except ValueError:
        raise _BadRequest(f"more than {MAX_QUERY_FIELDS} query parameters") from None
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise _BadRequest(f"query parameter {_quoted(k)} given more than once")
        out[k] = v
    return out


def parse_limit(text: Optional[str]) -> int:
    if text is None:
        return LIMIT_DEFAULT
    if not _LIMIT.fullmatch(text) or not 1 <= int(text) <= LIMIT_MAX:
        raise _BadRequest(f"limit must be a decimal integer from 1 to {LIMIT_MAX}, not {_quoted(text)}")
    return int(text)


class DmmRestController(wsgi.ControllerBase):
    """HTTP adapter over ``DomainView``: routes on the raw path, renders JSON. Its state across
    requests (listings, counts) lives in ``RestState``; a controller object lives for one request."""

    def __init__(self, req, link, data, **config):
        super().__init__(req, link, data, **config)
        self.view: DomainView = data[APP_KEY]
        self.state: RestState = data[STATE_KEY]

    def __call__(self, req):
        try:
            return self._dispatch(req)
        except _BadRequest as exc:
            return _error(400, str(exc))
        except Exception as exc:  # noqa: BLE001 - containment boundary: one request, one error count
            self.state.guard.error("rest", exc)
            return _error(500, "internal error (counted in /dmm/v1/stats as internal_error.rest)")

    def _dispatch(self, req) -> Response:
        method = req.environ.get("REQUEST_METHOD", "")
        if method not in METHODS:
            return _error(501, f"method {_quoted(method)} is not implemented", {"Allow": ALLOW})
        raw = raw_path(req.environ)
        found = None
        if raw == PREFIX or raw.startswith(PREFIX + "/"):
            found = self._route([segment(s) for s in raw[len(PREFIX) + 1:].split("/")] if raw != PREFIX else [])
        if found is None:
            hint = " (see docs/openapi.yaml)" if raw == PREFIX else ""
            return _error(404, f"no such resource: {escape(raw)}{hint}")
        if method == "OPTIONS":
            return _json({"allow": ALLOW.split(", ")}, 200, {"Allow": ALLOW})
        if method not in ("GET", "HEAD"):
            return _error(405, f"{method} is not allowed here: the API is read-only (GET)", {"Allow": ALLOW})
        handler, args = found
        return handler(req, *args)

    def _route(self, segs: list) -> Optional[tuple]:
        n = len(segs)
        if n == 1 and segs[0] in ("sessions", "maars", "stats"):
            return {"sessions": self.sessions, "maars": self.maars, "stats": self.stats}[segs[0]], ()
        if n == 2 and segs[1] and segs[0] == "sessions":
            return self.session, (segs[1],)
        if n == 2 and segs[1] and segs[0] == "maars":
            return self.maar, (segs[1],)
        if n == 3 and segs[1] and segs[0] == "maars" and segs[2] == "flows":
            return self.flows, (segs[1],)
        return None

    def _session(self, s: Session, now: float) -> dict:
        confirmed = self.view.flows_confirmed(s.mn_id)
        traffic = self.view.anchor_traffic(s.mn_id) if s.pmaars else {}
        name = self.view.name_of
        out = {
            "flows_confirmed": {"pushed_at": confirmed[0], "confirmed_at": confirmed[1]} if confirmed else None,
            "serving_maar": {"name": name(s.serving), "address": s.serving},
            "prefix": str(s.prefix),
            "lifetime_remaining": max(0, round(s.expires - now, 3)),
            "previous_maars": [{"name": name(a), "address": a, "prefix": str(p), "traffic": _traffic(traffic.get(a))}
                               for a, p in s.pmaars],
            "handover_in_progress": s.handover_in_progress,
        }
        out.update(mn_id_fields(s.mn_id))
        return out

    # ---- resources -------------------------------------------------------------------------------
    def sessions(self, req) -> Response:
        q = _query(req.environ)
        unknown = set(q) - {"maar", "limit", "cursor"}
        if unknown:
            raise _BadRequest(f"unknown query parameter(s): {', '.join(sorted(map(_quoted, unknown)))}")
        limit = parse_limit(q.get("limit"))
        maar = q.get("maar")
        listings = self.state.listings
        if "cursor" in q:
            m = _CURSOR.fullmatch(q["cursor"])
            if m is None:
                raise _BadRequest(f"cursor {_quoted(q['cursor'])} is not one this API gave out")
            listing = listings.get(m.group(1))
            if listing is None:
                return _error(410, f"cursor expired (a listing lives {LISTING_TTL:g} s after its last page, "
                                   f"{LISTINGS_MAX} at most): start again without a cursor")
            offset = int(m.group(2))
            if offset > len(listing.ids):
                raise _BadRequest(f"cursor {_quoted(q['cursor'])} is not one this API gave out")
            if maar is not None and maar != listing.maar:
                raise _BadRequest("maar differs from the listing's the cursor belongs to")
            maar = listing.maar
        else:
            listing, offset = None, 0
        address = None
        if maar is not None:
            info = self.view.maar(maar)
            if info is None:
                raise _BadRequest(f"no MAAR named {_quoted(maar)}")
            address = info.address
        if listing is None:
            ids = self.view.session_ids()
            hub.sleep(0)  # the copy took ~1 ms per 100,000 sessions: let signalling in before rendering
        else:
            ids = listing.ids
        now = time.time()
        parts: list[str] = []
        pos, end = offset, min(len(ids), offset + SCAN_MAX)
        while pos < end and len(parts) < limit:
            if (pos - offset) % YIELD_EVERY == YIELD_EVERY - 1:
                hub.sleep(0)
            s = self.view.session(ids[pos])
            pos += 1
            if s is not None and (address is None or s.involves(address)):
                parts.append(json.dumps(self._session(s, now), sort_keys=True))
        next_cursor = None
        if pos < len(ids):
            if listing is None:
                listing = listings.create(ids, maar)
            else:
                listings.keep(listing)
            next_cursor = f"{listing.id}.{pos}"
        head = json.dumps({"count": len(parts), "limit": limit, "next_cursor": next_cursor,
                           "total": self.view.session_count()}, sort_keys=True)
        return _raw((head[:-1] + ', "sessions": [' + ", ".join(parts) + "]}").encode())

    def session(self, req, mn_id: str) -> Response:
        s = self.view.session(mn_id)
        if s is None:
            return _error(404, f"no mobility session for MN {_quoted(mn_id)}")
        return _json(self._session(s, time.time()))

    def maars(self, req) -> Response:
        out = []
        for m in self.view.maars():
            out.append({
                "name": m.name, "address": m.address, "pool": str(m.pool), "prefix_length": m.prefix_length,
                "datapath_id": f"{m.datapath_id:016x}" if m.datapath_id is not None else None,
                "connected": self.view.connected(m),
                "dlif": {"mac": mac_text(m.mac), "link_local": m.link_local},
            })
        return _json({"maars": out})

    def maar(self, req, name: str) -> Response:
        m = self.view.maar(name)
        if m is None:
            return _error(404, f"no MAAR named {_quoted(name)}")
        serving, anchoring = self.state.counts.get(self.view).get(m.address, (0, 0))
        return _json({"name": m.name, "address": m.address, "pool": str(m.pool), "connected": self.view.connected(m),
                      "sessions_serving": serving, "sessions_anchoring_for_others": anchoring})

    def flows(self, req, name: str) -> Response:
        m = self.view.maar(name)
        if m is None:
            return _error(404, f"no MAAR named {_quoted(name)}")
        if not self.view.has_switch(m):
            return _error(404, f"MAAR {_quoted(name)} has no switch configured (datapath_id and ports)")
        tables = {t.name: t.id for t in self.view.pipeline.tables}
        wanted = []
        for i, f in enumerate(self.view.wanted_flows(m)):
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                hub.sleep(0)
            wanted.append({"table": f.table, "table_id": tables[f.table], "priority": f.priority,
                           "cookie": f"{f.cookie:#018x}", "match": {k: _show(v) for k, v in f.match},
                           "actions": [[k, _show(v)] for k, v in f.actions], "goto": f.goto})
        connected = self.view.connected(m)
        stats = self.view.installed_flows(m) if connected else None
        installed = None
        if stats is not None:
            installed = []
            for i, st in enumerate(stats):
                if i % YIELD_EVERY == YIELD_EVERY - 1:
                    hub.sleep(0)
                installed.append({"table_id": st.table_id, "priority": st.priority, "cookie": f"{st.cookie:#018x}",
                                  "match": dict(st.match), "actions": [list(a) for a in st.actions],
                                  "packets": st.packets})
        return _json({"maar": name, "connected": connected, "wanted": wanted, "installed": installed,
                      "wanted_count": len(wanted), "installed_count": None if installed is None else len(installed)})

    def stats(self, req) -> Response:
        return _json(self.view.stats())

    # Every path under the prefix, every method: routed above on the raw path (JSON errors only).
    @wsgi.route("dmm", PREFIX + "{rest}", requirements={"rest": r"(/[\s\S]*)?"})
    def any_request(self, req, **_):
        return self(req)  # not reached: __call__ dispatches every request itself
