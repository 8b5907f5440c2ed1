"""`make lab`: the real lab (OVS per MAAR, real hosts, real tunnels) in every mode; nothing left behind.

What a run must show comes from the RFCs (FACTS.md) and from independent tools: tshark (with the
RFC 8885 plugin) over the signalling capture, read here with its own ``-T fields`` output, the MNs'
own kernels (their MACs and SLAAC addresses) and the CN's raw TCP receive log.
"""
import ipaddress
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ryu_dmm.lab import topology, wire_verdict
from ryu_dmm.lab.packets import udp6_packet, write_pcap
from ryu_dmm.wire import (
    AccessTechnologyTypeOption, BindingAck, BindingUpdate, HandoffIndicatorOption, HomeNetworkPrefix,
    MobileNodeIdentifier, Prefix, PreviousMaar, ServingMaar, encode,
)
from tests.conftest import need
from tests.ovs import available

PLUGIN = Path(__file__).resolve().parent.parent / "tools" / "wireshark" / "rfc8885.lua"
CMD = "2001:db8:ff::100"  # the lab's addressing plan (docs/lab.md): MAAR i is 2001:db8:ff::i


def maar_addr(name: str) -> str:
    return f"2001:db8:ff::{int(name.removeprefix('maar')):x}"


def run_lab(out: Path, *args: str) -> dict:
    got = subprocess.run([sys.executable, "-m", "ryu_dmm.lab", *args, "--out", str(out)], capture_output=True,
                         text=True, timeout=300)
    assert got.returncode == 0, got.stdout + got.stderr
    return json.loads((out / "report.json").read_text())


def tshark_messages(pcap: Path, home: Path) -> list[dict]:
    """PBUs/PBAs in the capture as tshark's own fields say (one dict per frame; RFC 5847 Heartbeats,
    which carry no BU/BA sequence number, are left out)."""
    home.mkdir(exist_ok=True)
    fields = ["frame.time_epoch", "ipv6.src", "ipv6.dst", "mip6.mhtype", "mip6.bu.seqnr", "mip6.ba.seqnr",
              "mip6.ba.status", "mip6.mnid.identifier", "mip6.nemo.mnp.mnp", "mip6.nemo.mnp.pfl",
              "rfc8885.serving_maar", "rfc8885.previous_maar.address", "rfc8885.previous_maar.prefix", "_ws.malformed",
              "_ws.expert.severity"]
    out = subprocess.run(["tshark", "-n", "-X", f"lua_script:{PLUGIN}", "-r", str(pcap), "-T", "fields",
                          "-E", "separator=\t", "-E", "aggregator=|", *sum((["-e", f] for f in fields), [])],
                         capture_output=True, text=True, timeout=120, check=True, env={"HOME": str(home), "PATH": "/usr/bin:/bin"})
    assert "lua" not in out.stderr.lower(), out.stderr
    rows = []
    for line in out.stdout.splitlines():
        v = dict(zip(fields, line.split("\t")))
        if v["mip6.mhtype"] == "13":
            continue
        split = (lambda x: x.split("|") if x else [])
        rows.append({"t": float(v["frame.time_epoch"]), "src": v["ipv6.src"], "dst": v["ipv6.dst"],
                     "type": int(v["mip6.mhtype"]), "seq": int(v["mip6.bu.seqnr"] or v["mip6.ba.seqnr"]),
                     "status": v["mip6.ba.status"], "mn": v["mip6.mnid.identifier"],
                     "hnp": [f"{a}/{b}" for a, b in zip(split(v["mip6.nemo.mnp.mnp"]), split(v["mip6.nemo.mnp.pfl"]))],
                     "serving": split(v["rfc8885.serving_maar"]),
                     "previous": sorted(zip(split(v["rfc8885.previous_maar.address"]),
                                            split(v["rfc8885.previous_maar.prefix"]))),
                     "bad": bool(v["_ws.malformed"]) or "8388608" in v["_ws.expert.severity"]})
    return rows


