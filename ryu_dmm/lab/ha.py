"""``--cmds N --store redis``: the high-availability scenario (issue 10 item 6, docs/lab.md).

N CMD instances in the core namespace (2001:db8:ff::100, ::101, ...), active-active on one Redis
with OpenFlow roles ([roles] redis = store); every switch connects to every instance, every agent
has the list of instances ([dmm] cmd_addresses). Redis is a primary, a replica and three sentinels,
each on its own loopback port inside the core namespace, started and stopped (by pid) by
``redisd.py`` run there. The first instance meets the switches alone, so it is master of every
switch and every agent's current CMD when the run starts.

After the first step the master instance is killed with SIGKILL; after the second, the Redis
primary. Each fault is watched from outside the CMDs: OVS's own controller records (which
connection is master), every agent's current CMD, the survivors' REST, and afterwards the MNs'
pings and the CN's TCP log (``measure_restart`` in __main__.py).
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time

from .. import ca, domainconf
from ..agent.main import mn_id_of, request
from .common import LabError, wait_until
from .net import BIN, CMD_ADDR, OF_PORT, PACKET_IN_BURST, PACKET_IN_RATE, REST_PORT, Lab, MaarNode, run

MIN_CMDS, MAX_CMDS = 2, 8
TAKE_OVER = 3.0  # seconds (issue 10 items 3 and 4): a survivor is master of every switch, agents moved
# planted on every switch just before the master's kill: no session wants it (a prefix of no pool), so
# only a new master reconciling the switch removes it (as tests/test_roles_ovs.py's drift)
DRIFT = "table=2,priority=5,cookie=0x99,ipv6,ipv6_dst=2001:db8:77::/64,actions=drop"
MAX_BACKOFF_MS = 1000  # OVS's reconnection back-off cap per controller (docs/openflow-roles.md)


def cmd_address(i: int) -> str:
    """The i-th instance's address (0: the lab's usual CMD address)."""
    return CMD_ADDR if i == 0 else f"2001:db8:ff::{0x100 + i:x}"


class HaLab(Lab):
    """The lab with N CMD instances on a Redis cluster (see the module docstring)."""

    def __init__(self, *args, cmds: int, **kwargs) -> None:
        if not MIN_CMDS <= cmds <= MAX_CMDS:
            raise ValueError(f"--cmds: between {MIN_CMDS} and {MAX_CMDS} instances")
        super().__init__(*args, **kwargs)
        self.addresses_cmd = [cmd_address(i) for i in range(cmds)]
        self.domain = dataclasses.replace(self.domain, cmd_addresses=tuple(self.addresses_cmd))
        self.instances = {a: {"name": f"cmd{i + 1}", "rest": REST_PORT + i, "proc": None}
                          for i, a in enumerate(self.addresses_cmd)}
        self.redis_proc: subprocess.Popen | None = None
        self.redis: dict = {}  # role -> {"port", "pid"} (cluster.json)
        self._mn_ids: dict[str, str] = {}

    # ---- the instances ---------------------------------------------------------------------------
    def alive(self) -> list[str]:
        return [a for a, x in self.instances.items() if x["proc"] is not None and x["proc"].poll() is None]

    def _write_config(self) -> None:
        sentinels = tuple(("127.0.0.1", p["port"]) for p in self.redis_listing() if p["role"] == "sentinel")
        for addr, x in self.instances.items():
            store = domainconf.StoreSettings(backend="redis", dir="dmm-state", sentinels=sentinels,
                                             active_active=True, instance=x["name"])
            settings = domainconf.CmdSettings(listen=addr, tunnel=self.tunnel, switches=self._switch_settings(), store=store,
                                              roles=domainconf.RoleSettings(redis="store"))
            domain = dataclasses.replace(self.domain, cmd_address=addr)
            text = domainconf.render(domain, settings, store=store,
                                     ryu={"wsapi_host": "127.0.0.1", "wsapi_port": x["rest"]})
            (self.work / f"{x['name']}.ini").write_text(text)
        # the agents' file: the first instance's, whose [dmm] cmd_addresses lists them all
        (self.work / "domain.ini").write_text((self.work / "cmd1.ini").read_text())

    def redis_listing(self) -> list[dict]:
        """Redis's processes as cluster.json lists them; the first call starts them (redisd in the
        core namespace), before the CMDs' files are written: they name the sentinels' ports."""
        if self.redis_proc is None:
            folder = self.work / "redis"
            folder.mkdir()
            self.redis_proc = self.start(self.core_ns, [sys.executable, "-m", "ryu_dmm.lab.redisd", str(folder)],
                                         "redisd.log")
            wait_until(lambda: (folder / "cluster.json").exists() or self.redis_proc.poll() is not None, 60,
                       "Redis (a primary, a replica, three sentinels)")
            if self.redis_proc.poll() is not None:
                raise LabError(f"Redis did not start: {(self.work / 'redisd.log').read_text()[-500:]}")
            listing = json.loads((folder / "cluster.json").read_text())["processes"]
            self.redis = {p["role"]: p for p in listing if p["role"] != "sentinel"}
            self.redis["sentinels"] = [p for p in listing if p["role"] == "sentinel"]
        return [*self.redis["sentinels"], self.redis["primary"], self.redis["replica"]]

    def _make_keys(self) -> None:
        folder = self.work / "pki"
        authority = ca.create_ca(folder, "ryu-dmm lab CA")
        for addr, x in self.instances.items():
            self.pki[x["name"]] = ca.issue(authority, folder, x["name"], ips=(addr,))
        for name, m in self.maars.items():
            self.pki[name] = ca.issue(authority, folder, f"switch-{name}", ips=(m.info.address,))

    def start_cmd(self) -> None:
        """Every instance (the first is the one the switches meet first: _connect)."""
        for addr in self.addresses_cmd[1:]:
            run("ip", "-n", self.core_ns, "addr", "add", f"{addr}/64", "dev", "br0", "nodad")
        for addr, x in self.instances.items():
            if self.of_tls:
                keys = self.pki[x["name"]]
                listen = ["--ofp-ssl-listen-port", str(OF_PORT), "--ctl-privkey", str(keys.key), "--ctl-cert",
                          str(keys.cert), "--ca-certs", str(keys.ca_cert)]
            else:
                listen = ["--ofp-tcp-listen-port", str(OF_PORT)]
            x["proc"] = self.start(self.core_ns, [str(BIN / "ryu-manager"), "--config-file",
                                                  str(self.work / f"{x['name']}.ini"), "--ofp-listen-host", addr,
                                                  *listen, "ryu_dmm.cmd"], f"{x['name']}.log")
        for x in self.instances.values():
            wait_until(lambda x=x: super(HaLab, self).rest("/dmm/v1/stats", x["rest"]), 30, f"{x['name']}'s REST API")
        self.cmd = self.instances[CMD_ADDR]["proc"]

    def _target(self, addr: str) -> str:
        return f"{'ssl' if self.of_tls else 'tcp'}:[{addr}]:{OF_PORT}"

    def _connect(self, m: MaarNode, addrs: list[str] | None = None) -> None:
        """The switch's controllers: the first instance alone (it becomes master of every switch),
        then, with ``addrs``, every instance (``build``)."""
        if self.of_tls and addrs is None:
            keys = self.pki[m.info.name]
            m.vsctl("set-ssl", str(keys.key), str(keys.cert), str(keys.ca_cert))
        m.vsctl("set-controller", m.bridge, *[self._target(a) for a in (addrs or self.addresses_cmd[:1])])
        for uuid in m.vsctl("get", "bridge", m.bridge, "controller").strip("[]\n ").split(","):
            m.vsctl("set", "controller", uuid.strip(), f"controller_rate_limit={PACKET_IN_RATE}",
                    f"controller_burst_limit={PACKET_IN_BURST}", f"max_backoff={MAX_BACKOFF_MS}")

    def build(self) -> None:
        super().build()
        first = CMD_ADDR
        wait_until(lambda: all(self.master_of(n) == first for n in self.maars), 20,
                   f"{self.instances[first]['name']} master of every switch")
        for m in self.maars.values():
            self._connect(m, self.addresses_cmd)
        wait_until(lambda: all(len(self.controllers(n)) == len(self.addresses_cmd)
                               and all(c["is_connected"] for c in self.controllers(n)) for n in self.maars), 30,
                   "every switch connected to every instance")

    # ---- views from outside the CMDs -------------------------------------------------------------
    def controllers(self, maar: str) -> list[dict]:
        """The switch's controller records as its own OVS reports them: target, role, is_connected. Its
        database's Unix socket is reached from here, without entering its namespace: a poll costs one
        short process (the take-over times are polled)."""
        out = json.loads(run("ovs-vsctl", f"--db=unix:{self.maars[maar].ovs.db}", "--timeout=10", "--format=json",
                             "--columns=target,role,is_connected", "list", "controller"))
        return [{"target": t, "role": r if isinstance(r, str) else "", "is_connected": c is True}
                for t, r, c in out["data"]]

    def master_of(self, maar: str) -> str | None:
        """The instance address OVS holds as the switch's master (connected), or None."""
        for c in self.controllers(maar):
            if c["role"] == "master" and c["is_connected"]:
                return next(a for a in self.addresses_cmd if c["target"] == self._target(a))
        return None

    def rest(self, path: str, port: int | None = None):
        """REST of ``port``, else of the instance that is master of the switch the path is about (a
        switch's flows, or an MN's session: its serving MAAR's), else of the first live instance."""
        if port is None:
            maar = next((m for m in self.maars if path.startswith(f"/dmm/v1/maars/{m}/")), None)
            if maar is None and path.startswith("/dmm/v1/sessions/"):
                maar = next((self.where[mn] for mn in self.mns if path.endswith(self.mn_id(mn))), None)
            master = self.master_of(maar) if maar else None
            port = self.instances[master if master in self.alive() else self.alive()[0]]["rest"]
        return super().rest(path, port)

    def mn_id(self, mn: str) -> str:
        if mn not in self._mn_ids:
            self._mn_ids[mn] = mn_id_of(bytes.fromhex(self.mac(mn).replace(":", "")))
        return self._mn_ids[mn]

    def openflow(self) -> dict:
        """Per switch, its controllers as its own OVS reports them; ``is_connected``: to a live instance."""
        live = {self._target(a) for a in self.alive()}
        switches = {}
        for name in self.maars:
            cs = self.controllers(name)
            switches[name] = {"target": " ".join(c["target"] for c in cs), "controllers": cs,
                              "is_connected": any(c["is_connected"] and c["target"] in live for c in cs)}
        return {"tls": self.of_tls, "switches": switches}

    def agent_cmd(self, name: str) -> str:
        """The agent's current CMD, as the agent says."""
        return request(self.control(name), {"op": "state"}, 1.0)["cmd"]["current"]

    def agent_cmds(self) -> dict[str, str]:
        return {name: self.agent_cmd(name) for name in self.maars}

    def sessions_on(self, addr: str, mn_ids: dict[str, str]) -> dict[str, str | None]:
        """MN -> its serving MAAR as instance ``addr``'s REST shows its session (None: not found)."""
        got = {}
        for mn, mn_id in mn_ids.items():
            try:
                got[mn] = self.rest(f"/dmm/v1/sessions/{mn_id}", self.instances[addr]["rest"])["serving_maar"]["name"]
            except (LabError, ValueError, KeyError):
                got[mn] = None
        return got


