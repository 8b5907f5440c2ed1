"""Switch leases in Redis: the thin I/O side of ``election.py``.

Per switch two keys: ``PREFIX:role:DPID`` (the holder's instance name, with a TTL) and
``PREFIX:rolegen:DPID`` (the generation id, only ever increased). Claims and releases are Lua
scripts, so each is atomic in Redis: two instances claiming a free lease at once cannot both get
it. A lease taken over gets a new generation id, at least Redis's clock in microseconds: if a
Redis fail-over lost the last increments, the id still goes up (the switch refuses an older one).
"""
from __future__ import annotations

from typing import Iterable

from .election import Claim, Outcome

# KEYS: lease, generation; ARGV: instance, ttl ms, bump ("1": ours, but take a newer generation id)
_CLAIM = """
local holder = redis.call('GET', KEYS[1])
local function newer()
  local t = redis.call('TIME')
  local floor = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local g = redis.call('INCR', KEYS[2])
  if g < floor then g = floor; redis.call('SET', KEYS[2], string.format('%d', floor)) end
  return g
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {ARGV[1], newer()}
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  if ARGV[3] == '1' then return {holder, newer()} end
end
return {holder, tonumber(redis.call('GET', KEYS[2]) or '0')}
"""
# KEYS: lease; ARGV: instance
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
TIMEOUT = 0.25  # seconds a round may wait for Redis (below election.GUARD)


class RedisLeases:
    """Claims, releases and reads of the switches' leases, one round trip per round (a pipeline)."""

    def __init__(self, client, instance: str, datapaths: dict[str, int], ttl: float, prefix: str = "dmm") -> None:
        self._r = self.client = client
        self.instance = instance
        self.channel = f"{prefix}:changed"  # the change feed's (feed.py)
        self._ttl_ms = str(int(ttl * 1000))
        self._keys = {maar: (f"{prefix}:role:{dpid:016x}", f"{prefix}:rolegen:{dpid:016x}")
                      for maar, dpid in datapaths.items()}
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)

    @classmethod
    def from_url(cls, url: str, instance: str, datapaths: dict[str, int], ttl: float, prefix: str = "dmm",
                 sentinels: tuple = (), service: str = ""):
        """A client of its own, with this module's short timeouts: of ``url``, or of the primary that
        ``sentinels`` watch as ``service`` (the binding store's Redis: ``[roles] redis = store``)."""
        import redis  # only a CMD with [roles] needs redis-py
        import redis.sentinel
        t = {"socket_timeout": TIMEOUT, "socket_connect_timeout": TIMEOUT}
        client = (redis.sentinel.Sentinel(list(sentinels), sentinel_kwargs=t, **t).master_for(service, **t)
                  if sentinels else redis.Redis.from_url(url, **t))
        return cls(client, instance, datapaths, ttl, prefix)

    def round(self, claims: Iterable[Claim]) -> tuple[Outcome, ...]:
        """Claim these switches' leases and read the others'; raises redis' errors (the caller
        counts them and the election's deadlines run on)."""
        claims = {c.maar: c for c in claims}
        others = [m for m in self._keys if m not in claims]
        pipe = self._r.pipeline(transaction=False)
        for maar, c in claims.items():
            self._claim(keys=self._keys[maar], args=[self.instance, self._ttl_ms, "1" if c.bump else "0"],
                        client=pipe)
        for maar in others:
            pipe.get(self._keys[maar][0])
            pipe.get(self._keys[maar][1])
        replies = pipe.execute()
        out = [Outcome(maar, _text(h), int(g)) for maar, (h, g) in zip(claims, replies)]
        rest = replies[len(claims):]
        out += [Outcome(maar, _text(rest[2 * i]), int(rest[2 * i + 1] or 0)) for i, maar in enumerate(others)]
        return tuple(out)

    def release(self, maars: Iterable[str]) -> None:
        pipe = self._r.pipeline(transaction=False)
        for maar in maars:
            self._release(keys=[self._keys[maar][0]], args=[self.instance], client=pipe)
        pipe.execute()

    def close(self) -> None:
        self._r.close()


def _text(value) -> str | None:
    return value.decode() if isinstance(value, bytes) else value
