"""Issue 8 items 2 and 4: the P-MAAR list is bounded (the oldest anchor is released) and a prefix
belongs to one MN's session."""
import pytest

from ryu_dmm.mobility import messages as M
from ryu_dmm.mobility.cmd import CmdCore
from ryu_dmm.mobility.config import Mode, Timers
from ryu_dmm.mobility.events import Attach, Received, Report, Send
from ryu_dmm.mobility.maar import MaarCore
from ryu_dmm.wire import Prefix, Status
from tests.sim import DMM_MODES, CMD, START, Net, domain

A = {i: f"2001:db8:ff::{i}" for i in range(1, 6)}
P = {i: Prefix.parse(f"2001:db8:{i}::/64") for i in range(1, 6)}
QUARANTINE = 10.0  # MinDelayBeforeBCEDelete (FACTS.md)


@pytest.mark.parametrize("mode", DMM_MODES)
def test_mn_visiting_more_maars_than_the_bound_keeps_the_bound(mode):
    n = Net(domain(5, mode=mode, timers=Timers(max_pmaars=2)))
    for i in range(1, 6):
        n.attach(f"maar{i}", "mn1", port=i)
        n.run(0.2)
        assert len(n.cmd.cache["mn1"].pmaars) == min(i - 1, 2)
    released_at = {}
    for d in n.log:  # the CMD de-registers each released anchor: PBU with lifetime 0 for its prefix
        if d.src == CMD and type(d.msg).__name__ == "BindingUpdate" and d.msg.lifetime == 0:
            released_at.setdefault(d.dst, (d.at, d.msg.hnps))
    assert {a: h for a, (_, h) in released_at.items()} == {A[1]: (P[1],), A[2]: (P[2],)}
    bce = n.cmd.cache["mn1"]
    assert (bce.serving, bce.pmaars) == (A[5], ((A[3], P[3]), (A[4], P[4])))
    # the last PBA to the serving MAAR lists exactly the two anchors; it tunnels to those only
    last = [d.msg for d in n.log if d.dst == A[5] and d.src == CMD and type(d.msg).__name__ == "BindingAck"][-1]
    assert [(p.maar, p.prefix) for p in last.previous_maars] == [(A[3], P[3]), (A[4], P[4])]
    assert {t.anchor_maar for t in n.dataplane[("maar5", "mn1")].to_anchor} == {A[3], A[4]}
    for i in (1, 2):  # released: no binding, no flows, the prefix back in the pool after quarantine
        maar = n.maars[f"maar{i}"]
        assert "mn1" not in maar.bindings and n.dataplane[(f"maar{i}", "mn1")].empty
        assert maar.pool.in_use == 0
        t = released_at[A[i]][0]
        assert maar.pool.allocate(t + QUARANTINE - 0.1) != P[i]  # still in quarantine
        assert maar.pool.allocate(t + QUARANTINE + 0.1) == P[i]
    assert len([r for r in n.reports_of("deregistered", "cmd") if "released" in r.detail]) == 2


def test_release_is_retransmitted_until_answered():
    n = Net(domain(3, timers=Timers(max_pmaars=1)))
    for i in (1, 2):
        n.attach(f"maar{i}", "mn1")
        n.run(0.2)
    silent = n.nodes.pop(A[1])  # maar1 does not answer for a while
    n.attach("maar3", "mn1")
    n.run(2.5)
    copies = [d.at for d in n.log if d.dst == A[1] and d.msg.lifetime == 0]
    assert len(copies) == 2 and copies[1] - copies[0] == pytest.approx(1.0, abs=0.01)
    n.nodes[A[1]] = silent
    n.run(3)
    assert "mn1" not in n.maars["maar1"].bindings and not n.cmd.retx.pending


def test_serving_maar_withdraws_an_anchor_that_leaves_its_list():
    """An anchor that drops out of the serving MAAR's P-MAAR list (here: it refused, proxy mode) is
    advertised once with valid lifetime 0, then no more."""
    n = Net(domain(3, mode=Mode.PROXY, timers=Timers(lifetime=40)))
    n.attach("maar1", "mn1")
    n.run(0.1)
    del n.maars["maar1"].bindings["mn1"]  # maar1 lost its state: it will refuse (155)
    n.maars["maar1"].pool.allocate(n.now)  # and its prefix went to someone else
    n.attach("maar2", "mn1")
    n.run(0.1)
    assert n.cmd.cache["mn1"].pmaars == ()  # the CMD dropped maar1 when it refused
    n.run(70)  # maar2 re-registers (twice); its new list lacks maar1
    ras = [ra for _, where, ra in n.adverts if where == "maar2"]
    withdrawn = [ra for ra in ras if any(p.prefix == P[1] and p.valid == 0 for p in ra.prefixes)]
    assert len(withdrawn) == 1
    after = ras[ras.index(withdrawn[0]) + 1:]
    assert after and not any(p.prefix == P[1] for ra in after for p in ra.prefixes)


# ---- item 4: prefix ownership ------------------------------------------------------------------
def answer(effects):
    (send,) = [e for e in effects if type(e) is Send and type(e.msg).__name__ == "BindingAck"]
    return send.msg.status


