"""The agent process under bad input (issue 8): every malformed control request, undecodable or
unwelcome datagram and unencodable answer costs one counter and at most one rate-limited event line;
the agent keeps serving. Expected statuses are RFC 5213's (docs: /work/shared/spec/FACTS.md)."""
import json
import socket
import subprocess
import time

import pytest

from ryu_dmm.agent.main import request
from ryu_dmm.mobility import messages as M
from ryu_dmm.wire import (
    AccessTechnologyTypeOption, BindingAck, BindingUpdate, HandoffIndicatorOption, HomeNetworkPrefix,
    MobileNodeIdentifier, Prefix, ServingMaar, Timestamp, UnknownOption, decode, encode,
)
from tests.procs import BIN, clean_env, free_port, running_agent, wait_for

CMD, MAAR1, MAAR2, STRANGER = "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"
LINE_BURST = 10  # docs/limits-agent.md: at most 10 lines of one kind per 10 s


@pytest.fixture
def agent(tmp_path):
    cmd_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    cmd_sock.bind((CMD, 0))
    cmd_sock.settimeout(3)
    port = free_port(socket.AF_INET, socket.SOCK_DGRAM)
    (tmp_path / "d.ini").write_text(f"""
[dmm]
cmd_address = ::ffff:{CMD}
port = {cmd_sock.getsockname()[1]}
[timers]
# the test plays the CMD and reads every datagram: no Heartbeats in between (test_agent_heartbeat.py)
heartbeat_interval = 0
[maar:maar1]
address = ::ffff:{MAAR1}
pool = 2001:db8:1::/48
[maar:maar2]
address = ::ffff:{MAAR2}
pool = 2001:db8:2::/48
""")
    control, log = str(tmp_path / "maar1.sock"), tmp_path / "agent.log"
    try:
        with running_agent(tmp_path / "d.ini", "maar1", port, control, log) as proc:
            yield cmd_sock, control, proc, port, log
    finally:
        cmd_sock.close()



def _counters(control):
    return request(control, {"op": "state"})["counters"]


def _events(control, kind):
    return [e for e in request(control, {"op": "events"})["events"] if e["event"] == kind]


def _raw(control, data: bytes, tmp_path, timeout=2.0):
    """Send raw bytes to the control socket; the agent's reply, decoded."""
    path = str(tmp_path / f"raw.{time.monotonic_ns()}")
    me = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    me.bind(path)
    with me:
        me.settimeout(timeout)
        me.sendto(data, control)
        return json.loads(me.recv(1 << 20))


def _attach_confirmed(cmd_sock, control, mn, mac):
    assert request(control, {"op": "attach", "mn": mn, "mac": mac, "port": 1})["ok"]
    data, addr = cmd_sock.recvfrom(4096)
    pbu = decode(data)
    cmd_sock.sendto(encode(M.pba_for(pbu, 0, 3600)), addr)
    assert wait_for(lambda: mn in request(control, {"op": "state"})["bindings"]
                    and request(control, {"op": "state"})["bindings"][mn]["local"], 5)
    return pbu, addr


BAD_CONTROL = [
    b"not json", b"\xff\xfe\x00", b"[" * 50_000,  # nested deeper than the JSON parser recurses
    b"[1, 2]", b"5", b'"attach"', b"null",  # JSON, but not an object
    {"op": "attach", "mac": "zz"}, {"op": "attach", "mn": "m", "mac": "zz", "port": 1},
    {"op": "attach", "mn": "m", "mac": 5, "port": 1}, {"op": "attach", "mn": "m", "mac": None, "port": 1},
    {"op": "attach", "mn": "m", "mac": "02:00:00:00:00:01", "port": "1"},
    {"op": "attach", "mn": "m", "mac": "02:00:00:00:00:01", "port": True},
    {"op": "attach", "mn": "m", "mac": "02:00:00:00:00:01", "port": -1},
    {"op": "attach", "mn": "m", "mac": "02:00:00:00:00:01", "port": 2 ** 32},  # OpenFlow ports are 32 bits
    {"op": "attach", "mn": "", "mac": "02:00:00:00:00:01", "port": 1},
    {"op": "attach", "mn": "x" * 255, "mac": "02:00:00:00:00:01", "port": 1},  # MN-ID holds 254 bytes
    {"op": "attach", "mn": "\ud800", "mac": "02:00:00:00:00:01", "port": 1},  # not UTF-8
    {"op": "attach", "mn": ["m"], "mac": "02:00:00:00:00:01", "port": 1},
    {"op": "detach"}, {"op": "detach", "mn": 3},
    {"op": 5}, {"op": "fly"}, {"nothing": 1}, {},
    {"op": "events", "since": -1}, {"op": "events", "since": "0"}, {"op": "state", "mn": 7},
]


def test_malformed_control_requests_cost_one_counter_each(agent, tmp_path):
    cmd_sock, control, proc, _, _ = agent
    for req in BAD_CONTROL:
        data = req if isinstance(req, bytes) else json.dumps(req).encode()
        reply = _raw(control, data, tmp_path)
        assert reply["ok"] is False and reply["error"].startswith("bad request"), req
    unanswerable = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # no address to answer to
    with unanswerable:
        unanswerable.sendto(b"{", control)
    assert wait_for(lambda: _counters(control)["bad_control"] == len(BAD_CONTROL) + 1, 5)
    counters = _counters(control)
    assert counters["internal_errors"] == 0 and counters["refused_attaches"] == 0
    # one line each for the first LINE_BURST, the rest only counted
    assert len(_events(control, "bad-control")) == LINE_BURST
    assert counters["suppressed_lines"] == len(BAD_CONTROL) + 1 - LINE_BURST
    assert request(control, {"op": "state"})["pool_in_use"] == 0  # no refused attach took a prefix
    # at the bounds: a 254-byte MN identifier and port 2**32 - 1 are fine
    mn = "m" * 250 + "@dmm"
    assert request(control, {"op": "attach", "mn": mn, "mac": "02:00:00:00:00:09", "port": 2 ** 32 - 1})["ok"]
    pbu = decode(cmd_sock.recvfrom(4096)[0])
    assert pbu.mn_id == mn and len(pbu.find(MobileNodeIdentifier).identifier) == 254
    assert proc.poll() is None


