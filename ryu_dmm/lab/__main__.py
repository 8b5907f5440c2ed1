"""``make lab`` / ``python -m ryu_dmm.lab``: build the lab, run the handover scenario, report.

Each MN attaches to its first MAAR and gets a prefix by SLAAC from our Router Advertisement, opens a
long-lived flow to the CN (a ping and a paced TCP stream from that first address), then moves along
its path (a real link move); at each MAAR it opens a new flow. The report shows per handover the
signalling time, the old flow's interruption and losses, the flows installed, and whether old flows
went through real tunnels while new ones stayed local; it is written as JSON with a plot.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .. import domainconf
from ..agent.main import mn_id_of, request
from ..mobility.config import Mode, Timers
from . import attack as attack_mod
from . import ipsec as ipsec_mod
from . import release as release_mod
from . import restarts as restart_mod
from . import topology as topo_mod
from . import distributed_verdict, ha, wire_verdict
from .common import LabError, wait_until
from .net import CMD_ADDR, CN_ADDR, FLOW_CONTROL, REATTACH, Lab, preflight, run

PING_INTERVAL = 0.02
TUNNEL_FILTER = {"gre": "ip6 proto 47", "vxlan": "ip6 and udp port 4789"}
TCP_RATE = 200_000  # bytes/s of the old TCP flow
TCP_BUCKET = 0.1  # seconds per throughput sample in the report and the plot
# the new flow's ping payload: its ICMPv6 length (+8) tells its packets from the old ping's (56) on the
# underlay when both share the MN's prefix (legacy mode; back at the old prefix's anchor)
NEW_PING_SIZE = 200


class EventLog:
    """Every agent's events, read through their control sockets, kept per MAAR; safe to share between
    the threads of concurrent handovers. Events are attributed to an MN by its MN-ID (the agent names
    an MN ``mn-<MAC hex>@dmm``) and to a handover by time (not before its move)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.lock = threading.Lock()
        self.marks = {m: request(lab.control(m), {"op": "events", "since": 0})["next"] for m in lab.topo.maars}
        self.seen: dict[str, list] = {m: [] for m in lab.topo.maars}

    def poll(self) -> None:
        with self.lock:
            for m in self.lab.topo.maars:
                got = request(self.lab.control(m), {"op": "events", "since": self.marks[m]})
                self.seen[m].extend(got["events"])
                self.marks[m] = got["next"]

    def restarted(self, maar: str) -> None:
        """``maar``'s agent is a new process: its event indexes start again from 0."""
        with self.lock:
            self.marks[maar] = 0

    def told_again(self, since: float, until: float) -> int:
        """Agents' reports of a CMD restart (a new Restart Counter: they re-registered what they hold)."""
        with self.lock:
            return sum(1 for events in self.seen.values() for e in events if e["event"] == "report"
                       and e["kind"] == "renewed" and not e["mn"] and since <= e["t"] <= until)

    def first(self, maar: str, mn_id: str, since: float, what) -> dict | None:
        with self.lock:
            return next((e for e in self.seen[maar] if e.get("mn") == mn_id and e["t"] >= since and what(e)), None)


def _is_trigger(e: dict) -> bool:
    """An attach trigger the agent saw on the access link: an RS, or another first frame (``via``)."""
    return e["event"] in ("rs", "detected")


def _is_served(e: dict) -> bool:
    return e["event"] == "report" and e["kind"] in ("handover", "registered")


def _is_moved(e: dict) -> bool:
    return e["event"] == "report" and e["kind"] == "moved"


def dataplane_ready(log: EventLog, mn_id: str, maars: list, since: float, until: float) -> dict:
    """flow_control = maar: MAAR -> when its own switch confirmed (barrier) the last of the MN's flow
    pushes made between ``since`` (detection) and ``until`` (the handover settled), from that agent's
    ``flows-confirmed`` events: a MAAR may push more than once in one handover (locator: per direct
    PBA, then the CMD's PBA; distributed: its own prefix at once, then per anchor that answers)."""
    def pushed(e: dict) -> bool:
        return e["event"] == "flows-confirmed" and since <= e["pushed_at"] <= until

    def found():
        log.poll()
        with log.lock:
            got = {m: [e for e in log.seen[m] if e.get("mn") == mn_id and pushed(e)] for m in maars}
        return got if all(got.values()) else None
    got = wait_until(found, 5, f"{mn_id}'s flows confirmed at {maars}")
    return {m: max(e["confirmed_at"] for e in events) for m, events in got.items()}


def agent_session(lab: Lab, maar: str, mn_id: str) -> dict:
    """Distributed mode (no CMD, no REST): the MN's session as its serving MAAR's agent holds it, in
    the shape of the CMD's REST session (serving MAAR and previous MAARs by name)."""
    b = request(lab.control(maar), {"op": "state", "mn": mn_id})["bindings"].get(mn_id, {})
    names = {m.info.address: name for name, m in lab.maars.items()}
    return {"serving_maar": {"name": maar if b.get("local") else None},
            "previous_maars": [{"name": names.get(a, a), "prefix": p} for p, a in b.get("to_anchor", [])]}


def _prefix(lab: Lab, maar: str, address: str) -> str:
    return str(ipaddress.IPv6Network(f"{address}/{lab.maars[maar].info.prefix_length}", strict=False))


def _address_in(lab: Lab, mn: str, maar: str):
    pool = lab.maars[lab.pool_of(maar)].info.pool.network
    return next((a for a, s in lab.addresses(mn).items() if ipaddress.IPv6Address(a) in pool and s == "preferred"), None)


