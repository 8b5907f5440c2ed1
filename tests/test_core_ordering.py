"""Issue 8 items 5 and 6: reordered CMD PBUs and skewed MAAR clocks never leave an MN without a
serving MAAR."""
import heapq

import pytest

from ryu_dmm.mobility import messages as M
from ryu_dmm.mobility.events import Attach, Received, Send
from ryu_dmm.mobility.maar import MaarCore, Role
from ryu_dmm.wire import Prefix, Status, decode
from tests.sim import DMM_MODES, CMD, START, Net, domain

A1, A2 = "2001:db8:ff::1", "2001:db8:ff::2"
P1, P2 = Prefix.parse("2001:db8:1::/64"), Prefix.parse("2001:db8:2::/64")
MAC = bytes.fromhex("020000000001")


def hold(n: Net, extra: float, test) -> int:
    """Delay every queued message for which ``test(src, dst, msg)`` holds by ``extra`` seconds."""
    held, queue = 0, []
    for at, count, kind, payload in n._queue:
        if kind == "msg" and test(payload[0], payload[1], decode(payload[2])):
            at, held = at + extra, held + 1
        queue.append((at, count, kind, payload))
    heapq.heapify(queue)
    n._queue = queue
    return held


def served_at(n: Net, mn: str, maar: str) -> None:
    """``mn`` is served at ``maar``: the CMD says so, the MAAR routes its prefix, and every P-MAAR
    tunnels to it."""
    addr = n.maars[maar].address
    bce = n.cmd.cache[mn]
    assert bce.serving == addr
    b = n.maars[maar].bindings[mn]
    assert b.role is Role.SERVING and b.prefix == bce.prefix and n.maars[maar].dataplane(mn).local
    for anchor, prefix in bce.pmaars:
        p = n.maars[n.name[anchor]].bindings[mn]
        assert p.role is Role.ANCHOR and p.serving_maar == addr and p.prefix == prefix


def stale_pbu_to_maar1(src, dst, msg) -> bool:
    return dst == A1 and type(msg).__name__ == "BindingUpdate" and msg.serving_maar == A2


def confirm_to_maar1(src, dst, msg) -> bool:
    return dst == A1 and type(msg).__name__ == "BindingUpdate" and msg.serving_maar == A1


@pytest.mark.parametrize("mode", DMM_MODES)
@pytest.mark.parametrize("stale_first", [False, True])
def test_stale_cmd_pbu_after_return_does_not_strand(mode, stale_first):
    """MN at maar1, moves to maar2 and straight back; the CMD's PBU for the first move (Serving
    MAAR = maar2) reaches maar1 only after maar1's return was accepted."""
    n = Net(domain(2, mode=mode))
    n.attach("maar1", "mn1")
    n.run(0.1)
    n.detach("maar1", "mn1")
    n.attach("maar2", "mn1")
    n.run(0.003)  # maar2's PBU reached the CMD, whose PBU to maar1 is on its way
    assert hold(n, 0.15, stale_pbu_to_maar1) == 1
    n.detach("maar2", "mn1")
    n.attach("maar1", "mn1")
    n.run(0.003)  # the CMD accepted maar1's return; its confirmation to maar1 is on its way
    if stale_first:
        assert hold(n, 0.25, confirm_to_maar1) == 1  # after the stale one, inside the window
    n.run(0.05)
    assert n.maars["maar1"].bindings["mn1"].role is Role.SERVING  # before the stale PBU arrives
    n.run(5)
    served_at(n, "mn1", "maar1")
    assert n.maars["maar2"].bindings["mn1"].serving_maar == A1
    confirm = [d.msg for d in n.log if confirm_to_maar1(d.src, d.dst, d.msg)]
    assert len(confirm) == 1 and confirm[0].hnps == (P1,)
    answers = [d.msg for d in n.log if d.src == A1 and d.dst == CMD and d.msg.serving_maar == A2]
    if stale_first:  # taken, then undone by the newer confirmation
        assert any(r.detail.startswith("back here") for r in n.reports_of("moved", "maar1"))
    else:  # refused as older than the confirmation
        assert answers[-1].status == Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED


