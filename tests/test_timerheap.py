"""The one timer heap every shell drives: order, replacement, cancellation, bounded memory."""
from ryu_dmm.timerheap import COMPACT_MIN, TimerHeap


def test_due_keys_come_in_deadline_order_and_once():
    h = TimerHeap()
    h.set("b", 20.0)
    h.set("a", 10.0)
    h.set("c", 30.0)
    assert h.next_at() == 10.0
    assert h.pop_due(25.0) == ["a", "b"]
    assert h.pop_due(25.0) == []
    assert h.pop_due(30.0) == ["c"] and len(h) == 0 and h.next_at() is None


def test_setting_again_replaces_and_cancel_removes():
    h = TimerHeap()
    h.set("x", 10.0)
    h.set("x", 50.0)  # one live entry per key: the old deadline must not fire
    h.set("y", 20.0)
    h.cancel("y")
    assert h.pop_due(40.0) == [] and h.next_at() == 50.0 and h.deadline("x") == 50.0
    assert h.pop_due(50.0) == ["x"]
    h.cancel("never-set")  # harmless


def test_set_reports_a_new_earliest_deadline():
    h = TimerHeap()
    assert h.set("a", 10.0)  # a sleeper must be woken for it
    assert not h.set("b", 20.0)
    assert h.set("c", 5.0)


def test_rearming_one_key_300k_times_keeps_memory_bounded():
    """The issue's measurement: re-registering one MN 300k times left a stale entry each time."""
    h = TimerHeap()
    for i in range(300_000):
        h.set(("life", "mn1"), 1000.0 + i)
    assert len(h) == 1
    assert h.entries <= COMPACT_MIN + 1
    assert h.pop_due(1e9) == [("life", "mn1")]


def test_cancelled_entries_are_reclaimed_with_many_live_timers():
    h = TimerHeap()
    for i in range(5000):
        h.set(i, float(i))
    for i in range(0, 5000, 2):
        h.cancel(i)
    for _ in range(3):  # churn: cancelled and re-armed keys
        for i in range(0, 5000, 2):
            h.set(i, 1e6 + i)
            h.cancel(i)
    assert len(h) == 2500 and h.entries <= 2 * 2500 + 1
    assert h.pop_due(1e9) == list(range(1, 5000, 2))
