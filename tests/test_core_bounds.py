"""Issue 8 items 1 and 8: every answer and every piece of core state has a bound, tested at the bound."""
import itertools

import pytest

from ryu_dmm.mobility import messages as M
from ryu_dmm.mobility.cmd import CmdCore
from ryu_dmm.mobility.config import MAX_PMAARS_LIMIT, Timers
from ryu_dmm.mobility.events import Received, Send
from ryu_dmm.wire import (
    AccessTechnologyTypeOption, BindingAck, BindingUpdate, HandoffIndicatorOption, HomeNetworkPrefix,
    MNLinkLayerIdentifier, MobileNodeIdentifier, Prefix, ServingMaar, Status, Timestamp, decode, encode,
)
from tests.sim import START, domain

A1 = "2001:db8:ff::1"
P1 = Prefix.parse("2001:db8:1::/64")
MH_LIMIT = 2048


def _fill(base: tuple, extra) -> BindingUpdate:
    """A PBU with ``base`` options then as many copies of ``extra`` as fit in one Mobility Header."""
    opts = list(base)
    while True:
        try:
            encode(BindingUpdate(1, 40, tuple(opts + [extra])))
        except ValueError:
            return decode(encode(BindingUpdate(1, 40, tuple(opts))))
        opts.append(extra)


@pytest.mark.parametrize("extra", [Timestamp.from_seconds(START), MNLinkLayerIdentifier(b"\x02"),
                                   ServingMaar(A1), MobileNodeIdentifier(b"mn1")])
def test_pba_echoing_a_stuffed_pbu_fits(extra):
    base = M.pbu(1, START, "mn1", P1, 40, 1, 3).options
    req = _fill(base, extra)
    assert len(req.find_all(type(extra))) >= 50  # the issue: ~128 timestamps, ~255 MN-LL-IDs
    (send,) = [e for e in CmdCore(domain(2)).handle(Received(A1, req), START) if type(e) is Send]
    raw = encode(send.msg)  # raised ValueError before: the echo exceeded 2048 bytes
    assert len(raw) <= MH_LIMIT
    answer = decode(raw)
    assert all(len(answer.find_all(kind)) <= 1 for kind in (type(o) for o in answer.options))
    assert answer.find(type(extra)) == req.find(type(extra))  # the first instance is the one echoed


def _largest_request(order=None) -> BindingUpdate:
    opts = [MobileNodeIdentifier(b"m" * 254), HomeNetworkPrefix(P1), HandoffIndicatorOption(3),
            AccessTechnologyTypeOption(3), MNLinkLayerIdentifier(b"\x02" * 253), Timestamp.from_seconds(START),
            ServingMaar(A1)]
    return BindingUpdate(1, 40, tuple(opts if order is None else (opts[i] for i in order)))


def _largest_pba(n: int, order=None) -> BindingAck:
    d = domain(n + 1)
    pmaars = [(m.address, Prefix.parse(f"2001:db8:{i + 2}::/64")) for i, m in enumerate(d.maars[1:])]
    return M.pba_for(_largest_request(order), Status.ACCEPTED, 40,
                     M.previous_maar_options(pmaars, d.by_address()))


def test_largest_pba_hand_worked_size():
    # Worked by hand from the option layouts (FACTS.md), options in the order above: 12 header,
    # MN-ID 257 -> 269, pad 7 + HNP 20 -> 296, HI 4, ATT 4 -> 304, pad 2 + MN-LL-ID 257 -> 563,
    # pad 7 + Timestamp 10 -> 580, pad 2 + Serving MAAR 18 -> 600. First P-MAAR: pad 4 + Previous
    # MAAR 36 -> 640, pad 6 + DLIF link-local 18 -> 664, DLIF link-layer 10 -> 674; each further one
    # pad 2 + 36, pad 6 + 18, 10 = 72. n P-MAARs: 602 + 72 n, padded to 8: 608 + 72 n.
    for n in (1, 2, Timers().max_pmaars, MAX_PMAARS_LIMIT):
        assert len(encode(_largest_pba(n))) == 608 + 72 * n
    assert Timers().max_pmaars == 8 and 608 + 72 * 8 == 1184


def test_largest_pba_fits_in_any_option_order_at_the_limit():
    for order in itertools.permutations(range(7)):
        assert len(encode(_largest_pba(MAX_PMAARS_LIMIT, order))) <= MH_LIMIT


def test_max_pmaars_bounds():
    assert Timers(max_pmaars=MAX_PMAARS_LIMIT).max_pmaars == 18
    for bad in (0, MAX_PMAARS_LIMIT + 1):
        with pytest.raises(ValueError, match="max_pmaars"):
            Timers(max_pmaars=bad)
