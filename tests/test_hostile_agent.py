"""Hostile input against a real MAAR agent (``ryu-dmm-maar``) over its real sockets (issue 8): the
control socket (JSON), and PMIPv6 on UDP from a fake CMD, from another MAAR and from a stranger.

Messages are built and read by hand (helpers of test_hostile_cmd, from FACTS.md's layouts); the
expected statuses are RFC 5213's as docs/mobility.md's status table assigns them to a MAAR. The RS
flood limits are tested in test_agent_flood.py and test_agent_bounds.py, not here.

What the RFCs say about a PBU from a node that is not the CMD: RFC 5213 §5.3.1 has the LMA answer a
PBU from a sender not authorised for proxy registration with status 154
(MAG_NOT_AUTHORIZED_FOR_PROXY_REG); RFC 8885 gives a MAAR that role towards the CMD's PBUs, and the
agent answers a stranger the same way (lifetime 0, sequence number echoed), changing nothing.
With IPsec (RFC 5213 §4) such a datagram would not get that far.
"""
import json
import socket
import time

import pytest

from ryu_dmm.agent.main import request
from tests.procs import free_port, running_agent, wait_for
from tests.test_hostile_cmd import (
    ACCEPTED, BA, BU, MISSING_ATT, NOT_AUTHORIZED_HNP, NOT_AUTHORIZED_MAG, O_ATT, O_DLIF_LL, O_DLIF_MAC, O_HI, O_HNP,
    O_MNID, O_MNLL, O_SMAAR, O_TS, PROHIBITED, TS_LOWER, TS_MISMATCH, att, ba, bu_fields, first, hi, hnp, mh, mnid,
    opt, pba, pbu, ts, v6,
)

CMD, MAAR1, MAAR2, STRANGER = "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"
NOT_A_MAAR = "127.0.0.99"
MAC = "02:00:00:00:00:01"
LINE_BURST = 10  # docs/limits-agent.md: at most 10 event lines of one kind per 10 s


@pytest.fixture
def agent(tmp_path, request):
    mode = getattr(request, "param", "proxy")
    cmd_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    cmd_sock.bind((CMD, 0))
    port = free_port(socket.AF_INET, socket.SOCK_DGRAM)
    (tmp_path / "d.ini").write_text(f"[dmm]\ncmd_address = ::ffff:{CMD}\nport = {cmd_sock.getsockname()[1]}\n"
                                    f"mode = {mode}\n[timers]\nheartbeat_interval = 0\n"  # we play the CMD
                                    f"[maar:maar1]\naddress = ::ffff:{MAAR1}\npool = 2001:db8:1::/48\n"
                                    f"[maar:maar2]\naddress = ::ffff:{MAAR2}\npool = 2001:db8:2::/48\n")
    control, log = str(tmp_path / "maar1.sock"), tmp_path / "agent.log"
    try:
        with running_agent(tmp_path / "d.ini", "maar1", port, control, log) as proc:
            yield {"cmd": cmd_sock, "control": control, "proc": proc, "addr": (MAAR1, port), "log": log,
                   "tmp": tmp_path}
    finally:
        cmd_sock.close()
    for line in log.read_text().splitlines():  # stdout is JSON lines, whatever came in
        json.loads(line)
    assert "Traceback" not in log.read_text()



def state(agent) -> dict:
    return request(agent["control"], {"op": "state"})


def events(agent, kind=None) -> list:
    out = request(agent["control"], {"op": "events"})["events"]
    return [e for e in out if kind is None or e["event"] == kind]


def recv(sock, timeout=3.0):
    sock.settimeout(timeout)
    try:
        return sock.recvfrom(65535)
    except socket.timeout:
        return None, None


def attached(agent, mn="mn1", confirm=True) -> dict:
    """Attach ``mn`` through the control socket; the agent's PBU (read by hand), answered if ``confirm``."""
    assert request(agent["control"], {"op": "attach", "mn": mn, "mac": MAC, "port": 1})["ok"]
    data, addr = recv(agent["cmd"])
    assert data is not None and data[2] == BU
    sent = bu_fields(data)
    sent["reply_to"] = addr
    if confirm:
        agent["cmd"].sendto(pba(sent["seq"], ACCEPTED, echo(sent), 3600), addr)
        assert wait_for(lambda: state(agent)["bindings"].get(mn, {}).get("local"), 3)
    return sent


def echo(bu: dict, drop=(), replace=None) -> bytes:
    """A PBA's echo of a PBU's options: MN-ID, HNP, HI, ATT, MN-LL-ID, Timestamp (FACTS.md)."""
    out = b""
    for kind, body in bu["options"]:
        if kind in (O_MNID, O_HNP, O_HI, O_ATT, O_MNLL, O_TS) and kind not in drop:
            out += opt(kind, (replace or {}).get(kind, body))
    return out


