"""``flow_control = maar``: the agent is the OpenFlow 1.3 controller of its own MAAR's switch.

Why here and not in a Ryu app per MAAR: the agent already owns the MAAR's core, its timers and its
select loop, and the data-plane state to render is that core's (``DataPlaneChanged``); a second
process would need a side channel to it and would be a second thing to fail per MAAR. What the
agent needs of OpenFlow is small: the controller side of one connection (hello, features, echo,
barrier, flow stats, packet-in, port status, errors). Messages out are the flow mirror's, packed by
``ofsync``/``ofwire`` exactly as the CMD packs them; replies in are parsed by Ryu's OpenFlow 1.3
parser (a library here: no Ryu application, manager or hub is loaded). docs/flow-control.md.

``OfChannel`` is the connection's protocol without a socket (bytes in, events and bytes out);
``OwnSwitch`` adds the listening socket and the agent's ``FlowMirror`` (``local`` = this MAAR), through
which every effect of the core passes: ``DataPlaneChanged`` becomes flows pushed with a barrier, and
the MAAR's RAs and PBAs about an MN wait for that barrier (at most ``HOLD_TIMEOUT``).
"""
from __future__ import annotations

import itertools
import socket
import struct
import time
from dataclasses import dataclass
from typing import Callable, Optional

from .. import ofsync, pipeline as pipeline_mod
from ..flowmirror import (
    ApplyDiff, BarrierReplied, CoreOutput, FlowMirror, FlowStatsReplied, MirrorKey, ReplaceFlows, RequestFlowStats,
    SwitchDown, SwitchUp, configured_switches,
)
from ..mobility.events import TimerFired
from ..packetin import port_up_query

OFP_VERSION = 4
OFPT_HELLO, OFPT_ERROR, OFPT_ECHO_REQUEST, OFPT_ECHO_REPLY = 0, 1, 2, 3
OFPT_FEATURES_REQUEST, OFPT_FEATURES_REPLY = 5, 6
OFPT_PACKET_IN, OFPT_PORT_STATUS, OFPT_PACKET_OUT = 10, 12, 13
OFPT_MULTIPART_REPLY, OFPT_BARRIER_REPLY = 19, 21
OFPMP_FLOW, OFPMPF_REPLY_MORE = 1, 1
OFPP_CONTROLLER, OFP_NO_BUFFER = 0xFFFFFFFD, 0xFFFFFFFF
_HEADER = struct.Struct("!BBHI")
MAX_BUFFER = 1 << 22  # bytes of an incomplete message kept: more means a broken peer (closed)
SEND_TIMEOUT = 2.0  # seconds a write to the switch may block before the connection is dropped
MAX_PENDING = 4  # connections accepted but not yet identified (hello, features with our datapath id)
HANDSHAKE_TIMEOUT = 5.0  # seconds a new connection has to identify itself before it is closed


@dataclass(frozen=True, slots=True)
class Connected:
    """The switch answered our features request: its datapath id."""

    dpid: int


@dataclass(frozen=True, slots=True)
class PacketIn:
    """A frame the pipeline copied to the controller ([punt]) from ``port``."""

    port: int
    frame: bytes


@dataclass(frozen=True, slots=True)
class PortChanged:
    reason: int
    port: int
    state: int
    config: int


@dataclass(frozen=True, slots=True)
class SwitchError:
    """An OFPT_ERROR (or a protocol fault of ours to see): type, code and the xid it names."""

    type: int
    code: int
    xid: int


@dataclass(frozen=True, slots=True)
class BadMessage:
    """A message from the switch we could not read (too short for its type, or refused by the
    parser): skipped by its header's length, the rest of the stream read on."""

    type: int
    length: int
    xid: int
    reason: str


class ChannelClosed(Exception):
    """The peer broke the protocol (say, not OpenFlow 1.3, or a header length under 8, after which
    the stream cannot be framed): the connection must go. ``events`` and ``answer``: what the same
    read held before the fault, still to be acted on."""

    def __init__(self, reason: str, events: tuple = (), answer: bytes = b"") -> None:
        super().__init__(reason)
        self.events, self.answer = list(events), answer


# The shortest each message we read can be (OpenFlow 1.3.5 §7: the OFP_ASSERTed struct sizes; a
# PACKET_IN's and a MULTIPART_REPLY's variable parts are checked by the parser).
MIN_LENGTH = {
    OFPT_ERROR: 12,  # ofp_error_msg: header, type, code (§7.5.4)
    OFPT_FEATURES_REPLY: 32,  # ofp_switch_features (§7.3.1)
    OFPT_PACKET_IN: 34,  # ofp_packet_in: 32 with an empty match (its 4 bytes padded to 8), then pad[2] (§7.4.1)
    OFPT_PORT_STATUS: 80,  # ofp_port_status: header, reason, pad[7], ofp_port of 64 bytes (§7.4.3)
    OFPT_MULTIPART_REPLY: 16,  # ofp_multipart_reply: header, type, flags, pad[4] (§7.3.5)
}


