"""The RFC 5847 heartbeat monitor (mobility/heartbeat.py): event by event, with the expected effects
written out by hand from RFC 5847 §3 and §5 (FACTS.md, "Liveness and restart")."""
import pytest

from ryu_dmm import domainconf
from ryu_dmm.mobility.config import Timers
from ryu_dmm.mobility.events import Report, ReportKind, Send, SetTimer
from ryu_dmm.mobility.heartbeat import HeartbeatKey, Heartbeats, PeerRestarted, PeerView
from ryu_dmm.wire import Heartbeat, RestartCounter

P = "2001:db8:ff::100"
OWN = 7
KEY = HeartbeatKey(P)


def request(seq, counter=OWN):
    return Heartbeat(seq, options=(RestartCounter(counter),))


def answer(seq, counter=OWN):
    return Heartbeat(seq, response=True, options=(RestartCounter(counter),))


def started(interval=5.0, missing=3, known=None):
    hb = Heartbeats(OWN, interval, missing)
    (first,) = hb.watch(P, 1000.0, known)
    assert type(first) is SetTimer and first.key == KEY
    return hb, first.at


def test_first_request_soon_then_one_per_interval():
    hb, t0 = started()
    assert 1000.0 <= t0 < 1005.0  # within one interval of watching
    assert hb.handle_timer(KEY, t0) == [Send(P, request(1)), SetTimer(KEY, t0 + 5)]
    assert hb.handle_message(P, answer(1, 3), t0 + 0.01) == ([], None)
    assert hb.handle_timer(KEY, t0 + 5) == [Send(P, request(2)), SetTimer(KEY, t0 + 10)]
    assert hb.view(P) == PeerView(P, True, t0 + 0.01, 3, 0, 0)


def test_many_peers_do_not_fire_together():
    hb = Heartbeats(OWN, 60.0, 3)
    firsts = [hb.watch(f"2001:db8:ff::{i:x}", 1000.0)[0].at for i in range(1, 17)]
    assert len(set(firsts)) == 16 and all(1000.0 <= t < 1060.0 for t in firsts)  # spread over one interval
    again = Heartbeats(OWN, 60.0, 3)  # deterministic: the same peers, the same times
    assert [again.watch(f"2001:db8:ff::{i:x}", 1000.0)[0].at for i in range(1, 17)] == firsts
    short = Heartbeats(OWN, 0.2, 3)  # never later than one interval
    assert 1000.0 <= short.watch(P, 1000.0)[0].at < 1000.2


def test_unreachable_after_exactly_missing_allowed_then_reachable_again():
    hb, t0 = started(interval=5.0, missing=3)
    hb.handle_timer(KEY, t0)  # request 1, unanswered
    hb.handle_timer(KEY, t0 + 5)  # miss 1, request 2
    assert hb.view(P).missed == 1 and hb.view(P).reachable
    hb.handle_timer(KEY, t0 + 10)  # miss 2, request 3
    assert hb.view(P).reachable
    effects = hb.handle_timer(KEY, t0 + 15)  # miss 3: unreachable, request 4 still goes
    assert effects[0] == Report(ReportKind.PEER_UNREACHABLE, "", f"{P}: 3 heartbeats unanswered")
    assert effects[1:] == [Send(P, request(4)), SetTimer(KEY, t0 + 20)]
    assert hb.view(P) == PeerView(P, False, None, None, 3, 0)
    assert hb.handle_timer(KEY, t0 + 20) == [Send(P, request(5)), SetTimer(KEY, t0 + 25)]  # reported once
    effects, restarted = hb.handle_message(P, answer(5, 9), t0 + 20.5)
    assert effects == [Report(ReportKind.PEER_REACHABLE, "", f"{P}: answers heartbeats again")]
    assert restarted is None  # the first counter learnt of this peer
    assert hb.view(P) == PeerView(P, True, t0 + 20.5, 9, 0, 0)


def test_one_missing_allowed():
    hb, t0 = started(missing=1)
    hb.handle_timer(KEY, t0)
    assert hb.handle_timer(KEY, t0 + 5)[0].kind is ReportKind.PEER_UNREACHABLE


def test_wrong_or_late_sequence_is_ignored():
    hb, t0 = started()
    hb.handle_timer(KEY, t0)  # request 1
    hb.handle_timer(KEY, t0 + 5)  # miss 1, request 2
    assert hb.handle_message(P, answer(1, 4), t0 + 5.1) == ([], None)  # late: request 1 counted as missed
    assert hb.handle_message(P, answer(3, 4), t0 + 5.1) == ([], None)  # never asked
    assert hb.view(P) == PeerView(P, True, None, None, 1, 0)
    assert hb.counters["unexpected_responses"] == 2
    assert hb.handle_message(P, answer(2, 4), t0 + 5.2) == ([], None)
    assert hb.view(P) == PeerView(P, True, t0 + 5.2, 4, 0, 0)
    assert hb.handle_message(P, answer(2, 4), t0 + 5.3) == ([], None)  # a duplicate: nothing outstanding
    assert hb.counters["unexpected_responses"] == 3


