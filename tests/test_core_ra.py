"""Issue 9: unsolicited Router Advertisements keep an attached MN's default route and prefixes alive
(RFC 4861 §6.2.1 defaults: MaxRtrAdvInterval 600 s, AdvDefaultLifetime 1800 s)."""
import pytest

from ryu_dmm.mobility.config import Timers
from tests.sim import Net, domain

HOURS = 3 * 3600.0


def adverts(n: Net, mn: str):
    return [(t, where, ra) for t, where, ra in n.adverts if ra.mn_id == mn]


def test_defaults_are_rfc_4861():
    t = Timers()
    assert (t.ra_interval, t.router_lifetime) == (600.0, 1800)
    with pytest.raises(ValueError, match="ra_interval"):
        Timers(ra_interval=601.0)  # more than router_lifetime / 3
    with pytest.raises(ValueError, match="ra_interval"):
        Timers(ra_interval=3.0)


def test_lifetimes_never_lapse_between_refreshes():
    n = Net(domain(2))
    n.attach("maar1", "mn1")
    n.run(0.1)
    n.attach("maar2", "mn1")  # one move: the MN also holds a deprecated prefix from maar1
    n.run(HOURS)
    seen = adverts(n, "mn1")
    assert seen[0][2].router_lifetime == 1800 and seen[0][2].prefixes[0].valid == 3600
    seen = [s for s in seen if s[1] == "maar2"]
    assert len(seen) >= HOURS / 600
    for (t0, _, ra0), (t1, _, ra1) in zip(seen, seen[1:]):
        assert t1 - t0 <= 600.0 + 1e-6
        assert t1 < t0 + ra0.router_lifetime  # the default route never lapses
        for p in ra0.prefixes:  # nor does any address: each prefix is refreshed before it runs out
            assert any(q.prefix == p.prefix and q.valid > 0 for q in ra1.prefixes) and t1 < t0 + p.valid
    assert {p.prefix.packed[5] for p in seen[-1][2].prefixes} == {1, 2}  # 2001:db8:1:: and 2001:db8:2::


def test_no_unsolicited_ra_once_the_mn_detached():
    n = Net(domain(1))
    n.attach("maar1", "mn1")
    n.run(0.1)
    n.detach("maar1", "mn1")
    n.run(3600)
    assert len(adverts(n, "mn1")) == 1
