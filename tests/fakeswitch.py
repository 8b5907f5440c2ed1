"""A fake OpenFlow 1.3 switch: the flow tables a controller really programs, from the bytes it sends.

Why: a table that executed ``pipeline.Flow`` objects could not catch a mistake made on the way to
the wire (ofsync's encoding, cookie masks, strict vs non-strict deletes, barrier xids, multipart
stats). Here every message given to ``FakeDatapath.send_msg`` is serialized, and those bytes, or
the raw bytes given to ``FakeDatapath.send`` (one or more whole messages), are parsed back as a
switch would receive them, then applied with OpenFlow 1.3 semantics; replies are serialized and
parsed back as a controller would receive them. ``FakeSwitch.forward`` runs a packet through the
installed entries.

Strictness: what the fake does not implement raises ``Unsupported``; what a real switch would refuse
with an OFPT_ERROR raises ``Rejected``. No test passes because the fake quietly ignored something.
Accepted silently, as a switch does (no reply is due): HELLO and SET_CONFIG. ECHO_REQUEST and
FEATURES_REQUEST (datapath id, 255 tables) are answered.

Faults are injected by the caller, deterministically: barrier replies dropped or held until released
(``FakeSwitch.barrier_mode``), and ``FakeSwitch.disconnect`` (flows lost, like an ovs-vswitchd
restart, or kept, like a controller reconnection).
"""
from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass, field as _field
from typing import Callable, Optional, Union

from ryu.lib.pack_utils import msg_pack_into
from ryu.ofproto import ofproto_parser as wire
from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

CONTROLLER = "CONTROLLER"
Port = Union[int, str]  # a port number or CONTROLLER
MAX_MSG_LEN = 0xFFFF  # the OpenFlow header's 16-bit length: longer stats must be split anyway

# Match fields the fake understands: bit width; which may carry a mask in OpenFlow 1.3.
_WIDTH = {"in_port": 32, "eth_type": 16, "ip_proto": 8, "icmpv6_type": 8, "tunnel_id": 64,
          "eth_src": 48, "eth_dst": 48, "ipv6_src": 128, "ipv6_dst": 128}
_MASKABLE = {"tunnel_id", "eth_src", "eth_dst", "ipv6_src", "ipv6_dst"}
# OpenFlow 1.3 match field prerequisites: field -> (required field, allowed values).
_PREREQ = {"ip_proto": ("eth_type", (0x0800, 0x86DD)), "ipv6_src": ("eth_type", (0x86DD,)),
           "ipv6_dst": ("eth_type", (0x86DD,)), "icmpv6_type": ("ip_proto", (58,))}
SET_FIELDS = ("eth_src", "eth_dst", "tunnel_id", "tun_ipv6_dst")  # what the dmm-edge pipeline sets


class FakeSwitchError(Exception):
    """Base of the fake's errors."""


class Unsupported(FakeSwitchError):
    """The fake does not implement this: extend it, or the controller sent something unexpected."""


class Rejected(FakeSwitchError):
    """A real OpenFlow 1.3 switch would refuse this with an OFPT_ERROR (named in the message)."""


class BarrierMode(enum.Enum):
    REPLY = "reply"  # answer at once (everything before it has been applied)
    DROP = "drop"  # never answer (a lost reply)
    HOLD = "hold"  # answer when the caller releases it (a late reply; later replies may overtake it)


def _addr_int(field: str, value) -> int:
    if field in ("eth_src", "eth_dst"):
        return int.from_bytes(value, "big") if isinstance(value, bytes) else int(value.replace(":", ""), 16)
    if field.startswith(("ipv6", "tun_ipv6")):
        return int(ipaddress.IPv6Address(value))
    return int(value)


