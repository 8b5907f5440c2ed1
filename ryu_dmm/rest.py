"""REST API of the CMD (JSON over Ryu's WSGI server): mobility sessions, MAARs, statistics.

Read-only views of the core's state; every error is a JSON body ``{"error": ..., "status": ...}``.
The API is described in docs/openapi.yaml.
"""
from __future__ import annotations

import json
import re
import time

from ryu.app.wsgi import ControllerBase, route
from webob import Response

APP_KEY = "ryu_dmm_cmd"
PREFIX = "/dmm/v1"


def _json(body, status: int = 200) -> Response:
    return Response(status=status, content_type="application/json", charset="utf-8",
                    body=json.dumps(body, indent=1, sort_keys=True).encode())


def _show(value):
    if isinstance(value, bytes):
        return ":".join(f"{b:02x}" for b in value)
    if isinstance(value, tuple):
        return "/".join(str(v) for v in value)
    return value


def _error(status: int, message: str) -> Response:
    return _json({"error": message, "status": status}, status)


class DmmRestController(ControllerBase):
    def __init__(self, req, link, data, **config):
        super().__init__(req, link, data, **config)
        self.app = data[APP_KEY]

    def _name(self, address: str) -> str:
        info = self.app.core.maars.get(address)
        return info.name if info else address

    def _session(self, bce, now: float) -> dict:
        confirmed = self.app.flows_confirmed.get(bce.mn_id)
        return {
            "flows_confirmed": {"pushed_at": confirmed[0], "confirmed_at": confirmed[1]} if confirmed else None,
            "mn_id": bce.mn_id,
            "serving_maar": {"name": self._name(bce.serving), "address": bce.serving},
            "prefix": str(bce.prefix),
            "lifetime_remaining": max(0, round(bce.expires - now, 3)),
            "previous_maars": [{"name": self._name(a), "address": a, "prefix": str(p)} for a, p in bce.pmaars],
            "handover_in_progress": bce.handover is not None,
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
            info = self.app._by_name.get(maar)
            if info is None:
                return _error(400, f"no MAAR named {maar!r}")
            address = info.address
        now = time.time()
        out = []
        for bce in self.app.core.cache.values():
            if address is None or bce.serving == address or any(a == address for a, _ in bce.pmaars):
                out.append(self._session(bce, now))
                if limit is not None and len(out) >= limit:
                    break
        return _json({"sessions": out, "count": len(out), "total": len(self.app.core.cache)})

    @route("dmm", PREFIX + "/sessions/{mn_id}", methods=["GET"])
    def session(self, req, mn_id, **_):
        bce = self.app.core.cache.get(mn_id)
        if bce is None:
            return _error(404, f"no mobility session for MN {mn_id!r}")
        return _json(self._session(bce, time.time()))

    @route("dmm", PREFIX + "/maars", methods=["GET"])
    def maars(self, req, **_):
        out = []
        for m in self.app.domain.maars:
            out.append({
                "name": m.name, "address": m.address, "pool": str(m.pool), "prefix_length": m.prefix_length,
                "datapath_id": f"{m.datapath_id:016x}" if m.datapath_id is not None else None,
                "connected": m.datapath_id in self.app.datapaths,
                "dlif": {"mac": ":".join(f"{b:02x}" for b in m.mac), "link_local": m.link_local},
            })
        return _json({"maars": out})

    @route("dmm", PREFIX + "/maars/{name}", methods=["GET"])
    def maar(self, req, name, **_):
        m = self.app._by_name.get(name)
        if m is None:
            return _error(404, f"no MAAR named {name!r}")
        serving = sum(1 for b in self.app.core.cache.values() if b.serving == m.address)
        anchoring = sum(1 for b in self.app.core.cache.values() if any(a == m.address for a, _ in b.pmaars))
        return _json({"name": m.name, "address": m.address, "pool": str(m.pool),
                      "connected": m.datapath_id in self.app.datapaths,
                      "sessions_serving": serving, "sessions_anchoring_for_others": anchoring})

    @route("dmm", PREFIX + "/maars/{name}/flows", methods=["GET"])
    def flows(self, req, name, **_):
        m = self.app._by_name.get(name)
        if m is None:
            return _error(404, f"no MAAR named {name!r}")
        if m.address not in self.app._switches:
            return _error(404, f"MAAR {name!r} has no switch configured (datapath_id and ports)")
        tables = {t.name: t.id for t in self.app.pipeline.tables}
        wanted = [{"table": f.table, "table_id": tables[f.table], "priority": f.priority, "cookie": f"{f.cookie:#018x}",
                   "match": {k: _show(v) for k, v in f.match}, "actions": [[k, _show(v)] for k, v in f.actions],
                   "goto": f.goto} for f in self.app.wanted_flows(m.address)]
        dp = self.app.datapaths.get(m.datapath_id)
        installed = None
        if dp is not None:
            stats = self.app.flow_stats(dp)
            if stats is not None:
                installed = [{"table_id": st.table_id, "priority": st.priority, "cookie": f"{st.cookie:#018x}",
                              "match": {k: _show(v) for k, v in st.match.items()}, "packets": st.packet_count}
                             for st in stats]
        return _json({"maar": name, "connected": dp is not None, "wanted": wanted, "installed": installed,
                      "wanted_count": len(wanted), "installed_count": None if installed is None else len(installed)})

    @route("dmm", PREFIX + "/stats", methods=["GET"])
    def stats(self, req, **_):
        body = self.app.stats.as_dict()
        body["sessions"] = len(self.app.core.cache)
        body["mode"] = self.app.domain.mode.value
        body["dereg"] = self.app.domain.dereg.value
        return _json(body)

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
