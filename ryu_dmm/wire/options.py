"""Mobility options of RFC 5213, RFC 5847 and RFC 8885: values, body encoders and body decoders.

Each option class knows its type, its alignment rule ``xn+y`` (``(1, 0)`` = none), its body length
(``LENGTH``, None when variable) and how to turn its body into bytes and back. Padding, the option
walk and the length checks live in ``messages``: decoders get a body whose length is already right.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional, Union

from .addr import Prefix, mac_text, pack6, unpack6
from .constants import MNID_SUBTYPE_NAI, OptionType
from .errors import DecodeError


def _bad_prefix_length(name: str, plen: int, offset: int) -> DecodeError:
    return DecodeError("bad-prefix-length", f"{name} prefix length {plen} > 128", offset)


@dataclass(frozen=True, slots=True)
class MobileNodeIdentifier:
    """MN Identifier option (RFC 4283); subtype 1 carries an NAI such as ``mn1@example.net``."""

    TYPE: ClassVar[int] = OptionType.MN_IDENTIFIER
    ALIGN: ClassVar[tuple[int, int]] = (1, 0)
    identifier: bytes
    subtype: int = MNID_SUBTYPE_NAI

    @classmethod
    def nai(cls, name: str) -> MobileNodeIdentifier:
        """The option for ``name``; the inverse of ``text`` (bytes that were not UTF-8 come back exactly)."""
        return cls(name.encode("utf-8", "surrogateescape"))

    @property
    def text(self) -> str:
        """The identifier as a str that round-trips to the exact bytes (PEP 383 ``surrogateescape``):
        distinct identifiers give distinct strs, so this is the MN's identity. Never log it raw: use
        ``show_mn_id``."""
        return self.identifier.decode("utf-8", "surrogateescape")

    def body(self) -> bytes:
        if not self.identifier or len(self.identifier) > 254:
            raise ValueError("MN identifier must be 1..254 bytes")
        return bytes((self.subtype,)) + self.identifier

    LENGTH: ClassVar[Optional[int]] = None
    MIN_LENGTH: ClassVar[int] = 2

    @classmethod
    def decode(cls, data: bytes, start: int, end: int) -> MobileNodeIdentifier:
        return cls(data[start + 1:end], data[start])


def show_mn_id(mn_id: Union[str, bytes]) -> str:
    """An MN-ID for logs and REST, unambiguous and on one line: printable characters other than the
    backslash as they are; the backslash, control and other non-printable characters (as their UTF-8
    bytes) and bytes that were not UTF-8 as ``\\xNN``. Distinct identifiers show distinctly (the shown
    text maps back to the exact bytes), and no identifier can show a newline or forge a log line."""
    if isinstance(mn_id, (bytes, bytearray)):
        mn_id = bytes(mn_id).decode("utf-8", "surrogateescape")
    if mn_id.isprintable() and "\\" not in mn_id:
        return mn_id
    out = []
    for c in mn_id:
        code = ord(c)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif c == "\\" or not c.isprintable():
            out.extend(f"\\x{byte:02x}" for byte in c.encode("utf-8", "surrogatepass"))
        else:
            out.append(c)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class _PrefixOption:
    """Layout shared by HNP (22), Anchored Prefix (65) and Local Prefix (66)."""

    ALIGN: ClassVar[tuple[int, int]] = (8, 4)
    prefix: Prefix

    def body(self) -> bytes:
        return b"\x00" + bytes((self.prefix.length,)) + self.prefix.packed

    LENGTH: ClassVar[Optional[int]] = 18

    @classmethod
    def decode(cls, data: bytes, start: int, end: int) -> _PrefixOption:
        plen = data[start + 1]
        if plen > 128:
            raise _bad_prefix_length(cls.__name__, plen, start)
        return cls(Prefix(data[start + 2:end], plen))


@dataclass(frozen=True, slots=True)
class HomeNetworkPrefix(_PrefixOption):
    TYPE: ClassVar[int] = OptionType.HOME_NETWORK_PREFIX


@dataclass(frozen=True, slots=True)
class AnchoredPrefix(_PrefixOption):
    TYPE: ClassVar[int] = OptionType.ANCHORED_PREFIX


@dataclass(frozen=True, slots=True)
class LocalPrefix(_PrefixOption):
    TYPE: ClassVar[int] = OptionType.LOCAL_PREFIX


@dataclass(frozen=True, slots=True)
class _ByteCodeOption:
    """Layout shared by Handoff Indicator (23) and Access Technology Type (24): reserved, value."""

    ALIGN: ClassVar[tuple[int, int]] = (1, 0)
    value: int

    def body(self) -> bytes:
        return bytes((0, self.value))

    LENGTH: ClassVar[Optional[int]] = 2

    @classmethod
    def decode(cls, data: bytes, start: int, end: int) -> _ByteCodeOption:
        return cls(data[start + 1])


@dataclass(frozen=True, slots=True)
class HandoffIndicatorOption(_ByteCodeOption):
    TYPE: ClassVar[int] = OptionType.HANDOFF_INDICATOR


@dataclass(frozen=True, slots=True)
class AccessTechnologyTypeOption(_ByteCodeOption):
    TYPE: ClassVar[int] = OptionType.ACCESS_TECHNOLOGY_TYPE


@dataclass(frozen=True, slots=True)
class _LinkLayerOption:
    """Layout shared by MN Link-layer Identifier (25) and DLIF Link-Layer Address (70)."""

    link_layer: bytes

    def body(self) -> bytes:
        return b"\x00\x00" + self.link_layer

    LENGTH: ClassVar[Optional[int]] = None
    MIN_LENGTH: ClassVar[int] = 3

    @classmethod
    def decode(cls, data: bytes, start: int, end: int) -> _LinkLayerOption:
        return cls(data[start + 2:end])

    @property
    def mac(self) -> str:
        return mac_text(self.link_layer)


@dataclass(frozen=True, slots=True)
class MNLinkLayerIdentifier(_LinkLayerOption):
    TYPE: ClassVar[int] = OptionType.MN_LINK_LAYER_ID
    ALIGN: ClassVar[tuple[int, int]] = (8, 2)


@dataclass(frozen=True, slots=True)
class DlifLinkLayerAddress(_LinkLayerOption):
    TYPE: ClassVar[int] = OptionType.DLIF_LINK_LAYER_ADDRESS
    ALIGN: ClassVar[tuple[int, int]] = (1, 0)


@dataclass(frozen=True, slots=True)
class _AddressOption:
    """Layout shared by Link-local Address (26), Serving MAAR (68) and DLIF Link-Local Address (69)."""

    ALIGN: ClassVar[tuple[int, int]] = (8, 6)
    address: str

    def body(self) -> bytes:
        return pack6(self.address)

    LENGTH: ClassVar[Optional[int]] = 16

    @classmethod
    def decode(cls, data: bytes, start: int, end: int) -> _AddressOption:
        return cls(unpack6(data[start:end]))


@dataclass(frozen=True, slots=True)
class LinkLocalAddress(_AddressOption):
    TYPE: ClassVar[int] = OptionType.LINK_LOCAL_ADDRESS


@dataclass(frozen=True, slots=True)
class ServingMaar(_AddressOption):
    TYPE: ClassVar[int] = OptionType.SERVING_MAAR


@dataclass(frozen=True, slots=True)
class DlifLinkLocalAddress(_AddressOption):
    TYPE: ClassVar[int] = OptionType.DLIF_LINK_LOCAL_ADDRESS


@dataclass(frozen=True, slots=True)
class Timestamp:
    """RFC 5213 §8.8 timestamp: 48 bits of seconds since 1970 and 16 bits of 1/65536 s (not NTP)."""

    TYPE: ClassVar[int] = OptionType.TIMESTAMP
    ALIGN: ClassVar[tuple[int, int]] = (8, 2)
    ticks: int  # seconds * 65536, as one 64-bit integer

    @classmethod
    def from_seconds(cls, seconds: float) -> Timestamp:
        return cls(int(seconds * 65536) & 0xFFFF_FFFF_FFFF_FFFF)

    @property
    def seconds(self) -> float:
        return self.ticks / 65536

    def body(self) -> bytes:
        return self.ticks.to_bytes(8, "big")

    LENGTH: ClassVar[Optional[int]] = 8

    @classmethod
    def decode(cls, data: bytes, start: int, end: int) -> Timestamp:
        return cls(int.from_bytes(data[start:end], "big"))


@dataclass(frozen=True, slots=True)
class RestartCounter:
    """RFC 5847 §3.2 Restart Counter: a node's count of restarts that lost its bindings. Carried in
    Heartbeats: a peer that sees it change knows the node lost its state."""

    TYPE: ClassVar[int] = OptionType.RESTART_COUNTER
    ALIGN: ClassVar[tuple[int, int]] = (4, 2)
    counter: int

    def body(self) -> bytes:
        if not 0 <= self.counter <= 0xFFFF_FFFF:
            raise ValueError(f"restart counter {self.counter} out of 0..2**32-1")
        return self.counter.to_bytes(4, "big")

    LENGTH: ClassVar[Optional[int]] = 4

    @classmethod
    def decode(cls, data: bytes, start: int, end: int) -> RestartCounter:
        return cls(int.from_bytes(data[start:end], "big"))


@dataclass(frozen=True, slots=True)
class PreviousMaar:
    """RFC 8885 Previous MAAR option: a P-MAAR's address and the prefix it anchors for the MN."""

    TYPE: ClassVar[int] = OptionType.PREVIOUS_MAAR
    ALIGN: ClassVar[tuple[int, int]] = (8, 4)
    maar: str
    prefix: Prefix

    def body(self) -> bytes:
        return b"\x00" + bytes((self.prefix.length,)) + pack6(self.maar) + self.prefix.packed

    LENGTH: ClassVar[Optional[int]] = 34

    @classmethod
    def decode(cls, data: bytes, start: int, end: int) -> PreviousMaar:
        plen = data[start + 1]
        if plen > 128:
            raise _bad_prefix_length("PreviousMaar", plen, start)
        return cls(unpack6(data[start + 2:start + 18]), Prefix(data[start + 18:end], plen))


