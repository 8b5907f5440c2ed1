"""What DomainView reads of CmdCore, with public Session views held directly (so that any MN ID,
also one that is not UTF-8, can be put in): for REST and metrics tests without a real core."""
from ryu_dmm.mobility.views import Session
from ryu_dmm.wire import Prefix

P = Prefix.parse("2001:db8:1::/64")


class Core:
    def __init__(self):
        self.cache = {}
        self.peer_views = []  # heartbeat.PeerView of each MAAR
        self.counters = {"pbu_without_d": 0, "pba_without_d": 0, "pba_echo_mismatch": 0}

    def add(self, mn_id, serving="2001:db8:ff::1", pmaars=(), expires=4e9):
        self.cache[mn_id] = Session(mn_id, serving, P, b"", tuple((a, P) for a in pmaars), expires)

    def session(self, mn_id):
        return self.cache.get(mn_id)

    def sessions(self):
        return iter(list(self.cache.values()))

    def mn_ids(self):
        return list(self.cache)

    def peers(self):
        return list(self.peer_views)

    def __len__(self):
        return len(self.cache)