def test_malformed_control_json(agent):
    """Edge cases of JSON the existing robustness test does not send; each is answered
    {"ok": false, "error": "bad request: ..."} and counted once in bad_control."""
    me = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    me.bind(str(agent["tmp"] / "me.sock"))
    me.settimeout(3)

    def ask(data: bytes) -> dict:
        me.sendto(data, agent["control"])
        return json.loads(me.recv(1 << 20))

    state_pad = lambda n: b'{"op": "state", "pad": "' + b"x" * (n - 26) + b'"}'  # noqa: E731 - n bytes in all
    assert len(state_pad(65535)) == 65535
    bad = [
        b"", b" ", b"\x00", b'{"op": "state"', b'{"op": "state"}}', b"{'op': 'state'}",  # not JSON
        b'{"op": "events", "since": NaN}', b'{"op": "events", "since": Infinity}',  # JSON numbers? not integers
        b'{"op": "events", "since": 1e400}', b'{"op": "events", "since": 1.0}', b'{"op": "events", "since": -0.0}',
        b'{"op": "events", "since": 1' + b"0" * 5000 + b"}",  # beyond Python's 4300-digit int limit
        b'{"op": "attach", "mn": "m", "mac": "02:00:00:00:00:01", "port": 1.0}',
        b'{"op": "attach", "mn": "m", "mac": "02:00:00:00:00:01:02", "port": 1}',
        b'{"op": "attach", "mn": "m", "mac": "02-00-00-00-00-01", "port": 1}',
        b'{"op": "attach", "mn": "m", "mac": " : : : : : ", "port": 1}',
        b'{"op": "state", "mn": ""}', b'{"op": "detach", "mn": "' + b"x" * 255 + b'"}',
        b'{"op": "state", "mn": "\\udce9"}',  # a lone surrogate escape: not UTF-8
        b'{"op": "STATE"}', b'{"op": "state\\u0000"}', b'{"op": null}', b'{"Op": "state"}',
        state_pad(65536), state_pad(100_000),  # longer than the 65,535-byte buffer: cut, then not JSON
    ]
    before = state(agent)["counters"]
    for data in bad:
        reply = ask(data)
        assert reply["ok"] is False and reply["error"].startswith("bad request"), data[:80]
    # at the bounds: served
    assert ask(state_pad(65535))["ok"] is True
    huge = ask(b'{"op": "events", "since": 1' + b"0" * 4000 + b"}")  # a valid, enormous index: nothing after it
    assert huge["ok"] is True and huge["events"] == [] and huge["more"] is False and huge["dropped"] == 0
    me.close()
    after = state(agent)
    assert after["counters"]["bad_control"] - before["bad_control"] == len(bad)
    assert after["counters"]["internal_errors"] == 0 and after["bindings_total"] == 0
    assert len(events(agent, "bad-control")) == LINE_BURST  # the rest only counted
    assert after["counters"]["suppressed_lines"] == len(bad) - LINE_BURST


def test_pbas_that_answer_nothing_are_ignored(agent):
    """Only a PBA from the CMD with the PBU's sequence number and its MN-ID, HI, ATT and MN-LL-ID
    echoed answers it (RFC 5213 §6.9.1, FACTS.md); the rest change nothing and the PBU is sent
    again after INITIAL_BINDACK_TIMEOUT (1 s), same sequence number, fresh timestamp."""
    sent = attached(agent, confirm=False)
    t_sent = time.time()
    cmd, to = agent["cmd"], sent["reply_to"]
    seq = sent["seq"]
    prefix = v6(first(sent["options"], O_HNP)[2:])
    assert first(sent["options"], O_MNLL) == b"\x00\x00" + bytes.fromhex(MAC.replace(":", ""))
    wrong = [
        pba((seq + 1) & 0xFFFF, ACCEPTED, echo(sent), 3600),  # unknown sequence number
        pba(seq, ACCEPTED, echo(sent, replace={O_MNID: b"\x01mn2"}), 3600),  # another MN's ID
        pba(seq, ACCEPTED, echo(sent, replace={O_MNID: b"\x01mn1\x00"}), 3600),  # same text, one more byte
        pba(seq, ACCEPTED, echo(sent, drop=(O_MNID,)), 3600),  # no MN-ID at all
        pba(seq, ACCEPTED, echo(sent, replace={O_HI: b"\x00\x04"}), 3600),  # another HI
        pba(seq, ACCEPTED, echo(sent, replace={O_ATT: b"\x00\x05"}), 3600),  # another ATT
        pba(seq, ACCEPTED, echo(sent, drop=(O_MNLL,)), 3600),  # the MN-LL-ID not echoed
        pba(seq, ACCEPTED, echo(sent, replace={O_MNLL: b"\x00\x00\x02\x00\x00\x00\x00\x02"}), 3600),
    ]
    for data in wrong:
        cmd.sendto(data, to)
    others = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in (STRANGER, MAAR2)]
    for s, address in zip(others, (STRANGER, MAAR2)):  # right sequence and echo, wrong sender
        s.bind((address, 0))
        s.sendto(pba(seq, ACCEPTED, echo(sent), 3600), agent["addr"])
    data, _ = recv(cmd, 3.0)  # the next thing the CMD hears: the same PBU again
    resent = bu_fields(data)
    assert time.time() - t_sent >= 0.9
    assert resent["seq"] == seq and first(resent["options"], O_TS) != first(sent["options"], O_TS)
    st = state(agent)
    assert st["bindings"]["mn1"]["local"] == [] and not events(agent, "report")  # still not registered
    assert all(v == 0 for k, v in st["counters"].items()), st["counters"]  # ignored: no counter, no line
    for s in others:
        assert recv(s, 0.2)[0] is None  # and not answered
        s.close()
    cmd.sendto(pba(seq, ACCEPTED, echo(resent), 3600), to)
    assert wait_for(lambda: state(agent)["bindings"]["mn1"]["local"] == [prefix + "/64"], 3)
    assert [e["kind"] for e in events(agent, "report")] == ["registered"]