@dataclass(frozen=True, slots=True)
class UnknownOption:
    """An option this codec does not know: skipped by the logic (RFC 6275 §6.2.1) but kept visible."""

    type: int
    data: bytes
    ALIGN: ClassVar[tuple[int, int]] = (1, 0)

    @property
    def TYPE(self) -> int:  # noqa: N802 - same spelling as the known options' class attribute
        return self.type

    def body(self) -> bytes:
        return self.data


Option = Union[
    MobileNodeIdentifier, HomeNetworkPrefix, HandoffIndicatorOption, AccessTechnologyTypeOption,
    MNLinkLayerIdentifier, LinkLocalAddress, Timestamp, RestartCounter, AnchoredPrefix, LocalPrefix,
    PreviousMaar, ServingMaar, DlifLinkLocalAddress, DlifLinkLayerAddress, UnknownOption,
]

KNOWN = (
    MobileNodeIdentifier, HomeNetworkPrefix, HandoffIndicatorOption, AccessTechnologyTypeOption,
    MNLinkLayerIdentifier, LinkLocalAddress, Timestamp, RestartCounter, AnchoredPrefix, LocalPrefix,
    PreviousMaar, ServingMaar, DlifLinkLocalAddress, DlifLinkLayerAddress,
)
# type -> (decoder(data, body_start, body_end), exact body length or None, minimum body length)
DECODERS = {cls.TYPE: (cls.decode, cls.LENGTH, getattr(cls, "MIN_LENGTH", 0)) for cls in KNOWN}
