"""`ryu-manager ryu_dmm.cmd` as a real process: PMIPv6 over UDP, REST, bad input, bad config."""
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from ryu_dmm.mobility import messages as M
from ryu_dmm.wire import BindingAck, Prefix, Status, decode, encode
from tests.procs import MANAGER, clean_env, free_port, running_cmd

MAAR1, MAAR2 = "127.0.0.2", "127.0.0.3"  # IPv4 peers show as ::ffff:127.0.0.x on the dual-stack socket


def config(udp: int, rest: int, mode: str = "proxy") -> str:
    return f"""
[DEFAULT]
wsapi_host = 127.0.0.1
wsapi_port = {rest}

[dmm]
cmd_address = ::1
mode = {mode}
listen = ::
port = {udp}

[maar:maar1]
address = ::ffff:{MAAR1}
pool = 2001:db8:1::/48

[maar:maar2]
address = ::ffff:{MAAR2}
pool = 2001:db8:2::/48
"""


@pytest.fixture(scope="module")
def cmd(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cmd")
    udp, rest, of = free_port(socket.AF_INET, socket.SOCK_DGRAM), free_port(), free_port()
    (tmp / "domain.ini").write_text(config(udp, rest))
    log = tmp / "cmd.log"
    with running_cmd(tmp / "domain.ini", of, rest, log) as proc:
        yield {"udp": udp, "rest": rest, "log": log, "proc": proc}


def peer(address: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((address, 0))
    s.settimeout(3)
    return s


def get(cmd, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{cmd['rest']}{path}", timeout=3) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def exchange(sock, cmd, msg):
    sock.sendto(encode(msg), ("127.0.0.1", cmd["udp"]))
    data, _ = sock.recvfrom(4096)
    return decode(data)


def test_registration_handover_and_rest(cmd):
    m1, m2 = peer(MAAR1), peer(MAAR2)
    p1, p2 = Prefix.parse("2001:db8:1::/64"), Prefix.parse("2001:db8:2::/64")
    pba = exchange(m1, cmd, M.pbu(1, time.time(), "mn-a", p1, 3600, 1, 3, bytes(6)))
    assert isinstance(pba, BindingAck) and pba.status == 0 and pba.lifetime == 3600 and pba.hnps == (p1,)
    # handover to maar2 (proxy): PBA with Previous MAAR to maar2, PBU with Serving MAAR to maar1
    pba2 = exchange(m2, cmd, M.pbu(1, time.time(), "mn-a", p2, 3600, 3, 3))
    assert [(p.maar, p.prefix) for p in pba2.previous_maars] == [(f"::ffff:{MAAR1}", p1)]
    m1.settimeout(3)
    data, _ = m1.recvfrom(4096)  # to the port maar1 last signalled from
    to_pmaar = decode(data)
    assert to_pmaar.serving_maar == f"::ffff:{MAAR2}" and to_pmaar.hnps == (p1,)
    status, body = get(cmd, "/dmm/v1/sessions/mn-a")
    assert status == 200 and body["serving_maar"]["name"] == "maar2"
    # traffic: None, no switch is configured whose tunnel counters could be polled
    assert body["previous_maars"] == [{"name": "maar1", "address": f"::ffff:{MAAR1}", "prefix": str(p1),
                                       "traffic": None}]
    status, body = get(cmd, "/dmm/v1/sessions?maar=maar1")
    assert status == 200 and [s["mn_id"] for s in body["sessions"]] == ["mn-a"]
    status, body = get(cmd, "/dmm/v1/maars")
    assert [m["name"] for m in body["maars"]] == ["maar1", "maar2"] and body["maars"][0]["connected"] is False


def test_rest_errors_are_json(cmd):
    assert get(cmd, "/dmm/v1/sessions/nobody") == (404, {"error": "no mobility session for MN 'nobody'", "status": 404})
    status, body = get(cmd, "/dmm/v1/sessions?limit=-3")
    assert status == 400 and "limit" in body["error"]
    status, body = get(cmd, "/dmm/v1/sessions?maar=maar9")
    assert status == 400 and "maar9" in body["error"]
    status, body = get(cmd, "/dmm/v1/sessions?colour=blue")
    assert status == 400 and "colour" in body["error"]
    status, body = get(cmd, "/dmm/v1/maars/maar9")
    assert status == 404 and body["status"] == 404
    status, body = get(cmd, "/dmm/v1/nothing/here")
    assert status == 404 and "no such resource" in body["error"]
    req = urllib.request.Request(f"http://127.0.0.1:{cmd['rest']}/dmm/v1/sessions", data=b"{}", method="POST")
    try:
        urllib.request.urlopen(req, timeout=3)
        raise AssertionError("POST accepted")
    except urllib.error.HTTPError as e:
        assert e.code == 405 and json.loads(e.read())["status"] == 405


def test_garbage_and_unknown_peer_while_serving(cmd):
    m1 = peer(MAAR1)
    for junk in (b"", b"garbage", bytes(64), encode(M.pbu(1, time.time(), "x", Prefix.parse("2001:db8:1::/64"), 4, 1, 3))[:-8]):
        m1.sendto(junk, ("127.0.0.1", cmd["udp"]))
    stranger = peer("127.0.0.9")
    pba = exchange(stranger, cmd, M.pbu(7, time.time(), "mn-x", Prefix.parse("2001:db8:1:9::/64"), 40, 1, 3))
    assert pba.status == Status.MAG_NOT_AUTHORIZED_FOR_PROXY_REG and pba.sequence == 7
    # still serving
    pba = exchange(m1, cmd, M.pbu(9, time.time(), "mn-b", Prefix.parse("2001:db8:1:1::/64"), 40, 1, 3))
    assert pba.status == 0
    status, stats = get(cmd, "/dmm/v1/stats")
    assert sum(v for k, v in stats["messages"].items() if k.startswith("decode_error")) >= 4
    assert stats["messages"]["pba_sent.MAG_NOT_AUTHORIZED_FOR_PROXY_REG"] >= 1
    assert get(cmd, "/dmm/v1/sessions/mn-x")[0] == 404  # no state from the stranger
    assert cmd["proc"].poll() is None


def test_bad_config_stops_startup_naming_the_key(tmp_path):
    (tmp_path / "bad.ini").write_text(config(5436, 8080).replace("mode = proxy", "mode = proxy\nfoo = 1"))
    out = subprocess.run([*MANAGER, "--config-file", str(tmp_path / "bad.ini"),
                          "--ofp-tcp-listen-port", str(free_port()), "ryu_dmm.cmd"],
                         cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "[dmm] foo: unknown key" in out.stderr + out.stdout


def test_port_in_use_is_a_clear_error(tmp_path):
    busy = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    busy.bind(("::1", 0))
    port = busy.getsockname()[1]
    (tmp_path / "d.ini").write_text(f"[dmm]\ncmd_address = ::1\nlisten = ::1\nport = {port}\n")
    out = subprocess.run([*MANAGER, "--config-file", str(tmp_path / "d.ini"), "--wsapi-port",
                          str(free_port()), "--ofp-tcp-listen-port", str(free_port()), "ryu_dmm.cmd"],
                         cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60)
    busy.close()
    assert out.returncode != 0
    assert f"cannot open the PMIPv6 endpoint on [::1]:{port}" in out.stderr + out.stdout
