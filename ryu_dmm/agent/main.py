"""``ryu-dmm-maar --config FILE --name NAME``: one MAAR's signalling agent.

It runs ``MaarCore`` behind a UDP socket on the MAAR's address (port 5436: PMIPv6 and RFC 5847
Heartbeats with the CMD) and a control socket (a Unix datagram socket taking JSON requests) through
which an explicit attach trigger, a lower-layer hint, arrives (and through which tools read its
state and events). Events are also written to stdout as JSON lines. Its Restart Counter is kept in
the domain's state folder (``[store] dir``, or ``--state-dir``) and changes at every start
(agent/restart.py).
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import signal
import socket
import sys
import time
from collections import deque
from typing import Optional

from .. import domainconf
from ..flowmirror import FlowsConfirmed, MirrorKey, Noted, NoteKind
from ..ipsec import enforce
from ..mobility.events import (
    Advertise, Attach, CancelTimer, DataPlaneChanged, Detach, Received, Report, Send, SetTimer, TimerFired,
)
from ..mobility.config import Mode
from ..mobility.distributed import DistributedMaar
from ..mobility.maar import MaarCore, Role
from ..stats import Stats
from ..wire import DecodeError, canonical6, decode, encode, mac_text, parse_mac, peer_address
from . import authz, guard, metrics, nd, restart
from .loop import Loop
from .switch import HandshakeKey, OwnSwitch

MAX_EVENTS = 10_000  # events kept for the control socket's "events" (older ones are dropped)
REPLY_BUDGET = 60_000  # bytes of events or bindings in one control reply (a Unix datagram holds ~200 kB)
MN_LL_MAX = 4096  # MNs whose (MAC, link-local) from their RS is remembered for unicast RAs
MAX_MN_ID = 254  # bytes of an MN identifier: the MN-ID option's one-byte length minus its subtype (RFC 4283)
MAX_PORT = 0xFFFFFFFF  # OpenFlow 1.3 port numbers are 32 bits
CONTROL_OPS = ("attach", "detach", "events", "state")
OPENFLOW_LISTEN = ("::1", 6653)  # flow_control = maar: where our switch connects (docs/flow-control.md)


class BadRequest(ValueError):
    """A control request that is not well formed: answered {"ok": false}, counted in bad_control."""


def describe(effect) -> Optional[dict]:
    """JSON view of an effect worth showing outside (reports, data-plane changes, RAs)."""
    kind = type(effect)
    if kind is Report:
        return {"event": "report", "kind": effect.kind.value, "mn": effect.mn_id, "detail": effect.detail,
                "status": effect.status}
    if kind is DataPlaneChanged:
        s = effect.state
        return {"event": "dataplane", "mn": effect.mn_id,
                "local": [str(r.prefix) for r in s.local],
                "to_serving": [[str(t.prefix), t.serving_maar] for t in s.to_serving],
                "to_anchor": [[str(t.prefix), t.anchor_maar] for t in s.to_anchor]}
    if kind is FlowsConfirmed:  # flow_control = maar: our switch confirmed the MN's flows (barrier)
        return {"event": "flows-confirmed", "mn": effect.mn_id, "pushed_at": effect.pushed_at,
                "confirmed_at": effect.confirmed_at}
    if kind is Noted and effect.kind is not NoteKind.GROUP_PUSHED:  # (a push per change: routine)
        return {"event": "switch-note", "kind": effect.kind.value, "detail": effect.detail}
    if kind is Advertise:
        return {"event": "advertise", "mn": effect.mn_id, "port": effect.port,
                "router_lifetime": effect.router_lifetime, "prefixes": [{"prefix": str(p.prefix), "preferred": p.preferred, "valid": p.valid,
                              "dlif": p.dlif} for p in effect.prefixes]}
    return None


def mn_id_of(mac: bytes, realm: str = "dmm") -> str:
    """The NAI the agent gives an MN it detects from its Router Solicitation."""
    return f"mn-{mac.hex()}@{realm}"


class Agent:
    def __init__(self, config: str, name: str, port: int, control: str, cmd_port: int,
                 access_iface: Optional[str] = None, access_port: int = 0,
                 limiter: Optional[guard.AttachLimiter] = None, restart_counter: int = 0,
                 openflow_listen: tuple[str, int] = OPENFLOW_LISTEN, cmds: tuple[str, ...] = ()) -> None:
        self.domain, settings = domainconf.load(config)
        if cmds:  # --cmd: the CMDs to signal to, in order, instead of the file's (docs/failover.md)
            self.domain = dataclasses.replace(self.domain, cmd_addresses=cmds)
        self.auth = settings.auth
        self.require_ipsec = settings.require_ipsec
        self.ipsec_counters = enforce.CachedCounters()  # read in the loop: at most every 10 s, cut at 1 s
        self.policy = load_policy(self.auth)  # PolicyError if its allow_file cannot be used
        self.auth_state = {"reloads": 0, "reload_errors": 0, "detached": 0}
        # mode = distributed: no CMD; the MAARs find an MN's previous MAARs themselves (docs/mode-distributed.md)
        self.core = (DistributedMaar(self.domain, name, restart_counter) if self.domain.mode is Mode.DISTRIBUTED
                     else MaarCore(self.domain, name, restart_counter, access_port))
        self.port, self.cmd_port = port, cmd_port
        self.loop = Loop(self._on_timer, self._on_loop_error)
        # For the metrics (agent/metrics.py): messages by peer and status, reports, attaches.
        self.stats = Stats(self.domain.mode.value, peers={*self.core.failover.cmds, *self.core.peers})
        self.metrics: Optional[metrics.MetricsHttp] = None
        self.events: deque[dict] = deque(maxlen=MAX_EVENTS)
        self.events_total = 0  # events ever recorded: the index the next one gets
        self.counters = guard.Counters()
        self.lines = guard.LineLimiter()
        self.limiter = limiter or guard.AttachLimiter()
        self._stdout = True
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        self.sock.bind((self.core.address, port))
        self.loop.add_reader(self.sock, self._on_signalling, "signalling")
        if os.path.exists(control):
            os.unlink(control)
        self.control_path = control
        self.control = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.control.bind(control)
        self.loop.add_reader(self.control, self._on_control, "control")
        # SIGHUP re-reads [auth] allow_file: the handler only writes a byte here, the loop does the rest
        self._wake_r, self.wake = socket.socketpair()
        self._wake_r.setblocking(False)
        self.wake.setblocking(False)
        self.loop.add_reader(self._wake_r, self._on_wake, "reload")
        # The access links: ND from the MNs reaches us on the switch's agent port (see the pipeline).
        self.access = None
        self.access_port = access_port
        self._mn_ll: guard.LruDict = guard.LruDict(MN_LL_MAX)  # MN -> (MAC, link-local) from its RS
        if access_iface:
            self.access = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(nd.ETH_IPV6))
            self.access.bind((access_iface, 0))
            self.loop.add_reader(self.access, self._on_access, "access")
        # flow_control = maar: we are our switch's OpenFlow controller (agent/switch.py)
        self.switch: Optional[OwnSwitch] = None
        if settings.flow_control == "maar":
            self.switch = OwnSwitch(self.domain, settings, self.core.address, openflow_listen, self.loop,
                                    lambda effects: self._apply_all(effects, time.time()), self._on_frame,
                                    lambda kind, view: self._line(kind, view),
                                    lambda kind, view: self._bad("bad_openflow", kind, view))

    def start(self) -> None:
        """The core's start-up effects (Heartbeats to the CMD begin)."""
        now = time.time()
        for e in self.core.start(now):
            self._apply(e, now)

    # ---- effects of the core -------------------------------------------------------------------
    def _on_timer(self, key) -> None:
        if type(key) is metrics.HttpKey:
            if self.metrics is not None:
                self.metrics.on_timer(key)
        elif type(key) in (MirrorKey, HandshakeKey) and self.switch is not None:
            self.switch.on_timer(key, time.time())
        else:
            self._handle(TimerFired(key))

    def _handle(self, event) -> None:
        now = time.time()
        try:
            effects = self.core.handle(event, now)
            if self.switch is not None:  # flows rendered; RAs and PBAs may wait for their barrier
                effects = self.switch.through(effects, now)
        except Exception as exc:  # noqa: BLE001 - a core bug must cost one event, not the agent
            self._internal_error(f"core: {type(event).__name__}", exc)
            return
        self._apply_all(effects, now)

    def _apply_all(self, effects, now: float) -> None:
        for e in effects:
            try:
                self._apply(e, now)
            except Exception as exc:  # noqa: BLE001 - say, a message the encoder refuses
                self._internal_error(f"effect: {type(e).__name__}", exc)

    def _apply(self, e, now: float) -> None:
        kind = type(e)
        if kind is Send:
            port = self.cmd_port if e.dst in self.core.failover.cmds else self.port
            data = encode(e.msg)
            try:
                self.sock.sendto(data, (e.dst, port))
                self.stats.sent(e.msg, e.dst)
            except OSError as exc:
                self._bad("send_errors", "send-error", {"dst": e.dst, "error": str(exc)})
        elif kind is SetTimer:
            self.loop.timers.set(e.key, e.at)
        elif kind is CancelTimer:
            self.loop.timers.cancel(e.key)
        else:
            if kind is Report:
                self.stats.reported((e,))
            if kind is DataPlaneChanged and e.mn_id not in self.core.bindings:
                self._mn_ll.pop(e.mn_id, None)  # the MN is gone: so is what we learnt from its RS
            if kind is Advertise and self.access is not None:
                self._send_ra(e)
            view = describe(e)
            if view is not None:
                self._record(view, now)

    # ---- events, counters and rate-limited lines -------------------------------------------------
    def _record(self, view: dict, now: float) -> None:
        view["t"] = now
        view["maar"] = self.core.info.name
        self.events.append(view)
        self.events_total += 1
        if self._stdout:
            try:
                print(json.dumps(view), flush=True)
            except (OSError, ValueError):  # stdout closed or its reader gone: keep serving, stop printing
                self._stdout = False

    def _bad(self, counter: str, kind: str, view: dict) -> None:
        """One piece of bad input or one failure: one counter and one (rate-limited) event line."""
        self.counters.add(counter)
        self._line(kind, view)

    def _line(self, kind: str, view: dict) -> None:
        """An event line of ``kind``, unless LINE_BURST of them came in the last LINE_WINDOW seconds."""
        emit, held = self.lines.allow(kind, time.monotonic())
        if not emit:
            self.counters.add("suppressed_lines")
            return
        if held:
            view["suppressed"] = held
        self._record({"event": kind, **view}, time.time())

    def _internal_error(self, where: str, exc: BaseException) -> None:
        self._bad("internal_errors", "internal-error", {"where": where, "error": f"{type(exc).__name__}: {exc}"})

    def _on_loop_error(self, where: str, exc: BaseException) -> None:
        if isinstance(exc, OSError):
            self._bad("recv_errors", "recv-error", {"where": where, "error": str(exc)})
        else:
            self._internal_error(where, exc)

    # ---- attach triggers -------------------------------------------------------------------------
    def _attach(self, mn: str, mac: bytes, port: int, via: str, note: Optional[dict] = None) -> Optional[str]:
        """Hand an attach trigger to the core unless [auth] or a rate limit refuses it (then the
        refusal's counter name). ``note``: an event recorded first if it is accepted (an accepted RS
        is recorded, a refused one only counted and, rate-limited, shown as attach-refused)."""
        new = mn not in self.core.bindings
        why = None if self.policy.allows(mn, mac) else "refused_unauthorized"
        if why is None:
            why = self.limiter.check(mac, port, new, time.monotonic())
        if why is None and new and self.auth.max_prefixes_per_port is not None:
            held = sum(1 for b in self.core.bindings.values() if b.port == port)  # new MNs are rate-limited
            if held >= self.auth.max_prefixes_per_port:
                why = "refused_port_cap"
        if why is not None:
            self.counters.add("refused_attaches")
            self._bad(why, "attach-refused", {"mn": mn, "mac": mac_text(mac), "port": port, "via": via,
                                              "reason": why[len("refused_"):]})
            return why
        if note is not None:
            self._record(note, time.time())
        self.stats.count("attaches")
        self._handle(Attach(mn, mac, port))
        return None

    # ---- [auth] reloads (SIGHUP) --------------------------------------------------------------------
    def _on_wake(self) -> None:
        try:
            while self._wake_r.recv(64):
                pass
        except BlockingIOError:
            pass
        self.reload_auth()

    def reload_auth(self) -> None:
        """Re-read ``[auth] allow_file``. A file that cannot be used keeps the policy in force; an
        MN attached here that the new policy refuses is detached (its session lives until its
        lifetime ends, as after any detachment: RFC 8885 §3.5), and its next frames are refused."""
        try:
            policy = load_policy(self.auth)
        except authz.PolicyError as exc:
            self.auth_state["reload_errors"] += 1
            self._line("auth-reload", {"ok": False, "error": str(exc)[:200]})
            return
        self.policy = policy
        self.auth_state["reloads"] += 1
        gone = [b.mn_id for b in self.core.bindings.values()
                if b.attached and b.role is not Role.ANCHOR and not policy.allows(b.mn_id, b.mac)]
        for mn in gone:
            self._handle(Detach(mn))
        self.auth_state["detached"] += len(gone)
        self._line("auth-reload", {"ok": True, **policy.describe(), "detached": len(gone)})

    # ---- the access link -------------------------------------------------------------------------
    def _on_access(self) -> None:
        """A frame the switch copied to us from an access port (openflow_pipelines/dmm_edge.toml,
        [punt]). With flow_control = maar only NSs are answered from here: attachments come from the
        same frames' packet-ins, which name the MN's port."""
        frame, addr = self.access.recvfrom(65535)
        if addr[2] == socket.PACKET_OUTGOING:
            return  # our own RAs and NAs (some from peers' DLIF MACs), and the kernel's on this port
        self._on_frame(frame, None if self.switch is not None else self.access_port)

    def _on_frame(self, frame: bytes, port: Optional[int]) -> None:
        """An MN's frame from access port ``port``: an RS attaches (and is answered) as always; any
        other frame from an MN not attached here, a DAD probe, an MLD report, or its first data frame,
        attaches it at once. ``port`` None: only an NS is answered."""
        got = nd.classify(frame)
        if isinstance(got, str):
            self._bad("bad_frames", "bad-frame", {"reason": got, "mac": mac_text(frame[6:12]) if len(frame) >= 12 else None})
            return
        mac = got.src_mac if got is not None else nd.unicast_source(frame)
        if mac is None or mac == self.core.info.mac:
            return
        if port is not None and type(got) is nd.Solicitation and got.kind == nd.RS:
            self._detected(mac, got.src_ip, "rs", port)
            return
        if port is not None and not self._attached_here(mn_id_of(mac)):
            via = ("dad" if got.src_ip == "::" else "ns") if type(got) is nd.Solicitation else \
                "mld" if type(got) is nd.MldReport else "frame"
            self._detected(mac, got.src_ip if got is not None else "::", via, port)
        if self.access is None or self.switch is not None and port is not None:
            return  # (NSs are answered once, from the agent port)
        if type(got) is nd.Solicitation and got.kind == nd.NS and got.src_ip != "::":
            self._answer_ns(got)

    def _attached_here(self, mn: str) -> bool:
        """The MN is attached to this MAAR (registering or serving): its frames are no news."""
        b = self.core.bindings.get(mn)
        return b is not None and b.attached and b.role is not Role.ANCHOR

    def _detected(self, mac: bytes, src_ip: str, via: str, port: int) -> None:
        """An attach trigger from the access link, under the attach limits. The event ``rs`` for an
        RS (as before), ``detected`` with ``via`` (dad, ns, mld, frame) for the others."""
        mn = mn_id_of(mac)
        note = {"event": "rs" if via == "rs" else "detected", "mn": mn, "mac": mac_text(mac)}
        if via != "rs":
            note["via"] = via
        if self._attach(mn, mac, port, via, note) is None and src_ip.startswith("fe80:"):
            if mn in self.core.bindings:
                self._mn_ll[mn] = (mac, src_ip)  # its link-local: unicast RAs

    def _answer_ns(self, sol: nd.Solicitation) -> None:
        mac = self._dlif_macs().get(sol.target)
        if mac is not None:
            try:
                self.access.send(nd.neighbor_advertisement(mac, sol.target, sol.src_mac, sol.src_ip))
            except OSError as exc:
                self._bad("send_errors", "send-error", {"dst": mac_text(sol.src_mac), "error": str(exc)})

    def _dlif_macs(self) -> dict[str, bytes]:
        """Link-local -> MAC of every logical interface we present: our own and, for each MAAR that
        anchors a prefix of an MN served here, that MAAR's DLIF (RFC 8885 §3.7)."""
        own = self.core.info
        out = {own.link_local: own.mac}
        for b in self.core.bindings.values():
            for anchor in b.anchors:
                info = self.core.peers.get(anchor)
                if info is not None:
                    out[info.link_local] = info.mac
        return out

    def _send_ra(self, adv: Advertise) -> None:
        mac, ll = self._mn_ll.get(adv.mn_id, (adv.mac, nd.ALL_NODES))
        try:
            for frame in nd.ra_frames(self.core.info, self.core.peers, mac, ll, adv.prefixes, adv.router_lifetime):
                self.access.send(frame)
        except OSError as exc:
            self._bad("send_errors", "send-error", {"dst": adv.mn_id, "error": str(exc)})

    # ---- signalling ------------------------------------------------------------------------------
    def _on_signalling(self) -> None:
        data, addr = self.sock.recvfrom(65535)
        try:
            msg = decode(data)
        except DecodeError as exc:
            self._bad("decode_errors", "decode-error", {"src": addr[0], "error": str(exc)})
            return
        src = peer_address(addr[0])
        self.stats.received(msg, src)
        self._handle(Received(src, msg))

    # ---- control socket --------------------------------------------------------------------------
    def _on_control(self) -> None:
        data, peer = self.control.recvfrom(65535)
        try:
            try:
                req = json.loads(data)
            except (ValueError, RecursionError) as exc:  # RecursionError: "[[[[..." nested too deep
                raise BadRequest(f"not JSON: {type(exc).__name__}") from None
            if not isinstance(req, dict):
                raise BadRequest(f"a request is a JSON object, not {type(req).__name__}")
            reply = self._control(req)
        except BadRequest as exc:
            self._bad("bad_control", "bad-control", {"error": str(exc)[:200]})
            reply = {"ok": False, "error": f"bad request: {exc}"}
        except Exception as exc:  # noqa: BLE001 - answered and counted; the loop goes on
            self._internal_error("control", exc)
            reply = {"ok": False, "error": f"internal error: {type(exc).__name__}"}
        if peer:
            try:
                self.control.sendto(json.dumps(reply).encode(), peer)
            except OSError:
                pass  # the asker is gone (timed out) or its socket is full: nothing to answer

    def _control(self, req: dict) -> dict:
        op = _field(req, "op", str)
        if op not in CONTROL_OPS:
            raise BadRequest(f"unknown op {op[:40]!r} (one of {', '.join(CONTROL_OPS)})")
        if op == "attach":
            mn, port = _mn(req), _field(req, "port", int)
            try:
                mac = parse_mac(_field(req, "mac", str))
            except ValueError as exc:
                raise BadRequest(str(exc)[:120]) from None
            if not 0 <= port <= MAX_PORT:
                raise BadRequest(f"port {port} outside 0..{MAX_PORT}")
            why = self._attach(mn, mac, port, "control")
            if why is not None:
                return {"ok": False, "error": f"attach refused: {why}", "refused": why}
            return {"ok": True, "t": time.time()}
        if op == "detach":
            self._handle(Detach(_mn(req)))
            return {"ok": True, "t": time.time()}
        if op == "events":
            return self._events(_field(req, "since", int, 0))
        return self._state(req)

    def _events(self, since: int) -> dict:
        """Events from index ``since`` on (indexes count every event ever recorded), at most
        REPLY_BUDGET bytes of them; ``next`` is where to go on from, ``dropped`` how many between
        ``since`` and the oldest kept were already dropped."""
        if since < 0:
            raise BadRequest("since must be >= 0")
        first = self.events_total - len(self.events)
        start = min(max(since, first), self.events_total)
        out, size, index = [], 0, start
        for index, e in enumerate(itertools.islice(self.events, start - first, None), start):
            size += len(json.dumps(e)) + 2
            if out and size > REPLY_BUDGET:
                break
            out.append(e)
        else:
            index = self.events_total
        return {"ok": True, "events": out, "next": index, "more": index < self.events_total,
                "dropped": max(0, first - since)}

    def _state(self, req: dict) -> dict:
        only = _mn(req) if "mn" in req else None
        if only is None:
            names = list(self.core.bindings)
        else:
            names = [only] if only in self.core.bindings else []
        bindings, size = {}, 0
        for mn in names:
            view = describe(DataPlaneChanged(mn, self.core.dataplane(mn)))
            size += len(json.dumps(mn)) + len(json.dumps(view)) + 4  # '"mn": {...}, '
            if bindings and size > REPLY_BUDGET:
                break
            bindings[mn] = view
        lim = self.limiter
        hb = self.core.heartbeats
        return {"ok": True, "name": self.core.info.name, "pool_in_use": self.core.pool.in_use,
                "pool_capacity": self.core.pool.capacity, "bindings": bindings,
                "bindings_total": len(self.core.bindings), "counters": dict(self.counters),
                "protocol": dict(self.core.counters), "cmd": self.core.failover.describe(),
                "ipsec": {"required": self.require_ipsec,
                          **(self.ipsec_counters.view(time.monotonic()) if self.require_ipsec
                             else {"plaintext_dropped": {}})},
                "heartbeat": {"restart_counter": hb.own_counter, "interval": hb.interval,
                              "missing_allowed": hb.missing_allowed, "counters": dict(hb.counters),
                              "peers": [dataclasses.asdict(v) for v in hb.views()]},
                "limits": {"new_mn": [lim.ports.limit, lim.ports.window], "mac": [lim.macs.limit, lim.macs.window],
                           "tracked_macs": len(lim.macs), "tracked_ports": len(lim.ports),
                           "known_mn_ll": len(self._mn_ll), "events_kept": len(self.events)},
                "auth": {**self.policy.describe(), "max_prefixes_per_port": self.auth.max_prefixes_per_port,
                         **self.auth_state},
                **({"switch": self.switch.state()} if self.switch is not None else {})}

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()
        if self.switch is not None:
            self.switch.close()
        self.sock.close()
        self.control.close()
        self._wake_r.close()
        self.wake.close()
        if self.access is not None:
            self.access.close()
        if os.path.exists(self.control_path):
            os.unlink(self.control_path)


