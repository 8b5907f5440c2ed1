"""The CMD end to end with switches: many Open vSwitch bridges connected to one ``ryu-manager
ryu_dmm.cmd``, next to the same domain without switches and a bare Python UDP echo server, all
measured in one run by the same client (root; about 1.5 minutes).

Set-up: ONE private ovsdb-server + ovs-vswitchd in a temporary folder (``ryu_dmm.lab.ovs.PrivateOvs``),
SWITCHES userspace bridges (datapath_type=netdev, fail_mode=secure, OpenFlow 1.3), each the switch
of one MAAR (datapath_id = the bridge's dpid) with the ports its [maar:NAME] section declares: core
1, tunnel 2 (flow-based ip6gre, each with its own local_ip: one vswitchd refuses two identical
flow-based tunnel ports), agent 3 (internal ports) and access 10. MAAR k signals from 127.0.0.(k+2)
(::ffff:127.0.0.x to the CMD), as benchmarks/cmd_udp.py does.

Workloads (each MN i: home MAAR A(i), second MAAR B(i), one prefix at each, a MAC):
- registrations: PBUs of new MNs at their home MAAR (cmd_udp.py's request);
- handovers: a registered MN moves back and forth between A(i) and B(i) (PBU with HI=3, between
  MAGs, from the new MAAR); the CMD answers the new MAAR and sends a PBU with a Serving MAAR
  option to the old one, which the client answers (proxy mode). The time measured is PBU -> PBA
  at the new MAAR. An MN moves again only after both; enough MNs (4096) keep each below the
  CMD's limit of 3 PBUs a second to one MAAR about one MN (RFC 6275 MAX_UPDATE_RATE), which would
  otherwise hold the CMD's PBUs back.
With switches, the PBA leaves the CMD only once the new MAAR's switch has answered the barrier
after that MN's flows, and only once the CMD knows the MN's access port there from a Router
Solicitation packet-in. The client injects every MN's RS at both of its MAARs first (``ovs-ofctl
packet-out BRIDGE 10 table FRAME...``, many frames per call), so the handovers measure PBU ->
flows -> barrier -> PBA; a last phase hands MNs over to a MAAR that never saw their RS, to show the
hold timeout (1 s) that a benchmark without packet-ins would measure instead.

Peak: a closed loop with WINDOW handovers (or registrations) in flight for SECONDS; latency: an
open loop paced at half that peak (p50/p90/p99). Then: flow-mods and barriers per handover (from
/dmm/v1/stats and ovs-vswitchd's own OpenFlow message counter), the CPU each process used, every
bridge's flow table against REST /dmm/v1/maars/NAME/flows (then every switch reconnects: each
reconciliation must change nothing), a py-spy profile of the CMD under a closed-loop handover load
(py-spy in the venv: ``pip install py-spy``; without it the profile is skipped), and, in-process,
what one handover's OpenFlow messages cost to build (docs/performance-switches.md). Every process is started and stopped by its own pid; OVS with ``exit --cleanup``; the
temporary folder is removed. Usage: python benchmarks/cmd_switches.py [--seconds 5] [--switches 32]
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import secrets
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from ryu_dmm.lab.ovs import SCHEMA, PrivateOvs
from ryu_dmm.mobility import messages as M
from ryu_dmm.wire import BindingUpdate, Prefix, decode, encode
from ryu_dmm.wire.constants import HandoffIndicator

from cmd_udp import ECHO  # the same bare echo server as the signalling-only benchmark (benchmarks/ is on sys.path)

BIN = Path(sys.executable).parent
CORE, TUNNEL, AGENT, ACCESS = 1, 2, 3, 10
RETRY = 1.5  # seconds without an answer before a request is sent again (a held PBA takes <= 0.5 s)
TICK = os.sysconf("SC_CLK_TCK")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list, p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))] * 1000 if values else float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system time of a whole process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system


# ---- the MNs and the client ----------------------------------------------------------------------
class Domain:
    """Which MAARs and prefixes MN i uses (the same in every phase and CMD)."""

    def __init__(self, n_maars: int) -> None:
        self.n = n_maars

    def home(self, i: int) -> int:
        return i % self.n

    def away(self, i: int) -> int:
        return (self.home(i) + 1 + (i // self.n) % (self.n - 1)) % self.n

    def prefix(self, i: int, k: int) -> Prefix:
        """MN i's prefix at MAAR k: subnets below 0x8000 at its home, from 0x8000 up elsewhere."""
        sub = i // self.n + (0 if k == self.home(i) else 0x8000)
        return Prefix(((0x20010DB8 << 96) | (k + 1) << 80 | sub << 64).to_bytes(16, "big"), 64)

    @staticmethod
    def mac(i: int) -> bytes:
        return (0x0200_0000_0000 | i).to_bytes(6, "big")

    def config(self, cmd_port: int, rest_port: int, switches: bool) -> str:
        text = (f"[DEFAULT]\nwsapi_host = 127.0.0.1\nwsapi_port = {rest_port}\n[dmm]\ncmd_address = ::1\n"
                f"mode = proxy\nport = {cmd_port}\n[store]\ndir = state-{cmd_port}\n[timers]\nlifetime = 3600\n")
        for k in range(self.n):
            text += f"\n[maar:m{k}]\naddress = ::ffff:127.0.0.{k + 2}\npool = 2001:db8:{k + 1:x}::/48\n"
            if switches:
                text += (f"datapath_id = {k + 1}\ncore_port = {CORE}\ntunnel_port = {TUNNEL}\nagent_port = {AGENT}\n"
                         f"access_ports = {ACCESS}\n")
        return text


