"""`make lab`: the real lab (OVS per MAAR, real hosts, real tunnels) in every mode; nothing left behind."""
import ipaddress
import json
import subprocess
import sys

import pytest

from ryu_dmm.lab import topology
from tests.conftest import need
from tests.ovs import available


@pytest.mark.root
@pytest.mark.parametrize("mode,tunnel", [("proxy", "gre"), ("relay", "gre"), ("locator", "gre"), ("proxy", "vxlan")])
def test_lab_scenario(tmp_path, mode, tunnel):
    need(available(), "the lab needs root and Open vSwitch")
    out = subprocess.run([sys.executable, "-m", "ryu_dmm.lab", "--mode", mode, "--tunnel", tunnel,
                          "--dwell", "1.5", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] and report["mode"] == mode and report["tunnel"] == tunnel
    hos = report["handovers"]
    assert [(h["from"], h["to"]) for h in hos] == [("maar1", "maar2"), ("maar2", "maar3")]
    for h in hos:
        assert h["old_flow_survived"] and h["old_tcp_kbytes_after"] > 0  # old flows keep flowing
        assert h["old_flow_tunnelled_packets"] > 0 and not h["old_flow_local"]  # through real tunnels
        assert h["new_flow_replies"] == 3 and h["new_flow_tunnelled_packets"] == 0  # new flows are local
        assert h["rest_consistent"]
        assert ipaddress.IPv6Address(h["new_address"]) in ipaddress.IPv6Network(h["new_prefix"])  # SLAAC
    assert hos[1]["flows_installed"]["maar1"] > hos[0]["flows_installed"]["maar3"]  # P-MAAR tunnel flows
    assert (tmp_path / "old-flow.png").stat().st_size > 10_000
    assert (tmp_path / "logs" / "cmd.log").exists() and (tmp_path / "logs" / "underlay.pcap").stat().st_size > 0
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    assert report["namespaces"] and not set(report["namespaces"]) & set(left)  # ours are all gone


def test_bad_topology_and_not_root(tmp_path):
    (tmp_path / "t.json").write_text(json.dumps({"maars": 2, "mns": {"mn1": ["maar1", "maar9"]}}))
    with pytest.raises(ValueError, match="unknown MAAR"):
        topology.load(str(tmp_path / "t.json"))
    (tmp_path / "u.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a usable topology"):
        topology.load(str(tmp_path / "u.json"))
    code = ("import os; os.geteuid = lambda: 1000; import sys, ryu_dmm.lab.__main__ as m; "
            f"sys.exit(m.main(['--out', '{tmp_path}']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "must run as root" in out.stderr


@pytest.mark.root
def test_lab_two_mns_crossing_paths(tmp_path):
    need(available(), "the lab needs root and Open vSwitch")
    (tmp_path / "t.json").write_text(json.dumps(
        {"maars": 4, "mns": {"mn1": ["maar1", "maar2", "maar3"], "mn2": ["maar4", "maar1", "maar2"]}, "dwell": 1.5}))
    out = subprocess.run([sys.executable, "-m", "ryu_dmm.lab", "--mode", "locator", "--topology",
                          str(tmp_path / "t.json"), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["ok"] and len(report["handovers"]) == 4
    assert {h["new_prefix"] for h in report["handovers"] if h["to"] == "maar1"} == {"2001:db8:1:1::/64"}