def load_policy(auth: domainconf.AuthSettings) -> authz.Policy:
    """The policy of ``[auth]``: its patterns and those of its allow_file (read now)."""
    macs, nais = list(auth.allow_macs), list(auth.allow_nais)
    if auth.allow_file is not None:
        try:
            with open(auth.allow_file, encoding="utf-8") as f:
                text = f.read(64 << 20)
        except (OSError, UnicodeDecodeError) as exc:
            raise authz.PolicyError(f"[auth] allow_file: cannot read {auth.allow_file}: "
                                    f"{getattr(exc, 'strerror', None) or 'not UTF-8 text'}") from None
        more_macs, more_nais = authz.file_patterns(text, auth.allow_file)
        macs += more_macs
        nais += more_nais
    return authz.build(auth.mode, macs, nais)


def _field(req: dict, name: str, kind: type, default=None):
    if name not in req:
        if default is not None:
            return default
        raise BadRequest(f"missing {name!r}")
    value = req[name]
    if type(value) is not kind:  # (bool is not an int here)
        raise BadRequest(f"{name!r} must be a {kind.__name__}, not {type(value).__name__}")
    return value


def _mn(req: dict) -> str:
    mn = _field(req, "mn", str)
    try:
        size = len(mn.encode())
    except UnicodeEncodeError:  # a lone surrogate ("\\ud800") is valid JSON but not UTF-8
        raise BadRequest("'mn' is not valid UTF-8") from None
    if not 1 <= size <= MAX_MN_ID:
        raise BadRequest(f"'mn' must be 1..{MAX_MN_ID} bytes of UTF-8")
    return mn