def run_scenario(lab: Lab, out: Path, restarts: tuple[str, ...] = (), faults: ha.Faults | None = None) -> dict:
    topo = lab.topo
    log = EventLog(lab)
    underlay = lab.capture("underlay.pcap", TUNNEL_FILTER[lab.tunnel])
    if lab.ipsec:  # the wire carries ESP; the verdict judges what the hosts' TUN devices decrypted
        wire = [lab.capture("underlay-signalling.pcap", ipsec_mod.UNDERLAY_FILTER),
                lab.capture("signalling-cmd.pcap", ipsec_mod.PLAINTEXT_FILTER, lab.core_ns, ipsec_mod.TUN)]
        if lab.mode in (Mode.LOCATOR, Mode.DISTRIBUTED):  # MAAR to MAAR: each message once, where it was sent
            wire += [lab.capture(f"signalling-{m}.pcap", f"({ipsec_mod.PLAINTEXT_FILTER}) and not host {CMD_ADDR}",
                                 lab.maars[m].ns, ipsec_mod.TUN, "out") for m in topo.maars]
    else:
        wire = [lab.capture("signalling.pcap", wire_verdict.CAPTURE_FILTER)]
    t_start = time.time()
    old_addr, flows, ids, registrations = {}, [], {}, {}
    own: dict[str, list] = {}  # each MN's old flows (its TCP source and ping), stopped on purpose by --anchor-idle
    for mn, path in topo.mns:
        j, ns = lab.mns[mn]
        mac = lab.mac(mn)
        ids[mn] = {"mac": mac, "mn_id": mn_id_of(bytes.fromhex(mac.replace(":", "")))}
        t_attach = time.time()
        lab.attach_first(mn)
        old_addr[mn] = wait_until(lambda: _address_in(lab, mn, path[0]), 15, f"{mn}'s address by SLAAC")
        prefix = _prefix(lab, path[0], old_addr[mn])
        registrations[mn] = {"mn": mn, "mn_id": ids[mn]["mn_id"], "maar": path[0], "t_attach": t_attach,
                             "prefix": prefix,
                             # legacy: the MAAR asks with ALL_ZERO (RFC 5213 §5.3.1); away from the LMA
                             # the PBA names it
                             "pbu_hnp": "::/0" if lab.lma else prefix,
                             "previous": {lab.lma: prefix} if lab.lma and lab.lma != path[0] else {}}
        port = 5000 + j
        flows.append(lab.start(lab.cn_ns, [sys.executable, "-m", "ryu_dmm.lab.traffic", "sink", CN_ADDR, str(port),
                                           str(lab.work / f"tcp-{mn}.json")], f"sink-{mn}.log"))
        time.sleep(0.2)
        own[mn] = [lab.start(ns, [sys.executable, "-m", "ryu_dmm.lab.traffic", "source", old_addr[mn], CN_ADDR,
                                  str(port), str(TCP_RATE)], f"source-{mn}.log"),
                   lab.start(ns, ["ping", "-6", "-D", "-n", "-i", str(PING_INTERVAL), "-I", old_addr[mn], CN_ADDR],
                             f"ping-old-{mn}.log")]
        flows += own[mn]
    time.sleep(topo.dwell)
    handovers, prefixes = [], {mn: {path[0]: registrations[mn]["prefix"]} for mn, path in topo.mns}
    crashes: list[dict] = []
    injected: list[dict] = []  # --cmds: the high-availability scenario's faults (lab/ha.py)
    steps = max(len(p) for _, p in topo.mns)
    for s in range(1, steps):
        movers = [(mn, path[:s], path[s]) for mn, path in topo.mns if s < len(path)]
        for h in run_step(lab, log, movers, topo.concurrent, ids, old_addr, prefixes):
            h["step"] = s
            handovers.append(h)
        time.sleep(topo.dwell)
        if s == 1:
            crashes = run_restarts(lab, log, restarts, ids, topo.dwell)
        if faults is not None:
            injected += faults.after_step(s, ids, topo.dwell)
    moved = [mn for mn, path in topo.mns if len(path) > 1]
    release = (release_mod.run_release(lab, moved[0], own, ids, lab.anchor_idle)
               if lab.anchor_idle and moved else None)
    attack = None
    if lab.attack and moved:  # --attack: a hostile host spoofs the signalling (lab/attack.py)
        victim = moved[0]
        attack = attack_mod.run_attack(lab, victim, ids[victim]["mn_id"], ids[victim]["mac"],
                                       list(dict(topo.mns)[victim]), lab.work / f"ping-old-{victim}.log",
                                       ping_replies)
    t_stop = time.time()  # the run's end: the flows stop now
    for p in flows:
        p.send_signal(signal.SIGTERM)
    for p in flows:
        p.wait(10)
    time.sleep(0.3)
    for cap in (underlay, *wire):
        cap.send_signal(signal.SIGTERM)
        cap.wait(10)
    ipsec_report = None
    if lab.ipsec:
        run("mergecap", "-F", "pcap", "-w", str(lab.work / "signalling.pcap"),
            *(str(p) for p in sorted(lab.work.glob("signalling-*.pcap"))))
        ipsec_report = {"sa_setup_s": round(lab.ipsec_setup_s, 3),
                        "underlay": ipsec_mod.on_the_wire(lab.work / "underlay-signalling.pcap",
                                                          lab.work / "tshark-home",
                                                          (attack["hostile_mac"],) if attack else ()),
                        "plaintext_dropped": {h.name: ipsec_mod.dropped(h) for h in lab.ipsec_hosts}}
    tunnelled = gre_inner(lab.work / "underlay.pcap")
    ends = {}  # each handover's window lasts until that MN's next move (or the run's end)
    for h in reversed(handovers):
        h["t_end"] = ends.get(h["mn"], t_stop)
        ends[h["mn"]] = h["t_move"]
    for mn, r in registrations.items():
        r["t_end"] = ends.get(mn, t_stop)
    tcp = {mn: _tcp_samples(lab.work / f"tcp-{mn}.json") for mn, _ in topo.mns}
    for h in handovers:
        old = ipaddress.IPv6Network(h["old_prefix"])
        new = ipaddress.IPv6Network(h["new_prefix"])
        window = [(src, dst, n) for t, src, dst, n in tunnelled if h["t_move"] + 0.5 <= t <= h["t_end"]]
        pings = ping_replies(lab.work / f"ping-old-{h['mn']}.log")
        # the handover's own interruption: up to the first crash in its window (measured on its own)
        gap_end = min([h["t_end"]] + [r["t_kill"] for r in crashes + injected if r["t_kill"] > h["t_move"]])
        h.update(old_flow_gap(pings, h["t_move"] - min(1.0, topo.dwell / 2), gap_end))
        h["old_flow_survived"] = any(h["t_move"] < t <= h["t_end"] for t, _ in pings)
        # at the MAAR anchoring the old prefix (legacy: the LMA) no tunnel
        h["old_flow_local"] = h["to"] == lab.lma if lab.lma else old == new
        h["old_flow_tunnelled_packets"] = sum(1 for src, dst, _ in window if src in old or dst in old)
        # the old flows share the new prefix (legacy; back at its anchor): the new ping's packets by size
        h["new_flow_tunnelled_packets"] = sum(1 for src, dst, n in window if (src in new or dst in new)
                                              and (old != new or n == NEW_PING_SIZE + 8))
        # tunnels the new flow's packets crossed, each way: its tunnelled packets per request and reply
        h["new_flow_tunnels"] = round(h["new_flow_tunnelled_packets"] / (2 * h["new_flow_replies"]), 2) \
            if h["new_flow_replies"] else None
        # the old TCP stream in this handover's own window only (not to the end of the run)
        h["old_tcp_kbytes_in_window"] = _kbytes(tcp[h["mn"]], h["t_move"], h["t_end"])
        h["old_tcp_kbytes_after_settled"] = _kbytes(tcp[h["mn"]], h["t_settled"], h["t_end"])
    maars = {m: lab.maars[m].info.address for m in topo.maars}
    if faults is not None:
        faults.annotate(handovers)
    try:
        dissected = wire_verdict.dissect(lab.work / "signalling.pcap", home=lab.work / "tshark-home")
        verdict = distributed_verdict.judge(
            dissected, maars=maars, registrations=list(registrations.values()),
            handovers=[wire_verdict.handover_input(h) for h in handovers]) if lab.mode is Mode.DISTRIBUTED else \
            wire_verdict.judge(
            dissected, cmd=CMD_ADDR, maars=maars, mode=lab.mode.value, registrations=list(registrations.values()),
            handovers=[wire_verdict.handover_input(h) for h in handovers])
        if release is not None:
            release_mod.on_the_wire(release, dissected.messages, maars, CMD_ADDR, ids)
    except (OSError, RuntimeError, ValueError) as exc:
        verdict = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    verdict["capture"] = "logs/signalling.pcap"
    verdict["filter"] = wire_verdict.CAPTURE_FILTER
    for h, w in zip(handovers, verdict.get("per_handover", [])):
        h["wire_ok"] = w["ok"]
        if "pbu" in w:  # when the new MAAR's PBU crossed the core bridge
            h["pbu_on_wire_after_move_ms"] = round((w["pbu"]["t"] - h["t_move"]) * 1000, 1)
    for r in crashes:
        measure_restart(lab, r, tcp, handovers, log)
    for r in injected:
        measure_restart(lab, r, tcp, handovers, log)
        faults.measured(r, handovers, handover_ok)
    if release is not None:  # the running flows' pings while the stopped one's anchor went
        for a in release["anchors"]:
            a["old_ping_replies_in_window"] = sum(
                1 for t, _ in ping_replies(lab.work / f"ping-old-{a['mn']}.log")
                if release["t_flow_end"] <= t <= release["t_end"])
    report = {"mode": lab.mode.value, "flow_control": lab.flow_control, "store": lab.store, "lma": lab.lma,
              "tunnel": lab.tunnel,
              "maars": list(topo.maars),
              "maar_addresses": maars,
              "cmd_address": CMD_ADDR, "openflow": lab.openflow(), "namespaces": list(lab.namespaces), "mns": {mn: list(p) for mn, p in topo.mns},
              "mn_ids": ids, "concurrent": topo.concurrent, "reattach": lab.reattach, "mn_rs": lab.rs,
              "t_start": t_start, "t_stop": t_stop,
              "old_addresses": old_addr, "registrations": list(registrations.values()), "handovers": handovers,
              "steps": step_summary(handovers), "tunnel_packets_seen": len(tunnelled),
              "cmd_stats": None if lab.mode is Mode.DISTRIBUTED else lab.rest("/dmm/v1/stats"),
              "wire_verdict": verdict, "restarts": crashes,
              "ha": None if faults is None else {"instances": {x["name"]: a for a, x in lab.instances.items()},
                                                 "redis": lab.redis, "faults": injected},
              "anchor_idle_timeout": lab.anchor_idle or None, "anchor_release": release,
              "max_pmaars_seen": max((h["pmaars_after"] for h in handovers), default=0),
              "ipsec": ipsec_report, "attack": attack}
    report["tcp"] = {mn: tcp_series(samples, t_stop) for mn, samples in tcp.items()}
    # path length and handover latency per handover, to set runs of other modes beside this one
    report["comparison"] = [{"handover": f"{h['mn']}: {h['from']}->{h['to']}",
                             "new_flow_tunnels": h["new_flow_tunnels"],
                             "signalling_ms": h["signalling_ms"], "s_maar_confirmed_ms": h["s_maar_confirmed_ms"],
                             "dataplane_ready_ms": h["dataplane_ready_ms"]}
                            for h in handovers]
    report["ok"] = (bool(verdict["ok"]) and all(handover_ok(h) for h in handovers)
                    and all(restart_mod.restart_ok(r) for r in crashes) and len(crashes) == len(restarts)
                    and (release is None or release["ok"]) and openflow_ok(report["openflow"])
                    and (ipsec_report is None or ipsec_report["underlay"]["ok"])
                    and (attack is None or attack["ok"])
                    and (faults is None or len(injected) == 2 and all(ha.fault_ok(r) for r in injected)))
    return report