def check_on_the_wire(report: dict, logs: Path, home: Path) -> None:
    """Each handover as RFC 8885 §3 describes it, read straight from tshark: the new MAAR's PBU (the
    MN's MN-ID, its new prefix in HNP), the CMD's PBA with the same sequence number carrying one
    Previous MAAR option per MAAR left behind with the prefix the MN got there, and a PBU with
    Serving MAAR = the new MAAR to each of those, answered with the same sequence number."""
    msgs = tshark_messages(logs / "signalling.pcap", home)
    assert msgs and not any(m["bad"] for m in msgs)
    pbus, pbas = [m for m in msgs if m["type"] == 5], [m for m in msgs if m["type"] == 6]
    for u in pbus:  # every PBU answered by its destination, same sequence number
        assert any(a["src"] == u["dst"] and a["dst"] == u["src"] and a["seq"] == u["seq"] and a["t"] >= u["t"]
                   for a in pbas), u
    w = report["wire_verdict"]
    assert w["ok"] and w["pbus"] == len(pbus) and w["pbas"] == len(pbas) and not w["unanswered"] and not w["malformed"]
    assert len(w["per_handover"]) == len(report["handovers"]) and all(x["ok"] for x in w["per_handover"])
    prefix_at = {mn: {path[0]: str(ipaddress.IPv6Network(f"{report['old_addresses'][mn]}/64", strict=False))}
                 for mn, path in report["mns"].items()}
    for h, x in zip(report["handovers"], w["per_handover"]):
        mn_id, to = h["mn_id"], maar_addr(h["to"])
        visited = report["mns"][h["mn"]][:h["step"]]
        previous = {m: prefix_at[h["mn"]][m] for m in visited if m != h["to"]}
        u = next(m for m in pbus if m["src"] == to and m["dst"] == CMD and m["mn"] == mn_id and m["t"] >= h["t_move"])
        assert u["hnp"] == [h["new_prefix"]]
        a = next(m for m in pbas if m["src"] == CMD and m["dst"] == to and m["seq"] == u["seq"] and m["t"] >= u["t"])
        assert a["mn"] == mn_id and int(a["status"]) < 128
        assert a["previous"] == sorted((maar_addr(m), p) for m, p in previous.items())
        for m, p in previous.items():
            v = next(v for v in pbus if v["src"] == CMD and v["dst"] == maar_addr(m) and v["mn"] == mn_id
                     and v["t"] >= u["t"])
            assert v["serving"] == [to] and v["hnp"] == [p]
            assert any(b["src"] == maar_addr(m) and b["dst"] == CMD and b["seq"] == v["seq"] for b in pbas)
            if report["mode"] == "locator":  # each P-MAAR also answers the S-MAAR directly (§3.3)
                assert any(b["src"] == maar_addr(m) and b["dst"] == to and b["mn"] == mn_id and b["hnp"] == [p]
                           for b in pbas)
        # the verdict names the same frames
        assert (x["pbu"]["t"], x["pba"]["seq"]) == (pytest.approx(u["t"], abs=1e-6), a["seq"])
        prefix_at[h["mn"]][h["to"]] = h["new_prefix"]


def check_windows(report: dict, logs: Path) -> None:
    """Each handover's old TCP flow delivered in its own window (its move to that MN's next move or
    the run's end), counted here from the CN's raw receive log."""
    for h in report["handovers"]:
        samples = json.loads((logs / f"tcp-{h['mn']}.json").read_text())
        assert h["t_move"] < h["t_settled"] < h["t_end"] <= report["t_stop"]
        after_settled = sum(n for t, n in samples if h["t_settled"] <= t < h["t_end"])
        assert after_settled > 0 and h["old_tcp_kbytes_after_settled"] == pytest.approx(after_settled / 1000, abs=0.1)
        nxt = [g["t_move"] for g in report["handovers"] if g["mn"] == h["mn"] and g["t_move"] > h["t_move"]]
        assert h["t_end"] == (min(nxt) if nxt else report["t_stop"])


def check_detection(h: dict, report: dict) -> None:
    """The link move's steps in order, the MN detected from a frame it sent at the new MAAR: with the
    default re-attachment (carrier lost and regained) its kernel sends no RS; with --reattach bounce
    it does, but an MLD report or its data may still come first."""
    steps = list(h["move_steps_ms"].values())
    assert steps == sorted(steps) and h["link_move_ms"] == steps[-1] > 0
    assert 0 < h["link_gap_ms"] <= h["link_move_ms"]
    assert list(h["move_steps_ms"]) == ["del_port", "netns", "add_port", "link_up"] + (
        ["bounce"] if report["reattach"] == "bounce" else [])
    by = h["detected_by"]
    assert by in ("rs", "dad", "ns", "mld", "frame") and (by == "rs") == (h["events"]["trigger"]["event"] == "rs")
    if report["reattach"] == "carrier" or not report["mn_rs"]:
        assert by != "rs"


