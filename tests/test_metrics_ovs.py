"""The CMD's switch metrics against real Open vSwitch bridges: connection state, reconciliations,
MN ports learnt, flow groups pushed and the barrier-confirmation histogram, each moved by exactly
what the test made the switches and MAARs do."""
import socket
import subprocess
import time

import pytest
from scapy.layers.inet6 import ICMPv6ND_RS, IPv6
from scapy.layers.l2 import Ether

from ryu_dmm.mobility import messages as M
from ryu_dmm.pipeline import SwitchPorts, base_flows
from ryu_dmm.wire import BindingUpdate, Prefix, decode, encode
from tests.conftest import need
from tests.ovs import Ovs, available, cmd_domain
from tests.procs import MANAGER, clean_env, free_port, stop, tcp_open, wait_for
from tests.test_metrics import delta, scrape

pytestmark = pytest.mark.root
MAARS = {"maar1": ("127.0.0.2", 1), "maar2": ("127.0.0.3", 2)}
MN_MAC = "02:00:00:00:0b:01"
BASE = len(base_flows(SwitchPorts(1, 2, 3, (10,))))


@pytest.fixture
def lab(tmp_path):
    need(available(), "needs root and Open vSwitch")
    ovs = Ovs(tmp_path / "ovs")
    (tmp_path / "ovs").mkdir()
    udp, rest, of, mx = free_port(socket.AF_INET, socket.SOCK_DGRAM), free_port(), free_port(), free_port()
    (tmp_path / "d.ini").write_text(cmd_domain(MAARS, rest, udp, f"metrics_port = {mx}"))
    log = tmp_path / "cmd.log"
    proc = None
    try:
        ovs.start()
        with open(log, "w") as out:
            proc = subprocess.Popen([*MANAGER, "--config-file", str(tmp_path / "d.ini"),
                                     "--ofp-tcp-listen-port", str(of), "ryu_dmm.cmd"],
                                    cwd=tmp_path, env=clean_env(), stdout=out, stderr=subprocess.STDOUT)
        assert wait_for(lambda: tcp_open(mx) or proc.poll() is not None, 30), log.read_text()
        for name, (_, dpid) in MAARS.items():
            ovs.bridge(f"br{name}", dpid, of, {f"{name}core": 1, f"{name}tun": 2, f"{name}agt": 3, f"{name}acc": 10})
        yield {"ovs": ovs, "udp": udp, "metrics": mx, "log": log, "of": of}
    finally:
        if proc is not None:
            assert stop(proc, timeout=15) == 0, log.read_text()
        ovs.stop()


def flows(lab, name):
    return lab["ovs"].flows(f"br{name}")


def router_solicitation(lab, name):
    rs = Ether(src=MN_MAC, dst="33:33:00:00:00:02") / IPv6(src="fe80::b01", dst="ff02::2") / ICMPv6ND_RS()
    lab["ovs"].ofctl("packet-out", f"unix:{lab['ovs'].dir}/br{name}.mgmt",
                     f"in_port=10 packet={bytes(rs).hex()} actions=table")


