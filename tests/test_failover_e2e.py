"""A MAAR agent with two CMDs (issue 10 item 4, docs/failover.md), all real processes on loopback:
two ``ryu_dmm.cmd`` instances, each with its own binding store, and one ``ryu-dmm-maar`` given both
(``--cmd A --cmd B``). The first CMD is killed with SIGKILL while a registration is in flight to it;
the registration completes at the second CMD, and the MN registered before the kill is registered
there too, each within the documented budget (failover_timeout, 2 s by default, plus a round trip)
and the issue's 3 s target. Times are measured from the kill, by this test's own clock."""
import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from ryu_dmm.agent.main import request
from tests.procs import BIN, clean_env, free_port, running_agent, running_cmd, wait_for

CMD_A, CMD_B, MAAR = "::ffff:127.0.0.10", "::ffff:127.0.0.11", "::ffff:127.0.0.41"
FAILOVER_TIMEOUT = 2.0  # the documented default of [timers] failover_timeout (docs/failover.md)
TARGET = 3.0  # issue 10 item 4: the agent moves to the next CMD within 3 s
HEARTBEAT = 0.5


def config(folder, cmd: str, udp: int, rest: int):
    folder.mkdir()
    path = folder / "d.ini"
    # Everyone on the same UDP port, each on its own address: a CMD sends its PBUs to a MAAR's
    # configured port. Each CMD keeps its own store (dmm-state beside its file).
    path.write_text(f"""
[DEFAULT]
wsapi_host = 127.0.0.1
wsapi_port = {rest}
[dmm]
cmd_address = {cmd}
listen = {cmd}
port = {udp}
metrics_port = 0
[timers]
heartbeat_interval = {HEARTBEAT}
[maar:maar1]
address = {MAAR}
pool = 2001:db8:1::/48
""")
    return path


def session(rest: int, mn: str):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{rest}/dmm/v1/sessions/{mn}", timeout=1) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def attach(control: str, mn: str, mac: str) -> None:
    assert request(control, {"op": "attach", "mn": mn, "mac": mac, "port": 1})["ok"]


def fail_over(tmp_path, in_flight: bool) -> dict:
    """Two CMDs and one agent given both; mn1 registered at A; A killed with SIGKILL; with
    ``in_flight``, mn2 attached right after the kill (its PBU goes to the dead CMD first). Returns
    the seconds until each MN's session is at B (``mn1`` from the kill, ``mn2`` from its attach) and
    what the agent shows afterwards (``state``, ``events``, ``metrics`` sample lines). Also run by
    benchmarks/failover.py."""
    udp = free_port(socket.AF_INET, socket.SOCK_DGRAM)
    rest_a, rest_b = free_port(), free_port()
    conf_a = config(tmp_path / "a", CMD_A, udp, rest_a)
    conf_b = config(tmp_path / "b", CMD_B, udp, rest_b)
    control = str(tmp_path / "maar1.sock")
    metrics = free_port()
    with running_cmd(conf_a, free_port(), rest_a, tmp_path / "cmd-a.log") as cmd_a, \
            running_cmd(conf_b, free_port(), rest_b, tmp_path / "cmd-b.log"), \
            running_agent(conf_a, "maar1", udp, control, tmp_path / "agent.log", "--metrics-port", str(metrics),
                          "--cmd", CMD_A, "--cmd", CMD_B):
        attach(control, "mn1", "02:00:00:00:0f:01")
        assert wait_for(lambda: session(rest_a, "mn1") is not None, 5), (tmp_path / "agent.log").read_text()
        assert session(rest_b, "mn1") is None  # B has its own store: it knows nothing yet
        state = request(control, {"op": "state"})
        assert state["cmd"]["current"] == "::ffff:127.0.0.10" and state["cmd"]["failovers"] == 0
        time.sleep(2 * HEARTBEAT)  # heartbeats answered by both: both known alive

        cmd_a.send_signal(signal.SIGKILL)
        cmd_a.wait(10)
        t_kill = time.monotonic()
        mns = ("mn1", "mn2") if in_flight else ("mn1",)
        if in_flight:
            attach(control, "mn2", "02:00:00:00:0f:02")
        t_attach = time.monotonic()
        at_b = {}

        def all_at_b() -> bool:
            for mn in mns:
                if mn not in at_b and session(rest_b, mn) is not None:
                    at_b[mn] = time.monotonic()
            return len(at_b) == len(mns)
        assert wait_for(all_at_b, 10, interval=0.02), (tmp_path / "agent.log").read_text()
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=3) as r:
            samples = [line for line in r.read().decode().splitlines() if line and not line.startswith("#")]
        return {"mn1": at_b["mn1"] - t_kill, "mn2": at_b["mn2"] - t_attach if in_flight else None, "mns": mns,
                "state": request(control, {"op": "state"}), "metrics": samples,
                "events": request(control, {"op": "events", "since": 0})["events"],
                "sessions_at_b": {mn: session(rest_b, mn) for mn in mns}}


