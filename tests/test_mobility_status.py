"""Every PBA status code the cores produce, each from the situation that calls for it."""
import pytest

from ryu_dmm.mobility import messages as M
from ryu_dmm.mobility.cmd import CmdCore
from ryu_dmm.mobility.events import Received, Report, Send
from ryu_dmm.mobility.maar import MaarCore
from ryu_dmm.wire import (
    AccessTechnologyTypeOption, BindingUpdate, HandoffIndicatorOption, HomeNetworkPrefix, MobileNodeIdentifier,
    Prefix, Status, Timestamp,
)
from ryu_dmm.wire.constants import BU_A, BU_D
from tests.sim import CMD, START, Net, domain

A1, A2 = "2001:db8:ff::1", "2001:db8:ff::2"
P1 = Prefix.parse("2001:db8:1::/64")
NOW = START


def pbu(seq=1, prefix=P1, ts=NOW, lifetime=40, **drop) -> BindingUpdate:
    msg = M.pbu(seq, ts, "mn1", prefix, lifetime, 1, 3)
    kinds = {MobileNodeIdentifier: "mnid", HomeNetworkPrefix: "hnp", HandoffIndicatorOption: "hi",
             AccessTechnologyTypeOption: "att", Timestamp: "no_ts"}
    return BindingUpdate(msg.sequence, msg.lifetime,
                         tuple(o for o in msg.options if not drop.get(kinds.get(type(o), ""))), msg.flags)


def answer(effects) -> int:
    (send,) = [e for e in effects if type(e) is Send]
    return send.msg.status


@pytest.fixture
def cmd():
    return CmdCore(domain(2))


@pytest.mark.parametrize("src,msg,status", [
    ("2001:db8:ff::99", pbu(), Status.MAG_NOT_AUTHORIZED_FOR_PROXY_REG),  # 154: not a configured MAAR
    (A2, pbu(), Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX),  # 155: prefix from maar1's pool
    (A1, pbu(prefix=Prefix.parse("2001:db8:1::/56")), Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX),
    (A1, pbu(mnid=True), Status.MISSING_MN_IDENTIFIER_OPTION),  # 160
    (A1, pbu(hnp=True), Status.MISSING_HOME_NETWORK_PREFIX_OPTION),  # 158
    (A1, pbu(hi=True), Status.MISSING_HANDOFF_INDICATOR_OPTION),  # 161
    (A1, pbu(att=True), Status.MISSING_ACCESS_TECH_TYPE_OPTION),  # 162
    (A1, pbu(ts=NOW - 1.0), Status.TIMESTAMP_MISMATCH),  # 156: outside the 300 ms window
    (A1, BindingUpdate(1, 40, pbu().options, BU_A | BU_D), Status.PROXY_REG_NOT_ENABLED),  # 152: no P flag
    (A1, BindingUpdate(1, 40, pbu().options + (HomeNetworkPrefix(Prefix.parse("2001:db8:1:1::/64")),)),
     Status.ADMINISTRATIVELY_PROHIBITED),  # 129: two HNPs
])
def test_cmd_rejects(cmd, src, msg, status):
    effects = cmd.handle(Received(src, msg), NOW)
    assert answer(effects) == status
    assert [e for e in effects if type(e) is Send][0].dst == src  # answered where it came from
    assert any(type(e) is Report and e.status == status for e in effects)
    assert not cmd.cache  # nothing was bound


def test_cmd_157_timestamp_lower_than_previous(cmd):
    assert answer(cmd.handle(Received(A1, pbu(seq=2, ts=NOW + 0.2)), NOW + 0.2)) == Status.ACCEPTED
    assert answer(cmd.handle(Received(A1, pbu(seq=3, ts=NOW + 0.1)), NOW + 0.2)) == \
        Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED
    assert cmd.cache["mn1"].last_ts == Timestamp.from_seconds(NOW + 0.2).ticks


