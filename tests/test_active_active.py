"""Two real CMDs (ryu-manager) on one real Redis with [store] active_active (docs/deploy-cmds.md):
one MN's PBUs sent to both at once have exactly one outcome and both answers agree; a killed
instance's sessions are taken over within the lease bound, its unfinished handover completed and
its lifetime timer fired exactly once, by the survivor."""
import json
import select
import time

from ryu_dmm.mobility import messages as M
from ryu_dmm.wire import BindingAck, BindingUpdate, Prefix, decode, encode
from tests.procs import stop, wait_for
from tests.test_store_restart import MAAR1, MAAR2, P1, Cmd, peer

LEASE = 1.0
# RFC 5213 §8.9 (FACTS.md): two PBUs with one timestamp from two MAARs cannot be ordered: the later is refused
LOWER = 157
TIMERS = "\n[timers]\nlifetime = 8\nmin_delay_before_bce_delete = 1.0\naggregate_timeout = 30\n"


def pair(tmp_path, redis_url, lease=LEASE):
    cmds = [Cmd(tmp_path / n, f"backend = redis\nurl = {redis_url}\nactive_active = true\ninstance = cmd-{n}\n"
                f"lease = {lease}", TIMERS) for n in ("a", "b")]
    for c in cmds:
        c.start()
    return cmds


def finish(cmds, *socks):
    for s in socks:
        s.close()
    for c in cmds:
        if c.proc.poll() is None:
            assert stop(c.proc, timeout=15) == 0, c.log()


def answer(sock, want=BindingAck):
    data, addr = sock.recvfrom(4096)
    msg = decode(data)
    assert isinstance(msg, want), msg
    return msg, addr


def test_one_mns_pbus_at_two_instances_at_once_have_one_outcome(tmp_path, redis_url):
    a, b = pair(tmp_path, redis_url)
    m1, m2 = peer(MAAR1), peer(MAAR2)
    try:
        for i in range(20):
            mn = f"mn-{i}"
            ts = time.time()
            p1, p2 = Prefix.parse(f"2001:db8:1:{i:x}::/64"), Prefix.parse(f"2001:db8:2:{i:x}::/64")
            m1.sendto(encode(M.pbu(1, ts, mn, p1, 8, 1, 3, bytes.fromhex("020000000a01"))), ("127.0.0.1", a.udp))
            m2.sendto(encode(M.pbu(1, ts, mn, p2, 8, 1, 3, bytes.fromhex("020000000a01"))), ("127.0.0.1", b.udp))
            s1, s2 = answer(m1)[0].status, answer(m2)[0].status
            assert sorted([s1, s2]) == [0, LOWER], (mn, s1, s2)
            winner = f"::ffff:{MAAR1}" if s1 == 0 else f"::ffff:{MAAR2}"
            views = [c.get(f"/dmm/v1/sessions/{mn}") for c in (a, b)]
            assert views[0]["serving_maar"]["address"] == views[1]["serving_maar"]["address"] == winner
        st = [c.get("/dmm/v1/stats")["store"]["active_active"] for c in (a, b)]
        assert st[0]["checks_lost"] + st[1]["checks_lost"] >= 20  # every MN: one instance lost, re-read
        # REST and stats answer alike on both: an MN only B ever heard of is seen at A too
        m2.sendto(encode(M.pbu(2, time.time(), "mn-b", Prefix.parse("2001:db8:2:ff::/64"), 8, 1, 3)),
                  ("127.0.0.1", b.udp))
        assert answer(m2)[0].status == 0
        views = [c.get("/dmm/v1/sessions/mn-b") for c in (a, b)]
        assert abs(views[0].pop("lifetime_remaining") - views[1].pop("lifetime_remaining")) < 1
        assert views[0] == views[1] and views[0]["serving_maar"]["address"] == f"::ffff:{MAAR2}"
        assert a.get("/dmm/v1/stats")["sessions"] == b.get("/dmm/v1/stats")["sessions"] == 21
        owners = a.get("/dmm/v1/stats")["store"]["active_active"]["instances"]
        assert owners == b.get("/dmm/v1/stats")["store"]["active_active"]["instances"]
        assert set(owners) == {"cmd-a", "cmd-b"} and all(o["alive"] for o in owners.values())
        assert sum(o["sessions_owned"] for o in owners.values()) == 21
    finally:
        finish((a, b), m1, m2)