def _canonical(field: str, user_value) -> tuple[int, int]:
    """(value, mask) as integers, an exact field with an all-ones mask: how a switch compares matches
    (so ``/128`` and unmasked are the same entry)."""
    if field not in _WIDTH:
        raise Unsupported(f"match field {field}")
    full = (1 << _WIDTH[field]) - 1
    if isinstance(user_value, tuple):
        value, mask = _addr_int(field, user_value[0]), _addr_int(field, user_value[1])
    else:
        value, mask = _addr_int(field, user_value), full
    if mask != full and field not in _MASKABLE:
        raise Rejected(f"OFPBMC_BAD_MASK: {field} cannot be masked")
    return value & mask, mask  # bits outside the mask never count (Ryu's OFPMatch clears them already)


def _match_key(match: parser.OFPMatch) -> dict[str, tuple[int, int]]:
    """The match as the switch compares it; refused without its prerequisites (in any message)."""
    key = {k: _canonical(k, v) for k, v in match.items()}
    for field, (need, allowed) in _PREREQ.items():
        if field in key and (need not in key or key[need][0] not in allowed):
            raise Rejected(f"OFPBMC_BAD_PREREQ: {field} needs {need} in {allowed}")
    return key


def _covers(general: dict, specific: dict) -> bool:
    """Non-strict matching: every constraint of ``general`` is implied by ``specific``."""
    for k, (value, mask) in general.items():
        if k not in specific:
            return False
        v2, m2 = specific[k]
        if m2 & mask != mask or v2 & mask != value:
            return False
    return True


def _fmt(field: str, value) -> object:
    """Packet field values as strings for addresses (lower-case MAC, compressed IPv6), ints otherwise."""
    if field in ("eth_src", "eth_dst"):
        return ":".join(f"{b:02x}" for b in _addr_int(field, value).to_bytes(6, "big"))
    if field.startswith(("ipv6", "tun_ipv6")):
        return str(ipaddress.IPv6Address(value))
    return int(value)


@dataclass
class Entry:
    """One installed flow entry, holding the match and instructions as parsed from the wire."""

    table_id: int
    priority: int
    cookie: int
    match: parser.OFPMatch
    instructions: list
    flags: int = 0
    packet_count: int = 0
    key: dict[str, tuple[int, int]] = _field(init=False)  # the match as the switch compares it

    def __post_init__(self) -> None:
        self.key = _match_key(self.match)

    def outputs_to(self, port: int) -> bool:
        return any(isinstance(a, parser.OFPActionOutput) and a.port == port
                   for i in self.instructions if isinstance(i, parser.OFPInstructionActions) for a in i.actions)


@dataclass(frozen=True)
class Decision:
    """What the switch did with a packet. ``sent`` holds each output with the packet's fields at that
    moment; the flat fields are the packet's values after the last action."""

    outputs: tuple[Port, ...]
    eth_src: Optional[str]
    eth_dst: Optional[str]
    tun_ipv6_dst: Optional[str]
    tunnel_id: Optional[int]
    tables: tuple[int, ...]  # the tables visited, in order
    sent: tuple[tuple[Port, tuple[tuple[str, object], ...]], ...] = ()

    @property
    def dropped(self) -> bool:
        return not self.outputs


