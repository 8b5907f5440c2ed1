"""Switch leases in a real Redis (ryu_dmm/roles/redislease.py): one holder per switch, renewal,
release, expiry, and generation ids that only go up, even when Redis lost its counter."""
import threading
import time

import pytest

from ryu_dmm.lab import redisd
from ryu_dmm.roles.election import Claim, Outcome
from ryu_dmm.roles.redislease import RedisLeases
from tests.redisd import redis_server, redis_url  # noqa: F401 (fixtures)

DPIDS = {"m1": 1, "m2": 2}


def leases(url, inst, ttl=1.5):
    return RedisLeases.from_url(url, inst, DPIDS, ttl)


def test_one_holder_renewal_release_and_reads(redis_url):  # noqa: F811
    a, b = leases(redis_url, "a"), leases(redis_url, "b")
    (m1, m2) = a.round([Claim("m1")])
    assert m1.holder == "a" and m1.generation > 0 and m2 == Outcome("m2", None, 0)
    got = b.round([Claim("m1"), Claim("m2")])
    assert got[0] == m1  # a holds it: b learns who, with a's generation
    assert got[1].holder == "b" and got[1].generation > 0
    assert a.round([Claim("m1")])[0] == m1  # a renewal keeps the generation
    a.release(["m1", "m2"])  # m2 is not a's: untouched
    assert b.round([])[1].holder == "b"
    taken = b.round([Claim("m1")])[0]
    assert taken.holder == "b" and taken.generation > m1.generation
    a.close(), b.close()


def test_a_lease_not_renewed_ends_after_its_ttl(redis_url, redis_server):  # noqa: F811
    a, b = leases(redis_url, "a", ttl=0.3), leases(redis_url, "b", ttl=0.3)
    first = a.round([Claim("m1")])[0]
    assert redisd.command(redis_server.port, "PTTL", "dmm:role:0000000000000001").strip(b":\r\n").isdigit()
    assert b.round([Claim("m1")])[0].holder == "a"
    time.sleep(0.35)
    second = b.round([Claim("m1")])[0]
    assert second.holder == "b" and second.generation > first.generation


def test_the_generation_goes_up_even_if_redis_lost_its_counter(redis_url, redis_server):  # noqa: F811
    a = leases(redis_url, "a")
    before = time.time()
    g1 = a.round([Claim("m1")])[0].generation
    # at least Redis's clock in microseconds (the same machine's clock here)
    assert g1 >= int(before * 1e6) - 1_000_000
    assert redisd.command(redis_server.port, "SET", "dmm:rolegen:0000000000000001", "5").startswith(b"+OK")
    bumped = a.round([Claim("m1", bump=True)])[0]
    assert bumped.holder == "a" and bumped.generation > g1


def test_claims_of_many_instances_at_once_have_one_winner(redis_url):  # noqa: F811
    many = [leases(redis_url, f"i{n}") for n in range(8)]
    start, outcomes = threading.Barrier(len(many)), []

    def claim(m):
        start.wait()
        outcomes.append(m.round([Claim("m2")])[0])
    threads = [threading.Thread(target=claim, args=(m,)) for m in many]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert len(outcomes) == 8
    assert len({o.holder for o in outcomes}) == 1 and len({o.generation for o in outcomes}) == 1


@pytest.mark.parametrize("bad", ["redis://127.0.0.1:1/0"])
def test_an_unreachable_redis_raises_quickly(bad):
    a = leases(bad, "a")
    started = time.monotonic()
    with pytest.raises(Exception):
        a.round([Claim("m1")])
    assert time.monotonic() - started < 1.0
