"""Issue 11 item 2: checks inside the protocol that hold without IPsec (docs/security.md), each fed a
hand-built hostile message. Expected outcomes are RFC 5213 §6.9.1 (a PBA whose echo does not match
is ignored), RFC 8885 §3.3 (the direct PBA) and our rule for what an S-MAAR may expect."""
from ryu_dmm.mobility import messages as M
from ryu_dmm.mobility.cmd import CmdCore
from ryu_dmm.mobility.config import Mode
from ryu_dmm.mobility.events import Attach, Received, Send
from ryu_dmm.mobility.maar import MaarCore, Role
from ryu_dmm.wire import (
    BindingAck, BindingUpdate, HomeNetworkPrefix, MobileNodeIdentifier, Prefix, ServingMaar, Status, Timestamp,
)
from tests.sim import CMD, START, domain

A1, A2, A3 = "2001:db8:ff::1", "2001:db8:ff::2", "2001:db8:ff::3"
P1 = Prefix.parse("2001:db8:1::/64")  # maar1's pool (2001:db8:1::/48)
P1B = Prefix.parse("2001:db8:1:7::/64")
MAC = bytes.fromhex("020000000001")


def sends(effects):
    return [e.msg for e in effects if type(e) is Send]


def with_option(msg: BindingAck, kind, new) -> BindingAck:
    """``msg`` with its option of type ``kind`` replaced by ``new``."""
    return BindingAck(msg.status, msg.sequence, msg.lifetime,
                      tuple(new if type(o) is kind else o for o in msg.options), msg.flags)


# ---- a PBA must echo the PBU's MN-ID, HNP, MN-LL-ID and Serving MAAR ----------------------------
def registering(mode: Mode = Mode.PROXY, name: str = "maar2") -> tuple[MaarCore, BindingUpdate]:
    maar = MaarCore(domain(3, mode=mode), name)
    (pbu,) = sends(maar.handle(Attach("mn1", MAC, 1), START))
    return maar, pbu


def test_a_pba_for_another_prefix_is_ignored_and_counted():
    maar, pbu = registering()
    good = M.pba_for(pbu, Status.ACCEPTED, 40)
    forged = with_option(good, HomeNetworkPrefix, HomeNetworkPrefix(Prefix.parse("2001:db8:2:99::/64")))
    assert maar.handle(Received(CMD, forged), START) == []
    assert maar.bindings["mn1"].role is Role.REGISTERING and maar.counters["pba_echo_mismatch"] == 1
    no_hnp = BindingAck(0, good.sequence, 40, tuple(o for o in good.options if type(o) is not HomeNetworkPrefix))
    assert maar.handle(Received(CMD, no_hnp), START) == []
    assert maar.counters["pba_echo_mismatch"] == 2
    assert maar.handle(Received(CMD, good), START)  # the true answer still completes it
    assert maar.bindings["mn1"].role is Role.SERVING and maar.counters["pba_echo_mismatch"] == 2


def test_a_pba_for_another_mn_is_ignored_and_counted():
    maar, pbu = registering()
    forged = with_option(M.pba_for(pbu, Status.ACCEPTED, 40), MobileNodeIdentifier, MobileNodeIdentifier.nai("mn2"))
    assert maar.handle(Received(CMD, forged), START) == []
    assert maar.counters["pba_echo_mismatch"] == 1 and "mn2" not in maar.bindings


def test_a_pba_with_a_serving_maar_the_pbu_did_not_carry_is_ignored():
    maar, pbu = registering()
    forged = M.pba_for(pbu, Status.ACCEPTED, 40, (ServingMaar(A3),))
    assert maar.handle(Received(CMD, forged), START) == []
    assert maar.counters["pba_echo_mismatch"] == 1


def test_cmd_ignores_a_pmaar_pba_naming_another_serving_maar_or_prefix():
    cmd = CmdCore(domain(3, mode=Mode.RELAY))
    cmd.handle(Received(A1, M.pbu(1, START, "mn1", P1, 40, 1, 3)), START)
    (ask,) = [m for m in sends(cmd.handle(Received(A2, M.pbu(2, START + 0.01, "mn1", Prefix.parse(
        "2001:db8:2::/64"), 40, 3, 3)), START + 0.01)) if type(m) is BindingUpdate]
    assert ask.serving_maar == A2 and ask.hnps == (P1,)
    right = M.pba_for(ask, Status.ACCEPTED, 40)
    assert cmd.handle(Received(A1, with_option(right, ServingMaar, ServingMaar(A3))), START + 0.02) == []
    assert cmd.handle(Received(A1, with_option(right, HomeNetworkPrefix, HomeNetworkPrefix(P1B))), START + 0.02) == []
    assert cmd.counters["pba_echo_mismatch"] == 2 and cmd.cache["mn1"].handover is not None
    assert any(type(m) is BindingAck for m in sends(cmd.handle(Received(A1, right), START + 0.02)))
    assert cmd.counters["pba_echo_mismatch"] == 2


# ---- a P-MAAR takes a Serving MAAR only for a MAAR of its domain, from the CMD only -------------
def serving(maar: MaarCore, pbu: BindingUpdate) -> None:
    maar.handle(Received(CMD, M.pba_for(pbu, Status.ACCEPTED, 40)), START)
    assert maar.bindings["mn1"].role is Role.SERVING


