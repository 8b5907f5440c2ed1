"""The CMD's OpenFlow 1.3 messages packed with ``struct``: the hot path of flow pushes.

Exactly what the CMD sends towards a MAAR's switch, and nothing else: OFPT_FLOW_MOD (ADD of a
rendered flow, DELETE by cookie in all tables, DELETE_STRICT of one installed entry), the barrier
request and the flow-stats request (every table, any cookie), each with the xid it is given. Match
fields and actions are the ones the dmm-edge declaration may use (openflow_pipelines/dmm_edge.toml);
anything else raises ``ValueError`` (the mirror refuses such flows before they get here).

Byte for byte what Ryu 4.34's ``ofproto_v1_3_parser`` serializes for the same message (fields in
OXM type order, masked values with their host bits cleared, matches and set-field actions padded to
8 bytes, output actions with max_len OFPCML_NO_BUFFER): tests/test_ofwire.py compares the two over
every kind of rendered flow. No Ryu import: this module is plain ``struct``.
"""
from __future__ import annotations

import socket
import struct

OFP_VERSION = 4
OFPT_FLOW_MOD, OFPT_BARRIER_REQUEST, OFPT_MULTIPART_REQUEST = 14, 20, 18
OFPFC_ADD, OFPFC_DELETE, OFPFC_DELETE_STRICT = 0, 3, 4
OFPTT_ALL = 0xFF
OFPP_CONTROLLER, OFPP_ANY, OFPG_ANY = 0xFFFFFFFD, 0xFFFFFFFF, 0xFFFFFFFF
OFP_NO_BUFFER, OFPCML_NO_BUFFER = 0xFFFFFFFF, 0xFFFF
OFP_DEFAULT_PRIORITY = 0x8000
OFPIT_GOTO_TABLE, OFPIT_APPLY_ACTIONS = 1, 4
OFPAT_OUTPUT, OFPAT_SET_FIELD = 0, 25
OFPMP_FLOW = 1
ALL_COOKIES = 0xFFFF_FFFF_FFFF_FFFF

# field -> (OXM class, field number, value length): OpenFlow basic fields, and Nicira's NXM_NX_TUN_IPV6_DST
# (class NXM_1, as Ryu's nicira_ext declares it and Open vSwitch reads it)
OXM = {"in_port": (0x8000, 0, 4), "eth_dst": (0x8000, 3, 6), "eth_src": (0x8000, 4, 6), "eth_type": (0x8000, 5, 2),
       "ip_proto": (0x8000, 10, 1), "ipv6_src": (0x8000, 26, 16), "ipv6_dst": (0x8000, 27, 16),
       "icmpv6_type": (0x8000, 29, 1), "tunnel_id": (0x8000, 38, 8), "tun_ipv6_dst": (0x0001, 110, 16)}
MATCH_FIELDS = frozenset(OXM) - {"tun_ipv6_dst"}
SET_FIELDS = frozenset({"eth_src", "eth_dst", "tunnel_id", "tun_ipv6_dst"})
_ORDER = {f: cls << 7 | num for f, (cls, num, _) in OXM.items()}  # Ryu's OFPMatch sorts fields by OXM type
_PREFIXED = ("ipv6_src", "ipv6_dst")

_HEADER = struct.Struct("!BBHI")
_FLOW_MOD = struct.Struct("!BBHIQQBBHHHIIIH2x")  # header + ofp_flow_mod up to its match
_OUTPUT = struct.Struct("!HHIH6x")
_GOTO = struct.Struct("!HHB3x")
_APPLY = struct.Struct("!HH4x")
_EMPTY_MATCH = struct.pack("!HH4x", 1, 4)
_STATS = struct.Struct("!BBHIHH4xB3xII4xQQ")  # header + multipart request + ofp_flow_stats_request up to its match


def _pad8(b: bytes) -> bytes:
    return b + bytes(-len(b) % 8)


def _mac(value) -> bytes:
    if isinstance(value, bytes) and len(value) == 6:
        return value
    if isinstance(value, str):
        b = bytes.fromhex(value.replace(":", ""))
        if len(b) == 6 and value.count(":") == 5:
            return b
    raise ValueError(f"not a MAC address: {value!r}")


_ONES = (1 << 128) - 1


def _address(text: str) -> bytes:
    try:
        return socket.inet_pton(socket.AF_INET6, text)
    except (OSError, TypeError):
        raise ValueError(f"not an IPv6 address: {text!r}") from None


def _prefix(text: str) -> tuple[bytes, bytes | None]:
    """``addr/len`` (no host bits; no ``/len``: a /128) as packed address and mask, no mask for a
    /128. Plain ``inet_pton``: ``ipaddress`` took half the encoder's time."""
    addr, slash, length = text.partition("/")
    n = int(length) if slash and length.isascii() and length.isdigit() else (128 if not slash else -1)
    if not 0 <= n <= 128:
        raise ValueError(f"not an IPv6 prefix: {text!r}")
    val = _address(addr)
    if n == 128:
        return val, None
    mask = _ONES ^ (_ONES >> n)
    if int.from_bytes(val, "big") & ~mask:
        raise ValueError(f"{text} has host bits set")
    return val, mask.to_bytes(16, "big")


