"""``--anchor-idle T``: idle anchors released in the lab (docs/anchor-release.md).

After the last step, the first MN that moved has its old flows (ping and TCP from its first
address) stopped on purpose; every other MN's keep running. For ``T`` plus one poll interval plus
``MARGIN`` the lab watches each moved MN's anchors in REST, then reads the same anchors from two
places the CMD does not report itself: the switches' flow tables (``ovs-ofctl dump-flows`` on the
anchor and on the serving switch) and the MN itself: the RAs on its link (``tcpdump`` in its
namespace: the prefix withdrawn with valid lifetime 0) and its addresses (``ip -6 addr``: what its
kernel made of that RA under RFC 4862 §5.5.3 (e)). Released or kept, when, and that evidence go into
the report, with the release's PMIPv6 messages as tshark saw them (``on_the_wire``).
"""
from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import time
from pathlib import Path

from .common import wait_until
from .net import Lab, run

MARGIN = 1.5  # seconds beyond the timeout and one poll interval: a round trip and the lab's own polling
POLL = 0.1  # how often the lab reads REST while it waits
EARLY_MS = 200  # how much earlier than the timeout after the flow's end a release may be seen


def anchors(lab: Lab, mn_id: str) -> dict[str, dict]:
    """The session's P-MAARs by name, as REST shows them (prefix, traffic)."""
    return {p["name"]: p for p in lab.rest(f"/dmm/v1/sessions/{mn_id}")["previous_maars"]}


def prefix_flows(lab: Lab, maar: str, prefix: str) -> list[str]:
    """Flows on ``maar``'s access bridge that match ``prefix`` (the tunnel flows of that anchor)."""
    net = ipaddress.IPv6Network(prefix)
    return [f for f in lab.maars[maar].flows() if f"={net.network_address}/{net.prefixlen}" in f]


def mn_address(lab: Lab, mn: str, prefix: str) -> dict | None:
    """The MN's own address in ``prefix`` and its lifetimes (seconds), or None once it is gone."""
    j, ns = lab.mns[mn]
    net = ipaddress.IPv6Network(prefix)
    for a in json.loads(run("ip", "-n", ns, "-6", "-j", "addr", "show", "dev", f"e{j}"))[0].get("addr_info", []):
        if a.get("scope") == "global" and ipaddress.IPv6Address(a["local"]) in net:
            return {"address": a["local"], "preferred_life_time": a.get("preferred_life_time"),
                    "valid_life_time": a.get("valid_life_time")}
    return None


def withdrawals(pcap: Path) -> list[tuple[float, str]]:
    """(time, prefix) of every RA Prefix Information option with valid lifetime 0 in ``pcap``."""
    out = run("tcpdump", "-n", "-tt", "-v", "-r", str(pcap), check=False) if pcap.exists() else ""
    got, t = [], 0.0
    for line in out.splitlines():
        m = re.match(r"(\d+\.\d+) ", line)
        if m:
            t = float(m.group(1))
        m = re.search(r"prefix info option.*?: ([0-9a-f:]+/\d+), .*valid time 0s", line)
        if m:
            got.append((t, str(ipaddress.IPv6Network(m.group(1)))))
    return got


def evidence(lab: Lab, mn: str, maar: str, prefix: str, serving: str) -> dict:
    return {"switch_flows": {m: len(prefix_flows(lab, m, prefix)) for m in (maar, serving)},
            "mn_address": mn_address(lab, mn, prefix)}


def run_release(lab: Lab, stopped: str, flows: dict[str, list[subprocess.Popen]], ids: dict, timeout: float) -> dict:
    """Stop ``stopped``'s old flows, watch every moved MN's anchors until the timeout plus one poll
    interval plus ``MARGIN`` has passed, and say per anchor whether and when it was released."""
    moved = [mn for mn, path in lab.topo.mns if len(path) > 1]
    watched = []
    for mn in moved:
        for name, entry in anchors(lab, ids[mn]["mn_id"]).items():
            watched.append({"mn": mn, "maar": name, "prefix": entry["prefix"], "serving": lab.where[mn],
                            "flow": "stopped" if mn == stopped else "running", "rest_before": entry,
                            "before": evidence(lab, mn, name, entry["prefix"], lab.where[mn])})
    ras = {}  # the RAs each moved MN receives from now on
    for mn in moved:
        j, ns = lab.mns[mn]
        path = lab.work / f"ra-{mn}.pcap"
        ras[mn] = (lab.start(ns, ["tcpdump", "-n", "-U", "-i", f"e{j}", "-w", str(path), "icmp6 and ip6[40] == 134"],
                             f"ra-{mn}.log"), path)
        wait_until(lambda: path.exists() and path.stat().st_size >= 24, 10, f"tcpdump on {mn}'s link")
    for p in flows[stopped]:
        p.terminate()
    for p in flows[stopped]:
        p.wait(10)
    t_flow_end = time.time()
    deadline = t_flow_end + timeout * 1.25 + MARGIN
    while time.time() < deadline:
        now = {mn: anchors(lab, ids[mn]["mn_id"]) for mn in moved}
        t = time.time()
        for a in watched:
            if "t_released" not in a and a["maar"] not in now[a["mn"]]:
                a["t_released"] = t
        time.sleep(POLL)
    for p, _ in ras.values():
        p.terminate()
        p.wait(10)
    seen = {mn: withdrawals(path) for mn, (_, path) in ras.items()}
    for a in watched:
        ra = next((t for t, pref in seen[a["mn"]] if pref == a["prefix"]), None)
        a["withdrawal_ra_after_flow_end_ms"] = None if ra is None else round((ra - t_flow_end) * 1000)
        after = anchors(lab, ids[a["mn"]]["mn_id"])
        a["rest_after"] = after.get(a["maar"])
        a["after"] = evidence(lab, a["mn"], a["maar"], a["prefix"], a["serving"])
        a["released"] = "t_released" in a
        a["released_after_flow_end_ms"] = round((a["t_released"] - t_flow_end) * 1000) if a["released"] else None
        a["ok"] = release_ok(a, timeout)
    return {"anchor_idle_timeout": timeout, "poll_interval": timeout / 4, "margin": MARGIN, "stopped": stopped,
            "t_flow_end": t_flow_end, "t_end": deadline, "anchors": watched,
            "ok": bool(watched) and all(a["ok"] for a in watched)}


