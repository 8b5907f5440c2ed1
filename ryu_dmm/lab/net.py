"""Builds and tears down the lab: namespaces, veths, private Open vSwitch instances, the CMD and
the MAAR agents. Everything it starts is recorded and stopped by pid, control socket or name."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .. import ca, domainconf
from ..agent.main import request
from ..mobility.config import Domain, MaarInfo, Mode, Timers
from . import ipsec
from .common import LabError, lab_maars, remove_namespace, wait_until
from .ovs import SCHEMA, PrivateOvs
from .topology import Topology
from .wire_verdict import PLUGIN

BIN = Path(sys.executable).parent
CMD_ADDR = "2001:db8:ff::100"
CN_ADDR = "2001:db8:cc::1"
CN_MAC = "02:00:00:00:cc:01"
REST_PORT = 8080
OF_PORT = 6653  # the CMD's OpenFlow port (TLS unless the lab runs with --of-plain)
CORE, TUNNEL, AGENT = 1, 2, 3  # OpenFlow port numbers on every MAAR's access bridge
# Packet-ins per second (and queued) per switch: bounds what the switch copies to the CMD from its
# access ports (ND, MLD and unrouted frames: the pipeline's [punt]); OVS queues above the rate, fairly
# per port, for at most BURST / RATE seconds (ovs-vswitchd.conf.db(5), Controller table).
PACKET_IN_RATE, PACKET_IN_BURST = 1000, 100
REATTACH = ("carrier", "bounce")  # how an MN re-associates at a move (Lab.move)
HEARTBEAT = 1.0  # [timers] heartbeat_interval, seconds
FLOW_CONTROL = ("cmd", "maar")  # who programs the switches ([dmm] flow_control, docs/flow-control.md)
AGENT_OPENFLOW = "[::1]:6653"  # flow_control = maar: the agent, its switch's controller, in the MAAR's namespace


def run(*args: str, check: bool = True) -> str:
    out = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if check and out.returncode != 0:
        raise LabError(f"{' '.join(args)}: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout


def preflight(with_ipsec: bool = False) -> None:
    """Refuse clearly when the lab cannot run here."""
    if os.geteuid() != 0:
        raise LabError("the lab must run as root (network namespaces, Open vSwitch)")
    missing = ipsec.missing_tools() if with_ipsec else []
    if missing:
        raise LabError(f"{', '.join(missing)} missing: install strongswan-charon, strongswan-swanctl, "
                       "libcharon-extra-plugins, strongswan-pki and nftables (tools/setup.sh does, as root), "
                       "or run with --no-ipsec")
    for tool in ("ip", "ovs-vswitchd", "ovsdb-server", "ovs-vsctl", "ovs-ofctl", "ovs-appctl", "ethtool",
                 "tcpdump", "tshark", "openssl"):
        if shutil.which(tool) is None:
            raise LabError(f"'{tool}' is missing: install openvswitch-switch, iproute2, ethtool, tcpdump, "
                           "tshark and openssl (tools/setup.sh does, as root)")
    if not Path(SCHEMA).exists():
        raise LabError(f"{SCHEMA} is missing: install openvswitch-switch")
    if not PLUGIN.is_file():
        raise LabError(f"{PLUGIN} is missing: the lab's signalling verdict needs the RFC 8885 tshark plugin")


@dataclass
class MaarNode:
    index: int
    info: MaarInfo
    ns: str
    ovs: PrivateOvs

    def sh(self, *args: str, check: bool = True) -> str:
        return self.ovs.run(*args, check=check)

    def vsctl(self, *args: str) -> str:
        return self.ovs.vsctl(*args)

    @property
    def bridge(self) -> str:
        return f"br{self.index}"

    def flows(self) -> list[str]:
        out = self.sh("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", self.bridge)
        return [line.strip() for line in out.splitlines() if "cookie=" in line]


class Lab:
    def __init__(self, topo: Topology, mode: Mode, work: Path, tunnel: str = "gre", reattach: str = "carrier",
                 rs: bool = True, anchor_idle: float = 0.0, lma: str | None = None, flow_control: str = "cmd",
                 store: str = "sqlite", of_tls: bool = True, ipsec: bool = True) -> None:
        if reattach not in REATTACH:
            raise ValueError(f"reattach must be one of {', '.join(REATTACH)}")
        if flow_control not in FLOW_CONTROL:
            raise ValueError(f"flow_control must be one of {', '.join(FLOW_CONTROL)}")
        # distributed mode: no CMD; each agent programs its own switch (docs/mode-distributed.md)
        self.flow_control = "maar" if mode is Mode.DISTRIBUTED else flow_control
        self.store = store
        self.topo, self.mode, self.work, self.tunnel = topo, mode, work, tunnel
        self.reattach, self.rs, self.anchor_idle = reattach, rs, anchor_idle
        # OpenFlow over TLS (docs/security.md): the domain CA and every key in work/pki, made at build
        self.of_tls = of_tls and self.flow_control == "cmd"  # flow_control = maar: plain, on the switch's loopback
        self.pki: dict[str, ca.Issued] = {}
        self.ipsec = ipsec  # strongSwan between the CMD and the MAARs, require_ipsec (lab/ipsec.py)
        self.ipsec_hosts: list = []
        self.ipsec_setup_s: float | None = None
        self.attack = False  # --attack (lab/attack.py)
        tag = f"dmm{os.getpid() % 100000}"
        self.core_ns, self.cn_ns = f"{tag}c", f"{tag}cn"
        maars = lab_maars(topo.maars)
        # Heartbeats every second (a lab setting, below RFC 5847's 30 s floor): a restarted agent is
        # noticed, and rebuilt by the CMD, within about a second (--restart). --anchor-idle T: an old
        # anchor is released after T idle seconds (otherwise the default, two hours: never in a run).
        idle = {"anchor_idle_timeout": anchor_idle} if anchor_idle else {}
        # legacy mode: ``lma`` (default the first MAAR) anchors every MN's one prefix (docs/mode-legacy.md)
        self.lma = (lma or maars[0].name) if mode is Mode.LEGACY else None
        self.domain = Domain(CMD_ADDR, maars, mode=mode, lma=self.lma,
                             timers=Timers(lifetime=600, heartbeat_interval=HEARTBEAT, **idle))
        self.maars = {m.name: MaarNode(i + 1, m, f"{tag}m{i + 1}", PrivateOvs(work / f"ovs-{m.name}", f"{tag}m{i + 1}"))
                      for i, m in enumerate(maars)}
        self.mns = {mn: (j + 1, f"{tag}n{j + 1}") for j, (mn, _) in enumerate(topo.mns)}
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.cmd: subprocess.Popen | None = None
        self.agents: dict[str, subprocess.Popen] = {}
        self.ovs_started: list[PrivateOvs] = []
        self.where: dict[str, str] = {}  # MN -> MAAR it is attached to

    def pool_of(self, maar: str) -> str:
        """The MAAR whose pool an MN's prefix at ``maar`` comes from: the LMA's in legacy mode."""
        return self.lma or maar

    # ---- helpers -------------------------------------------------------------------------------
    def ns_add(self, ns: str) -> None:
        run("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        run("ip", "-n", ns, "link", "set", "lo", "up")

    def start(self, ns: str, args: list[str], log: str) -> subprocess.Popen:
        """``args`` in namespace ``ns`` (``ip netns exec`` execs it: the pid is the program's own)."""
        p = subprocess.Popen(["ip", "netns", "exec", ns, *args], stdout=open(self.work / log, "a"),
                             stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def veth(self, a: str, a_ns: str, b: str, b_ns: str, a_mac: str | None = None) -> None:
        run("ip", "link", "add", a, "netns", a_ns, *(["address", a_mac] if a_mac else []), "type", "veth",
            "peer", "name", b, "netns", b_ns)
        for name, ns in ((a, a_ns), (b, b_ns)):
            run("ip", "-n", ns, "link", "set", name, "up")
            # TCP through the userspace datapath over veth needs transmit checksum offload off
            run("ip", "netns", "exec", ns, "ethtool", "-K", name, "tx", "off")

    def rest(self, path: str, port: int = REST_PORT):
        code = (f"import urllib.request,sys;sys.stdout.write(urllib.request.urlopen("
                f"'http://127.0.0.1:{port}{path}',timeout=5).read().decode())")
        return json.loads(run("ip", "netns", "exec", self.core_ns, sys.executable, "-c", code))

    def control(self, maar: str) -> str:
        return str(self.work / f"{maar}.sock")

    def capture(self, name: str, bpf: str, ns: str | None = None, iface: str = "br0",
                direction: str | None = None) -> subprocess.Popen:
        """tcpdump on the core bridge (or ``iface`` in ``ns``; ``direction`` in/out) into ``work/name``
        (packets between MAARs too: the bridge device in promiscuous mode sees what it forwards);
        returns once the file is open."""
        path = self.work / name
        p = subprocess.Popen(["ip", "netns", "exec", ns or self.core_ns, "tcpdump", "-n", "-U", "-i", iface,
                              *(["-Q", direction] if direction else []), "-w", str(path), bpf],
                             stdout=subprocess.DEVNULL, stderr=open(self.work / f"{name}.log", "w"))
        self.procs.append(p)
        wait_until(lambda: p.poll() is None and path.exists() and path.stat().st_size >= 24, 10,
                   f"tcpdump writing {name}")
        return p

    def mac(self, mn: str) -> str:
        """The MAC of the MN's interface, as its own kernel reports it."""
        j, ns = self.mns[mn]
        return json.loads(run("ip", "-n", ns, "-j", "link", "show", "dev", f"e{j}"))[0]["address"]

    # ---- build -----------------------------------------------------------------------------------
    def build(self) -> None:
        preflight(self.ipsec)
        self.ns_add(self.core_ns)
        self.ns_add(self.cn_ns)
        run("ip", "-n", self.core_ns, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.core_ns, "link", "set", "br0", "up")
        run("ip", "-n", self.core_ns, "addr", "add", f"{CMD_ADDR}/64", "dev", "br0", "nodad")
        run("ip", "-n", self.cn_ns, "link", "add", "brwan", "address", CN_MAC, "type", "bridge")
        run("ip", "-n", self.cn_ns, "link", "set", "brwan", "up")
        run("ip", "-n", self.cn_ns, "addr", "add", f"{CN_ADDR}/64", "dev", "brwan", "nodad")
        for m in self.maars.values():
            self._build_maar(m)
        for mn, (j, ns) in self.mns.items():
            self.ns_add(ns)
        if self.ipsec:
            self._start_ipsec()
        self._write_config()
        if self.of_tls:
            self._make_keys()
        if self.mode is not Mode.DISTRIBUTED:
            self.start_cmd()
        own = self.flow_control == "maar"  # each agent is its switch's controller: it listens first
        for m in self.maars.values():
            if own:
                self.start_agent(m.info.name)
            self._connect(m)
        if not own:
            wait_until(lambda: all(x["connected"] for x in self.rest("/dmm/v1/maars")["maars"]), 20, "switches connected")
        for m in self.maars.values():
            wait_until(lambda m=m: len(m.flows()) >= 6, 10, f"base flows on {m.info.name}")
            if not own:
                self.start_agent(m.info.name)
        for m in self.maars.values():  # the CN reaches each pool through its MAAR
            run("ip", "-n", self.cn_ns, "route", "add", str(m.info.pool), "via", m.info.link_local, "dev", "brwan")
            run("ip", "-n", self.cn_ns, "neigh", "add", m.info.link_local, "lladdr", m.info.mac.hex(":"), "dev", "brwan")
        self._prime_tunnels()
        for mn, (j, ns) in self.mns.items():
            self._build_mn(mn, j, ns)

    def _start_ipsec(self) -> None:
        """Certificates, charons and the require_ipsec table in the core and every MAAR namespace;
        returns when every CHILD_SA is up (MAAR to MAAR too in locator and distributed mode)."""
        maars = [(m.info.name, m.ns, m.info.address) for m in self.maars.values()]
        self.ipsec_hosts = ipsec.plan(("cmd", self.core_ns, CMD_ADDR), maars, self.mode in (Mode.LOCATOR, Mode.DISTRIBUTED),
                                      self.work / "ipsec")
        ipsec.configure(self.ipsec_hosts, self.work / "ipsec", domainconf.CmdSettings.port)
        self.ipsec_setup_s = ipsec.start(self.ipsec_hosts, self.procs)

    def _build_maar(self, m: MaarNode) -> None:
        self.ns_add(m.ns)
        m.ovs.dir.mkdir(parents=True)
        i = m.index
        self.veth(f"u{i}", m.ns, f"k{i}", self.core_ns)
        run("ip", "-n", self.core_ns, "link", "set", f"k{i}", "master", "br0")
        self.veth(f"c{i}", m.ns, f"w{i}", self.cn_ns)
        run("ip", "-n", self.cn_ns, "link", "set", f"w{i}", "master", "brwan")
        self.ovs_started.append(m.ovs)
        self._build_switch(m)

    def _build_switch(self, m: MaarNode) -> None:
        """Start the MAAR's own OVS on a new database and build its two bridges on the veths
        ``_build_maar`` made (at build time, and again after ``crash_maar``)."""
        i = m.index
        m.ovs.start()
        # Underlay bridge: carries the MAAR's address, so OVS's userspace tunnels can use it.
        m.vsctl("add-br", f"ul{i}", "--", "set", "bridge", f"ul{i}", "datapath_type=netdev")
        m.vsctl("add-port", f"ul{i}", f"u{i}")
        m.sh("ip", "link", "set", f"ul{i}", "up")
        m.sh("ethtool", "-K", f"ul{i}", "tx", "off", check=False)
        m.sh("ip", "addr", "add", f"{m.info.address}/64", "dev", f"ul{i}", "nodad")
        # Access bridge, driven by the CMD: the pipeline of openflow_pipelines/dmm_edge.toml.
        m.vsctl("add-br", m.bridge, "--", "set", "bridge", m.bridge, "datapath_type=netdev", "protocols=OpenFlow13",
                "fail_mode=secure", f"other-config:datapath-id={m.info.datapath_id:016x}")
        m.vsctl("add-port", m.bridge, f"c{i}", "--", "set", "interface", f"c{i}", f"ofport_request={CORE}")
        m.vsctl("add-port", m.bridge, f"t{i}", "--", "set", "interface", f"t{i}",
                "type=ip6gre" if self.tunnel == "gre" else "type=vxlan",
                "options:remote_ip=flow", "options:key=flow", f"ofport_request={TUNNEL}")
        m.vsctl("add-port", m.bridge, f"g{i}", "--", "set", "interface", f"g{i}", "type=internal",
                f"ofport_request={AGENT}")
        m.sh("ip", "link", "set", f"g{i}", "up")

    def _make_keys(self) -> None:
        """The lab's domain CA, and a key and certificate for the CMD (its address as subject alt
        name) and for each MAAR's switch, in ``work/pki``."""
        folder = self.work / "pki"
        authority = ca.create_ca(folder, "ryu-dmm lab CA")
        self.pki["cmd"] = ca.issue(authority, folder, "cmd", ips=(CMD_ADDR,))
        for name, m in self.maars.items():
            self.pki[name] = ca.issue(authority, folder, f"switch-{name}", ips=(m.info.address,))

    def _connect(self, m: MaarNode) -> None:
        """Point the access bridge at its controller: the MAAR's own agent (``tcp:`` on the switch's
        loopback, flow_control = maar), else the CMD: ``ssl:`` with the switch's own key, certificate and
        the domain CA (``set-ssl``: one per OVS instance), or ``tcp:`` with --of-plain."""
        if self.flow_control == "maar":
            target = f"tcp:{AGENT_OPENFLOW}"
        else:
            scheme = "tcp"
            if self.of_tls:
                keys = self.pki[m.info.name]
                m.vsctl("set-ssl", str(keys.key), str(keys.cert), str(keys.ca_cert))
                scheme = "ssl"
            target = f"{scheme}:[{CMD_ADDR}]:{OF_PORT}"
        m.vsctl("set-controller", m.bridge, target, "--", "set", "controller", m.bridge,
                f"controller_rate_limit={PACKET_IN_RATE}", f"controller_burst_limit={PACKET_IN_BURST}")

    def openflow(self) -> dict:
        """How each switch reaches the CMD, as its own OVS says: ``target`` (``get-controller``) and
        ``is_connected``."""
        return {"tls": self.of_tls, "switches": {
            name: {"target": m.vsctl("get-controller", m.bridge).strip(),
                   "is_connected": m.vsctl("get", "controller", m.bridge, "is_connected").strip() == "true"}
            for name, m in self.maars.items()}}

    def start_agent(self, name: str) -> None:
        """Start MAAR ``name``'s agent (its log appended to) and wait for its control socket."""
        m = self.maars[name]
        self.agents[name] = self.start(m.ns, [str(BIN / "ryu-dmm-maar"), "--config", str(self.work / "domain.ini"),
                                              "--name", name, "--control", self.control(name), "--access-iface",
                                              f"g{m.index}", "--access-port", "10", "--state-dir", str(self.work),
                                              "--openflow-listen", AGENT_OPENFLOW],
                                       f"agent-{name}.log")
        wait_until(lambda: request(self.control(name), {"op": "state"}, 0.3)["ok"], 10, f"agent {name}")

    def _switch_settings(self) -> tuple[domainconf.SwitchSettings, ...]:
        return tuple(domainconf.SwitchSettings(m.info.name, CORE, TUNNEL, AGENT, tuple(10 + j for j, _ in self.mns.values()),
                                               bytes.fromhex(CN_MAC.replace(":", "")))
                     for m in self.maars.values())

    def _write_config(self) -> None:
        switches = self._switch_settings()
        settings = domainconf.CmdSettings(listen=CMD_ADDR, tunnel=self.tunnel, switches=switches,
                                          flow_control=self.flow_control, require_ipsec=self.ipsec,
                                          store=domainconf.StoreSettings(backend=self.store))
        (self.work / "domain.ini").write_text(domainconf.render(
            self.domain, settings, ryu={"wsapi_host": "127.0.0.1", "wsapi_port": REST_PORT}))

    def start_cmd(self) -> None:
        """Start the CMD (its log appended to; its binding store in ``work/dmm-state``) and wait for REST."""
        if self.of_tls:
            keys = self.pki["cmd"]
            listen = ["--ofp-ssl-listen-port", str(OF_PORT), "--ctl-privkey", str(keys.key), "--ctl-cert",
                      str(keys.cert), "--ca-certs", str(keys.ca_cert)]
        else:
            listen = ["--ofp-tcp-listen-port", str(OF_PORT)]
        self.cmd = self.start(self.core_ns, [str(BIN / "ryu-manager"), "--config-file", str(self.work / "domain.ini"),
                                             "--ofp-listen-host", "::", *listen, "ryu_dmm.cmd"], "cmd.log")
        wait_until(lambda: self.rest("/dmm/v1/stats"), 30, "the CMD's REST API")

    def _prime_tunnels(self, only: MaarNode | None = None) -> None:
        """OVS drops the first packet towards an unresolved tunnel endpoint: give it the neighbours
        (``only``: the pairs with this MAAR, whose underlay bridge was made again)."""
        macs = {m.index: m.sh("cat", f"/sys/class/net/ul{m.index}/address").strip() for m in self.maars.values()}
        for a in self.maars.values():
            for b in self.maars.values():
                if a is not b and only in (None, a, b):
                    a.ovs.appctl("ovs-vswitchd", "tnl/neigh/set", f"ul{a.index}", b.info.address, macs[b.index])

    def _build_mn(self, mn: str, j: int, ns: str) -> None:
        first = dict(self.topo.mns)[mn][0]
        m = self.maars[first]
        self.veth(f"e{j}", ns, f"a{j}", m.ns, a_mac=f"02:00:00:00:0a:{j:02x}")
        run("ip", "-n", ns, "link", "set", f"e{j}", "down")
        run("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.e{j}.accept_dad=0",
            f"net.ipv6.conf.e{j}.accept_ra=1", f"net.ipv6.conf.e{j}.autoconf=1",
            f"net.ipv6.conf.e{j}.keep_addr_on_down=1",
            # no cap on SLAAC addresses (Linux's default is 16): a withdrawn prefix's address stays
            # deprecated until its lifetime ends (RFC 4862 5.5.3 (e)), so an MN crossing more than
            # 15 MAARs within one lifetime would otherwise take no address at the 16th
            f"net.ipv6.conf.e{j}.max_addresses=0",
            # --no-rs: the MN never solicits; it is detected from what else it sends (MLD reports, data)
            *([] if self.rs else [f"net.ipv6.conf.e{j}.router_solicitations=0"]))
        m.vsctl("add-port", m.bridge, f"a{j}", "--", "set", "interface", f"a{j}", f"ofport_request={10 + j}")
        self.where[mn] = first

    # ---- restarts (--restart, lab/restarts.py) ----------------------------------------------------
    def crash_cmd(self) -> None:
        """``kill -9`` the CMD; its binding store stays in ``work/dmm-state``."""
        self.cmd.send_signal(signal.SIGKILL)
        self.cmd.wait(10)

    def crash_maar(self, name: str) -> None:
        """``kill -9`` MAAR ``name``'s agent, ovs-vswitchd and ovsdb-server (by pid): its flows and its
        switch's configuration are gone with them."""
        m = self.maars[name]
        self.agents[name].send_signal(signal.SIGKILL)
        self.agents[name].wait(10)
        m.ovs.kill9()

    def rebuild_switch(self, name: str) -> None:
        """Bring a crashed MAAR's switch back as the lab builds one: OVS on a new database with its
        bridges and the access ports of the MNs attached there, its controller and the tunnel
        neighbours. Its agent is started apart (``start_agent``): it keeps nothing, the CMD rebuilds it."""
        m = self.maars[name]
        for dev in ("ovs-netdev", m.bridge, f"ul{m.index}", f"g{m.index}"):
            # userspace OVS ports are tap devices kept after their daemon died: remove ours by name
            run("ip", "-n", m.ns, "link", "del", dev, check=False)
        self._build_switch(m)
        for mn, at in self.where.items():
            if at == name:
                j, _ = self.mns[mn]
                m.vsctl("add-port", m.bridge, f"a{j}", "--", "set", "interface", f"a{j}", f"ofport_request={10 + j}")
        self._connect(m)
        self._prime_tunnels(only=m)

    def attach_first(self, mn: str) -> None:
        j, ns = self.mns[mn]
        run("ip", "-n", ns, "link", "set", f"e{j}", "up")  # the host's kernel sends its RS

    def move(self, mn: str, to: str) -> dict[str, float]:
        """A real link move: the MN's link leaves the old MAAR's switch (``del-port``), moves into the
        new MAAR's namespace (down, as a moved interface is), joins its switch (``add-port``) and
        comes up there: the MN sees its carrier go and come back, as at a re-association, and its
        kernel sends MLD reports ("we might have roamed"), not an RS. ``reattach="bounce"``: the MN
        also takes its interface down and up, after which its kernel solicits. The veth keeps its
        transmit checksum offload off across namespaces. Returns when each step ended, in ms after
        the move started; ``link_up``: the MN can reach the new switch from then on."""
        j, ns = self.mns[mn]
        old, new = self.maars[self.where[mn]], self.maars[to]
        t0, ends = time.time(), {}
        old.vsctl("del-port", old.bridge, f"a{j}")
        ends["del_port"] = time.time()
        run("ip", "-n", old.ns, "link", "set", f"a{j}", "netns", new.ns)
        ends["netns"] = time.time()
        new.vsctl("add-port", new.bridge, f"a{j}", "--", "set", "interface", f"a{j}", f"ofport_request={10 + j}")
        ends["add_port"] = time.time()
        run("ip", "-n", new.ns, "link", "set", f"a{j}", "up")
        ends["link_up"] = time.time()
        if self.reattach == "bounce":
            run("ip", "-n", ns, "link", "set", f"e{j}", "down")
            run("ip", "-n", ns, "link", "set", f"e{j}", "up")
            ends["bounce"] = time.time()
        self.where[mn] = to
        return {step: round((t - t0) * 1000, 1) for step, t in ends.items()}

    def addresses(self, mn: str) -> dict[str, str]:
        """Global addresses of the MN's interface -> 'preferred' or 'deprecated'."""
        j, ns = self.mns[mn]
        out = json.loads(run("ip", "-n", ns, "-6", "-j", "addr", "show", "dev", f"e{j}"))
        got = {}
        for a in out[0].get("addr_info", []):
            if a.get("scope") == "global":
                got[a["local"]] = "deprecated" if a.get("preferred_life_time") == 0 else "preferred"
        return got

    # ---- teardown --------------------------------------------------------------------------------
    def teardown(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        for ovs in self.ovs_started:
            ovs.stop()
        for ns in reversed(self.namespaces):
            remove_namespace(ns)
        self.namespaces.clear()
