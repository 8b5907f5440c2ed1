"""Internet checksum of a Mobility Header over the IPv6 pseudo-header (RFC 6275 §6.1.1, RFC 8200 §8.1)."""
from __future__ import annotations

from .addr import pack6
from .constants import IPPROTO_MH


def internet_checksum(data: bytes) -> int:
    """One's complement of the one's complement sum of the 16-bit big-endian words of ``data``.

    As 2**16 = 1 (mod 0xFFFF), that sum is the whole buffer read as one integer, modulo 0xFFFF,
    except that a non-zero sum is never 0 but 0xFFFF: one C-level big-integer operation instead of a
    Python loop over words.
    """
    if len(data) & 1:
        data += b"\x00"
    value = int.from_bytes(data, "big")
    total = value % 0xFFFF
    if total == 0 and value:
        total = 0xFFFF
    return ~total & 0xFFFF


def mh_checksum(src: str, dst: str, mh: bytes) -> int:
    """Checksum of ``mh`` (with its checksum field zero) sent from ``src`` to ``dst``."""
    pseudo = pack6(src) + pack6(dst) + len(mh).to_bytes(4, "big") + bytes((0, 0, 0, IPPROTO_MH))
    return internet_checksum(pseudo + mh)