def test_a_handover_and_an_older_refresh_at_two_instances_end_with_the_newer(tmp_path, redis_url):
    """mn at maar1; maar1 refreshes it (timestamp t) at A and maar2 takes it over (t + 10 ms) at B, at
    once or the handover first. Whatever the order, the session ends served by maar2 with maar1
    anchoring (RFC 5213: the newer timestamp wins); the refresh is accepted only if it came first,
    else refused 157 by A, whose cache did not know of the handover (it re-reads, then refuses)."""
    a, b = pair(tmp_path, redis_url)
    m1, m2 = peer(MAAR1), peer(MAAR2)
    mac = bytes.fromhex("020000000a01")
    asked_by = set()

    def pbas(want: dict, timeout: float = 5.0) -> dict:
        """The PBAs for each socket in ``want`` (mn -> socket), answering every PBU that asks maar1 to
        anchor for maar2 (from whichever instance) meanwhile."""
        got, deadline = {}, time.monotonic() + timeout
        while len(got) < len(want) and time.monotonic() < deadline:
            for sock in select.select([m1, m2], [], [], 0.2)[0]:
                msg, addr = answer(sock, (BindingAck, BindingUpdate))
                if isinstance(msg, BindingUpdate):
                    assert sock is m1 and msg.serving_maar == f"::ffff:{MAAR2}", msg
                    asked_by.add(addr[1])
                    m1.sendto(encode(M.pba_for(msg, 0, msg.lifetime)), addr)
                else:
                    got[sock] = msg
        assert len(got) == len(want), (got, want)
        return got
    try:
        # (the test's MAARs use ephemeral ports, not 5436: an instance learns one when it hears from it)
        m1.sendto(encode(M.pbu(1, time.time(), "mn-probe", Prefix.parse("2001:db8:1:ff::/64"), 8, 1, 3)),
                  ("127.0.0.1", b.udp))
        assert pbas({m1: "mn-probe"})[m1].status == 0
        for i in range(10):
            mn, p1, p2 = f"mn-{i}", Prefix.parse(f"2001:db8:1:{i:x}::/64"), Prefix.parse(f"2001:db8:2:{i:x}::/64")
            m1.sendto(encode(M.pbu(1, time.time(), mn, p1, 8, 1, 3, mac)), ("127.0.0.1", a.udp))
            assert pbas({m1: mn})[m1].status == 0
            t = time.time()
            refresh = M.pbu(2, t, mn, p1, 8, 5, 3, mac)
            move = M.pbu(1, t + 0.01, mn, p2, 8, 3, 3, mac)
            if i % 2:  # B's handover first, for certain: A's cache is stale when the refresh comes
                m2.sendto(encode(move), ("127.0.0.1", b.udp))
                ask, addr = answer(m1, BindingUpdate)  # B asks maar1 once its check won; left open
                m1.sendto(encode(refresh), ("127.0.0.1", a.udp))  # A re-reads a handover B has open
                status = pbas({m1: mn})[m1].status
                m1.sendto(encode(M.pba_for(ask, 0, ask.lifetime)), addr)
                pba = pbas({m2: mn})[m2]
            else:  # both at once
                m1.sendto(encode(refresh), ("127.0.0.1", a.udp))
                m2.sendto(encode(move), ("127.0.0.1", b.udp))
                got = pbas({m1: mn, m2: mn})
                status, pba = got[m1].status, got[m2]
            assert status in ((LOWER,) if i % 2 else (0, LOWER)), (i, status)
            assert pba.status == 0 and [(p.maar, p.prefix) for p in pba.previous_maars] == [(f"::ffff:{MAAR1}", p1)]
            for c in (a, b):
                view = c.get(f"/dmm/v1/sessions/{mn}")
                assert view["serving_maar"]["address"] == f"::ffff:{MAAR2}", view
                assert [p["address"] for p in view["previous_maars"]] == [f"::ffff:{MAAR1}"]
        assert asked_by == {b.udp}  # A, not the owner of the handover, never re-sent it
    finally:
        finish((a, b), m1, m2)


