"""Issue 8 item 7: what the cores check on receipt (D flag, MN-LL-ID echo, direct PBA prefix,
Serving MAAR address)."""
from ryu_dmm.mobility import messages as M
from ryu_dmm.mobility.cmd import CmdCore
from ryu_dmm.mobility.config import Mode
from ryu_dmm.mobility.events import Advertise, Attach, Received, Send
from ryu_dmm.mobility.maar import MaarCore, Role
from ryu_dmm.wire import BindingAck, BindingUpdate, MNLinkLayerIdentifier, Prefix, Status
from ryu_dmm.wire.constants import BA_P, BU_A, BU_P
from tests.sim import CMD, START, domain

A1, A2, A3 = "2001:db8:ff::1", "2001:db8:ff::2", "2001:db8:ff::3"
P1, P2 = Prefix.parse("2001:db8:1::/64"), Prefix.parse("2001:db8:2::/64")
MAC = bytes.fromhex("020000000001")


def sends(effects):
    return [e.msg for e in effects if type(e) is Send]


def registered(maar: MaarCore) -> BindingUpdate:
    (pbu,) = sends(maar.handle(Attach("mn1", MAC, 1), START))
    return pbu


def test_missing_d_flag_is_counted_and_accepted():
    cmd = CmdCore(domain(2))
    plain = M.pbu(1, START, "mn1", P1, 40, 1, 3)
    plain = BindingUpdate(plain.sequence, plain.lifetime, plain.options, BU_A | BU_P)  # no D (0x0010)
    (pba,) = sends(cmd.handle(Received(A1, plain), START))
    assert pba.status == Status.ACCEPTED and cmd.counters["pbu_without_d"] == 1
    maar = MaarCore(domain(2), "maar1")
    pbu = registered(maar)
    answer = M.pba_for(pbu, Status.ACCEPTED, 40)
    maar.handle(Received(CMD, BindingAck(answer.status, answer.sequence, 40, answer.options, BA_P)), START)
    assert maar.bindings["mn1"].role is Role.SERVING and maar.counters["pba_without_d"] == 1


def test_pba_with_another_mn_ll_id_is_ignored():
    maar = MaarCore(domain(2), "maar1")
    pbu = registered(maar)
    good = M.pba_for(pbu, Status.ACCEPTED, 40)
    forged = BindingAck(0, good.sequence, 40, tuple(
        MNLinkLayerIdentifier(b"\x02\x00\x00\x00\x00\x99") if type(o) is MNLinkLayerIdentifier else o
        for o in good.options))
    assert maar.handle(Received(CMD, forged), START) == []
    assert maar.bindings["mn1"].role is Role.REGISTERING
    without = BindingAck(0, good.sequence, 40, tuple(o for o in good.options if type(o) is not MNLinkLayerIdentifier))
    assert maar.handle(Received(CMD, without), START) == []  # not echoed at all: no match either
    effects = maar.handle(Received(CMD, good), START)
    assert any(type(e) is Advertise for e in effects) and maar.bindings["mn1"].role is Role.SERVING


def test_cmd_ignores_a_pmaar_answer_whose_echo_does_not_match():
    cmd = CmdCore(domain(2, mode=Mode.RELAY))
    cmd.handle(Received(A1, M.pbu(1, START, "mn1", P1, 40, 1, 3)), START)
    (to_pmaar,) = [m for m in sends(cmd.handle(Received(A2, M.pbu(2, START + 0.01, "mn1", P2, 40, 3, 3)),
                                               START + 0.01)) if type(m) is BindingUpdate]
    wrong = M.pba_for(BindingUpdate(to_pmaar.sequence, 40, to_pmaar.options + (MNLinkLayerIdentifier(MAC),)),
                      Status.ACCEPTED, 40)
    assert cmd.handle(Received(A1, wrong), START + 0.02) == []
    assert cmd.cache["mn1"].handover is not None  # still waiting for maar1
    right = M.pba_for(to_pmaar, Status.ACCEPTED, 40)
    assert any(type(m) is BindingAck for m in sends(cmd.handle(Received(A1, right), START + 0.02)))
    assert cmd.cache["mn1"].handover is None


def test_direct_pba_with_a_prefix_outside_the_senders_pool_is_ignored():
    d = domain(3, mode=Mode.LOCATOR)
    maar = MaarCore(d, "maar2")
    registered(maar)  # in flight: a direct PBA may come before the CMD's PBA
    ask = M.pbu(9, START, "mn1", Prefix.parse("2001:db8:3::/64"), 40, 3, 3, serving=A2)  # maar3's prefix
    assert maar.handle(Received(A1, M.pba_for(ask, Status.ACCEPTED, 40)), START) == []
    assert maar.bindings["mn1"].anchors == {} and maar.counters["direct_pba_refused"] == 1
    ask = M.pbu(9, START, "mn1", P1, 40, 3, 3, serving=A2)  # maar1's own prefix: taken
    assert maar.handle(Received(A1, M.pba_for(ask, Status.ACCEPTED, 40)), START)
    assert maar.bindings["mn1"].anchors == {A1: P1} and maar.counters["direct_pba_refused"] == 1


def test_pmaar_refuses_to_tunnel_to_a_host_outside_the_domain():
    maar = MaarCore(domain(2), "maar1")
    pbu = registered(maar)
    maar.handle(Received(CMD, M.pba_for(pbu, Status.ACCEPTED, 40)), START)
    maar.handle(Received(CMD, M.pbu(3, START, "mn1", pbu.hnps[0], 40, 3, 3)), START)  # nothing to do
    outsider = M.pbu(4, START + 0.01, "mn1", pbu.hnps[0], 40, 3, 3, serving="2001:db8:bad::1")
    (pba,) = sends(maar.handle(Received(CMD, outsider), START + 0.01))
    assert pba.status == Status.ADMINISTRATIVELY_PROHIBITED
    b = maar.bindings["mn1"]
    assert b.role is Role.SERVING and b.serving_maar is None and not maar.dataplane("mn1").to_serving
