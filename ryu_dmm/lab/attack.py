"""The hostile host (``--attack``): a namespace on the underlay bridge that spoofs the signalling.

After the last step, against the first MN that moved (its prefix at the first MAAR is anchored
there and tunnelled to the MAAR now serving it), it sends three plaintext PMIPv6 messages, built
with the project's codec and sent from a raw socket with forged source addresses (scapy):

1. ``cmd_spoof_outsider``: "from the CMD" to the P-MAAR: a PBU whose Serving MAAR option names the
   hostile host itself (tunnel the MN's old prefix to me);
2. ``cmd_spoof_domain``: the same naming another MAAR of the domain;
3. ``maar_spoof``: "from a MAAR" (not the serving one) to the CMD: a PBU that registers the victim
   there with a prefix of that MAAR's pool (a handover the MN never made).

Then it compares what an observer outside the code sees: the CMD's session for the victim (REST),
every switch's flows (``ovs-ofctl dump-flows``, counters stripped), the victim's old ping, and the
counters where the attempts should show: the ``require_ipsec`` drops with IPsec, the agents' and
the CMD's protocol checks without.
"""
from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from ..wire import Prefix
from . import ipsec
from .common import LabError

HOSTILE = "2001:db8:ff::bad"
# The PBU is built just before it leaves, so that its Timestamp is fresh (RFC 5213's validity
# window is 300 ms): an attacker on the link has the right time too.
SEND = """
import json, sys, time
from scapy.all import IPv6, UDP, Raw, send
from ryu_dmm.mobility import messages as M
from ryu_dmm.wire import Prefix, encode
src, dst, a = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
for i in range(a["copies"]):
    pbu = M.pbu(a["seq"] + i, time.time(), a["mn_id"], Prefix.parse(a["prefix"]), 3600, a["handoff"], 3,
                bytes.fromhex(a["mac"]), serving=a["serving"])
    send(IPv6(src=src, dst=dst) / UDP(sport=5436, dport=5436) / Raw(encode(pbu)), verbose=False)
"""
COPIES = 3
_COUNTERS = re.compile(r"(duration|n_packets|n_bytes|idle_age|hard_age)=[^,\s]+,?\s*")


def _flows(lab) -> dict:
    return {name: sorted(_COUNTERS.sub("", f) for f in m.flows()) for name, m in lab.maars.items()}


def _agent_protocol(lab) -> dict:
    from ..agent.main import request
    out = {}
    for name in lab.maars:
        try:
            out[name] = request(lab.control(name), {"op": "state"}, 2.0).get("protocol", {})
        except OSError:
            out[name] = None
    return out


def _session(lab, mn_id: str) -> dict:
    s = lab.rest(f"/dmm/v1/sessions/{mn_id}")
    return {"serving_maar": s["serving_maar"]["name"], "prefix": s["prefix"],
            "previous_maars": [(p["name"], p["prefix"]) for p in s["previous_maars"]]}


def run_attack(lab, mn: str, mn_id: str, mac: str, path: list, ping_log: Path, ping_replies) -> dict:
    maars = {n: m.info for n, m in lab.maars.items()}
    serving, anchor = path[-1], path[0]
    if serving == anchor:
        raise LabError("--attack needs an MN whose path ends away from its first MAAR")
    other = next(n for n in maars if n not in (serving, anchor)) if len(maars) > 2 else anchor
    ns = f"{lab.core_ns}h"
    lab.ns_add(ns)
    lab.veth("hx", ns, "hk", lab.core_ns)
    subprocess.run(["ip", "-n", lab.core_ns, "link", "set", "hk", "master", "br0"], check=True)
    subprocess.run(["ip", "-n", ns, "addr", "add", f"{HOSTILE}/64", "dev", "hx", "nodad"], check=True)
    old_prefix = None  # the MN's prefix at its anchor, from the CMD's session
    before = {"session": _session(lab, mn_id), "flows": _flows(lab), "agents": _agent_protocol(lab),
              "cmd_protocol": lab.rest("/dmm/v1/stats").get("protocol")}
    for name, prefix in before["session"]["previous_maars"]:
        if name == anchor:
            old_prefix = Prefix.parse(prefix)
    if old_prefix is None:
        raise LabError(f"--attack: {mn_id} has no anchor at {anchor} in the CMD's session: {before['session']}")
    pbu = {"mn_id": mn_id, "mac": mac.replace(":", ""), "copies": COPIES}
    pool = ipaddress.IPv6Network(str(maars[other].pool))
    fake = Prefix.parse(f"{pool.network_address + (0xBAD << 64)}/64")  # in that MAAR's pool, bound to no one
    attempts = [
        ("cmd_spoof_outsider", lab.domain.cmd_address, maars[anchor].address,
         {**pbu, "seq": 40001, "prefix": str(old_prefix), "handoff": 1, "serving": HOSTILE}),
        ("cmd_spoof_domain", lab.domain.cmd_address, maars[anchor].address,
         {**pbu, "seq": 40011, "prefix": str(old_prefix), "handoff": 1, "serving": maars[other].address}),
        ("maar_spoof", maars[other].address, lab.domain.cmd_address,
         {**pbu, "seq": 40021, "prefix": str(fake), "handoff": 2, "serving": None}),
    ]
    t0 = time.time()
    sent = []
    for name, src, dst, fields in attempts:
        out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", SEND, src, dst, json.dumps(fields)],
                             capture_output=True, text=True, timeout=60)
        sent.append({"attempt": name, "src": src, "dst": dst, "copies": COPIES, "ok": out.returncode == 0,
                     **({"error": out.stderr.strip()[-300:]} if out.returncode else {})})
        time.sleep(0.3)
    time.sleep(1.5)
    t1 = time.time()
    after = {"session": _session(lab, mn_id), "flows": _flows(lab), "agents": _agent_protocol(lab),
             "cmd_protocol": lab.rest("/dmm/v1/stats").get("protocol")}
    replies = [t for t, _ in ping_replies(ping_log) if t0 <= t <= t1]
    gaps = [b - a for a, b in zip([t0] + replies, replies + [t1])]
    dropped = {h.name: ipsec.dropped(h) for h in lab.ipsec_hosts}
    hostile_mac = json.loads(subprocess.run(["ip", "-n", ns, "-j", "link", "show", "hx"], capture_output=True,
                                            text=True, check=True).stdout)[0]["address"]
    report = {"victim": mn, "mn_id": mn_id, "hostile_mac": hostile_mac, "anchor": anchor, "serving": serving,
              "spoofed_maar": other, "spoofed_prefix": str(fake),
              "attempts": sent, "session_unchanged": before["session"] == after["session"],
              "session_before": before["session"], "session_after": after["session"],
              "flows_unchanged": before["flows"] == after["flows"],
              "flows_changed_at": [n for n in before["flows"] if before["flows"][n] != after["flows"].get(n)],
              "old_ping_replies": len(replies), "old_ping_largest_gap_ms": round(max(gaps) * 1000, 1),
              "agents_protocol_before": before["agents"], "agents_protocol_after": after["agents"],
              "cmd_protocol_before": before["cmd_protocol"], "cmd_protocol_after": after["cmd_protocol"],
              "ipsec_dropped": dropped or None}
    report["ok"] = (all(s["ok"] for s in sent) and report["session_unchanged"] and report["flows_unchanged"]
                    and len(replies) > 0) if lab.ipsec else all(s["ok"] for s in sent)
    return report