def test_a_dead_instances_handover_and_timers_are_taken_over(tmp_path, redis_url):
    a, b = pair(tmp_path, redis_url)
    m1, m2 = peer(MAAR1), peer(MAAR2)
    p2 = Prefix.parse("2001:db8:2::/64")
    try:
        # (the test's MAARs use ephemeral ports, not 5436: an instance learns one when it hears from it)
        m1.sendto(encode(M.pbu(1, time.time(), "mn-probe", Prefix.parse("2001:db8:1:ff::/64"), 8, 1, 3)),
                  ("127.0.0.1", b.udp))
        assert answer(m1)[0].status == 0
        m1.sendto(encode(M.pbu(1, time.time(), "mn-h", P1, 8, 1, 3, bytes.fromhex("020000000a01"))),
                  ("127.0.0.1", a.udp))
        assert answer(m1)[0].status == 0
        registered = time.time()
        # handover to maar2 (relay): A asks maar1, which does not answer before A dies
        move = M.pbu(3, time.time(), "mn-h", p2, 8, 3, 3)
        m2.sendto(encode(move), ("127.0.0.1", a.udp))
        ask, _ = answer(m1, BindingUpdate)
        assert ask.serving_maar == f"::ffff:{MAAR2}"
        a.kill9()
        killed = time.monotonic()
        # B takes over within the lease bound (lease + a renewal period) and asks maar1 again
        try:
            ask, addr = answer(m1, BindingUpdate)
        except OSError:
            raise AssertionError(f"no PBU from B: {b.get('/dmm/v1/stats')}\n{b.log()}") from None
        took = time.monotonic() - killed
        assert addr[1] == b.udp and ask.serving_maar == f"::ffff:{MAAR2}"
        assert took <= LEASE + LEASE / 3 + 1.0, took
        m1.sendto(encode(M.pba_for(ask, 0, ask.lifetime)), addr)
        # maar2 retransmits its PBU, now to B (an agent moving to the next CMD): accepted, with maar1
        m2.sendto(encode(move), ("127.0.0.1", b.udp))
        pba, _ = answer(m2)
        assert pba.status == 0 and [(p.maar, p.prefix) for p in pba.previous_maars] == [(f"::ffff:{MAAR1}", P1)]
        view = b.get("/dmm/v1/sessions/mn-h")
        assert view["serving_maar"]["address"] == f"::ffff:{MAAR2}"
        takeovers = b.get("/dmm/v1/stats")["store"]["active_active"]["takeovers"]
        assert [(t["instance"], t["sessions"]) for t in takeovers] == [("cmd-a", 1)]
        # the lifetime (8 s from the move, +1 s) ends at B: both MAARs get one de-registration each, from B
        deadline = registered + 8 + 1 + 5
        m1.settimeout(max(1.0, deadline - time.time()))
        m2.settimeout(max(1.0, deadline - time.time()))
        for sock in (m1, m2):
            while True:
                dereg, addr = answer(sock, BindingUpdate)
                sock.sendto(encode(M.pba_for(dereg, 0, 0)), addr)
                if dereg.mn_id == "mn-h":  # (mn-probe, at B only, ends too)
                    break
            assert dereg.lifetime == 0 and addr[1] == b.udp
        for sock in (m1, m2):  # nothing about mn-h fires twice
            sock.settimeout(2.0)
            try:
                while True:
                    extra = decode(sock.recvfrom(4096)[0])
                    assert extra.mn_id != "mn-h", extra
            except OSError:
                pass
    finally:
        finish((a, b), m1, m2)