class Faults:
    """The scenario's faults, one after each of the first two steps."""

    def __init__(self, lab: HaLab) -> None:
        self.lab = lab
        self.cmd_of: list[tuple[float, dict[str, str]]] = []  # (since, each agent's current CMD)

    def after_step(self, step: int, ids: dict, dwell: float) -> list[dict]:
        if not self.cmd_of:
            self.cmd_of.append((0.0, self.lab.agent_cmds()))
        if step == 1:
            return [self.kill_master(ids, dwell)]
        if step == 2:
            return [self.kill_redis_primary(ids, dwell)]
        return []

    def kill_master(self, ids: dict, dwell: float) -> dict:
        """SIGKILL the instance OVS holds as master of the most switches; then wait for a survivor to
        have written to each switch (the drift planted before the kill removed: only a master
        writes), every agent to move off the dead one, and every MN's session on every survivor's
        REST. (OVS's own role column lags by seconds: NOTES.md; it is read again at the end.)"""
        lab = self.lab
        masters = [lab.master_of(n) for n in lab.maars]
        victim = max(set(masters) - {None}, key=masters.count)
        proc = lab.instances[victim]["proc"]
        for n, m in lab.maars.items():
            run("ovs-ofctl", "-O", "OpenFlow13", "add-flow", f"unix:{m.ovs.dir}/{m.bridge}.mgmt", DRIFT)
        t_kill = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

        def undone(m: MaarNode) -> bool:
            return "cookie=0x99," not in run("ovs-ofctl", "-O", "OpenFlow13", "dump-flows",
                                              f"unix:{m.ovs.dir}/{m.bridge}.mgmt", "table=2")
        checks = {("switch", n): (lambda m=m: undone(m)) for n, m in lab.maars.items()}
        checks.update({("agent", n): (lambda n=n: lab.agent_cmd(n) != victim) for n in lab.maars})
        seen = first_times(checks, 15)
        seen.update(first_times(self._visible_checks(ids), 10))
        self.cmd_of.append((t_kill, lab.agent_cmds()))
        r = {"what": "cmd-master", "killed": lab.instances[victim]["name"], "killed_address": victim,
             "masters_before": dict(zip(lab.maars, (lab.instances[a]["name"] if a else None for a in masters))),
             "switch_master_after_ms": _ms(seen, "switch", t_kill), "agent_moved_after_ms": _ms(seen, "agent", t_kill)}
        masters_at = [seen[("switch", n)] for n in lab.maars]
        r.update(self._after(t_kill, max(masters_at) if None not in masters_at else time.time(), seen, ids, dwell))
        return r

    def kill_redis_primary(self, ids: dict, dwell: float) -> dict:
        """SIGKILL the Redis primary (by pid); then wait for the sentinels to name the replica, a
        master for every switch again, and every MN's session on every survivor's REST."""
        lab = self.lab
        primary, replica = lab.redis["primary"], lab.redis["replica"]
        t_kill = time.time()
        os.kill(primary["pid"], signal.SIGKILL)
        seen = first_times({("promoted", s["port"]): (lambda s=s: self._sentinel_primary(s["port"]) == replica["port"])
                            for s in lab.redis["sentinels"]}, 20)
        promoted = list(seen.values())
        # the sessions as the survivors read them from the promoted replica (while Redis is away an
        # instance answers from its own cache: that would prove nothing)
        seen.update(first_times(self._visible_checks(ids), 10))
        r = {"what": "redis-primary", "killed": f"redis primary :{primary['port']} (pid {primary['pid']})",
             "promoted_after_ms": None if None in promoted else round((max(promoted) - t_kill) * 1000, 1)}
        r.update(self._after(t_kill, max(promoted) if None not in promoted else time.time(), seen, ids, dwell))
        return r

    def _visible_checks(self, ids: dict) -> dict:
        """Per survivor and MN: its REST shows the MN's session served where the MN is."""
        lab = self.lab
        return {("session", f"{lab.instances[a]['name']} {mn}"):
                (lambda a=a, mn=mn, mn_id=v["mn_id"]: lab.sessions_on(a, {mn: mn_id})[mn] == lab.where[mn])
                for a in lab.alive() for mn, v in ids.items()}

    def _after(self, t_kill: float, t_back: float, seen: dict, ids: dict, dwell: float) -> dict:
        """The sessions seen on the survivors, then the dwell."""
        lab = self.lab
        sessions: dict = {}
        for (kind, key), t in seen.items():
            if kind == "session":
                name, mn = key.split(" ")
                sessions.setdefault(name, {})[mn] = None if t is None else round((t - t_kill) * 1000, 1)
        time.sleep(dwell)
        return {"mns": list(ids), "t_kill": t_kill, "t_back": t_back, "t_end": time.time(),
                "survivors": [lab.instances[a]["name"] for a in lab.alive()],
                "session_visible_after_ms": sessions,
                "masters_after": {n: lab.instances[a]["name"] if (a := lab.master_of(n)) else None
                                  for n in lab.maars}}

    def _sentinel_primary(self, port: int) -> int | None:
        out = run("ip", "netns", "exec", self.lab.core_ns, "redis-cli", "-p", str(port), "SENTINEL",
                  "get-master-addr-by-name", "dmm", check=False).split()
        return int(out[1]) if len(out) == 2 and out[1].isdigit() else None

    def annotate(self, handovers: list) -> None:
        """Each handover's CMD: the one its new MAAR's agent signalled to at the move."""
        for h in handovers:
            h["cmd"] = [cmds for since, cmds in self.cmd_of if since <= h["t_move"]][-1][h["to"]]

    def measured(self, r: dict, handovers: list, handover_ok) -> None:
        """Per MN: whether its next handover after the fault passed (``handover_ok``), and its session on
        every survivor."""
        for mn, f in r["old_flows"].items():
            nxt = [h for h in handovers if h["mn"] == mn and h["t_move"] >= r["t_end"]]
            f["next_handover_ok"] = handover_ok(nxt[0]) if nxt else None
            f["session_on_survivors"] = {s: got.get(mn) is not None for s, got in r["session_visible_after_ms"].items()}


