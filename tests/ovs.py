"""A private Open vSwitch instance for tests (``ryu_dmm.lab.ovs.PrivateOvs``) with bridge and
flow helpers: nothing system-wide is touched."""
from __future__ import annotations

import os
from pathlib import Path

from ryu_dmm.lab.ovs import SCHEMA, PrivateOvs


def available() -> bool:
    return os.geteuid() == 0 and Path(SCHEMA).exists() and Path("/usr/sbin/ovs-vswitchd").exists()


class Ovs(PrivateOvs):
    def ofctl(self, *args: str) -> str:
        return self.run("ovs-ofctl", "-O", "OpenFlow13", *args)

    def bridge(self, name: str, dpid: int, controller_port: int, ports: dict[str, int], scheme: str = "tcp") -> str:
        """A userspace bridge with OpenFlow 1.3 towards our controller; ``ports``: port name ->
        OpenFlow port number (internal ports, but a flow-based ip6gre port for names ending 'tun');
        ``scheme``: ``ssl`` after ``set-ssl`` (OpenFlow over TLS)."""
        self.vsctl("add-br", name, "--", "set", "bridge", name, "datapath_type=netdev", "protocols=OpenFlow13",
                   "fail_mode=secure", f"other-config:datapath-id={dpid:016x}")
        for pname, ofport in ports.items():
            if pname.endswith("tun"):
                self.vsctl("add-port", name, pname, "--", "set", "interface", pname, "type=ip6gre",
                           "options:remote_ip=flow", "options:key=flow", f"ofport_request={ofport}")
            else:
                self.vsctl("add-port", name, pname, "--", "set", "interface", pname, "type=internal",
                           f"ofport_request={ofport}")
        self.vsctl("set-controller", name, f"{scheme}:127.0.0.1:{controller_port}")
        return name

    def flows(self, bridge: str) -> list[str]:
        out = self.ofctl("dump-flows", f"unix:{self.dir}/{bridge}.mgmt", "--no-stats")
        return sorted(line.strip() for line in out.splitlines() if line.strip() and "NXST" not in line and "OFPST" not in line)


def cmd_domain(maars: dict[str, tuple[str, int]], rest: int, udp: int, *dmm_lines: str) -> str:
    """A domain file for a CMD on loopback whose MAARs' switches are bridges made with ``bridge``:
    ``maars`` maps each name to (IPv4 address, datapath id); ports core 1, tunnel 2, agent 3,
    access 10; REST on 127.0.0.1:``rest``; ``dmm_lines``: more ``[dmm]`` keys."""
    sections = "".join(f"\n[maar:{name}]\naddress = ::ffff:{ip}\npool = 2001:db8:{dpid}::/48\n"
                       f"datapath_id = {dpid}\ncore_port = 1\ntunnel_port = 2\nagent_port = 3\naccess_ports = 10\n"
                       for name, (ip, dpid) in maars.items())
    return (f"[DEFAULT]\nwsapi_host = 127.0.0.1\nwsapi_port = {rest}\n[dmm]\ncmd_address = ::1\nport = {udp}\n"
            + "".join(f"{line}\n" for line in dmm_lines) + sections)
