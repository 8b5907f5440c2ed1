"""Metrics in-process: histograms, bounded labels, the session walk, the CMD's WSGI app, the agent's
HTTP responder on a select loop, and the domain file's metrics keys."""
from __future__ import annotations

import logging
import socket
import time

import pytest
import webob
from prometheus_client import generate_latest

from ryu_dmm import domainconf, metrics, pipeline
from ryu_dmm.agent import metrics as agent_metrics
from ryu_dmm.agent.loop import Loop
from ryu_dmm.domainview import DomainView
from ryu_dmm.flowmirror import FlowMirror
from ryu_dmm.logsafe import Guard, SafeLog
from ryu_dmm.mobility import messages as M
from ryu_dmm.mobility.events import Report, ReportKind
from ryu_dmm.stats import OTHER, Histogram, Stats
from ryu_dmm.wire import Heartbeat, Prefix, Status
from tests.test_metrics import Scrape
from tests.fakecore import Core

CONFIG = """
[dmm]
cmd_address = ::1
[timers]
max_pmaars = 3
[maar:maar1]
address = 2001:db8:ff::1
pool = 2001:db8:1::/48
[maar:maar2]
address = 2001:db8:ff::2
pool = 2001:db8:2::/48
[maar:maar3]
address = 2001:db8:ff::3
pool = 2001:db8:3::/48
"""
M1, M2, M3 = "2001:db8:ff::1", "2001:db8:ff::2", "2001:db8:ff::3"
P = Prefix.parse("2001:db8:1::/64")


# ---- histograms and counts --------------------------------------------------------------------
def test_histogram_buckets_are_upper_bounds_inclusive_and_cumulative():
    h = Histogram((0.001, 0.01, 0.1))
    for v in (0.0005, 0.001, 0.002, 0.01, 0.5, 7.0):
        h.observe(v)
    assert h.cumulative() == [(0.001, 2), (0.01, 4), (0.1, 4), (float("inf"), 6)]
    assert h.count == 6 and h.sum == pytest.approx(7.5135)
    with pytest.raises(ValueError):
        Histogram((0.1, 0.01))


def test_unknown_peers_share_one_counter_and_rest_names_are_unchanged():
    stats = Stats("proxy", peers={M1})
    pbu = M.pbu(1, time.time(), "mn", P, 40, 1, 3)
    for i in range(5000):  # a flood from many addresses
        stats.received(pbu, f"2001:db8:dead::{i:x}")
    stats.received(pbu, M1)
    stats.sent(M.pba_for(pbu, Status.ACCEPTED, 40), M1)
    stats.sent(M.pba_for(pbu, Status.MAG_NOT_AUTHORIZED_FOR_PROXY_REG, 0), "2001:db8:dead::1")
    stats.note("flow_groups_pushed", M1)
    stats.note("flow_groups_pushed", "2001:db8:dead::1")
    assert stats.messages == {("pbu_received", OTHER, None): 5000, ("pbu_received", M1, None): 1,
                              ("pba_sent", M1, 0): 1, ("pba_sent", OTHER, Status.MAG_NOT_AUTHORIZED_FOR_PROXY_REG): 1}
    assert stats.noted == {("flow_groups_pushed", M1): 1, ("flow_groups_pushed", OTHER): 1}
    assert stats.as_dict()["messages"] == {"flow_groups_pushed": 2, "pba_sent.ACCEPTED": 1,
                                           "pba_sent.MAG_NOT_AUTHORIZED_FOR_PROXY_REG": 1, "pbu_received": 5001}


# ---- the CMD's collector over a DomainView ---------------------------------------------------------
def view(core=None, stats=None, receive_path=None, store_state=None):
    domain, settings = domainconf.parse(CONFIG)
    stats = stats or Stats("proxy", peers={M1, M2, M3})
    return DomainView(domain, settings, core or Core(), FlowMirror(pipeline.load(), {}), stats, lambda m: None,
                      receive_path or (lambda: {}), store_state or (lambda: {}))


def test_active_active_families():
    state = {"backend": "redis", "active_active": {
        "checks_won": 7, "checks_lost": 2, "takeover_count": 1,
        "instances": {"cmd-a": {"alive": False, "sessions_owned": 0}, "cmd-b": {"alive": True, "sessions_owned": 5}}}}
    s = collect(metrics.CmdCollector(view(store_state=lambda: state)))
    assert s.value("dmm_store_checks_total", outcome="won") == 7
    assert s.value("dmm_store_checks_total", outcome="lost") == 2
    assert s.value("dmm_store_takeovers_total") == 1
    assert s.value("dmm_store_instance_alive", instance="cmd-a") == 0
    assert s.value("dmm_store_instance_sessions", instance="cmd-b") == 5


def collect(collector) -> Scrape:
    class Reg:
        def collect(self):
            return collector.collect()
    return Scrape(generate_latest(Reg()).decode())


