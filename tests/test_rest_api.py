"""The REST controller in-process (Ryu's WSGIApplication, webob requests, a real DomainView over a
binding cache filled directly): pagination and cursors, ``limit`` parsing, MN IDs in paths and in
JSON, HTTP methods, JSON errors, containment, and how long one request may hold the hub."""
import json
import logging
from urllib.parse import quote

import pytest
import webob
from ryu.app.wsgi import WSGIApplication

from ryu_dmm import domainconf, pipeline, rest
from ryu_dmm.domainview import DomainView
from ryu_dmm.flowmirror import FlowMirror
from ryu_dmm.logsafe import Guard, SafeLog
from ryu_dmm.stats import Stats
from tests.fakecore import Core

CONFIG = """
[dmm]
cmd_address = ::1
[maar:maar1]
address = 2001:db8:ff::1
pool = 2001:db8:1::/48
[maar:maar2]
address = 2001:db8:ff::2
pool = 2001:db8:2::/48
"""
M1, M2 = "2001:db8:ff::1", "2001:db8:ff::2"


class Api:
    def __init__(self, state=None, view_cls=DomainView):
        domain, settings = domainconf.parse(CONFIG)
        self.core = Core()
        self.stats = Stats("proxy")
        self.guard = Guard(self.stats.count, SafeLog(logging.getLogger("test.rest")))
        self.view = view_cls(domain, settings, self.core, FlowMirror(pipeline.load(), {}), self.stats, lambda m: None)
        self.app = WSGIApplication()
        self.state = state or rest.RestState(self.guard)
        self.app.register(rest.DmmRestController, rest.registration(self.view, self.guard, self.state))

    def call(self, method, raw, query=""):
        """``raw``: the path exactly as on the request line (eventlet's RAW_PATH_INFO)."""
        req = webob.Request.blank(raw, environ={"REQUEST_METHOD": method, "RAW_PATH_INFO": raw,
                                               "QUERY_STRING": query})
        resp = req.get_response(self.app)
        return resp

    def get(self, raw, query=""):
        resp = self.call("GET", raw, query)
        assert resp.content_type == "application/json"
        return resp.status_code, json.loads(resp.body)


@pytest.fixture
def api():
    return Api()


def walk(api, query=""):
    """Every page of /sessions, following next_cursor; returns the pages' bodies."""
    pages = []
    cursor = None
    while True:
        q = query + ("&" if query else "") + (f"cursor={cursor}" if cursor else "")
        status, body = api.get("/dmm/v1/sessions", q.strip("&"))
        assert status == 200, body
        pages.append(body)
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


def test_listing_is_paginated_by_default(api):
    for i in range(250):
        api.core.add(f"mn{i}")
    pages = walk(api)
    assert [p["count"] for p in pages] == [100, 100, 50]  # default limit 100
    assert all(p["total"] == 250 and p["limit"] == 100 for p in pages)
    ids = [s["mn_id"] for p in pages for s in p["sessions"]]
    assert ids == [f"mn{i}" for i in range(250)]  # registration order, each once


def test_limit_bounds(api):
    for i in range(1001):
        api.core.add(f"mn{i}")
    assert api.get("/dmm/v1/sessions", "limit=1")[1]["count"] == 1
    body = api.get("/dmm/v1/sessions", "limit=1000")[1]
    assert body["count"] == 1000 and body["next_cursor"] is not None
    for bad in ("0", "1001", "-3", "+5", "1.0", "0x10", "%20%205", "", "%C2%B2", "%D9%A1", "1" * 11, "limit"):
        status, body = api.get("/dmm/v1/sessions", f"limit={bad}")
        assert (status, body["status"]) == (400, 400), bad
        assert "limit" in body["error"]


