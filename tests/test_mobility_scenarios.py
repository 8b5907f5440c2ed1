"""RFC 8885 §3 message sequences, message by message, and each MAAR's data plane after each step."""
import pytest

from ryu_dmm.mobility.config import Dereg, Mode, Timers
from ryu_dmm.mobility.dataplane import LocalRoute, MnDataPlane, TunnelToAnchor, TunnelToServing
from ryu_dmm.mobility.maar import Role
from ryu_dmm.wire import Prefix
from tests.sim import DMM_MODES, Net, domain

A1, A2, A3 = "2001:db8:ff::1", "2001:db8:ff::2", "2001:db8:ff::3"
MAC = bytes.fromhex("020000000001")
P1, P2, P3 = (Prefix.parse(f"2001:db8:{i}::/64") for i in (1, 2, 3))


def net(mode: Mode, **kw) -> Net:
    return Net(domain(3, mode=mode, **kw))


def test_initial_registration():
    n = net(Mode.PROXY)
    n.attach("maar1", "mn1")
    n.run(0.1)
    assert n.messages() == [("maar1", "cmd", "PBU"), ("cmd", "maar1", "PBA")]
    pbu = n.log[0].msg
    assert pbu.p and pbu.a and pbu.d and pbu.mn_id == "mn1" and pbu.hnps == (P1,)
    assert (pbu.handoff, pbu.att, pbu.mn_ll_id) == (1, 3, MAC) and pbu.timestamp
    assert n.dataplane[("maar1", "mn1")] == MnDataPlane(local=(LocalRoute(P1, MAC, 1),))
    bce = n.cmd.cache["mn1"]
    assert (bce.serving, bce.prefix, bce.pmaars) == (A1, P1, ())
    (_, where, ra), = n.adverts
    assert where == "maar1" and [(p.prefix, p.preferred > 0, p.dlif) for p in ra.prefixes] == [(P1, True, None)]


EXPECTED = {
    Mode.RELAY: [("maar2", "cmd", "PBU"), ("cmd", "maar1", "PBU*"), ("maar1", "cmd", "PBA*"), ("cmd", "maar2", "PBA*")],
    Mode.LOCATOR: [("maar2", "cmd", "PBU"), ("cmd", "maar1", "PBU*"), ("maar1", "cmd", "PBA*"),
                   ("maar1", "maar2", "PBA*"), ("cmd", "maar2", "PBA*")],
    Mode.PROXY: [("maar2", "cmd", "PBU"), ("cmd", "maar2", "PBA*"), ("cmd", "maar1", "PBU*"), ("maar1", "cmd", "PBA*")],
}


@pytest.mark.parametrize("mode", DMM_MODES)
def test_first_handover_sequence_and_data_plane(mode):
    n = net(mode)
    n.attach("maar1", "mn1")
    n.run(0.1)
    mark = len(n.log)
    n.detach("maar1", "mn1")
    n.attach("maar2", "mn1", port=7)
    n.run(0.1)
    assert n.messages(mark) == EXPECTED[mode]
    to_pmaar = next(d.msg for d in n.log[mark:] if d.msg.serving_maar)
    assert to_pmaar.serving_maar == A2 and to_pmaar.hnps == (P1,) and to_pmaar.handoff == 3
    final = n.log[-1].msg if mode is not Mode.PROXY else n.log[mark + 1].msg
    assert [(p.maar, p.prefix) for p in final.previous_maars] == [(A1, P1)]
    assert n.dataplane[("maar1", "mn1")] == MnDataPlane(to_serving=(TunnelToServing(P1, A2),))
    assert n.dataplane[("maar2", "mn1")] == MnDataPlane(local=(LocalRoute(P2, MAC, 7),),
                                                        to_anchor=(TunnelToAnchor(P1, A1, MAC, 7),))
    bce = n.cmd.cache["mn1"]
    assert (bce.serving, bce.prefix, bce.pmaars, bce.handover) == (A2, P2, ((A1, P1),), None)
    ra = n.adverts[-1][2]
    assert [(p.prefix, p.preferred > 0, p.valid > 0, p.dlif) for p in ra.prefixes] == [
        (P2, True, True, None), (P1, False, True, A1)]
    assert len(n.reports_of("handover", "cmd")) == 1


@pytest.mark.parametrize("mode", DMM_MODES)
def test_second_handover_two_pmaars(mode):
    n = net(mode)
    for i, maar in enumerate(("maar1", "maar2", "maar3")):
        n.attach(maar, "mn1", port=i + 1)
        n.run(0.1)
    mark = 0
    for d in n.log:
        if d.src == A3 and type(d.msg).__name__ == "BindingUpdate":
            break
        mark += 1
    seq = n.messages(mark)
    assert seq.count(("cmd", "maar1", "PBU*")) == 1 and seq.count(("cmd", "maar2", "PBU*")) == 1
    assert sum(1 for s in seq if s[1] == "maar3" and s[0] == "cmd") == 1
    assert n.dataplane[("maar1", "mn1")].to_serving == (TunnelToServing(P1, A3),)
    assert n.dataplane[("maar2", "mn1")].to_serving == (TunnelToServing(P2, A3),)
    assert {t.anchor_maar: t.prefix for t in n.dataplane[("maar3", "mn1")].to_anchor} == {A1: P1, A2: P2}
    assert dict(n.cmd.cache["mn1"].pmaars) == {A1: P1, A2: P2}


