"""The agent's bounded bookkeeping (ryu_dmm/agent/guard.py) and its guarded loop, on hand-worked
timelines: which hit is allowed, which refused, how big the tables get."""
import socket

import pytest

from ryu_dmm.agent import guard
from ryu_dmm.agent.loop import Loop


def test_window_limiter_allows_limit_hits_in_any_window():
    w = guard.WindowLimiter(limit=3, window=1.0, max_keys=10)
    for t in (0.0, 0.1, 0.2):
        assert w.check("a", t) is None
        w.hit("a", t)
    assert w.check("a", 0.3) == "rate"  # the 4th inside [0, 1)
    assert w.check("a", 0.999) == "rate"
    assert w.check("a", 1.0) is None  # the hit at 0.0 is a full window old
    w.hit("a", 1.0)
    assert w.check("a", 1.05) == "rate"  # 0.1, 0.2, 1.0 are inside (0.05, 1.05]
    assert w.check("b", 0.3) is None  # keys are independent


def test_window_limiter_table_is_bounded_and_refuses_when_full_of_live_keys():
    w = guard.WindowLimiter(limit=1, window=10.0, max_keys=2)
    for key, t in (("a", 0.0), ("b", 1.0)):
        assert w.check(key, t) is None
        w.hit(key, t)
    assert w.check("c", 5.0) == "full" and len(w) == 2  # both a and b are live: nobody is forgotten
    assert w.check("c", 10.0) is None  # a's hit is 10 s old: a is dropped, c fits
    w.hit("c", 10.0)
    assert len(w) == 2
    assert w.check("a", 10.5) == "full"  # a was forgotten; b (hit at 1.0) and c are live
    assert w.check("b", 10.5) == "rate"
    assert w.check("a", 11.0) is None  # b's hit is 10 s old now


def test_attach_limiter_new_mns_per_port_and_triggers_per_mac():
    lim = guard.AttachLimiter(new_limit=2, new_window=60.0, mac_limit=3, mac_window=1.0)
    mac = [bytes([2, 0, 0, 0, 0, i]) for i in range(10)]
    assert lim.check(mac[0], 1, True, 0.0) is None
    assert lim.check(mac[1], 1, True, 0.1) is None
    assert lim.check(mac[2], 1, True, 0.2) == "refused_new_mn_rate"  # the 3rd new MN on port 1 in 60 s
    assert lim.check(mac[2], 2, True, 0.2) is None  # another port has its own budget
    assert lim.check(mac[0], 1, False, 0.3) is None  # a known MN is not a new one: port budget not used
    assert lim.check(mac[0], 1, False, 0.4) is None
    assert lim.check(mac[0], 1, False, 0.5) == "refused_mac_rate"  # its 4th trigger within 1 s
    assert lim.check(mac[0], 1, False, 1.0) is None  # the one at 0.0 left the window
    assert lim.check(mac[3], 1, True, 59.99) == "refused_new_mn_rate"
    assert lim.check(mac[3], 1, True, 60.0) is None  # the new MN at 0.0 left the window
    # refused triggers are not remembered: a flood of new MACs leaves the tables as they were
    before = (len(lim.macs), len(lim.ports))
    for i in range(200):
        assert lim.check(bytes([2, 1, 0, 0, i // 256, i % 256]), 1, True, 60.05) == "refused_new_mn_rate"
    assert (len(lim.macs), len(lim.ports)) == before


def test_attach_limiter_full_mac_table_refuses():
    lim = guard.AttachLimiter(new_limit=100, mac_limit=1, mac_window=1.0, max_macs=2)
    assert lim.check(b"\x02" * 6, 1, True, 0.0) is None
    assert lim.check(b"\x04" * 6, 1, True, 0.0) is None
    assert lim.check(b"\x06" * 6, 1, True, 0.5) == "refused_limiter_full"
    assert lim.check(b"\x06" * 6, 1, True, 1.0) is None


def test_line_limiter_burst_then_counts_what_it_held_back():
    lines = guard.LineLimiter(burst=2, window=10.0)
    assert lines.allow("x", 0.0) == (True, 0)
    assert lines.allow("x", 1.0) == (True, 0)
    assert [lines.allow("x", t) for t in (2.0, 3.0, 9.9)] == [(False, 0)] * 3
    assert lines.allow("y", 5.0) == (True, 0)  # kinds are independent
    assert lines.allow("x", 10.0) == (True, 3)  # a new window: the first line tells of the 3 held back
    assert lines.allow("x", 11.0) == (True, 0)


@pytest.mark.parametrize("bad", [dict(limit=0, window=1, max_keys=1), dict(limit=1, window=0, max_keys=1),
                                 dict(limit=1, window=1, max_keys=0)])
def test_window_limiter_rejects_meaningless_bounds(bad):
    with pytest.raises(ValueError):
        guard.WindowLimiter(**bad)


def test_lru_dict_keeps_the_last_max_keys():
    d = guard.LruDict(3)
    for i in range(5):
        d[i] = i
    assert list(d) == [2, 3, 4]
    d[2] = "again"  # setting refreshes
    d[5] = 5
    assert list(d) == [4, 2, 5]


def test_counters_start_at_zero():
    c = guard.Counters()
    assert set(c) == set(guard.COUNTERS) and not any(c.values())
    c.add("decode_errors")
    assert c["decode_errors"] == 1


def test_loop_survives_a_raising_reader_and_timer():
    errors, served, fired = [], [], []

    def on_timer(key):
        if key == "bad":
            raise RuntimeError("timer bug")
        fired.append(key)
    loop = Loop(on_timer, lambda where, exc: errors.append((where, str(exc))))
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    c, d = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b, c, d:
        def bad_reader():
            b.recv(10)
            raise ValueError("reader bug")
        loop.add_reader(b, bad_reader, "bad")
        loop.add_reader(d, lambda: served.append(d.recv(10)), "good")
        loop.timers.set("bad", 0.0)
        loop.timers.set("good", 0.0)
        a.send(b"1")
        c.send(b"2")
        loop.run_once(0.5)
        a.send(b"3")
        loop.run_once(0.5)
    assert fired == ["good"] and served == [b"2"]
    assert errors == [("timer", "timer bug"), ("bad", "reader bug"), ("bad", "reader bug")]


def test_loop_survives_a_raising_error_hook(capsys):
    def hook(where, exc):
        raise RuntimeError("hook bug")
    loop = Loop(lambda key: 1 / 0, hook)
    loop.timers.set("k", 0.0)
    loop.run_once(0.0)
    assert "ZeroDivisionError" in capsys.readouterr().err