@pytest.mark.root
@pytest.mark.tshark
@pytest.mark.parametrize("mode,tunnel", [("proxy", "gre"), ("relay", "gre"), ("locator", "gre"), ("proxy", "vxlan")])
def test_lab_scenario(tmp_path, mode, tunnel):
    need(available() and shutil.which("tshark") is not None, "the lab needs root, Open vSwitch and tshark")
    report = run_lab(tmp_path, "--mode", mode, "--tunnel", tunnel, "--dwell", "1.5")
    assert report["ok"] and report["mode"] == mode and report["tunnel"] == tunnel
    # OpenFlow over TLS by default (issue 11 item 3): every switch's controller is ssl: and connected
    assert report["openflow"]["tls"] and report["openflow"]["switches"].keys() == set(report["maars"])
    for sw in report["openflow"]["switches"].values():
        assert sw["target"] == f"ssl:[{CMD}]:6653" and sw["is_connected"], sw
    hos = report["handovers"]
    assert [(h["from"], h["to"]) for h in hos] == [("maar1", "maar2"), ("maar2", "maar3")]
    for h in hos:
        assert h["old_flow_survived"] and h["old_tcp_kbytes_in_window"] > 0  # old flows keep flowing
        assert h["old_flow_tunnelled_packets"] > 0 and not h["old_flow_local"]  # through real tunnels
        assert h["new_flow_replies"] == 3 and h["new_flow_tunnelled_packets"] == 0  # new flows are local
        assert h["rest_consistent"] and h["detected_after_move_ms"] >= 0
        assert ipaddress.IPv6Address(h["new_address"]) in ipaddress.IPv6Network(h["new_prefix"])  # SLAAC
        check_detection(h, report)
    assert hos[1]["flows_installed"]["maar1"] > hos[0]["flows_installed"]["maar3"]  # P-MAAR tunnel flows
    logs = tmp_path / "logs"
    check_on_the_wire(report, logs, tmp_path / "home")
    check_windows(report, logs)
    assert (tmp_path / "old-flow.png").stat().st_size > 10_000
    assert (logs / "cmd.log").exists() and (logs / "underlay.pcap").stat().st_size > 0
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    assert report["namespaces"] and not set(report["namespaces"]) & set(left)  # ours are all gone


@pytest.mark.root
@pytest.mark.tshark
def test_lab_legacy_mode(tmp_path):
    """Legacy PMIPv6 (docs/mode-legacy.md), LMA maar1 by default: the MN keeps maar1's prefix at every
    MAAR; away from maar1 its new flow too crosses one tunnel each way (3 pings and 3 replies: 6
    tunnelled packets); each MAAR asks with ALL_ZERO; the CMD tells the LMA (and the MAAR left, if
    not the LMA) and answers the new MAAR, naming the LMA, only after the LMA has answered."""
    need(available() and shutil.which("tshark") is not None, "the lab needs root, Open vSwitch and tshark")
    report = run_lab(tmp_path, "--mode", "legacy", "--dwell", "1.5")
    assert report["ok"] and report["lma"] == "maar1"
    prefix = str(ipaddress.IPv6Network(f"{report['old_addresses']['mn1']}/64", strict=False))
    assert ipaddress.IPv6Network(prefix).subnet_of(ipaddress.IPv6Network("2001:db8:1::/48"))  # maar1's pool
    hos = report["handovers"]
    assert [(h["from"], h["to"]) for h in hos] == [("maar1", "maar2"), ("maar2", "maar3")]
    for h in hos:
        assert h["new_prefix"] == prefix and h["old_flow_survived"] and h["old_flow_tunnelled_packets"] > 0
        assert h["new_flow_replies"] == 3 and h["new_flow_tunnelled_packets"] == 6 and h["new_flow_tunnels"] == 1
        assert h["rest_consistent"] and h["pmaars_after"] == 1
    assert [c["new_flow_tunnels"] for c in report["comparison"]] == [1, 1]
    msgs = tshark_messages(tmp_path / "logs" / "signalling.pcap", tmp_path / "home")
    assert msgs and not any(m["bad"] for m in msgs)
    pbus, pbas = [m for m in msgs if m["type"] == 5], [m for m in msgs if m["type"] == 6]
    reg = next(m for m in pbus if m["src"] == maar_addr("maar1") and m["dst"] == CMD)
    assert reg["hnp"] == ["::/0"]
    lma = maar_addr("maar1")
    for h, told in zip(hos, (["maar1"], ["maar1", "maar2"])):
        to = maar_addr(h["to"])
        u = next(m for m in pbus if m["src"] == to and m["dst"] == CMD and m["t"] >= h["t_move"])
        assert u["hnp"] == ["::/0"] and u["mn"] == h["mn_id"]
        a = next(m for m in pbas if m["src"] == CMD and m["dst"] == to and m["seq"] == u["seq"] and m["t"] >= u["t"])
        assert a["previous"] == [(lma, prefix)] and a["hnp"] == [prefix] and int(a["status"]) < 128
        for m in told:
            v = next(v for v in pbus if v["src"] == CMD and v["dst"] == maar_addr(m) and v["t"] >= u["t"])
            assert v["serving"] == [to] and v["hnp"] == [prefix]
            b = next(b for b in pbas if b["src"] == maar_addr(m) and b["dst"] == CMD and b["seq"] == v["seq"])
            if m == "maar1":
                assert b["t"] <= a["t"]  # the LMA answered before the CMD answered the new MAAR