class FakeDatapath:
    """One controller connection, usable where ofsync or the app expects a Ryu ``Datapath``.
    Replies queue here until the caller pulls them with ``replies()``."""

    ofproto = ofp
    ofproto_parser = parser

    def __init__(self, switch: FakeSwitch) -> None:
        self.switch = switch
        self.id = switch.dpid
        self.xid = 0
        self.is_active = True
        self.sent: list = []  # every message received, as parsed from the wire
        self._replies: list = []
        self._held: list = []  # (xid, barrier reply)

    def set_xid(self, msg) -> int:
        """As Ryu's ``Datapath.set_xid``: a per-connection counter, from 1."""
        self.xid = (self.xid + 1) & ofp.MAX_XID
        msg.set_xid(self.xid)
        return self.xid

    def send_msg(self, msg) -> bool:
        """Encode ``msg`` (as Ryu's ``Datapath.send_msg``: an xid from the counter if it has none),
        then ``send`` the bytes."""
        assert isinstance(msg, parser.MsgBase)
        if not self.is_active:
            return False
        if msg.xid is None:
            self.set_xid(msg)
        msg.serialize()
        return self.send(bytes(msg.buf))

    def send(self, buf: bytes) -> bool:
        """Raw bytes, as Ryu's ``Datapath.send``: one or more whole messages, each decoded and applied
        in order. False (bytes discarded) once the connection is gone, as Ryu does."""
        if not self.is_active:
            return False
        buf, offset = bytes(buf), 0
        while offset < len(buf):
            if len(buf) - offset < ofp.OFP_HEADER_SIZE:
                raise Unsupported(f"{len(buf) - offset} bytes after the last message: not a whole header")
            msg_len = wire.header(buf[offset:])[2]
            if msg_len < ofp.OFP_HEADER_SIZE or offset + msg_len > len(buf):
                raise Unsupported(f"message of length {msg_len} at {offset} in {len(buf)} bytes: "
                                  f"the fake takes whole messages per send")
            received = self._decode(buf[offset:offset + msg_len])
            self.sent.append(received)
            self.switch._apply(self, received)
            offset += msg_len
        return True

    def replies(self) -> list:
        """The replies queued so far, in order (removed from the queue)."""
        out, self._replies = self._replies, []
        return out

    def held(self) -> tuple[int, ...]:
        """xids of the barrier replies being held."""
        return tuple(x for x, _ in self._held)

    def release(self, xid: Optional[int] = None) -> int:
        """Queue the held barrier reply ``xid`` (all held ones if None); returns how many."""
        go = [r for x, r in self._held if xid is None or x == xid]
        self._held = [(x, r) for x, r in self._held if not (xid is None or x == xid)]
        self._replies += go
        return len(go)

    # ---- wire ------------------------------------------------------------------------------------
    def _decode(self, buf: bytes):
        version, msg_type, msg_len, xid = wire.header(buf)
        # Ryu parses only what a controller receives: the requests a switch receives are decoded here
        if msg_type == ofp.OFPT_BARRIER_REQUEST:
            return parser.OFPBarrierRequest.parser(self, version, msg_type, msg_len, xid, buf)
        if msg_type == ofp.OFPT_MULTIPART_REQUEST:
            return self._decode_multipart_request(version, msg_type, msg_len, xid, buf)
        if msg_type == ofp.OFPT_FEATURES_REQUEST:
            return parser.OFPFeaturesRequest.parser(self, version, msg_type, msg_len, xid, buf)
        if msg_type == ofp.OFPT_SET_CONFIG:
            msg = parser.OFPSetConfig.parser(self, version, msg_type, msg_len, xid, buf)
            msg.flags, msg.miss_send_len = struct.unpack_from(ofp.OFP_SWITCH_CONFIG_PACK_STR, buf, ofp.OFP_HEADER_SIZE)
            return msg
        if msg_type not in parser._MSG_PARSERS:
            names = [n for n in dir(ofp) if n.startswith("OFPT_") and getattr(ofp, n) == msg_type]
            raise Unsupported(f"message type {msg_type} {names}")
        return wire.msg(self, version, msg_type, msg_len, xid, buf)

    def _decode_multipart_request(self, version, msg_type, msg_len, xid, buf):
        mp_type, flags = struct.unpack_from(ofp.OFP_MULTIPART_REQUEST_PACK_STR, buf, ofp.OFP_HEADER_SIZE)
        if mp_type != ofp.OFPMP_FLOW:
            raise Unsupported(f"multipart request type {mp_type} (only OFPMP_FLOW)")
        req = parser.OFPFlowStatsRequest.parser(self, version, msg_type, msg_len, xid, buf)
        req.flags = flags
        (req.table_id, req.out_port, req.out_group, req.cookie, req.cookie_mask) = struct.unpack_from(
            ofp.OFP_FLOW_STATS_REQUEST_0_PACK_STR, buf, ofp.OFP_MULTIPART_REQUEST_SIZE)
        req.match = parser.OFPMatch.parser(buf, ofp.OFP_MULTIPART_REQUEST_SIZE + ofp.OFP_FLOW_STATS_REQUEST_0_SIZE)
        return req

    def _reply(self, msg_type: int, xid: int, body: bytes = b""):
        """Encode a reply (header + body), then parse it as the controller's Ryu would."""
        buf = bytearray(ofp.OFP_HEADER_SIZE) + body
        msg_pack_into(ofp.OFP_HEADER_PACK_STR, buf, 0, ofp.OFP_VERSION, msg_type, len(buf), xid)
        return wire.msg(self, ofp.OFP_VERSION, msg_type, len(buf), xid, bytes(buf))


