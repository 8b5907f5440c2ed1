"""The CMD mirrors mobility state into real Open vSwitch flow tables and reconciles on reconnection."""
import json
import re
import socket
import subprocess
import time
import urllib.request

import pytest
from scapy.layers.inet6 import ICMPv6ND_RS, IPv6
from scapy.layers.l2 import Ether

from ryu_dmm.mobility import messages as M
from ryu_dmm.pipeline import SwitchPorts, base_flows
from ryu_dmm.wire import Prefix, decode, encode
from tests.conftest import need
from tests.ovs import Ovs, available, cmd_domain
from tests.procs import MANAGER, clean_env, free_port, stop, tcp_open, wait_for

pytestmark = pytest.mark.root
MAARS = {"maar1": ("127.0.0.2", 1), "maar2": ("127.0.0.3", 2)}
MN_MAC = "02:00:00:00:0a:01"
BASE = len(base_flows(SwitchPorts(1, 2, 3, (10,))))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    need(available(), "needs root and Open vSwitch")
    tmp = tmp_path_factory.mktemp("ovs")
    ovs = Ovs(tmp / "ovs")
    (tmp / "ovs").mkdir()
    udp, rest, of = free_port(socket.AF_INET, socket.SOCK_DGRAM), free_port(), free_port()
    (tmp / "d.ini").write_text(cmd_domain(MAARS, rest, udp))
    log = tmp / "cmd.log"
    proc = None
    try:
        ovs.start()
        with open(log, "w") as out:
            proc = subprocess.Popen([*MANAGER, "--config-file", str(tmp / "d.ini"),
                                     "--ofp-tcp-listen-port", str(of), "ryu_dmm.cmd"],
                                    cwd=tmp, env=clean_env(tmp / "dmm-state"), stdout=out, stderr=subprocess.STDOUT)
        assert wait_for(lambda: tcp_open(of) or proc.poll() is not None, 30), log.read_text()
        for name, (_, dpid) in MAARS.items():
            ovs.bridge(f"br{name}", dpid, of, {f"{name}core": 1, f"{name}tun": 2, f"{name}agt": 3, f"{name}acc": 10})
        yield {"ovs": ovs, "udp": udp, "rest": rest, "log": log, "proc": proc}
    finally:
        if proc is not None:
            assert stop(proc, timeout=15) == 0, log.read_text()
        ovs.stop()
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        assert "brmaar1" not in links and "maar1agt" not in links  # no tap device left behind


def flows(lab, name):
    return lab["ovs"].flows(f"br{name}")