def openflow_ok(of: dict) -> bool:
    """Every switch connected to the CMD the way the lab asked: ``ssl:`` (TLS) or ``tcp:``."""
    scheme = "ssl:" if of["tls"] else "tcp:"
    return all(s["is_connected"] and s["target"].startswith(scheme) for s in of["switches"].values())


def run_restarts(lab: Lab, log: EventLog, restarts: tuple[str, ...], ids: dict, dwell: float) -> list[dict]:
    """After the first step: crash the CMD, then the first MAAR of the first MN that moved (it anchors
    that MN's old prefix), as ``restarts`` asks; each followed by ``dwell``."""
    moved = [mn for mn, path in lab.topo.mns if len(path) > 1]
    done = []
    if "cmd" in restarts:
        done.append(restart_mod.crash_cmd(lab, moved, dwell))
    if "maar" in restarts and moved:
        victim = dict(lab.topo.mns)[moved[0]][0]
        anchored = {mn: ids[mn]["mn_id"] for mn in moved if dict(lab.topo.mns)[mn][0] == victim and lab.where[mn] != victim}
        done.append(restart_mod.crash_maar(lab, victim, anchored, dwell))
        log.restarted(victim)
    return done


def measure_restart(lab: Lab, r: dict, tcp: dict, handovers: list, log: EventLog) -> None:
    """A crash's cost, from the MNs' own pings and the CN's TCP log: per watched MN, the old ping's
    largest gap from just before the kill to the end of the crash's window and the pings lost, a
    reply after the part was back, and TCP bytes after that; and whether the next handover was ok."""
    back = r["t_back"]
    r["old_flows"] = {}
    for mn in r["mns"]:
        pings = ping_replies(lab.work / f"ping-old-{mn}.log")
        gap = old_flow_gap(pings, r["t_kill"] - 0.5, r["t_end"])
        r["old_flows"][mn] = {"interruption_ms": gap["old_flow_interruption_ms"], "lost_pings": gap["old_flow_lost_pings"],
                              "survived": any(back <= t <= r["t_end"] for t, _ in pings),
                              "tcp_kbytes_after_back": _kbytes(tcp[mn], back, r["t_end"])}
    if r["what"] == "cmd":
        r["agents_told_again"] = log.told_again(r["t_kill"], r["t_end"])
    nxt = [h for h in handovers if h["t_move"] >= r["t_end"]]
    r["next_handover_ok"] = handover_ok(nxt[0]) if nxt else None