def test_cmd_135_stale_sequence_without_timestamp(cmd):
    assert answer(cmd.handle(Received(A1, pbu(seq=10, no_ts=True)), NOW)) == Status.ACCEPTED
    assert answer(cmd.handle(Received(A1, pbu(seq=9, no_ts=True)), NOW)) == Status.SEQUENCE_NUMBER_OUT_OF_WINDOW
    assert answer(cmd.handle(Received(A1, pbu(seq=11, no_ts=True)), NOW)) == Status.ACCEPTED


def test_retransmitted_pbu_is_answered_again_without_second_handover():
    n = Net(domain(2))
    n.attach("maar1", "mn1")
    n.run(0.1)
    n.attach("maar2", "mn1")
    n.run(0.1)
    first = [d for d in n.log if d.src == A2 and type(d.msg).__name__ == "BindingUpdate"][0]
    mark = len(n.log)
    n.inject(CMD, Received(A2, first.msg))  # the same PBU again, e.g. retransmitted or duplicated
    n.run(0.1)
    assert n.messages(mark) == [("cmd", "maar2", "PBA*")]
    assert len(n.reports_of("handover", "cmd")) == 1


def test_maar_rejects_pbu_not_from_cmd_and_unknown_prefix():
    d = domain(2)
    maar = MaarCore(d, "maar1")
    assert answer(maar.handle(Received(A2, pbu()), NOW)) == Status.MAG_NOT_AUTHORIZED_FOR_PROXY_REG
    maar.pool.allocate(NOW)  # P1 now belongs to some MN here
    to_pmaar = M.pbu(5, NOW, "mn9", P1, 40, 3, 3, serving=A2)
    assert answer(maar.handle(Received(CMD, to_pmaar), NOW)) == Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX
    foreign = M.pbu(6, NOW, "mn9", Prefix.parse("2001:db8:2::/64"), 40, 3, 3, serving=A2)
    assert answer(maar.handle(Received(CMD, foreign), NOW)) == Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX
    assert "mn9" not in maar.bindings
    assert answer(maar.handle(Received(CMD, pbu(hi=True)), NOW)) == Status.MISSING_HANDOFF_INDICATOR_OPTION
    assert answer(maar.handle(Received(CMD, pbu(ts=NOW - 5)), NOW)) == Status.TIMESTAMP_MISMATCH


def test_maar_157_stale_serving_update():
    n = Net(domain(3))
    n.attach("maar1", "mn1")
    n.run(0.1)
    late = M.pbu(900, n.now, "mn1", P1, 40, 3, 3, serving=A2)
    n.attach("maar2", "mn1")
    n.run(0.1)
    n.attach("maar3", "mn1")
    n.run(0.1)
    effects = n.maars["maar1"].handle(Received(CMD, late), n.now)
    assert answer(effects) == Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED
    assert n.maars["maar1"].bindings["mn1"].serving_maar == "2001:db8:ff::3"


def test_refused_registration_reports_and_frees_the_prefix():
    n = Net(domain(2))
    maar = n.maars["maar1"]
    del n.cmd.maars[maar.address]  # the CMD does not know maar1: it answers 154
    n.attach("maar1", "mn1")
    n.run(0.1)
    assert n.reports_of("rejected", "maar1")[0].status == Status.MAG_NOT_AUTHORIZED_FOR_PROXY_REG
    assert not maar.bindings and maar.pool.in_use == 0
    assert maar.pool.allocate(n.now) == P1  # never advertised: reusable at once


def test_pmaar_readopts_a_prefix_the_cmd_still_binds():
    maar = MaarCore(domain(2), "maar1")
    prefix = maar.pool.allocate(NOW)
    maar.pool.release(prefix, NOW + 100)  # we gave it up, but the CMD still lists us as its anchor
    effects = maar.handle(Received(CMD, M.pbu(5, NOW, "mn1", prefix, 40, 3, 3, serving=A2)), NOW)
    assert answer(effects) == Status.ACCEPTED
    assert maar.bindings["mn1"].serving_maar == A2 and maar.pool.in_use == 1
    assert maar.pool.allocate(NOW) != prefix
