"""``flow_control = maar`` on real Open vSwitch: the MAAR agent is its switch's controller.

A private OVS bridge connects to the agent (no CMD process: the test plays the CMD on UDP). The
MN's RS, injected on access port 10, reaches the agent as a packet-in and attaches the MN on that
port; the PBA makes the agent install the local route, the CMD's PBU with a Serving MAAR option
the tunnel (RFC 8885 §3.2); a reconnection and a vswitchd restart are reconciled.
"""
import re
import socket
import time

import pytest
from scapy.layers.inet6 import ICMPv6ND_RS, IPv6
from scapy.layers.l2 import Ether

from ryu_dmm.agent.main import request
from ryu_dmm.mobility import messages as M
from ryu_dmm.wire import BindingAck, BindingUpdate, decode, encode
from tests.conftest import need
from tests.test_maar_flow_control import BASE, config
from tests.ovs import Ovs, available
from tests.procs import free_port, running_agent, wait_for

pytestmark = pytest.mark.root
MN_MAC = "02:00:00:00:0a:01"


@pytest.fixture
def switch_and_agent(tmp_path):
    need(available(), "needs root and Open vSwitch")
    cmd = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    cmd.bind(("127.0.0.1", 0))
    cmd.settimeout(3)
    (tmp_path / "d.ini").write_text(config(cmd.getsockname()[1]))  # access ports 10 and 11
    ovs = Ovs(tmp_path / "ovs")
    (tmp_path / "ovs").mkdir()
    port, of = free_port(socket.AF_INET, socket.SOCK_DGRAM), free_port()
    control = str(tmp_path / "maar1.sock")
    try:
        ovs.start()
        with running_agent(tmp_path / "d.ini", "maar1", port, control, tmp_path / "agent.log",
                           "--openflow-listen", f"127.0.0.1:{of}"):
            ovs.bridge("brm1", 1, of, {"m1core": 1, "m1tun": 2, "m1agt": 3, "m1acc": 10})
            yield ovs, cmd, control
    finally:
        ovs.stop()


def test_agent_programs_real_ovs_and_reconciles(switch_and_agent):
    ovs, cmd, control = switch_and_agent
    flows = lambda: ovs.flows("brm1")  # noqa: E731
    assert wait_for(lambda: len(flows()) == BASE, 15), flows()
    rs = Ether(src=MN_MAC, dst="33:33:00:00:00:02") / IPv6(src="fe80::a01", dst="ff02::2") / ICMPv6ND_RS()
    ovs.ofctl("packet-out", f"unix:{ovs.dir}/brm1.mgmt", f"in_port=10 packet={bytes(rs).hex()} actions=table")
    data, addr = cmd.recvfrom(4096)  # the packet-in attached the MN: our PBU
    pbu = decode(data)
    assert isinstance(pbu, BindingUpdate) and str(pbu.hnps[0]) == "2001:db8:1::/64"
    assert len(flows()) == BASE  # nothing for the MN before the CMD accepts
    cmd.sendto(encode(M.pba_for(pbu, 0, 3600)), addr)
    assert wait_for(lambda: len(flows()) == BASE + 2, 10), flows()
    local = [f for f in flows() if "2001:db8:1::/64" in f]
    assert any("output:10" in f and MN_MAC in f for f in local)  # downlink to the MN's port, from its packet-in
    assert any("in_port=10" in f and "output:1" in f for f in local)  # uplink routed natively
    # the MN is at maar2 now: the CMD's PBU with Serving MAAR; the PBA comes once the tunnel is confirmed
    cmd.sendto(encode(M.pbu(9, time.time(), pbu.mn_id, pbu.hnps[0], 3600, 3, 3, serving="::ffff:127.0.0.3")), addr)
    pba = decode(cmd.recvfrom(4096)[0])
    assert isinstance(pba, BindingAck) and pba.status == 0
    moved = flows()
    assert len(moved) == BASE + 2 and not any("output:10" in f for f in moved if "2001:db8:1::/64" in f)
    assert any(re.search(r"set_field:::ffff:127\.0\.0\.3->tun_ipv6_dst", f) for f in moved)
    # a stale flow, a missing base flow and a reconnection: the agent's reconciliation repairs both
    mgmt = f"unix:{ovs.dir}/brm1.mgmt"
    ovs.ofctl("add-flow", mgmt, "table=2,priority=5,cookie=0x99,ipv6,ipv6_dst=2001:db8:77::/64,actions=drop")
    ovs.ofctl("--strict", "del-flows", mgmt, "table=0,priority=50,in_port=10,ipv6")
    ovs.run("ovs-appctl", "-t", f"{ovs.dir}/ovs-vswitchd.ctl", "bridge/reconnect", "brm1")
    assert wait_for(lambda: flows() == moved, 15), (flows(), moved)
    ovs.restart_vswitchd()  # every flow lost: the reconnection brings them back
    assert wait_for(lambda: flows() == moved, 20), flows()
    state = request(control, {"op": "state"})["switch"]
    assert state["connected"] and state["connections"] >= 3 and state["packet_ins"] >= 1