def test_a_pbu_from_a_node_that_is_not_the_cmd_gets_154_and_changes_nothing(agent):
    sent = attached(agent)
    prefix = first(sent["options"], O_HNP)
    before = state(agent)["bindings"]["mn1"]
    n_events = len(events(agent))
    for address in (STRANGER, MAAR2):  # MAAR2 is a MAAR of the domain, but not the CMD
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((address, agent["addr"][1]))  # the agent answers a non-CMD peer on its own port number
        for seq, lifetime, smaar in ((0xABCD, 3600, address), (0x0001, 0, None), (0xFFFF, 3600, None)):
            body = mnid("mn1") + opt(O_HNP, prefix) + hi(3) + att() + ts(time.time())
            if smaar:  # "the MN is now at <address>": would make us tunnel the MN's traffic there
                body += opt(O_SMAAR, socket.inet_pton(socket.AF_INET6, f"::ffff:{smaar}"))
            s.sendto(pbu(seq, body, lifetime), agent["addr"])
            data, _ = recv(s)
            answer = ba(data)
            assert (answer["status"], answer["seq"], answer["lifetime"]) == (NOT_AUTHORIZED_MAG, seq, 0)
        s.close()
    assert state(agent)["bindings"]["mn1"] == before
    assert len(events(agent)) == n_events  # no "moved", no data-plane change
    assert recv(agent["cmd"], 0.2)[0] is None  # and the CMD heard nothing about it


def test_cmd_pbus_a_maar_must_refuse(agent):
    sent = attached(agent)
    cmd, to = agent["cmd"], agent["addr"]
    prefix = first(sent["options"], O_HNP)
    maar2 = socket.inet_pton(socket.AF_INET6, f"::ffff:{MAAR2}")
    seq = iter(range(500, 600))

    def ask(body: bytes, lifetime=3600) -> dict:
        n = next(seq)
        cmd.sendto(pbu(n, body, lifetime), to)
        data, _ = recv(cmd)
        answer = ba(data)
        assert answer["seq"] == n
        return answer

    base = mnid("mn1") + opt(O_HNP, prefix) + hi(3) + att()
    # Serving MAAR not of the domain: 129 (Decision 21: we would tunnel the MN's traffic to any host)
    not_a_maar = socket.inet_pton(socket.AF_INET6, f"::ffff:{NOT_A_MAAR}")
    assert ask(base + ts(time.time()) + opt(O_SMAAR, not_a_maar))["status"] == PROHIBITED
    # timestamps outside the 300 ms window: 156
    assert ask(base + ts(time.time() + 1) + opt(O_SMAAR, maar2))["status"] == TS_MISMATCH
    assert ask(base + ts(time.time() - 1) + opt(O_SMAAR, maar2))["status"] == TS_MISMATCH
    # a mandatory option missing: 162 (no ATT)
    assert ask(mnid("mn1") + opt(O_HNP, prefix) + hi(3) + ts(time.time()))["status"] == MISSING_ATT
    # a prefix we never gave this MN (in our pool, but not its): 155
    other = bytes((0, 64)) + socket.inet_pton(socket.AF_INET6, "2001:db8:1:77::")
    assert ask(mnid("mn1") + opt(O_HNP, other) + hi(3) + att() + ts(time.time()) + opt(O_SMAAR, maar2))["status"] \
        == NOT_AUTHORIZED_HNP
    assert state(agent)["bindings"]["mn1"]["to_serving"] == []  # none of those moved the MN
    # the MN moved to maar2: accepted, with our DLIF options (RFC 8885 §3.7)
    t_move = time.time()
    answer = ask(base + ts(t_move) + opt(O_SMAAR, maar2))
    assert answer["status"] == ACCEPTED and [k for k, _ in answer["options"]][-2:] == [O_DLIF_LL, O_DLIF_MAC]
    assert state(agent)["bindings"]["mn1"]["to_serving"] == [[v6(prefix[2:]) + "/64", f"::ffff:{MAAR2}"]]
    # an older CMD PBU (inside the window, before the one applied) saying we serve again: 157
    assert ask(base + ts(t_move - 0.05) + opt(O_SMAAR, socket.inet_pton(socket.AF_INET6, f"::ffff:{MAAR1}"))
               )["status"] == TS_LOWER
    assert state(agent)["bindings"]["mn1"]["to_serving"] == [[v6(prefix[2:]) + "/64", f"::ffff:{MAAR2}"]]
    assert state(agent)["counters"]["internal_errors"] == 0


