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
"""
from __future__ import annotations

import struct
import time
from typing import Optional

import redis
import redis.sentinel

from ..mobility.views import Record
from ..wire.addr import pack6, unpack6
from .base import Batch, Loaded, StoreError
from .memory import fresh_counter
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


class RedisStore:
    backend = "redis"
    green = True  # redis-py's sockets are eventlet's: written from a greenthread, never a native thread

    def __init__(self, settings) -> None:
        self.settings = settings
        ns = settings.namespace
        self.k_sessions, self.k_ports, self.k_meta = f"{ns}:sessions", f"{ns}:ports", f"{ns}:meta"
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
            p.hset(self.k_meta, mapping=batch.meta)

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
                "wait_replicas": st.wait_replicas}
