"""IPsec in the lab: a domain CA, and per signalling host (the CMD's core namespace, each MAAR's
namespace) a private charon with strongSwan's userspace ESP, its swanctl configuration, the routing
rules that send only the signalling into ESP, and the ``require_ipsec`` nftables table.

Each charon runs in its namespace and in a private mount namespace whose ``/run`` is the host's
own folder: charon's pid file (``/var/run/charon.pid``) is fixed at compile time, so several
charons on one machine each need their own ``/run``. The kernel here has no ESP, so the ESP is
strongSwan's kernel-libipsec (tunnel mode over its TUN device, ESP in UDP 4500: strongSwan 5.9.8
has no raw ESP for it); see docs/security.md for transport mode with kernel ESP.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..ipsec import enforce, pki, strongswan
from .common import LabError, wait_until

CHARON = "/usr/lib/ipsec/charon"
TOOLS = ("pki", "swanctl", "nft", "mergecap", CHARON)
TUN = enforce.TUN
ESP_NOTE = "kernel-libipsec (userspace ESP in UDP 4500, ChaCha20-Poly1305)"


@dataclass
class Host:
    name: str
    ns: str
    address: str
    peers: list  # strongswan.Peer
    folder: Path
    proc: subprocess.Popen | None = None

    def swanctl(self, *args: str, check: bool = True) -> str:
        out = subprocess.run(["swanctl", *args, "--uri", f"unix://{self.folder}/run/charon.vici"],
                             capture_output=True, text=True, timeout=30,
                             env={**os.environ, "SWANCTL_DIR": str(self.folder / "swanctl"),
                                  "STRONGSWAN_CONF": str(self.folder / "strongswan.conf")})
        if check and out.returncode != 0:
            raise LabError(f"swanctl {' '.join(args)} for {self.name}: {out.stderr.strip() or out.stdout.strip()}")
        return out.stdout

    def established(self) -> int:
        """CHILD_SAs of this host that are installed."""
        return self.swanctl("--list-sas", check=False).count("INSTALLED")


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None and not Path(t).exists()]


def plan(cmd: tuple[str, str, str], maars: list[tuple[str, str, str]], maar_to_maar: bool,
         work: Path) -> list[Host]:
    """Hosts (name, namespace, address) and who talks to whom: every MAAR with the CMD (the MAAR
    initiates) and, with ``maar_to_maar`` (locator mode), every pair of MAARs (the first named initiates)."""
    hosts = [Host(*cmd, [strongswan.Peer(n, a, False) for n, _, a in maars], work / cmd[0])]
    for i, (name, ns, address) in enumerate(maars):
        peers = [strongswan.Peer(cmd[0], cmd[2], True)]
        if maar_to_maar:
            peers += [strongswan.Peer(n, a, j > i) for j, (n, _, a) in enumerate(maars) if j != i]
        hosts.append(Host(name, ns, address, peers, work / name))
    return hosts


def configure(hosts: list[Host], work: Path, port: int) -> None:
    """CA, certificates and every host's strongSwan files, routing rules and nftables table."""
    ca_cert, ca_key = pki.make_ca(work / "ca")
    for h in hosts:
        sw = h.folder / "swanctl"
        for sub in ("x509ca", "x509", "private"):
            (sw / sub).mkdir(parents=True, exist_ok=True)
        (h.folder / "run").mkdir(exist_ok=True)
        cert, key = pki.issue(ca_cert, ca_key, work / "ca", h.name, h.address)
        (sw / "x509ca" / "ca.pem").write_bytes(ca_cert.read_bytes())
        (sw / "x509" / cert.name).write_bytes(cert.read_bytes())
        (sw / "private" / key.name).write_bytes(key.read_bytes())
        os.chmod(sw / "private" / key.name, 0o600)
        (h.folder / "strongswan.conf").write_text(strongswan.strongswan_conf(h.folder / "run"))
        (sw / "swanctl.conf").write_text(strongswan.swanctl_conf(h.address, cert.name, h.peers, port))
        table = str(strongswan.ROUTING_TABLE)
        for pref, sel in ((100, ("ipproto", "udp", "dport", str(port))), (101, ("ipproto", str(enforce.MH)))):
            _run("ip", "-n", h.ns, "-6", "rule", "add", "pref", str(pref), *sel, "lookup", table)
        subprocess.run(["ip", "netns", "exec", h.ns, "nft", "-f", "-"], input=enforce.ruleset(port), text=True,
                       check=True, capture_output=True, timeout=30)