def test_listing_is_a_snapshot_of_ids_with_current_contents(api):
    for i in range(5):
        api.core.add(f"mn{i}")
    status, first = api.get("/dmm/v1/sessions", "limit=2")
    del api.core.cache["mn2"]  # ended between pages: skipped
    api.core.add("late")  # registered after the first page: not in this listing
    api.core.add("mn3", serving=M2)  # moved: shown as it is now
    rest_ = walk(api, f"limit=2&cursor={first['next_cursor']}")
    later = [s for p in rest_ for s in p["sessions"]]
    assert [s["mn_id"] for s in later] == ["mn3", "mn4"]
    assert later[0]["serving_maar"]["name"] == "maar2"
    assert rest_[-1]["total"] == 5


def test_cursor_errors(api):
    for i in range(3):
        api.core.add(f"mn{i}")
    cursor = api.get("/dmm/v1/sessions", "limit=1")[1]["next_cursor"]
    assert api.get("/dmm/v1/sessions", f"cursor={cursor}")[0] == 200
    assert api.get("/dmm/v1/sessions", f"cursor={cursor}")[0] == 200  # a page may be fetched again
    lid = cursor.split(".")[0]
    for bad in ("x", f"{lid}.", f"{lid}.-1", f"{lid}.4", cursor + "0" * 10, "%00"):
        status, body = api.get("/dmm/v1/sessions", f"cursor={quote(bad)}")
        assert (status, body["status"]) == (400, 400), bad
    status, body = api.get("/dmm/v1/sessions", "cursor=AAAAAAAAAAAA.1")  # well-formed, never given out
    assert (status, body["status"]) == (410, 410)
    assert api.get("/dmm/v1/sessions", f"cursor={cursor}&maar=maar2")[0] == 400  # not the listing's filter


def test_listings_are_bounded_least_recently_used_first(api):
    for i in range(3):
        api.core.add(f"mn{i}")
    cursors = [api.get("/dmm/v1/sessions", "limit=1")[1]["next_cursor"] for _ in range(rest.LISTINGS_MAX)]
    assert len(api.state.listings) == rest.LISTINGS_MAX
    assert all(api.get("/dmm/v1/sessions", f"cursor={c}")[0] == 200 for c in cursors)  # at the bound: all live
    extra = api.get("/dmm/v1/sessions", "limit=1")[1]["next_cursor"]  # one more evicts the oldest
    assert api.get("/dmm/v1/sessions", f"cursor={cursors[0]}")[0] == 410
    assert api.get("/dmm/v1/sessions", f"cursor={cursors[1]}")[0] == 200
    assert api.get("/dmm/v1/sessions", f"cursor={extra}")[0] == 200
    assert len(api.state.listings) == rest.LISTINGS_MAX


def test_a_listing_expires_ttl_seconds_after_its_last_page():
    now = [0.0]
    api = Api(state=None)
    api.state.listings = rest.Listings(clock=lambda: now[0])
    for i in range(3):
        api.core.add(f"mn{i}")
    cursor = api.get("/dmm/v1/sessions", "limit=1")[1]["next_cursor"]
    now[0] += rest.LISTING_TTL - 0.001
    body = api.get("/dmm/v1/sessions", f"cursor={cursor}&limit=1")[1]  # just in time; its use renews it
    now[0] += rest.LISTING_TTL - 0.001
    assert api.get("/dmm/v1/sessions", f"cursor={body['next_cursor']}")[0] == 200
    now[0] += rest.LISTING_TTL
    assert api.get("/dmm/v1/sessions", f"cursor={body['next_cursor']}")[0] == 410


def test_a_filtered_page_examines_at_most_scan_max_ids(api):
    for i in range(rest.SCAN_MAX):
        api.core.add(f"mn{i}", serving=M1)
    api.core.add("wanted", serving=M2)
    status, first = api.get("/dmm/v1/sessions", "maar=maar2")
    assert status == 200 and first["count"] == 0 and first["next_cursor"] is not None  # short page, not the end
    status, second = api.get("/dmm/v1/sessions", f"cursor={first['next_cursor']}")
    assert [s["mn_id"] for s in second["sessions"]] == ["wanted"] and second["next_cursor"] is None


