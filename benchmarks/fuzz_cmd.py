"""Fuzz a real CMD (``ryu-manager ryu_dmm.cmd``) over UDP on loopback and print what happened.

COUNT datagrams (seeded: the same seed sends the same datagrams, but for the clock in their
timestamps; ``stream_sha256`` is the digest of the stream before the clock is put in) from six
MAAR addresses (127.0.0.2-7) and four strangers (127.0.0.20-22 and ::1):

* valid-looking PBUs (a pool of MNs, among them odd identities: bytes that are not UTF-8, ``/``,
  ``%``, a newline, 254 bytes; prefixes of the sender's pool, now and then another's; every HI;
  lifetimes 0..262,140 s; fresh timestamps, some stale) and PBAs;
* the same mutated: bit flips, byte overwrites, truncation, extension, option insertion (every known
  type with right and wrong lengths, Pad1/PadN, unknown types), option duplication (up to 2048
  bytes), length-field corruption (the header's and an option's), MH type and payload proto
  corruption; then, more often than not, the framing repaired (padded to 8n, header length fixed) so
  that the mutation reaches the option parser instead of dying at the length check;
* random bytes (0-2048 of them, with and without a plausible header).

Paced (BATCH datagrams every BATCH / RATE s) so that the kernel keeps nearly all; what it drops is
counted by the CMD (``/dmm/v1/stats`` ``receive_path``). The PBUs the CMD sends to a MAAR address
(P-MAAR updates, releases) are answered as a P-MAAR would, mostly: 80 % accepted, 10 % refused (a
status of 128-157), 5 % with an echo that does not match (ignored by the CMD: sent again), 5 % not
at all (sent again, up to max_tries). A REST client lists sessions once a second during the run.

Checked afterwards (``check``): every datagram sent is accounted for by the CMD (PBUs and PBAs
received, decode errors, kernel drops); every PBU received was answered exactly once (RFC 5213
§5.3: the LMA answers each PBU; proxy mode answers at once), with the sequence number of a PBU that
socket sent; every answer to a stranger is 154; no ``internal_error`` counter; the CMD still accepts
a normal PBU (sequence number echoed); its RSS grew by less than BOUND (below); REST is consistent:
the sum of the page counts of a full listing equals ``total`` and ``/stats`` ``sessions``, and every
listed session can be fetched by its exact bytes, with the same prefix.

RSS bound: 32 MiB + 4 KiB per session the CMD holds at the end. What can grow with this input is
bounded by the code's own limits: sessions (docs/mobility.md measured < 0.5 KiB per BCE; with the
prefix-ownership index entry, the per-MAAR count, the timer heap entry and the Python dict slots,
4 KiB is generous), 256 rate-limited log keys, stats counter keys (one per decode reason and status:
< 300), at most 8 REST listings (a snapshot of the MN IDs each), 4096 cached socket addresses, the
retransmitter (we answer the CMD's PBUs, so it stays near empty). 32 MiB covers the allocator's
arenas, which do not return memory after the peaks of a burst (measured: docs/fuzzing.md).

The CMD is given ``[timers] min_delay_before_bce_delete = 86400`` so that no session is removed
by a timer (a fuzzed lifetime may be 4 s) while the REST listing is checked: the set of sessions is
frozen once the fuzzing stops. Loopback only; the CMD is our child, stopped by its pid.
Usage: python benchmarks/fuzz_cmd.py [--count 100000] [--seed 1] [--rate 5000] [--mode proxy] [--json]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

BIN = Path(sys.executable).parent
MAARS = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7")
STRANGERS = ("127.0.0.20", "127.0.0.21", "127.0.0.22", "::1")
BATCH = 50
MAX_PMAARS = 3  # six MAARs: an MN that visits them all exceeds it, so releases happen too
RSS_FIXED, RSS_PER_SESSION = 32 << 20, 4 << 10
# FACTS.md: option types, MH types, flags, statuses (154: not an authorised MAAR)
BU, BA = 5, 6
O_MNID, O_HNP, O_HI, O_ATT, O_MNLL, O_LLA, O_TS = 8, 22, 23, 24, 25, 26, 27
O_AP, O_LP, O_PMAAR, O_SMAAR, O_DLIF_LL, O_DLIF_MAC = 65, 66, 67, 68, 69, 70
KNOWN = {O_MNID: None, O_HNP: 18, O_HI: 2, O_ATT: 2, O_MNLL: None, O_LLA: 16, O_TS: 8, O_AP: 18, O_LP: 18,
         O_PMAAR: 34, O_SMAAR: 16, O_DLIF_LL: 16, O_DLIF_MAC: None}
PBU_FLAGS = 0x8000 | 0x0200 | 0x0010  # A, P, D
NOT_AUTHORIZED_MAG = 154
# every status a PBA of RFC 5213/6275 may carry in answer to a MAAR's PBU (FACTS.md; 135: RFC 6275)
STATUSES = {0, 128, 129, 130, 135} | set(range(152, 163))


# ---- datagrams, by hand ---------------------------------------------------------------------------
def opt(kind: int, body: bytes) -> bytes:
    return bytes((kind, len(body))) + body


def frame(mh_type: int, data: bytes, proto: int = 59) -> bytes:
    pad = -(6 + len(data)) % 8
    data += b"\x00" if pad == 1 else (bytes((1, pad - 2)) + bytes(pad - 2) if pad else b"")
    return bytes((proto, (6 + len(data)) // 8 - 1, mh_type, 0, 0, 0)) + data


def ts_body(seconds: float) -> bytes:
    return (int(seconds * 65536) & (2 ** 64 - 1)).to_bytes(8, "big")


SKEWS = (0.0, -1.0, 1.0, -0.25, 0.25, -1e6)  # seconds from now of a timestamp (window: 0.3 s)


def ts_marker(skew: int) -> bytes:
    """A Timestamp body stood in for until the datagram leaves (``stamp``), so that the bytes the RNG's
    choices depend on do not depend on the clock: the stream of datagrams is the same for a seed."""
    return b"\xa5TSMK" + bytes((skew,)) + b"\x5a\xa5"


def stamp(data: bytes) -> bytes:
    """Each intact marker replaced by the time now (plus its skew); a mutated one stays as it is."""
    if b"\xa5TSMK" not in data:
        return data
    now = time.time()
    for i, skew in enumerate(SKEWS):
        data = data.replace(ts_marker(i), ts_body(now + skew))
    return data


def prefix_body(maar: int, index: int) -> bytes:
    packed = bytes.fromhex("20010db8") + (maar + 1).to_bytes(2, "big") + index.to_bytes(2, "big") + bytes(8)
    return bytes((0, 64)) + packed


class Generator:
    """The seeded stream of datagrams. ``next(src_is_maar, maar_index, seq)`` -> (bytes, kind)."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)
        r = self.r
        odd = [b"caf\xe9@dmm", b"caf\\xe9@dmm", "caf\u00e9@dmm".encode(), b"a/b@dmm", b"%2F", b"..", b"?#x",
               b"line\nbreak", b"nul\x00", b"\xff\xfe", b"x" * 254, b"\xed\xa0\x80", b" ", b"\\"]
        self.mns = [f"mn-{i}@fuzz".encode() for i in range(300)] + odd
        self.pba_statuses = sorted(STATUSES) + [1, 127, 255]

    def _pbu(self, maar: int, seq: int) -> bytes:
        r = self.r
        mn = r.choice(self.mns) if r.random() < 0.8 else f"mn-r{r.randrange(10 ** 6)}@fuzz".encode()
        own = maar if maar >= 0 and r.random() < 0.9 else r.randrange(len(MAARS))
        opts = [opt(O_MNID, b"\x01" + mn), opt(O_HNP, prefix_body(own, r.randrange(4096))),
                opt(O_HI, bytes((0, r.choice((1, 1, 1, 3, 3, 5, 4, 2))))), opt(O_ATT, bytes((0, r.choice((3, 4)))))]
        if r.random() < 0.5:
            opts.append(opt(O_MNLL, b"\x00\x00" + bytes(r.randrange(256) for _ in range(6))))
        if r.random() < 0.95:
            opts.append(opt(O_TS, ts_marker(0 if r.random() < 0.9 else r.randrange(1, len(SKEWS)))))
        if r.random() < 0.1:
            r.shuffle(opts)
        life = r.choice((3600, 3600, 400, 40, 4, 0, 262140)) // 4
        flags = PBU_FLAGS if r.random() < 0.95 else r.randrange(1 << 16)
        return frame(BU, struct.pack("!HHH", seq, flags, life) + b"".join(opts))

    def _pba(self, seq: int) -> bytes:
        r = self.r
        opts = opt(O_MNID, b"\x01" + r.choice(self.mns))
        opts += opt(O_HNP, prefix_body(r.randrange(len(MAARS)), r.randrange(4096)))
        opts += opt(O_HI, b"\x00\x03") + opt(O_ATT, b"\x00\x03")
        if r.random() < 0.3:
            opts += opt(O_SMAAR, bytes(10) + b"\xff\xff\x7f\x00\x00" + bytes((r.randrange(2, 8),)))
        return frame(BA, struct.pack("!BBHH", r.choice(self.pba_statuses), 0x22, r.choice((seq, r.randrange(1 << 16))),
                                     r.randrange(1 << 16)) + opts)

    def _random_option(self) -> bytes:
        r = self.r
        kind = r.choice(list(KNOWN) + [0, 1, 1, r.randrange(256), 28, 200])
        if kind == 0:
            return b"\x00"
        exact = KNOWN.get(kind)
        if exact is not None and r.random() < 0.7:
            size = exact
        else:
            size = r.choice((0, 1, 2, 3, 7, 8, 16, 17, 18, 19, 33, 34, 35, r.randrange(256)))
        body = bytes(r.randrange(256) for _ in range(size))
        if kind in (O_HNP, O_AP, O_LP, O_PMAAR) and size >= 2 and r.random() < 0.7:
            body = body[:1] + bytes((r.choice((0, 48, 64, 128, 129, 255)),)) + body[2:]
        if kind == O_TS and size == 8 and r.random() < 0.5:
            body = ts_marker(0)
        return opt(kind, body)

    @staticmethod
    def _boundaries(data: bytes) -> list:
        """Start offsets of the options (by hand, best effort on a mutated message)."""
        out, pos = [], 12
        while pos < len(data):
            out.append(pos)
            if data[pos] == 0:
                pos += 1
            elif pos + 1 < len(data):
                pos += 2 + data[pos + 1]
            else:
                break
        return out

    def _mutate(self, data: bytearray) -> bytearray:
        r = self.r
        for _ in range(r.choice((1, 1, 1, 2, 2, 3))):
            how = r.randrange(10)
            if how == 0 and data:  # bit flips
                for _ in range(r.randint(1, 8)):
                    i = r.randrange(len(data) * 8)
                    data[i // 8] ^= 1 << (i % 8)
            elif how == 1 and data:  # a byte set to an interesting value
                data[r.randrange(len(data))] = r.choice((0, 1, 0x7F, 0x80, 0xFF, r.randrange(256)))
            elif how == 2 and data:  # truncation
                del data[r.randrange(len(data)):]
            elif how == 3:  # extension
                data += bytes(r.randrange(256) for _ in range(r.randint(1, 64)))
            elif how in (4, 5):  # an option inserted at an option boundary
                spots = self._boundaries(data) + [len(data)]
                at = r.choice(spots) if len(data) >= 12 else len(data)
                data[at:at] = self._random_option()
            elif how == 6:  # an option duplicated n times
                spots = [p for p in self._boundaries(data) if data[p] != 0 and p + 1 < len(data)]
                if spots:
                    p = r.choice(spots)
                    one = bytes(data[p:p + 2 + data[p + 1]])
                    n = r.choice((1, 2, 10, 100, 255))
                    data[p:p] = one * max(0, min(n, (2040 - len(data)) // max(1, len(one))))
            elif how == 7:  # an option's length byte corrupted
                spots = [p for p in self._boundaries(data) if data[p] != 0 and p + 1 < len(data)]
                if spots:
                    data[r.choice(spots) + 1] = r.choice((0, 1, 2, 17, 19, 33, 35, 255, r.randrange(256)))
            elif how == 8 and len(data) > 1:  # the header's length byte
                data[1] = r.randrange(256)
            elif how == 9 and len(data) > 2:  # MH type or payload proto
                i = r.choice((0, 2, 2))
                data[i] = r.choice((0, 1, 4, 5, 6, 7, 13, 59, 255, r.randrange(256)))
        if len(data) >= 6 and r.random() < 0.6:  # repair the framing: reach the option parser
            pad = -len(data) % 8
            data += b"\x00" if pad == 1 else (bytes((1, pad - 2)) + bytes(pad - 2) if pad else b"")
            if len(data) <= 2048:
                data[1] = len(data) // 8 - 1
        return data

    def next(self, maar: int, seq: int) -> tuple[bytes, str]:
        """A datagram from MAAR ``maar`` (-1: a stranger) whose PBU, if any, carries ``seq``; its
        timestamps still markers (``stamp`` them just before sending)."""
        r = self.r
        roll = r.random()
        if roll < 0.08:
            return bytes(r.randrange(256) for _ in range(r.choice((0, 1, 7, 8, 12, 16, r.randrange(2049))))), "random"
        if roll < 0.12:
            body = bytes(r.randrange(256) for _ in range(r.choice((6, 14, 30, 62, 126, r.randrange(1, 250)))))
            return frame(r.choice((BU, BA)), body), "random-framed"
        base = self._pba(seq) if r.random() < 0.1 else self._pbu(maar, seq)
        if roll < 0.30:
            return base, "valid"
        return bytes(self._mutate(bytearray(base))), "mutated"


# ---- the CMD ------------------------------------------------------------------------------------
def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cmd(work: Path, mode: str = "proxy") -> dict:
    udp, rest, of = free_port(socket.SOCK_DGRAM), free_port(), free_port()
    maars = "".join(f"[maar:maar{i + 1}]\naddress = ::ffff:{a}\npool = 2001:db8:{i + 1}::/48\n"
                    for i, a in enumerate(MAARS))
    (work / "d.ini").write_text(f"[DEFAULT]\nwsapi_host = 127.0.0.1\nwsapi_port = {rest}\n"
                                f"[dmm]\ncmd_address = ::1\nmode = {mode}\nlisten = ::\nport = {udp}\n"
                                f"[store]\ndir = state\n[timers]\nmin_delay_before_bce_delete = 86400\nmax_pmaars = {MAX_PMAARS}\n" + maars)
    log = work / "cmd.log"
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    with open(log, "w") as out:
        proc = subprocess.Popen([str(BIN / "ryu-manager"), "--config-file", str(work / "d.ini"),
                                 "--ofp-tcp-listen-port", str(of), "ryu_dmm.cmd"],
                                cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT)
    cmd = {"proc": proc, "udp": udp, "rest": rest, "log": log}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            rest_get(cmd, "/dmm/v1/stats")
            return cmd
        except OSError:
            time.sleep(0.1)
    stop_cmd(cmd)
    raise RuntimeError("the CMD did not start:\n" + log.read_text())


def stop_cmd(cmd: dict) -> int:
    proc = cmd["proc"]
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def rest_get(cmd: dict, path: str):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{cmd['rest']}{path}", timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


# ---- the run --------------------------------------------------------------------------------------
class Sockets:
    """One UDP socket per source address; what came back, per socket."""

    def __init__(self, cmd_port: int, seed: int) -> None:
        self.socks, self.sel = [], selectors.DefaultSelector()
        for i, address in enumerate(MAARS + STRANGERS):
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            s = socket.socket(family, socket.SOCK_DGRAM)
            try:
                s.setsockopt(socket.SOL_SOCKET, 33, 4 << 20)  # SO_RCVBUFFORCE (root): nothing of ours dropped
            except OSError:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.bind((address, 0))
            s.setblocking(False)
            self.socks.append((s, ("::1" if family == socket.AF_INET6 else "127.0.0.1", cmd_port)))
            self.sel.register(s, selectors.EVENT_READ, i)
        self.sent_seqs = [Counter() for _ in self.socks]  # sequence numbers of the BUs each socket sent
        self.answers = Counter()  # (maar?, status) of the PBAs received
        self.unmatched = 0  # PBAs whose sequence number no BU of that socket carried
        self.not_154 = 0  # answers to a stranger other than 154
        self.odd_status = 0  # answers to a MAAR with a status no RFC gives
        self.cmd_pbus = 0  # PBUs the CMD sent to a MAAR address (answered)
        self.answered_pbus = 0
        self.unanswered_pbus = 0
        self.answer_rng = random.Random(seed)  # how the P-MAAR answers (drawn in arrival order)

    def send(self, i: int, data: bytes) -> None:
        s, dest = self.socks[i]
        if len(data) >= 8 and data[2] == BU:
            self.sent_seqs[i][data[6:8]] += 1
        s.sendto(data, dest)

    def drain(self, timeout: float = 0.0) -> int:
        got = 0
        for key, _ in self.sel.select(timeout):
            i = key.data
            s, dest = self.socks[i]
            while True:
                try:
                    data = s.recv(65535)
                except BlockingIOError:
                    break
                got += 1
                self._take(i, data, s, dest)
        return got

    def _take(self, i: int, data: bytes, s, dest) -> None:
        maar = i < len(MAARS)
        if len(data) >= 12 and data[2] == BA:
            status, seq = data[6], data[8:10]
            self.answers[(maar, status)] += 1
            if self.sent_seqs[i][seq] > 0:
                self.sent_seqs[i][seq] -= 1
            else:
                self.unmatched += 1
            if not maar and status != NOT_AUTHORIZED_MAG:
                self.not_154 += 1
            if maar and status not in STATUSES:
                self.odd_status += 1
        elif len(data) >= 12 and data[2] == BU and maar:  # to a P-MAAR: answer it as one
            self.cmd_pbus += 1
            seq, _flags, life = struct.unpack_from("!HHH", data, 6)
            echo, pos = b"", 12
            while pos + 1 < len(data):
                if data[pos] == 0:
                    pos += 1
                    continue
                kind, size = data[pos], data[pos + 1]
                if kind in (O_MNID, O_HNP, O_HI, O_ATT, O_MNLL, O_TS, O_SMAAR):
                    echo += data[pos:pos + 2 + size]
                pos += 2 + size
            roll = self.answer_rng.random()
            if roll < 0.05:  # no answer: the CMD sends it again, and gives up after max_tries
                self.unanswered_pbus += 1
                return
            status = 0
            if roll < 0.15:  # the P-MAAR refuses: the CMD drops it from the MN's P-MAAR list
                status = self.answer_rng.choice((128, 129, 130, 155, 157))
            elif roll < 0.20:  # an echo that does not match: ignored, so sent again
                echo = echo.replace(b"\x01", b"\x01x", 1) if echo else b""
            s.sendto(frame(BA, struct.pack("!BBHH", status, 0x22, seq, life) + echo), dest)
            self.answered_pbus += 1


def poll_rest(cmd: dict, stop: threading.Event, out: Counter) -> None:
    while not stop.wait(1.0):
        try:
            out[rest_get(cmd, "/dmm/v1/sessions?limit=100")[0]] += 1
        except OSError:
            out["error"] += 1


def messages(cmd: dict) -> tuple[dict, int]:
    body = rest_get(cmd, "/dmm/v1/stats")[1]
    return body["messages"], body["receive_path"]["kernel_drops"]


def total(c: dict, prefix: str) -> int:
    return sum(v for k, v in c.items() if k.startswith(prefix))


def normal_pbu(cmd: dict, seq: int = 0x7777) -> tuple[int, int]:
    """(status, sequence number) of the answer to a well-formed registration from maar1."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((MAARS[0], 0))
        s.settimeout(3)
        body = (opt(O_MNID, b"\x01mn-after-fuzz") + opt(O_HNP, prefix_body(0, 0xFFFE)) + opt(O_HI, b"\x00\x01")
                + opt(O_ATT, b"\x00\x03") + opt(O_TS, ts_body(time.time())))
        s.sendto(frame(BU, struct.pack("!HHH", seq, PBU_FLAGS, 100) + body), ("127.0.0.1", cmd["udp"]))
        while True:
            data = s.recv(65535)
            if data[2] == BA:
                return data[6], struct.unpack_from("!H", data, 8)[0]


def rest_consistency(cmd: dict) -> dict:
    """Page through every session; fetch each by its exact bytes."""
    listed, cursor, pages, counts = [], None, 0, 0
    first_total = None
    while True:
        status, body = rest_get(cmd, "/dmm/v1/sessions?limit=1000" + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200, body
        pages += 1
        counts += body["count"]
        first_total = body["total"] if first_total is None else first_total
        listed += body["sessions"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    fetched_ok = 0
    for s in listed:
        raw = bytes.fromhex(s["mn_id_hex"]) if "mn_id_hex" in s else s["mn_id"].encode()
        status, one = rest_get(cmd, "/dmm/v1/sessions/" + urllib.parse.quote(raw, safe=""))
        if status == 200 and one["prefix"] == s["prefix"] and one.get("mn_id_hex") == s.get("mn_id_hex") \
                and one["mn_id"] == s["mn_id"]:
            fetched_ok += 1
    ids = [(s["mn_id"], s.get("mn_id_hex")) for s in listed]
    return {"pages": pages, "page_counts": counts, "total": first_total, "listed": len(listed),
            "distinct": len(set(ids)), "fetched_ok": fetched_ok,
            "stats_sessions": rest_get(cmd, "/dmm/v1/stats")[1]["sessions"]}


def run(count: int, seed: int = 1, rate: float = 5000.0, work: Path = None, mode: str = "proxy") -> dict:
    own = work is None
    work = Path(tempfile.mkdtemp(prefix="fuzz-cmd-")) if own else work
    cmd = start_cmd(work, mode)
    socks = None
    try:
        assert normal_pbu(cmd, 0x0101) == (0, 0x0101)
        rss_before = rss(cmd["proc"].pid)
        before, drops_before = messages(cmd)
        gen = Generator(seed)
        socks = Sockets(cmd["udp"], seed + 2)
        pick = random.Random(seed + 1)
        kinds = Counter()
        digest = hashlib.sha256()  # of the datagrams before stamping: the same for the same seed
        seqs = [0] * len(socks.socks)
        stop, rest_codes = threading.Event(), Counter()
        poller = threading.Thread(target=poll_rest, args=(cmd, stop, rest_codes), daemon=True)
        poller.start()
        t0 = time.monotonic()
        for n in range(count):
            i = pick.randrange(len(MAARS)) if pick.random() < 0.7 else len(MAARS) + pick.randrange(len(STRANGERS))
            seqs[i] = (seqs[i] + 1) & 0xFFFF
            data, kind = gen.next(i if i < len(MAARS) else -1, seqs[i])
            kinds[kind] += 1
            digest.update(data)
            socks.send(i, stamp(data))
            if n % BATCH == BATCH - 1:
                socks.drain()
                lag = t0 + (n + 1) / rate - time.monotonic()
                if lag > 0:
                    time.sleep(lag)
        sent_in = time.monotonic() - t0
        quiet = time.monotonic()
        while time.monotonic() - quiet < 1.0:  # until nothing has come back for a second
            if socks.drain(0.1):
                quiet = time.monotonic()
        stop.set()
        poller.join(5)
        elapsed = time.monotonic() - t0
        after, drops_after = messages(cmd)
        events = rest_get(cmd, "/dmm/v1/stats")[1]["events"]
        d = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
        d = {k: v for k, v in d.items() if v}
        rss_after = rss(cmd["proc"].pid)
        normal = normal_pbu(cmd)
        consistency = rest_consistency(cmd)
        sessions = consistency["stats_sessions"]
        pba_answers = sum(socks.answers.values())
        return {
            "seed": seed, "mode": mode, "sent": count, "stream_sha256": digest.hexdigest()[:16], "kinds": dict(kinds),
            "answers_sent_to_cmd_pbus": socks.answered_pbus,
            "sent_in_s": round(sent_in, 2), "elapsed_s": round(elapsed, 2),
            "answered": pba_answers,
            "answered_by_status": {("maar" if m else "stranger") + f".{st}": v
                                   for (m, st), v in sorted(socks.answers.items())},
            "silent": count - pba_answers,
            "cmd": {"pbu_received": d.get("pbu_received", 0), "pba_received": total(d, "pba_received."),
                    "heartbeat_received": total(d, "heartbeat_received"),
                    "pba_sent": total(d, "pba_sent."), "pbu_sent": d.get("pbu_sent", 0),
                    "decode_errors": {k[len("decode_error."):]: v for k, v in sorted(d.items())
                                      if k.startswith("decode_error.")},
                    "internal_errors": {k: v for k, v in d.items() if k.startswith("internal_error")},
                    "kernel_drops": drops_after - drops_before, "send_errors": d.get("send_error", 0)},
            "events": events, "unmatched_answers": socks.unmatched, "answers_to_strangers_not_154": socks.not_154,
            "odd_statuses": socks.odd_status, "cmd_pbus_to_maars": socks.cmd_pbus,
            "cmd_pbus_unanswered": socks.unanswered_pbus,
            "normal_pbu_after": {"status": normal[0], "seq": normal[1]},
            "rss_before": rss_before, "rss_after": rss_after, "rss_growth": rss_after - rss_before,
            "rss_bound": RSS_FIXED + RSS_PER_SESSION * sessions, "sessions": sessions,
            "rest_during": dict(rest_codes), "rest": consistency, "alive": cmd["proc"].poll() is None,
        }
    finally:
        if socks is not None:
            for s, _ in socks.socks:
                s.close()
        code = stop_cmd(cmd)
        if code != 0:
            print(f"the CMD exited with {code}: see {cmd['log']}", file=sys.stderr)


def check(f: dict) -> list[str]:
    """The properties every run must have: a list of the ones that failed (empty: all held)."""
    c = f["cmd"]
    problems = []

    def need(ok, what):
        if not ok:
            problems.append(what)
    offered = f["sent"] + f["answers_sent_to_cmd_pbus"]  # the fuzz and our answers to the CMD's PBUs
    handled = c["pbu_received"] + c["pba_received"] + c["heartbeat_received"] + sum(c["decode_errors"].values())
    need(handled + c["kernel_drops"] == offered, f"accounting: handled {handled} + kernel drops "
         f"{c['kernel_drops']} != sent {offered}")
    need(not c["internal_errors"], f"internal errors: {c['internal_errors']}")
    if f["mode"] == "proxy":  # relay and locator answer a handover's PBU once the P-MAARs have (a newer
        # PBU from the S-MAAR meanwhile is answered instead of it): at most one PBA per PBU there
        need(c["pba_sent"] == c["pbu_received"], f"PBUs received {c['pbu_received']} but PBAs sent {c['pba_sent']}")
    else:
        need(c["pba_sent"] <= c["pbu_received"], f"PBUs received {c['pbu_received']} but PBAs sent {c['pba_sent']}")
    need(f["answered"] == c["pba_sent"], f"PBAs sent {c['pba_sent']} but received {f['answered']}")
    need(f["unmatched_answers"] == 0, f"{f['unmatched_answers']} answers with a sequence number never sent")
    need(f["answers_to_strangers_not_154"] == 0, f"{f['answers_to_strangers_not_154']} answers to strangers not 154")
    need(f["odd_statuses"] == 0, f"{f['odd_statuses']} answers with a status no RFC gives")
    need(f["normal_pbu_after"] == {"status": 0, "seq": 0x7777}, f"normal PBU afterwards: {f['normal_pbu_after']}")
    need(f["rss_growth"] < f["rss_bound"], f"RSS grew {f['rss_growth']} >= bound {f['rss_bound']}")
    r = f["rest"]
    need(r["page_counts"] == r["total"] == r["listed"] == r["distinct"] == r["stats_sessions"],
         f"REST listing inconsistent: {r}")
    need(r["fetched_ok"] == r["listed"], f"only {r['fetched_ok']} of {r['listed']} listed sessions fetchable")
    need(set(f["rest_during"]) <= {200}, f"REST during the run: {f['rest_during']}")
    need(f["alive"], "the CMD died")
    return problems


def show(f: dict) -> str:
    c = f["cmd"]
    lines = [
        f"{f['mode']} mode, seed {f['seed']} (stream {f['stream_sha256']}): {f['sent']:,} datagrams sent in "
        f"{f['sent_in_s']} s "
        f"({', '.join(f'{k} {v:,}' for k, v in sorted(f['kinds'].items()))}), elapsed {f['elapsed_s']} s",
        f"answered {f['answered']:,}: " + ", ".join(f"{k} {v:,}" for k, v in f["answered_by_status"].items()),
        f"silent {f['silent']:,}: decode errors {sum(c['decode_errors'].values()):,} "
        f"({', '.join(f'{k} {v:,}' for k, v in c['decode_errors'].items())}), "
        f"PBAs (fuzzed) received {c['pba_received'] - f['answers_sent_to_cmd_pbus']:,}, "
        f"kernel drops {c['kernel_drops']:,}",
        f"CMD: PBUs received {c['pbu_received']:,}, PBAs sent {c['pba_sent']:,}, PBUs sent to MAARs {c['pbu_sent']:,} "
        f"(our answers {f['answers_sent_to_cmd_pbus']:,}, left unanswered {f['cmd_pbus_unanswered']:,}), "
        f"internal errors {sum(c['internal_errors'].values())}, "
        f"send errors {c['send_errors']}",
        "CMD events: " + ", ".join(f"{k} {v:,}" for k, v in sorted(f["events"].items())),
        f"unmatched answers {f['unmatched_answers']}, "
        f"answers to strangers not 154: {f['answers_to_strangers_not_154']}, "
        f"statuses outside RFC 5213/6275: {f['odd_statuses']}",
        f"normal PBU afterwards: status {f['normal_pbu_after']['status']}, "
        f"sequence number {f['normal_pbu_after']['seq']:#06x}",
        f"RSS {f['rss_before'] / 2**20:.1f} MiB -> {f['rss_after'] / 2**20:.1f} MiB "
        f"(+{f['rss_growth'] / 2**20:.1f} MiB; "
        f"bound {f['rss_bound'] / 2**20:.1f} MiB for {f['sessions']:,} sessions)",
        f"REST: {f['rest']['pages']} page(s), counts {f['rest']['page_counts']:,}, total {f['rest']['total']:,}, "
        f"/stats sessions {f['rest']['stats_sessions']:,}, fetched {f['rest']['fetched_ok']:,} of "
        f"{f['rest']['listed']:,}; during the run {f['rest_during']}",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rate", type=float, default=5000.0, help="datagrams per second offered")
    ap.add_argument("--mode", choices=("proxy", "relay", "locator"), default="proxy")
    ap.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = ap.parse_args(argv)
    figures = run(args.count, args.seed, args.rate, mode=args.mode)
    print(show(figures))
    if args.json:
        print(json.dumps(figures, sort_keys=True))
    problems = check(figures)
    for p in problems:
        print("FAILED:", p)
    print("all properties held" if not problems else f"{len(problems)} propert(y/ies) failed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
