"""Every bound of docs/limits-agent.md at its documented default, on an agent run in this process
(its sockets on loopback; the access link replaced by a list of frames)."""
import json
import socket
import threading

import pytest
from scapy.layers.inet6 import ICMPv6ND_RS, IPv6
from scapy.layers.l2 import Ether

from ryu_dmm.agent import guard
from ryu_dmm.agent.main import Agent, mn_id_of, request
from ryu_dmm.mobility import messages as M
from ryu_dmm.mobility.events import Received
from ryu_dmm.wire import decode
from tests.procs import free_port

# The documented defaults (docs/limits-agent.md), written out: changing one means changing the doc.
NEW_MN_LIMIT, NEW_MN_WINDOW, MAC_LIMIT, MAC_WINDOW, MAX_MACS, MAX_PORTS = 64, 60.0, 3, 1.0, 4096, 1024
MAX_EVENTS, REPLY_BUDGET, MN_LL_MAX = 10_000, 60_000, 4096


def test_default_attach_limits_at_their_bounds():
    lim = guard.AttachLimiter()
    macs = [i.to_bytes(6, "big") for i in range(1, NEW_MN_LIMIT + 2)]
    assert [lim.check(m, 7, True, 0.0) for m in macs] == [None] * NEW_MN_LIMIT + ["refused_new_mn_rate"]
    assert lim.check(macs[-1], 7, True, NEW_MN_WINDOW - 0.001) == "refused_new_mn_rate"
    assert lim.check(macs[-1], 7, True, NEW_MN_WINDOW) is None
    lim = guard.AttachLimiter()
    assert [lim.check(b"\x02" * 6, 7, False, 0.0) for _ in range(MAC_LIMIT + 1)] == [None] * MAC_LIMIT + [
        "refused_mac_rate"]
    assert lim.check(b"\x02" * 6, 7, False, MAC_WINDOW) is None


def test_default_limiter_tables_at_their_bounds():
    lim = guard.AttachLimiter()
    for i in range(MAX_MACS):
        assert lim.check(i.to_bytes(6, "big"), 1, False, 0.0) is None
    assert len(lim.macs) == MAX_MACS
    assert lim.check(MAX_MACS.to_bytes(6, "big"), 1, False, 0.5) == "refused_limiter_full"
    assert lim.check(MAX_MACS.to_bytes(6, "big"), 1, False, MAC_WINDOW) is None and len(lim.macs) == 1
    lim = guard.AttachLimiter()
    for port in range(MAX_PORTS):
        assert lim.check(port.to_bytes(6, "big"), port, True, 0.0) is None
    assert len(lim.ports) == MAX_PORTS
    assert lim.check(b"\x02" * 6, MAX_PORTS, True, 1.0) == "refused_limiter_full"
    assert lim.check(b"\x02" * 6, MAX_PORTS, True, NEW_MN_WINDOW) is None


class FakeAccess:
    def __init__(self):
        self.frames, self.sent = [], []

    def recvfrom(self, _size):
        """As an AF_PACKET socket: the frame, and (interface, protocol, packet type, ...): incoming."""
        return self.frames.pop(0), ("g1", 0x86DD, socket.PACKET_HOST, 1, b"")

    def send(self, frame):
        self.sent.append(frame)

    def close(self):
        pass


@pytest.fixture
def local_agent(tmp_path):
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the "CMD": takes the PBUs, answers none
    sink.bind(("127.0.0.1", 0))
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    (tmp_path / "d.ini").write_text(f"[dmm]\ncmd_address = ::ffff:127.0.0.1\nport = {sink.getsockname()[1]}\n"
                                    "[maar:maar1]\naddress = ::ffff:127.0.0.2\npool = 2001:db8:1::/48\n"
                                    # the RS cache's bound is tested here, not the unanswered PBUs' one
                                    "[timers]\nmax_outstanding = 8192\n")
    control = str(tmp_path / "c.sock")
    a = Agent(str(tmp_path / "d.ini"), "maar1", free_port(socket.AF_INET, socket.SOCK_DGRAM), control,
              sink.getsockname()[1], limiter=guard.AttachLimiter(new_limit=10 ** 6, mac_limit=10 ** 6, max_macs=10 ** 6))
    a.access = FakeAccess()
    try:
        yield a, sink, control
    finally:
        a.close()
        sink.close()


