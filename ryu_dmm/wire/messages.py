"""Proxy Binding Update and Acknowledgement (RFC 5213) and Heartbeat (RFC 5847) as IPv6 Mobility
Header messages.

``encode`` produces the Mobility Header (checksum 0, as sent over UDP 5436, or filled in by the
kernel with ``IPV6_CHECKSUM``); ``encode_mh(msg, src, dst)`` fills the checksum itself. ``decode``
accepts either and raises only ``DecodeError``.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Optional, TypeVar, Union

from .addr import Prefix
from .checksum import internet_checksum, mh_checksum
from .constants import (
    BA_D, BA_K, BA_P, BA_R, BU_A, BU_D, BU_H, BU_K, BU_L, BU_M, BU_P, BU_R, HB_R, HB_U, IPPROTO_NONE,
    LIFETIME_UNIT, MAX_LIFETIME, MH_BINDING_ACK, MH_BINDING_UPDATE, MH_HEARTBEAT, Status,
)
from .errors import DecodeError
from .addr import pack6
from .options import (
    DECODERS, AccessTechnologyTypeOption, HandoffIndicatorOption, HomeNetworkPrefix,
    MNLinkLayerIdentifier, MobileNodeIdentifier, Option, PreviousMaar, RestartCounter, ServingMaar,
    Timestamp, UnknownOption,
)

_HDR = struct.Struct("!BBBBH")
_BU = struct.Struct("!HHH")
_BA = struct.Struct("!BBHH")
_HB = struct.Struct("!HI")
_OPTIONS_START = 12  # BU, BA and Heartbeat all carry 6 bytes of message data after the 6-byte MH header

O = TypeVar("O")


class _Options:
    """Option look-ups shared by every message."""

    __slots__ = ()
    options: tuple[Option, ...]

    def find(self, cls: type[O]) -> Optional[O]:
        for opt in self.options:
            if type(opt) is cls:
                return opt
        return None

    def find_all(self, cls: type[O]) -> tuple[O, ...]:
        return tuple(opt for opt in self.options if type(opt) is cls)

    @property
    def mn_id(self) -> Optional[str]:
        opt = self.find(MobileNodeIdentifier)
        return opt.text if opt else None

    @property
    def hnps(self) -> tuple[Prefix, ...]:
        return tuple(opt.prefix for opt in self.options if type(opt) is HomeNetworkPrefix)

    @property
    def handoff(self) -> Optional[int]:
        opt = self.find(HandoffIndicatorOption)
        return opt.value if opt else None

    @property
    def att(self) -> Optional[int]:
        opt = self.find(AccessTechnologyTypeOption)
        return opt.value if opt else None

    @property
    def mn_ll_id(self) -> Optional[bytes]:
        opt = self.find(MNLinkLayerIdentifier)
        return opt.link_layer if opt else None

    @property
    def timestamp(self) -> Optional[int]:
        opt = self.find(Timestamp)
        return opt.ticks if opt else None

    @property
    def serving_maar(self) -> Optional[str]:
        opt = self.find(ServingMaar)
        return opt.address if opt else None

    @property
    def previous_maars(self) -> tuple[PreviousMaar, ...]:
        return self.find_all(PreviousMaar)

    @property
    def restart_counter(self) -> Optional[int]:
        opt = self.find(RestartCounter)
        return opt.counter if opt else None

    @property
    def unknown_options(self) -> tuple[UnknownOption, ...]:
        return self.find_all(UnknownOption)


def _check_lifetime(lifetime: int) -> None:
    if not 0 <= lifetime <= MAX_LIFETIME or lifetime % LIFETIME_UNIT:
        raise ValueError(f"lifetime {lifetime} s is not a multiple of 4 in 0..{MAX_LIFETIME}")


@dataclass(frozen=True, slots=True)
class BindingUpdate(_Options):
    """A (Proxy) Binding Update; ``lifetime`` in seconds (a multiple of 4 on the wire)."""

    sequence: int
    lifetime: int
    options: tuple[Option, ...] = ()
    flags: int = BU_A | BU_P | BU_D

    a = property(lambda self: bool(self.flags & BU_A))
    h = property(lambda self: bool(self.flags & BU_H))
    l = property(lambda self: bool(self.flags & BU_L))  # noqa: E741 - the RFC's flag name
    k = property(lambda self: bool(self.flags & BU_K))
    m = property(lambda self: bool(self.flags & BU_M))
    r = property(lambda self: bool(self.flags & BU_R))
    p = property(lambda self: bool(self.flags & BU_P))
    d = property(lambda self: bool(self.flags & BU_D))

    @property
    def is_proxy(self) -> bool:
        return bool(self.flags & BU_P)


@dataclass(frozen=True, slots=True)
class BindingAck(_Options):
    """A (Proxy) Binding Acknowledgement; ``lifetime`` in seconds."""

    status: int
    sequence: int
    lifetime: int
    options: tuple[Option, ...] = ()
    flags: int = BA_P | BA_D

    k = property(lambda self: bool(self.flags & BA_K))
    r = property(lambda self: bool(self.flags & BA_R))
    p = property(lambda self: bool(self.flags & BA_P))
    d = property(lambda self: bool(self.flags & BA_D))

    @property
    def accepted(self) -> bool:
        return self.status < 128


@dataclass(frozen=True, slots=True)
class Heartbeat(_Options):
    """RFC 5847 Heartbeat: a request (``response`` False) is answered with ``response`` True and the
    same 32-bit ``sequence``; the sender's Restart Counter option rides along."""

    sequence: int
    unsolicited: bool = False
    response: bool = False
    options: tuple[Option, ...] = ()


