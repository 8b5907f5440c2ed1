"""The Redis backend (ryu_dmm/store/redisstore.py) against a real redis-server (tests/redisd.py):
the stored layout (read back with redis-py, not our code), round trip, MN IDs of any bytes,
corrupt and foreign data, an unreachable server, WAIT for replicas, and Sentinel fail-over."""
import struct
import time

import pytest
import redis

from ryu_dmm.domainconf import StoreSettings
from ryu_dmm.lab import redisd
from ryu_dmm.store import Batch, StoreError
from ryu_dmm.store.redisstore import RedisStore, pack, unpack
from tests.test_store_units import A1, A2, A3, MAC, P1, P2, P3, record


def settings(url="", **kw) -> StoreSettings:
    return StoreSettings(backend="redis", url=url, **kw)


def test_a_session_is_packed_as_documented():
    """Hand-worked: serving 2001:db8:ff::2, prefix 2001:db8:2::/64, expires 1,800,000,000.5 (IEEE
    double), ATT 3, timestamp 123456789 << 16, sequence 65535, handover 0, a 6-byte MAC, then the
    P-MAAR 2001:db8:ff::1 with 2001:db8:1::/64."""
    want = (bytes.fromhex("20010db800ff00000000000000000002") + bytes.fromhex("20010db8000200000000000000000000")
            + b"\x40" + struct.pack(">d", 1_800_000_000.5) + b"\x03" + (123456789 << 16).to_bytes(8, "big")
            + (65535).to_bytes(4, "big") + b"\x00" + b"\x06" + MAC
            + bytes.fromhex("20010db800ff00000000000000000001") + bytes.fromhex("20010db8000100000000000000000000")
            + b"\x40")
    assert pack(record()) == want
    assert unpack(b"mn1", want) == record()


@pytest.mark.parametrize("blob", [b"", b"\x00" * 10, pack(record())[:-5], pack(record()) + b"\x01"])
def test_a_blob_that_is_not_a_session_is_refused(blob):
    with pytest.raises(ValueError):
        unpack(b"mn1", blob)


def test_round_trip_layout_and_restart_counter_kept(redis_url):
    store = RedisStore(settings(redis_url))
    first = store.load()
    assert first.fresh and first.sessions == [] and 0 < first.restart_counter < 2**32
    r2 = record("mn2", A3, P3, ((A1, P1), (A2, P2)), handover=True)
    store.write(Batch(1, {"mn1": record(), "mn2": r2}, {(A2, MAC): 10}, {"seq:" + A1: "1024"}))
    store.write(Batch(2, {"mn1": None}, {(A2, MAC): None, (A3, MAC): 7}, {}))
    store.close()
    raw = redis.Redis.from_url(redis_url)
    assert raw.hkeys("dmm:sessions") == [b"mn2"]
    assert raw.hgetall("dmm:ports") == {f"{A3}|{MAC.hex()}".encode(): b"7"}
    assert raw.hget("dmm:meta", "seq:" + A1) == b"1024" and raw.hget("dmm:meta", "schema") == b"1"
    again = RedisStore(settings(redis_url))
    loaded = again.load()
    again.close()
    assert not loaded.fresh and loaded.restart_counter == first.restart_counter
    assert loaded.sessions == [r2] and loaded.ports == {(A3, MAC): 7} and loaded.meta["seq:" + A1] == "1024"


def test_namespaces_keep_two_domains_apart(redis_url):
    a, b = RedisStore(settings(redis_url, namespace="a")), RedisStore(settings(redis_url, namespace="b"))
    a.load(), b.load()
    a.write(Batch(1, {"mn1": record()}))
    assert b.load().sessions == [] and a.load().sessions == [record()]
    assert sorted(redis.Redis.from_url(redis_url).keys("*:sessions")) == [b"a:sessions"]


def test_any_mn_id_bytes_are_stored_and_come_back(redis_url):
    odd = b"mn-\xe7\xff\x00@x".decode("utf-8", "surrogateescape")
    store = RedisStore(settings(redis_url))
    store.load()
    store.write(Batch(1, {odd: record(odd)}))
    assert redis.Redis.from_url(redis_url).hkeys("dmm:sessions") == [b"mn-\xe7\xff\x00@x"]
    assert store.load().sessions == [record(odd)]


def test_corrupt_and_foreign_data_are_clear_errors(redis_url):
    store = RedisStore(settings(redis_url))
    store.load()
    raw = redis.Redis.from_url(redis_url)
    raw.hset("dmm:sessions", "mnx", b"\x00" * 3)
    with pytest.raises(StoreError, match="mnx") as err:
        store.load()
    assert err.value.kind == "corrupt"
    raw.hdel("dmm:sessions", "mnx")
    raw.hset("dmm:meta", "restart_counter", b"\xff")  # not UTF-8: read back, it must be refused, not raise
    with pytest.raises(StoreError, match="corrupt") as err:
        store.load()
    assert err.value.kind == "corrupt"
    raw.hset("dmm:meta", "restart_counter", "1")
    raw.hset("dmm:meta", "schema", "7")
    with pytest.raises(StoreError, match="schema") as err:
        store.load()
    assert err.value.kind == "schema"