def request(control: str, req: dict, timeout: float = 2.0) -> dict:
    """Send one JSON request to an agent's control socket and return its reply."""
    me = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = f"{control}.{os.getpid()}.{time.monotonic_ns()}"
    try:
        me.bind(path)
        me.settimeout(timeout)
        me.sendto(json.dumps(req).encode(), control)
        reply = json.loads(me.recv(1 << 20))  # replies are at most REPLY_BUDGET bytes of payload and then some
    finally:
        me.close()
        if os.path.exists(path):
            os.unlink(path)
    if not isinstance(reply, dict):
        raise ValueError(f"not a reply from an agent: {type(reply).__name__}")
    return reply


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    parse.__name__ = kind.__name__  # for argparse's "invalid int value" message
    return parse


def _listen(text: str) -> tuple[str, int]:
    """``[ADDR]:PORT`` or ``ADDR:PORT`` (IPv4) -> (address, port)."""
    host, _, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"not [ADDRESS]:PORT: {text!r}")
    return host, int(port)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="ryu-dmm-maar", description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="the domain configuration file (as for the CMD)")
    ap.add_argument("--name", required=True, help="this MAAR's name: its [maar:NAME] section")
    ap.add_argument("--port", type=int, default=5436, help="PMIPv6 UDP port to listen on (default 5436)")
    ap.add_argument("--cmd-port", type=int, default=None, help="the CMD's port (default: [dmm] port)")
    ap.add_argument("--cmd", action="append", default=[], metavar="ADDRESS",
                    help="a CMD to signal to; repeat it for several, in order of preference: the agent moves to "
                         "the next when one falls silent (default: [dmm] cmd_addresses, else cmd_address; "
                         "docs/failover.md)")
    ap.add_argument("--control", default=None, help="control socket path (default /tmp/ryu-dmm-NAME.sock)")
    ap.add_argument("--access-iface", default=None,
                    help="interface of the switch's agent port: RS/NS from MNs arrive there, RA/NA leave there")
    ap.add_argument("--access-port", type=int, default=0, help="OpenFlow port number of the MNs' access link")
    ap.add_argument("--state-dir", default=None,
                    help="where this MAAR's RFC 5847 restart counter is kept, as maar-NAME.restart (default: "
                         f"[store] dir of the domain file, else ${domainconf.STATE_DIR_ENV}, else "
                         f"{domainconf.DEFAULT_STATE_DIR}; created if missing)")
    lim = ap.add_argument_group("attach rate limits (docs/limits-agent.md)")
    lim.add_argument("--new-mn-limit", type=_positive(int), default=guard.NEW_MN_LIMIT, metavar="N",
                     help=f"new MNs (attaches that take a prefix) per access port per window "
                          f"(default {guard.NEW_MN_LIMIT})")
    lim.add_argument("--new-mn-window", type=_positive(float), default=guard.NEW_MN_WINDOW, metavar="SECONDS",
                     help=f"that window (default {guard.NEW_MN_WINDOW:g} s)")
    lim.add_argument("--mac-limit", type=_positive(int), default=guard.MAC_LIMIT, metavar="M",
                     help=f"attach triggers (RS or control attach) per MAC per window (default {guard.MAC_LIMIT})")
    lim.add_argument("--mac-window", type=_positive(float), default=guard.MAC_WINDOW, metavar="SECONDS",
                     help=f"that window (default {guard.MAC_WINDOW:g} s)")
    ap.add_argument("--openflow-listen", type=_listen, default=f"[{OPENFLOW_LISTEN[0]}]:{OPENFLOW_LISTEN[1]}",
                    metavar="[ADDR]:PORT",
                    help="with [dmm] flow_control = maar: where this MAAR's switch connects to us, its OpenFlow "
                         "controller (default %(default)s)")
    mx = ap.add_argument_group("Prometheus metrics (docs/observability.md)")
    mx.add_argument("--metrics-port", type=metrics.tcp_port, default=None, metavar="PORT",
                    help=f"TCP port of GET /metrics (default {metrics.DEFAULT_PORT_BASE} + the position of this "
                         "MAAR's section in the domain file, given up if taken; 0: no metrics)")
    mx.add_argument("--metrics-listen", default=metrics.DEFAULT_LISTEN, metavar="ADDRESS",
                    help=f"address to serve the metrics on (default {metrics.DEFAULT_LISTEN})")
    args = ap.parse_args(argv)
    try:
        domain, settings = domainconf.load(args.config)
        domain.maar(args.name)
        if settings.require_ipsec:
            for port in sorted({settings.port, args.port}):
                refused = enforce.check(port)
                if refused:
                    raise domainconf.ConfigError(refused)
    except domainconf.ConfigError as exc:
        print(f"ryu-dmm-maar: bad configuration: {exc}", file=sys.stderr)
        return 2
    except KeyError:
        print(f"ryu-dmm-maar: no [maar:{args.name}] in {args.config}", file=sys.stderr)
        return 2
    try:
        cmds = tuple(canonical6(a) for a in args.cmd)
        dataclasses.replace(domain, cmd_addresses=cmds)  # refuses a MAAR's address or one listed twice
    except ValueError as exc:
        print(f"ryu-dmm-maar: --cmd: {exc}", file=sys.stderr)
        return 2
    counter, warning = restart.next_counter(args.state_dir or settings.store.dir, args.name)
    if warning:
        print(f"ryu-dmm-maar: {warning}", file=sys.stderr, flush=True)
    try:
        agent = Agent(args.config, args.name, args.port, args.control or f"/tmp/ryu-dmm-{args.name}.sock",
                      args.cmd_port or settings.port, args.access_iface, args.access_port,
                      guard.AttachLimiter(args.new_mn_limit, args.new_mn_window, args.mac_limit, args.mac_window),
                      counter, args.openflow_listen, cmds)
    except (authz.PolicyError, ValueError) as exc:  # ValueError: flow_control = maar without switch ports
        print(f"ryu-dmm-maar: bad configuration: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ryu-dmm-maar: cannot open sockets: {exc}", file=sys.stderr)
        return 1
    try:
        agent.metrics, warning = metrics.serve(agent, args.metrics_listen, args.metrics_port,
                                               metrics.default_port(domain, args.name), agent._internal_error)
    except (OSError, ValueError) as exc:  # ValueError: not an address
        print(f"ryu-dmm-maar: cannot open the metrics port on [{args.metrics_listen}]:{args.metrics_port}: {exc}",
              file=sys.stderr)
        agent.close()
        return 1
    if warning:
        print(f"ryu-dmm-maar: {warning}", file=sys.stderr, flush=True)

    def stop(_signum, _frame):
        agent.loop.running = False
    def reload(_signum, _frame):
        try:
            agent.wake.send(b"\x01")
        except OSError:  # a reload already pending (the buffer is full): that one will do
            pass
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    served = agent.metrics.url if agent.metrics is not None else None
    print(json.dumps({"event": "started", "maar": args.name, "address": agent.core.address, "port": args.port,
                      "metrics": served, "restart_counter": counter}), flush=True)
    try:
        agent.start()
        agent.loop.run()
    finally:
        agent.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
