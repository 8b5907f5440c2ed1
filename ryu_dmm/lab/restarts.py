"""``--restart cmd,maar``: crashes in the middle of the handover scenario, and what each costs.

After the first step's handovers (and its dwell) the lab ``kill -9``s the CMD and starts it again on
its binding store, then ``kill -9``s a MAAR that anchors a moved MN's old prefix: its agent, its
ovs-vswitchd and its ovsdb-server, and brings them back as it builds a MAAR (docs/store.md, "In
the lab"). The next step's handovers show that the restarted parts take part again. What must hold
comes from docs/store.md and from the switches and hosts themselves (ovs-ofctl's flows and their
ages, the MNs' pings, the CN's TCP receive log), not from the CMD's own account.
"""
from __future__ import annotations

import re
import time

from ..agent.main import request
from .common import wait_until
from .net import Lab, MaarNode

RESTARTS = ("cmd", "maar")  # what --restart may name, in the order the lab crashes them
# ovs-ofctl's per-flow counters and ages: left out of a flow's identity
_COUNTERS = re.compile(r"\s*(duration|n_packets|n_bytes|idle_age|hard_age)=[^,\s]+,?")
# A flow kept across the CMD's restart has aged by at least the time between the two dumps; one
# deleted and added again by the reconciliation is younger than that (ovs-ofctl shows ms).
AGE_SLACK = 0.2


def parse_restarts(text: str) -> tuple[str, ...]:
    """``cmd,maar`` -> ("cmd", "maar"), in the lab's order; ValueError names what is unknown."""
    names = {t.strip() for t in text.split(",") if t.strip()}
    unknown = names - set(RESTARTS)
    if unknown or not names:
        raise ValueError(f"--restart takes a comma-separated list of {', '.join(RESTARTS)}, not {text!r}")
    return tuple(r for r in RESTARTS if r in names)


def flow_table(m: MaarNode) -> dict[str, float]:
    """The switch's flows as ovs-ofctl reads them: each flow, without its counters -> its age in s."""
    flows = {}
    for line in m.sh("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", m.bridge).splitlines():
        age = re.search(r"duration=([\d.]+)s", line)
        if "cookie=" in line and age:
            flows[_COUNTERS.sub("", line).strip()] = float(age.group(1))
    return flows


def _tables(lab: Lab) -> dict[str, tuple[float, dict[str, float]]]:
    """Per switch: when its flows were read, and its flows."""
    return {name: (time.time(), flow_table(m)) for name, m in lab.maars.items()}


def _connected(lab: Lab) -> bool:
    return all(x["connected"] for x in lab.rest("/dmm/v1/maars")["maars"])


def crash_cmd(lab: Lab, mns: list[str], dwell: float) -> dict:
    """``kill -9`` the CMD, start it again, wait ``dwell``; ``mns``: whose old flows are watched.
    Every switch must keep every flow (none removed, none added again: each kept its age)."""
    before = _tables(lab)
    t_kill = time.time()
    lab.crash_cmd()
    lab.start_cmd()
    t_back = time.time()
    wait_until(lambda: _connected(lab), 20, "the switches reconnected to the restarted CMD")
    t_connected = time.time()
    time.sleep(dwell)
    after = _tables(lab)
    removed, added, readded = [], [], []
    for m, (t0, old) in before.items():
        t1, new = after[m]
        removed += [f"{m}: {f}" for f in old if f not in new]
        added += [f"{m}: {f}" for f in new if f not in old]
        readded += [f"{m}: {f}" for f, age in old.items() if f in new and new[f] < age + (t1 - t0) - AGE_SLACK]
    stats = lab.rest("/dmm/v1/stats")
    return {"what": "cmd", "mns": mns, "t_kill": t_kill, "t_back": t_back, "t_end": time.time(),
            "down_ms": round((t_back - t_kill) * 1000, 1),
            "switches_reconnected_ms": round((t_connected - t_kill) * 1000, 1),
            "flows_before": sum(len(f) for _, f in before.values()), "flows_after": sum(len(f) for _, f in after.values()),
            "flows_removed": len(removed), "flows_added": len(added), "flows_readded": len(readded),
            "changed_flows": {"removed": removed, "added": added, "readded": readded},
            "restored_sessions": stats["store"]["restored_sessions"],
            "restart_counter": stats["store"]["restart_counter"]}