class FakeSwitch:
    """The switch: flow tables that outlive connections. ``connect()`` gives the datapath a
    controller talks to; ``forward()`` sends a packet through the tables."""

    def __init__(self, dpid: int = 1, *, n_tables: int = 255, stats_per_reply: Optional[int] = None) -> None:
        self.dpid = dpid
        self.n_tables = n_tables
        self.stats_per_reply = stats_per_reply  # at most this many flow stats per multipart reply
        self.barrier_mode: Union[BarrierMode, Callable[[int], BarrierMode]] = BarrierMode.REPLY
        self.entries: list[Entry] = []
        self.datapath: Optional[FakeDatapath] = None

    def connect(self) -> FakeDatapath:
        """A new controller connection (xids restart, as with a new Ryu Datapath); ends the old one."""
        self.disconnect(clear_flows=False)
        self.datapath = FakeDatapath(self)
        return self.datapath

    def disconnect(self, *, clear_flows: bool) -> None:
        """End the connection: its queued and held replies are lost, later sends on it are discarded.
        ``clear_flows``: the switch restarted without its flows (ovs-vswitchd restart) rather than
        only the controller connection dropping."""
        if self.datapath is not None:
            self.datapath.is_active = False
            self.datapath._replies, self.datapath._held = [], []
            self.datapath = None
        if clear_flows:
            self.entries = []

    # ---- messages --------------------------------------------------------------------------------
    def _apply(self, dp: FakeDatapath, msg) -> None:
        if isinstance(msg, parser.OFPFlowMod):
            self._flow_mod(msg)
        elif isinstance(msg, parser.OFPBarrierRequest):
            mode = self.barrier_mode(msg.xid) if callable(self.barrier_mode) else self.barrier_mode
            reply = dp._reply(ofp.OFPT_BARRIER_REPLY, msg.xid)
            if mode is BarrierMode.REPLY:
                dp._replies.append(reply)
            elif mode is BarrierMode.HOLD:
                dp._held.append((msg.xid, reply))
        elif isinstance(msg, parser.OFPFlowStatsRequest):
            dp._replies += self._flow_stats(dp, msg)
        elif isinstance(msg, parser.OFPEchoRequest):
            dp._replies.append(dp._reply(ofp.OFPT_ECHO_REPLY, msg.xid, bytes(msg.data or b"")))
        elif isinstance(msg, parser.OFPFeaturesRequest):
            body = struct.pack("!QIBB2xII", self.dpid, 0, self.n_tables, 0, 0, 0)  # ofp_switch_features
            dp._replies.append(dp._reply(ofp.OFPT_FEATURES_REPLY, msg.xid, body))
        elif not isinstance(msg, (parser.OFPHello, parser.OFPSetConfig)):
            raise Unsupported(f"message {type(msg).__name__}")

    def _flow_mod(self, m: parser.OFPFlowMod) -> None:
        if m.command == ofp.OFPFC_ADD:
            self._add(m)
        elif m.command in (ofp.OFPFC_DELETE, ofp.OFPFC_DELETE_STRICT):
            chosen = self._selector(m, strict=m.command == ofp.OFPFC_DELETE_STRICT)
            self.entries = [e for e in self.entries if not chosen(e)]
        else:
            raise Unsupported(f"flow-mod command {m.command} (ADD, DELETE and DELETE_STRICT only)")

    def _add(self, m: parser.OFPFlowMod) -> None:
        if m.table_id >= self.n_tables:
            raise Rejected(f"OFPFMFC_BAD_TABLE_ID: {m.table_id}")
        if m.idle_timeout or m.hard_timeout:
            raise Unsupported("flow timeouts (the fake has no clock)")
        if m.buffer_id != ofp.OFP_NO_BUFFER:
            raise Unsupported("buffer_id (the fake buffers no packets)")
        if m.flags & ~ofp.OFPFF_RESET_COUNTS:
            raise Unsupported(f"flow-mod flags {m.flags:#x} (only OFPFF_RESET_COUNTS)")
        self._check_instructions(m)
        new = Entry(m.table_id, m.priority, m.cookie, m.match, list(m.instructions), m.flags)
        for i, old in enumerate(self.entries):
            if old.table_id == m.table_id and old.priority == m.priority and old.key == new.key:
                # OpenFlow 1.3 section 6.4: the entry is replaced; counters carry over unless RESET_COUNTS
                if not m.flags & ofp.OFPFF_RESET_COUNTS:
                    new.packet_count = old.packet_count
                self.entries[i] = new
                return
        self.entries.append(new)

    def _check_instructions(self, m: parser.OFPFlowMod) -> None:
        for inst in m.instructions:
            if isinstance(inst, parser.OFPInstructionGotoTable):
                if not m.table_id < inst.table_id < self.n_tables:
                    raise Rejected(f"OFPBIC_BAD_TABLE_ID: goto {inst.table_id} from table {m.table_id}")
            elif isinstance(inst, parser.OFPInstructionActions) and inst.type == ofp.OFPIT_APPLY_ACTIONS:
                for a in inst.actions:
                    if isinstance(a, parser.OFPActionOutput):
                        if a.port > ofp.OFPP_MAX and a.port != ofp.OFPP_CONTROLLER:
                            raise Unsupported(f"output to reserved port {a.port:#x}")
                    elif isinstance(a, parser.OFPActionSetField):
                        if a.key not in SET_FIELDS:
                            raise Unsupported(f"set_field {a.key}")
                    else:
                        raise Unsupported(f"action {type(a).__name__}")
            else:
                raise Unsupported(f"instruction {type(inst).__name__} type {inst.type}")

    @staticmethod
    def _selector(m, strict: bool) -> Callable[[Entry], bool]:
        """The entries a DELETE(_STRICT) or flow stats request ``m`` applies to (OpenFlow 1.3 section
        6.4): table, cookie under cookie_mask, out_port/out_group, then the match."""
        want = _match_key(m.match)

        def chosen(e: Entry) -> bool:
            if m.table_id != ofp.OFPTT_ALL and e.table_id != m.table_id:
                return False
            if (e.cookie ^ m.cookie) & m.cookie_mask:
                return False
            if m.out_port != ofp.OFPP_ANY and not e.outputs_to(m.out_port):
                return False
            if m.out_group != ofp.OFPG_ANY:
                return False  # no entry outputs to a group: the fake supports no group action
            if strict:
                return e.priority == m.priority and e.key == want
            return _covers(want, e.key)
        return chosen

    def _flow_stats(self, dp: FakeDatapath, req) -> list:
        if req.flags & ofp.OFPMPF_REQ_MORE:
            raise Unsupported("multipart requests in several parts")
        chosen = self._selector(req, strict=False)
        bodies = [self._stats_body(e) for e in self.entries if chosen(e)]
        replies, part = [], []
        size = ofp.OFP_MULTIPART_REPLY_SIZE

        def flush(more: bool) -> None:
            head = struct.pack(ofp.OFP_MULTIPART_REPLY_PACK_STR, ofp.OFPMP_FLOW, ofp.OFPMPF_REPLY_MORE if more else 0)
            replies.append(dp._reply(ofp.OFPT_MULTIPART_REPLY, req.xid, head + b"".join(part)))

        for body in bodies:
            if part and (size + len(body) > MAX_MSG_LEN or len(part) == self.stats_per_reply):
                flush(more=True)
                part, size = [], ofp.OFP_MULTIPART_REPLY_SIZE
            part.append(body)
            size += len(body)
        flush(more=False)
        return replies

    @staticmethod
    def _stats_body(e: Entry) -> bytes:
        buf = bytearray(ofp.OFP_FLOW_STATS_0_SIZE)
        offset = ofp.OFP_FLOW_STATS_0_SIZE + e.match.serialize(buf, ofp.OFP_FLOW_STATS_0_SIZE)
        for inst in e.instructions:
            inst.serialize(buf, offset)
            offset += inst.len
        # duration and byte_count are not modelled: 0
        msg_pack_into(ofp.OFP_FLOW_STATS_0_PACK_STR, buf, 0, len(buf), e.table_id, 0, 0, e.priority, 0, 0,
                      e.flags, e.cookie, e.packet_count, 0)
        return bytes(buf)

    # ---- forwarding ------------------------------------------------------------------------------
    def forward(self, packet: dict) -> Decision:
        """Send ``packet`` (field name -> value: in_port, eth_type, ip_proto, icmpv6_type, eth_src,
        eth_dst, ipv6_src, ipv6_dst, tunnel_id) through the tables from table 0: in each, the
        highest-priority matching entry wins; its apply-actions run in order, then goto_table or
        stop; a table miss drops. Counts each matched entry's packets."""
        unknown = set(packet) - set(_WIDTH) - set(SET_FIELDS)
        if unknown:
            raise Unsupported(f"packet fields {sorted(unknown)}")
        fields = {k: _fmt(k, v) for k, v in packet.items() if v is not None}
        ints = {k: _addr_int(k, v) for k, v in fields.items() if k in _WIDTH}
        table: Optional[int] = 0
        visited: list[int] = []
        sent: list[tuple[Port, tuple]] = []
        while table is not None:
            visited.append(table)
            hits = [e for e in self.entries if e.table_id == table and self._hits(e, ints)]
            if not hits:
                break  # table miss without a miss entry: drop (OpenFlow 1.3 section 5.4)
            top = max(e.priority for e in hits)
            best = [e for e in hits if e.priority == top]
            if len(best) > 1:
                raise Rejected(f"table {table}: {len(best)} overlapping entries of priority {top} match "
                               f"{packet}; OpenFlow leaves the choice undefined")
            entry, table = best[0], None
            entry.packet_count += 1
            for inst in entry.instructions:
                if isinstance(inst, parser.OFPInstructionGotoTable):
                    table = inst.table_id
                    continue
                for a in inst.actions:
                    if isinstance(a, parser.OFPActionSetField):
                        fields[a.key] = _fmt(a.key, a.value)
                        if a.key in _WIDTH:
                            ints[a.key] = _addr_int(a.key, fields[a.key])
                    elif a.port == ofp.OFPP_CONTROLLER:
                        sent.append((CONTROLLER, tuple(sorted(fields.items()))))
                    elif a.port != fields.get("in_port"):  # only OFPP_IN_PORT sends back out of the ingress port
                        sent.append((a.port, tuple(sorted(fields.items()))))
        return Decision(tuple(p for p, _ in sent), fields.get("eth_src"), fields.get("eth_dst"),
                        fields.get("tun_ipv6_dst"), fields.get("tunnel_id"), tuple(visited), tuple(sent))

    @staticmethod
    def _hits(e: Entry, ints: dict[str, int]) -> bool:
        return all(k in ints and ints[k] & mask == value for k, (value, mask) in e.key.items())
