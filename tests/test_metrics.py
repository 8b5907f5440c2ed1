"""Prometheus metrics of real processes: ``ryu-manager ryu_dmm.cmd`` and two ``ryu-dmm-maar``
agents signalling with it over UDP on loopback, scraped over HTTP and parsed with
prometheus_client's own parser. After a registration and a handover (and bad input), every counter
and histogram must have moved by exactly what the test sent."""
from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ryu_dmm.agent.main import request
from ryu_dmm.metrics import WALK_MAX_AGE
from ryu_dmm.mobility import messages as M
from ryu_dmm.wire import Prefix, Status, decode, encode
from tests.procs import BIN, MANAGER, clean_env, free_port, stop, tcp_open, wait_for

MAARS = {"maar1": "127.0.0.2", "maar2": "127.0.0.3"}  # the CMD sees them as ::ffff:127.0.0.x
MAC = "02:00:00:00:00:01"


class Scrape:
    """One scrape: every sample by (name, labels); a sample absent counts as 0 in ``value``."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples: dict[tuple, float] = {}
        for f in self.families.values():
            for s in f.samples:
                key = (s.name, frozenset(s.labels.items()))
                assert key not in self.samples, f"duplicate sample {key}"
                self.samples[key] = s.value

    def value(self, name: str, **labels) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def has(self, name: str, **labels) -> bool:
        return (name, frozenset(labels.items())) in self.samples

    def matching(self, name: str, **labels) -> dict[frozenset, float]:
        """Samples of ``name`` whose labels include ``labels``."""
        want = set(labels.items())
        return {lab: v for (n, lab), v in self.samples.items() if n == name and want <= lab}

    def total(self, name: str, **labels) -> float:
        return sum(self.matching(name, **labels).values())

    def sample_names(self) -> set[str]:
        return {n for n, _ in self.samples}

    def label_names(self, sample: str) -> set[str]:
        return {k for (n, lab) in self.samples if n == sample for k, _ in lab}


def scrape(port: int, path: str = "/metrics") -> Scrape:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        return Scrape(r.read().decode())


def delta(after: Scrape, before: Scrape, name: str, **labels) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


@dataclass
class Dmm:
    tmp: Path
    udp: int
    rest: int
    metrics: int
    cmd_log: Path
    cmd: subprocess.Popen
    agents: dict = field(default_factory=dict)  # name -> {"udp", "metrics", "control", "proc", "log"}

    def scrape_cmd(self) -> Scrape:
        return scrape(self.metrics)

    def scrape_agent(self, name: str) -> Scrape:
        return scrape(self.agents[name]["metrics"])

    def rest_get(self, path: str):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.rest}{path}", timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def control(self, name: str, req: dict) -> dict:
        return request(self.agents[name]["control"], req)

    def events(self, name: str) -> list[dict]:
        return self.control(name, {"op": "events"})["events"]


def domain_file(udp: int, rest: int, metrics: int) -> str:
    sections = "".join(f"\n[maar:{name}]\naddress = ::ffff:{ip}\npool = 2001:db8:{i + 1}::/48\ndatapath_id = {i + 1}\n"
                       for i, (name, ip) in enumerate(MAARS.items()))
    return (f"[DEFAULT]\nwsapi_host = 127.0.0.1\nwsapi_port = {rest}\n\n[dmm]\ncmd_address = ::ffff:127.0.0.1\n"
            f"mode = proxy\nport = {udp}\nmetrics_port = {metrics}\n" + sections)


def start_cmd(tmp: Path, config: Path, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen([*MANAGER, "--config-file", str(config), "--ofp-tcp-listen-port",
                                 str(free_port()), "ryu_dmm.cmd"], cwd=tmp, env=clean_env(), stdout=out,
                                stderr=subprocess.STDOUT)


def start_agent(tmp: Path, config: Path, name: str, udp: int, control: str, *extra: str) -> tuple:
    log = tmp / f"{name}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(BIN / "ryu-dmm-maar"), "--config", str(config), "--name", name, "--port", str(udp),
                                 "--control", control, "--state-dir", str(tmp), *extra], env=clean_env(), stdout=out,
                                stderr=subprocess.STDOUT)
    return proc, log


@pytest.fixture
def dmm(tmp_path):
    udp, rest, cmx = free_port(socket.AF_INET, socket.SOCK_DGRAM), free_port(), free_port()
    config = tmp_path / "domain.ini"
    config.write_text(domain_file(udp, rest, cmx))
    d = Dmm(tmp_path, udp, rest, cmx, tmp_path / "cmd.log", start_cmd(tmp_path, config, tmp_path / "cmd.log"))
    try:
        assert wait_for(lambda: tcp_open(cmx) or d.cmd.poll() is not None, 30), d.cmd_log.read_text()
        assert d.cmd.poll() is None, d.cmd_log.read_text()
        for name in MAARS:
            a = {"udp": free_port(socket.AF_INET, socket.SOCK_DGRAM), "metrics": free_port(),
                 "control": str(tmp_path / f"{name}.sock")}
            # maar2 allows one attach trigger per MAC per minute: a second one is refused (mac_rate)
            limits = ("--mac-limit", "1", "--mac-window", "60") if name == "maar2" else ()
            a["proc"], a["log"] = start_agent(tmp_path, config, name, a["udp"], a["control"],
                                              "--metrics-port", str(a["metrics"]), *limits)
            d.agents[name] = a
        for name, a in d.agents.items():
            up = wait_for(lambda a=a: tcp_open(a["metrics"]) or a["proc"].poll() is not None, 15)
            assert up, a["log"].read_text()
            assert a["proc"].poll() is None, a["log"].read_text()
        yield d
    finally:
        codes = {name: stop(a["proc"], timeout=10) for name, a in d.agents.items()}
        assert stop(d.cmd, timeout=15) == 0, d.cmd_log.read_text()
        assert all(c == 0 for c in codes.values()), codes


def advertised(d: Dmm, name: str, mn: str) -> bool:
    return any(e["event"] == "advertise" and e["mn"] == mn for e in d.events(name))


def report_counts(d: Dmm, name: str) -> dict:
    out: dict = {}
    for e in d.events(name):
        if e["event"] == "report":
            out[e["kind"]] = out.get(e["kind"], 0) + 1
    return out


def test_registration_and_handover_move_every_counter_exactly(dmm):
    d = dmm
    c0, a10, a20 = d.scrape_cmd(), d.scrape_agent("maar1"), d.scrape_agent("maar2")
    assert c0.value("dmm_sessions") == 0 and c0.value("dmm_pbu_received_total", maar="maar1") == 0
    # the MN attaches at maar1: the agent registers it with the CMD
    assert d.control("maar1", {"op": "attach", "mn": "mn-1", "mac": MAC, "port": 1})["ok"]
    assert wait_for(lambda: advertised(d, "maar1", "mn-1"), 10), d.events("maar1")
    # ... and moves to maar2 (proxy mode): PBU from maar2, PBA to it, PBU to maar1, PBA from maar1
    t0 = time.monotonic()
    assert d.control("maar2", {"op": "attach", "mn": "mn-1", "mac": MAC, "port": 1})["ok"]

    def moved():
        status, s = d.rest_get("/dmm/v1/sessions/mn-1")
        return status == 200 and s["serving_maar"]["name"] == "maar2" and not s["handover_in_progress"] \
            and advertised(d, "maar2", "mn-1")
    assert wait_for(moved, 10), d.rest_get("/dmm/v1/sessions/mn-1")
    elapsed = time.monotonic() - t0
    # anything late (a retransmission) would show in the counts below; the session gauges come from
    # a walk over the sessions that a scrape may reuse for WALK_MAX_AGE seconds
    time.sleep(WALK_MAX_AGE + 0.1)
    c1, a11, a21 = d.scrape_cmd(), d.scrape_agent("maar1"), d.scrape_agent("maar2")

    # ---- the CMD: two PBUs in (one per MAAR), two PBAs out, one PBU to the P-MAAR and its PBA back
    assert delta(c1, c0, "dmm_pbu_received_total", maar="maar1") == 1
    assert delta(c1, c0, "dmm_pbu_received_total", maar="maar2") == 1
    assert delta(c1, c0, "dmm_pba_sent_total", maar="maar1", status="ACCEPTED") == 1
    assert delta(c1, c0, "dmm_pba_sent_total", maar="maar2", status="ACCEPTED") == 1
    assert delta(c1, c0, "dmm_pbu_sent_total", maar="maar1") == 1
    assert delta(c1, c0, "dmm_pbu_sent_total", maar="maar2") == 0
    assert delta(c1, c0, "dmm_pba_received_total", maar="maar1", status="ACCEPTED") == 1
    assert c1.total("dmm_pbu_received_total") - c0.total("dmm_pbu_received_total") == 2  # nothing else
    assert c1.total("dmm_pba_sent_total") - c0.total("dmm_pba_sent_total") == 2
    assert c1.total("dmm_pbu_sent_total") - c0.total("dmm_pbu_sent_total") == 1
    assert c1.total("dmm_pba_received_total") - c0.total("dmm_pba_received_total") == 1
    assert delta(c1, c0, "dmm_mobility_events_total", event="registered") == 1
    assert delta(c1, c0, "dmm_mobility_events_total", event="handover") == 1
    assert c1.total("dmm_mobility_events_total") - c0.total("dmm_mobility_events_total") == 2
    # one handover observed, lasting less than the test waited for it
    assert delta(c1, c0, "dmm_handover_duration_seconds_count", mode="proxy") == 1
    assert delta(c1, c0, "dmm_handover_duration_seconds_bucket", mode="proxy", le="+Inf") == 1
    took = delta(c1, c0, "dmm_handover_duration_seconds_sum", mode="proxy")
    assert 0 < took < elapsed
    buckets = {float(dict(lab)["le"]): v for lab, v in c1.matching("dmm_handover_duration_seconds_bucket").items()}
    assert [buckets[b] for b in sorted(buckets)] == [0 if b < took else 1 for b in sorted(buckets)]
    # no switches connected here: no flows pushed or confirmed
    assert delta(c1, c0, "dmm_flows_confirmed_seconds_count") == 0
    assert c1.value("dmm_switch_connected", maar="maar1") == 0 and c1.has("dmm_switch_connected", maar="maar2")
    # the state now: one session, served by maar2, anchored at maar1 (one P-MAAR)
    assert c1.value("dmm_sessions") == 1
    by_len = {dict(lab)["pmaars"]: v for lab, v in c1.matching("dmm_sessions_by_pmaars").items()}
    assert by_len["1"] == 1 and sum(by_len.values()) == 1
    assert c1.value("dmm_maar_sessions", maar="maar2", role="serving") == 1
    assert c1.value("dmm_maar_sessions", maar="maar1", role="anchoring") == 1
    assert c1.value("dmm_maar_sessions", maar="maar1", role="serving") == 0
    assert c1.value("dmm_maar_sessions", maar="maar2", role="anchoring") == 0
    assert c1.total("dmm_decode_errors_total") == c1.total("dmm_internal_errors_total") == 0
    # the same counts as REST's (both read the DomainView)
    _, stats = d.rest_get("/dmm/v1/stats")
    assert stats["messages"]["pbu_received"] == c1.total("dmm_pbu_received_total")
    assert stats["messages"]["pba_sent.ACCEPTED"] == c1.total("dmm_pba_sent_total", status="ACCEPTED")
    assert stats["sessions"] == c1.value("dmm_sessions")
    assert stats["handover_latency_ms"]["count"] == c1.value("dmm_handover_duration_seconds_count", mode="proxy")
    drops = stats["receive_path"]["sockets"]["udp"]["kernel_drops"]
    assert drops is not None and c1.value("dmm_receive_kernel_drops_total", socket="udp") == drops
    assert c1.value("dmm_receive_buffer_bytes", socket="udp") == stats["receive_path"]["sockets"]["udp"]["rcvbuf"]

    # ---- maar1's agent: one attach, its PBU and the PBA; then the CMD's PBU (the MN moved) and its PBA
    assert delta(a11, a10, "dmm_agent_attaches_total", maar="maar1") == 1
    assert delta(a11, a10, "dmm_agent_pbu_sent_total", maar="maar1", peer="cmd") == 1
    assert delta(a11, a10, "dmm_agent_pba_received_total", maar="maar1", peer="cmd", status="ACCEPTED") == 1
    assert delta(a11, a10, "dmm_agent_pbu_received_total", maar="maar1", peer="cmd") == 1
    assert delta(a11, a10, "dmm_agent_pba_sent_total", maar="maar1", peer="cmd", status="ACCEPTED") == 1
    assert a11.value("dmm_agent_bindings", maar="maar1") == 1  # it still anchors the MN's first prefix
    assert a11.value("dmm_agent_pool_in_use", maar="maar1") == 1
    assert a11.value("dmm_agent_pool_capacity", maar="maar1") == 2 ** 16  # a /48 in /64s
    # ---- maar2's agent: one attach, its PBU and the PBA
    assert delta(a21, a20, "dmm_agent_attaches_total", maar="maar2") == 1
    assert delta(a21, a20, "dmm_agent_pbu_sent_total", maar="maar2", peer="cmd") == 1
    assert delta(a21, a20, "dmm_agent_pba_received_total", maar="maar2", peer="cmd", status="ACCEPTED") == 1
    assert a21.total("dmm_agent_pbu_received_total") == a21.total("dmm_agent_pba_sent_total") == 0
    assert a21.value("dmm_agent_bindings", maar="maar2") == 1 and a21.value("dmm_agent_pool_in_use", maar="maar2") == 1
    # the agents' mobility events are the reports in their own event logs: maar1 registered the MN and
    # saw it move away; maar2 took it over with one P-MAAR
    for name, scrape_ in (("maar1", a11), ("maar2", a21)):
        reports = report_counts(d, name)
        assert {dict(lab)["event"]: v for lab, v in scrape_.matching("dmm_agent_mobility_events_total").items()} \
            == reports
    assert report_counts(d, "maar1") == {"registered": 1, "moved": 1}
    assert report_counts(d, "maar2") == {"handover": 1}
    for s in (a11, a21):
        assert s.total("dmm_agent_refused_attaches_total") == s.total("dmm_agent_decode_errors_total") == 0
        assert s.value("process_resident_memory_bytes") > 0


def peer(address: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((address, 0))
    s.settimeout(3)
    return s


def test_bad_input_and_refusals_are_counted_exactly(dmm):
    d = dmm
    c0, a10, a20 = d.scrape_cmd(), d.scrape_agent("maar1"), d.scrape_agent("maar2")
    # the CMD: three datagrams that are no PBU/PBA from a MAAR's address, then a PBU from a stranger
    junk = peer(MAARS["maar1"])
    for data in (b"", b"garbage", bytes(64)):
        junk.sendto(data, ("127.0.0.1", d.udp))
    stranger = peer("127.0.0.9")
    stranger.sendto(encode(M.pbu(7, time.time(), "mn-x", Prefix.parse("2001:db8:1:9::/64"), 40, 1, 3)),
                    ("127.0.0.1", d.udp))
    # answered after the junk was handled (one socket queue, in order)
    assert decode(stranger.recv(4096)).status == Status.MAG_NOT_AUTHORIZED_FOR_PROXY_REG
    # maar1's agent: two datagrams that are no PBU/PBA
    for data in (b"\x00", b"nonsense"):
        junk.sendto(data, (MAARS["maar1"], d.agents["maar1"]["udp"]))  # the agent listens on its address
    assert wait_for(lambda: delta(d.scrape_agent("maar1"), a10, "dmm_agent_decode_errors_total", maar="maar1") >= 2, 5)
    # maar2's agent allows one attach trigger per MAC per minute: the second is refused
    assert d.control("maar2", {"op": "attach", "mn": "mn-9", "mac": "02:00:00:00:00:09", "port": 2})["ok"]
    refused = d.control("maar2", {"op": "attach", "mn": "mn-9", "mac": "02:00:00:00:00:09", "port": 2})
    assert refused["ok"] is False and refused["refused"] == "refused_mac_rate"
    assert wait_for(lambda: advertised(d, "maar2", "mn-9"), 10)
    time.sleep(WALK_MAX_AGE + 0.1)
    c1, a11, a21 = d.scrape_cmd(), d.scrape_agent("maar1"), d.scrape_agent("maar2")

    assert c1.total("dmm_decode_errors_total") - c0.total("dmm_decode_errors_total") == 3
    _, stats = d.rest_get("/dmm/v1/stats")
    by_reason = {k.split(".", 1)[1]: v for k, v in stats["messages"].items() if k.startswith("decode_error.")}
    assert {dict(lab)["reason"]: v for lab, v in c1.matching("dmm_decode_errors_total").items()} == by_reason
    assert delta(c1, c0, "dmm_pbu_received_total", maar="other") == 1
    assert delta(c1, c0, "dmm_pba_sent_total", maar="other", status="MAG_NOT_AUTHORIZED_FOR_PROXY_REG") == 1
    assert delta(c1, c0, "dmm_mobility_events_total", event="rejected") == 1
    # mn-9's registration through maar2 (the accepted trigger)
    assert delta(c1, c0, "dmm_pbu_received_total", maar="maar2") == 1
    assert delta(c1, c0, "dmm_pba_sent_total", maar="maar2", status="ACCEPTED") == 1
    assert delta(c1, c0, "dmm_mobility_events_total", event="registered") == 1
    assert c1.value("dmm_sessions") == 1 and c1.value("dmm_sessions_by_pmaars", pmaars="0") == 1
    assert c1.total("dmm_internal_errors_total") == 0
    assert delta(a11, a10, "dmm_agent_decode_errors_total", maar="maar1") == 2
    assert delta(a21, a20, "dmm_agent_attaches_total", maar="maar2") == 1
    assert delta(a21, a20, "dmm_agent_refused_attaches_total", maar="maar2", reason="mac_rate") == 1
    assert a21.total("dmm_agent_refused_attaches_total") - a20.total("dmm_agent_refused_attaches_total") == 1
    assert a21.value("dmm_agent_bindings", maar="maar2") == 1
    # what the control socket's state says, the metrics say
    state = d.control("maar2", {"op": "state"})
    assert state["counters"]["refused_mac_rate"] == a21.value("dmm_agent_refused_attaches_total", maar="maar2",
                                                              reason="mac_rate")
    assert state["pool_in_use"] == a21.value("dmm_agent_pool_in_use", maar="maar2")


def test_only_get_metrics_is_served(dmm):
    d = dmm
    for port in (d.metrics, d.agents["maar1"]["metrics"]):
        for path in ("/", "/metrics/x", "/dmm/v1/stats"):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5)
            assert err.value.code == 404
        req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", method="HEAD")
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200 and r.read() == b""
    assert d.rest_get("/dmm/v1/maars")[0] == 200  # REST stays on its own server and port


def test_ports_default_explicit_and_busy(tmp_path):
    """An explicit metrics port that is taken stops the process with a clear message; the default
    port, if taken, is given up with a warning (CMD) or a line on stderr (agent) and all else runs."""
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    udp, rest = free_port(socket.AF_INET, socket.SOCK_DGRAM), free_port()
    config = tmp_path / "d.ini"
    config.write_text(domain_file(udp, rest, port))
    out = subprocess.run([*MANAGER, "--config-file", str(config), "--ofp-tcp-listen-port",
                          str(free_port()), "ryu_dmm.cmd"], cwd=tmp_path, env=clean_env(), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode != 0
    assert f"cannot open the metrics port on [127.0.0.1]:{port}" in out.stderr + out.stdout
    agent = subprocess.run([str(BIN / "ryu-dmm-maar"), "--config", str(config), "--name", "maar1", "--port",
                            str(free_port(socket.AF_INET, socket.SOCK_DGRAM)), "--control", str(tmp_path / "m1.sock"),
                            "--metrics-port", str(port), "--state-dir", str(tmp_path)], env=clean_env(),
                           capture_output=True, text=True, timeout=30)
    assert agent.returncode == 1 and f"cannot open the metrics port on [127.0.0.1]:{port}" in agent.stderr
    # the defaults (9460 for the CMD, 9461 for maar1): taken by us if free, else by someone else
    holders = []
    for default in (9460, 9461):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", default))
            s.listen(1)
            holders.append(s)
        except OSError:
            s.close()  # someone holds it already: just as busy
    try:
        config.write_text(domain_file(udp, rest, port).replace(f"metrics_port = {port}\n", ""))
        cmd = start_cmd(tmp_path, config, tmp_path / "cmd.log")
        control = str(tmp_path / "m1.sock")
        proc, log = start_agent(tmp_path, config, "maar1", free_port(socket.AF_INET, socket.SOCK_DGRAM), control)
        try:
            assert wait_for(lambda: tcp_open(rest) or cmd.poll() is not None, 30)
            assert cmd.poll() is None and wait_for(lambda: "metrics disabled" in (tmp_path / "cmd.log").read_text(), 5)
            assert "cannot listen on [127.0.0.1]:9460" in (tmp_path / "cmd.log").read_text()
            assert wait_for(lambda: proc.poll() is not None or '"event": "started"' in log.read_text(), 10)
            assert proc.poll() is None and request(control, {"op": "state"})["ok"]
            text = log.read_text()
            assert "metrics disabled: cannot listen on [127.0.0.1]:9461" in text and '"metrics": null' in text
        finally:
            assert stop(proc) == 0
            assert stop(cmd, timeout=15) == 0
    finally:
        for s in holders:
            s.close()
        busy.close()
