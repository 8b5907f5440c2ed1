"""Issue 11 item 5: MN authorisation at the MAAR ([auth], agent/authz.py; docs/security.md).

Unit cases for the patterns and the configuration; then a real ``ryu-dmm-maar`` driven through its
control socket (attach triggers from the access link take the same path, ``Agent._attach``): an
unlisted MAC takes no prefix and causes no PBU, SIGHUP re-reads the allow file, and a flood of
changing MACs holds at most ``max_prefixes_per_port`` prefixes.
"""
import signal
import socket

import pytest

from ryu_dmm import domainconf
from ryu_dmm.agent import authz
from ryu_dmm.agent.main import request
from tests.procs import free_port, running_agent, wait_for

CMD, MAAR1 = "127.0.0.1", "127.0.0.2"
A = bytes.fromhex("020000000001")
B = bytes.fromhex("020000000002")


# ---- patterns --------------------------------------------------------------------------------------
def test_open_allows_everyone():
    assert authz.Policy().allows("anyone@x", B)


def test_allowlist_by_mac_nai_and_glob():
    p = authz.build("allowlist", ["02:00:00:00:00:01", "02:00:00:aa:*"], ["guest-?@dmm", "ops@example.org"])
    assert p.allows("x", A) and not p.allows("x", B)
    assert p.allows("x", bytes.fromhex("020000aa1234"))  # the glob, matched on lower-case text
    assert p.allows("ops@example.org", B) and p.allows("guest-7@dmm", B)
    assert not p.allows("guest-77@dmm", B) and not p.allows("OPS@example.org", B)  # NAIs: case-sensitive
    assert p.describe() == {"mode": "allowlist", "patterns": 4}


def test_allow_file_lines():
    macs, nais = authz.file_patterns("# staff\n02:00:00:00:00:01  # laptop\n\nMN-1@dmm\n", "f")
    assert macs == ["02:00:00:00:00:01"] and nais == ["MN-1@dmm"]
    with pytest.raises(authz.PolicyError, match=r"f line 2: 'zz:00' is not a MAC address"):
        authz.file_patterns("02:00:00:00:00:01\nzz:00\n", "f")


def test_allow_file_is_bounded():
    with pytest.raises(authz.PolicyError, match="more than 100000 patterns"):
        authz.file_patterns("02:00:00:00:00:01\n" * (authz.MAX_PATTERNS + 1), "f")
    assert len(authz.file_patterns("02:00:00:00:00:01\n" * authz.MAX_PATTERNS, "f")[0]) == authz.MAX_PATTERNS


# ---- [auth] in the domain file ---------------------------------------------------------------------
BASE = "[dmm]\ncmd_address = ::1\n[auth]\n"


def test_auth_defaults_to_open_without_a_cap():
    assert domainconf.parse("[dmm]\ncmd_address = ::1\n")[1].auth == domainconf.AuthSettings()


@pytest.mark.parametrize("text, message", [
    ("mode = closed\n", "[auth] mode: 'closed' is not one of open, allowlist"),
    ("mode = allowlist\n", "[auth] mode = allowlist: give allow_macs, allow_nais or allow_file"),
    ("allow_macs = 02:00:00:00:00:01\n", "only read with mode = allowlist"),
    ("mode = allowlist\nallow_macs = 02:00:00:00:00:01, nope!\n", "[auth] allow_macs: 'nope!' is not a MAC"),
    ("max_prefixes_per_port = 0\n", "[auth] max_prefixes_per_port: 0 is outside 1..4294967296"),
    ("max_prefixes_per_port = many\n", "[auth] max_prefixes_per_port: 'many' is not an integer"),
    ("users = all\n", "[auth] users: unknown key"),
])
def test_bad_auth_keys_are_refused_by_name(text, message):
    with pytest.raises(domainconf.ConfigError) as exc:
        domainconf.parse(BASE + text)
    assert message in str(exc.value)


# ---- a real agent ----------------------------------------------------------------------------------
@pytest.fixture
def start(tmp_path):
    """start(auth_text, *flags) -> agent dict; the fake CMD only listens (prefixes are taken at the
    attach trigger, before any answer)."""
    cmd = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    cmd.bind((CMD, 0))
    stack = []

    def run(auth: str, *extra: str) -> dict:
        (tmp_path / "d.ini").write_text(
            f"[dmm]\ncmd_address = ::ffff:{CMD}\nport = {cmd.getsockname()[1]}\n[timers]\nheartbeat_interval = 0\n"
            f"[auth]\n{auth}[maar:maar1]\naddress = ::ffff:{MAAR1}\npool = 2001:db8:1::/48\n")
        control = str(tmp_path / "maar1.sock")
        ctx = running_agent(tmp_path / "d.ini", "maar1", free_port(socket.AF_INET, socket.SOCK_DGRAM), control,
                            tmp_path / "agent.log", *extra)
        proc = ctx.__enter__()
        stack.append(ctx)
        return {"control": control, "proc": proc, "cmd": cmd, "tmp": tmp_path}
    yield run
    for ctx in stack:
        ctx.__exit__(None, None, None)
    cmd.close()


