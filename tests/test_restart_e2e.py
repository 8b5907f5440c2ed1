"""Restarts end to end, no switches: a real CMD (``ryu-manager ryu_dmm.cmd``) and real MAAR agents
(``ryu-dmm-maar``) on loopback, each killed with SIGKILL and started again (docs/store.md, "What each
restart does"). What must hold comes from that page and RFC 5847: a CMD that kept its store keeps
its Restart Counter, so the MAARs do nothing; a MAAR that restarts has a new counter and is rebuilt
by the CMD; a CMD that lost its store has a new counter and the MAARs tell it again what they hold."""
import json
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from ryu_dmm.agent.main import request
from tests.procs import BIN, clean_env, free_port, stop, tcp_open, wait_for

INTERVAL = 0.5  # [timers] heartbeat_interval
CMD = "::ffff:127.0.0.1"
ADDRESS = {"maar1": "::ffff:127.0.0.41", "maar2": "::ffff:127.0.0.42", "maar3": "::ffff:127.0.0.43"}
MN, MAC = "mn-restart@lab", "02:00:00:00:0e:01"


def config(udp: int, rest: int, backend: str) -> str:
    maars = "".join(f"\n[maar:{name}]\naddress = {addr}\npool = 2001:db8:{i}::/48\n"
                    for i, (name, addr) in enumerate(ADDRESS.items(), 1))
    # Everyone shares the CMD's port on its own address: the CMD's first PBU to a MAAR that has not
    # spoken to it yet (after its own restart) goes to the configured port.
    return f"""
[DEFAULT]
wsapi_host = 127.0.0.1
wsapi_port = {rest}

[dmm]
cmd_address = {CMD}
listen = {CMD}
port = {udp}
mode = proxy
metrics_port = 0

[timers]
heartbeat_interval = {INTERVAL}
missing_heartbeats_allowed = 3

[store]
backend = {backend}
dir = state
{maars}"""


class Lab:
    """The CMD and one agent per MAAR as our own children, each started, killed and restarted by pid."""

    def __init__(self, tmp: Path, backend: str = "sqlite"):
        self.tmp = tmp
        self.udp, self.rest, self.of = free_port(socket.AF_INET, socket.SOCK_DGRAM), free_port(), free_port()
        (tmp / "d.ini").write_text(config(self.udp, self.rest, backend))
        self.cmd = None
        self.agents: dict[str, subprocess.Popen] = {}
        self.marks = {name: 0 for name in ADDRESS}
        self.runs = 0

    def control(self, name: str) -> str:
        return str(self.tmp / f"{name}.sock")

    def start_cmd(self) -> None:
        self.runs += 1
        with open(self.tmp / f"cmd{self.runs}.log", "w") as log:
            self.cmd = subprocess.Popen([str(BIN / "ryu-manager"), "--config-file", str(self.tmp / "d.ini"),
                                         "--ofp-tcp-listen-port", str(self.of), "ryu_dmm.cmd"], cwd=self.tmp,
                                        env=clean_env(), stdout=log, stderr=subprocess.STDOUT)
        assert wait_for(lambda: tcp_open(self.rest) or self.cmd.poll() is not None, 30), self.cmd_log()
        assert self.cmd.poll() is None, self.cmd_log()

    def cmd_log(self) -> str:
        return (self.tmp / f"cmd{self.runs}.log").read_text()

    def start_agent(self, name: str) -> None:
        with open(self.tmp / f"{name}.log", "a") as log:
            self.agents[name] = subprocess.Popen(
                [str(BIN / "ryu-dmm-maar"), "--config", str(self.tmp / "d.ini"), "--name", name,
                 "--port", str(self.udp), "--control", self.control(name), "--metrics-port", "0",
                 "--access-port", "1"], env=clean_env(), stdout=log, stderr=subprocess.STDOUT)
        self.marks[name] = 0  # a new process counts its events from 0

        def alive() -> bool:
            try:
                return request(self.control(name), {"op": "state"}, timeout=0.2)["ok"]
            except OSError:
                return False
        assert wait_for(lambda: self.agents[name].poll() is not None or alive(), 10), self.agent_log(name)
        assert self.agents[name].poll() is None, self.agent_log(name)

    def agent_log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text()

    @staticmethod
    def kill9(proc: subprocess.Popen) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.rest}{path}", timeout=3) as r:
            return json.loads(r.read())

    def session(self) -> dict:
        return self.get(f"/dmm/v1/sessions/{MN}")

    def events(self, name: str) -> list[dict]:
        """The agent's events since the last call."""
        got = request(self.control(name), {"op": "events", "since": self.marks[name]})
        self.marks[name] = got["next"]
        return got["events"]

    def state(self, name: str) -> dict:
        return request(self.control(name), {"op": "state"})

    def binding(self, name: str):
        return self.state(name)["bindings"].get(MN)

    def move(self, to: str, previous: list[str]) -> None:
        """The MN attaches at ``to`` (an explicit attach trigger, as a lower layer gives) after leaving
        the last of ``previous``; wait for the serving MAAR's report and every P-MAAR's."""
        for name in ADDRESS:
            self.events(name)
        if previous:
            assert request(self.control(previous[-1]), {"op": "detach", "mn": MN})["ok"]
        assert request(self.control(to), {"op": "attach", "mn": MN, "mac": MAC, "port": 1})["ok"]
        seen = {name: [] for name in ADDRESS}

        def done() -> bool:
            for name in ADDRESS:
                seen[name] += self.events(name)
            served = any(e["event"] == "report" and e["kind"] in ("registered", "handover") for e in seen[to])
            moved = all(any(e["event"] == "report" and e["kind"] == "moved" for e in seen[p]) for p in previous)
            return served and moved
        assert wait_for(done, 10), seen

    def close(self) -> None:
        for name, proc in self.agents.items():
            assert stop(proc, timeout=10) == 0, self.agent_log(name)
        if self.cmd is not None and self.cmd.poll() is None:
            assert stop(self.cmd, timeout=15) == 0, self.cmd_log()