def test_restart_detected_in_an_answer_against_the_known_counter():
    hb, t0 = started(known=4)
    hb.handle_timer(KEY, t0)
    effects, restarted = hb.handle_message(P, answer(1, 5), t0 + 0.1)
    assert restarted == PeerRestarted(P, 4, 5)
    assert effects == [Report(ReportKind.PEER_RESTARTED, "", f"{P}: restart counter 4 -> 5")]
    assert hb.view(P).restarts == 1 and hb.known_counters() == {P: 5}
    hb.handle_timer(KEY, t0 + 5)
    assert hb.handle_message(P, answer(2, 5), t0 + 5.1) == ([], None)  # the same counter: nothing new


def test_requests_are_answered_and_carry_restarts_too():
    hb, t0 = started(known=4)
    effects, restarted = hb.handle_message(P, request(0xDEADBEEF, 4), t0)
    assert effects == [Send(P, answer(0xDEADBEEF))] and restarted is None
    effects, restarted = hb.handle_message(P, request(0xDEADBEF0, 0), t0 + 1)  # counters may go down: any change
    assert effects[0] == Send(P, answer(0xDEADBEF0))
    assert restarted == PeerRestarted(P, 4, 0)
    # A request proves the peer is alive but does not answer ours.
    assert hb.view(P) == PeerView(P, True, t0 + 1, 0, 0, 1)


def test_a_heartbeat_without_counter_changes_nothing_known():
    hb, t0 = started(known=4)
    effects, restarted = hb.handle_message(P, Heartbeat(12), t0)
    assert effects == [Send(P, answer(12))] and restarted is None
    assert hb.known_counters() == {P: 4}


def test_sequence_numbers_wrap_at_32_bits():
    hb, t0 = started()
    hb._peers[P].seq = 0xFFFF_FFFE  # white box: 2**32 requests take too long to send
    assert hb.handle_timer(KEY, t0)[0] == Send(P, request(0xFFFF_FFFF))
    hb.handle_message(P, answer(0xFFFF_FFFF), t0 + 0.1)
    assert hb.handle_timer(KEY, t0 + 5)[0] == Send(P, request(0))
    hb.handle_message(P, answer(0), t0 + 5.1)
    assert hb.view(P).missed == 0 and hb.handle_timer(KEY, t0 + 10)[0] == Send(P, request(1))


def test_heartbeats_from_strangers_are_counted_not_kept():
    hb, t0 = started()
    for i in range(1000):
        assert hb.handle_message(f"2001:db8:dead::{i:x}", request(1, i), t0) == ([], None)
    assert hb.counters["not_a_peer"] == 1000
    assert [v.peer for v in hb.views()] == [P] and hb.known_counters() == {}
    assert hb.handle_timer(HeartbeatKey("2001:db8::1"), t0) == []


def test_interval_zero_sends_nothing_but_answers():
    hb = Heartbeats(OWN, 0, 3)
    assert hb.watch(P, 1000.0, 2) == []
    assert hb.handle_timer(KEY, 1000.0) == []
    effects, restarted = hb.handle_message(P, request(5, 3), 1001.0)
    assert effects[0] == Send(P, answer(5)) and restarted == PeerRestarted(P, 2, 3)


def test_own_counter_and_settings_are_checked():
    with pytest.raises(ValueError):
        Heartbeats(1 << 32, 1.0, 3)
    with pytest.raises(ValueError):
        Heartbeats(1, 1.0, 0)


def test_timers_keys_and_their_validation():
    assert (Timers().heartbeat_interval, Timers().missing_heartbeats_allowed) == (60.0, 3)  # RFC 5847 §5 defaults
    Timers(heartbeat_interval=0.1)
    Timers(heartbeat_interval=0)
    for bad in (0.05, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="heartbeat_interval"):
            Timers(heartbeat_interval=bad)
    with pytest.raises(ValueError, match="missing_heartbeats_allowed"):
        Timers(missing_heartbeats_allowed=0)
    base = "[dmm]\ncmd_address = ::1\n[timers]\n"
    domain, _ = domainconf.parse(base + "heartbeat_interval = 1.5\nmissing_heartbeats_allowed = 2\n")
    assert (domain.timers.heartbeat_interval, domain.timers.missing_heartbeats_allowed) == (1.5, 2)
    with pytest.raises(domainconf.ConfigError, match=r"^\[timers\] heartbeat_interval 0.01 must be 0"):
        domainconf.parse(base + "heartbeat_interval = 0.01\n")
    with pytest.raises(domainconf.ConfigError, match=r"^\[timers\] missing_heartbeats_allowed: 'x' is not a number"):
        domainconf.parse(base + "missing_heartbeats_allowed = x\n")
