"""The Redis backend: the binding store in a Redis primary (found directly or through Sentinel),
written with pipelined transactions (docs/deploy-cmds.md).

Why Redis: it is the proven, well-kept shared store a domain with several CMDs needs; Debian ships
it with Sentinel for fail-over, and redis-py (its official client, pure Python, so green under
eventlet) pipelines a whole group commit into one round trip.

Keys, under ``[store] namespace`` (default ``dmm``), all hashes:

- ``NS:sessions``  MN ID (its bytes) -> the session (``pack``: the SQLite row's fields, packed)
- ``NS:ports``     ``MAAR|MAC hex`` -> access port
- ``NS:meta``      schema, restart counter, ``seq:``/``counter:`` keys (as in SQLite's meta table)

A batch is one ``MULTI``/``EXEC`` (all of it or nothing), optionally followed by ``WAIT`` for
``wait_replicas`` replicas: a batch that fewer replicas acknowledged within ``wait_timeout_ms``
counts as failed and is written again (its PBAs keep waiting).

With ``active_active`` (several CMDs on one Redis) sessions are written by ``cas`` instead: a Lua
script per event checks the version of every session the event read and writes them only if none
changed since (``NS:versions``, from the counter ``NS:clock``; ``NS:owners`` and the sets
``NS:owned:INSTANCE`` say which instance holds each session's timers). Each instance keeps its
own sequence-number reservations (``NS:meta:INSTANCE``) and a lease (``NS:lease:INSTANCE``, listed
in ``NS:instances``).
"""
from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import Optional

import redis
import redis.sentinel

from ..mobility.views import Record
from ..wire.addr import pack6, unpack6
from .base import Batch, Loaded, StoreError
from .memory import fresh_counter
from .shared import VERIFY, Current
from .sqlite import SCHEMA, _meta_ok, from_row, to_row

_HEAD = struct.Struct("!16s17sdBQiBB")  # serving, prefix+length, expires, att, last_ts, last_seq, handover, MAC length
SCAN_COUNT = 5000  # sessions read per HSCAN step at start-up


def pack(r: Record) -> bytes:
    _, serving, prefix, mac, pmaars, expires, att, last_ts, last_seq, handover = to_row(r)
    return _HEAD.pack(pack6(serving), prefix, expires, att, last_ts, last_seq, handover, len(mac)) + mac + pmaars


def unpack(mn_key: bytes, blob: bytes) -> Record:
    """A stored session back as a Record; ValueError if it cannot be one."""
    try:
        serving, prefix, expires, att, last_ts, last_seq, handover, maclen = _HEAD.unpack_from(blob)
    except struct.error as exc:
        raise ValueError(str(exc)) from None
    rest = blob[_HEAD.size:]
    if len(rest) < maclen:
        raise ValueError("truncated")
    return from_row((mn_key, unpack6(serving), prefix, rest[:maclen], rest[maclen:], expires, att, last_ts,
                     last_seq, handover))


def port_field(maar: str, mac: bytes) -> str:
    return f"{maar}|{mac.hex()}"


def _key(mn_id: str) -> bytes:
    return mn_id.encode("utf-8", "surrogateescape")



# KEYS: sessions, versions, owners, clock. ARGV: namespace, this instance, then (MN, expected version,
# session or "" to delete or "=" to check only) per session. Either every expected version matches
# and every write is done ({1, new versions}), or nothing is written and the sessions that changed
# come back as they are now ({0, {MN, version, session, owner, ...}}). A new version is the next
# value of the clock, never below the primary's time in microseconds: after a fail-over that lost
# the last writes (replication is asynchronous) a version is not handed out again for another change.
CAS_LUA = """
local lost = {}
for i = 3, #ARGV, 3 do
  local v = redis.call('HGET', KEYS[2], ARGV[i]) or '0'
  if v ~= ARGV[i + 1] then
    lost[#lost + 1] = ARGV[i]
    lost[#lost + 1] = v
    lost[#lost + 1] = redis.call('HGET', KEYS[1], ARGV[i]) or ''
    lost[#lost + 1] = redis.call('HGET', KEYS[3], ARGV[i]) or ''
  end
end
if #lost > 0 then return {0, lost} end
local t = redis.call('TIME')
local floor = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
for i = 3, #ARGV, 3 do
  local mn, blob = ARGV[i], ARGV[i + 2]
  if blob == '=' then
    out[#out + 1] = ARGV[i + 1]
  else
    local old = redis.call('HGET', KEYS[3], mn)
    if old then redis.call('SREM', ARGV[1] .. ':owned:' .. old, mn) end
    if blob == '' then
      redis.call('HDEL', KEYS[1], mn)
      redis.call('HDEL', KEYS[2], mn)
      redis.call('HDEL', KEYS[3], mn)
      out[#out + 1] = '0'
    else
      local v = redis.call('INCR', KEYS[4])
      if v < floor then
        v = floor
        redis.call('SET', KEYS[4], string.format('%.0f', floor))
      end
      v = string.format('%.0f', v)
      redis.call('HSET', KEYS[1], mn, blob)
      redis.call('HSET', KEYS[2], mn, v)
      redis.call('HSET', KEYS[3], mn, ARGV[2])
      redis.call('SADD', ARGV[1] .. ':owned:' .. ARGV[2], mn)
      out[#out + 1] = v
    end
  end
end
return {1, out}
"""


