"""IPv6 addresses, prefixes and MAC addresses as small immutable values, and their text forms.

Node addresses (MAARs, link-local addresses) are canonical text (``socket.inet_ntop`` form):
readable in logs, REST and tests; they are few, so decoding goes through a bounded cache. Prefixes
are many (one per MN), so a ``Prefix`` keeps the packed 16 bytes and makes text only when shown;
both are far cheaper than ``ipaddress`` objects on the decode path.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from functools import lru_cache

_pton = socket.inet_pton
_ntop = socket.inet_ntop
_AF6 = socket.AF_INET6


def pack6(address: str) -> bytes:
    """16 bytes of an IPv6 address given as text (raises ValueError if it is not one)."""
    try:
        return _pton(_AF6, address)
    except (OSError, TypeError) as exc:
        raise ValueError(f"not an IPv6 address: {address!r}") from exc


@lru_cache(maxsize=4096)
def unpack6(data: bytes) -> str:
    return _ntop(_AF6, data)


def canonical6(address: str) -> str:
    return _ntop(_AF6, pack6(address))


def peer_address(host: str) -> str:
    """Canonical text of a datagram's source as a socket gives it (scope dropped; IPv4 on a
    dual-stack socket shows as ::ffff:a.b.c.d)."""
    return canonical6(host.split("%", 1)[0])


def mac_text(mac: bytes) -> str:
    """``02:00:00:00:00:01``: the one text form of a link-layer address everywhere (REST, config, OpenFlow)."""
    return mac.hex(":")


def parse_mac(text: str) -> bytes:
    """Six colon-separated hex bytes (raises ValueError otherwise)."""
    parts = text.strip().split(":")
    if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
        raise ValueError(f"not a MAC address like 02:00:00:00:00:01: {text!r}")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError(f"not a MAC address like 02:00:00:00:00:01: {text!r}") from None


@dataclass(frozen=True, slots=True)
class Prefix:
    """An IPv6 prefix: the 16 packed bytes of its address field and its length."""

    packed: bytes
    length: int

    @classmethod
    def parse(cls, text: str) -> Prefix:
        """Parse ``"2001:db8:1::/64"``; host bits must be zero."""
        try:
            net = ipaddress.IPv6Network(text, strict=True)
        except ValueError as exc:
            raise ValueError(f"not an IPv6 prefix: {text!r} ({exc})") from exc
        return cls(net.network_address.packed, net.prefixlen)

    @property
    def address(self) -> str:
        return _ntop(_AF6, self.packed)

    @property
    def network(self) -> ipaddress.IPv6Network:
        return ipaddress.IPv6Network((self.packed, self.length))

    def __str__(self) -> str:
        return f"{self.address}/{self.length}"

    def __repr__(self) -> str:
        return f"Prefix({str(self)!r})"