def handover_ok(h: dict) -> bool:
    """DMM: new flows leave natively. Legacy: they share the old flows' path, through the LMA's tunnel
    unless the MN is at the LMA (``new_flow_tunnelled`` says which is expected)."""
    return (h["old_flow_survived"] and h["old_tcp_kbytes_after_settled"] > 0 and h["detected_after_move_ms"] >= 0
            and (h["old_flow_tunnelled_packets"] > 0) != h["old_flow_local"]
            and h["new_flow_replies"] > 0 and (h["new_flow_tunnelled_packets"] > 0) == h["new_flow_tunnelled"]
            and h["rest_consistent"] and h.get("wire_ok", False))


def step_summary(handovers: list) -> list:
    """Per step: who moved, how far apart the moves started, and whether they were all under way at
    once (every move started before any of them had settled)."""
    out = []
    for s in sorted({h["step"] for h in handovers}):
        hs = [h for h in handovers if h["step"] == s]
        out.append({"step": s, "mns": [h["mn"] for h in hs],
                    "move_spread_ms": round((max(h["t_move"] for h in hs) - min(h["t_move"] for h in hs)) * 1000, 1),
                    "overlapping": len(hs) > 1 and max(h["t_move"] for h in hs) < min(h["t_settled"] for h in hs)})
    return out


