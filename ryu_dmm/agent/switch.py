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


class ChannelClosed(Exception):
    """The peer broke the protocol (say, not OpenFlow 1.3): the connection must go."""


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
        """Bytes from the switch -> (events, bytes to answer with). Raises ChannelClosed."""
        buf = self._buf + data
        events, answer, offset = [], [], 0
        while len(buf) - offset >= 8:
            version, kind, length, xid = _HEADER.unpack_from(buf, offset)
            if length < 8:
                raise ChannelClosed(f"message length {length}")
            if len(buf) - offset < length:
                break
            msg = buf[offset:offset + length]
            offset += length
            if kind == OFPT_HELLO:
                if version < OFP_VERSION:
                    raise ChannelClosed(f"the switch speaks OpenFlow version {version}, not 1.3 (4)")
                continue
            if version != OFP_VERSION:
                raise ChannelClosed(f"message version {version} after OpenFlow 1.3 was agreed")
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
        self._buf = buf[offset:]
        if len(self._buf) > MAX_BUFFER:
            raise ChannelClosed(f"a message of more than {MAX_BUFFER} bytes")
        return [e for e in events if e is not None], b"".join(answer)

    def _parsed(self, kind: int, length: int, xid: int, msg: bytes, maar: str):
        """Ryu's OpenFlow 1.3 parser for the messages with a body we read (imported on first use)."""
        if self._parser is None:
            from ryu.ofproto import ofproto_parser, ofproto_v1_3, ofproto_v1_3_parser

            class _Datapath:  # what Ryu's parsers read from a datapath
                ofproto, ofproto_parser = ofproto_v1_3, ofproto_v1_3_parser
            self._parser = (ofproto_parser, _Datapath(), ofproto_v1_3_parser, ofproto_v1_3)
        wire, dp, parser, ofp = self._parser
        m = wire.msg(dp, OFP_VERSION, kind, length, xid, msg)
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


class OwnSwitch:
    """The MAAR's own switch: an OpenFlow listener in the agent's loop and the flow mirror behind it.

    ``deliver(effects)``: the agent carries out what the mirror lets through or releases (PBAs, RAs,
    timers, reports, ``FlowsConfirmed``, ``Noted``). ``on_frame(frame, port)``: a packet-in, the
    MN's frame with the port it came in on (attachments are detected from these with this flow
    control, since they name the port). ``on_event(kind, view)``: connection events to show.
    """

    def __init__(self, domain, settings, maar: str, listen: tuple[str, int], loop,
                 deliver: Callable[[list], None], on_frame: Callable[[bytes, int], None],
                 on_event: Callable[[str, dict], None]) -> None:
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
        family = socket.AF_INET6 if ":" in listen[0] else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(listen)
        self.listener.listen(4)
        self.listener.setblocking(False)
        loop.add_reader(self.listener, self._accept, "openflow-listen")
        self.conn: Optional[socket.socket] = None
        self.channel = OfChannel()
        self.up = False
        self.counters = {"connections": 0, "switch_errors": 0, "refused": 0, "packet_ins": 0}

    # ---- the core's effects, timers --------------------------------------------------------------
    def through(self, effects: list, now: float) -> list:
        """The core's effects after the mirror: switch work done here, the rest returned."""
        return self._carry(self.mirror.handle(CoreOutput(tuple(effects)), now))

    def on_timer(self, key: MirrorKey, now: float) -> None:
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

    # ---- the connection --------------------------------------------------------------------------
    def _accept(self) -> None:
        conn, addr = self.listener.accept()
        if self.conn is not None:  # a switch reconnecting: the new connection wins
            self._drop("replaced by a new connection")
        self.counters["connections"] += 1
        conn.settimeout(SEND_TIMEOUT)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn, self.channel = conn, OfChannel()
        self._loop.add_reader(conn, self._readable, "openflow")
        self._on_event("switch-connecting", {"peer": str(addr[0])})
        self._write(OfChannel.opening())

    def _readable(self) -> None:
        try:
            data = self.conn.recv(65536)
        except OSError as exc:
            self._drop(f"receive: {exc}")
            return
        if not data:
            self._drop("closed by the switch")
            return
        try:
            events, answer = self.channel.feed(data, self.maar)
        except ChannelClosed as exc:
            self.counters["refused"] += 1
            self._drop(str(exc))
            return
        if answer:
            self._write(answer)
        for ev in events:
            now = time.time()
            kind = type(ev)
            if kind is Connected:
                if self.dpid is not None and ev.dpid != self.dpid:
                    self.counters["refused"] += 1
                    self._drop(f"datapath id {ev.dpid:#x} is not {self.dpid:#x}")
                    return
                self.up = True
                self._on_event("switch-connected", {"dpid": ev.dpid})
                self._mirror(SwitchUp(self.maar), now)
            elif not self.up:
                continue  # nothing counts before the features reply
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

    def _write(self, data: bytes) -> None:
        if self.conn is None:
            return
        try:
            self.conn.sendall(data)
        except OSError as exc:  # timeout included: a switch that does not read is dropped
            self._drop(f"send: {exc}")

    def _drop(self, why: str) -> None:
        conn, was_up = self.conn, self.up
        if conn is None:
            return
        self.conn, self.up = None, False
        self._loop.remove_reader(conn)
        conn.close()
        self._on_event("switch-disconnected", {"why": why[:200]})
        if was_up:
            self._mirror(SwitchDown(self.maar), time.time())

    def state(self) -> dict:
        return {"connected": self.up, **self.counters}

    def close(self) -> None:
        if self.conn is not None:
            self._loop.remove_reader(self.conn)
            self.conn.close()
            self.conn = None
        self._loop.remove_reader(self.listener)
        self.listener.close()