@pytest.mark.parametrize("mode", DMM_MODES)
def test_return_to_previous_maar_reuses_its_prefix(mode):
    n = net(mode)
    for maar in ("maar1", "maar2", "maar1"):
        n.attach(maar, "mn1")
        n.run(0.1)
    assert n.dataplane[("maar1", "mn1")] == MnDataPlane(local=(LocalRoute(P1, MAC, 1),),
                                                        to_anchor=(TunnelToAnchor(P2, A2, MAC, 1),))
    assert n.dataplane[("maar2", "mn1")] == MnDataPlane(to_serving=(TunnelToServing(P2, A1),))
    bce = n.cmd.cache["mn1"]
    assert (bce.serving, bce.prefix, bce.pmaars) == (A1, P1, ((A2, P2),))


def test_relay_waits_for_all_pmaars_and_proxy_does_not():
    for mode, answered_before_pmaars in ((Mode.RELAY, False), (Mode.PROXY, True)):
        n = net(mode, timers=Timers(aggregate_timeout=3.0))
        n.attach("maar1", "mn1")
        n.run(0.1)
        mark = len(n.log)
        n.attach("maar2", "mn1")
        n.run(0.1)
        kinds = n.messages(mark)
        i_pba = kinds.index(("cmd", "maar2", "PBA*"))
        i_pmaar = kinds.index(("maar1", "cmd", "PBA*"))
        assert (i_pba < i_pmaar) is answered_before_pmaars


def test_relay_answers_partially_on_aggregate_timeout():
    n = net(Mode.RELAY, timers=Timers(aggregate_timeout=0.5, max_tries=2))
    n.attach("maar1", "mn1")
    n.run(0.1)
    n.attach("maar2", "mn1")
    n.run(0.02)
    n.attach("maar3", "mn1")
    del n.nodes[A1]  # maar1 goes silent
    n.run(0.45)
    assert not [d for d in n.log if d.dst == A3 and d.src == n.domain.cmd_address]
    n.run(0.2)
    pba = [d.msg for d in n.log if d.dst == A3 and d.src == n.domain.cmd_address][0]
    assert [p.maar for p in pba.previous_maars] == [A2]
    assert any("partial" in r.detail for r in n.reports_of("handover", "cmd"))
    n.run(5)
    assert any("no PBA from maar1" in r.detail for r in n.reports_of("failed", "cmd"))


def test_deregistration_by_lifetime_expiry_serving_only():
    n = net(Mode.PROXY, timers=Timers(lifetime=40), dereg=Dereg.SERVING_ONLY)
    n.attach("maar1", "mn1")
    n.run(0.1)
    n.detach("maar1", "mn1")
    n.attach("maar2", "mn1")
    n.run(0.1)
    n.detach("maar2", "mn1")  # leaves the domain: no re-registration, lifetime runs out
    mark = len(n.log)
    n.run(45)
    seq = n.messages(mark)
    # maar1's audit (its anchor's lifetime, from the CMD's PBU, ends at about the same time) may
    # come between maar2's de-registration and its answer; the CMD's PBU to maar1 ends it either way.
    assert seq[0] == ("maar2", "cmd", "PBU") and ("cmd", "maar2", "PBA") in seq
    assert ("cmd", "maar1", "PBU") in seq and ("maar1", "cmd", "PBA") in seq
    assert "mn1" not in n.cmd.cache
    assert all(not m.bindings for m in n.maars.values())
    assert n.dataplane[("maar1", "mn1")].empty and n.dataplane[("maar2", "mn1")].empty
    # the prefixes come back only after MinDelayBeforeBCEDelete
    assert n.maars["maar1"].pool.in_use == 0


def test_reregistration_keeps_session_while_attached():
    n = net(Mode.PROXY, timers=Timers(lifetime=40))
    n.attach("maar1", "mn1")
    n.run(200)
    rereg = [d.msg for d in n.log if d.src == A1 and d.msg.handoff == 5]
    assert len(rereg) >= 5 and "mn1" in n.cmd.cache
    assert n.dataplane[("maar1", "mn1")].local