def test_undecodable_datagrams_are_counted_and_not_answered(agent):
    junk = [b"", b"garbage", mh(7, bytes(6)), mh(BU, bytes(6) + opt(O_HNP, bytes(17))),
            mh(BA, bytes(6) + bytes((O_MNID, 250)) + bytes(8)), mh(BU, bytes(6), proto=0)]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((STRANGER, 0))
    for data in junk:
        s.sendto(data, agent["addr"])
        agent["cmd"].sendto(data, agent["addr"])  # from the CMD's own address too
    assert wait_for(lambda: state(agent)["counters"]["decode_errors"] == 2 * len(junk), 3)
    assert recv(s, 0.2)[0] is None and recv(agent["cmd"], 0.01)[0] is None
    s.close()
    lines = events(agent, "decode-error")
    assert len(lines) == LINE_BURST and {e["src"] for e in lines} == {f"::ffff:{STRANGER}", f"::ffff:{CMD}"}
    assert state(agent)["counters"]["suppressed_lines"] == 2 * len(junk) - LINE_BURST


def test_an_mn_id_cannot_forge_an_event_line(agent):
    """Event lines are JSON: an MN-ID holding a newline and a JSON object stays inside its string."""
    evil = 'mn\n{"event": "forged", "maar": "maar1"}\r\u202e'
    sent = attached(agent, mn=evil)
    assert first(sent["options"], O_MNID) == b"\x01" + evil.encode()
    assert wait_for(lambda: any(e["mn"] == evil for e in events(agent, "report")), 3)
    lines = agent["log"].read_text().splitlines()
    assert not any(json.loads(line).get("event") == "forged" for line in lines)
    assert any(json.loads(line).get("mn") == evil for line in lines)


def _direct_pba_from_maar2(agent) -> None:
    """maar2 tells us, unasked, that it anchors 2001:db8:2:5::/64 (its own pool) for our MN mn1 and that
    we serve it: a locator-mode direct PBA (RFC 8885 §3.3), with a sequence number we never used."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((MAAR2, 0))
    body = mnid("mn1") + hnp("2001:db8:2:5::") + hi(3) + att() + opt(O_SMAAR, socket.inet_pton(
        socket.AF_INET6, f"::ffff:{MAAR1}"))
    s.sendto(pba(4321, ACCEPTED, body, 3600), agent["addr"])
    s.close()
    time.sleep(0.3)


@pytest.mark.parametrize("agent", ["locator"], indirect=True)
def test_in_locator_mode_an_unasked_direct_pba_is_refused_and_counted(agent):
    """Issue 11 item 2: served, nothing in flight, a prefix the CMD never listed: refused
    (tests/test_security_protocol.py has the cases where one is taken)."""
    attached(agent)
    _direct_pba_from_maar2(agent)
    got = state(agent)
    assert got["bindings"]["mn1"]["to_anchor"] == [] and got["protocol"]["direct_pba_refused"] == 1


@pytest.mark.parametrize("agent", ["proxy", "relay"], indirect=True)
def test_outside_locator_mode_a_direct_pba_is_ignored(agent):
    attached(agent)
    before = state(agent)["bindings"]["mn1"]
    n_advertised = len(events(agent, "advertise"))
    _direct_pba_from_maar2(agent)
    assert state(agent)["bindings"]["mn1"] == before  # to_anchor stays []
    assert len(events(agent, "advertise")) == n_advertised  # no RA offering maar2's prefix