class Client:
    """One UDP socket per MAAR address. Starts registrations and handovers of MNs, answers the
    CMD's PBUs to previous MAARs, and reports each request's PBA (matched by MN-ID). An MN is done
    (free for its next move) once its PBA is in and, after a handover, once the previous MAAR has
    answered the CMD: moving it again earlier would supersede a handover still open at the CMD."""

    def __init__(self, dom: Domain, port: int, echo: bool = False) -> None:
        self.dom = dom
        self.echo = echo  # the server sends each request back: the copy is the answer
        self.dest = ("127.0.0.1", port)
        self.sel = selectors.DefaultSelector()
        self.socks = []
        for k in range(dom.n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((f"127.0.0.{k + 2}", 0))
            s.setblocking(False)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
            self.sel.register(s, selectors.EVENT_READ, k)
            self.socks.append(s)
        self.at: dict[int, int] = {}  # MN -> MAAR serving it (as last accepted)
        self.seq: dict[int, int] = collections.Counter()
        self.ts: dict[int, float] = {}
        self.inflight: dict[int, tuple] = {}  # MN -> (target MAAR, sequence, first sent, handoff, last sent)
        self.previous_owed: set[int] = set()  # MNs handed over whose previous MAAR has not been asked yet
        self.answered: set[int] = set()  # MNs with their PBA, still waiting for that question
        self.counts = collections.Counter()
        self.next_new = 0

    def close(self) -> None:
        for s in self.socks:
            s.close()
        self.sel.close()

    def _send(self, i: int, k: int, seq: int, handoff: int, first: float | None = None) -> None:
        t = max(time.time(), self.ts.get(i, 0.0) + 3 / 65536)  # strictly newer than the last PBU
        self.ts[i] = t
        msg = M.pbu(seq, t, f"mn{i}", self.dom.prefix(i, k), 3600, handoff, 3, Domain.mac(i))
        now = time.perf_counter()
        # (target MAAR, sequence, first sent at: latencies include a lost request's wait, handoff, last sent at)
        self.inflight[i] = (k, seq, first or now, handoff, now)
        self.socks[k].sendto(encode(msg), self.dest)

    def register(self, i: int) -> None:
        self.seq[i] += 1
        self._send(i, self.dom.home(i), self.seq[i] & 0xFFFF, int(HandoffIndicator.NEW_INTERFACE))

    def move(self, i: int) -> None:
        """Hand MN i over to the other of its two MAARs."""
        k = self.dom.away(i) if self.at[i] == self.dom.home(i) else self.dom.home(i)
        self.seq[i] += 1
        self.previous_owed.add(i)
        self._send(i, k, self.seq[i] & 0xFFFF, M.HI_BETWEEN_MAARS)

    def new(self) -> int:
        i = self.next_new
        self.next_new += 1
        self.register(i)
        return i

    def poll(self, timeout: float, lat: list | None = None) -> list[int]:
        """MNs whose request was answered (accepted or not); answers PBUs from the CMD."""
        done = []
        for key, _ in self.sel.select(timeout):
            sock, k = key.fileobj, key.data
            while True:
                try:
                    data, addr = sock.recvfrom(65535)
                except BlockingIOError:
                    break
                now = time.perf_counter()
                msg = decode(data)
                if type(msg) is BindingUpdate and not self.echo:  # we are the previous MAAR: answer
                    sock.sendto(encode(M.pba_for(msg, 0, msg.lifetime)), addr)
                    self.counts["pbu_to_previous_maar"] += 1
                    i = int(msg.mn_id[2:])
                    self.previous_owed.discard(i)
                    if i in self.answered:
                        self.answered.discard(i)
                        done.append(i)
                    continue
                i = int(msg.mn_id[2:])
                req = self.inflight.get(i)
                if req is None or req[0] != k or req[1] != msg.sequence:
                    self.counts["late_or_duplicate_pba"] += 1
                    continue
                del self.inflight[i]
                if self.echo:
                    pass
                elif msg.status == 0:
                    self.at[i] = k
                    self.counts["accepted"] += 1
                else:
                    self.counts[f"status_{msg.status}"] += 1
                    self.previous_owed.discard(i)
                if lat is not None:
                    lat.append(now - req[2])
                if i in self.previous_owed:
                    self.answered.add(i)
                else:
                    done.append(i)
        return done

    def busy(self) -> int:
        return len(self.inflight) + len(self.answered)

    def retry_stale(self) -> None:
        now = time.perf_counter()
        for i, (k, seq, first, handoff, last) in list(self.inflight.items()):
            if now - last > RETRY:
                self.counts["resent"] += 1
                self._send(i, k, seq, handoff, first)

    def closed_loop(self, seconds: float, window: int, start) -> tuple[float, int]:
        """``start()`` begins one request (returns False when there is nothing to start).
        Returns (requests done per second, requests done)."""
        for _ in range(window):
            if not start():
                break
        done, t0 = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < seconds and self.busy():
            finished = self.poll(0.25)
            done += len(finished)
            for i in finished:
                self.finished(i)
                start()
            self.retry_stale()
        return done / elapsed, done

    def open_loop(self, rate: float, seconds: float, start) -> list[float]:
        lat: list[float] = []
        interval, t0 = 1.0 / rate, time.perf_counter()
        nxt = t0
        while time.perf_counter() - t0 < seconds:
            now = time.perf_counter()
            while nxt <= now:
                if not start():
                    self.counts["open_loop_no_idle_mn"] += 1
                nxt += interval
            for i in self.poll(max(0.0, nxt - time.perf_counter()), lat):
                self.finished(i)
            self.retry_stale()
        return lat

    def drain(self, lat: list | None = None, timeout: float = 5.0) -> None:
        """Wait for every request in flight (answering the CMD's PBUs meanwhile); ``lat``: the
        open loop's latencies, which include the requests still in flight when it ended."""
        deadline = time.perf_counter() + timeout
        while self.busy() and time.perf_counter() < deadline:
            for i in self.poll(0.1, lat):
                self.finished(i)
            self.retry_stale()
        if self.inflight:
            self.counts["never_answered"] += len(self.inflight)
        if self.answered:
            self.counts["previous_maar_never_asked"] += len(self.answered)
            self.answered.clear()

    # the idle pool for handovers
    idle: collections.deque = None

    def finished(self, i: int) -> None:
        if self.idle is not None and i in self.at:
            self.idle.append(i)

    def start_handover(self) -> bool:
        if not self.idle:
            return False
        self.move(self.idle.popleft())
        return True

    def start_registration(self) -> bool:
        self.new()
        return True


def echo_row(dom: Domain, port: int, seconds: float, window: int, latency: bool = True) -> dict:
    """The same client and requests against the UDP echo server."""
    c = Client(dom, port, echo=True)
    loss = Losses(c, port)
    try:
        peak, _ = c.closed_loop(seconds, window, c.start_registration)
        c.drain()
        loss.cut()
        lat = None
        if latency:
            lat = c.open_loop(peak / 2, seconds, c.start_registration)
            c.drain(lat)
            loss.cut()
    finally:
        c.close()
    return row("python UDP echo" + ("" if latency else " (again, peak only)"), peak, lat, lost=loss.text())


class Meter:
    """CPU time of some processes (and this one) over a stretch of wall time."""

    def __init__(self, pids: dict, client: "Client", udp_port: int) -> None:
        self.pids, self.client, self.port = pids, client, udp_port
        self.t0 = self._read()

    def _read(self) -> dict:
        out = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        out["client"], out["wall"] = own_cpu(), time.monotonic()
        # time the CMD's (single, eventlet) thread was runnable but waiting for a CPU
        out["cmd_runq"] = int(Path(f"/proc/{self.pids['CMD']}/schedstat").read_text().split()[1]) / 1e9
        out["udp_drops"] = udp_drops(self.port)
        out["accepted"] = self.client.counts["accepted"]
        out["counts"] = collections.Counter(self.client.counts)
        return out

    def stop(self) -> dict:
        t1 = self._read()
        out = {k: t1[k] - self.t0[k] for k in t1 if k != "counts"}
        out["counts"] = {k: v for k, v in (t1["counts"] - self.t0["counts"]).items()
                         if k not in ("accepted", "pbu_to_previous_maar")}
        return out


def udp_drops(port: int) -> int:
    """Datagrams the kernel dropped at the UDP socket bound to ``port`` (its receive buffer was full)."""
    total = 0
    for name in ("/proc/net/udp6", "/proc/net/udp"):
        for line in Path(name).read_text().splitlines()[1:]:
            cols = line.split()
            if int(cols[1].rsplit(":", 1)[1], 16) == port:
                total += int(cols[-1])
    return total


def cpu_lines(used: dict, what: str) -> list[str]:
    wall, n = used["wall"], max(used["accepted"], 1)
    names = [k for k in ("CMD", "ovs-vswitchd", "client") if k in used]
    shares = ", ".join(f"{k} {used[k] / wall * 100:.0f}%" for k in names)
    per = ", ".join(f"{k} {used[k] / n * 1e6:.0f} us" for k in names if k != "client")
    out = [f"  CPU over {wall:.1f} s ({used['accepted']} {what}s answered): {shares} of one core; per {what}: {per}; "
           f"the CMD waited for a CPU {used['cmd_runq'] / wall * 100:.0f}% of the time"]
    if used["udp_drops"] or used["counts"]:
        out.append(f"  the CMD's UDP socket dropped {used['udp_drops']} datagrams (receive buffer full); "
                   f"client: {used['counts'] or 'nothing unusual'}")
    return out


def row(name: str, peak: float, lat: list | None, **extra) -> dict:
    r = {"name": name, "peak": peak, "rate": peak / 2 if lat is not None else None, "n": len(lat) if lat else 0,
         "p50": pct(lat, 50) if lat else None, "p90": pct(lat, 90) if lat else None,
         "p99": pct(lat, 99) if lat else None}
    r.update(extra)
    return r


# ---- processes -----------------------------------------------------------------------------------
def rest(port: int, path: str, timeout: float = 15) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return json.loads(r.read())


class Cmd:
    def __init__(self, work: Path, dom: Domain, switches: bool) -> None:
        self.work = work
        self.udp, self.rest, self.of = free_port(socket.SOCK_DGRAM), free_port(), free_port()
        name = "switches" if switches else "signalling"
        (work / f"{name}.ini").write_text(dom.config(self.udp, self.rest, switches))
        self.log = work / f"cmd-{name}.log"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "ryu-manager"), "--config-file", str(work / f"{name}.ini"), "--ofp-tcp-listen-port",
                 str(self.of), "ryu_dmm.cmd"], stdout=out, stderr=subprocess.STDOUT, cwd=work)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.stats()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the CMD did not start:\n{self.log.read_text()[-3000:]}")
                time.sleep(0.1)

    def stats(self) -> dict:
        return rest(self.rest, "/dmm/v1/stats")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def counter(stats: dict, name: str) -> int:
    return stats["messages"].get(name, 0)