def test_renewal_variant_pmaar_deregisters_and_is_renewed():
    n = net(Mode.PROXY, timers=Timers(lifetime=40), dereg=Dereg.RENEWAL)
    n.attach("maar1", "mn1")
    n.run(0.1)
    n.attach("maar2", "mn1")
    n.run(60)  # the MN stays at maar2; maar1's BCE expires and is renewed by the CMD
    dereg = [d.msg for d in n.log if d.src == A1 and type(d.msg).__name__ == "BindingUpdate"]
    assert dereg and dereg[-1].lifetime == 0
    renew = [d.msg for d in n.log if d.dst == A1 and d.msg.lifetime > 0 and type(d.msg).__name__ == "BindingAck"]
    assert renew
    assert n.reports_of("renewed", "cmd")
    assert n.dataplane[("maar1", "mn1")].to_serving == (TunnelToServing(P1, A2),)


def test_serving_only_variant_pmaar_audits_and_keeps_state():
    """Was: no timer at all (a P-MAAR kept its state forever). Now the anchor asks the CMD at the
    end of the lifetime the CMD gave it (docs/mobility.md, Decisions: P-MAAR audit) and keeps its
    state while the CMD renews it."""
    n = net(Mode.PROXY, timers=Timers(lifetime=40), dereg=Dereg.SERVING_ONLY)
    n.attach("maar1", "mn1")
    n.run(0.1)
    n.attach("maar2", "mn1")
    mark = len(n.log)
    n.run(120)
    audits = [d for d in n.log[mark:] if d.src == A1 and type(d.msg).__name__ == "BindingUpdate"]
    assert audits and all(d.msg.lifetime == 0 for d in audits)
    assert 2 <= len(audits) <= 4  # about one per 32-40 s (the renewal grants the session's remaining lifetime)
    assert n.reports_of("renewed", "cmd")
    assert n.dataplane[("maar1", "mn1")].to_serving == (TunnelToServing(P1, A2),)


def test_audit_removes_an_anchor_the_cmd_no_longer_lists():
    """A P-MAAR whose de-registration from the CMD was lost asks at its lifetime's end; the CMD,
    with no such anchor, answers lifetime 0 and the P-MAAR removes it."""
    n = net(Mode.PROXY, timers=Timers(lifetime=40), dereg=Dereg.SERVING_ONLY)
    n.attach("maar1", "mn1")
    n.run(0.1)
    n.attach("maar2", "mn1")
    n.run(0.1)
    n.cmd.cache["mn1"].pmaars = ()  # the CMD forgot the anchor (white box: as if its PBU to maar1 was lost)
    n.run(45)
    assert "mn1" not in n.maars["maar1"].bindings
    assert n.dataplane[("maar1", "mn1")].empty


def test_cmd_lifetime_expiry_removes_state_everywhere():
    n = net(Mode.PROXY, timers=Timers(lifetime=40, max_tries=1))
    n.attach("maar1", "mn1")
    n.run(0.1)
    n.attach("maar2", "mn1")
    n.run(0.1)
    del n.nodes[A2]  # the serving MAAR dies: no re-registration, no de-registration
    n.run(60)
    assert "mn1" not in n.cmd.cache
    assert not n.maars["maar1"].bindings
    assert n.reports_of("deregistered", "cmd")[0].detail == "lifetime expired"


def test_retransmission_backoff_and_failure_report():
    n = net(Mode.PROXY, timers=Timers(max_tries=5))
    del n.nodes[n.domain.cmd_address]  # the CMD is unreachable
    n.attach("maar1", "mn1")
    n.run(100)
    sends = [d.at - n.log[0].at for d in n.log if d.src == A1]
    # 1 s doubling (RFC 5213 §6.9.4); after max_tries the MN, still attached, is asked for again
    # MAX_BINDACK_TIMEOUT (32 s) after the failure at 31 s, with a full set of tries
    assert [round(s) for s in sends] == [0, 1, 3, 7, 15, 63, 64, 66, 70, 78]
    stamps = [d.msg.timestamp for d in n.log if d.src == A1]
    assert stamps == sorted(set(stamps))  # each retransmission carries a fresh timestamp
    failed = n.reports_of("failed", "maar1")
    assert failed and "after 5 tries" in failed[0].detail
    assert n.maars["maar1"].bindings["mn1"].role is Role.REGISTERING  # no RA: nothing offered yet
    n.detach("maar1", "mn1")  # the MN left: the registration is given up
    n.run(100)
    assert not n.maars["maar1"].bindings and n.maars["maar1"].pool.in_use == 0


def test_rate_limit_three_pbus_per_second_per_peer_and_mn():
    n = net(Mode.PROXY)
    for _ in range(3):  # ping-pong faster than MAX_UPDATE_RATE
        for maar in ("maar1", "maar2"):
            n.attach(maar, "mn1")
            n.detach(maar, "mn1")
            n.run(0.05)
    n.run(5)
    for maar in ("maar1", "maar2"):
        times = sorted(d.at for d in n.log if d.src == n.maars[maar].address and type(d.msg).__name__ == "BindingUpdate")
        for i in range(len(times) - 3):
            assert times[i + 3] - times[i] >= 1.0 - 1e-9