class OfChannel:
    """The controller side of one OpenFlow 1.3 connection, without a socket."""

    def __init__(self) -> None:
        self._buf = b""
        self._parser = None

    @staticmethod
    def opening() -> bytes:
        """What we send first: our HELLO and a features request."""
        return _HEADER.pack(OFP_VERSION, OFPT_HELLO, 8, 1) + _HEADER.pack(OFP_VERSION, OFPT_FEATURES_REQUEST, 8, 2)

    def feed(self, data: bytes, maar: str) -> tuple[list, bytes]:
        """Bytes from the switch -> (events, bytes to answer with). A message we cannot read becomes
        one ``BadMessage`` event and costs nothing else. Raises ChannelClosed (with what came before)."""
        buf = self._buf + data
        events, answer, offset = [], [], 0

        def closed(reason: str) -> ChannelClosed:
            return ChannelClosed(reason, [e for e in events if e is not None], b"".join(answer))

        while len(buf) - offset >= 8:
            version, kind, length, xid = _HEADER.unpack_from(buf, offset)
            if length < 8:
                raise closed(f"message length {length}")
            if len(buf) - offset < length:
                break
            msg = buf[offset:offset + length]
            offset += length
            if kind == OFPT_HELLO:
                if version < OFP_VERSION:
                    raise closed(f"the switch speaks OpenFlow version {version}, not 1.3 (4)")
                continue
            if version != OFP_VERSION:
                raise closed(f"message version {version} after OpenFlow 1.3 was agreed")
            if length < MIN_LENGTH.get(kind, 8):
                events.append(BadMessage(kind, length, xid, f"shorter than {MIN_LENGTH[kind]} bytes"))
                continue
            try:
                if kind == OFPT_ECHO_REQUEST:
                    answer.append(_HEADER.pack(OFP_VERSION, OFPT_ECHO_REPLY, length, xid) + msg[8:])
                elif kind == OFPT_BARRIER_REPLY:
                    events.append(BarrierReplied(maar, xid))
                elif kind == OFPT_FEATURES_REPLY:
                    events.append(Connected(struct.unpack_from("!Q", msg, 8)[0]))
                elif kind == OFPT_ERROR:
                    events.append(SwitchError(*struct.unpack_from("!HH", msg, 8), xid))
                elif kind in (OFPT_MULTIPART_REPLY, OFPT_PACKET_IN, OFPT_PORT_STATUS):
                    events.append(self._parsed(kind, length, xid, msg, maar))
            except Exception as exc:  # noqa: BLE001 - one unreadable message costs itself, not the stream
                events.append(BadMessage(kind, length, xid, f"{type(exc).__name__}: {exc}"[:200]))
        self._buf = buf[offset:]
        if len(self._buf) > MAX_BUFFER:
            raise closed(f"a message of more than {MAX_BUFFER} bytes")
        return [e for e in events if e is not None], b"".join(answer)

    def _parsed(self, kind: int, length: int, xid: int, msg: bytes, maar: str):
        """Ryu's OpenFlow 1.3 parser for the messages with a body we read (imported on first use).
        Its per-version ``msg_parser`` is called, not ``ofproto_parser.msg``, which logs a traceback
        for a malformed message and returns None: here the exception reaches ``feed``, which counts it."""
        if self._parser is None:
            from ryu.ofproto import ofproto_v1_3, ofproto_v1_3_parser

            class _Datapath:  # what Ryu's parsers read from a datapath
                ofproto, ofproto_parser = ofproto_v1_3, ofproto_v1_3_parser
            self._parser = (_Datapath(), ofproto_v1_3_parser, ofproto_v1_3)
        dp, parser, ofp = self._parser
        m = parser.msg_parser(dp, OFP_VERSION, kind, length, xid, msg)
        if kind == OFPT_MULTIPART_REPLY:
            if m.type != OFPMP_FLOW:
                return None
            return FlowStatsReplied(maar, xid, ofsync.installed(m.body, parser, ofp), bool(m.flags & OFPMPF_REPLY_MORE))
        if kind == OFPT_PACKET_IN:
            return PacketIn(m.match["in_port"], bytes(m.data))
        return PortChanged(m.reason, m.desc.port_no, m.desc.state, m.desc.config)


