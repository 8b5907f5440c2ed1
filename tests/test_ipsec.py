"""IPsec for the signalling (issue 11 item 1), on real namespaces, nftables and strongSwan:

* ``require_ipsec``: the table the tooling installs is read back by ``nft`` itself and judged
  complete; the CMD and an agent refuse to start (exit 2, a clear line) where it is missing;
* two hosts with the project's CA, certificates and charons exchange UDP 5436 inside ESP: tshark,
  on the wire between them, finds ESP (in UDP, RFC 3948) and IKE only; a third namespace on the
  same link that sends plaintext signalling with the peer's source address reaches nothing, and
  the drops are counted where the operator reads them.
Everything runs in namespaces created here, under the machine's OVS/namespace lock; every charon
is stopped by its pid."""
import contextlib
import fcntl
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from ryu_dmm.ipsec import enforce
from tests.conftest import need
from tests.procs import BIN, MANAGER, clean_env, free_port, stop, wait_for

LOCK = "/tmp/ryu-dmm-ovs.lock"
PORT = 5436


def _root_tools():
    need(os.geteuid() == 0, "needs root (network namespaces)")
    need(shutil.which("nft") is not None, "nft is not installed (nftables)")


@contextlib.contextmanager
def namespaces(*names: str):
    tag = f"ips{os.getpid() % 100000}"
    made = []
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            for n in names:
                subprocess.run(["ip", "netns", "add", f"{tag}{n}"], check=True)
                made.append(f"{tag}{n}")
                subprocess.run(["ip", "-n", f"{tag}{n}", "link", "set", "lo", "up"], check=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    try:
        yield made
    finally:
        from ryu_dmm.lab.common import remove_namespace
        for ns in made:
            remove_namespace(ns)


def nft(ns: str, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, "nft", *args], input=stdin, capture_output=True, text=True,
                          check=True, timeout=30).stdout


def in_ns(ns: str, code: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, str(BIN / "python"), "-c", code], capture_output=True,
                          text=True, timeout=60, env=clean_env())


def test_installed_table_read_back_by_nft_is_complete_and_a_missing_rule_is_named():
    _root_tools()
    with namespaces("a") as (ns,):
        out = in_ns(ns, "from ryu_dmm.ipsec import enforce; print(enforce.check())")
        assert "cannot be read" in out.stdout and "inet ryu_dmm_ipsec" in out.stdout, out
        nft(ns, "-f", "-", stdin=enforce.ruleset(PORT))
        nft(ns, "-f", "-", stdin=enforce.ruleset(PORT))  # installing twice replaces, never duplicates
        listing = json.loads(nft(ns, "-j", "list", "table", "inet", "ryu_dmm_ipsec"))
        assert sum("rule" in i for i in listing["nftables"]) == 9
        assert enforce.verify(listing, PORT) == []
        assert in_ns(ns, "from ryu_dmm.ipsec import enforce; print(enforce.check())").stdout.strip() == "None"
        # an operator's table that forgets the Mobility Header on the way out
        rule = next(i["rule"] for i in listing["nftables"]
                    if "rule" in i and i["rule"]["chain"] == "signalling_out" and "mobility-header" in json.dumps(i))
        nft(ns, "delete", "rule", "inet", "ryu_dmm_ipsec", "signalling_out", "handle", str(rule["handle"]))
        listing = json.loads(nft(ns, "-j", "list", "table", "inet", "ryu_dmm_ipsec"))
        assert enforce.verify(listing, PORT) == ["no output-hook rule drops plaintext Mobility Header (protocol 135)"]
        # and one for another port protects nothing on this one
        assert len(enforce.verify(listing, 5437)) == 5  # its 4 UDP rules, and the MH one already gone


CONFIG = """\
[DEFAULT]
wsapi_host = 127.0.0.1
wsapi_port = {rest}
[dmm]
cmd_address = 2001:db8:ff::100
mode = proxy
listen = ::1
port = {port}
require_ipsec = true
[maar:maar1]
address = ::1
pool = 2001:db8:1::/48
prefix_length = 64
mac = 02:00:00:00:01:01
"""


def test_cmd_and_agent_refuse_to_start_without_the_table_and_start_with_it(tmp_path):
    _root_tools()
    rest, port = free_port(), free_port(socket.AF_INET6, socket.SOCK_DGRAM)
    config = tmp_path / "domain.ini"
    config.write_text(CONFIG.format(rest=rest, port=port))
    cmd = ["ip", "netns", "exec", None, *MANAGER, "--config-file", str(config), "--ofp-tcp-listen-port",
           str(free_port()), "ryu_dmm.cmd"]
    agent = ["ip", "netns", "exec", None, str(BIN / "ryu-dmm-maar"), "--config", str(config), "--name", "maar1",
             "--port", str(port + 1), "--control", str(tmp_path / "a.sock"), "--metrics-port", "0"]
    with namespaces("c") as (ns,):
        for argv, who in ((cmd, "ryu_dmm.cmd"), (agent, "ryu-dmm-maar")):
            argv[3] = ns
            out = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=clean_env(tmp_path),
                                 cwd=tmp_path)
            assert out.returncode == 2, out
            assert f"{who}: bad configuration: require_ipsec = true, but the nftables table inet ryu_dmm_ipsec " \
                   "cannot be read in this network namespace" in out.stderr, out.stderr
        nft(ns, "-f", "-", stdin=enforce.ruleset(port))
        nft(ns, "-f", "-", stdin=enforce.ruleset(port + 1).replace("ryu_dmm_ipsec", "other"))
        # the agent listens on port + 1, which this table does not cover: still refused, named
        out = subprocess.run(agent, capture_output=True, text=True, timeout=60, env=clean_env(tmp_path), cwd=tmp_path)
        assert out.returncode == 2 and f"UDP dport {port + 1}" in out.stderr, out
        log = tmp_path / "cmd.log"
        with open(log, "w") as f:
            proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=clean_env(tmp_path), cwd=tmp_path)
        try:
            assert wait_for(lambda: "ryu-dmm CMD started" in log.read_text() or proc.poll() is not None, 30)
            assert proc.poll() is None, log.read_text()
        finally:
            assert stop(proc, timeout=15) == 0, log.read_text()