def test_maar_filter_covers_serving_and_anchoring(api):
    api.core.add("a", serving=M1)
    api.core.add("b", serving=M2, pmaars=(M1,))
    api.core.add("c", serving=M2)
    pages = walk(api, "maar=maar1")
    assert [s["mn_id"] for p in pages for s in p["sessions"]] == ["a", "b"]


@pytest.mark.parametrize("mn_id", ["a/b@x", "m\u00fcller@example.net", "sp ace", "?#%&=+;", "x%2Fy", "..", "\u202e"])
def test_mn_ids_are_one_percent_decoded_utf8_segment(api, mn_id):
    api.core.add(mn_id)
    status, body = api.get("/dmm/v1/sessions/" + quote(mn_id.encode("utf-8"), safe=""))
    assert status == 200 and body["mn_id"] == mn_id and "mn_id_hex" not in body


def test_a_non_utf8_mn_id_is_matched_by_its_bytes_and_shown_with_hex(api):
    raw = b"caf\xe9@x"  # Latin-1, not UTF-8: the codec keeps it as raw.decode("utf-8", "surrogateescape")
    api.core.add(raw.decode("utf-8", "surrogateescape"))
    status, body = api.get("/dmm/v1/sessions/caf%E9%40x")
    assert status == 200
    assert body["mn_id_hex"] == raw.hex() and body["mn_id"] == "caf\ufffd@x"
    listed = api.get("/dmm/v1/sessions")[1]["sessions"][0]
    assert listed["mn_id_hex"] == raw.hex()
    resp = api.call("GET", "/dmm/v1/sessions")
    assert resp.body.isascii()  # JSON text in ASCII: no lone surrogate anywhere


def test_a_slash_not_encoded_is_a_path_separator(api):
    api.core.add("a/b")
    status, body = api.get("/dmm/v1/sessions/a/b")
    assert (status, body["status"]) == (404, 404)
    assert api.get("/dmm/v1/sessions/a%2Fb")[0] == 200
    assert api.get("/dmm/v1/sess%69ons/a%2fb")[0] == 200  # a percent-encoded unreserved letter is that letter


def test_unknown_mn_id_is_reported_escaped(api):
    status, body = api.get("/dmm/v1/sessions/ev%0Ail%FF")
    assert status == 404 and body == {"error": "no mobility session for MN 'ev\\nil\\udcff'", "status": 404}


def test_head_is_get_without_a_body(api):
    api.core.add("mn1", expires=0)  # lifetime_remaining 0: the same body length at every call
    for path in ("/dmm/v1/stats", "/dmm/v1/sessions", "/dmm/v1/sessions/mn1", "/dmm/v1/maars/maar1"):
        get, head = api.call("GET", path), api.call("HEAD", path)
        assert head.status_code == 200 and head.body == b""
        assert head.headers["Content-Length"] == str(len(get.body)) and head.content_type == get.content_type
    assert api.call("HEAD", "/dmm/v1/nothing").status_code == 404


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "TRACE", "CONNECT"])
def test_other_known_methods_get_405_with_allow(api, method):
    resp = api.call(method, "/dmm/v1/sessions")
    assert resp.status_code == 405 and resp.headers["Allow"] == "GET, HEAD, OPTIONS"
    assert json.loads(resp.body)["status"] == 405
    assert api.call(method, "/dmm/v1/nothing").status_code == 404  # no such resource, whatever the method


@pytest.mark.parametrize("method", ["FOO", "get", "PROPFIND", "M-SEARCH"])
def test_unknown_methods_get_501(api, method):
    for path in ("/dmm/v1/stats", "/dmm/v1/nothing"):
        resp = api.call(method, path)
        assert resp.status_code == 501 and resp.content_type == "application/json"
        assert json.loads(resp.body)["status"] == 501