def fault_ok(r: dict) -> bool:
    """What the scenario promises (issue 10): every old flow survived and carried TCP after the fault;
    every MN's session on every survivor; the next handover passed; after the master's kill a survivor
    master of every switch within TAKE_OVER."""
    for f in r["old_flows"].values():
        if not (f["survived"] and f["tcp_kbytes_after_back"] > 0 and all(f["session_on_survivors"].values())
                and f["next_handover_ok"] is not False):
            return False
    if r["what"] == "cmd-master":
        return all(t is not None and t <= TAKE_OVER * 1000 for t in r["switch_master_after_ms"].values())
    return True


def describe(r: dict) -> str:
    """Lines of the lab's printed report: the fault, then one per MN."""
    if r["what"] == "cmd-master":
        head = (f"{r['killed']} (master of {', '.join(n for n, m in r['masters_before'].items() if m == r['killed'])}) "
                f"kill -9: a survivor master of (writing to) every switch at {_last(r['switch_master_after_ms'])} ms, "
                f"every agent moved at {_last(r['agent_moved_after_ms'])} ms")
    else:
        head = (f"{r['killed']} kill -9: replica promoted at {r['promoted_after_ms']} ms (every sentinel says so); "
                f"switch masters at the end: {', '.join(f'{n} {m}' for n, m in r['masters_after'].items())}")
    lines = [f"{head}; every session on {', '.join(r['survivors'])} at "
             f"{_last({k: v for s in r['session_visible_after_ms'].values() for k, v in s.items()})} ms"]
    for mn, f in r["old_flows"].items():
        on = ", ".join(f"{s} {'yes' if ok else 'NO'}" for s, ok in f["session_on_survivors"].items())
        lines.append(f"  {mn}: old flow gap {f['interruption_ms']} ms, {f['lost_pings']} ping(s) lost, survived "
                     f"{'yes' if f['survived'] else 'NO'}, {f['tcp_kbytes_after_back']} kB TCP after; "
                     f"next handover {({True: 'ok', False: 'FAILED', None: 'none'})[f['next_handover_ok']]}; "
                     f"session on {on}")
    return "\n".join(lines)


def first_times(checks: dict, timeout: float, interval: float = 0.05) -> dict:
    """Each check polled in a thread of its own (so that slow ones do not coarsen the others) until
    it is true: key -> when it was first seen true (the time after the check returned), None if not
    within ``timeout``."""
    seen: dict = {}

    def poll(key, check):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if check():
                    seen[key] = time.time()
                    return
            except (OSError, ValueError, LabError):
                pass
            time.sleep(interval)
        seen[key] = None
    threads = [threading.Thread(target=poll, args=item, daemon=True) for item in checks.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return seen


def _ms(seen: dict, kind: str, t0: float) -> dict:
    return {key: None if t is None else round((t - t0) * 1000, 1) for (k, key), t in seen.items() if k == kind}


def _last(times: dict):
    """The latest of these times, or "never" if one did not happen."""
    return "never" if None in times.values() else max(times.values(), default=None)
