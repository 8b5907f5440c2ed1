"""An RS flood with changing MACs into the agent's access interface (a veth pair in a network
namespace this test creates and deletes): at most --new-mn-limit prefixes are taken per window, the
refusals are counted, and after the window a legitimate host still gets its Router Advertisement."""
import ctypes
import ipaddress
import os
import socket
import subprocess
import threading
import time

import pytest
from scapy.layers.inet6 import ICMPv6ND_RA, ICMPv6ND_RS, ICMPv6NDOptPrefixInfo, ICMPv6NDOptSrcLLAddr, IPv6
from scapy.layers.l2 import Ether

from ryu_dmm.agent.main import request
from ryu_dmm.mobility import messages as M
from ryu_dmm.wire import BindingUpdate, DecodeError, decode, encode
from tests.conftest import need
from tests.procs import BIN, clean_env, stop, wait_for

pytestmark = pytest.mark.root
NEW_MN_LIMIT, NEW_MN_WINDOW, MAC_LIMIT = 5, 3.0, 2  # the flags this test gives the agent
FLOOD = 40
LINE_BURST = 10  # docs/limits-agent.md
POOL = ipaddress.IPv6Network("2001:db8:1::/48")
CLONE_NEWNET = 0x40000000


def in_netns(ns: str, fn):
    """Run ``fn`` in a thread that entered ``ns``: sockets it opens stay in that namespace."""
    out = []

    def run():
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
            out.append(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            out.append(exc)
        finally:
            os.close(fd)
    t = threading.Thread(target=run)
    t.start()
    t.join()
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


class FakeCmd(threading.Thread):
    """Accepts every PBU (status 0, lifetime 3600)."""

    def __init__(self, sock):
        super().__init__(daemon=True)
        self.sock, self.stopping, self.pbus = sock, threading.Event(), 0
        sock.settimeout(0.1)

    def run(self):
        while not self.stopping.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
                msg = decode(data)
            except (socket.timeout, DecodeError):
                continue
            if isinstance(msg, BindingUpdate):
                self.pbus += 1
                self.sock.sendto(encode(M.pba_for(msg, 0, 3600)), addr)


def rs(mac: str, ll: str) -> bytes:
    return bytes(Ether(src=mac, dst="33:33:00:00:00:02") / IPv6(src=ll, dst="ff02::2") / ICMPv6ND_RS()
                 / ICMPv6NDOptSrcLLAddr(lladdr=mac))


def test_rs_flood_with_changing_macs(tmp_path):
    need(os.geteuid() == 0, "network namespaces and packet sockets need root")
    ns = f"dmmflood{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    proc = cmd = mn = None
    try:
        def sh(*args):
            subprocess.run(["ip", "netns", "exec", ns, *args], check=True, capture_output=True)
        sh("ip", "link", "set", "lo", "up")
        sh("sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")  # no RS/DAD/MLD of the kernel's own
        sh("ip", "link", "add", "acc", "type", "veth", "peer", "name", "mnif")
        sh("ip", "link", "set", "acc", "up")
        sh("ip", "link", "set", "mnif", "up")

        def open_sockets():
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            c.bind(("127.0.0.1", 0))
            m = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x86DD))
            m.bind(("mnif", 0))
            return c, m
        csock, mn = in_netns(ns, open_sockets)
        cmd = FakeCmd(csock)
        cmd.start()
        (tmp_path / "d.ini").write_text(f"[dmm]\ncmd_address = ::ffff:127.0.0.1\nport = {csock.getsockname()[1]}\n"
                                        "[timers]\nheartbeat_interval = 0\n"  # we play the CMD
                                        "[maar:maar1]\naddress = ::ffff:127.0.0.2\npool = 2001:db8:1::/48\n")
        control = str(tmp_path / "maar1.sock")
        log = tmp_path / "agent.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", ns, str(BIN / "ryu-dmm-maar"), "--config",
                                     str(tmp_path / "d.ini"), "--name", "maar1", "--port", "5436", "--control", control,
                                     "--access-iface", "acc", "--access-port", "5",
                                     "--new-mn-limit", str(NEW_MN_LIMIT), "--new-mn-window", str(NEW_MN_WINDOW),
                                     "--mac-limit", str(MAC_LIMIT), "--state-dir", str(tmp_path)], env=clean_env(), stdout=out,
                                    stderr=subprocess.STDOUT)

        def state():
            return request(control, {"op": "state"}, timeout=1)

        def alive():
            try:
                return state()["ok"]
            except OSError:
                return False
        assert wait_for(lambda: proc.poll() is not None or alive(), 15) and proc.poll() is None, log.read_text()

        # the flood: FLOOD new MACs at once
        macs = [f"02:00:00:00:10:{i:02x}" for i in range(FLOOD)]
        t0 = time.monotonic()
        for i, mac in enumerate(macs):
            mn.send(rs(mac, f"fe80::10:{i:x}"))
        assert wait_for(lambda: state()["counters"]["refused_attaches"] >= FLOOD - NEW_MN_LIMIT, 5), state()
        s = state()
        assert s["pool_in_use"] == NEW_MN_LIMIT  # exactly the limit: the (limit + 1)-th new MN was refused
        assert s["counters"]["refused_new_mn_rate"] == FLOOD - NEW_MN_LIMIT == s["counters"]["refused_attaches"]
        assert time.monotonic() - t0 < NEW_MN_WINDOW  # (all of that inside one window)
        events = request(control, {"op": "events"})["events"]
        refused = [e for e in events if e["event"] == "attach-refused"]
        assert len(refused) == LINE_BURST and refused[0]["reason"] == "new_mn_rate" and refused[0]["port"] == 5
        assert len([e for e in events if e["event"] == "rs"]) == NEW_MN_LIMIT
        assert sorted(m for m in s["bindings"]) == sorted(f"mn-{m.replace(':', '')}@dmm" for m in macs[:NEW_MN_LIMIT])

        # one host repeating itself: at most MAC_LIMIT triggers per second
        time.sleep(1.1)
        for _ in range(MAC_LIMIT + 1):
            mn.send(rs(macs[0], "fe80::10:0"))
        assert wait_for(lambda: state()["counters"]["refused_mac_rate"] == 1, 5), state()

        # garbage on the access link: counted, nothing else (RFC 4861 §6.1.1 validation)
        good = rs("02:00:00:00:30:01", "fe80::3001")
        garbage = [good[:14 + 30], good[:-1], good[:14 + 7] + b"\x40" + good[14 + 8:],  # truncated, short, hop 64
                   good[:14 + 40 + 2] + bytes([good[14 + 40 + 2] ^ 0xFF]) + good[14 + 40 + 3:]]  # bad checksum
        for frame in garbage:
            mn.send(frame)
        assert wait_for(lambda: state()["counters"]["bad_frames"] == len(garbage), 5), state()
        assert state()["pool_in_use"] == NEW_MN_LIMIT

        # after the window: a legitimate new host attaches and gets its RA
        time.sleep(max(0.0, t0 + NEW_MN_WINDOW + 0.2 - time.monotonic()))
        mn.settimeout(0.5)
        while True:  # drop what the link carried so far
            try:
                mn.recv(65535)
            except socket.timeout:
                break
        legit = "02:00:00:00:20:01"
        mn.send(rs(legit, "fe80::2001"))
        deadline, ra = time.monotonic() + 5, None
        while ra is None and time.monotonic() < deadline:
            try:
                frame = Ether(mn.recv(65535))
            except socket.timeout:
                continue
            if frame.dst == legit and frame.haslayer(ICMPv6ND_RA):
                ra = frame
        assert ra is not None, log.read_text()
        assert ra[IPv6].dst == "fe80::2001" and ra[IPv6].hlim == 255  # unicast to the RS's source
        info = ra[ICMPv6NDOptPrefixInfo]
        prefix = ipaddress.IPv6Network(f"{info.prefix}/{info.prefixlen}")
        assert info.prefixlen == 64 and prefix.subnet_of(POOL)
        s = state()
        assert s["pool_in_use"] == NEW_MN_LIMIT + 1 and s["bindings"]["mn-020000002001@dmm"]["local"] == [str(prefix)]
        assert s["counters"]["internal_errors"] == 0 and s["counters"]["bad_frames"] == len(garbage)
    finally:
        if proc is not None:
            assert stop(proc, timeout=10) == 0
        if cmd is not None:
            cmd.stopping.set()
            cmd.join(5)
            cmd.sock.close()
        if mn is not None:
            mn.close()
        subprocess.run(["ip", "netns", "del", ns], check=True)
    assert ns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