@pytest.mark.parametrize("in_flight", [True, False], ids=["registration-in-flight", "idle-heartbeats"])
def test_the_agent_moves_to_the_second_cmd_when_the_first_is_killed(tmp_path, in_flight):
    """``in_flight``: mn2 attaches right after the kill (a PBU to the dead CMD starts the clock);
    else nothing happens after the kill but the Heartbeats (every 0.5 s here): the clock starts at
    the next unanswered request, so the budget is heartbeat_interval + failover_timeout."""
    got = fail_over(tmp_path, in_flight)
    refresh = got["mn1"]  # the MN registered before the kill, told to B again
    # the budget: the silence clock (failover_timeout) from the first request after the kill (at
    # once with mn2's PBU, else the next Heartbeat), and a round trip; REST polled every 20 ms
    if in_flight:
        assert FAILOVER_TIMEOUT - 0.05 <= got["mn2"] <= TARGET, got["mn2"]
    else:
        assert FAILOVER_TIMEOUT - 0.05 <= refresh <= FAILOVER_TIMEOUT + HEARTBEAT + 0.3, refresh
    assert refresh <= TARGET, refresh
    state, events, samples = got["state"], got["events"], got["metrics"]
    assert state["cmd"]["current"] == "::ffff:127.0.0.11" and state["cmd"]["failovers"] == 1
    assert any(e["event"] == "report" and e["kind"] == "failover" for e in events)
    for mn in got["mns"]:  # served here, the registration (or the refresh) accepted by B
        assert state["bindings"][mn]["local"]
        assert got["sessions_at_b"][mn]["serving_maar"]["name"] == "maar1"
    if in_flight:
        assert any(e["event"] == "report" and e["kind"] == "registered" and e["mn"] == "mn2" for e in events)
    # the agent's metrics name each CMD (cmd1, cmd2: the list's order), once per series
    series = [line.rsplit(" ", 1)[0] for line in samples]
    assert len(series) == len(set(series))
    assert 'dmm_agent_mobility_events_total{event="failover",maar="maar1"} 1.0' in samples
    for peer in ("cmd1", "cmd2"):
        assert any(s.startswith(f'dmm_agent_pbu_sent_total{{maar="maar1",peer="{peer}"}}') and
                   float(s.rsplit(" ", 1)[1]) >= 1 for s in samples), samples


@pytest.mark.parametrize("value,message", [("nowhere", "--cmd:"), (MAAR, "used twice")])
def test_a_bad_cmd_on_the_command_line_stops_the_agent_clearly(tmp_path, value, message):
    conf = config(tmp_path / "a", CMD_A, free_port(socket.AF_INET, socket.SOCK_DGRAM), free_port())
    out = subprocess.run([str(BIN / "ryu-dmm-maar"), "--config", str(conf), "--name", "maar1", "--cmd", CMD_A,
                          "--cmd", value, "--control", str(tmp_path / "x.sock")], env=clean_env(tmp_path / "s"),
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