def test_an_unreachable_server_is_a_clear_error():
    url = f"redis://127.0.0.1:{redisd.free_port()}/0"  # nothing listens there
    with pytest.raises(StoreError) as err:
        RedisStore(settings(url, timeout=0.2)).load()
    assert err.value.kind == "io" and url in str(err.value)


def test_wait_replicas_fails_a_write_no_replica_acknowledged(redis_url):
    store = RedisStore(settings(redis_url, wait_replicas=1, wait_timeout_ms=50))
    store.load()
    with pytest.raises(StoreError, match="0 of 1 replica"):
        store.write(Batch(1, {"mn1": record()}))


def test_sentinel_wait_for_the_replica_and_a_fail_over(redis_cluster):
    """Through the sentinels: a write waits for the replica; the primary is killed; the sentinels
    promote the replica, which has the write; the same client finds the new primary on its own.
    With no replica left, a store that must WAIT for one refuses every write (its PBAs wait)."""
    c = redis_cluster
    where = tuple(("127.0.0.1", s.port) for s in c.sentinels)
    waiting = RedisStore(settings(sentinels=where, service=redisd.SERVICE, wait_replicas=1, wait_timeout_ms=2000))
    waiting.load()
    waiting.write(Batch(1, {"mn1": record()}))
    assert redis.Redis(port=c.replica.port).hkeys("dmm:sessions") == [b"mn1"]  # WAIT: the replica has it
    plain = RedisStore(settings(sentinels=where, service=redisd.SERVICE, timeout=0.5))
    plain.load()
    c.primary.kill()
    c.wait_primary(c.replica.port)
    failed = 0
    for _ in range(20):  # the client asks the sentinels again after an error (the writer retries so)
        try:
            plain.write(Batch(2, {"mn2": record("mn2", A3, P3, ())}))
            break
        except StoreError:  # (the promoted replica may still refuse writes for a moment: READONLY)
            failed += 1
            time.sleep(0.25)
    assert failed < 20
    assert sorted(r.mn_id for r in plain.load().sessions) == ["mn1", "mn2"]
    with pytest.raises(StoreError):
        waiting.write(Batch(3, {"mn3": record("mn3", A1, P1, ())}))
    waiting.close()
    plain.close()


def test_check_and_set_one_winner_and_the_loser_sees_the_winner(redis_url):
    a = RedisStore(settings(redis_url, active_active=True, instance="a"))
    b = RedisStore(settings(redis_url, active_active=True, instance="b"))
    a.load(), b.load()
    mine, theirs = record(), record(serving=A3, prefix=P3)
    won = a.cas([[("mn1", 0, mine)]])[0]
    assert won.won and won.versions["mn1"] > 0
    lost = b.cas([[("mn1", 0, theirs)], [("mn2", 0, theirs)]])  # two events: mn1 lost, mn2 won
    assert not lost[0].won and lost[1].won
    assert [(c.mn_id, c.version, c.record, c.owner) for c in lost[0].lost] == [("mn1", won.versions["mn1"], mine, "a")]
    raw = redis.Redis.from_url(redis_url)
    assert raw.smembers("dmm:owned:a") == {b"mn1"} and raw.smembers("dmm:owned:b") == {b"mn2"}
    # several sessions in one event: all or nothing (mn2's version is stale here)
    both = a.cas([[("mn1", won.versions["mn1"], None), ("mn2", 0, mine)]])[0]
    assert not both.won and raw.hexists("dmm:sessions", "mn1")
    gone = a.cas([[("mn1", won.versions["mn1"], None)]])[0]
    assert gone.won and gone.versions == {"mn1": 0} and not raw.hexists("dmm:sessions", "mn1")
    assert raw.smembers("dmm:owned:a") == set()


def test_versions_never_repeat_after_the_clock_is_lost(redis_url):
    """A fail-over may lose the last writes, the clock's too: new versions stay above the old ones."""
    a = RedisStore(settings(redis_url, active_active=True, instance="a"))
    a.load()
    v1 = a.cas([[("mn1", 0, record())]])[0].versions["mn1"]
    redis.Redis.from_url(redis_url).delete("dmm:clock")
    v2 = a.cas([[("mn2", 0, record("mn2"))]])[0].versions["mn2"]
    assert v2 > v1


def test_leases_and_one_claim_per_dead_instance(redis_url):
    a = RedisStore(settings(redis_url, active_active=True, instance="a"))
    b = RedisStore(settings(redis_url, active_active=True, instance="b"))
    c = RedisStore(settings(redis_url, active_active=True, instance="c"))
    for s in (a, b, c):
        s.load()
    a.cas([[("mn1", 0, record())]])
    assert a.renew_lease(0.2) == [] and b.renew_lease(5) == [] and c.renew_lease(5) == []
    time.sleep(0.3)  # a's lease runs out
    assert b.renew_lease(5) == ["a"] and c.renew_lease(5) == ["a"]
    assert b.claim("a", 5) == ["mn1"] and c.claim("a", 5) == []  # only one takes it over
    assert set(b.instances()) == {"a", "b", "c"} and b.instances()["a"] == {"alive": False, "sessions_owned": 1}
