"""A Heartbeat is never taken for a PBA, and is counted by its own kind."""
from ryu_dmm.mobility.cmd import CmdCore
from ryu_dmm.mobility.config import Domain, MaarInfo
from ryu_dmm.mobility.events import Received
from ryu_dmm.stats import OTHER, Stats
from ryu_dmm.wire import Heartbeat, Prefix, RestartCounter

M1 = "2001:db8:ff::1"
DOMAIN = Domain("2001:db8:ff::100", (MaarInfo("maar1", M1, Prefix.parse("2001:db8:1::/48")),))


def test_cmd_core_ignores_heartbeats():
    core = CmdCore(DOMAIN)
    assert core.handle(Received(M1, Heartbeat(1, options=(RestartCounter(1),))), 1000.0) == []
    assert core.handle(Received(M1, Heartbeat(1, response=True)), 1000.0) == []
    assert core.counters["pbu_without_d"] == core.counters["pba_without_d"] == 0  # not counted as a PBA without D


def test_stats_count_heartbeats_by_kind_and_peer():
    stats = Stats("proxy", peers={M1})
    stats.received(Heartbeat(1), M1)
    stats.received(Heartbeat(2, response=True), "2001:db8::dead")
    stats.sent(Heartbeat(1, response=True), M1)
    assert stats.messages == {("heartbeat_received", M1, None): 1, ("heartbeat_received", OTHER, None): 1,
                              ("heartbeat_sent", M1, None): 1}
    assert stats.totals() == {"heartbeat_received": 2, "heartbeat_sent": 1}