def test_a_clean_stop_hands_the_sessions_over_within_a_renewal_period(tmp_path, redis_url):
    lease = 3.0
    a, b = pair(tmp_path, redis_url, lease)
    m1 = peer(MAAR1)
    try:
        m1.sendto(encode(M.pbu(1, time.time(), "mn-s", P1, 8, 1, 3)), ("127.0.0.1", a.udp))
        assert answer(m1)[0].status == 0
        time.sleep(lease)  # B has renewed its own lease for a whole lease: it may judge others
        assert stop(a.proc, timeout=15) == 0, a.log()
        stopped = time.monotonic()

        def taken() -> bool:
            return [t["instance"] for t in b.get("/dmm/v1/stats")["store"]["active_active"]["takeovers"]] == ["cmd-a"]
        assert wait_for(taken, 3 * lease)
        assert time.monotonic() - stopped < lease / 3 + 1.0  # a renewal period, not a whole lease
    finally:
        finish((a, b), m1)


def test_a_redis_fail_over_under_two_instances_loses_no_accepted_pbu(tmp_path, redis_cluster):
    """Two instances through three sentinels; the primary is killed while PBUs keep coming (each
    sent again every second until answered, as a MAAR does). Every PBU is accepted in the end,
    both instances agree on every session, and no instance takes the other's sessions over
    although every lease ran out during the fail-over (down-after 1 s > lease 1 s)."""
    c = redis_cluster
    store = (f"backend = redis\nsentinels = {c.sentinel_addresses}\nservice = dmm\ntimeout = 0.5\n"
             f"active_active = true\nlease = {LEASE}")
    a, b = (Cmd(tmp_path / n, f"{store}\ninstance = cmd-{n}", TIMERS.replace("lifetime = 8", "lifetime = 3600"))
            for n in ("a", "b"))
    a.start()
    b.start()
    m1, m2 = peer(MAAR1), peer(MAAR2)
    m1.settimeout(1.0)
    m2.settimeout(1.0)

    def register(i: int) -> None:
        sock, cmd, pool = (m1, a, 1) if i % 2 == 0 else (m2, b, 2)
        for _ in range(20):  # a fresh timestamp in each copy, as a MAAR sends them (RFC 5213 §6.9.4)
            sock.sendto(encode(M.pbu(i, time.time(), f"mn-{i}", Prefix.parse(f"2001:db8:{pool}:{i:x}::/64"), 3600, 1,
                                     3, bytes.fromhex("020000000a01"))), ("127.0.0.1", cmd.udp))
            try:
                while True:  # (answers to the earlier MN's copies may still come: each accepted too)
                    pba = decode(sock.recvfrom(4096)[0])
                    assert pba.status == 0, pba
                    if pba.mn_id == f"mn-{i}":
                        return
            except OSError:
                continue  # no answer within a second: send it again
        raise AssertionError(f"mn-{i} never answered: {a.log()[-2000:]}\n{b.log()[-2000:]}")
    try:
        for i in range(10):
            register(i)
        c.primary.kill()
        for i in range(10, 30):
            register(i)
        views = [{s["mn_id"]: s["serving_maar"]["address"] for s in cmd.get("/dmm/v1/sessions")["sessions"]}
                 for cmd in (a, b)]
        assert views[0] == views[1] and len(views[0]) == 30
        def renewing(cmd) -> bool:
            st = cmd.get("/dmm/v1/stats")["store"]["active_active"]
            return st["lease_ok"] and all(i["alive"] for i in st["instances"].values())
        assert wait_for(lambda: renewing(a) and renewing(b), 10)
        time.sleep(2 * LEASE)  # each would have judged the other dead by now
        for cmd in (a, b):
            st = cmd.get("/dmm/v1/stats")["store"]["active_active"]
            assert st["takeovers"] == [] and set(st["instances"]) == {"cmd-a", "cmd-b"}, json.dumps(st)
    finally:
        finish((a, b), m1, m2)
