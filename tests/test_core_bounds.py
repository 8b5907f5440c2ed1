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


# ---- item 8: bounded state ---------------------------------------------------------------------
from ryu_dmm.mobility.events import Attach, Report  # noqa: E402
from ryu_dmm.mobility.maar import MaarCore  # noqa: E402
from ryu_dmm.mobility.retransmit import Retransmitter  # noqa: E402

A2 = "2001:db8:ff::2"
P2 = Prefix.parse("2001:db8:2::/64")


def test_outstanding_pbus_per_peer_are_bounded_oldest_evicted():
    retx = Retransmitter(Timers(max_outstanding=3))

    def build(seq, t):
        return M.pbu(seq, t, "mn", P1, 40, 1, 3)
    outs = []
    for i in range(3):
        effects, out, evicted = retx.send(A1, f"mn{i}", build, START)
        outs.append(out)
        assert evicted is None
    effects, fourth, evicted = retx.send(A1, "mn3", build, START)
    assert evicted is outs[0] and retx.count(A1) == 3 and (A1, outs[0].seq) not in retx.pending
    assert any(type(e).__name__ == "CancelTimer" and e.key == outs[0].key for e in effects)
    assert retx.send(A2, "mn0", build, START)[2] is None  # the bound is per peer
    # a full sequence space cannot happen: the bound is at most half of it
    with pytest.raises(ValueError, match="max_outstanding"):
        Timers(max_outstanding=0x8001)


def test_rate_limit_memory_is_bounded():
    retx = Retransmitter(Timers(max_outstanding=4))

    def build(seq, t):
        return M.pbu(seq, t, "mn", P1, 40, 1, 3)
    for i in range(20):  # 20 MNs in the same second
        out = retx.send(A1, f"mn{i}", build, START)[1]
        retx.acknowledge(A1, out.seq)
        assert len(retx._recent) <= 4 and len(retx._older) <= 4


def test_cmd_reports_an_evicted_pbu_as_failed():
    cmd = CmdCore(domain(3, timers=Timers(max_outstanding=2)))
    failed = []
    for i in range(3):  # three MNs move from maar1 (which never answers) to maar2
        mn = f"mn{i}"
        prefix1, prefix2 = (Prefix.parse(f"2001:db8:{m}:{i}::/64") for m in (1, 2))
        cmd.handle(Received(A1, M.pbu(1, START, mn, prefix1, 40, 1, 3)), START)
        effects = cmd.handle(Received(A2, M.pbu(1 + i, START + 0.01, mn, prefix2, 40, 3, 3)), START + 0.01)
        failed += [e for e in effects if type(e) is Report and e.kind == "failed"]
    assert cmd.retx.count(A1) == 2
    assert len(failed) == 1 and failed[0].mn_id == "mn0" and "no PBA from maar1" in failed[0].detail


def test_maar_sessions_bounded():
    maar = MaarCore(domain(2, timers=Timers(max_sessions=2)), "maar1")
    for i in range(2):
        assert maar.handle(Attach(f"mn{i}", bytes(6), 1), START)
    (report,) = maar.handle(Attach("mn2", bytes(6), 1), START)
    assert report.kind == "failed" and report.status == Status.INSUFFICIENT_RESOURCES
    assert len(maar.bindings) == 2 and maar.pool.in_use == 2
    adopt = M.pbu(1, START, "mn9", Prefix.parse("2001:db8:1:9::/64"), 40, 3, 3, serving=A2)
    (send,) = [e for e in maar.handle(Received("2001:db8:ff::100", adopt), START) if type(e) is Send]
    assert send.msg.status == Status.INSUFFICIENT_RESOURCES and "mn9" not in maar.bindings


def test_cmd_sessions_per_maar_bounded():
    cmd = CmdCore(domain(2, timers=Timers(max_sessions=2)))

    def register(src, mn, prefix, t, hi=1):
        effects = cmd.handle(Received(src, M.pbu(1, START + t, mn, Prefix.parse(prefix), 40, hi, 3)), START + t)
        return [e.msg.status for e in effects if type(e) is Send and type(e.msg).__name__ == "BindingAck"][0]
    assert register(A1, "mn0", "2001:db8:1::/64", 0) == 0
    assert register(A1, "mn1", "2001:db8:1:1::/64", 0) == 0
    assert register(A1, "mn2", "2001:db8:1:2::/64", 0) == Status.INSUFFICIENT_RESOURCES  # a third at maar1
    assert register(A2, "mn2", "2001:db8:2:2::/64", 0) == 0
    assert register(A2, "mn0", "2001:db8:2::/64", 0.01, 3) == 0  # mn0 moves to maar2: maar1 has room
    assert register(A2, "mn1", "2001:db8:2:1::/64", 0.01, 3) == Status.INSUFFICIENT_RESOURCES  # maar2 full
    assert register(A1, "mn3", "2001:db8:1:3::/64", 0.02) == 0
    assert cmd._served == {A1: 2, A2: 2}