@dataclass(frozen=True)
class CasResult:
    won: bool
    versions: dict[str, int]  # won: each session's version now (0: deleted)
    lost: list[Current]  # not won: the sessions that had changed, as they are now


class RedisStore:
    backend = "redis"
    green = True  # redis-py's sockets are eventlet's: written from a greenthread, never a native thread

    def __init__(self, settings) -> None:
        self.settings = settings
        ns = settings.namespace
        self.k_sessions, self.k_ports, self.k_meta = f"{ns}:sessions", f"{ns}:ports", f"{ns}:meta"
        self.k_versions, self.k_owners, self.k_clock = f"{ns}:versions", f"{ns}:owners", f"{ns}:clock"
        self.instance = settings.instance
        self.k_own_meta = f"{ns}:meta:{self.instance}"  # this instance's sequence-number reservations
        self.versions: dict[str, int] = {}  # active-active: each loaded session's version
        self.owners: dict[str, str] = {}  # ... and the instance that held its timers
        self._cas = None
        self.where = (settings.url if settings.url else
                      "sentinels " + ", ".join(f"{h}:{p}" for h, p in settings.sentinels) + f" ({settings.service})")
        self._client: Optional[redis.Redis] = None
        self._sentinel: Optional[redis.sentinel.Sentinel] = None

    def client(self) -> redis.Redis:
        if self._client is None:
            st, t = self.settings, self.settings.timeout
            if st.sentinels:
                self._sentinel = redis.sentinel.Sentinel(list(st.sentinels), socket_timeout=t,
                                                         socket_connect_timeout=t, sentinel_kwargs={
                                                             "socket_timeout": t, "socket_connect_timeout": t})
                self._client = self._sentinel.master_for(st.service, socket_timeout=t, socket_connect_timeout=t)
            else:
                self._client = redis.Redis.from_url(st.url, socket_timeout=t, socket_connect_timeout=t)
        return self._client

    def _error(self, what: str, exc: Exception, kind: str = "io") -> StoreError:
        return StoreError(f"redis {self.where}: {what} ({type(exc).__name__}: {exc})", kind)

    def load(self) -> Loaded:
        try:
            db = self.client()
            db.ping()
            fresh = not db.exists(self.k_meta)
            if fresh:  # HSETNX: of several CMDs starting at once on an empty store, the first sets them
                with db.pipeline(transaction=True) as p:
                    p.hsetnx(self.k_meta, "schema", str(SCHEMA))
                    p.hsetnx(self.k_meta, "restart_counter", str(fresh_counter()))
                    p.hsetnx(self.k_meta, "created", str(time.time()))
                    p.execute()
            meta = {k.decode(): v.decode() for k, v in db.hgetall(self.k_meta).items()}
            if meta.get("schema") != str(SCHEMA):
                raise StoreError(f"redis {self.where}: schema {meta.get('schema')!r}, this version reads {SCHEMA}",
                                 "schema")
            bad = [k for k, v in meta.items() if not _meta_ok(k, v)] + (
                [] if "restart_counter" in meta else ["restart_counter"])
            if bad:
                raise StoreError(f"redis {self.where}: corrupt (meta {bad[0]!r:.80} = {meta.get(bad[0])!r:.40})",
                                 "corrupt")
            if self.settings.active_active:  # seq: keys are this instance's own
                meta = {k: v for k, v in meta.items() if not k.startswith("seq:")}
                meta.update({k.decode(): v.decode() for k, v in db.hgetall(self.k_own_meta).items()})
                self.versions = {k.decode("utf-8", "surrogateescape"): int(v)
                                 for k, v in db.hgetall(self.k_versions).items()}
                self.owners = {k.decode("utf-8", "surrogateescape"): v.decode()
                               for k, v in db.hgetall(self.k_owners).items()}
            sessions = []
            for key, blob in db.hscan_iter(self.k_sessions, count=SCAN_COUNT):
                try:
                    sessions.append(unpack(key, blob))
                except (ValueError, TypeError) as exc:
                    raise StoreError(f"redis {self.where}: session {key!r:.80} unreadable ({exc})",
                                     "corrupt") from None
            ports = {}
            for f, port in db.hgetall(self.k_ports).items():
                try:
                    maar, mac = f.decode().split("|")
                    ports[(unpack6(pack6(maar)), bytes.fromhex(mac))] = int(port)
                except (ValueError, UnicodeDecodeError) as exc:
                    raise StoreError(f"redis {self.where}: port {f!r:.80} unreadable ({exc})", "corrupt") from None
            return Loaded(sessions, ports, meta, int(meta["restart_counter"]), fresh)
        except redis.RedisError as exc:
            raise self._error("cannot load the binding store", exc) from None
        except (ValueError, UnicodeDecodeError) as exc:  # a version, owner or meta field that is not ours
            raise self._error("corrupt", exc, "corrupt") from None

    def write(self, batch: Batch) -> None:
        try:
            with self.client().pipeline(transaction=True) as p:
                self.stage(p, batch)
                p.execute()
            self.wait_replicas()
        except redis.RedisError as exc:
            raise self._error("write failed", exc) from None

    def stage(self, p, batch: Batch) -> None:
        """Queue ``batch``'s commands on pipeline ``p``."""
        gone = [k.encode("utf-8", "surrogateescape") for k, r in batch.sessions.items() if r is None]
        put = {k.encode("utf-8", "surrogateescape"): pack(r) for k, r in batch.sessions.items() if r is not None}
        if gone:
            p.hdel(self.k_sessions, *gone)
        if put:
            p.hset(self.k_sessions, mapping=put)
        ports_gone = [port_field(m, mac) for (m, mac), port in batch.ports.items() if port is None]
        ports_put = {port_field(m, mac): port for (m, mac), port in batch.ports.items() if port is not None}
        if ports_gone:
            p.hdel(self.k_ports, *ports_gone)
        if ports_put:
            p.hset(self.k_ports, mapping=ports_put)
        if batch.meta:
            if self.settings.active_active:
                own = {k: v for k, v in batch.meta.items() if k.startswith("seq:")}
                shared = {k: v for k, v in batch.meta.items() if not k.startswith("seq:")}
                if own:
                    p.hset(self.k_own_meta, mapping=own)
                if shared:
                    p.hset(self.k_meta, mapping=shared)
            else:
                p.hset(self.k_meta, mapping=batch.meta)

    # ---- active-active (docs/deploy-cmds.md) -----------------------------------------------------
    def cas(self, items: list[list[tuple[str, int, object]]]) -> list[CasResult]:
        """One check-and-set per event, all in one pipeline: each is a list of (MN, the version the
        event saw, Record / None to delete / ``VERIFY``). Raises StoreError (nothing known of the
        outcome: the caller re-reads)."""
        try:
            db = self.client()
            if self._cas is None:
                self._cas = db.register_script(CAS_LUA)
            keys = [self.k_sessions, self.k_versions, self.k_owners, self.k_clock]
            with db.pipeline(transaction=False) as p:
                for event in items:
                    args: list = [self.settings.namespace, self.instance]
                    for mn_id, version, value in event:
                        args += [_key(mn_id), str(version),
                                 b"=" if value is VERIFY else b"" if value is None else pack(value)]
                    self._cas(keys=keys, args=args, client=p)
                replies = p.execute()
            self.wait_replicas()
        except redis.RedisError as exc:
            raise self._error("check-and-set failed", exc) from None
        out = []
        for event, (won, body) in zip(items, replies):
            if won:
                out.append(CasResult(True, {mn: int(v) for (mn, _, _), v in zip(event, body)}, []))
            else:
                out.append(CasResult(False, {}, [self._current(body[i:i + 4]) for i in range(0, len(body), 4)]))
        return out

    def _current(self, fields) -> Current:
        key, version, blob, owner = fields
        try:
            record = unpack(key, blob) if blob else None
        except ValueError:
            record = None  # unreadable: as if gone (counted by the caller as a reload)
        return Current(key.decode("utf-8", "surrogateescape"), int(version), record, owner.decode())

    def read(self, mn_ids: list[str]) -> list[Current]:
        """Sessions as they are now (pipelined)."""
        try:
            with self.client().pipeline(transaction=False) as p:
                for mn_id in mn_ids:
                    k = _key(mn_id)
                    p.hget(self.k_versions, k)
                    p.hget(self.k_sessions, k)
                    p.hget(self.k_owners, k)
                got = p.execute()
        except redis.RedisError as exc:
            raise self._error("read failed", exc) from None
        return [self._current((_key(mn), got[i] or b"0", got[i + 1] or b"", got[i + 2] or b""))
                for mn, i in zip(mn_ids, range(0, len(got), 3))]

    def renew_lease(self, ttl: float) -> list[str]:
        """Renew this instance's lease; the other instances whose lease ran out (dead ones)."""
        ns, ms = self.settings.namespace, int(ttl * 1000)
        try:
            db = self.client()
            with db.pipeline(transaction=False) as p:
                p.set(f"{ns}:lease:{self.instance}", str(time.time()), px=ms)
                p.sadd(f"{ns}:instances", self.instance)
                p.smembers(f"{ns}:instances")
                others = sorted(m.decode() for m in p.execute()[2] if m.decode() != self.instance)
            alive = db.mget([f"{ns}:lease:{o}" for o in others]) if others else []
        except redis.RedisError as exc:
            raise self._error("lease renewal failed", exc) from None
        return [o for o, a in zip(others, alive) if a is None]

    def drop_lease(self) -> None:
        """A clean stop: the lease goes now, so that another instance takes the sessions over at once."""
        try:
            self.client().delete(f"{self.settings.namespace}:lease:{self.instance}")
        except redis.RedisError as exc:
            raise self._error("lease release failed", exc) from None

    def claim(self, dead: str, ttl: float) -> list[str]:
        """Take over ``dead``'s sessions if no other instance is doing it: the MNs it owned (empty:
        nothing to do, or another instance claimed it)."""
        ns = self.settings.namespace
        try:
            db = self.client()
            if not db.set(f"{ns}:takeover:{dead}", self.instance, nx=True, px=int(ttl * 2000)):
                return []
            owned = [m.decode("utf-8", "surrogateescape") for m in db.smembers(f"{ns}:owned:{dead}")]
            if not owned:  # all taken over: it is gone from the list
                db.srem(f"{ns}:instances", dead)
            return owned
        except redis.RedisError as exc:
            raise self._error("take-over failed", exc) from None

    def release_claim(self, dead: str) -> None:
        try:
            self.client().delete(f"{self.settings.namespace}:takeover:{dead}")
        except redis.RedisError as exc:
            raise self._error("take-over failed", exc) from None

    # ---- what every instance answers alike (REST, stats: docs/deploy-cmds.md) ----------------------
    def mn_ids(self) -> list[str]:
        try:
            return [k.decode("utf-8", "surrogateescape") for k in self.client().hkeys(self.k_sessions)]
        except redis.RedisError as exc:
            raise self._error("read failed", exc) from None

    def count(self) -> int:
        try:
            return self.client().hlen(self.k_sessions)
        except redis.RedisError as exc:
            raise self._error("read failed", exc) from None

    def records(self) -> list[Record]:
        try:
            return [unpack(k, v) for k, v in self.client().hscan_iter(self.k_sessions, count=SCAN_COUNT)]
        except (redis.RedisError, ValueError) as exc:
            raise self._error("read failed", exc) from None

    def instances(self) -> dict:
        """Every instance that ever joined: whether its lease is alive and how many sessions' timers
        it holds (``NS:owned:INSTANCE``)."""
        ns = self.settings.namespace
        try:
            db = self.client()
            names = sorted(m.decode() for m in db.smembers(f"{ns}:instances"))
            with db.pipeline(transaction=False) as p:
                for n in names:
                    p.exists(f"{ns}:lease:{n}")
                    p.scard(f"{ns}:owned:{n}")
                got = p.execute()
        except redis.RedisError as exc:
            raise self._error("read failed", exc) from None
        return {n: {"alive": bool(got[2 * i]), "sessions_owned": got[2 * i + 1]} for i, n in enumerate(names)}

    def wait_replicas(self) -> None:
        """``[store] wait_replicas``: fewer replicas acknowledging in time fails the write."""
        n = self.settings.wait_replicas
        if n:
            got = self.client().wait(n, self.settings.wait_timeout_ms)
            if got < n:
                raise StoreError(f"redis {self.where}: {got} of {n} replica(s) acknowledged within "
                                 f"{self.settings.wait_timeout_ms} ms")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def describe(self) -> dict:
        st = self.settings
        return {"backend": self.backend, "redis": self.where, "namespace": st.namespace,
                "wait_replicas": st.wait_replicas, **({"instance": st.instance} if st.active_active else {})}