@pytest.fixture
def lab(tmp_path, request):
    lab = Lab(tmp_path, getattr(request, "param", "sqlite"))
    lab.start_cmd()
    try:
        for name in ADDRESS:
            lab.start_agent(name)
        # every agent has heard the CMD once: its Restart Counter is known on both sides
        assert wait_for(lambda: all(lab.state(n)["heartbeat"]["peers"][0]["last_heard"] for n in ADDRESS), 5)
        lab.move("maar1", [])
        lab.move("maar2", ["maar1"])
        yield lab
    finally:
        lab.close()


def pmaars(session: dict) -> list[tuple[str, str]]:
    return sorted((p["name"], p["prefix"]) for p in session["previous_maars"])


def cmd_seen_by(lab: Lab, name: str) -> dict:
    (peer,) = lab.state(name)["heartbeat"]["peers"]
    return peer


def test_cmd_kill9_with_its_store_changes_nothing_for_the_maars(lab):
    before = lab.session()
    assert before["serving_maar"]["name"] == "maar2" and [n for n, _ in pmaars(before)] == ["maar1"]
    counter = {n: cmd_seen_by(lab, n)["restart_counter"] for n in ADDRESS}
    assert len(set(counter.values())) == 1  # one CMD, one counter
    anchor, served = lab.binding("maar1"), lab.binding("maar2")
    for name in ADDRESS:
        lab.events(name)

    lab.kill9(lab.cmd)
    killed = time.time()
    lab.start_cmd()
    after = lab.session()
    assert 0 <= before.pop("lifetime_remaining") - after.pop("lifetime_remaining") < 30
    assert after == before  # serving MAAR, prefix and P-MAAR list as they were
    # every agent hears the new CMD, with the counter it had: nothing to tell it again
    assert wait_for(lambda: all(cmd_seen_by(lab, n)["last_heard"] > killed + 0.1 for n in ADDRESS), 5 * INTERVAL + 3)
    time.sleep(2 * INTERVAL)  # time for a re-registration to show, if one were (wrongly) sent
    for name in ADDRESS:
        seen = cmd_seen_by(lab, name)
        assert seen["restart_counter"] == counter[name] and seen["restarts"] == 0
        storm = [e for e in lab.events(name) if e["event"] == "report"
                 and e["kind"] in ("renewed", "registered", "handover", "moved", "deregistered", "failed")]
        assert storm == [], (name, storm)
    assert lab.binding("maar1") == anchor and lab.binding("maar2") == served
    assert lab.get("/dmm/v1/stats")["store"]["restored_sessions"] == 1

    lab.move("maar3", ["maar1", "maar2"])  # and the next handover works
    session = lab.session()
    assert session["serving_maar"]["name"] == "maar3"
    assert [n for n, _ in pmaars(session)] == ["maar1", "maar2"]
    assert sorted(p for p, _ in lab.binding("maar3")["to_anchor"]) == sorted(p for _, p in pmaars(session))


def wait_rebuilt(lab: Lab, name: str, want, within: float):
    """Poll ``name``'s binding of the MN until it equals ``want``; seconds it took."""
    t0 = time.monotonic()
    assert wait_for(lambda: lab.binding(name) == want, within, 0.02), (name, lab.binding(name), want)
    return time.monotonic() - t0