def attach(agent, mac: bytes, mn=None) -> dict:
    return request(agent["control"], {"op": "attach", "mn": mn or f"mn-{mac.hex()}@dmm", "mac": mac.hex(":"),
                                      "port": 1})


def state(agent) -> dict:
    return request(agent["control"], {"op": "state"})


def pbus(agent) -> int:
    agent["cmd"].settimeout(0.3)
    n = 0
    try:
        while agent["cmd"].recv(65535):
            n += 1
    except socket.timeout:
        return n


def test_an_unlisted_mac_gets_no_prefix_and_no_pbu(start):
    agent = start("mode = allowlist\nallow_macs = 02:00:00:00:00:01\n")
    assert attach(agent, B) == {"ok": False, "error": "attach refused: refused_unauthorized",
                                "refused": "refused_unauthorized"}
    got = state(agent)
    assert got["pool_in_use"] == 0 and got["bindings_total"] == 0 and pbus(agent) == 0
    assert got["counters"]["refused_unauthorized"] == 1 and got["counters"]["refused_attaches"] == 1
    assert got["auth"]["mode"] == "allowlist"
    refused = [e for e in request(agent["control"], {"op": "events"})["events"] if e["event"] == "attach-refused"]
    assert refused[0]["reason"] == "unauthorized" and refused[0]["mac"] == "02:00:00:00:00:02"
    assert attach(agent, A)["ok"] and state(agent)["pool_in_use"] == 1 and pbus(agent) == 1


def test_sighup_reloads_the_allow_file(start, tmp_path):
    listed = tmp_path / "allowed.txt"
    listed.write_text("02:00:00:00:00:01\n")
    agent = start(f"mode = allowlist\nallow_file = {listed.name}\n")
    assert attach(agent, A)["ok"] and not attach(agent, B)["ok"]
    listed.write_text("# A leaves, B comes\n02:00:00:00:00:02\n")
    agent["proc"].send_signal(signal.SIGHUP)
    assert wait_for(lambda: state(agent)["auth"]["reloads"] == 1, 5)
    assert state(agent)["auth"]["detached"] == 1  # A is no longer served as attached
    assert attach(agent, B)["ok"] and state(agent)["pool_in_use"] == 2  # A's prefix until its lifetime
    assert attach(agent, A)["refused"] == "refused_unauthorized"
    listed.write_text("zz:zz\n")  # a broken file keeps the policy in force
    agent["proc"].send_signal(signal.SIGHUP)
    assert wait_for(lambda: state(agent)["auth"]["reload_errors"] == 1, 5)
    assert state(agent)["auth"]["reloads"] == 1 and attach(agent, B)["ok"]
    lines = [e for e in request(agent["control"], {"op": "events"})["events"] if e["event"] == "auth-reload"]
    assert [e["ok"] for e in lines] == [True, False] and "line 1" in lines[1]["error"]


def test_a_mac_changing_flood_takes_at_most_the_port_cap(start):
    agent = start("max_prefixes_per_port = 5\n", "--new-mn-limit", "1000", "--mac-limit", "1000")
    answers = [attach(agent, bytes.fromhex(f"0200000100{i:02x}")) for i in range(40)]
    assert sum(a["ok"] for a in answers) == 5
    assert {a.get("refused") for a in answers[5:]} == {"refused_port_cap"}
    got = state(agent)
    assert got["pool_in_use"] == 5 and got["counters"]["refused_port_cap"] == 35
    assert request(agent["control"], {"op": "attach", "mn": "mn-020000020000@dmm", "mac": "02:00:00:02:00:00",
                                      "port": 2})["ok"]  # another port has its own cap
    assert attach(agent, bytes.fromhex("020000010000"))["ok"]  # a known MN again: no new prefix, not capped
    assert state(agent)["pool_in_use"] == 6


def test_a_bad_allow_file_stops_the_start(tmp_path):
    import subprocess
    from tests.procs import BIN, clean_env
    (tmp_path / "allowed.txt").write_text("02:00:00:00:00:01\nnot-a-mac!\n")
    (tmp_path / "d.ini").write_text(f"[dmm]\ncmd_address = ::ffff:{CMD}\n[auth]\nmode = allowlist\n"
                                    f"allow_file = allowed.txt\n[maar:maar1]\naddress = ::ffff:{MAAR1}\n"
                                    "pool = 2001:db8:1::/48\n")
    out = subprocess.run([str(BIN / "ryu-dmm-maar"), "--config", str(tmp_path / "d.ini"), "--name", "maar1",
                          "--control", str(tmp_path / "c.sock"), "--metrics-port", "0"], env=clean_env(tmp_path),
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert f"bad configuration: {tmp_path}/allowed.txt line 2: 'not-a-mac!' is not a MAC address" in out.stderr
