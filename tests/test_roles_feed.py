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
