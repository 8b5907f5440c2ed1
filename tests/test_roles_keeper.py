"""The shell side of OpenFlow roles (ryu_dmm/roles/keeper.py), in-process: role requests as the
switch reads them (decoded by the test from OpenFlow 1.3 §7.3.9), replies and errors back in, promotion and
demotion handed to the CMD, a Redis that does not answer, leases given up on a clean stop."""
import logging
import struct
from typing import NamedTuple

from ryu_dmm.logsafe import Guard, SafeLog
from ryu_dmm.roles.election import Claim, Election, Outcome, Round
from ryu_dmm.roles.keeper import RoleKeeper
from ryu_dmm.runtime import hub, ofproto_v1_3 as ofp, ofproto_v1_3_parser as parser

SW = "2001:db8:ff::1"


class RoleRequest(NamedTuple):
    role: int
    generation_id: int


class Datapath:
    """What the keeper uses of a Ryu datapath; a message sent is serialized and read back as the
    switch reads it: OpenFlow 1.3 §7.3.9, ofp_role_request = header, role (32 bits), 4 bytes of
    padding, generation_id (64 bits); version 4, type 24, length 24."""
    ofproto, ofproto_parser = ofp, parser

    def __init__(self):
        self.sent, self.id = [], 1

    def send_msg(self, msg):
        msg.serialize()
        version, kind, length, _, role, generation = struct.unpack("!BBHII4xQ", bytes(msg.buf))
        assert (version, kind, length) == (4, 24, 24)
        self.sent.append(RoleRequest(role, generation))


class Leases:
    def __init__(self):
        self.answer, self.claims, self.released, self.closed = [], [], [], False

    def round(self, claims):
        self.claims.append(list(claims))
        if isinstance(self.answer, Exception):
            raise self.answer
        return tuple(self.answer)

    def release(self, maars):
        self.released += list(maars)

    def close(self):
        self.closed = True


def keeper():
    counts, events = [], []
    guard = Guard(counts.append, SafeLog(logging.getLogger("test.roles")))
    leases = Leases()
    k = RoleKeeper(Election("a", [SW]), leases, 0.5, lambda maars: events.append(("up", tuple(maars))),
                   lambda maar: events.append(("down", maar)), guard)
    return k, leases, events, counts


def granted(gen=7, confirm=True):
    """A keeper connected to SW whose claim won generation ``gen`` (and the switch confirmed)."""
    k, leases, events, counts = keeper()
    dp = Datapath()
    k.connected(SW, dp)
    leases.answer = [Outcome(SW, "a", gen)]
    k._round()
    if confirm:
        k.role_reply(SW, ofp.OFPCR_ROLE_MASTER, gen)
        hub.sleep(0)  # (the promotion runs in a greenthread of its own)
    return k, leases, events, dp


class Reply:
    def __init__(self, dp, kind, code=0):
        self.datapath, self.type, self.code = dp, kind, code


def test_a_won_lease_becomes_a_role_request_then_promotion_on_the_reply():
    k, leases, events, counts = keeper()
    dp = Datapath()
    k.connected(SW, dp)
    leases.answer = [Outcome(SW, "a", 42)]
    k._round()
    (req,) = dp.sent
    assert (req.role, req.generation_id) == (2, 42)  # OFPCR_ROLE_MASTER = 2 (§7.3.9)
    assert events == [] and not k.is_master(SW)
    k.role_reply(SW, ofp.OFPCR_ROLE_MASTER, 42)
    assert k.is_master(SW)
    hub.sleep(0)  # the promotion runs in a greenthread of its own: renewals go on while it re-reads
    assert events == [("up", (SW,))]
    assert k.state()["switches"][SW] == {"role": "master", "master": "a", "generation": 42}
    # another instance took it (e.g. after a Redis fail-over): demoted, and a slave request
    leases.answer = [Outcome(SW, "b", 43)]
    k._round()
    assert events[-1] == ("down", SW) and dp.sent[-1] == (3, 43)  # SLAVE = 3
    assert counts == []


def test_a_redis_that_does_not_answer_is_counted_and_the_master_steps_down_in_time():
    k, leases, events, _ = granted()
    leases.answer = ConnectionError("refused")
    k._round()
    assert k.counts["store_failed"] == 1 and k.is_master(SW)
    k._apply([e for e in k.election.handle(Round(), k.election.next_deadline()) if type(e) is not Claim])
    assert events[-1] == ("down", SW) and not k.is_master(SW)


def test_refusals_and_slave_writes_are_counted():
    k, leases, events, dp = granted(confirm=False)
    k.error(SW, Reply(dp, ofp.OFPET_ROLE_REQUEST_FAILED, ofp.OFPRRFC_STALE))
    k.error(SW, Reply(dp, ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_IS_SLAVE))
    k.error(SW, Reply(dp, ofp.OFPET_BAD_MATCH, 0))  # someone else's business
    assert (k.counts["role_refused"], k.counts["writes_refused"]) == (1, 1)
    assert leases.claims[-1][0].bump is False
    k._round()
    assert leases.claims[-1][0].bump is True  # a newer generation id is asked for


def test_a_clean_stop_releases_the_leases_held():
    k, leases, events, _ = granted()
    k.stop()
    assert leases.released == [SW] and leases.closed and events[-1] == ("down", SW)