@pytest.mark.root
@pytest.mark.tshark
def test_lab_mns_that_never_solicit(tmp_path):
    """MNs whose kernels never send a Router Solicitation (router_solicitations=0), re-associating by
    a link bounce, which would make them solicit: each is attached and moved from the other frames it
    sends (MLD reports, DAD probes, data), and nothing in any agent's events is an RS. Also the lab's
    --of-plain: OpenFlow in plain TCP when asked for."""
    need(available() and shutil.which("tshark") is not None, "the lab needs root, Open vSwitch and tshark")
    report = run_lab(tmp_path, "--no-rs", "--reattach", "bounce", "--dwell", "1.5", "--of-plain")
    assert report["ok"] and not report["mn_rs"] and report["reattach"] == "bounce"
    assert not report["openflow"]["tls"]
    assert all(sw["target"] == f"tcp:[{CMD}]:6653" and sw["is_connected"]
               for sw in report["openflow"]["switches"].values())
    assert len(report["handovers"]) == 2 and report["registrations"][0]["prefix"] == "2001:db8:1::/64"
    for h in report["handovers"]:
        check_detection(h, report)
        assert h["old_flow_survived"] and h["new_flow_replies"] == 3
    logs = tmp_path / "logs"
    events = [json.loads(line) for f in logs.glob("agent-*.log") for line in f.read_text().splitlines()
              if line.startswith("{")]
    assert not [e for e in events if e["event"] == "rs"]
    assert {e["via"] for e in events if e["event"] == "detected"} <= {"dad", "ns", "mld", "frame"}
    assert any(e["event"] == "detected" and e["maar"] == "maar1" for e in events)  # the first attachment too


@pytest.mark.root
@pytest.mark.tshark
def test_lab_restarts(tmp_path):
    """--restart cmd,maar (docs/store.md, "In the lab"): after the first handover the CMD is killed
    and started again on its store, then maar1 (which anchors the MN's first prefix) loses its agent,
    ovs-vswitchd and ovsdb-server to kill -9 and gets them back. Read from the switches (ovs-ofctl),
    the MN's ping and the CN's TCP log: the CMD's restart costs the old flow nothing and no switch a
    flow; maar1's costs the old flow about as long as its switch takes to come back; both take part
    in the next handover."""
    need(available() and shutil.which("tshark") is not None, "the lab needs root, Open vSwitch and tshark")
    report = run_lab(tmp_path, "--restart", "cmd,maar", "--dwell", "1.5")
    assert report["ok"] and [(h["from"], h["to"]) for h in report["handovers"]] == [("maar1", "maar2"), ("maar2", "maar3")]
    cmd, maar = report["restarts"]
    first, second = report["handovers"]
    assert first["t_settled"] < cmd["t_kill"] < cmd["t_end"] < maar["t_kill"] < maar["t_end"] <= second["t_move"]
    # the CMD: same flows, none deleted and added again (each kept its age), nothing told again
    assert cmd["what"] == "cmd" and cmd["mns"] == ["mn1"] and cmd["restored_sessions"] == 1
    assert cmd["flows_before"] == cmd["flows_after"] > 0
    assert cmd["flows_removed"] == cmd["flows_added"] == cmd["flows_readded"] == 0
    assert cmd["agents_told_again"] == 0
    old = cmd["old_flows"]["mn1"]
    assert old["survived"] and old["lost_pings"] == 0 and old["tcp_kbytes_after_back"] > 0
    # maar1: its anchor for the MN's first prefix, tunnelling to maar2 where the MN is (RFC 8885 §3)
    assert maar["what"] == "maar" and maar["maar"] == "maar1" and maar["mns"] == ["mn1"]
    (view,) = maar["bindings"].values()
    assert view["local"] == [] and view["to_serving"] == [[report["registrations"][0]["prefix"], maar_addr("maar2")]]
    assert maar["cmd_saw_restart"] and maar["restart_counter"][1] == maar["restart_counter"][0] + 1
    assert 0 < maar["switch_back_ms"] <= maar["flows_back_ms"] <= maar["agent_back_ms"] <= maar["rebuilt_ms"]
    old = maar["old_flows"]["mn1"]
    assert old["survived"] and old["tcp_kbytes_after_back"] > 0 and old["lost_pings"] > 0
    # the old flow crosses maar1 both ways: it cannot have come back before maar1's switch did
    assert old["interruption_ms"] >= maar["switch_back_ms"] - 2 * 20
    assert cmd["next_handover_ok"] is maar["next_handover_ok"] is True  # the same one: step 2
    started = [json.loads(line) for line in (tmp_path / "logs" / "agent-maar1.log").read_text().splitlines()
               if line.startswith('{"event": "started"')]
    assert [e["restart_counter"] for e in started] == maar["restart_counter"]
    assert (tmp_path / "logs" / "cmd.log").read_text().count("ryu-dmm CMD started") == 2