def _pbu(mn, hnps, serving=None, unknown=()):
    opts = [MobileNodeIdentifier.nai(mn), *[HomeNetworkPrefix(p) for p in hnps], HandoffIndicatorOption(3),
            AccessTechnologyTypeOption(3), *unknown, Timestamp.from_seconds(time.time())]
    if serving:
        opts.append(ServingMaar(serving))
    return BindingUpdate(7, 3600, tuple(opts))


def test_bad_signalling_is_answered_per_rfc_5213_or_ignored(agent):
    cmd_sock, control, proc, port, _ = agent
    agent_addr = (MAAR1, port)
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind((STRANGER, port))  # the agent answers a non-CMD peer on its own port number
    stranger.settimeout(2)
    with stranger:
        cmd_sock.sendto(b"garbage", agent_addr)
        cmd_sock.sendto(bytes(8), agent_addr)  # a Mobility Header with payload proto 0 and length 8
        assert wait_for(lambda: _counters(control)["decode_errors"] == 2, 5)
        pbu1, _ = _attach_confirmed(cmd_sock, control, "mn1", "02:00:00:00:00:01")
        # a PBU from a node that is not the CMD: 154 MAG_NOT_AUTHORIZED_FOR_PROXY_REG, lifetime 0
        stranger.sendto(encode(_pbu("mn1", pbu1.hnps)), agent_addr)
        pba = decode(stranger.recv(4096))
        assert isinstance(pba, BindingAck) and (pba.status, pba.lifetime, pba.sequence) == (154, 0, 7)
        # from the CMD, no Home Network Prefix option: 158 MISSING_HOME_NETWORK_PREFIX_OPTION
        cmd_sock.sendto(encode(_pbu("mn1", ())), agent_addr)
        assert decode(cmd_sock.recv(4096)).status == 158
        # from the CMD, garbage (unknown) options, a prefix this MAAR never gave the MN:
        # 155 NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX
        junk = (UnknownOption(200, b"\xff" * 30), UnknownOption(201, b""))
        cmd_sock.sendto(encode(_pbu("mn1", (Prefix.parse("2001:db8:9::/64"),), unknown=junk)), agent_addr)
        assert decode(cmd_sock.recv(4096)).status == 155
        # PBAs that answer nothing: an unknown sequence number from the CMD, or from a stranger: ignored
        cmd_sock.sendto(encode(BindingAck(0, 4242, 3600, pbu1.options)), agent_addr)
        stranger.sendto(encode(M.pba_for(pbu1, 0, 3600)), agent_addr)
        time.sleep(0.3)
        state = request(control, {"op": "state"})
        assert state["bindings"]["mn1"]["local"] == [str(pbu1.hnps[0])]
        assert state["counters"]["internal_errors"] == 0 and state["counters"]["decode_errors"] == 2
    assert proc.poll() is None


def test_a_pbu_stuffed_to_the_size_limit_gets_a_bounded_answer(agent):
    """A PBU from the CMD (with Serving MAAR) that fits in 2048 bytes only by repeating its HNP: the
    PBA echoes the first option of each echoed type (issue 8: answers bounded by construction), so
    it encodes with our DLIF options (RFC 8885 §3.7) added, and nothing is lost or counted as an
    internal error."""
    cmd_sock, control, proc, port, log = agent
    pbu1, _ = _attach_confirmed(cmd_sock, control, "mn1", "02:00:00:00:00:01")
    def fits(n):
        try:
            return len(encode(_pbu("mn1", pbu1.hnps * n, f"::ffff:{MAAR2}"))) <= 2048
        except ValueError:  # over 2048 bytes
            return False
    n = 1
    while fits(n + 1):
        n += 1
    big = encode(_pbu("mn1", pbu1.hnps * n, f"::ffff:{MAAR2}"))
    assert len(big) + 28 > 2048  # echoing it whole plus DLIF link-local (2 + 16) and link-layer (2 + 2 + 6)
    cmd_sock.sendto(big, (MAAR1, port))
    pba = decode(cmd_sock.recvfrom(4096)[0])
    assert pba.status == 0 and pba.hnps == pbu1.hnps[:1] and pba.mn_id == "mn1"
    assert any(e["kind"] == "moved" for e in _events(control, "report"))
    assert _counters(control)["internal_errors"] == 0
    assert proc.poll() is None and "Traceback" not in log.read_text()


def test_rate_limit_flags_are_checked(tmp_path):
    (tmp_path / "d.ini").write_text("[dmm]\ncmd_address = ::1\n[maar:maar1]\naddress = ::2\npool = 2001:db8::/48\n")
    for flag, value in (("--new-mn-limit", "0"), ("--mac-limit", "-1"), ("--new-mn-window", "0"),
                        ("--mac-window", "nan"), ("--mac-limit", "x")):
        out = subprocess.run([str(BIN / "ryu-dmm-maar"), "--config", str(tmp_path / "d.ini"), "--name", "maar1",
                              "--state-dir", str(tmp_path), flag, value], env=clean_env(), capture_output=True,
                             text=True, timeout=30)
        assert out.returncode == 2 and flag in out.stderr, (flag, value, out.stderr)
