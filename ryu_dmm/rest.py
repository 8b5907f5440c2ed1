"""REST API of the CMD (JSON over Ryu's WSGI server): mobility sessions, MAARs, statistics.

It reads only the public ``DomainView``; every error is a JSON body ``{"error": ..., "status": ...}``.
The API is described in docs/openapi.yaml.
"""
from __future__ import annotations

import json
import re
import time

from ryu.app.wsgi import ControllerBase, route
from webob import Response

from .domainview import DomainView
from .mobility.views import Session
from .wire import mac_text

APP_KEY = "ryu_dmm_cmd"
PREFIX = "/dmm/v1"


def _json(body, status: int = 200) -> Response:
    return Response(status=status, content_type="application/json", charset="utf-8",
                    body=json.dumps(body, indent=1, sort_keys=True).encode())


def _show(value):
    return mac_text(value) if isinstance(value, bytes) else value


def _error(status: int, message: str) -> Response:
    return _json({"error": message, "status": status}, status)


class DmmRestController(ControllerBase):
    """HTTP adapter over ``DomainView``: parses requests, renders JSON; holds no state of its own."""

    def __init__(self, req, link, data, **config):
        super().__init__(req, link, data, **config)
        self.view: DomainView = data[APP_KEY]

    def _session(self, s: Session, now: float) -> dict:
        confirmed = self.view.flows_confirmed(s.mn_id)
        name = self.view.name_of
        return {
            "flows_confirmed": {"pushed_at": confirmed[0], "confirmed_at": confirmed[1]} if confirmed else None,
            "mn_id": s.mn_id,
            "serving_maar": {"name": name(s.serving), "address": s.serving},
            "prefix": str(s.prefix),
            "lifetime_remaining": max(0, round(s.expires - now, 3)),
            "previous_maars": [{"name": name(a), "address": a, "prefix": str(p)} for a, p in s.pmaars],
            "handover_in_progress": s.handover_in_progress,
        }

    @route("dmm", PREFIX + "/sessions", methods=["GET"])
    def sessions(self, req, **_):
        maar = req.GET.get("maar")
        limit_text = req.GET.get("limit")
        unknown = set(req.GET) - {"maar", "limit"}
        if unknown:
            return _error(400, f"unknown query parameter(s): {', '.join(sorted(unknown))}")
        limit = None
        if limit_text is not None:
            if not limit_text.isdigit():
                return _error(400, f"limit must be a non-negative integer, not {limit_text!r}")
            limit = int(limit_text)
        address = None
        if maar is not None:
            info = self.view.maar(maar)
            if info is None:
                return _error(400, f"no MAAR named {maar!r}")
            address = info.address
        now = time.time()
        out = []
        for s in self.view.sessions():
            if address is None or s.involves(address):
                out.append(self._session(s, now))
                if limit is not None and len(out) >= limit:
                    break
        return _json({"sessions": out, "count": len(out), "total": self.view.session_count()})

    @route("dmm", PREFIX + "/sessions/{mn_id}", methods=["GET"])
    def session(self, req, mn_id, **_):
        s = self.view.session(mn_id)
        if s is None:
            return _error(404, f"no mobility session for MN {mn_id!r}")
        return _json(self._session(s, time.time()))

    @route("dmm", PREFIX + "/maars", methods=["GET"])
    def maars(self, req, **_):
        out = []
        for m in self.view.maars():
            out.append({
                "name": m.name, "address": m.address, "pool": str(m.pool), "prefix_length": m.prefix_length,
                "datapath_id": f"{m.datapath_id:016x}" if m.datapath_id is not None else None,
                "connected": self.view.connected(m),
                "dlif": {"mac": mac_text(m.mac), "link_local": m.link_local},
            })
        return _json({"maars": out})

    @route("dmm", PREFIX + "/maars/{name}", methods=["GET"])
    def maar(self, req, name, **_):
        m = self.view.maar(name)
        if m is None:
            return _error(404, f"no MAAR named {name!r}")
        serving = anchoring = 0
        for s in self.view.sessions():
            serving += s.serving == m.address
            anchoring += any(a == m.address for a, _ in s.pmaars)
        return _json({"name": m.name, "address": m.address, "pool": str(m.pool), "connected": self.view.connected(m),
                      "sessions_serving": serving, "sessions_anchoring_for_others": anchoring})

    @route("dmm", PREFIX + "/maars/{name}/flows", methods=["GET"])
    def flows(self, req, name, **_):
        m = self.view.maar(name)
        if m is None:
            return _error(404, f"no MAAR named {name!r}")
        if not self.view.has_switch(m):
            return _error(404, f"MAAR {name!r} has no switch configured (datapath_id and ports)")
        tables = {t.name: t.id for t in self.view.pipeline.tables}
        wanted = [{"table": f.table, "table_id": tables[f.table], "priority": f.priority, "cookie": f"{f.cookie:#018x}",
                   "match": {k: _show(v) for k, v in f.match}, "actions": [[k, _show(v)] for k, v in f.actions],
                   "goto": f.goto} for f in self.view.wanted_flows(m)]
        connected = self.view.connected(m)
        stats = self.view.installed_flows(m) if connected else None
        installed = None if stats is None else [
            {"table_id": st.table_id, "priority": st.priority, "cookie": f"{st.cookie:#018x}",
             "match": dict(st.match), "actions": [list(a) for a in st.actions], "packets": st.packets}
            for st in stats]
        return _json({"maar": name, "connected": connected, "wanted": wanted, "installed": installed,
                      "wanted_count": len(wanted), "installed_count": None if installed is None else len(installed)})

    @route("dmm", PREFIX + "/stats", methods=["GET"])
    def stats(self, req, **_):
        return _json(self.view.stats())

    # Registered last: anything else under the API prefix gets a JSON error, not Ryu's HTML page.
    @route("dmm", PREFIX + "/{rest:.*}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
    def other(self, req, rest, **_):
        if req.method != "GET" and _KNOWN.match(rest):
            return _error(405, f"{req.method} is not allowed here: the API is read-only (GET)")
        return _error(404, f"no such resource: {PREFIX}/{rest}")

    @route("dmm", PREFIX, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
    def root(self, req, **_):
        return _error(404, f"no such resource: {PREFIX} (see docs/openapi.yaml)")


_KNOWN = re.compile(r"^(sessions(/[^/]+)?|maars(/[^/]+(/flows)?)?|stats)/?$")