def crash_maar(lab: Lab, name: str, mns: dict[str, str], dwell: float) -> dict:
    """``kill -9`` MAAR ``name``'s agent and OVS, bring back the switch, then the agent, wait
    ``dwell``. ``mns``: MN -> MN-ID of the moved MNs whose old prefix ``name`` anchors. Its switch
    gets back exactly the flows it had (the CMD reconciles them), then its agent the bindings it had
    (the CMD rebuilds them); each is waited for, at most 20 s, or the lab fails."""
    m = lab.maars[name]
    before = flow_table(m)
    bindings = {mn_id: request(lab.control(name), {"op": "state", "mn": mn_id})["bindings"].get(mn_id)
                for mn_id in mns.values()}
    peer = lab.rest("/dmm/v1/stats")["peers"][name]
    t_kill = time.time()
    lab.crash_maar(name)
    lab.rebuild_switch(name)
    t_switch = time.time()  # OVS and its bridges are up again, its controller set
    wait_until(lambda: set(flow_table(m)) == set(before), 20, f"{name}'s flows reconciled by the CMD")
    t_flows = time.time()
    lab.start_agent(name)
    t_agent = time.time()

    def rebuilt():
        state = request(lab.control(name), {"op": "state"})["bindings"]
        return all(state.get(mn_id) == b for mn_id, b in bindings.items())
    wait_until(rebuilt, 20, f"{name}'s bindings rebuilt by the CMD")
    t_rebuilt = time.time()
    time.sleep(dwell)
    after = lab.rest("/dmm/v1/stats")["peers"][name]

    def ms(t):
        return round((t - t_kill) * 1000, 1)
    return {"what": "maar", "maar": name, "mns": list(mns), "t_kill": t_kill, "t_back": t_flows, "t_end": time.time(),
            "switch_back_ms": ms(t_switch), "flows_back_ms": ms(t_flows), "agent_back_ms": ms(t_agent),
            "rebuilt_ms": ms(t_rebuilt), "rebuilt_after_agent_start_ms": round((t_rebuilt - t_agent) * 1000, 1),
            "flows": len(before), "bindings": bindings, "cmd_saw_restart": after["restarts"] == peer["restarts"] + 1,
            "restart_counter": [peer["restart_counter"], after["restart_counter"]]}


def describe(r: dict) -> str:
    """One line of the lab's printed report."""
    flows = "; ".join(f"{mn}'s old flow: gap {f['interruption_ms']} ms, {f['lost_pings']} ping(s) lost, "
                      f"{f['tcp_kbytes_after_back']} kB TCP after" for mn, f in r["old_flows"].items())
    if r["what"] == "cmd":
        head = (f"CMD kill -9: back in {r['down_ms']} ms, switches reconnected at {r['switches_reconnected_ms']} ms, "
                f"flows {r['flows_before']} -> {r['flows_after']} (removed {r['flows_removed']}, added "
                f"{r['flows_added']}, re-added {r['flows_readded']}), agents told again {r['agents_told_again']}")
    else:
        head = (f"{r['maar']} kill -9 (agent and OVS): its switch back at {r['switch_back_ms']} ms, its {r['flows']} "
                f"flows as before at {r['flows_back_ms']} ms, its agent at {r['agent_back_ms']} ms and rebuilt "
                f"by the CMD at {r['rebuilt_ms']} ms")
    return f"{head}; {flows or 'no old flow watched'}; next handover: {r['next_handover_ok']}"


def restart_ok(r: dict) -> bool:
    if not all(f["survived"] and f["tcp_kbytes_after_back"] > 0 for f in r["old_flows"].values()):
        return False
    if r.get("next_handover_ok") is False:
        return False
    if r["what"] == "cmd":
        return r["flows_removed"] == r["flows_added"] == r["flows_readded"] == 0 and r["agents_told_again"] == 0
    return r["cmd_saw_restart"]
