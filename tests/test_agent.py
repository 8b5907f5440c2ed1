"""The MAAR agent process: attach trigger -> PBU to the CMD, PBA -> data plane and RA; bad input."""
import socket
import subprocess
import time

import pytest

from ryu_dmm.agent.main import request
from ryu_dmm.mobility import messages as M
from ryu_dmm.wire import BindingUpdate, decode, encode
from tests.procs import BIN, clean_env, free_port, running_agent, wait_for


@pytest.fixture
def agent(tmp_path):
    cmd_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    cmd_sock.bind(("127.0.0.1", 0))
    cmd_sock.settimeout(3)
    port = free_port(socket.AF_INET, socket.SOCK_DGRAM)
    (tmp_path / "d.ini").write_text(f"""
[dmm]
cmd_address = ::ffff:127.0.0.1
port = {cmd_sock.getsockname()[1]}
[timers]
# the test plays the CMD and reads every datagram: no Heartbeats in between (test_agent_heartbeat.py)
heartbeat_interval = 0
[maar:maar1]
address = ::ffff:127.0.0.2
pool = 2001:db8:1::/48
""")
    control = str(tmp_path / "maar1.sock")
    with running_agent(tmp_path / "d.ini", "maar1", port, control, tmp_path / "agent.log") as proc:
        yield cmd_sock, control, proc, port


def _alive(control):
    try:
        return request(control, {"op": "state"}, timeout=0.2)["ok"]
    except OSError:
        return False


def test_attach_registers_and_confirms(agent):
    cmd_sock, control, _, _ = agent
    assert request(control, {"op": "attach", "mn": "mn1", "mac": "02:00:00:00:00:01", "port": 3})["ok"]
    data, addr = cmd_sock.recvfrom(4096)
    pbu = decode(data)
    assert isinstance(pbu, BindingUpdate) and pbu.mn_id == "mn1" and str(pbu.hnps[0]) == "2001:db8:1::/64"
    assert pbu.mn_ll_id == bytes.fromhex("020000000001") and pbu.p and pbu.a and pbu.d
    cmd_sock.sendto(encode(M.pba_for(pbu, 0, 3600)), addr)
    def confirmed():
        events = request(control, {"op": "events"})["events"]
        return [e for e in events if e["event"] == "advertise"]
    ra = wait_for(confirmed, 5) and confirmed()[0]
    assert ra["port"] == 3 and ra["prefixes"][0]["prefix"] == "2001:db8:1::/64" and ra["prefixes"][0]["preferred"] > 0
    state = request(control, {"op": "state"})
    assert state["bindings"]["mn1"]["local"] == ["2001:db8:1::/64"] and state["pool_in_use"] == 1


def test_retransmits_when_the_cmd_is_silent(agent):
    cmd_sock, control, _, _ = agent
    request(control, {"op": "attach", "mn": "mn2", "mac": "02:00:00:00:00:02", "port": 1})
    first = decode(cmd_sock.recvfrom(4096)[0])
    t0 = time.time()
    again = decode(cmd_sock.recvfrom(4096)[0])
    assert 0.8 < time.time() - t0 < 1.5
    assert again.sequence == first.sequence and again.timestamp > first.timestamp


def test_bad_control_requests_and_garbage_do_not_hurt(agent):
    cmd_sock, control, proc, port = agent
    assert request(control, {"op": "fly"})["ok"] is False
    assert request(control, {"op": "attach", "mn": "m", "mac": "zz", "port": 1})["ok"] is False
    assert request(control, {"nothing": 1})["ok"] is False
    me = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    me.sendto(b"not json", control)
    cmd_sock.sendto(b"garbage", ("127.0.0.2", port))
    assert wait_for(lambda: any(e["event"] == "decode-error" for e in request(control, {"op": "events"})["events"]), 5)
    assert _alive(control) and proc.poll() is None


def test_bad_config_is_refused(tmp_path):
    (tmp_path / "d.ini").write_text("[dmm]\ncmd_address = ::1\n[maar:maar1]\naddress = ::2\n")
    out = subprocess.run([str(BIN / "ryu-dmm-maar"), "--config", str(tmp_path / "d.ini"), "--name", "maar1",
                          "--state-dir", str(tmp_path)], env=clean_env(), capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "[maar:maar1] pool: missing" in out.stderr
    out = subprocess.run([str(BIN / "ryu-dmm-maar"), "--config", str(tmp_path / "d.ini"), "--name", "nope",
                          "--state-dir", str(tmp_path)],
                         env=clean_env(), capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