def on_the_wire(release: dict, messages: list, maars: dict, cmd: str, ids: dict) -> None:
    """The release in PMIPv6 as tshark decoded ``signalling.pcap`` (RFC 8885 messages only): per
    anchor, the CMD's PBU with lifetime 0 and the prefix in HNP to the anchor and the one to the
    serving MAAR naming it Serving MAAR, each answered (ms after the flows ended; None: not sent).
    A stopped flow's anchor needs both, a running one's neither."""
    addr = {n: str(ipaddress.IPv6Address(a)) for n, a in maars.items()}
    t0, cmd = release["t_flow_end"], str(ipaddress.IPv6Address(cmd))

    def deregistration(a: dict, to: str, serving: list) -> int | None:
        u = next((m for m in messages if m.mhtype == 5 and m.t >= t0 and m.src == cmd and m.dst == addr[to]
                  and m.mn_id == ids[a["mn"]]["mn_id"] and m.lifetime == 0 and m.hnp == [a["prefix"]]
                  and m.serving_maar == serving), None)
        answered = u is not None and any(m.mhtype == 6 and m.src == u.dst and m.dst == cmd and m.seq == u.seq
                                         and m.t >= u.t for m in messages)
        return round((u.t - t0) * 1000) if answered else None
    for a in release["anchors"]:
        a["pbu_to_anchor_ms"] = deregistration(a, a["maar"], [])
        a["pbu_to_serving_ms"] = deregistration(a, a["serving"], [addr[a["serving"]]])
        wire = (a["pbu_to_anchor_ms"], a["pbu_to_serving_ms"])
        a["ok"] = a["ok"] and (None not in wire if a["flow"] == "stopped" else wire == (None, None))
    release["ok"] = bool(release["anchors"]) and all(a["ok"] for a in release["anchors"])


def release_ok(a: dict, timeout: float) -> bool:
    """Stopped: gone from REST no earlier than the timeout after the flow's end (less 0.2 s: its last
    packet may precede the moment the lab saw its processes gone) and within the timeout plus a poll interval plus the margin; its tunnel flows gone from
    both switches; the MN got the RA withdrawing the prefix and no longer prefers the address (its
    kernel removes it or, RFC 4862 §5.5.3 (e), lets its remaining lifetime run out). Running: kept
    everywhere (REST, flows, address) and never withdrawn."""
    before, after = a["before"], a["after"]
    had = all(before["switch_flows"].values()) and before["mn_address"] is not None
    if a["flow"] == "stopped":
        return (had and a["released"] and timeout * 1000 - EARLY_MS <= a["released_after_flow_end_ms"]
                <= (timeout * 1.25 + MARGIN) * 1000 and a["rest_after"] is None
                and not any(after["switch_flows"].values()) and a["withdrawal_ra_after_flow_end_ms"] is not None
                and (after["mn_address"] is None or after["mn_address"]["preferred_life_time"] == 0))
    return (had and not a["released"] and a["rest_after"] is not None and a["withdrawal_ra_after_flow_end_ms"] is None
            and after["switch_flows"] == before["switch_flows"] and after["mn_address"] is not None)


def describe(r: dict) -> str:
    lines = [f"anchor release (timeout {r['anchor_idle_timeout']:g} s, poll every {r['poll_interval']:g} s): "
             f"{r['stopped']}'s old flows stopped, the others' kept running: {'PASS' if r['ok'] else 'FAIL'}"]
    for a in r["anchors"]:
        after, gone_ms, ra_ms = a["after"], a["released_after_flow_end_ms"], a["withdrawal_ra_after_flow_end_ms"]
        addr = after["mn_address"]
        lines.append(f"  {a['mn']} {a['maar']} {a['prefix']} (flow {a['flow']}): "
                     f"{f'released {gone_ms} ms after the flow ended' if a['released'] else 'kept'}; "
                     f"tunnel flows {a['before']['switch_flows']} -> {after['switch_flows']}; withdrawal RA "
                     f"{'none' if ra_ms is None else f'{ra_ms} ms'}; MN's address {'gone' if addr is None else addr}; "
                     f"PBU lifetime 0 to the anchor {a.get('pbu_to_anchor_ms')} ms, to the serving MAAR "
                     f"{a.get('pbu_to_serving_ms')} ms")
    return "\n".join(lines)
