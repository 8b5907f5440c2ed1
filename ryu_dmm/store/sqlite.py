"""The embedded default backend: one SQLite file in WAL mode, written in group commits.

Why SQLite: it ships with Python, needs no service, and its WAL mode commits a whole group of
changes with one fsync, so the durability rule costs little per change (docs/store.md has the
figures). The file is opened in exclusive locking mode: a second CMD pointed at the same file is
refused at start-up instead of silently sharing it.
"""
from __future__ import annotations

import os
import sqlite3
import struct
import time
from typing import Optional

from ..mobility.views import Record
from ..wire import Prefix
from ..wire.addr import pack6, unpack6
from .base import Batch, Loaded, StoreError
from .memory import fresh_counter

SCHEMA = 1
_PMAAR = struct.Struct("!16s16sB")  # P-MAAR address, the prefix it anchors, its length
_TABLES = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE sessions (mn_id BLOB PRIMARY KEY, serving TEXT NOT NULL, prefix BLOB NOT NULL, mac BLOB NOT NULL,"
    " pmaars BLOB NOT NULL, expires REAL NOT NULL, att INTEGER NOT NULL, last_ts INTEGER NOT NULL,"
    " last_seq INTEGER NOT NULL, handover INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE ports (maar TEXT NOT NULL, mac BLOB NOT NULL, port INTEGER NOT NULL, PRIMARY KEY (maar, mac))"
    " WITHOUT ROWID",
)
_UPSERT = "INSERT OR REPLACE INTO sessions VALUES (?,?,?,?,?,?,?,?,?,?)"


def _key(mn_id: str) -> bytes:
    """An MN ID as the bytes it came as (``MobileNodeIdentifier.text`` maps any bytes to a str
    with surrogateescape: a non-UTF-8 identifier must be stored too)."""
    return mn_id.encode("utf-8", "surrogateescape")


def to_row(r: Record) -> tuple:
    pmaars = b"".join(_PMAAR.pack(pack6(a), p.packed, p.length) for a, p in r.pmaars)
    return (_key(r.mn_id), r.serving, r.prefix.packed + bytes((r.prefix.length,)), r.mac, pmaars, r.expires, r.att,
            r.last_ts, r.last_seq, int(r.handover))


def from_row(row: tuple) -> Record:
    """A stored row back as a Record; ValueError if it cannot be one."""
    key, serving, prefix, mac, pmaars, expires, att, last_ts, last_seq, handover = row
    if len(prefix) != 17 or len(pmaars) % _PMAAR.size or not isinstance(serving, str) or not isinstance(key, bytes):
        raise ValueError("malformed MN ID, prefix or P-MAAR list")
    mn_id = key.decode("utf-8", "surrogateescape")
    pm = tuple((unpack6(a), Prefix(p, n)) for a, p, n in _PMAAR.iter_unpack(pmaars))
    return Record(mn_id, unpack6(pack6(serving)), Prefix(prefix[:16], prefix[16]), bytes(mac), pm, float(expires),
                  int(att), int(last_ts), int(last_seq), bool(handover))