def rs_frame(mac: bytes) -> bytes:
    """An MN's Router Solicitation (with its source link-layer address option), as the switch sees it."""
    src = b"\xfe\x80" + bytes(6) + bytes((mac[0] ^ 2, mac[1], mac[2], 0xFF, 0xFE, mac[3], mac[4], mac[5]))
    dst = bytes.fromhex("ff020000000000000000000000000002")
    icmp = bytearray(struct.pack("!BBHIBB", 133, 0, 0, 0, 1, 1) + mac)
    data = src + dst + struct.pack("!II", len(icmp), 58) + icmp
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    icmp[2:4] = struct.pack("!H", ~total & 0xFFFF)
    return b"\x33\x33\x00\x00\x00\x02" + mac + b"\x86\xdd" + struct.pack("!IHBB", 6 << 28, len(icmp), 58, 255) + \
        src + dst + bytes(icmp)


class Switches:
    """SWITCHES bridges in one private ovs-vswitchd, each connected to the CMD."""

    def __init__(self, folder: Path, n: int) -> None:
        self.tag = "d" + secrets.token_hex(2)  # interface names unique to this run (tap devices)
        self.n = n
        folder.mkdir()
        self.ovs = PrivateOvs(folder)
        self.pid = None

    def start(self, of_port: int) -> None:
        """ovsdb-server and ovs-vswitchd, then every bridge in one transaction."""
        self.ovs.start()
        self.pid = int((self.ovs.dir / "ovs-vswitchd.pid").read_text())
        args = []
        for k in range(self.n):
            b = self.bridge(k)
            args += ["--", "add-br", b, "--", "set", "bridge", b, "datapath_type=netdev", "protocols=OpenFlow13",
                     "fail_mode=secure", f"other-config:datapath-id={k + 1:016x}"]
            for suffix, ofport in (("c", CORE), ("a", AGENT), ("m", ACCESS)):
                args += ["--", "add-port", b, b + suffix, "--", "set", "interface", b + suffix, "type=internal",
                         f"ofport_request={ofport}"]
            args += ["--", "add-port", b, b + "t", "--", "set", "interface", b + "t", "type=ip6gre",
                     "options:remote_ip=flow", "options:key=flow", f"options:local_ip=2001:db8:ff::{k + 1:x}",
                     f"ofport_request={TUNNEL}"]
            args += ["--", "set-controller", b, f"tcp:127.0.0.1:{of_port}"]
        self.ovs.vsctl(*args)

    def bridge(self, k: int) -> str:
        return f"{self.tag}{k:02d}"

    def mgmt(self, k: int) -> str:
        return f"unix:{self.ovs.dir}/{self.bridge(k)}.mgmt"

    def inject_rs(self, per_maar: dict[int, list[int]], dom: Domain, batch: int = 100) -> None:
        """The MNs' RS frames enter each bridge's pipeline as if from the access port."""
        for k, mns in per_maar.items():
            for j in range(0, len(mns), batch):
                frames = [rs_frame(dom.mac(i)).hex() for i in mns[j:j + batch]]
                self.ovs.run("ovs-ofctl", "-O", "OpenFlow13", "packet-out", self.mgmt(k), str(ACCESS), "table", *frames)

    def flows(self, k: int) -> list[tuple]:
        """(table, priority, cookie) of every flow in bridge k."""
        out = self.ovs.run("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", self.mgmt(k))
        got = []
        for line in out.splitlines():
            m = re.search(r"cookie=(0x[0-9a-f]+),.*?table=(\d+),.*?priority=(\d+)", line)
            if m:
                got.append((int(m.group(2)), int(m.group(3)), int(m.group(1), 16)))
        return got

    def openflow_received(self) -> int:
        out = self.ovs.appctl("ovs-vswitchd", "coverage/read-counter", "ofproto_recv_openflow")
        return int(out.strip() or 0)

    def stop(self) -> None:
        self.ovs.stop()