def test_copy_of_applied_cmd_pbu_changes_nothing():
    """A copy (same sequence number, fresher timestamp: a retransmission) of a CMD PBU applied while
    our own registration was in flight must not take away the role that registration then won."""
    maar = MaarCore(domain(2), "maar1")
    (reg,) = [e.msg for e in maar.handle(Attach("mn1", MAC, 1), START) if type(e) is Send]
    stale = M.pbu(7, START + 0.01, "mn1", reg.hnps[0], 40, 3, 3, serving=A2)
    maar.handle(Received(CMD, stale), START + 0.01)  # remembered, role kept (registration in flight)
    maar.handle(Received(CMD, M.pba_for(reg, Status.ACCEPTED, 40)), START + 0.02)
    assert maar.bindings["mn1"].role is Role.SERVING
    again = M.pbu(7, START + 0.03, "mn1", reg.hnps[0], 40, 3, 3, serving=A2)
    (answer,) = [e.msg for e in maar.handle(Received(CMD, again), START + 0.03) if type(e) is Send]
    assert answer.status == Status.ACCEPTED and maar.bindings["mn1"].role is Role.SERVING


def test_move_refused_for_clock_skew_is_retried():
    """maar1's clock 200 ms ahead, maar2's 50 ms behind (both inside the 300 ms window): a move
    100 ms after the attachment carries an older timestamp than the attachment, and the CMD answers
    157. maar2, whose MN is attached, registers once more with a fresh timestamp 0.6 s later."""
    d = domain(2)
    n = Net(d, skew={A1: 0.2, A2: -0.05})
    n.attach("maar1", "mn1")
    n.run(0.1)
    n.detach("maar1", "mn1")
    n.attach("maar2", "mn1")
    n.run(0.05)
    first = [d.msg for d in n.log if d.dst == A2 and type(d.msg).__name__ == "BindingAck"]
    assert first[0].status == Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED
    assert n.maars["maar2"].bindings["mn1"].role is Role.REGISTERING  # kept for the retry
    n.run(2)
    served_at(n, "mn1", "maar2")
    assert any(where == "maar2" for _, where, _ in n.adverts)
    sends = [round(d.at - START, 3) for d in n.log if d.src == A2 and type(d.msg).__name__ == "BindingUpdate"]
    assert len(sends) == 2 and sends[1] - sends[0] == pytest.approx(0.6, abs=0.01)


def test_skew_retry_is_not_made_for_a_detached_mn():
    n = Net(domain(2), skew={A1: 0.2, A2: -0.05})
    n.attach("maar1", "mn1")
    n.run(0.1)
    n.detach("maar1", "mn1")
    n.attach("maar2", "mn1")
    n.run(0.05)
    n.detach("maar2", "mn1")  # gone again before the retry
    n.run(2)
    assert n.cmd.cache["mn1"].serving == A1
    assert len([d for d in n.log if d.src == A2 and type(d.msg).__name__ == "BindingUpdate"]) == 1


def test_unanswered_return_after_detach_follows_the_cmds_last_word():
    """Back at maar1 (registration in flight), the CMD's PBU places the MN at maar2, the MN leaves
    again and the registration goes unanswered: maar1 ends as maar2's P-MAAR, not as serving."""
    from ryu_dmm.mobility.events import Detach, TimerFired
    maar = MaarCore(domain(2), "maar1")
    (reg,) = [e.msg for e in maar.handle(Attach("mn1", MAC, 1), START) if type(e) is Send]
    maar.handle(Received(CMD, M.pba_for(reg, Status.ACCEPTED, 40)), START)
    maar.handle(Detach("mn1"), START + 1)
    assert [e for e in maar.handle(Attach("mn1", MAC, 1), START + 2) if type(e) is Send]
    maar.handle(Received(CMD, M.pbu(3, START + 2.01, "mn1", reg.hnps[0], 40, 3, 3, serving=A2)), START + 2.01)
    assert maar.bindings["mn1"].role is Role.SERVING  # kept while our registration is in flight
    maar.handle(Detach("mn1"), START + 2.5)
    out = maar.bindings["mn1"].pbu
    assert not [e for e in maar.handle(TimerFired(out.key), START + 3) if type(e) is Send]  # none after the detach
    b = maar.bindings["mn1"]
    assert b.role is Role.ANCHOR and b.serving_maar == A2
    assert maar.dataplane("mn1").to_serving and not maar.dataplane("mn1").local