class SqliteStore:
    backend = "sqlite"

    def __init__(self, path: str, synchronous: str = "full") -> None:
        self.path = path
        self.synchronous = synchronous
        self._db: Optional[sqlite3.Connection] = None

    def load(self) -> Loaded:
        try:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            db = self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=0)
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"{self.path}: cannot use write-ahead logging (journal mode {mode})")
            db.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
            db.execute("BEGIN IMMEDIATE")  # takes the exclusive lock now: a second CMD fails here
            problems = [r[0] for r in db.execute("PRAGMA quick_check(5)")]
            if problems != ["ok"]:
                raise StoreError(f"{self.path}: corrupt ({'; '.join(problems)})", "corrupt")
            fresh = db.execute("SELECT 1 FROM sqlite_master WHERE name='meta'").fetchone() is None
            if fresh:
                for sql in _TABLES:
                    db.execute(sql)
                counter = fresh_counter()
                db.executemany("INSERT INTO meta VALUES (?,?)", [("schema", str(SCHEMA)),
                                                                  ("restart_counter", str(counter)),
                                                                  ("created", str(time.time()))])
            db.execute("COMMIT")
            meta = dict(db.execute("SELECT key, value FROM meta"))
            if meta.get("schema") != str(SCHEMA):
                raise StoreError(f"{self.path}: schema {meta.get('schema')!r}, this version reads {SCHEMA}", "schema")
            bad = [k for k, v in meta.items() if not _meta_ok(k, v)]
            if "restart_counter" not in meta:
                bad.append("restart_counter")
            if bad:
                raise StoreError(f"{self.path}: corrupt (meta {bad[0]!r:.80} = {meta.get(bad[0])!r:.40})", "corrupt")
            sessions = []
            for row in db.execute("SELECT * FROM sessions"):
                try:
                    sessions.append(from_row(row))
                except (ValueError, TypeError) as exc:
                    raise StoreError(f"{self.path}: session {row[0]!r:.80} unreadable ({exc})", "corrupt") from None
            try:
                ports = {(unpack6(pack6(m)), bytes(mac)): int(p) for m, mac, p in db.execute("SELECT * FROM ports")}
            except (ValueError, TypeError) as exc:
                raise StoreError(f"{self.path}: a port row is unreadable ({exc})", "corrupt") from None
            return Loaded(sessions, ports, meta, int(meta["restart_counter"]), fresh)
        except sqlite3.OperationalError as exc:
            self.close()
            if "locked" in str(exc):
                raise StoreError(f"{self.path}: in use by another process (is another CMD running?)",
                                 "in_use") from None
            raise StoreError(f"{self.path}: {exc}", "io") from None
        except sqlite3.DatabaseError as exc:  # "file is not a database", malformed pages
            self.close()
            raise StoreError(f"{self.path}: corrupt ({exc})", "corrupt") from None
        except OSError as exc:
            self.close()
            raise StoreError(f"{self.path}: {exc.strerror or exc}", "io") from None
        except StoreError:
            self.close()
            raise

    def write(self, batch: Batch) -> None:
        db = self._db
        try:
            db.execute("BEGIN")
            gone = [(_key(k),) for k, r in batch.sessions.items() if r is None]
            if gone:
                db.executemany("DELETE FROM sessions WHERE mn_id=?", gone)
            db.executemany(_UPSERT, [to_row(r) for r in batch.sessions.values() if r is not None])
            for (maar, mac), port in batch.ports.items():
                if port is None:
                    db.execute("DELETE FROM ports WHERE maar=? AND mac=?", (maar, mac))
                else:
                    db.execute("INSERT OR REPLACE INTO ports VALUES (?,?,?)", (maar, mac, port))
            if batch.meta:
                db.executemany("INSERT OR REPLACE INTO meta VALUES (?,?)", list(batch.meta.items()))
            db.execute("COMMIT")
        except BaseException as exc:  # nothing of a failed batch stays, whatever failed
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            if not isinstance(exc, Exception):
                raise
            raise StoreError(f"{self.path}: write failed ({type(exc).__name__}: {exc})") from None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def describe(self) -> dict:
        return {"backend": self.backend, "file": self.path, "synchronous": self.synchronous}


def _meta_ok(key: str, value: str) -> bool:
    """The meta values start-up parses: counters and sequence numbers within their ranges."""
    if key == "restart_counter" or key.startswith("counter:"):
        return value.isdigit() and int(value) <= 0xFFFFFFFF
    if key.startswith("seq:"):
        return value.isdigit() and int(value) <= 0xFFFF
    return True


def move_aside(path: str) -> str:
    """Rename a corrupt store (and its WAL) out of the way; returns the new name."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside, n = f"{path}.corrupt-{stamp}", 1
    while os.path.exists(aside):  # never over an earlier one
        aside, n = f"{path}.corrupt-{stamp}-{n}", n + 1
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.replace(path + suffix, aside + suffix)
    return aside