def wait_stats(cmd: Cmd, name: str, value: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if counter(cmd.stats(), name) >= value:
            return True
        time.sleep(0.1)
    return False


# ---- the profile ---------------------------------------------------------------------------------
# ---- the profile ---------------------------------------------------------------------------------
IDLE = re.compile(r"^(\w+\.)?(wait|do_poll) \(eventlet/hubs/")
# What each busy sample is spent on: the innermost frame that matches names it.
CATEGORIES = [
    ("OpenFlow out: socket writes (Ryu Datapath._send_loop)", r"^Datapath\._send_loop "),
    ("OpenFlow out: Ryu's send queue (put, semaphore, greenthread switch)", r"^Datapath\.send "),
    ("OpenFlow out: serialize (Ryu send_msg)", r"^Datapath\.send_msg "),
    ("OpenFlow out: build message objects (ofreference.messages: OFPMatch, OFPFlowMod)", r"^messages \(ryu_dmm/lab/ofreference"),
    ("OpenFlow out: encode (ofsync.encode: ryu_dmm.ofwire, struct)", r"^encode \(ryu_dmm/ofsync"),
    ("flow mirror: render flows, check the declaration, holds", r"^FlowMirror\.handle "),
    ("OpenFlow in: read, parse, queue events (Ryu Datapath._recv_loop)", r"^Datapath\._recv_loop "),
    ("PMIPv6 decode / encode", r"^(decode|encode) \(ryu_dmm/wire"),
    ("CMD core (binding cache, handover)", r"^CmdCore\.handle "),
    ("UDP send", r"^Endpoint\.send "),
    ("stats, timers", r"^(Stats\.|HubTimers\.)"),
    ("Ryu app event loop (barrier-reply handler, dispatch)", r"^RyuApp\._event_loop "),
    ("UDP receive, dispatch, CmdApp glue", r"^Endpoint\._serve_udp "),
]
# Stacks py-spy could not unwind to a frame named above, by the modules they show.
FALLBACK = [
    ("OpenFlow encode in Ryu/netaddr, stack cut short",
     r".*\((ryu/ofproto|ryu/lib/(pack_utils|addrconv|type_desc)|netaddr)/"),
    ("eventlet hub, queues, greenthread switches", r".*\(eventlet/"),
]


def short(frame: str) -> str:
    """``func (path/to/pkg/module.py)`` -> ``func (pkg/module.py)``."""
    m = re.match(r"(.*) \((.*)\)$", frame)
    if not m:
        return frame
    path = re.sub(r"^.*?/(ryu_dmm|ryu|eventlet|greenlet|netaddr)/", r"\1/", m.group(2))
    return f"{m.group(1)} ({path})"


def profile_lines(raw: Path, top: int) -> list[str]:
    """Categories, self and inclusive shares from py-spy's collapsed stacks (``--format raw``)."""
    total = idle = 0
    own, incl, cat = collections.Counter(), collections.Counter(), collections.Counter()
    patterns = [(name, re.compile(rx)) for name, rx in CATEGORIES]
    fallback = [(name, re.compile(rx)) for name, rx in FALLBACK]
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        n = int(n)
        frames = [short(f) for f in stack.split(";")]
        total += n
        if IDLE.match(frames[-1]):
            idle += n
            continue
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
        for f in reversed(frames):
            name = next((name for name, rx in patterns if rx.match(f)), None)
            if name:
                cat[name] += n
                break
        else:
            name = next((name for name, rx in fallback for f in frames if rx.match(f)), "other")
            cat[name] += n
    busy = max(total - idle, 1)
    out = [f"  {total} samples, {idle / max(total, 1) * 100:.0f}% idle in the hub; shares of the {busy} busy samples",
           "  by part (innermost matching frame):"]
    out += [f"  {n / busy * 100:5.1f}%  {name}" for name, n in cat.most_common()]
    out.append("  self (the function itself, including C calls it makes):")
    out += [f"  {n / busy * 100:5.1f}%  {f}" for f, n in own.most_common(top)]
    out.append("  inclusive (the function and everything it calls; greenthread and dispatch frames left out):")
    skip = re.compile(r"^(GreenThread\.main|spawn\.<locals>\._launch|BaseHub\.|Endpoint\._(serve_udp|dispatch) |"
                      r"CmdApp\.(on_datagram|_core_event|_mirror_event) |messages\.<locals>)")
    shown = 0
    for f, n in incl.most_common():
        if shown >= top or n / busy < 0.02:
            break
        if not skip.match(f):
            out.append(f"  {n / busy * 100:5.1f}%  {f}")
            shown += 1
    return out


# ---- the run -------------------------------------------------------------------------------------
class Losses:
    """Datagrams the server's socket dropped, and requests the client sent again, per stretch."""

    def __init__(self, c: Client, port: int) -> None:
        self.c, self.port, self.parts = c, port, []
        self._mark()

    def _mark(self) -> None:
        self.at = (udp_drops(self.port), self.c.counts["resent"])

    def cut(self) -> None:
        d, r = udp_drops(self.port), self.c.counts["resent"]
        self.parts.append((d - self.at[0], r - self.at[1]))
        self._mark()

    def text(self) -> str:
        """``dropped/resent`` for the closed loop, then for the open loop."""
        return " ".join(f"{d}/{r}" for d, r in self.parts)


def measure_registrations(c: Client, seconds: float, window: int, port: int) -> tuple[float, list, str]:
    c.idle = None
    loss = Losses(c, port)
    peak, _ = c.closed_loop(seconds, window, c.start_registration)
    c.drain()
    loss.cut()
    lat = c.open_loop(peak / 2, seconds, c.start_registration)
    c.drain(lat)
    loss.cut()
    return peak, lat, loss.text()


def measure_handovers(c: Client, seconds: float, window: int, mns: list[int], port: int) -> tuple[float, list, str]:
    c.idle = collections.deque(mns)
    loss = Losses(c, port)
    peak, _ = c.closed_loop(seconds, window, c.start_handover)
    c.drain()
    loss.cut()
    c.idle = collections.deque(mns)
    lat = c.open_loop(peak / 2, seconds, c.start_handover)
    c.drain(lat)
    loss.cut()
    return peak, lat, loss.text()


def register_listed(c: Client, mns: list[int], window: int) -> tuple[float, int]:
    it = iter(mns)

    def start() -> bool:
        i = next(it, None)
        if i is not None:
            c.register(i)
        return i is not None
    c.idle = None
    out = c.closed_loop(120, window, start)
    c.drain()
    return out


def events(before: dict, after: dict) -> dict:
    return {k: v - before["events"].get(k, 0) for k, v in after["events"].items() if v - before["events"].get(k, 0)}


def delta(before: dict, after: dict, name: str) -> int:
    return counter(after, name) - counter(before, name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="per measured phase (default 5)")
    ap.add_argument("--window", type=int, default=64, help="requests in flight in the closed loops (default 64)")
    ap.add_argument("--switches", type=int, default=32, help="bridges = MAARs, 2..250 (default 32)")
    ap.add_argument("--mns", type=int, default=4096, help="MNs handed over (default 4096)")
    ap.add_argument("--profile-seconds", type=float, default=5.0, help="py-spy record time; 0: no profile")
    ap.add_argument("--top", type=int, default=12, help="profile entries shown per list")
    ap.add_argument("--no-micro", dest="micro", action="store_false",
                    help="skip the in-process measurement of the OpenFlow-out path")
    ap.add_argument("--keep", type=Path, help="copy the CMD logs, configurations and raw profile here")
    args = ap.parse_args()
    if os.geteuid() != 0 or not Path(SCHEMA).exists():
        raise SystemExit("needs root and Open vSwitch (ovsdb-server, ovs-vswitchd)")
    if not 2 <= args.switches <= 250:
        raise SystemExit("--switches: 2..250")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the clean-up below runs
    t_start = time.monotonic()
    dom = Domain(args.switches)
    work = Path(tempfile.mkdtemp(prefix="ryu-dmm-bench-sw-"))
    load = os.getloadavg()
    rows, notes, prof = [], [], []
    echo = cmd = sw = c = None
    try:
        # 1. the bare echo server, then the same domain without switches
        echo_port = free_port(socket.SOCK_DGRAM)
        echo = subprocess.Popen([sys.executable, "-c", ECHO, str(echo_port)])
        time.sleep(0.3)
        rows.append(echo_row(dom, echo_port, args.seconds, args.window))
        cmd = Cmd(work, dom, switches=False)
        c = Client(dom, cmd.udp)
        meter = Meter({"CMD": cmd.proc.pid}, c, cmd.udp)
        peak, lat, lost = measure_registrations(c, args.seconds, args.window, cmd.udp)
        rows.append(row("no switches: registrations", peak, lat, lost=lost))
        notes.append("no switches, registrations of new MNs (as benchmarks/cmd_udp.py):")
        notes += cpu_lines(meter.stop(), "registration")
        registered = [i for i in range(min(args.mns, c.next_new)) if c.at.get(i) == dom.home(i)]
        s0, meter = cmd.stats(), Meter({"CMD": cmd.proc.pid}, c, cmd.udp)
        peak, lat, lost = measure_handovers(c, args.seconds, args.window, registered, cmd.udp)
        used, s1 = meter.stop(), cmd.stats()
        rows.append(row("no switches: handovers", peak, lat, lost=lost))
        warn_rate(notes, peak, len(registered))
        notes.append(f"no switches, handovers of {len(registered)} MNs: CMD events {events(s0, s1)}")
        notes += cpu_lines(used, "handover")
        c.close()
        c = None
        cmd.stop()
        cmd = None

        # 2. the same domain, every MAAR with its switch
        cmd = Cmd(work, dom, switches=True)
        t0 = time.monotonic()
        sw = Switches(work / "ovs", args.switches)
        sw.start(cmd.of)
        if not wait_stats(cmd, "reconciliations", args.switches, 30):
            raise SystemExit(f"not every switch connected:\n{cmd.log.read_text()[-3000:]}")
        notes.append(f"{args.switches} switches: bridges created in one ovs-vswitchd, connected and reconciled in "
                     f"{time.monotonic() - t0:.1f} s")
        mns = list(range(args.mns))
        per_maar = collections.defaultdict(list)
        for i in mns:
            per_maar[dom.home(i)].append(i)
            per_maar[dom.away(i)].append(i)
        learnt0, t0 = counter(cmd.stats(), "mn_ports_learnt"), time.monotonic()
        cpu0 = cpu_seconds(cmd.proc.pid)
        for _ in range(3):  # packet-ins the switch could not queue: injected again (a port learnt twice counts once)
            sw.inject_rs(per_maar, dom)
            if wait_stats(cmd, "mn_ports_learnt", learnt0 + 2 * len(mns), 10):
                break
        learnt = counter(cmd.stats(), "mn_ports_learnt") - learnt0
        per_packet_in = (cpu_seconds(cmd.proc.pid) - cpu0) / max(learnt, 1)
        notes.append(f"  RS packet-ins: {learnt} MN ports learnt of {2 * len(mns)} RSs injected (every MN at both its "
                     f"MAARs) in {time.monotonic() - t0:.1f} s; the CMD used {per_packet_in * 1e6:.0f} us CPU "
                     f"per packet-in")
        c = Client(dom, cmd.udp)
        s0, meter = cmd.stats(), Meter({"CMD": cmd.proc.pid, "ovs-vswitchd": sw.pid}, c, cmd.udp)
        peak, done = register_listed(c, mns, args.window)
        used, s1 = meter.stop(), cmd.stats()
        rows.append(row(f"{args.switches} switches: registrations", peak, None))
        notes.append(f"{args.switches} switches, registrations of {done} MNs (closed loop, peak only): flow groups "
                     f"pushed per registration {delta(s0, s1, 'flow_groups_pushed') / max(done, 1):.2f}")
        notes += cpu_lines(used, "registration")

        idle0 = cpu_seconds(sw.pid), time.monotonic()
        time.sleep(1.2)  # ovs-vswitchd adds up its counters once a second
        ovs_idle = (cpu_seconds(sw.pid) - idle0[0]) / (time.monotonic() - idle0[1])
        s0, of0 = cmd.stats(), sw.openflow_received()
        meter = Meter({"CMD": cmd.proc.pid, "ovs-vswitchd": sw.pid}, c, cmd.udp)
        peak, lat, lost = measure_handovers(c, args.seconds, args.window, [i for i in mns if i in c.at], cmd.udp)
        used = meter.stop()
        rows.append(row(f"{args.switches} switches: handovers", peak, lat, lost=lost))
        warn_rate(notes, peak, len(mns))
        time.sleep(1.2)
        s1, of1 = cmd.stats(), sw.openflow_received()
        n = max(used["accepted"], 1)
        groups = delta(s0, s1, "flow_groups_pushed")
        notes.append(f"{args.switches} switches, handovers of {len(mns)} MNs: CMD events {events(s0, s1)}")
        notes += cpu_lines(used, "handover")
        notes.append(f"  (ovs-vswitchd with {args.switches} idle bridges: {ovs_idle * 100:.0f}% of one core)")
        notes.append(f"  per handover (PBA accepted): {groups / n:.2f} flow groups pushed (/dmm/v1/stats "
                     f"flow_groups_pushed; a group = 1 delete by cookie + its flow adds + 1 barrier); ovs-vswitchd "
                     f"received {(of1 - of0) / n:.2f} OpenFlow messages (coverage ofproto_recv_openflow; "
                     f"expected 2 deletes + 4 + 2 adds + 2 barriers = 10)")
        notes.append(f"  flows pushed -> every barrier answered, as the CMD measures it (ms): "
                     f"{s1['flows_confirmed_ms']}")

        # 3. the profile, under a closed-loop handover load
        if args.profile_seconds > 0 and not (BIN / "py-spy").exists():
            prof = [f"no profile: {BIN / 'py-spy'} is missing (pip install py-spy)"]
        elif args.profile_seconds > 0:
            raw = work / "profile.raw"
            spy = subprocess.Popen([str(BIN / "py-spy"), "record", "--pid", str(cmd.proc.pid), "--duration",
                                    str(int(args.profile_seconds)), "--rate", "250", "--nolineno", "--idle",
                                    "--format", "raw", "-o", str(raw)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            c.idle = collections.deque(i for i in mns if i in c.at)
            rate, _ = c.closed_loop(int(args.profile_seconds) + 1, args.window, c.start_handover)
            c.drain()
            _, err = spy.communicate(timeout=30)
            prof = [f"py-spy record on the CMD ({int(args.profile_seconds)} s, 250 Hz) during a closed "
                    f"loop of {rate:,.0f} handovers/s:"]
            prof += profile_lines(raw, args.top) if raw.exists() else [f"  py-spy failed: {err.decode()[-500:]}"]

        # 4. no port known at the new MAAR: the PBA waits for the hold timeout
        fresh = list(range(args.mns, args.mns + args.switches))
        learnt = counter(cmd.stats(), "mn_ports_learnt")
        sw.inject_rs({dom.home(i): [i] for i in fresh}, dom)
        wait_stats(cmd, "mn_ports_learnt", learnt + len(fresh), 10)
        register_listed(c, fresh, len(fresh))
        lat = []
        for i in fresh:
            c.move(i)
        c.drain(lat)
        rows.append(row(f"{args.switches} switches: handovers, port unknown", float("nan"), lat, fixed=len(fresh)))
        sw.inject_rs({dom.away(i): [i] for i in fresh}, dom)  # their RS at last: the new MAAR's flows follow
        time.sleep(0.5)

        # 5. what the switches hold against what the CMD wants
        notes += check_flows(cmd, sw, args.switches)
        bad = {k: v for k, v in c.counts.items() if k not in ("accepted", "pbu_to_previous_maar")}
        notes.append(f"client over the switch phases: {dict(c.counts)}" if bad else
                     "client over the switch phases: every request answered, nothing resent")
        c.close()
        c = None
        # the echo loop once more: did the machine's load change during the run?
        rows.append(echo_row(dom, echo_port, min(args.seconds, 3), args.window, latency=False))
    finally:
        if c is not None:
            c.close()
        if cmd is not None:
            cmd.stop()
        if sw is not None:
            sw.stop()
        if echo is not None:
            echo.terminate()
            echo.wait(10)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for f in work.glob("*"):
                if f.is_file():
                    shutil.copy(f, args.keep)
        shutil.rmtree(work, ignore_errors=True)
    if args.micro:
        prof += openflow_out_micro()
    report(args, rows, notes, prof, load, time.monotonic() - t_start)


# ---- in-process: the CMD's OpenFlow-out path for one handover -------------------------------------
def openflow_out_micro() -> list[str]:
    """What one handover's two ReplaceFlows cost in this process: ofsync.encode (ryu_dmm.ofwire,
    plain struct), as the CMD does it, against ofreference.messages (Ryu objects) and Ryu's serialize, as
    it did before; one sendall per message against one per group on a loopback TCP socket."""
    import timeit
    from ryu.ofproto import ofproto_v1_3, ofproto_v1_3_parser
    from ryu_dmm import ofsync, pipeline as P
    from ryu_dmm.lab import ofreference
    from ryu_dmm.flowmirror import ReplaceFlows
    from ryu_dmm.mobility.dataplane import LocalRoute, MnDataPlane, TunnelToAnchor, TunnelToServing

    class Dp:  # what ofsync and Ryu's serialize need of a datapath
        ofproto, ofproto_parser, id = ofproto_v1_3, ofproto_v1_3_parser, 1

    pl = P.load()
    ports = P.SwitchPorts(CORE, TUNNEL, AGENT, (ACCESS,))
    a, b = "::ffff:127.0.0.2", "::ffff:127.0.0.3"
    dlif = {a: bytes.fromhex("020000000002"), b: bytes.fromhex("020000000003")}
    view = P.MaarView(dlif[b], bytes.fromhex("02000000ffff"), 0x444D4D, dlif)
    dom, mac = Domain(2), Domain.mac(5)
    p1, p2 = dom.prefix(5, 1), dom.prefix(5, 0)
    serving = MnDataPlane(local=(LocalRoute(p2, mac, ACCESS),), to_anchor=(TunnelToAnchor(p1, a, mac, ACCESS),))
    previous = MnDataPlane(to_serving=(TunnelToServing(p1, b),))
    cookie = P.cookie_of("mn5")
    effects = [ReplaceFlows(b, cookie, tuple(P.mn_flows("mn5", serving, ports, view)), 7),
               ReplaceFlows(a, cookie, tuple(P.mn_flows("mn5", previous, ports, view)), 8)]
    dp = Dp()

    def ryu_build():
        return [m for e in effects for m in ofreference.messages(dp, pl, e)]

    def ryu_bytes():
        out = []
        for e in effects:
            for m in ofreference.messages(dp, pl, e):
                if m.xid is None:
                    m.set_xid(e.barrier)  # as ofsync.encode numbers a push's flow-mods
                m.serialize()
                out.append(bytes(m.buf))
        return out

    def encoded():
        return [ofsync.encode(pl, e) for e in effects]
    groups, theirs = encoded(), ryu_bytes()
    same = b"".join(groups) == b"".join(theirs)

    def best(fn, n):
        return min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6
    t_build, t_all, t_enc = best(ryu_build, 300), best(ryu_bytes, 300), best(encoded, 3000)
    t_match = best(lambda: [ofreference._match(ofproto_v1_3_parser, f.match) for e in effects for f in e.flows], 300)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    reader = subprocess.Popen([sys.executable, "-c", "import socket, sys\ns = socket.create_connection(('127.0.0.1', "
                               "int(sys.argv[1])))\nwhile s.recv(1 << 20):\n    pass", str(srv.getsockname()[1])])
    conn, _ = srv.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        t_each = best(lambda: [conn.sendall(m) for m in theirs], 3000)
        t_joined = best(lambda: [conn.sendall(g) for g in groups], 3000)
    finally:
        conn.close()
        srv.close()
        reader.wait(10)
    return [f"in-process, one handover's OpenFlow out ({len(theirs)} messages, {sum(map(len, groups))} bytes in "
            f"{len(groups)} writes: 2 deletes by cookie, 4 + 2 flow adds, 2 barriers), best of 5:",
            f"  ofsync.encode (ryu_dmm.ofwire, struct; what the CMD sends) {t_enc:.0f} us",
            f"  before: ofreference.messages (Ryu OFPMatch/OFPFlowMod objects) {t_build:.0f} us, of which the 6 OFPMatch "
            f"{t_match:.0f} us; with Ryu's serialize {t_all:.0f} us = {t_all / t_enc:.1f}x encode; "
            f"byte-identical: {'yes' if same else 'NO'}",
            f"  loopback TCP, plain sockets: one sendall per message {t_each:.1f} us, one per group {t_joined:.1f} us"]


def warn_rate(notes: list, rate: float, mns: int) -> None:
    """The CMD sends at most MAX_UPDATE_RATE (3) PBUs a second to one MAAR about one MN (RFC 6275
    §11.8; [timers] max_update_rate) and holds the rest: an MN handed over back and forth more than
    about 6 times a second waits for the CMD's PBU to its previous MAAR, and the loop measures that."""
    if rate / max(mns, 1) > 4:
        notes.append(f"WARNING: {rate / mns:.1f} handovers a second per MN: the CMD's rate limit per MN and peer "
                     f"(3 PBUs/s) holds PBUs back; use more MNs (--mns)")


def check_flows(cmd: Cmd, sw: Switches, n: int) -> list[str]:
    """Every bridge's flows (table, priority, cookie) against REST's wanted flows; then every switch
    reconnects, and the CMD's reconciliation compares matches and actions too (0 removed, 0 added)."""
    out, mismatches, counts = [], [], []
    for k in range(n):
        view = rest(cmd.rest, f"/dmm/v1/maars/m{k}/flows")
        want = collections.Counter((f["table_id"], f["priority"], int(f["cookie"], 16)) for f in view["wanted"])
        have = collections.Counter(sw.flows(k))
        counts.append(sum(have.values()))
        if want != have or view["installed_count"] != sum(have.values()):
            mismatches.append(f"  m{k}: the switch holds {sum(have.values())}, the CMD wants {sum(want.values())} "
                              f"(its flow stats say {view['installed_count']}): {sum((want - have).values())} missing, "
                              f"{sum((have - want).values())} extra")
    out.append(f"flow tables at the end: {sum(counts)} flows in {n} bridges, per bridge {min(counts)}..{max(counts)} "
               f"({' '.join(map(str, counts))}); "
               + ("each equals REST /dmm/v1/maars/NAME/flows wanted (table, priority, cookie) and the CMD's flow stats"
                  if not mismatches else f"{len(mismatches)} MISMATCHES:"))
    out += mismatches
    done = counter(cmd.stats(), "reconciliations")
    sw.ovs.appctl("ovs-vswitchd", "bridge/reconnect")
    if wait_stats(cmd, "reconciliations", done + n, 30):
        lines = re.findall(r"reconciliations \S+: (\d+) removed, (\d+) added", cmd.log.read_text())[-n:]
        changed = [ln for ln in lines if ln != ("0", "0")]
        out.append(f"every switch reconnected: {n} reconciliations, "
                   + ("none removed or added a flow (matches and actions as rendered)" if not changed else
                      f"{len(changed)} CHANGED flows: {changed}"))
    else:
        out.append("every switch reconnected: NOT all reconciled within 30 s")
    final = cmd.stats()
    out.append(f"CMD totals: events {json.dumps(final['events'], sort_keys=True)}, flows refused "
               f"{counter(final, 'flows_refused')}, flow groups pushed {counter(final, 'flow_groups_pushed')}")
    return out


def report(args, rows, notes, prof, load, took) -> None:
    print(f"one client process, {args.switches} MAARs (127.0.0.2-{args.switches + 1}), window {args.window}, "
          f"{args.seconds:g} s per phase, python {sys.version.split()[0]}, {os.cpu_count()} cores, load average "
          f"{load[0]:.2f} at start; whole run {took:.0f} s")
    print(f"{'server: workload':42} {'peak/s':>8} | at half peak: {'rate/s':>7} {'p50 ms':>8} {'p90 ms':>8} "
          f"{'p99 ms':>8} {'answers':>7} | dropped/resent")
    for r in rows:
        peak = "" if r["peak"] != r["peak"] else f"{r['peak']:8,.0f}"
        if r.get("fixed"):
            tail = f"{r['fixed']:>6} at once {r['p50']:8.1f} {r['p90']:8.1f} {r['p99']:8.1f} {r['n']:7d}"
        elif r["rate"] is None:
            tail = f"{'-':>21}"
        else:
            tail = f"{'':14}{r['rate']:7,.0f} {r['p50']:8.3f} {r['p90']:8.3f} {r['p99']:8.3f} {r['n']:7d}"
        print(f"{r['name']:42} {peak:>8} | {tail:<62} | {r.get('lost', '')}")
    echo = rows[0]["peak"]
    print("peaks against the echo loop's (first row): " + "; ".join(
        f"{r['name']} {r['peak'] / echo * 100:.1f}%" for r in rows[1:] if r["peak"] == r["peak"]))
    print("dropped/resent: datagrams the server's UDP socket dropped (receive buffer full) / requests the client "
          "sent again after 1.5 s, in the closed loop then in the open loop; a resent request's latency counts from "
          "its first sending")
    for line in notes + prof:
        print(line)


if __name__ == "__main__":
    main()