def test_switch_metrics_move_exactly(lab):
    for name in MAARS:
        assert wait_for(lambda n=name: len(flows(lab, n)) == BASE, 15), (flows(lab, name), lab["log"].read_text())
    c0 = scrape(lab["metrics"])
    for name in MAARS:  # each switch connected once and was reconciled once (its base flows added)
        assert c0.value("dmm_switch_connected", maar=name) == 1
        assert c0.value("dmm_reconciliations_total", maar=name) == 1
        assert c0.value("dmm_flow_groups_pushed_total", maar=name) == 0
    socks = {}
    for name, (ip, _) in MAARS.items():
        socks[name] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        socks[name].bind((ip, 0))
        socks[name].settimeout(5)

    def signal(name, msg):
        socks[name].sendto(encode(msg), ("127.0.0.1", lab["udp"]))
        return decode(socks[name].recv(4096))
    mac = bytes.fromhex(MN_MAC.replace(":", ""))
    p1, p2 = Prefix.parse("2001:db8:1::/64"), Prefix.parse("2001:db8:2::/64")
    # the MN's RS reaches maar1's switch first (its port is learnt), then maar1 registers it: one flow
    # group to maar1's switch, whose barrier confirms it and releases the PBA
    router_solicitation(lab, "maar1")
    assert wait_for(lambda: delta(scrape(lab["metrics"]), c0, "dmm_mn_ports_learnt_total", maar="maar1") == 1, 10)
    assert signal("maar1", M.pbu(1, time.time(), "mn1", p1, 3600, 1, 3, mac)).status == 0
    # the MN moves to maar2: RS there, then maar2's PBU; one group to each switch, one confirmation of
    # both; the CMD's PBU to maar1 (now a P-MAAR) is answered
    router_solicitation(lab, "maar2")
    assert wait_for(lambda: delta(scrape(lab["metrics"]), c0, "dmm_mn_ports_learnt_total", maar="maar2") == 1, 10)
    t0 = time.monotonic()
    assert signal("maar2", M.pbu(1, time.time(), "mn1", p2, 3600, 3, 3, mac)).status == 0
    to_pmaar = decode(socks["maar1"].recv(4096))
    assert isinstance(to_pmaar, BindingUpdate) and to_pmaar.serving_maar == "::ffff:127.0.0.3"
    socks["maar1"].sendto(encode(M.pba_for(to_pmaar, 0, 3600)), ("127.0.0.1", lab["udp"]))
    assert wait_for(lambda: len(flows(lab, "maar2")) == BASE + 4 and len(flows(lab, "maar1")) == BASE + 2, 10)
    assert wait_for(lambda: delta(scrape(lab["metrics"]), c0, "dmm_flows_confirmed_seconds_count") == 2, 10)
    assert wait_for(lambda: delta(scrape(lab["metrics"]), c0, "dmm_handover_duration_seconds_count",
                                  mode="proxy") == 1, 10)
    elapsed = time.monotonic() - t0
    time.sleep(0.5)
    c1 = scrape(lab["metrics"])
    assert delta(c1, c0, "dmm_flow_groups_pushed_total", maar="maar1") == 2
    assert delta(c1, c0, "dmm_flow_groups_pushed_total", maar="maar2") == 1
    assert delta(c1, c0, "dmm_flows_confirmed_seconds_count") == 2
    assert 0 < delta(c1, c0, "dmm_flows_confirmed_seconds_sum") < elapsed + 5
    assert delta(c1, c0, "dmm_flows_confirmed_seconds_bucket", le="+Inf") == 2
    assert delta(c1, c0, "dmm_mn_ports_learnt_total", maar="maar1") == 1
    assert delta(c1, c0, "dmm_mn_ports_learnt_total", maar="maar2") == 1
    assert delta(c1, c0, "dmm_handover_duration_seconds_count", mode="proxy") == 1
    for name in MAARS:
        assert delta(c1, c0, "dmm_reconciliations_total", maar=name) == 0  # no reconnection
        assert c1.value("dmm_flows_refused_total", maar=name) == 0
        assert c1.value("dmm_switch_connected", maar=name) == 1
    assert c1.value("dmm_sessions") == 1
    # maar2's switch loses its controller, then gets it back: 0 while away, one more reconciliation
    ovs = lab["ovs"]
    ovs.vsctl("del-controller", "brmaar2")
    assert wait_for(lambda: scrape(lab["metrics"]).value("dmm_switch_connected", maar="maar2") == 0, 15)
    assert scrape(lab["metrics"]).value("dmm_switch_connected", maar="maar1") == 1
    ovs.vsctl("set-controller", "brmaar2", f"tcp:127.0.0.1:{lab['of']}")
    assert wait_for(lambda: scrape(lab["metrics"]).value("dmm_switch_connected", maar="maar2") == 1, 15)
    assert wait_for(lambda: delta(scrape(lab["metrics"]), c1, "dmm_reconciliations_total", maar="maar2") == 1, 15)
    assert wait_for(lambda: len(flows(lab, "maar2")) == BASE + 4, 10), flows(lab, "maar2")
    c2 = scrape(lab["metrics"])
    assert delta(c2, c1, "dmm_reconciliations_total", maar="maar1") == 0
    assert delta(c2, c1, "dmm_flow_groups_pushed_total", maar="maar2") == 0  # the reconciliation is no push