def packet_out(port: int, frame: bytes) -> bytes:
    """OFPT_PACKET_OUT of ``frame`` out of ``port`` (from the controller, not buffered): what the
    CMD sends through Ryu for the same query (max_len OFPCML_MAX, as Ryu's default)."""
    action = struct.pack("!HHIH6x", 0, 16, port, 0xFFE5)
    body = struct.pack("!IIH6x", OFP_NO_BUFFER, OFPP_CONTROLLER, len(action)) + action + frame
    return _HEADER.pack(OFP_VERSION, OFPT_PACKET_OUT, 8 + len(body), 0) + body


@dataclass(frozen=True, slots=True)
class HandshakeKey:
    """Timer: the pending connection ``ident`` must have identified itself by now."""

    ident: int


class _Peer:
    """One TCP connection to the listener: pending until its features reply names our datapath."""

    __slots__ = ("sock", "channel", "addr", "ident")

    def __init__(self, sock: socket.socket, addr: str, ident: int) -> None:
        self.sock: Optional[socket.socket] = sock
        self.channel, self.addr, self.ident = OfChannel(), addr, ident


class OwnSwitch:
    """The MAAR's own switch: an OpenFlow listener in the agent's loop and the flow mirror behind it.

    ``deliver(effects)``: the agent carries out what the mirror lets through or releases (PBAs, RAs,
    timers, reports, ``FlowsConfirmed``, ``Noted``). ``on_frame(frame, port)``: a packet-in, the
    MN's frame with the port it came in on (attachments are detected from these with this flow
    control, since they name the port). ``on_event(kind, view)``: connection events to show.
    ``on_bad(kind, view)``: a message from the switch we could not read (the agent counts it).

    A new connection does not displace the switch that is up: it stays pending (at most
    ``MAX_PENDING`` of them, each for at most ``HANDSHAKE_TIMEOUT``) until its features reply names
    our datapath id; only then does it replace the old connection (a switch that reconnected).
    """

    def __init__(self, domain, settings, maar: str, listen: tuple[str, int], loop,
                 deliver: Callable[[list], None], on_frame: Callable[[bytes, int], None],
                 on_event: Callable[[str, dict], None], on_bad: Callable[[str, dict], None]) -> None:
        switches = configured_switches(domain, settings, only=maar)
        if not switches:
            name = domain.by_address()[maar].name
            raise ValueError(f"flow_control = maar: [maar:{name}] needs its switch ports (core_port, tunnel_port, "
                             "agent_port, access_ports) and datapath_id")
        self.domain, self.settings, self.maar = domain, settings, maar
        self.dpid = domain.by_address()[maar].datapath_id
        self.pipeline = pipeline_mod.load()
        self.mirror = FlowMirror(self.pipeline, switches, local=maar)
        self._loop, self._deliver, self._on_frame, self._on_event = loop, deliver, on_frame, on_event
        self._on_bad = on_bad
        family = socket.AF_INET6 if ":" in listen[0] else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(listen)
        self.listener.listen(4)
        self.listener.setblocking(False)
        loop.add_reader(self.listener, self._accept, "openflow-listen")
        self.active: Optional[_Peer] = None  # the identified switch's connection
        self.pending: dict[int, _Peer] = {}  # connections not yet identified, by ident
        self._ids = itertools.count(1)
        self.up = False
        self.counters = {"connections": 0, "switch_errors": 0, "refused": 0, "refused_pending": 0,
                         "handshake_timeouts": 0, "bad_messages": 0, "packet_ins": 0}

    # ---- the core's effects, timers --------------------------------------------------------------
    def through(self, effects: list, now: float) -> list:
        """The core's effects after the mirror: switch work done here, the rest returned."""
        return self._carry(self.mirror.handle(CoreOutput(tuple(effects)), now))

    def on_timer(self, key, now: float) -> None:
        if type(key) is HandshakeKey:
            peer = self.pending.get(key.ident)
            if peer is not None:
                self.counters["handshake_timeouts"] += 1
                self._close(peer, f"no features reply within {HANDSHAKE_TIMEOUT:g} s")
            return
        self._deliver(self._carry(self.mirror.handle(TimerFired(key), now)))

    def _mirror(self, event, now: float) -> None:
        self._deliver(self._carry(self.mirror.handle(event, now)))

    def _carry(self, effects) -> list:
        rest = []
        for e in effects:
            if type(e) in (ReplaceFlows, ApplyDiff, RequestFlowStats):
                if self.up:
                    self._write(ofsync.encode(self.pipeline, e))
            else:
                rest.append(e)
        return rest

    # ---- the connections -------------------------------------------------------------------------
    def _accept(self) -> None:
        conn, addr = self.listener.accept()
        self.counters["connections"] += 1
        if len(self.pending) >= MAX_PENDING:
            self.counters["refused_pending"] += 1
            conn.close()
            self._on_event("switch-refused", {"peer": str(addr[0]), "why": f"{MAX_PENDING} connections pending"})
            return
        conn.setblocking(False)  # until identified, a peer that does not read is closed, never waited for
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = _Peer(conn, str(addr[0]), next(self._ids))
        self.pending[peer.ident] = peer
        self._loop.add_reader(conn, lambda: self._readable(peer), "openflow")
        self._loop.timers.set(HandshakeKey(peer.ident), time.time() + HANDSHAKE_TIMEOUT)
        self._on_event("switch-connecting", {"peer": peer.addr})
        self._send(peer, OfChannel.opening())

    def _readable(self, peer: _Peer) -> None:
        if peer.sock is None:
            return
        try:
            data = peer.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:
            self._close(peer, f"receive: {exc}")
            return
        if not data:
            self._close(peer, "closed by the switch")
            return
        fault = None
        try:
            events, answer = peer.channel.feed(data, self.maar)
        except ChannelClosed as exc:  # what came before the fault is still acted on
            events, answer, fault = exc.events, exc.answer, str(exc)
        if answer:
            self._send(peer, answer)
        for ev in events:
            if peer.sock is None:
                return
            self._event(peer, ev)
        if fault is not None and peer.sock is not None:
            self.counters["refused"] += 1
            self._close(peer, fault)

    def _event(self, peer: _Peer, ev) -> None:
        now = time.time()
        kind = type(ev)
        if kind is BadMessage:
            self.counters["bad_messages"] += 1
            self._on_bad("openflow-bad-message", {"type": ev.type, "length": ev.length, "xid": ev.xid,
                                                  "reason": ev.reason})
        elif kind is Connected:
            if peer is self.active:
                return  # a second features reply: nothing new
            if self.dpid is not None and ev.dpid != self.dpid:
                self.counters["refused"] += 1
                self._close(peer, f"datapath id {ev.dpid:#x} is not {self.dpid:#x}")
                return
            self._promote(peer, ev.dpid, now)
        elif peer is not self.active:
            return  # nothing counts before the features reply
        elif kind is PacketIn:
            self.counters["packet_ins"] += 1
            self._on_frame(ev.frame, ev.port)
        elif kind is PortChanged:
            query = port_up_query(self.domain, self.settings, self.maar, ev.reason, ev.port, ev.state, ev.config)
            if query:
                self._write(packet_out(ev.port, query))
        elif kind is SwitchError:
            self.counters["switch_errors"] += 1
            self._on_event("switch-error", {"type": ev.type, "code": ev.code, "xid": ev.xid})
        else:
            self._mirror(ev, now)

    def _promote(self, peer: _Peer, dpid: int, now: float) -> None:
        """``peer`` named our datapath: it is the switch now (the one before it, if any, reconnected)."""
        del self.pending[peer.ident]
        self._loop.timers.cancel(HandshakeKey(peer.ident))
        peer.sock.settimeout(SEND_TIMEOUT)  # the switch: a write may wait for it, up to SEND_TIMEOUT
        if self.active is not None:
            self._close(self.active, "replaced by a new connection from the same datapath")
        self.active, self.up = peer, True
        self._on_event("switch-connected", {"dpid": dpid, "peer": peer.addr})
        self._mirror(SwitchUp(self.maar), now)

    def _write(self, data: bytes) -> None:
        if self.active is not None:
            self._send(self.active, data)

    def _send(self, peer: _Peer, data: bytes) -> None:
        if peer.sock is None:
            return
        try:
            peer.sock.sendall(data)
        except OSError as exc:  # timeout or would-block included: a peer that does not read is dropped
            self._close(peer, f"send: {exc}")

    def _close(self, peer: _Peer, why: str) -> None:
        sock = peer.sock
        if sock is None:
            return
        peer.sock = None
        self._loop.remove_reader(sock)
        sock.close()
        if peer is self.active:
            self.active, self.up = None, False
            self._on_event("switch-disconnected", {"why": why[:200]})
            self._mirror(SwitchDown(self.maar), time.time())
        else:
            self.pending.pop(peer.ident, None)
            self._loop.timers.cancel(HandshakeKey(peer.ident))
            self._on_event("switch-disconnected", {"why": why[:200], "peer": peer.addr, "pending": True})

    def state(self) -> dict:
        return {"connected": self.up, "pending": len(self.pending), **self.counters}

    def close(self) -> None:
        for peer in [*self.pending.values(), *([self.active] if self.active else [])]:
            if peer.sock is not None:
                self._loop.remove_reader(peer.sock)
                peer.sock.close()
                peer.sock = None
        self.pending.clear()
        self.active, self.up = None, False
        self._loop.remove_reader(self.listener)
        self.listener.close()