def _ask(agent, control, req):
    """A real control request, served by one turn of the agent's loop in this thread."""
    got = []
    t = threading.Thread(target=lambda: got.append(request(control, req, timeout=5)))
    t.start()
    while t.is_alive():
        agent.loop.run_once(0.1)
    t.join()
    return got[0]


def test_events_kept_and_replies_bounded(local_agent, capsys):
    agent, _, control = local_agent
    for i in range(MAX_EVENTS + 5):
        agent._record({"event": "x", "i": i, "pad": "p" * 40}, 0.0)
    capsys.readouterr()
    assert len(agent.events) == MAX_EVENTS
    first = _ask(agent, control, {"op": "events"})
    assert first["dropped"] == 5 and first["events"][0]["i"] == 5 and first["more"]
    assert len(json.dumps(first)) <= REPLY_BUDGET + 200
    seen, since = [], 0
    while True:
        got = _ask(agent, control, {"op": "events", "since": since})
        seen += [e["i"] for e in got["events"]]
        since = got["next"]
        if not got["more"]:
            break
    assert seen == list(range(5, MAX_EVENTS + 5)) and since == MAX_EVENTS + 5
    agent._record({"event": "x", "i": "new"}, 0.0)  # a poller at the end sees what comes next
    got = _ask(agent, control, {"op": "events", "since": since})
    assert [e["i"] for e in got["events"]] == ["new"] and got["next"] == MAX_EVENTS + 6 and got["dropped"] == 0
    assert _ask(agent, control, {"op": "events", "since": 10 ** 9})["next"] == MAX_EVENTS + 6


def test_rs_cache_bounded_and_state_reply_bounded(local_agent, capsys):
    agent, sink, control = local_agent
    rs = bytes(Ether(src="02:00:00:00:00:00", dst="33:33:00:00:00:02") / IPv6(src="fe80::1", dst="ff02::2")
               / ICMPv6ND_RS())  # no options: the checksum does not cover the Ethernet source we vary
    macs = [(0x020000000000 + i).to_bytes(6, "big") for i in range(1, MN_LL_MAX + 2)]
    pbus = []
    for i, mac in enumerate(macs):
        agent.access.frames.append(rs[:6] + mac + rs[12:])
        agent._on_access()
        if i < 2:
            pbus.append(decode(sink.recv(4096)))
    capsys.readouterr()
    assert len(agent.core.bindings) == MN_LL_MAX + 1
    assert len(agent._mn_ll) == MN_LL_MAX  # the oldest MN's link-local is forgotten ...
    assert mn_id_of(macs[0]) not in agent._mn_ll and agent._mn_ll[mn_id_of(macs[-1])] == (macs[-1], "fe80::1")
    second = mn_id_of(macs[1])
    assert second in agent._mn_ll
    state = _ask(agent, control, {"op": "state"})
    assert state["bindings_total"] == MN_LL_MAX + 1 and 0 < len(state["bindings"]) < MN_LL_MAX + 1
    assert len(json.dumps(state["bindings"])) <= REPLY_BUDGET
    assert state["limits"]["known_mn_ll"] == MN_LL_MAX and state["pool_in_use"] == MN_LL_MAX + 1
    one = _ask(agent, control, {"op": "state", "mn": mn_id_of(macs[-1])})
    assert list(one["bindings"]) == [mn_id_of(macs[-1])]
    # the CMD refuses the second MN's registration: the agent forgets what it learnt from its RS
    assert pbus[1].mn_id == second
    agent._handle(Received(agent.core.cmd, M.pba_for(pbus[1], 130, 0)))
    capsys.readouterr()
    assert second not in agent.core.bindings and second not in agent._mn_ll