Message = Union[BindingUpdate, BindingAck, Heartbeat]


def _pad(n: int) -> bytes:
    if n == 0:
        return b""
    if n == 1:
        return b"\x00"
    return bytes((1, n - 2)) + bytes(n - 2)


def _encode_options(options: tuple[Option, ...]) -> list[bytes]:
    parts: list[bytes] = []
    pos = _OPTIONS_START
    for opt in options:
        x, y = opt.ALIGN
        if x > 1:
            gap = (y - pos) % x
            if gap:
                parts.append(_pad(gap))
                pos += gap
        body = opt.body()
        if len(body) > 255:
            raise ValueError(f"{type(opt).__name__} body of {len(body)} bytes exceeds 255")
        parts.append(bytes((opt.TYPE, len(body))))
        parts.append(body)
        pos += 2 + len(body)
    parts.append(_pad(-pos % 8))
    return parts


def encode(msg: Message) -> bytes:
    """The Mobility Header of ``msg`` with checksum 0 (the UDP 5436 framing)."""
    if type(msg) is Heartbeat:
        if not 0 <= msg.sequence <= 0xFFFF_FFFF:
            raise ValueError(f"heartbeat sequence number {msg.sequence} out of 0..2**32-1")
        mh_type = MH_HEARTBEAT
        data = _HB.pack((HB_U if msg.unsolicited else 0) | (HB_R if msg.response else 0), msg.sequence)
    else:
        if not 0 <= msg.sequence <= 0xFFFF:
            raise ValueError(f"sequence number {msg.sequence} out of 0..65535")
        _check_lifetime(msg.lifetime)
        if type(msg) is BindingUpdate:
            mh_type = MH_BINDING_UPDATE
            data = _BU.pack(msg.sequence, msg.flags & 0xFFFF, msg.lifetime // LIFETIME_UNIT)
        else:
            mh_type = MH_BINDING_ACK
            data = _BA.pack(msg.status, msg.flags & 0xFF, msg.sequence, msg.lifetime // LIFETIME_UNIT)
    tail = b"".join(_encode_options(msg.options))
    total = 6 + len(data) + len(tail)
    if total > 2048:
        raise ValueError(f"message of {total} bytes exceeds the 2048-byte Mobility Header limit")
    return _HDR.pack(IPPROTO_NONE, total // 8 - 1, mh_type, 0, 0) + data + tail


def encode_mh(msg: Message, src: str, dst: str) -> bytes:
    """The Mobility Header of ``msg`` with its checksum over the IPv6 pseudo-header filled in."""
    mh = encode(msg)
    csum = mh_checksum(src, dst, mh)
    return mh[:4] + csum.to_bytes(2, "big") + mh[6:]


def _decode_options(data: bytes, pos: int, end: int) -> tuple[Option, ...]:
    options: list[Option] = []
    decoders = DECODERS
    while pos < end:
        otype = data[pos]
        if otype == 0:  # Pad1
            pos += 1
            continue
        if pos + 2 > end:
            raise DecodeError("truncated", f"option type {otype} has no length byte", pos)
        olen = data[pos + 1]
        nxt = pos + 2 + olen
        if nxt > end:
            raise DecodeError("option-overrun", f"option type {otype} length {olen} overruns the message", pos)
        if otype != 1:  # PadN is skipped
            known = decoders.get(otype)
            if known is None:
                options.append(UnknownOption(otype, data[pos + 2:nxt]))
            else:
                dec, exact, least = known
                if olen != exact and (exact is not None or olen < least):
                    raise DecodeError("bad-option-length", f"option type {otype} length {olen}, must be "
                                      f"{exact if exact is not None else f'at least {least}'}", pos)
                options.append(dec(data, pos + 2, nxt))
        pos = nxt
    return tuple(options)


def decode(data: bytes, src: Optional[str] = None, dst: Optional[str] = None) -> Message:
    """Decode one Mobility Header holding a BU, a BA or a Heartbeat.

    With ``src`` and ``dst`` (the IPv6 addresses it travelled between) the checksum is verified;
    without them (UDP framing) it is not, as RFC 5844 leaves it to the UDP checksum.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("not-bytes", f"expected bytes, got {type(data).__name__}", 0)
    data = bytes(data)
    size = len(data)
    if size < 8:
        raise DecodeError("truncated", f"{size} bytes is shorter than a Mobility Header", 0)
    proto, hlen, mh_type, _res, _csum = _HDR.unpack_from(data)
    if (hlen + 1) * 8 != size:
        raise DecodeError("bad-mh-length", f"header length field says {(hlen + 1) * 8} bytes, got {size}", 1)
    if proto != IPPROTO_NONE:
        raise DecodeError("bad-payload-proto", f"payload proto {proto}, must be 59", 0)
    if src is not None and dst is not None:
        try:
            pseudo = pack6(src) + pack6(dst)
        except ValueError as exc:
            raise DecodeError("bad-address", str(exc), 0) from None
        pseudo += size.to_bytes(4, "big") + b"\x00\x00\x00\x87"
        if internet_checksum(pseudo + data):
            raise DecodeError("bad-checksum", "Mobility Header checksum does not verify", 4)
    if size < _OPTIONS_START:
        raise DecodeError("truncated", "message data shorter than 6 bytes", 6)
    if mh_type == MH_BINDING_UPDATE:
        seq, flags, life = _BU.unpack_from(data, 6)
        return BindingUpdate(seq, life * LIFETIME_UNIT, _decode_options(data, _OPTIONS_START, size), flags)
    if mh_type == MH_BINDING_ACK:
        status, flags, seq, life = _BA.unpack_from(data, 6)
        return BindingAck(status, seq, life * LIFETIME_UNIT, _decode_options(data, _OPTIONS_START, size), flags)
    if mh_type == MH_HEARTBEAT:  # reserved bits other than U and R are ignored (RFC 5847 §3.1)
        flags, seq = _HB.unpack_from(data, 6)
        return Heartbeat(seq, bool(flags & HB_U), bool(flags & HB_R), _decode_options(data, _OPTIONS_START, size))
    raise DecodeError("unsupported-mh-type", f"MH type {mh_type} is not BU (5), BA (6) or Heartbeat (13)", 2)


def missing_mandatory(pbu: BindingUpdate) -> Optional[Status]:
    """The RFC 5213 §5.3.1 status for a PBU that lacks a mandatory option, else None."""
    kinds = {type(opt) for opt in pbu.options}
    if MobileNodeIdentifier not in kinds:
        return Status.MISSING_MN_IDENTIFIER_OPTION
    if HomeNetworkPrefix not in kinds:
        return Status.MISSING_HOME_NETWORK_PREFIX_OPTION
    if HandoffIndicatorOption not in kinds:
        return Status.MISSING_HANDOFF_INDICATOR_OPTION
    if AccessTechnologyTypeOption not in kinds:
        return Status.MISSING_ACCESS_TECH_TYPE_OPTION
    return None