def oxm(field: str, value, prefixed: bool = False) -> bytes:
    """One OXM TLV. ``prefixed``: an IPv6 value is a prefix (``addr/len``, no host bits), carried
    with its mask unless it is a /128."""
    try:
        cls, num, n = OXM[field]
    except KeyError:
        raise ValueError(f"field {field} is not one the CMD encodes") from None
    if n == 16:
        val, mask = _prefix(value) if prefixed else (_address(value), None)
        if mask is not None:
            return struct.pack("!HBB", cls, num << 1 | 1, 32) + val + mask
    elif n == 6:
        val = _mac(value)
    else:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{field}: not an integer: {value!r}")
        try:
            val = value.to_bytes(n, "big")
        except OverflowError:
            raise ValueError(f"{field}: {value} does not fit in {n} bytes") from None
    return struct.pack("!HBB", cls, num << 1, n) + val


def match(items) -> bytes:
    """An OXM ofp_match (padded to 8 bytes) of (field, value) pairs, in OXM type order."""
    fields = []
    for k, v in items:
        if k not in MATCH_FIELDS:
            raise ValueError(f"match field {k} is not one the CMD encodes")
        fields.append((_ORDER[k], oxm(k, v, k in _PREFIXED)))
    fields.sort(key=lambda kv: kv[0])
    body = b"".join(b for _, b in fields)
    return _pad8(struct.pack("!HH", 1, 4 + len(body)) + body)


def _action(kind: str, arg) -> bytes:
    if kind == "output":
        return _OUTPUT.pack(OFPAT_OUTPUT, 16, OFPP_CONTROLLER if arg == "CONTROLLER" else int(arg), OFPCML_NO_BUFFER)
    if kind.startswith("set_field:") and kind[10:] in SET_FIELDS:
        tlv = oxm(kind[10:], arg)
        n = -(4 + len(tlv)) % 8
        return struct.pack("!HH", OFPAT_SET_FIELD, 4 + len(tlv) + n) + tlv + bytes(n)
    raise ValueError(f"action {kind} is not one the CMD encodes")


def flow_add(xid: int, table_id: int, goto_id, flow) -> bytes:
    """OFPFC_ADD of a rendered ``pipeline.Flow`` in table ``table_id``; ``goto_id`` the id of its
    goto_table (None without). Apply-actions first, then goto, as Ryu's OFPFlowMod takes them."""
    inst = b""
    if flow.actions:
        acts = b"".join([_action(k, a) for k, a in flow.actions])
        inst = _APPLY.pack(OFPIT_APPLY_ACTIONS, 8 + len(acts)) + acts
    if goto_id is not None:
        inst += _GOTO.pack(OFPIT_GOTO_TABLE, 8, goto_id)
    m = match(flow.match)
    return _FLOW_MOD.pack(OFP_VERSION, OFPT_FLOW_MOD, 48 + len(m) + len(inst), xid, flow.cookie, 0, table_id,
                          OFPFC_ADD, 0, 0, flow.priority, OFP_NO_BUFFER, 0, 0, 0) + m + inst


def delete_cookie(xid: int, cookie: int) -> bytes:
    """OFPFC_DELETE in every table of the entries whose cookie is ``cookie`` (mask all ones)."""
    return _FLOW_MOD.pack(OFP_VERSION, OFPT_FLOW_MOD, 56, xid, cookie, ALL_COOKIES, OFPTT_ALL, OFPFC_DELETE, 0, 0,
                          OFP_DEFAULT_PRIORITY, OFP_NO_BUFFER, OFPP_ANY, OFPG_ANY, 0) + _EMPTY_MATCH


def delete_strict(xid: int, entry) -> bytes:
    """OFPFC_DELETE_STRICT of one ``pipeline.InstalledFlow`` (its table, priority, cookie and match)."""
    m = match(entry.match)
    return _FLOW_MOD.pack(OFP_VERSION, OFPT_FLOW_MOD, 48 + len(m), xid, entry.cookie, ALL_COOKIES, entry.table_id,
                          OFPFC_DELETE_STRICT, 0, 0, entry.priority, OFP_NO_BUFFER, OFPP_ANY, OFPG_ANY, 0) + m


def barrier(xid: int) -> bytes:
    return _HEADER.pack(OFP_VERSION, OFPT_BARRIER_REQUEST, 8, xid)


def flow_stats_request(xid: int, table_id: int = OFPTT_ALL) -> bytes:
    """OFPMP_FLOW request for every entry of ``table_id`` (all tables by default): any out port /
    group / cookie, empty match."""
    return _STATS.pack(OFP_VERSION, OFPT_MULTIPART_REQUEST, 56, xid, OFPMP_FLOW, 0, table_id, OFPP_ANY, OFPG_ANY,
                       0, 0) + _EMPTY_MATCH
