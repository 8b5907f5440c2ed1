"""Builders for the PBUs and PBAs the cores send; one place for which options each carries."""
from __future__ import annotations

from typing import Iterable, Optional

from ..wire import (
    AccessTechnologyTypeOption, BindingAck, BindingUpdate, DlifLinkLayerAddress, DlifLinkLocalAddress,
    HandoffIndicatorOption, HomeNetworkPrefix, MNLinkLayerIdentifier, MobileNodeIdentifier, Prefix,
    PreviousMaar, ServingMaar, Timestamp,
)
from ..wire.constants import HandoffIndicator
from .config import ALL_ZERO, MaarInfo


def pbu(seq: int, now: float, mn_id: str, prefix: Prefix, lifetime: int, handoff: int, att: int,
        mac: Optional[bytes] = None, serving: Optional[str] = None) -> BindingUpdate:
    opts = [MobileNodeIdentifier.nai(mn_id), HomeNetworkPrefix(prefix), HandoffIndicatorOption(handoff),
            AccessTechnologyTypeOption(att)]
    if mac:
        opts.append(MNLinkLayerIdentifier(mac))
    opts.append(Timestamp.from_seconds(now))
    if serving is not None:
        opts.append(ServingMaar(serving))
    return BindingUpdate(seq, lifetime, tuple(opts))


def dlif_options(maar: MaarInfo) -> tuple:
    return (DlifLinkLocalAddress(maar.link_local), DlifLinkLayerAddress(maar.mac))


def pba_for(req: BindingUpdate, status: int, lifetime: int, extra: Iterable = ()) -> BindingAck:
    """A PBA answering ``req``: echoes MN-ID, HNP, HI, ATT, MN-LL-ID, timestamp and Serving MAAR, at
    most the first of each type, so that an answer's size is bounded whatever the request holds
    (``config.MAX_PMAARS_LIMIT`` has the arithmetic)."""
    opts, seen = [], set()
    for o in req.options:
        kind = type(o)
        if kind in _ECHOED and kind not in seen:
            seen.add(kind)
            opts.append(o)
    opts.extend(extra)
    return BindingAck(status, req.sequence, lifetime, tuple(opts))


def echo_matches(req: Optional[BindingUpdate], ans: BindingAck) -> bool:
    """Whether ``ans`` echoes ``req``'s MN-ID, HNP, HI, ATT, MN-LL-ID, Timestamp and Serving MAAR
    (RFC 5213 §6.9.1, FACTS.md: a PBA whose echo does not match is ignored; the Serving MAAR comes
    back in a P-MAAR's PBA, RFC 8885 §3). An option absent from both matches; the
    HNP compared is the first (``pba_for`` echoes the first of each type, and our PBUs carry one);
    a PBU asking for a prefix (the all-zero HNP, legacy mode, RFC 5213 §5.3.1) takes the one assigned.
    Without IPsec this is what keeps a PBA about one MN or prefix from being taken for another's.
    ``req`` is the copy sent last: an answer to an earlier transmission of the same sequence number
    (its timestamp is older) may carry older state (a handover since superseded) and is ignored;
    the answer to the latest copy follows."""
    return (req is not None and ans.mn_id == req.mn_id
            and (ans.hnps[:1] == req.hnps[:1] or req.hnps[:1] == (ALL_ZERO,) and len(ans.hnps) == 1)
            and ans.handoff == req.handoff and ans.att == req.att and ans.mn_ll_id == req.mn_ll_id
            and ans.timestamp == req.timestamp and ans.serving_maar == req.serving_maar)


def previous_maar_options(pmaars: Iterable[tuple[str, Prefix]], infos: dict[str, MaarInfo]) -> list:
    """One Previous MAAR option per P-MAAR, each followed by that MAAR's DLIF options (RFC 8885 §3.7)."""
    opts: list = []
    for addr, prefix in pmaars:
        opts.append(PreviousMaar(addr, prefix))
        info = infos.get(addr)
        if info is not None:
            opts.extend(dlif_options(info))
    return opts


def dlif_of(msg, anchor: str) -> Optional[tuple[bytes, str]]:
    """The DLIF (mac, link-local) that follows ``anchor``'s Previous MAAR option, or the message's own."""
    found, ll, mac = anchor is None, None, None
    for o in msg.options:
        kind = type(o)
        if kind is PreviousMaar:
            if found and (ll or mac):
                break
            found = o.maar == anchor
        elif found and kind is DlifLinkLocalAddress:
            ll = o.address
        elif found and kind is DlifLinkLayerAddress:
            mac = o.link_layer
    return (mac, ll) if mac and ll else None


_ECHOED = {MobileNodeIdentifier, HomeNetworkPrefix, HandoffIndicatorOption, AccessTechnologyTypeOption,
           MNLinkLayerIdentifier, Timestamp, ServingMaar}
HI_NEW_INTERFACE = int(HandoffIndicator.NEW_INTERFACE)
HI_REREGISTRATION = int(HandoffIndicator.NO_HANDOFF)
HI_BETWEEN_MAARS = int(HandoffIndicator.BETWEEN_MAGS)
HI_UNKNOWN = int(HandoffIndicator.UNKNOWN)
