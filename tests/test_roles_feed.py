"""The change feed (ryu_dmm/roles/feed.py) on a real Redis: what one instance publishes reaches the
others, not itself; after subscribing it re-reads everything; foreign or bad messages are ignored."""
import json
import logging
import time

import redis

from ryu_dmm.logsafe import Guard, SafeLog
from ryu_dmm.roles.feed import ChangeFeed
from tests.procs import wait_for
from tests.redisd import redis_server, redis_url  # noqa: F401 (fixtures)


def feed(url, name, got, gaps):
    guard = Guard(lambda _: None, SafeLog(logging.getLogger("test.feed")))
    return ChangeFeed(redis.Redis.from_url(url), "dmm:changed", name, got.extend, lambda: gaps.append(name), guard)


def test_published_changes_reach_the_other_instances_only(redis_url):  # noqa: F811
    import threading
    got_a, got_b, gaps = [], [], []
    a, b = feed(redis_url, "a", got_a, gaps), feed(redis_url, "b", got_b, gaps)
    done, errors = [], []

    def listen(f):  # (the feed's loop is a greenthread in the CMD; here a plain thread runs it)
        try:
            f._listen()
        except Exception as exc:  # noqa: BLE001 - the end of the test disconnects it
            if not done:
                errors.append(exc)
    threads = [threading.Thread(target=listen, args=(f,), daemon=True) for f in (a, b)]
    for t in threads:
        t.start()
    assert wait_for(lambda: sorted(gaps) == ["a", "b"], 5)  # each re-read once it listened
    a._publish(["mn1", "mn\udc802"])  # any MN-ID (surrogate-escaped bytes) goes through
    r = redis.Redis.from_url(redis_url)
    r.publish("dmm:changed", b"not json")
    r.publish("dmm:changed", json.dumps({"from": "c", "mns": "mn3"}))  # not a list
    r.publish("dmm:changed", json.dumps({"from": "c", "mns": ["mn4", 5]}))
    assert wait_for(lambda: got_b == ["mn1", "mn\udc802", "mn4"], 5), got_b
    time.sleep(0.2)
    assert got_a == ["mn4"]  # its own message is not news to it
    assert (a.counts["published"], b.counts["received"]) == (1, 2)
    done.append(True)
    for f in (a, b):
        f._r.connection_pool.disconnect()
    for t in threads:
        t.join(5)
        assert not t.is_alive()
    assert errors == []


def test_more_than_max_ids_mns_in_a_message_mean_a_full_re_read():
    from ryu_dmm.roles.feed import MAX_IDS
    got, gaps = [], []
    f = ChangeFeed(None, "dmm:changed", "a", got.extend, lambda: gaps.append(1), None)
    f._message(json.dumps({"from": "b", "mns": [f"mn{i}" for i in range(MAX_IDS)]}).encode())
    assert len(got) == MAX_IDS == 4096 and not gaps
    f._message(json.dumps({"from": "b", "mns": [f"mn{i}" for i in range(MAX_IDS + 1)]}).encode())
    assert len(got) == MAX_IDS and gaps == [1]


class Redis:
    """What the feed's publisher uses of redis-py: ``publish`` (recorded, or failing)."""

    def __init__(self):
        self.sent, self.fail = [], False

    def publish(self, channel, data):
        if self.fail:
            raise redis.ConnectionError("down")
        self.sent.append(json.loads(data))


def test_publishing_coalesces_in_one_bounded_queue_and_overflows_into_a_full_re_read():
    from ryu_dmm.roles.feed import MAX_PENDING
    assert MAX_PENDING == 65536
    r = Redis()
    f = ChangeFeed(r, "dmm:changed", "a", None, None, None)
    f.max_pending = 3
    f.publish(["mn1", "mn2"])
    f.publish(["mn1", "mn3"])  # mn1 again: once; three pending, at the bound
    assert list(f._pending) == ["mn1", "mn2", "mn3"] and r.sent == []  # nothing sent on the caller's greenthread
    f._flush()
    assert r.sent == [{"from": "a", "mns": ["mn1", "mn2", "mn3"]}] and f.counts["dropped"] == 0
    f.publish(["mn4", "mn5", "mn6", "mn7"])  # one over the bound: all four dropped, a full re-read asked
    f.publish(["mn8"])
    assert not f._pending and f.counts["dropped"] == 5
    f._flush()
    assert r.sent[1] == {"from": "a", "mns": [], "all": True} and f.counts["asked_reread"] == 1
    f.publish(["mn9"])  # back to normal
    f._flush()
    assert r.sent[2] == {"from": "a", "mns": ["mn9"]} and not f._pending


def test_a_failed_publish_asks_for_a_full_re_read_next():
    r = Redis()
    f = ChangeFeed(r, "dmm:changed", "a", None, None, None)
    f.publish(["mn1"])
    r.fail = True
    try:
        f._flush()
    except redis.ConnectionError:
        pass
    assert f.counts["publish_failed"] == 1 and f.counts["dropped"] == 1
    r.fail = False
    f._flush()
    assert r.sent == [{"from": "a", "mns": [], "all": True}]


def test_a_message_asking_for_everything_is_a_full_re_read():
    got, gaps = [], []
    f = ChangeFeed(None, "dmm:changed", "a", got.extend, lambda: gaps.append(1), None)
    f._message(json.dumps({"from": "b", "mns": [], "all": True}).encode())
    assert gaps == [1] and got == []


def test_one_publisher_however_many_checks_win_while_redis_is_slow():
    """A won check costs no greenthread: 1,000 publishes while Redis takes 0.1 s per message go
    out as few messages, one at a time."""
    from ryu_dmm.runtime import hub
    calls, busy = [], []

    class Slow(Redis):
        def publish(self, channel, data):
            busy.append(1)
            assert len(busy) == 1  # never two at once
            hub.sleep(0.1)
            calls.append(json.loads(data))
            busy.pop()
    guard = Guard(lambda _: None, SafeLog(logging.getLogger("test.feed")))
    f = ChangeFeed(Slow(), "dmm:changed", "a", None, None, guard)
    f._publisher = hub.spawn(f._drain)
    try:
        for i in range(1000):
            f.publish([f"mn{i}"])
            if i % 100 == 0:
                hub.sleep(0)
        deadline = time.monotonic() + 5
        while (f._pending or busy) and time.monotonic() < deadline:
            hub.sleep(0.05)
        assert sorted(m for c in calls for m in c["mns"]) == sorted(f"mn{i}" for i in range(1000))
        assert len(calls) <= 11
    finally:
        f.stop()