def test_sessions_by_pmaars_and_per_maar_from_one_walk():
    core = Core()
    core.add("a", M1)
    core.add("b", M2, (M1,))
    core.add("c", M3, (M1, M2))
    core.add("d", M3, (M1, M2))
    s = collect(metrics.CmdCollector(view(core)))
    assert s.value("dmm_sessions") == 4
    assert {dict(lab)["pmaars"]: v for lab, v in s.matching("dmm_sessions_by_pmaars").items()} == \
        {"0": 1, "1": 1, "2": 2, "3": 0}  # 0 .. max_pmaars, each present
    serving = {dict(lab)["maar"]: v for lab, v in s.matching("dmm_maar_sessions", role="serving").items()}
    anchoring = {dict(lab)["maar"]: v for lab, v in s.matching("dmm_maar_sessions", role="anchoring").items()}
    assert serving == {"maar1": 1, "maar2": 1, "maar3": 2} and anchoring == {"maar1": 3, "maar2": 2, "maar3": 0}


def test_the_walk_yields_and_survives_sessions_ending_while_it_pauses():
    core = Core()
    for i in range(1200):
        core.add(f"mn{i}", M1)
    pauses = []

    def pause():
        pauses.append(1)
        for i in range(1000, 1100):  # the hub ran someone else: 100 sessions ended
            core.cache.pop(f"mn{i}", None)
    now = [100.0]
    walk = metrics.SessionWalk(view(core), pause, clock=lambda: now[0])
    result = walk.get()
    assert len(pauses) == 1200 // metrics.WALK_YIELD_EVERY
    assert result["serving"][M1] == 1100 and result["by_pmaars"][0] == 1100
    core.add("late", M2)
    now[0] += metrics.WALK_MAX_AGE - 0.01
    assert walk.get() is result  # reused within WALK_MAX_AGE
    now[0] += 0.02
    again = walk.get()
    assert again is not result and again["serving"][M2] == 1
    # a walk that took 1 s is reused for 1 / WALK_SHARE = 20 s: walking takes at most 5 % of the time
    again["seconds"] = 1.0
    now[0] += 19.9
    assert walk.get() is again
    now[0] += 0.2
    assert walk.get() is not again


def test_every_sample_has_exactly_its_declared_labels():
    stats = Stats("proxy", peers={M1, M2, M3})
    pbu = M.pbu(1, time.time(), "mn", P, 40, 1, 3)
    stats.received(pbu, M1)
    stats.received(M.pba_for(pbu, 0, 40), M2)
    stats.received(pbu, "2001:db8:dead::1")
    stats.sent(M.pba_for(pbu, 0, 40), M1)
    stats.sent(pbu, M2)
    stats.received(Heartbeat(1), M3)
    stats.received(Heartbeat(2, response=True), "2001:db8::dead")
    stats.sent(Heartbeat(1, response=True), M3)
    stats.count("decode_error.truncated")
    stats.count("internal_error.rest")
    stats.note("reconciliations", M1)
    stats.flow_latency(0.002)
    stats.reported([Report(ReportKind.HANDOVER, "mn", "to maar2", duration=0.03)])
    path = {"kernel_drops": 0, "sockets": {"udp": {"rcvbuf": 4096, "kernel_drops": 3, "queued_bytes": 0}}}
    s = collect(metrics.CmdCollector(view(stats=stats, receive_path=lambda: path)))
    for name, (kind, _, labels) in metrics.FAMILIES.items():
        for sample in s.families[name].samples:
            extra = {"le"} if kind == "histogram" and sample.name.endswith("_bucket") else set()
            assert set(sample.labels) == set(labels) | extra, (sample, labels)
    assert s.value("dmm_pbu_received_total", maar="other") == 1
    assert s.value("dmm_pba_received_total", maar="maar2", status="ACCEPTED") == 1
    assert s.value("dmm_decode_errors_total", reason="truncated") == 1
    assert s.value("dmm_heartbeat_received_total", maar="maar3") == 1
    assert s.value("dmm_heartbeat_received_total", maar="other") == 1
    assert s.value("dmm_heartbeat_sent_total", maar="maar3") == 1
    assert s.value("dmm_heartbeat_sent_total", maar="maar1") == 0
    assert s.value("dmm_internal_errors_total", where="rest") == 1
    assert s.value("dmm_receive_kernel_drops_total", socket="udp") == 3
    assert s.value("dmm_handover_duration_seconds_bucket", mode="proxy", le="0.025") == 0
    assert s.value("dmm_handover_duration_seconds_bucket", mode="proxy", le="0.05") == 1
    assert s.value("dmm_flows_confirmed_seconds_bucket", le="0.0025") == 1
    assert set(s.families) >= set(metrics.FAMILIES)


def test_wsgi_app_serves_only_metrics_and_contains_a_failing_collector():
    stats = Stats("proxy")
    guard = Guard(stats.count, SafeLog(logging.getLogger("test.metrics")))

    class Broken:
        def collect(self):
            raise RuntimeError("boom")
    from prometheus_client import CollectorRegistry
    good, bad = metrics.registry(view()), CollectorRegistry(auto_describe=False)
    bad.register(Broken())
    resp = webob.Request.blank("/metrics").get_response(metrics.wsgi_app(good, guard))
    assert resp.status_code == 200 and b"dmm_sessions 0.0" in resp.body
    assert webob.Request.blank("/").get_response(metrics.wsgi_app(good, guard)).status_code == 404
    resp = webob.Request.blank("/metrics").get_response(metrics.wsgi_app(bad, guard))
    assert resp.status_code == 500 and stats.counters["internal_error.metrics"] == 1


