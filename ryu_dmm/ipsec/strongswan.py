"""strongSwan configuration for one signalling host: its strongswan.conf and swanctl.conf (text).

One IKEv2 connection per peer (a MAAR: the CMD, and in locator mode every other MAAR; the CMD:
every MAAR), authenticated with certificates of the domain CA whose identity is the host's
signalling address, and one CHILD_SA that carries exactly the PMIPv6 signalling between the two
addresses: UDP from and to the signalling port, and the Mobility Header (protocol 135), heartbeats
included. ``mode`` is ``tunnel`` with strongSwan's userspace ESP (kernel-libipsec, for kernels
without ESP: the lab's) and ``transport`` with the kernel's ESP (RFC 5213 §4's choice).

A pair's initiator is the MAAR (towards the CMD) or the MAAR named first in the domain (between two
MAARs), so that each pair negotiates once; the responder waits.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROUTING_TABLE = 5436  # where kernel-libipsec's routes go; only signalling is steered into it (lab)
IKE_PROPOSAL = "aes256-sha256-x25519"  # plugins of Debian's strongswan-charon (no openssl plugin)
ESP_PROPOSAL = "chacha20poly1305-x25519"
PLUGINS = "random nonce aes sha1 sha2 hmac chapoly curve25519 x509 pubkey pem pkcs1 pkcs8 gmp kdf constraints revocation"
# the first kernel interface loaded provides the IPsec backend: kernel-libipsec must precede kernel-netlink
NET_PLUGINS = "kernel-netlink socket-default vici"


@dataclass(frozen=True)
class Peer:
    name: str
    address: str  # its signalling address, also its IKE identity (a SAN of its certificate)
    initiator: bool  # we start the exchange with it


def strongswan_conf(folder: Path, userspace_esp: bool = True) -> str:
    """charon's settings for a private instance whose files (vici socket, log) live in ``folder``."""
    load = f"{PLUGINS} {'kernel-libipsec ' if userspace_esp else ''}{NET_PLUGINS}"
    libipsec = ("    kernel-libipsec { allow_peer_ts = yes }\n"
                # its routes go to our table, which only signalling reaches (ip rules: lab/ipsec.py)
                f"    kernel-netlink {{ fwmark = {ROUTING_TABLE:#x} }}\n") if userspace_esp else ""
    return (f"charon {{\n  load = {load}\n  install_routes = {'yes' if userspace_esp else 'no'}\n"
            f"  routing_table = {ROUTING_TABLE}\n  routing_table_prio = {ROUTING_TABLE}\n"
            "  retransmit_timeout = 1.0\n  retransmit_base = 1.4\n"
            f"  plugins {{\n{libipsec}    vici {{ socket = unix://{folder}/charon.vici }}\n  }}\n"
            f"  filelog {{\n    main {{\n      path = {folder}/charon.log\n      time_format = %F %T\n"
            "      default = 1\n      flush_line = yes\n    }\n  }\n}\n"
            "swanctl {\n  load = pem pkcs1 pkcs8 x509 pubkey random nonce curve25519\n}\n")


def swanctl_conf(me: str, cert: str, peers: list[Peer], port: int = 5436, mode: str = "tunnel") -> str:
    """The connections of the host with signalling address ``me`` (certificate file ``cert`` in
    swanctl's x509/ folder) to each peer."""
    out = ["connections {"]
    for p in peers:
        start = "start" if p.initiator else "none"
        out += [f"  {p.name} {{", "    version = 2", f"    local_addrs = {me}", f"    remote_addrs = {p.address}",
                f"    proposals = {IKE_PROPOSAL}", "    keyingtries = 0", "    dpd_delay = 10s",
                "    local {", "      auth = pubkey", f"      certs = {cert}", f"      id = {me}", "    }",
                "    remote {", "      auth = pubkey", f"      id = {p.address}", "    }",
                "    children {", "      pmip {", f"        mode = {mode}",
                f"        local_ts = {me}[udp/{port}], {me}[135]",
                f"        remote_ts = {p.address}[udp/{port}], {p.address}[135]",
                f"        esp_proposals = {ESP_PROPOSAL}", f"        start_action = {start}",
                f"        dpd_action = {'restart' if p.initiator else 'clear'}",
                f"        close_action = {start}", "      }", "    }", "  }"]
    return "\n".join(out + ["}"]) + "\n"