def rest(lab, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{lab['rest']}{path}", timeout=5) as r:
        return json.loads(r.read())


def signal(lab, name, msg):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((MAARS[name][0], 0))
    s.settimeout(3)
    s.sendto(encode(msg), ("127.0.0.1", lab["udp"]))
    return decode(s.recv(4096))


def reconnect(ovs, bridge):
    """The controller connection drops and comes back; the switch keeps its flows."""
    ovs.run("ovs-appctl", "-t", f"{ovs.dir}/ovs-vswitchd.ctl", "bridge/reconnect", bridge)


def last_reconciliation(lab):
    """(removed, added) of the CMD's latest reconciliation, from its log."""
    return re.findall(r"reconciliations \S+: (\d+) removed, (\d+) added", lab["log"].read_text())[-1]


def router_solicitation(lab, name):
    rs = Ether(src=MN_MAC, dst="33:33:00:00:00:02") / IPv6(src="fe80::a01", dst="ff02::2") / ICMPv6ND_RS()
    lab["ovs"].ofctl("packet-out", f"unix:{lab['ovs'].dir}/br{name}.mgmt",
                     f"in_port=10 packet={bytes(rs).hex()} actions=table")


def test_base_flows_then_mobility_flows_then_reconciliation(lab):
    for name in MAARS:
        assert wait_for(lambda n=name: len(flows(lab, n)) == BASE, 15), (flows(lab, name), lab["log"].read_text())
    assert all(m["connected"] for m in rest(lab, "/dmm/v1/maars")["maars"])
    mac = bytes.fromhex(MN_MAC.replace(":", ""))
    p1, p2 = Prefix.parse("2001:db8:1::/64"), Prefix.parse("2001:db8:2::/64")
    assert signal(lab, "maar1", M.pbu(1, time.time(), "mn1", p1, 3600, 1, 3, mac)).status == 0
    router_solicitation(lab, "maar1")  # the switch reports the MN's port to the controller
    assert wait_for(lambda: len(flows(lab, "maar1")) == BASE + 2, 10), flows(lab, "maar1")
    local = [f for f in flows(lab, "maar1") if "2001:db8:1::/64" in f]
    assert any("output:10" in f and MN_MAC in f for f in local)  # downlink to the MN's port
    assert any("in_port=10" in f and "output:1" in f for f in local)  # uplink routed natively
    # handover to maar2: maar1 tunnels Pref1 to maar2; maar2 routes Pref2 and tunnels Pref1 back
    assert signal(lab, "maar2", M.pbu(1, time.time(), "mn1", p2, 3600, 3, 3, mac)).status == 0
    router_solicitation(lab, "maar2")
    assert wait_for(lambda: len(flows(lab, "maar2")) == BASE + 4, 10), flows(lab, "maar2")
    assert wait_for(lambda: any("tun_ipv6_dst" in f for f in flows(lab, "maar1")), 10), flows(lab, "maar1")
    m1 = flows(lab, "maar1")
    assert len(m1) == BASE + 2 and not any("output:10" in f for f in m1 if "2001:db8:1::/64" in f)
    assert any(re.search(r"set_field:::ffff:127\.0\.0\.3->tun_ipv6_dst", f) for f in m1)
    m2 = flows(lab, "maar2")
    assert any("ipv6_src=2001:db8:1::/64" in f and "::ffff:127.0.0.2->tun_ipv6_dst" in f for f in m2)
    # a stale flow appears, a wanted one disappears, the controller connection drops: reconciliation
    ovs, mgmt = lab["ovs"], f"unix:{lab['ovs'].dir}/brmaar1.mgmt"
    before = flows(lab, "maar1")
    ovs.ofctl("add-flow", mgmt, "table=2,priority=5,cookie=0x99,ipv6,ipv6_dst=2001:db8:77::/64,actions=drop")
    ovs.ofctl("--strict", "del-flows", mgmt, "table=0,priority=50,in_port=10,ipv6")  # a base flow
    assert len(flows(lab, "maar1")) == len(before)  # one flow more, one less
    done = rest(lab, "/dmm/v1/stats")["messages"]["reconciliations"]
    reconnect(ovs, "brmaar1")  # flows kept (del-controller would flush the table: measured on OVS 3.1)
    assert wait_for(lambda: rest(lab, "/dmm/v1/stats")["messages"]["reconciliations"] > done, 15)
    assert wait_for(lambda: flows(lab, "maar1") == before, 15), (flows(lab, "maar1"), before)
    assert last_reconciliation(lab) == ("1", "1")  # the stale flow removed, the missing one added
    # a real switch restart: every flow is lost, the reconnection brings them back
    m2 = flows(lab, "maar2")
    ovs.restart_vswitchd()
    assert wait_for(lambda: flows(lab, "maar1") == before and flows(lab, "maar2") == m2, 20), flows(lab, "maar2")
    view = rest(lab, "/dmm/v1/maars/maar1/flows")
    assert view["connected"] and view["wanted_count"] == view["installed_count"] == BASE + 2
    stats = rest(lab, "/dmm/v1/stats")["messages"]
    assert stats["reconciliations"] >= 5 and stats["mn_ports_learnt"] == 2
    # reconciling a converged switch changes nothing: what OVS reports (matches and actions) reads
    # back as exactly what the CMD rendered
    done = stats["reconciliations"]
    reconnect(ovs, "brmaar2")
    assert wait_for(lambda: rest(lab, "/dmm/v1/stats")["messages"]["reconciliations"] > done, 15)
    assert last_reconciliation(lab) == ("0", "0")