def test_start_disabled_by_port_zero():
    domain, settings = domainconf.parse(CONFIG.replace("[timers]", "metrics_port = 0\n[timers]"))
    assert settings.metrics_port == 0
    assert metrics.start(view(), settings, Guard(lambda k: None, SafeLog(logging.getLogger("t")))) is None


# ---- the domain file ----------------------------------------------------------------------------
def test_domain_file_metrics_keys():
    _, settings = domainconf.parse(CONFIG)
    assert (settings.metrics_listen, settings.metrics_port) == ("127.0.0.1", None)  # None: default 9460
    text = CONFIG.replace("[timers]", "metrics_listen = ::1\nmetrics_port = 9999\n[timers]")
    domain, settings = domainconf.parse(text)
    assert (settings.metrics_listen, settings.metrics_port) == ("::1", 9999)
    assert domainconf.parse(domainconf.render(domain, settings, store=settings.store)) == (domain, settings)
    for bad, key in (("metrics_port = 70000", "[dmm] metrics_port"), ("metrics_listen = here", "[dmm] metrics_listen")):
        with pytest.raises(domainconf.ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
            domainconf.parse(CONFIG.replace("[timers]", bad + "\n[timers]"))


# ---- the agent's HTTP responder on a select loop -----------------------------------------------------
class Served:
    def __init__(self, render=lambda: b"dmm_x 1.0\n", **kw):
        self.errors = []
        self.server = None
        self.loop = Loop(lambda key: self.server.on_timer(key))
        self.server = agent_metrics.MetricsHttp(self.loop, "127.0.0.1", 0, render,
                                                lambda where, exc: self.errors.append((where, exc)), **kw)

    def client(self) -> socket.socket:
        c = socket.create_connection(self.server.address, timeout=2)
        self.spin()
        return c

    def spin(self, times: int = 5) -> None:
        for _ in range(times):
            self.loop.run_once(0.02)

    def exchange(self, data: bytes) -> bytes:
        c = self.client()
        c.sendall(data)
        out = b""
        for _ in range(100):
            self.spin(1)
            c.setblocking(False)
            try:
                chunk = c.recv(65536)
            except BlockingIOError:
                continue
            if not chunk:
                break
            out += chunk
        c.close()
        return out


def test_agent_http_answers_get_head_and_refuses_the_rest():
    s = Served()
    got = s.exchange(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 200 OK\r\n") and got.endswith(b"\r\n\r\ndmm_x 1.0\n")
    assert b"Content-Length: 10\r\n" in got and b"version=0.0.4" in got
    head = s.exchange(b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and head.endswith(b"\r\n\r\n")
    assert s.exchange(b"POST /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405")
    assert s.exchange(b"GET / HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 404")
    assert s.exchange(b"hello\r\n\r\n").startswith(b"HTTP/1.1 400")
    big = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * agent_metrics.HEAD_MAX + b"\r\n\r\n"
    assert s.exchange(big).startswith(b"HTTP/1.1 431")
    assert len(s.server) == 0 and s.server.served == 2 and not s.errors


def test_agent_http_render_failure_is_a_500_and_one_error():
    def broken():
        raise RuntimeError("boom")
    s = Served(broken)
    assert s.exchange(b"GET /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 500")
    assert [w for w, _ in s.errors] == ["metrics"]


def test_agent_http_connections_are_bounded_in_number_and_time():
    s = Served(max_connections=3, deadline=0.3)
    clients = [s.client() for _ in range(5)]  # silent clients (a slow loris)
    assert len(s.server) == 3  # the two oldest were closed to make room
    for c in clients[:2]:
        c.settimeout(1)
        assert c.recv(10) == b""
    clients[4].sendall(b"GET /metr")  # half a request line, then nothing
    time.sleep(0.35)
    s.spin()
    assert len(s.server) == 0 and len(s.loop.timers) == 0  # every deadline fired and each connection closed
    for c in clients:
        c.close()
    s.server.close()
    assert len(s.loop.selector.get_map()) == 0  # neither the listener nor a connection is left registered


def test_every_family_is_documented():
    from pathlib import Path
    doc = (Path(__file__).resolve().parent.parent / "docs" / "observability.md").read_text()
    for name, (kind, _, labels) in {**metrics.FAMILIES, **agent_metrics.FAMILIES}.items():
        exposed = name + "_total" if kind == "counter" else name
        rows = [line for line in doc.splitlines() if line.startswith(f"| `{exposed}` |")]
        assert len(rows) == 1, f"{exposed} is not in docs/observability.md's tables"
        cells = [c.strip() for c in rows[0].split("|")]
        assert cells[2] == kind and cells[3] == (", ".join(labels) or "-"), rows[0]