def test_options_lists_the_methods(api):
    resp = api.call("OPTIONS", "/dmm/v1/stats")
    assert resp.status_code == 200 and resp.headers["Allow"] == "GET, HEAD, OPTIONS"


@pytest.mark.parametrize("raw", ["/dmm/v1", "/dmm/v1/", "/dmm/v1/sessions/", "/dmm/v1/maars/maar1/flows/x",
                                 "/dmm/v1/stat", "/dmm%2Fv1/stats", "/dmm/v1/%0A"])
def test_unknown_paths_are_json_404(api, raw):
    status, body = api.get(raw)
    assert (status, body["status"]) == (404, 404)


def test_query_parameters(api):
    assert api.get("/dmm/v1/sessions", "limit=1&limit=2")[0] == 400
    status, body = api.get("/dmm/v1/sessions", "colour=blue")
    assert status == 400 and "colour" in body["error"]
    assert api.get("/dmm/v1/sessions", "&".join(f"x{i}=1" for i in range(rest.MAX_QUERY_FIELDS + 1)))[0] == 400
    assert api.get("/dmm/v1/sessions", "maar=maar%FF")[0] == 400


def test_an_unexpected_exception_is_a_counted_json_500(api):
    def broken():
        raise KeyError("secret internals")
    api.view.stats = broken
    resp = api.call("GET", "/dmm/v1/stats")
    assert resp.status_code == 500 and resp.content_type == "application/json"
    body = json.loads(resp.body)
    assert body["status"] == 500 and "secret" not in body["error"] and "Traceback" not in resp.text
    assert api.stats.counters["internal_error.rest"] == 1
    assert api.call("GET", "/dmm/v1/maars").status_code == 200  # the next request is served as usual


class Hub:
    """Counts the work done between two hub yields (``rest.hub.sleep``)."""

    def __init__(self, monkeypatch, view):
        self.runs, self.current = [], 0
        lookup = view.session

        def session(mn_id):
            self.current += 1
            return lookup(mn_id)

        def sleep(_seconds=0):
            self.runs.append(self.current)
            self.current = 0
        monkeypatch.setattr(view, "session", session)
        monkeypatch.setattr(rest.hub, "sleep", sleep)

    def longest(self):
        return max(self.runs + [self.current])


def test_a_page_yields_to_the_hub_every_few_dozen_sessions(api, monkeypatch):
    for i in range(3000):
        api.core.add(f"mn{i}")
    hub = Hub(monkeypatch, api.view)
    assert api.get("/dmm/v1/sessions", "limit=1000")[1]["count"] == 1000
    assert hub.longest() <= rest.YIELD_EVERY and len(hub.runs) >= 1000 // rest.YIELD_EVERY - 1


def test_maar_counts_yield_are_shared_and_reused(monkeypatch):
    now = [0.0]
    api = Api()
    api.state.counts = rest.MaarCounts(clock=lambda: now[0])
    for i in range(1200):
        api.core.add(f"s{i}", serving=M1)
    for i in range(300):
        api.core.add(f"h{i}", serving=M2, pmaars=(M1, M1))  # anchored by maar1 (listed twice: counted once)
    hub = Hub(monkeypatch, api.view)
    status, body = api.get("/dmm/v1/maars/maar1")
    assert (body["sessions_serving"], body["sessions_anchoring_for_others"]) == (1200, 300)
    assert api.get("/dmm/v1/maars/maar2")[1]["sessions_serving"] == 300
    assert api.state.counts.walks == 1  # reused within COUNT_MAX_AGE
    assert hub.longest() <= rest.COUNT_YIELD_EVERY
    api.core.add("new", serving=M1)
    now[0] += rest.COUNT_MAX_AGE
    assert api.get("/dmm/v1/maars/maar1")[1]["sessions_serving"] == 1201
    assert api.state.counts.walks == 2
