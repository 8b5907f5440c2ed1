"""A real ``ryu-dmm-maar`` process and a hand-played CMD on loopback: RFC 5847 Heartbeats on the
wire (bytes checked against the layout in FACTS.md), the CMD unreachable after the allowed misses,
re-registration when the CMD's restart counter changes, and the agent's own counter across restarts."""
import socket
import struct
import time
import urllib.request

import pytest

from ryu_dmm.agent.main import request
from ryu_dmm.mobility import messages as M
from ryu_dmm.wire import BindingUpdate, Heartbeat, RestartCounter, decode, encode
from tests.procs import free_port, running_agent, wait_for

INTERVAL = 0.2
MISSING = 3


@pytest.fixture
def setup(tmp_path):
    cmd_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    cmd_sock.bind(("127.0.0.1", 0))
    cmd_sock.settimeout(3)
    (tmp_path / "d.ini").write_text(f"""
[dmm]
cmd_address = ::ffff:127.0.0.1
port = {cmd_sock.getsockname()[1]}
[store]
dir = hb-state
[timers]
heartbeat_interval = {INTERVAL}
missing_heartbeats_allowed = {MISSING}
[maar:maar1]
address = ::ffff:127.0.0.2
pool = 2001:db8:1::/48
""")
    yield tmp_path, cmd_sock
    cmd_sock.close()


def agent(tmp_path, metrics_port):
    return running_agent(tmp_path / "d.ini", "maar1", free_port(socket.AF_INET, socket.SOCK_DGRAM),
                         str(tmp_path / "maar1.sock"), tmp_path / "agent.log", "--metrics-port", str(metrics_port))


def next_of(cmd_sock, kind, pred=lambda m: True):
    """The next datagram to the CMD holding a ``kind`` for which ``pred`` holds: (raw, message, addr)."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        raw, addr = cmd_sock.recvfrom(4096)
        msg = decode(raw)
        if type(msg) is kind and pred(msg):
            return raw, msg, addr
    raise AssertionError(f"no {kind.__name__} came")


def drain(cmd_sock):
    """Drop the requests queued while we played dead: only an answer to the latest one counts."""
    cmd_sock.setblocking(False)
    try:
        while True:
            cmd_sock.recvfrom(4096)
    except BlockingIOError:
        pass
    finally:
        cmd_sock.settimeout(3)


def answer(cmd_sock, req_raw, addr, counter):
    seq = struct.unpack_from("!I", req_raw, 8)[0]
    cmd_sock.sendto(encode(Heartbeat(seq, response=True, options=(RestartCounter(counter),))), addr)


def cmd_view(control):
    (peer,) = request(control, {"op": "state"})["heartbeat"]["peers"]
    return peer


def metric(port, line_start):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        lines = [line for line in r.read().decode().splitlines() if line.startswith(line_start)]
    return float(lines[0].rsplit(" ", 1)[1]) if lines else None


def test_heartbeats_unreachable_and_reregistration_after_a_cmd_restart(setup):
    tmp_path, cmd_sock = setup
    control = str(tmp_path / "maar1.sock")
    mport = free_port()
    with agent(tmp_path, mport):
        raw, hb, addr = next_of(cmd_sock, Heartbeat)
        # By hand (FACTS.md): MH type 13 at byte 2, 16-bit reserved with U=R=0, 32-bit sequence 1,
        # PadN(0) to 14, then Restart Counter type 28 length 4 = 1 (the first start in this state dir).
        assert raw[:6] == bytes.fromhex("3b020d000000") and raw[6:12] == bytes.fromhex("000000000001")
        assert raw[12:20] == bytes.fromhex("0100" "1c04" "00000001") and len(raw) == 24
        assert hb == Heartbeat(1, options=(RestartCounter(1),))
        answer(cmd_sock, raw, addr, 5)
        assert wait_for(lambda: cmd_view(control)["restart_counter"] == 5, 3)
        assert cmd_view(control)["reachable"] is True
        # the CMD's requests are answered: R=1, the same sequence number, our counter
        cmd_sock.sendto(encode(Heartbeat(0xCAFEF00D, options=(RestartCounter(5),))), addr)
        raw, _, _ = next_of(cmd_sock, Heartbeat, lambda m: m.response)
        assert raw[6:20] == bytes.fromhex("0001" "cafef00d" "0100" "1c04" "00000001")
        # an MN registers
        assert request(control, {"op": "attach", "mn": "mn1", "mac": "02:00:00:00:00:01", "port": 3})["ok"]
        _, pbu, _ = next_of(cmd_sock, BindingUpdate)
        cmd_sock.sendto(encode(M.pba_for(pbu, 0, 3600)), addr)
        assert wait_for(lambda: request(control, {"op": "state"})["bindings"]["mn1"]["local"], 3)
        # the CMD goes silent: unreachable after MISSING unanswered requests
        t0 = time.monotonic()
        assert wait_for(lambda: not cmd_view(control)["reachable"], 3)
        assert time.monotonic() - t0 >= (MISSING - 1) * INTERVAL
        assert cmd_view(control)["missed"] >= MISSING
        assert metric(mport, 'dmm_agent_peer_reachable{maar="maar1",peer="cmd"}') == 0.0
        # ... and comes back restarted (counter 6): reachable again, and mn1 is registered anew
        drain(cmd_sock)
        raw, _, addr = next_of(cmd_sock, Heartbeat)
        answer(cmd_sock, raw, addr, 6)
        _, rereg, _ = next_of(cmd_sock, BindingUpdate)
        assert (rereg.mn_id, rereg.handoff, str(rereg.hnps[0]), rereg.lifetime) == ("mn1", 5, "2001:db8:1::/64", 3600)
        view = cmd_view(control)
        assert (view["reachable"], view["restart_counter"], view["restarts"]) == (True, 6, 1)
        assert metric(mport, 'dmm_agent_peer_restart_counter{maar="maar1",peer="cmd"}') == 6.0
        assert metric(mport, 'dmm_agent_peer_restarts_total{maar="maar1",peer="cmd"}') == 1.0
        assert metric(mport, 'dmm_agent_heartbeat_sent_total{maar="maar1",peer="cmd"}') >= MISSING + 2
        kinds = [e["kind"] for e in request(control, {"op": "events"})["events"] if e["event"] == "report"]
        assert kinds.count("peer_unreachable") == 1 and kinds.count("peer_reachable") == 1
        assert kinds.count("peer_restarted") == 1


def test_the_agents_counter_changes_at_every_start(setup):
    tmp_path, cmd_sock = setup
    for expected in (1, 2):
        with agent(tmp_path, free_port()):
            _, hb, _ = next_of(cmd_sock, Heartbeat)
            assert hb.restart_counter == expected
            assert request(str(tmp_path / "maar1.sock"), {"op": "state"})["heartbeat"]["restart_counter"] == expected
    # kept in [store] dir (relative to the configuration file), not in the tests' default folder
    assert (tmp_path / "hb-state" / "maar-maar1.restart").read_text() == "2\n"
    assert not (tmp_path / "dmm-state" / "maar-maar1.restart").exists()