def test_a_restarted_maar_is_rebuilt_by_the_cmd(lab):
    session = lab.session()
    (_, prefix1), = pmaars(session)
    prefix2 = session["prefix"]
    anchor, served = lab.binding("maar1"), lab.binding("maar2")
    # what the RFC's roles give, from the session (not from the agents): maar1 tunnels prefix1 to
    # maar2; maar2 serves prefix2 locally and reaches prefix1 through maar1
    assert anchor["local"] == [] and anchor["to_serving"] == [[prefix1, ADDRESS["maar2"]]]
    assert served["local"] == [prefix2] and served["to_anchor"] == [[prefix1, ADDRESS["maar1"]]]
    restarts = lab.get("/dmm/v1/stats")["peers"]

    for name, want in (("maar1", anchor), ("maar2", served)):
        lab.kill9(lab.agents[name])
        lab.start_agent(name)  # it keeps nothing; its first Heartbeat, at once, shows its new counter
        took = wait_rebuilt(lab, name, want, 4 * INTERVAL + 2)
        peer = lab.get("/dmm/v1/stats")["peers"][name]
        assert peer["restarts"] == restarts[name]["restarts"] + 1
        assert peer["restart_counter"] == restarts[name]["restart_counter"] + 1  # its file counts up
        assert took < 3 * INTERVAL + 1, took
    events = lab.events("maar2")
    # the served MN came back registered (the PBA brought the P-MAAR list) and advertised
    assert any(e["event"] == "report" and e["kind"] in ("registered", "handover") for e in events), events
    ras = [e for e in events if e["event"] == "advertise"]
    assert ras and {p["prefix"] for p in ras[-1]["prefixes"]} == {prefix1, prefix2}
    assert lab.session() | {"lifetime_remaining": 0} == session | {"lifetime_remaining": 0}
    lab.move("maar3", ["maar1", "maar2"])  # and the rebuilt MAARs take part in the next handover
    assert [n for n, _ in pmaars(lab.session())] == ["maar1", "maar2"]


@pytest.mark.parametrize("lab", ["memory"], indirect=True)
def test_cmd_kill9_without_a_store_brings_sessions_back_without_their_pmaars(lab):
    """docs/mobility.md decision 26: the MAARs see a new counter and tell the CMD what they hold;
    the serving MAAR's re-registration brings the session back, but a P-MAAR's audit cannot (it
    names neither the serving MAAR nor the MAC): the CMD answers lifetime 0, the anchor goes and
    the serving MAAR deprecates the old prefix. What the memory backend costs, pinned down."""
    before = lab.session()
    (_, prefix1), = pmaars(before)
    counter = cmd_seen_by(lab, "maar2")["restart_counter"]
    for name in ADDRESS:
        lab.events(name)
    lab.kill9(lab.cmd)
    lab.start_cmd()
    # nothing came back from the store (the session count may already be 1 when REST answers: the
    # signalling socket opens first, and a MAAR's Heartbeat can bring the re-registration before it)
    assert lab.get("/dmm/v1/stats")["store"]["restored_sessions"] == 0
    assert wait_for(lambda: all(cmd_seen_by(lab, n)["restart_counter"] != counter for n in ADDRESS), 5 * INTERVAL + 3)
    assert wait_for(lambda: lab.binding("maar1") is None and lab.get("/dmm/v1/stats")["sessions"] == 1, 3)
    after = lab.session()
    assert (after["serving_maar"], after["prefix"], after["previous_maars"]) == (before["serving_maar"], before["prefix"], [])
    assert wait_for(lambda: lab.binding("maar2")["to_anchor"] == [], 3)
    assert lab.binding("maar2")["local"] == [before["prefix"]]
    seen = {n: lab.events(n) for n in ADDRESS}
    told = {n: [e["detail"] for e in seen[n] if e["event"] == "report" and e["kind"] == "renewed"] for n in ADDRESS}
    assert told == {"maar1": ["the CMD restarted: 0 registration(s) and 1 anchor(s) told again"],
                    "maar2": ["the CMD restarted: 1 registration(s) and 0 anchor(s) told again"],
                    "maar3": ["the CMD restarted: 0 registration(s) and 0 anchor(s) told again"]}
    # the MN is told that the old prefix is gone (valid lifetime 0): its old flows end here
    ras = [e for e in seen["maar2"] if e["event"] == "advertise"]
    assert ras and {p["prefix"]: p["valid"] for p in ras[-1]["prefixes"]}[prefix1] == 0
    lab.move("maar3", ["maar2"])  # the next handover works, with what the CMD knows now
    assert pmaars(lab.session()) == [("maar2", before["prefix"])]
