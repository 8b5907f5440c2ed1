"""What the CMD reads in a packet-in: the source MAC of an MN's Router Solicitation (which tells
the flow mirror the MN's access port). Ryu's packet library parses the frame."""
from __future__ import annotations

from typing import Union

from .runtime import ethernet, icmpv6, packet
from .wire import parse_mac

UNPARSED = object()  # a frame Ryu's packet library cannot parse (counted as packet_in.unparsed)


def rs_source(frame: bytes) -> Union[bytes, None, object]:
    """The source MAC of the Router Solicitation in ``frame``; None for any other frame;
    ``UNPARSED`` if the frame cannot be parsed."""
    try:
        pkt = packet.Packet(frame)
    except Exception:  # noqa: BLE001 - a frame Ryu cannot parse is just not an RS
        return UNPARSED
    rs = pkt.get_protocol(icmpv6.icmpv6)
    eth = pkt.get_protocols(ethernet.ethernet)
    if rs is not None and rs.type_ == icmpv6.ND_ROUTER_SOLICIT and eth:
        return parse_mac(eth[0].src)
    return None