def start(hosts: list[Host], procs: list, timeout: float = 20.0) -> float:
    """Start every charon, load its configuration (responders first) and wait until every CHILD_SA
    is installed; returns the seconds that took. The Popen objects go to ``procs`` (stopped by pid)."""
    for h in hosts:
        log = open(h.folder / "charon.stdout", "a")
        # exec all the way: the pid is charon's own
        h.proc = subprocess.Popen(["ip", "netns", "exec", h.ns, "unshare", "--mount", "--propagation", "private",
                                   "sh", "-c", f'mount --bind "$0/run" /run && exec {CHARON}', str(h.folder)],
                                  stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  env={**os.environ, "STRONGSWAN_CONF": str(h.folder / "strongswan.conf")})
        procs.append(h.proc)
    t0 = time.monotonic()
    for h in hosts:
        wait_until(lambda h=h: (h.folder / "run" / "charon.vici").exists() or h.proc.poll() is not None, 10,
                   f"charon of {h.name}")
        if h.proc.poll() is not None:
            raise LabError(f"charon of {h.name} exited: see {h.folder / 'run' / 'charon.log'}")
    # responders first: the CMD, then the MAARs from the last (a MAAR initiates to those named after it)
    for h in [hosts[0], *reversed(hosts[1:])]:
        h.swanctl("--load-all")
    for h in hosts:
        wait_until(lambda h=h: h.established() >= len(h.peers), timeout, f"IPsec SAs of {h.name}", 0.05)
    return time.monotonic() - t0


def _run(*args: str) -> None:
    out = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise LabError(f"{' '.join(args)}: {out.stderr.strip()}")


# What the underlay capture keeps: plaintext signalling (there must be none) and IPsec (IKE, ESP in
# UDP, raw ESP); what the TUN captures keep: the decrypted signalling the wire verdict judges.
UNDERLAY_FILTER = "udp port 5436 or ip6 proto 135 or esp or udp port 500 or udp port 4500"
PLAINTEXT_FILTER = "udp port 5436 or ip6 proto 135"


def on_the_wire(pcap: Path, home: Path, strangers: tuple = ()) -> dict:
    """tshark's count of what crossed the underlay: ok when it found ESP and no plaintext PMIPv6.
    Frames from the MACs in ``strangers`` (the hostile host of --attack) are counted apart."""
    env = {**os.environ, "HOME": str(home)}
    home.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["tshark", "-n", "-r", str(pcap), "-T", "fields", "-e", "eth.src", "-e", "frame.protocols"],
                         capture_output=True, text=True, timeout=120, env=env)
    if out.returncode != 0:
        return {"ok": False, "error": out.stderr.strip()[-300:]}
    rows = [line.split("\t") for line in out.stdout.splitlines() if line]
    stacks = [p.split(":") for mac, p in rows if mac not in strangers]
    got = {"frames": len(stacks),
           "esp": sum("esp" in s for s in stacks),
           "ike": sum("isakmp" in s for s in stacks),
           "plaintext_pmipv6": sum("mipv6" in s for s in stacks),
           "other": sum(not ({"esp", "isakmp", "mipv6"} & set(s)) for s in stacks),
           "from_strangers": len(rows) - len(stacks)}
    got["ok"] = got["esp"] > 0 and got["plaintext_pmipv6"] == 0 and got["other"] == 0
    return got


def dropped(h: Host) -> dict:
    """The host's require_ipsec counters: plaintext signalling dropped ({counter: packets})."""
    out = subprocess.run(["ip", "netns", "exec", h.ns, "nft", "-j", "list", "table", enforce.FAMILY, enforce.TABLE],
                         capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        return {}
    return {c["name"]: c.get("packets", 0) for c in
            (i.get("counter") for i in json.loads(out.stdout).get("nftables", [])) if c}