def run_step(lab: Lab, log: EventLog, movers: list, concurrent: bool, ids: dict, old_addr: dict,
             prefixes: dict) -> list:
    """Move every MN of this step: one after the other, or all at once (threads released together)."""
    def one(mn, visited, to, barrier=None):
        return handover(lab, log, mn, ids[mn]["mn_id"], visited, to, old_addr[mn], prefixes[mn], barrier)
    if not concurrent or len(movers) == 1:
        return [one(*m) for m in movers]
    barrier = threading.Barrier(len(movers))
    results: list = [None] * len(movers)

    def worker(i, m):
        try:
            results[i] = one(*m, barrier)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread below
            results[i] = exc
            barrier.abort()
    threads = [threading.Thread(target=worker, args=(i, m), daemon=True) for i, m in enumerate(movers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        if isinstance(r, threading.BrokenBarrierError):
            continue
        if isinstance(r, BaseException):
            raise r
    for r in results:  # every worker broke on the barrier: report that
        if isinstance(r, BaseException):
            raise LabError(f"concurrent handovers: {r!r}")
    return results


def handover(lab: Lab, log: EventLog, mn: str, mn_id: str, visited: tuple, to: str, old_address: str,
             prefixes: dict, barrier: threading.Barrier | None = None) -> dict:
    previous = [m for m in dict.fromkeys(visited) if m != to]
    if lab.lma:  # legacy: the LMA is the one P-MAAR (unless the MN is there); the MAAR left is told too
        previous = [lab.lma] if to != lab.lma else []
    told = list(dict.fromkeys(previous + [visited[-1]] * (lab.lma is not None and visited[-1] != to)))
    if lab.anchor_idle:  # anchors go when idle: those the session still holds, and the MAAR it leaves
        kept = set(release_mod.anchors(lab, mn_id)) | {visited[-1]}
        previous = [m for m in previous if m in kept]
    released_before = sorted(set(visited) - set(previous) - {to})
    if barrier is not None:
        barrier.wait(30)
    t_move = time.time()
    steps = lab.move(mn, to)
    new_addr = wait_until(lambda: _address_in(lab, mn, to), 15, f"{mn}'s new address at {to}")

    def settled():
        # only this MN's events (by MN-ID), and none from before its move
        log.poll()
        trigger = log.first(to, mn_id, t_move, _is_trigger)
        conf = trigger and log.first(to, mn_id, trigger["t"], _is_served)
        moved = [log.first(p, mn_id, t_move, _is_moved) for p in told]
        return (trigger, conf, moved) if trigger and conf and all(moved) else None
    trigger, conf, moved = wait_until(settled, 10, f"{mn}'s handover to {to}")
    t_settled = time.time()
    t_detected, t_conf, t_moved = trigger["t"], conf["t"], [e["t"] for e in moved]
    j, ns = lab.mns[mn]
    new_flow = run("ip", "netns", "exec", ns, "ping", "-6", "-n", "-c", "3", "-i", "0.1", "-W", "1",
                   "-s", str(NEW_PING_SIZE), CN_ADDR, check=False)
    replies = len(re.findall(r"bytes from", new_flow))
    (lab.work / f"ping-new-{mn}-{to}.log").write_text(new_flow)
    involved = list(dict.fromkeys([to] + previous))
    if lab.flow_control == "maar":  # each MAAR's own switch, confirmed to its own agent
        ready = dataplane_ready(log, mn_id, involved, t_detected, t_settled)
        t_flows = max(ready.values())
        session = agent_session(lab, to, mn_id) if lab.mode is Mode.DISTRIBUTED else \
            lab.rest(f"/dmm/v1/sessions/{mn_id}")
        installed = {m: len(lab.maars[m].flows()) for m in lab.topo.maars}
    else:  # the CMD pushes every switch's flows at once and confirms them together
        session = wait_until(lambda: (lambda s: s if s["flows_confirmed"] and s["flows_confirmed"]["pushed_at"] > t_detected
                                     else None)(lab.rest(f"/dmm/v1/sessions/{mn_id}")), 5,
                            f"{mn}'s flows confirmed by barrier")
        t_flows = session["flows_confirmed"]["confirmed_at"]
        ready = {m: t_flows for m in involved}
        installed = {m: lab.rest(f"/dmm/v1/maars/{m}/flows")["installed_count"] for m in lab.topo.maars}
    new_prefix = _prefix(lab, to, new_addr)
    previous_prefixes = {m: prefixes.get(m, new_prefix) for m in previous}
    prefixes[to] = new_prefix
    return {
        "mn": mn, "mn_id": mn_id, "from": visited[-1], "to": to, "t_move": t_move, "t_settled": t_settled,
        "new_address": new_addr,
        # the MN's own prefixes (its addresses' /64), not the MAARs' whole pools: with several MNs a
        # pool holds other MNs' prefixes too
        "old_prefix": _prefix(lab, visited[0], old_address), "new_prefix": new_prefix,
        "previous_prefixes": previous_prefixes,
        # the MAARs the CMD's PBU* goes to, the HNP of the new MAAR's PBU (legacy: ALL_ZERO, a MAG asking
        # the LMA for the prefix), and whether the new flow should be tunnelled (legacy, away from the LMA)
        "told": {m: previous_prefixes.get(m, new_prefix) for m in told},
        "pbu_hnp": "::/0" if lab.lma else new_prefix,
        "new_flow_tunnelled": lab.lma is not None and to != lab.lma,
        # attach trigger (the MN's first frame the new MAAR acted on) to the last of: S-MAAR
        # registration confirmed, P-MAARs switched, every switch's flows confirmed by barrier
        "signalling_ms": round((max([t_conf, t_flows] + t_moved) - t_detected) * 1000, 3),
        "flows_confirmed_ms": round((t_flows - t_detected) * 1000, 3),
        "s_maar_confirmed_ms": round((t_conf - t_detected) * 1000, 3),
        # per MAAR involved (the new one first): detected -> its switch's flows for this MN confirmed;
        # with flow_control = cmd one time for all (the CMD confirms every switch's push together)
        "dataplane_ready_ms": {m: round((t - t_detected) * 1000, 3) for m, t in ready.items()},
        # the link move (the floor of any interruption): when each step ended; link_move_ms: the MN
        # can reach the new switch from then on
        "move_steps_ms": steps, "link_move_ms": max(steps.values()),
        # the MN on no switch at all: its port gone from the old one until its link is up at the new one
        "link_gap_ms": round(steps["link_up"] - steps["del_port"], 1),
        "detected_by": trigger.get("via", "rs"),
        "detected_after_move_ms": round((t_detected - t_move) * 1000, 1),
        # the agents' events this handover's figures come from: all of them this MN's
        "events": {"trigger": trigger, "served": conf, "moved": moved},
        "new_flow_replies": replies, "flows_installed": installed,
        "released_before_move": released_before, "pmaars_after": len(session["previous_maars"]),
        "rest_consistent": session["serving_maar"]["name"] == to
        and sorted(p["name"] for p in session["previous_maars"]) == sorted(previous),
    }


def ping_replies(path: Path) -> list[tuple[float, int]]:
    got = []
    for line in path.read_text().splitlines():
        m = re.match(r"\[(\d+\.\d+)\] .*icmp_seq=(\d+)", line)
        if m:
            got.append((float(m.group(1)), int(m.group(2))))
    return got


def old_flow_gap(pings: list, start: float, end: float) -> dict:
    """The largest gap between the old ping's replies from ``start`` to ``end``, and pings lost there."""
    window = [(t, s) for t, s in pings if start <= t <= end]
    gaps = [b[0] - a[0] for a, b in zip(window, window[1:])]
    seqs = [s for _, s in window]
    lost = (max(seqs) - min(seqs) + 1 - len(set(seqs))) if seqs else None
    return {"old_flow_interruption_ms": round(max(gaps) * 1000, 1) if gaps else None, "old_flow_lost_pings": lost}


def gre_inner(pcap: Path) -> list:
    """(time, inner source, inner destination, ICMPv6 echo length or None) of every tunnelled packet."""
    if not pcap.exists():
        return []
    out = run("tcpdump", "-n", "-tt", "-r", str(pcap), check=False)
    packets: list[str] = []  # one line per packet: tcpdump puts VXLAN's inner packet on its own line
    for line in out.splitlines():
        if re.match(r"\d+\.\d+ ", line) or not packets:
            packets.append(line)
        else:
            packets[-1] += " " + line
    found = []
    for line in packets:
        m = re.match(r"(\d+\.\d+) .*?(?:GREv0|VXLAN).*?IP6 ([0-9a-f:]+)(?:\.\d+)? > ([0-9a-f:]+)(?:\.\d+)?:", line)
        if m is None:
            continue
        try:
            echo = re.search(r"ICMP6, echo (?:request|reply).*?length (\d+)", line[m.end():])
            found.append((float(m.group(1)), ipaddress.IPv6Address(m.group(2)), ipaddress.IPv6Address(m.group(3)),
                          int(echo.group(1)) if echo else None))
        except ValueError:
            continue
    return found


def _tcp_samples(path: Path) -> list:
    """(time, bytes) of every read by the CN's sink."""
    return json.loads(path.read_text()) if path.exists() else []


def _kbytes(samples: list, start: float, end: float) -> float:
    return round(sum(n for t, n in samples if start <= t < end) / 1000, 1)


def tcp_series(samples: list, t_stop: float, bucket: float = TCP_BUCKET) -> list:
    """Throughput (bytes/s) per ``bucket``, up to the run's end only: the buckets after the flows were
    stopped (and the one cut short by it) would read as a drop."""
    if not samples:
        return []
    t0 = samples[0][0]
    bins: dict[int, int] = {}
    for t, n in samples:
        bins[int((t - t0) / bucket)] = bins.get(int((t - t0) / bucket), 0) + n
    return [[t0 + k * bucket, bins.get(k, 0) / bucket] for k in range(max(bins) + 1) if t0 + (k + 1) * bucket <= t_stop]


def plot(report: dict, path: Path) -> None:
    """One track per MN on one time axis (seconds since the run started, up to its end): the old TCP
    stream's throughput and that MN's moves, both in its colour and in the legend, each move
    labelled with the MAAR it went to."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    mns = list(report["tcp"])
    t0, t1 = report["t_start"], report["t_stop"]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(len(mns), 1, figsize=(11, 1.0 + 1.9 * len(mns)), sharex=True, squeeze=False)
    for i, mn in enumerate(mns):
        ax, colour = axes[i][0], colours[i % len(colours)]
        series = report["tcp"][mn]
        ax.plot([t - t0 for t, _ in series], [v / 1000 for _, v in series], color=colour,
                label=f"{mn}: old TCP flow, kB/s at the CN")
        moves = [h for h in report["handovers"] if h["mn"] == mn]
        for k, h in enumerate(moves):
            x = h["t_move"] - t0
            ax.axvline(x, color=colour, linestyle="--", linewidth=1,
                       label=f"{mn}: moves (to the MAAR named)" if k == 0 else None)
            ax.annotate(h["to"], xy=(x, 1.0), xycoords=("data", "axes fraction"), xytext=(2, -2),
                        textcoords="offset points", fontsize=7, color=colour, ha="left", va="top")
        ax.set_ylim(bottom=0, top=max([v / 1000 for _, v in series] + [1]) * 1.25)
        ax.set_ylabel(mn)
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
    axes[-1][0].set_xlim(0, t1 - t0)
    axes[-1][0].set_xlabel(f"seconds since the run started (cut at its end, {t1 - t0:.1f} s, when the flows stop)")
    fig.suptitle(f"ryu-dmm lab, {report['mode']} mode, {report['tunnel']}"
                 f"{', concurrent moves' if report['concurrent'] and len(mns) > 1 else ''}: "
                 "each MN's old flow across its handovers", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def print_report(report: dict) -> None:
    print(f"\nryu-dmm lab, {report['mode']} mode, flows by the {report['flow_control'].upper()}, {report['tunnel']}, "
          f"{'concurrent' if report['concurrent'] else 'sequential'} moves, re-attachment by {report['reattach']}"
          f"{'' if report['mn_rs'] else ', MNs never solicit'}; old addresses: {report['old_addresses']}")
    ipsec_report = report.get("ipsec")
    print("IPsec: off (--no-ipsec)" if ipsec_report is None else
          f"IPsec: SAs up in {ipsec_report['sa_setup_s']} s; on the underlay (tshark): {ipsec_report['underlay']}; "
          f"plaintext dropped: {ipsec_report['plaintext_dropped']}")
    print("signalling: from the MN's first frame the new MAAR acted on (detected: by what, and when after the")
    print("move started) until its registration is confirmed, the P-MAARs have switched and every switch has")
    print("confirmed its flows by barrier (flows: that last part alone); move: the link move itself, until the")
    print("MN can reach the new switch; old TCP: kB the CN received on the old flow from the handover settling to")
    print("that MN's next move (or the run's end); new tunnels: tunnels the new flow's packets crossed each way")
    print("(its tunnelled packets on the underlay per ping and reply); wire: tshark's verdict")
    print(f"{'handover':22} {'signalling':>10} {'flows':>7} {'move':>6} {'detected':>12} {'old flow':>9} {'lost':>5} "
          f"{'old via':>8} {'new flow':>9} {'new via':>8} {'new':>7} {'old TCP':>8}  REST  wire")
    print(f"{'':22} {'ms':>10} {'ms':>7} {'ms':>6} {'ms':>12} {'gap ms':>9} {'pings':>5} {'tunnel':>8} {'replies':>9} "
          f"{'tunnel':>8} {'tunnels':>7} {'kB':>8}")
    for h in report["handovers"]:
        detected = f"{h['detected_after_move_ms']:.1f} {h['detected_by']}"
        print(f"{h['mn'] + ': ' + h['from'] + '->' + h['to']:22} {h['signalling_ms']:10.3f} "
              f"{h['flows_confirmed_ms']:7.3f} {h['link_move_ms']:6.1f} {detected:>12} {h['old_flow_interruption_ms']!s:>9} "
              f"{h['old_flow_lost_pings']!s:>5} {h['old_flow_tunnelled_packets']:8d} {h['new_flow_replies']:9d} "
              f"{h['new_flow_tunnelled_packets']:8d} {h['new_flow_tunnels']!s:>7} "
              f"{h['old_tcp_kbytes_after_settled']:8.1f}  "
              f"{'ok' if h['rest_consistent'] else 'BAD':4}  {'ok' if h.get('wire_ok') else 'BAD'}")
    if report["flow_control"] == "maar":
        print("data plane ready (each MAAR's own switch confirmed the MN's flows), ms after detection:")
        for h in report["handovers"]:
            print(f"  {h['mn'] + ': ' + h['from'] + '->' + h['to']:22} "
                  + ", ".join(f"{m}{' (S-MAAR)' if m == h['to'] else ''} {ms:.3f}" for m, ms in h["dataplane_ready_ms"].items()))
    for st in report["steps"]:
        if len(st["mns"]) > 1:
            print(f"step {st['step']}: {', '.join(st['mns'])} moved within {st['move_spread_ms']} ms of each other"
                  f"{', all under way at once' if st['overlapping'] else ''}")
    w = report["wire_verdict"]
    if "error" in w:
        print(f"wire verdict: FAIL ({w['error']})")
    else:
        print(f"wire verdict ({w['tool']}, {w['frames']} frames): {w['pbus']} PBUs, {w['pbas']} PBAs"
              f"{', ' + str(w['direct_pbas']) + ' direct P-MAAR PBAs' if w['direct_pbas'] else ''}; "
              f"unanswered {len(w['unanswered'])}, malformed {len(w['malformed'])}, expert errors "
              f"{len(w['expert_errors'])}, stray PBAs {len(w['stray_pbas'])}, rejected {len(w['rejected'])}, "
              f"sequence regressions {len(w['seq_regressions'])}; registrations "
              f"{sum(r['ok'] for r in w['registrations'])}/{len(w['registrations'])} and handovers "
              f"{sum(x['ok'] for x in w['per_handover'])}/{len(w['per_handover'])} as the RFCs say: "
              f"{'PASS' if w['ok'] else 'FAIL'}")
        for x in w["registrations"] + w["per_handover"] + [{"problems": w["problems"]}]:
            for problem in x["problems"]:
                print(f"  {x.get('mn', '')} {x.get('to', x.get('maar', ''))}: {problem}")
    for r in report["restarts"]:
        print(restart_mod.describe(r))
    for r in (report["ha"] or {}).get("faults", []):
        print(ha.describe(r))
    if report["anchor_release"]:
        print(release_mod.describe(report["anchor_release"]))
    if report["anchor_idle_timeout"]:
        print(f"longest P-MAAR list after a handover: {report['max_pmaars_seen']}")
    print(f"tunnelled packets captured on the underlay: {report['tunnel_packets_seen']}; "
          f"overall: {'PASS' if report['ok'] else 'FAIL'}")


def ha_check(args) -> None:
    """--cmds and --store redis go together, and with nothing the HA scenario does not handle."""
    if args.cmds != 1 and not ha.MIN_CMDS <= args.cmds <= ha.MAX_CMDS:
        raise ValueError(f"--cmds {args.cmds}: between {ha.MIN_CMDS} and {ha.MAX_CMDS} CMD instances (1: the usual lab)")
    if args.cmds > 1 and args.store != "redis":
        raise ValueError(f"--cmds {args.cmds}: several CMD instances share their sessions in Redis only: add "
                         "--store redis (make lab CMDS=3 STORE=redis)")
    if args.store == "redis" and args.cmds < 2:
        raise ValueError("--store redis: the lab runs Redis for its high-availability scenario only: add --cmds 2 "
                         "or more (make lab CMDS=3 STORE=redis)")
    if args.cmds > 1 and (args.restart or args.anchor_idle or args.flow_control == "maar"
                          or args.mode == Mode.DISTRIBUTED.value or args.attack):
        raise ValueError("--cmds: not with --restart, --anchor-idle, --flow-control maar, --mode distributed "
                         "or --attack")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ryu_dmm.lab", description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=[m.value for m in Mode], default="proxy")
    ap.add_argument("--lma", metavar="NAME", help="legacy mode: the MAAR acting as LMA (default: the first)")
    ap.add_argument("--topology", help="JSON topology file (default: 3 MAARs, one MN visiting them in turn)")
    ap.add_argument("--maars", type=int, default=3, help="MAARs in the default topology")
    ap.add_argument("--dwell", type=float, default=3.0, help="seconds at each MAAR (default topology)")
    ap.add_argument("--tunnel", choices=["gre", "vxlan"], default="gre", help="tunnel ports (GRE or VXLAN over IPv6)")
    ap.add_argument("--out", default="lab-out", help="folder for report.json, the plot and the logs")
    ap.add_argument("--reattach", choices=list(REATTACH), default="carrier",
                    help="how an MN re-associates at a move: its link loses carrier and regains it at the new switch "
                         "(the default; its kernel resends MLD reports, no RS) or, with bounce, its interface also "
                         "goes down and up (its kernel then solicits)")
    ap.add_argument("--no-rs", dest="rs", action="store_false",
                    help="the MNs never send a Router Solicitation (sysctl router_solicitations=0): every "
                         "attachment is detected from other frames")
    ap.add_argument("--concurrent", action=argparse.BooleanOptionalAction, default=None,
                    help="MNs that move in the same step move at the same time (the default, also the topology's "
                         "\"concurrent\" field) or, with --no-concurrent, one after the other")
    ap.add_argument("--restart", default="", metavar="cmd,maar",
                    help="after the first step's handovers, kill -9 the CMD and start it again (cmd), then kill -9 "
                         "the agent and OVS of the MAAR anchoring the first moved MN's old prefix and bring them "
                         "back (maar); the report's \"restarts\" shows what each cost the old flows")
    ap.add_argument("--flow-control", choices=list(FLOW_CONTROL),
                    help="who programs the MAARs' switches: the CMD (the default) or each MAAR's agent its own "
                         "(the only choice in distributed mode; [dmm] flow_control, docs/flow-control.md)")
    ap.add_argument("--store", choices=list(domainconf.STORE_BACKENDS), default="sqlite",
                    help="the CMD's binding store ([store] backend): sqlite (the default; an accepted PBA waits for "
                         "its commit, docs/store.md), memory (nothing waits; for timing the modes alone) or redis "
                         "(with --cmds: the high-availability scenario)")
    ap.add_argument("--anchor-idle", type=float, default=0.0, metavar="T",
                    help="[timers] anchor_idle_timeout (1..): old anchors go after T idle seconds; after the last "
                         "step the first MN that moved has its old flows stopped, the others' keep running, and the "
                         "report's \"anchor_release\" shows which anchors went, when, and the evidence")
    ap.add_argument("--cmds", type=int, default=1, metavar="N",
                    help="the high-availability scenario: N CMD instances (2..8) active-active on Redis (a primary, "
                         "a replica, three sentinels) with OpenFlow roles; needs --store redis. The master instance "
                         "is killed after the first step, the Redis primary after the second (docs/lab.md)")
    ap.add_argument("--of-plain", dest="of_tls", action="store_false",
                    help="OpenFlow between the CMD and the switches in plain TCP (default: TLS with keys of a "
                         "domain CA the lab makes; docs/security.md)")
    ap.add_argument("--no-ipsec", dest="ipsec", action="store_false",
                    help="plaintext signalling, to compare: no strongSwan, no require_ipsec (by default the CMD and "
                         "the MAARs talk through IKEv2/ESP, and the report's \"ipsec\" checks the underlay)")
    ap.add_argument("--attack", action="store_true",
                    help="after the last step a hostile namespace on the underlay spoofs PBUs from the CMD and a "
                         "MAAR against the first MN that moved; the report's \"attack\" says what changed")
    args = ap.parse_args(argv)
    try:
        restarts = restart_mod.parse_restarts(args.restart) if args.restart else ()
        ha_check(args)
        # the high-availability scenario needs three steps: a fault after each of the first two, then a handover
        maars = max(args.maars, 4) if args.cmds > 1 else args.maars
        topo = topo_mod.load(args.topology) if args.topology else topo_mod.default(maars, args.dwell)
        if args.cmds > 1 and max(len(p) for _, p in topo.mns) < 4:
            raise ValueError("--cmds: the topology needs an MN with at least 4 MAARs on its path (three steps: the "
                             "CMD killed after the first, Redis's primary after the second)")
        if args.concurrent is not None:
            topo = topo_mod.with_concurrency(topo, args.concurrent)
        if args.lma is not None and (args.mode != Mode.LEGACY.value or args.lma not in topo.maars):
            raise ValueError(f"--lma {args.lma}: only with --mode legacy, naming one of {', '.join(topo.maars)}")
        if args.anchor_idle:
            Timers(anchor_idle_timeout=args.anchor_idle)  # refuses a value outside its bounds
        if args.mode == Mode.DISTRIBUTED.value and args.flow_control == "cmd":
            raise ValueError("--mode distributed has no CMD to program the switches: --flow-control maar only")
        args.flow_control = args.flow_control or ("maar" if args.mode == Mode.DISTRIBUTED.value else "cmd")
        if (args.flow_control == "maar" or args.mode == Mode.DISTRIBUTED.value) and (args.anchor_idle or restarts):
            # idle anchors are found from the CMD's flow counters; restarts are not adapted (docs/flow-control.md)
            what = "--mode distributed" if args.mode == Mode.DISTRIBUTED.value else "--flow-control maar"
            raise ValueError(f"{what}: not with --anchor-idle or --restart (the MAARs drive their own switches)")
        if args.attack and args.mode == Mode.DISTRIBUTED.value:  # the attack's verdict reads the CMD's sessions
            raise ValueError("--attack: not with --mode distributed (no CMD)")
        if args.cmds > 1 and args.ipsec:  # the lab's strongSwan set-up (lab/ipsec.py) knows one CMD address
            print("lab: --cmds: IPsec is off in the high-availability scenario (its set-up covers one CMD address)",
                  file=sys.stderr)
            args.ipsec = False
        preflight(args.ipsec)  # (so --cmds does not ask for strongSwan's tools)
    except (ValueError, LabError) as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ryu-dmm-lab-"))
    lab_args = (topo, Mode(args.mode), work, args.tunnel, args.reattach, args.rs, args.anchor_idle, args.lma,
                args.flow_control, args.store, args.of_tls, args.ipsec)
    lab = ha.HaLab(*lab_args, cmds=args.cmds) if args.cmds > 1 else Lab(*lab_args)
    lab.attack = args.attack

    def interrupted(_s, _f):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupted)
    code = 1
    try:
        t0 = time.monotonic()
        lab.build()
        print(f"lab: built in {time.monotonic() - t0:.1f} s ({len(topo.maars)} MAARs, {len(topo.mns)} MN(s))")
        report = run_scenario(lab, out, restarts, ha.Faults(lab) if args.cmds > 1 else None)
        (out / "report.json").write_text(json.dumps(report, indent=1))
        plot(report, out / "old-flow.png")
        print_report(report)
        print(f"report: {out / 'report.json'}; plot: {out / 'old-flow.png'}; logs and the captures "
              f"(underlay.pcap, signalling.pcap): {out}/logs")
        code = 0 if report["ok"] else 1
    except KeyboardInterrupt:
        print("\nlab: interrupted, cleaning up", file=sys.stderr)
        code = 130
    except LabError as exc:
        print(f"lab: {exc}", file=sys.stderr)
    finally:
        t0 = time.monotonic()
        lab.teardown()
        logs = out / "logs"
        logs.mkdir(exist_ok=True)
        kept = [work / "domain.ini", work / "underlay.pcap", work / "signalling.pcap",
                work / "underlay-signalling.pcap"]
        for f in work.glob("ipsec/*/run/charon.log"):  # each host's charon (lab/ipsec.py)
            (logs / f"{f.parent.parent.name}-charon.log").write_bytes(f.read_bytes())
        for f in list(work.glob("*.log")) + list(work.glob("ovs-*/*.log")) + list(work.glob("tcp-*.json")) + list(work.glob("ra-*.pcap")) + kept:
            if f.exists():
                (logs / f.name if f.parent == work else logs / f"{f.parent.name}-{f.name}").write_bytes(f.read_bytes())
        subprocess.run(["rm", "-rf", str(work)])
        print(f"lab: torn down in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