def test_bad_topology_and_not_root(tmp_path):
    (tmp_path / "t.json").write_text(json.dumps({"maars": 2, "mns": {"mn1": ["maar1", "maar9"]}}))
    with pytest.raises(ValueError, match="unknown MAAR"):
        topology.load(str(tmp_path / "t.json"))
    (tmp_path / "u.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a usable topology"):
        topology.load(str(tmp_path / "u.json"))
    (tmp_path / "c.json").write_text(json.dumps({"maars": 2, "mns": {"mn1": ["maar1", "maar2"]}, "concurrent": "yes"}))
    with pytest.raises(ValueError, match="concurrent"):
        topology.load(str(tmp_path / "c.json"))
    assert topology.default().concurrent is True  # the documented default
    code = ("import os; os.geteuid = lambda: 1000; import sys, ryu_dmm.lab.__main__ as m; "
            f"sys.exit(m.main(['--out', '{tmp_path}']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "must run as root" in out.stderr


@pytest.mark.parametrize("args", [["--lma", "maar2"], ["--mode", "legacy", "--lma", "maar9"]])
def test_lma_option_refused(tmp_path, args):
    """--lma names a MAAR of the topology, in legacy mode only; refused before anything is built."""
    from ryu_dmm.lab.__main__ import main
    assert main([*args, "--out", str(tmp_path)]) == 2
    assert not (tmp_path / "report.json").exists()


@pytest.mark.parametrize("value", ["0.5", "-1", str(8 * 86400)])
def test_anchor_idle_option_refused_out_of_bounds(tmp_path, value):
    """--anchor-idle takes what [timers] anchor_idle_timeout takes: 1 s to 7 days (0 is the option's
    absence); refused before anything is built."""
    from ryu_dmm.lab.__main__ import main
    assert main(["--anchor-idle", value, "--out", str(tmp_path)]) == 2
    assert not (tmp_path / "report.json").exists()


def test_restart_option():
    from ryu_dmm.lab.restarts import parse_restarts
    assert parse_restarts("maar, cmd") == ("cmd", "maar")  # always in the lab's order (docs/lab.md)
    assert parse_restarts("maar") == ("maar",)
    for bad in ("", "cmd,switch", ","):
        with pytest.raises(ValueError, match="--restart takes"):
            parse_restarts(bad)


THREE_MNS = {"maars": 4, "mns": {"mn1": ["maar1", "maar2", "maar3"], "mn2": ["maar4", "maar1", "maar2"],
                                 "mn3": ["maar2", "maar3", "maar4"]}, "dwell": 1.5}


@pytest.mark.root
@pytest.mark.tshark
@pytest.mark.parametrize("mode,concurrent", [("locator", None), ("proxy", False)])
def test_lab_three_mns(tmp_path, mode, concurrent):
    """The user's case: 4 MAARs, 3 MNs whose paths cross. Every figure of a handover comes from its
    own MN's events; with concurrency (the default) the three moves of a step are under way at once."""
    need(available() and shutil.which("tshark") is not None, "the lab needs root, Open vSwitch and tshark")
    (tmp_path / "t.json").write_text(json.dumps(THREE_MNS))
    extra = [] if concurrent is None else ["--concurrent" if concurrent else "--no-concurrent"]
    report = run_lab(tmp_path / "out", "--mode", mode, "--topology", str(tmp_path / "t.json"), *extra)
    logs = tmp_path / "out" / "logs"
    assert report["ok"] and len(report["handovers"]) == 6
    assert report["concurrent"] is (True if concurrent is None else concurrent)
    for h in report["handovers"]:
        mac = report["mn_ids"][h["mn"]]["mac"]  # read from the MN's own interface
        assert h["mn_id"] == f"mn-{mac.replace(':', '')}@dmm"
        ev = h["events"]
        assert ev["trigger"]["mn"] == ev["served"]["mn"] == h["mn_id"] and ev["trigger"]["mac"] == mac
        assert ev["trigger"]["maar"] == ev["served"]["maar"] == h["to"]
        assert all(e["mn"] == h["mn_id"] and e["event"] == "report" and e["kind"] == "moved" for e in ev["moved"])
        assert sorted(e["maar"] for e in ev["moved"]) == sorted(h["previous_prefixes"])
        assert h["detected_after_move_ms"] >= 0 and h["t_move"] <= ev["trigger"]["t"] <= ev["served"]["t"]
        # the agent's trigger comes before the new MAAR's PBU that tshark saw on the core bridge
        pbu = next(x["pbu"] for x in report["wire_verdict"]["per_handover"]
                   if (x["mn"], x["to"]) == (h["mn"], h["to"]))
        assert ev["trigger"]["t"] <= pbu["t"] and h["pbu_on_wire_after_move_ms"] >= h["detected_after_move_ms"]
        check_detection(h, report)
        assert h["old_flow_survived"] and h["new_flow_replies"] == 3 and h["new_flow_tunnelled_packets"] == 0
    for st in report["steps"]:
        assert st["mns"] == ["mn1", "mn2", "mn3"]
        if report["concurrent"]:  # all three moves were under way at the same time
            assert st["overlapping"] and st["move_spread_ms"] < 200
        else:
            assert not st["overlapping"]
    assert {h["new_prefix"] for h in report["handovers"] if h["to"] == "maar1"} == {"2001:db8:1:1::/64"}
    if mode == "locator":
        assert report["wire_verdict"]["direct_pbas"] == sum(len(h["previous_prefixes"]) for h in report["handovers"])
    check_on_the_wire(report, logs, tmp_path / "home")
    check_windows(report, logs)
    assert (tmp_path / "out" / "old-flow.png").stat().st_size > 10_000


TWO_MNS = {"maars": 3, "mns": {"mn1": ["maar1", "maar2"], "mn2": ["maar3", "maar2"]}, "dwell": 1.5}


@pytest.mark.root
@pytest.mark.tshark
def test_lab_anchor_release(tmp_path):
    """Issue 12: after the handovers mn1's old flows are stopped, mn2's keep running. mn1's anchor
    (maar1, its first prefix) goes no earlier than the timeout after its flow ended and within the
    timeout plus one poll interval (T/4) plus the lab's margin: gone from REST, its tunnel flows gone
    from maar1 and from the serving maar2, the CMD's de-registrations on the wire, the MN got an RA withdrawing the prefix (valid lifetime
    0) and no longer prefers the address. mn2's anchor stays everywhere through the same period."""
    need(available() and shutil.which("tshark") is not None, "the lab needs root, Open vSwitch and tshark")
    (tmp_path / "t.json").write_text(json.dumps(TWO_MNS))
    report = run_lab(tmp_path / "out", "--topology", str(tmp_path / "t.json"), "--anchor-idle", "3")
    r = report["anchor_release"]
    assert report["ok"] and r["ok"] and report["anchor_idle_timeout"] == 3 and r["stopped"] == "mn1"
    got = {a["mn"]: a for a in r["anchors"]}
    assert sorted(got) == ["mn1", "mn2"] and len(r["anchors"]) == 2
    gone, kept = got["mn1"], got["mn2"]
    assert (gone["maar"], gone["prefix"], gone["flow"]) == ("maar1", "2001:db8:1::/64", "stopped")
    assert (kept["maar"], kept["prefix"], kept["flow"]) == ("maar3", "2001:db8:3::/64", "running")
    # REST before: both anchors listed with their tunnel counters
    for a in (gone, kept):
        assert a["rest_before"]["prefix"] == a["prefix"] and a["rest_before"]["traffic"]["packets"]["uplink"] > 0
        # per end two flows match the prefix: into the tunnel, and out of it (table from_tunnel)
        assert a["before"]["switch_flows"] == {a["maar"]: 2, "maar2": 2}
        assert a["before"]["mn_address"]["address"] == report["old_addresses"][a["mn"]]
    # 3 s timeout, 0.75 s polls: released between 3 s and 3 + 0.75 + 1.5 s after the flow ended
    assert gone["released"] and 2800 <= gone["released_after_flow_end_ms"] <= 5250
    assert gone["rest_after"] is None and gone["after"]["switch_flows"] == {"maar1": 0, "maar2": 0}
    assert 2800 <= gone["withdrawal_ra_after_flow_end_ms"] <= gone["released_after_flow_end_ms"] + 200
    # on the wire (tshark): the CMD's PBUs with lifetime 0 for the prefix to maar1, then to maar2
    # naming itself Serving MAAR, both answered, before the MN saw the RA
    assert 2800 <= gone["pbu_to_anchor_ms"] <= gone["pbu_to_serving_ms"] <= gone["withdrawal_ra_after_flow_end_ms"]
    assert kept["pbu_to_anchor_ms"] is None and kept["pbu_to_serving_ms"] is None
    addr = gone["after"]["mn_address"]  # RFC 4862 §5.5.3 (e): removed, or kept deprecated to its end
    assert addr is None or addr["preferred_life_time"] == 0
    assert not kept["released"] and kept["rest_after"]["prefix"] == kept["prefix"]
    assert kept["after"]["switch_flows"] == {"maar3": 2, "maar2": 2} and kept["withdrawal_ra_after_flow_end_ms"] is None
    assert kept["after"]["mn_address"]["address"] == report["old_addresses"]["mn2"]
    # the kept flow answered all along (20 ms pings over at least 4.5 s), the stopped one not at all
    assert kept["old_ping_replies_in_window"] > 150 and gone["old_ping_replies_in_window"] == 0
    assert report["max_pmaars_seen"] == 1 and report["cmd_stats"]["events"]["released"] == 1
    assert report["wire_verdict"]["ok"] and not report["wire_verdict"]["unanswered"]


# ---- the judge alone, on captures written here (tshark needed, not root) -------------------------------
def _pcap(path: Path, packets: list) -> None:
    """``packets``: (time, src, dst, message); written as IPv6/UDP 5436 in time order."""
    import struct
    with open(path, "wb") as out:
        write_pcap(out, [])
        for t, src, dst, msg in sorted(packets, key=lambda x: x[0]):
            data = msg if isinstance(msg, bytes) else encode(msg)
            pkt = udp6_packet(data, src, dst)
            out.write(struct.pack("<IIII", int(t), round((t % 1) * 1e6), len(pkt), len(pkt)) + pkt)


MN = "mn-020000000a01@dmm"
P1, P2 = Prefix.parse("2001:db8:1::/64"), Prefix.parse("2001:db8:2:1::/64")
M1, M2 = "2001:db8:ff::1", "2001:db8:ff::2"


def _pbu(seq, prefix, *extra):
    return BindingUpdate(seq, 600, (MobileNodeIdentifier.nai(MN), HomeNetworkPrefix(prefix), HandoffIndicatorOption(1),
                                    AccessTechnologyTypeOption(3), *extra))


def _pba(seq, prefix, *extra, status=0):
    return BindingAck(status, seq, 600, (MobileNodeIdentifier.nai(MN), HomeNetworkPrefix(prefix),
                                         HandoffIndicatorOption(1), AccessTechnologyTypeOption(3), *extra))


def relay_handover(**change):
    """An initial registration at MAAR1 and a relay-mode handover to MAAR2, as RFC 8885 Figure 2."""
    msgs = {"reg_pbu": (100.0, M1, CMD, _pbu(0, P1)), "reg_pba": (100.01, CMD, M1, _pba(0, P1)),
            "pbu": (101.0, M2, CMD, _pbu(0, P2)),
            "pbu_p": (101.01, CMD, M1, _pbu(5, P1, ServingMaar(M2))),
            "pba_p": (101.02, M1, CMD, _pba(5, P1, ServingMaar(M2))),
            "pba": (101.03, CMD, M2, _pba(0, P2, PreviousMaar(M1, P1)))}
    msgs.update(change)
    return [m for m in msgs.values() if m is not None]


def _judge(tmp_path, packets, mode="relay"):
    need(shutil.which("tshark") is not None, "tshark is not installed")
    _pcap(tmp_path / "s.pcap", packets)
    d = wire_verdict.dissect(tmp_path / "s.pcap", home=tmp_path / "home")
    return wire_verdict.judge(
        d, cmd=CMD, maars={"maar1": M1, "maar2": M2}, mode=mode,
        registrations=[{"mn": "mn1", "mn_id": MN, "maar": "maar1", "prefix": str(P1), "t_end": 100.5}],
        handovers=[{"mn": "mn1", "mn_id": MN, "to": "maar2", "new_prefix": str(P2), "previous": {"maar1": str(P1)},
                    "t_move": 100.5, "t_end": 102.0}])


@pytest.mark.tshark
def test_wire_verdict_passes_a_correct_exchange(tmp_path):
    v = _judge(tmp_path, relay_handover())
    assert v["ok"], v
    assert (v["pbus"], v["pbas"], v["unanswered"], v["malformed"]) == (3, 3, [], [])
    (h,) = v["per_handover"]
    assert h["pba"]["previous_maars"] == [[M1, str(P1)]] and h["pmaars"][0]["pbu"]["serving_maar"] == [M2]


@pytest.mark.tshark
@pytest.mark.parametrize("change,why", [
    ({"pba_p": None}, "unanswered"),  # the P-MAAR never answers
    ({"pba": (101.03, CMD, M2, _pba(1, P2, PreviousMaar(M1, P1)))}, "unanswered"),  # wrong sequence number
    ({"pba": (101.03, CMD, M2, _pba(0, P2, PreviousMaar(M1, P2)))}, "Previous MAAR"),  # wrong prefix
    ({"pba": (101.03, CMD, M2, _pba(0, P2))}, "Previous MAAR"),  # none at all
    ({"pba": (101.03, CMD, M2, _pba(0, P2, PreviousMaar(M1, P1), PreviousMaar(M1, P1)))}, "Previous MAAR"),  # twice
    ({"pbu_p": (101.01, CMD, M1, _pbu(5, P1, ServingMaar(M1)))}, "Serving MAAR"),
    ({"pbu": (101.0, M2, CMD, _pbu(0, P1))}, "HNP"),
    ({"pba": (101.015, CMD, M2, _pba(0, P2, PreviousMaar(M1, P1)))}, "relay"),  # before the P-MAAR answered
    ({"pba": (101.03, CMD, M2, _pba(0, P2, PreviousMaar(M1, P1), status=155))}, "status 155"),
    ({"pbu": (101.0, M2, CMD, _pbu(7, P2)), "pba": (101.03, CMD, M2, _pba(7, P2, PreviousMaar(M1, P1))),
      "rereg": (101.5, M2, CMD, _pbu(6, P2)), "rereg_a": (101.51, CMD, M2, _pba(6, P2))}, "seq_regressions"),
])
def test_wire_verdict_finds_what_is_wrong(tmp_path, change, why):
    v = _judge(tmp_path, relay_handover(**change))
    assert not v["ok"]
    found = [p for x in v["registrations"] + v["per_handover"] for p in x["problems"]] + v["problems"]
    found += [k for k in ("unanswered", "stray_pbas", "rejected", "seq_regressions") if v[k]]
    assert why in json.dumps(found), v


@pytest.mark.tshark
def test_wire_verdict_flags_malformed_options(tmp_path):
    bad = bytearray(encode(_pba(0, P2, PreviousMaar(M1, P1))))
    at = bad.find(bytes([67, 34]))  # the Previous MAAR option's type and length
    bad[at + 1] = 30  # a wrong length, as tshark's plugin must see it
    v = _judge(tmp_path, relay_handover(pba=(101.03, CMD, M2, bytes(bad))))
    assert not v["ok"] and (v["malformed"] or v["expert_errors"])


@pytest.mark.root
@pytest.mark.tshark
@pytest.mark.parametrize("mode", ["relay", "proxy"])
def test_lab_maars_program_their_own_switches(tmp_path, mode):
    """flow_control = maar (docs/flow-control.md), 4 MAARs and 3 MNs moving at once: each MAAR's agent
    programs its own switch, the CMD none. In relay mode (RFC 8885 §3.2) the CMD answers the new MAAR
    only after every P-MAAR's PBA, which a P-MAAR sends once its own switch confirmed its tunnel: the
    new MAAR's data plane is ready after every P-MAAR's, in every handover."""
    need(available() and shutil.which("tshark") is not None, "the lab needs root, Open vSwitch and tshark")
    (tmp_path / "t.json").write_text(json.dumps(THREE_MNS))
    report = run_lab(tmp_path / "out", "--mode", mode, "--flow-control", "maar", "--topology", str(tmp_path / "t.json"))
    assert report["ok"] and report["flow_control"] == "maar" and len(report["handovers"]) == 6
    assert not report["cmd_stats"]["messages"].get("flow_groups_pushed")  # the CMD pushed nothing
    for h in report["handovers"]:
        ready = h["dataplane_ready_ms"]
        assert set(ready) == {h["to"], *h["previous_prefixes"]} and all(ms > 0 for ms in ready.values())
        if mode == "relay":
            assert all(ready[h["to"]] > ms for m, ms in ready.items() if m != h["to"]), ready
        assert h["old_flow_survived"] and h["new_flow_replies"] == 3 and h["new_flow_tunnelled_packets"] == 0
    check_on_the_wire(report, tmp_path / "out" / "logs", tmp_path / "home")


RETURNING = {"maars": 3, "mns": {"mn1": ["maar1", "maar2", "maar3", "maar1"], "mn2": ["maar3", "maar1", "maar2"]},
             "dwell": 1.5}


@pytest.mark.root
@pytest.mark.tshark
def test_lab_distributed_mode(tmp_path):
    """No CMD (docs/mode-distributed.md): two MNs moving at once, one back to its first MAAR. Every old
    TCP flow survives every move through a real tunnel, every new flow leaves locally, and on the wire
    each attachment is a discovery PBU from the new MAAR to every other MAAR, answered with an Anchored
    Prefix by the MAARs the MN left and 153 by the others."""
    need(available() and shutil.which("tshark") is not None, "the lab needs root, Open vSwitch and tshark")
    (tmp_path / "t.json").write_text(json.dumps(RETURNING))
    report = run_lab(tmp_path / "out", "--mode", "distributed", "--topology", str(tmp_path / "t.json"))
    assert report["ok"] and report["mode"] == "distributed" and report["flow_control"] == "maar"
    assert report["cmd_stats"] is None and not (tmp_path / "out" / "logs" / "cmd.log").exists()
    hos = report["handovers"]
    assert len(hos) == 5 and ("maar3", "maar1") in [(h["from"], h["to"]) for h in hos if h["mn"] == "mn1"]
    for h in hos:
        assert h["old_flow_survived"] and h["old_tcp_kbytes_after_settled"] > 0
        assert (h["old_flow_tunnelled_packets"] > 0) != h["old_flow_local"]
        assert h["new_flow_replies"] == 3 and h["new_flow_tunnelled_packets"] == 0 and h["rest_consistent"]
    back = next(h for h in hos if h["mn"] == "mn1" and h["to"] == "maar1")
    assert back["old_flow_local"] and back["new_prefix"] == back["old_prefix"]  # its first prefix, local again
    w = report["wire_verdict"]
    assert w["ok"] and all(x["messages"] == 4 for x in w["per_handover"] + w["registrations"])  # 2 (3 - 1)