def test_second_mn_cannot_register_a_prefix_bound_to_another():
    cmd = CmdCore(domain(2))
    assert answer(cmd.handle(Received(A[1], M.pbu(1, START, "mn1", P[1], 40, 1, 3)), START)) == Status.ACCEPTED
    effects = cmd.handle(Received(A[1], M.pbu(2, START + 0.01, "mn2", P[1], 40, 1, 3)), START + 0.01)
    assert answer(effects) == Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX
    assert any(type(e) is Report and e.status == 155 for e in effects)
    assert "mn2" not in cmd.cache and cmd.cache["mn1"].prefix == P[1]
    # a P-MAAR prefix is owned too: mn1 moves on, P1 stays bound to mn1 at maar1
    assert answer(cmd.handle(Received(A[2], M.pbu(3, START + 0.02, "mn1", P[2], 40, 3, 3)), START + 0.02)) == 0
    assert answer(cmd.handle(Received(A[1], M.pbu(4, START + 0.03, "mn2", P[1], 40, 1, 3)),
                             START + 0.03)) == Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX


def test_reregistration_with_another_prefix_is_159():
    cmd = CmdCore(domain(2))
    other = Prefix.parse("2001:db8:1:1::/64")
    cmd.handle(Received(A[1], M.pbu(1, START, "mn1", P[1], 40, 1, 3)), START)
    rereg = M.pbu(2, START + 0.01, "mn1", other, 40, M.HI_REREGISTRATION, 3)
    assert answer(cmd.handle(Received(A[1], rereg), START + 0.01)) == Status.BCE_PBU_PREFIX_SET_DO_NOT_MATCH
    assert cmd.cache["mn1"].prefix == P[1]
    # a new attachment there (the MAAR lost its binding and took a new prefix) replaces it
    attach = M.pbu(3, START + 0.02, "mn1", other, 40, M.HI_NEW_INTERFACE, 3)
    assert answer(cmd.handle(Received(A[1], attach), START + 0.02)) == Status.ACCEPTED
    assert cmd.cache["mn1"].prefix == other and cmd.cache["mn1"].pmaars == ()
    # and the old prefix is free for another MN
    assert answer(cmd.handle(Received(A[1], M.pbu(4, START + 0.03, "mn2", P[1], 40, 1, 3)), START + 0.03)) == 0


def test_mn_back_at_a_maar_anchoring_its_prefix_reuses_it():
    cmd = CmdCore(domain(2))
    cmd.handle(Received(A[1], M.pbu(1, START, "mn1", P[1], 40, 1, 3)), START)
    cmd.handle(Received(A[2], M.pbu(2, START + 0.01, "mn1", P[2], 40, 3, 3)), START + 0.01)
    assert answer(cmd.handle(Received(A[1], M.pbu(3, START + 0.02, "mn1", P[1], 40, 3, 3)), START + 0.02)) == 0
    bce = cmd.cache["mn1"]
    assert (bce.serving, bce.prefix, bce.pmaars) == (A[1], P[1], ((A[2], P[2]),))


def test_ownership_index_follows_sessions():
    n = Net(domain(3, timers=Timers(lifetime=40, max_pmaars=1)))
    for i in (1, 2, 3):
        n.attach(f"maar{i}", "mn1")
        n.run(0.2)
    assert n.cmd._owner == {P[2]: "mn1", P[3]: "mn1"}  # P1 released
    n.detach("maar3", "mn1")
    n.run(100)  # the session ends
    assert n.cmd._owner == {} and n.cmd._served.get(A[3], 0) == 0 and not n.cmd.cache


def test_late_pbu_does_not_bring_back_a_released_anchor():
    """A Serving MAAR PBU written before the release but delivered after it must not make the
    released P-MAAR anchor the prefix again (nothing would ever remove it: serving-only variant)."""
    maar = MaarCore(domain(3), "maar1")
    (reg,) = [e.msg for e in maar.handle(Attach("mn1", bytes(6), 1), START) if type(e) is Send]
    maar.handle(Received(CMD, M.pba_for(reg, Status.ACCEPTED, 40)), START)
    late = M.pbu(5, START + 0.10, "mn1", P[1], 40, 3, 3, serving=A[3])  # written, then delayed
    maar.handle(Received(CMD, M.pbu(4, START + 0.05, "mn1", P[1], 40, 3, 3, serving=A[2])), START + 0.05)
    release = M.pbu(6, START + 0.15, "mn1", P[1], 0, 4, 3)
    assert answer(maar.handle(Received(CMD, release), START + 0.15)) == Status.ACCEPTED
    assert "mn1" not in maar.bindings
    effects = maar.handle(Received(CMD, late), START + 0.2)
    assert answer(effects) == Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX and "mn1" not in maar.bindings
    newer = M.pbu(7, START + 0.25, "mn1", P[1], 40, 3, 3, serving=A[3])  # the CMD's word after it: taken
    assert answer(maar.handle(Received(CMD, newer), START + 0.25)) == Status.ACCEPTED
    assert maar.bindings["mn1"].serving_maar == A[3]