def test_serving_maar_outside_the_domain_is_refused_129_and_counted():
    maar, pbu = registering(name="maar1")
    serving(maar, pbu)
    outsider = M.pbu(4, START + 0.01, "mn1", pbu.hnps[0], 40, 3, 3, serving="2001:db8:bad::1")
    (pba,) = sends(maar.handle(Received(CMD, outsider), START + 0.01))
    assert pba.status == Status.ADMINISTRATIVELY_PROHIBITED and pba.lifetime == 0
    assert maar.counters["serving_maar_refused"] == 1 and not maar.dataplane("mn1").to_serving


def test_serving_maar_from_a_maar_instead_of_the_cmd_is_refused_154():
    maar, pbu = registering(name="maar1")
    serving(maar, pbu)
    fake = M.pbu(4, START + 0.01, "mn1", pbu.hnps[0], 40, 3, 3, serving=A3)
    (pba,) = sends(maar.handle(Received(A3, fake), START + 0.01))  # maar3 claims to be the CMD
    assert pba.status == Status.MAG_NOT_AUTHORIZED_FOR_PROXY_REG
    assert maar.bindings["mn1"].role is Role.SERVING and not maar.dataplane("mn1").to_serving


# ---- locator mode: a direct PBA only from the P-MAAR we can expect --------------------------------
def direct(prefix: Prefix, stamp: float, serving_maar: str = A2, seq: int = 9) -> BindingAck:
    """What a P-MAAR sends the S-MAAR: its answer to the CMD's PBU stamped ``stamp``."""
    return M.pba_for(M.pbu(seq, stamp, "mn1", prefix, 40, 3, 3, serving=serving_maar), Status.ACCEPTED, 40)


def test_direct_pba_while_our_registration_is_in_flight_is_taken():
    maar, _ = registering(Mode.LOCATOR)
    assert maar.handle(Received(A1, direct(P1, START + 0.005)), START + 0.01)
    assert maar.bindings["mn1"].anchors == {A1: P1} and maar.counters["direct_pba_refused"] == 0


def test_unasked_direct_pba_is_refused():
    """Serving, nothing in flight: a MAAR of the domain claims an anchor the CMD never listed."""
    maar, pbu = registering(Mode.LOCATOR)
    serving(maar, pbu)
    assert maar.handle(Received(A1, direct(P1, START + 1)), START + 1) == []
    assert maar.bindings["mn1"].anchors == {} and maar.counters["direct_pba_refused"] == 1


def test_replayed_direct_pba_older_than_our_registration_is_refused():
    """Our PBU was stamped START; the CMD's PBU it answers was stamped 0.31 s before (window 0.3 s):
    it cannot answer our registration."""
    maar, _ = registering(Mode.LOCATOR)
    assert maar.handle(Received(A1, direct(P1, START - 0.31)), START + 0.01) == []
    assert maar.handle(Received(A1, direct(P1, START - 0.29)), START + 0.01)  # within the window: taken
    assert maar.counters["direct_pba_refused"] == 1


def test_direct_pba_stamped_in_the_future_or_unstamped_is_refused():
    maar, _ = registering(Mode.LOCATOR)
    assert maar.handle(Received(A1, direct(P1, START + 0.5)), START + 0.1) == []  # 0.4 s ahead of us
    unstamped = BindingAck(0, 9, 40, tuple(o for o in direct(P1, START).options if type(o) is not Timestamp))
    assert maar.handle(Received(A1, unstamped), START + 0.1) == []
    assert maar.counters["direct_pba_refused"] == 2 and maar.bindings["mn1"].anchors == {}


def test_direct_pba_naming_another_serving_maar_or_from_a_stranger_is_refused():
    maar, _ = registering(Mode.LOCATOR)
    assert maar.handle(Received(A1, direct(P1, START, serving_maar=A3)), START) == []
    assert maar.handle(Received("2001:db8:bad::1", direct(P1, START)), START) == []
    assert maar.handle(Received(A3, direct(P1, START)), START) == []  # maar3 claiming maar1's prefix
    assert maar.counters["direct_pba_refused"] == 3 and maar.bindings["mn1"].anchors == {}


def test_after_the_cmds_pba_only_the_listed_anchor_is_taken():
    maar, pbu = registering(Mode.LOCATOR)
    maar.handle(Received(CMD, M.pba_for(pbu, Status.ACCEPTED, 40, M.previous_maar_options(
        [(A1, P1)], maar.peers))), START + 0.01)
    assert maar.bindings["mn1"].anchors == {A1: P1}
    assert maar.handle(Received(A1, direct(P1, START + 0.005)), START + 0.02)  # a late copy: same anchor
    assert maar.handle(Received(A1, direct(P1B, START + 0.005)), START + 0.02) == []  # another prefix
    assert maar.bindings["mn1"].anchors == {A1: P1} and maar.counters["direct_pba_refused"] == 1


def test_a_bogus_direct_pba_is_undone_by_the_cmds_list():
    """Taken while in flight (nothing else to check it against then), it lasts until the CMD's PBA."""
    maar, pbu = registering(Mode.LOCATOR)
    assert maar.handle(Received(A3, direct(Prefix.parse("2001:db8:3::/64"), START)), START)
    maar.handle(Received(CMD, M.pba_for(pbu, Status.ACCEPTED, 40, M.previous_maar_options(
        [(A1, P1)], maar.peers))), START + 0.01)
    assert maar.bindings["mn1"].anchors == {A1: P1}


def test_outside_locator_mode_a_direct_pba_is_not_counted():
    maar, _ = registering(Mode.RELAY)
    assert maar.handle(Received(A1, direct(P1, START)), START) == []
    assert maar.counters["direct_pba_refused"] == 0