def test_a_late_serving_maar_pbu_does_not_revive_a_prefix_the_cmd_released_after_ours_went():
    """Found by the soak (relay, max_pmaars 1, 0.5 s delays): the MAAR's own binding was already
    gone (a registration abandoned after the MN left: prefix quarantined), the CMD's de-registration
    (timestamp T2) then arrived first and was answered 'already gone', and an older PBU with a
    Serving MAAR option (T1 < T2), delayed on the way, re-adopted the prefix: a stale tunnel. The
    de-registration's stamp now guards the quarantined prefix, so the late PBU gets 155
    (NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX, FACTS.md) and nothing is anchored."""
    d = domain(2)
    core = MaarCore(d, "maar2")
    now = START + 10.0
    core.handle(Attach("mn1", MAC, 1), now)  # takes P2 from the pool; the CMD never answers
    core._remove(core.bindings["mn1"], now, "failed", "test: registration abandoned", quarantine=30.0)
    assert "mn1" not in core.bindings and core.pool.in_use == 0
    dereg = M.pbu(7, now + 1.05, "mn1", P2, 0, M.HI_UNKNOWN, 3)  # T2
    late = M.pbu(6, now + 1.0, "mn1", P2, 400, M.HI_BETWEEN_MAARS, 3, serving=A1)  # T1 < T2, inside the window
    out = core.handle(Received(CMD, dereg), now + 1.1)
    assert [e.msg.status for e in out if type(e) is Send] == [Status.ACCEPTED]
    out = core.handle(Received(CMD, late), now + 1.2)
    assert [(e.msg.status, e.msg.sequence) for e in out if type(e) is Send] == [
        (Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX, 6)]
    assert "mn1" not in core.bindings and core.dataplane("mn1").empty


def test_a_pba_answering_an_earlier_transmission_is_ignored():
    """Found by the soak (relay, every barrier reply lost so every PBA was held 1 s, skewed clocks):
    the CMD answered the MAAR's first transmission of a PBU (a handover since superseded: no
    Previous MAAR options) after the MAAR had sent it again with a fresh timestamp, and the MAAR
    took that older answer (same sequence number) and ignored the right one. A PBA must echo the
    timestamp of the copy sent last (RFC 5213: the PBA echoes the PBU's Timestamp option)."""
    d = domain(2)
    core = MaarCore(d, "maar1")
    now = START + 10.0
    first = [e.msg for e in core.handle(Attach("mn1", MAC, 1), now) if type(e) is Send][0]
    key = core.bindings["mn1"].pbu.key
    from ryu_dmm.mobility.events import TimerFired
    again = [e.msg for e in core.handle(TimerFired(key), now + 1.0) if type(e) is Send][0]
    assert again.sequence == first.sequence and again.timestamp > first.timestamp
    stale = M.pba_for(first, Status.ACCEPTED, 400)  # answers the first copy
    assert core.handle(Received(CMD, stale), now + 1.1) == []
    assert core.bindings["mn1"].role is Role.REGISTERING
    fresh = M.pba_for(again, Status.ACCEPTED, 400, M.previous_maar_options([(A2, P2)], d.by_address()))
    core.handle(Received(CMD, fresh), now + 1.2)
    b = core.bindings["mn1"]
    assert b.role is Role.SERVING and b.anchors == {A2: P2}
