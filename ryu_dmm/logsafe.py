"""Logging that untrusted input cannot flood or forge, and containment of unexpected exceptions.

``escape`` turns any value into one printable-ASCII line (control characters, backslashes and
non-ASCII as backslash escapes, long values cut). ``SafeLog`` writes at most ``lines`` records per
``(source, reason)`` and ``interval``, then one summary "suppressed K similar" when the interval
ends; it tracks at most ``max_keys`` keys (beyond that, new keys share one overflow bucket).
``Guard`` contains an unexpected exception: it counts ``internal_error.<where>``, logs it (rate
limited, with the traceback the first time each kind is seen) and lets the caller carry on.

Pure: no hub, no sockets; the clock is injectable. The shell calls ``SafeLog.flush`` about once a
second so that summaries appear even when a burst has stopped. Defaults: docs/limits-rest.md.
"""
from __future__ import annotations

import functools
import logging
import time
import traceback
from typing import Callable, Optional

LINES = 5  # records per (source, reason) and interval
INTERVAL = 10.0  # seconds
MAX_KEYS = 256  # (source, reason) pairs tracked at once; more share the overflow bucket
MAX_CHARS = 200  # an untrusted value is cut to this many characters (before escaping)
TRACEBACKS = 64  # distinct (where, exception type) whose traceback was logged once

OVERFLOW = ("*", "*")

_ESCAPES = {i: f"\\x{i:02x}" for i in range(0x20)}
_ESCAPES.update({0x7F: "\\x7f", ord("\\"): "\\\\", ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def escape(value, limit: int = MAX_CHARS) -> str:
    """``value`` as printable ASCII on one line: ``\\n``, ``\\x1b``, ``\\u202e``, ``\\udcff``
    (an undecodable byte kept by surrogateescape) ... and ``\\\\`` for a backslash, so the text
    cannot be mistaken for an escape. Bytes show as their hex; values longer than ``limit``
    characters are cut with a note of how many characters were left out."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        text = bytes(value).hex()
    else:
        text = value if isinstance(value, str) else str(value)
    extra = ""
    if len(text) > limit:
        extra = f"...(+{len(text) - limit} chars)"
        text = text[:limit]
    return text.translate(_ESCAPES).encode("ascii", "backslashreplace").decode("ascii") + extra


def _arg(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else escape(value)


class SafeLog:
    """Rate-limited, escaped records on a ``logging.Logger``.

    Per key ``(source, reason)``: the first ``lines`` records of a window of ``interval`` seconds
    are written, the rest counted; when the window ends (seen by the next record of that key or by
    ``flush``) one summary line says how many were suppressed. Every argument is ``escape``d; the
    format string is the caller's own text.
    """

    def __init__(self, logger: logging.Logger, lines: int = LINES, interval: float = INTERVAL,
                 max_keys: int = MAX_KEYS, clock: Callable[[], float] = time.monotonic) -> None:
        if lines < 1 or interval <= 0 or max_keys < 1:
            raise ValueError("lines and max_keys must be >= 1, interval > 0")
        self.logger = logger
        self.lines, self.interval, self.max_keys, self.clock = lines, interval, max_keys, clock
        self._keys: dict[tuple, list] = {}  # key -> [window start, written, suppressed]
        self.suppressed_total = 0

    def __len__(self) -> int:
        return len(self._keys)

    def warning(self, source, reason: str, fmt: str, *args, exc_text: Optional[str] = None) -> bool:
        return self.log(logging.WARNING, source, reason, fmt, *args, exc_text=exc_text)

    def log(self, level: int, source, reason, fmt: str, *args, exc_text: Optional[str] = None) -> bool:
        """Write one record unless its key is over its budget; True if written. ``reason``: text, or
        a tuple of parts joined with "." (formatted only when the level is enabled). ``exc_text``: a
        traceback to append (escaped line by line, each continuation line starting with ``  | ``)."""
        if not self.logger.isEnabledFor(level):
            return False
        if type(reason) is tuple:
            reason = ".".join(map(str, reason))
        now = self.clock()
        key = (escape(source, 64), escape(reason, 64))
        entry = self._keys.get(key)
        if entry is None:
            if len(self._keys) >= self.max_keys:
                key = OVERFLOW
                entry = self._keys.get(key)
            if entry is None:
                entry = self._keys[key] = [now, 0, 0]
        if now - entry[0] >= self.interval:
            self._summarise(key, entry, now)
            entry[:] = [now, 0, 0]
        if entry[1] >= self.lines:
            entry[2] += 1
            self.suppressed_total += 1
            return False
        entry[1] += 1
        text = fmt % tuple(_arg(a) for a in args) if args else fmt
        if key == OVERFLOW:
            text = "[more sources than tracked] " + text
        if exc_text:
            text += "".join("\n  | " + escape(line, 500) for line in exc_text.rstrip("\n").split("\n"))
        self.logger.log(level, "%s", text)
        return True

    def flush(self) -> None:
        """Summaries for windows that have ended; forget keys whose window has ended."""
        now = self.clock()
        for key, entry in list(self._keys.items()):
            if now - entry[0] >= self.interval:
                self._summarise(key, entry, now)
                del self._keys[key]

    def _summarise(self, key: tuple, entry: list, now: float) -> None:
        if entry[2]:
            source, reason = key
            self.logger.warning("suppressed %d similar message(s) (%s from %s) in the last %.0f s",
                                entry[2], reason, source, now - entry[0])


class Guard:
    """Contain an unexpected exception at a per-datagram, per-event or per-request boundary."""

    def __init__(self, count: Callable[[str], None], log: SafeLog, tracebacks: int = TRACEBACKS) -> None:
        self._count = count
        self.log = log
        self._seen: set = set()
        self._tracebacks = tracebacks

    def error(self, where: str, exc: BaseException) -> None:
        """Count and log ``exc``, caught at ``where``. Never raises."""
        try:
            self._count(f"internal_error.{where}")
            kind = type(exc).__qualname__
            signature = (where, kind)
            exc_text = None
            if signature not in self._seen and len(self._seen) < self._tracebacks:
                self._seen.add(signature)
                exc_text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            self.log.log(logging.ERROR, where, f"internal_error.{kind}", "internal error in %s (contained): %s: %s",
                         where, kind, exc, exc_text=exc_text)
        except Exception:  # noqa: BLE001 - the guard itself must never take a loop down
            pass

    def call(self, where: str, fn: Callable, *args) -> bool:
        """``fn(*args)``; False if it raised (counted and logged)."""
        try:
            fn(*args)
            return True
        except Exception as exc:  # noqa: BLE001 - containment boundary
            self.error(where, exc)
            return False

    def repeat(self, sleep: Callable[[float], None], seconds: float, where: str, fn: Callable) -> None:
        """Forever: ``sleep(seconds)``, then ``fn()`` contained (a periodic job on the hub)."""
        while True:
            sleep(seconds)
            self.call(where, fn)

    def wrap(self, where: str, fn: Callable) -> Callable:
        """``fn`` as a callable that contains its exceptions (returns None on one)."""
        @functools.wraps(fn)
        def contained(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - containment boundary
                self.error(where, exc)
                return None
        return contained


def contained(where: str):
    """Method decorator: run the method under ``self.guard`` (a ``Guard``)."""
    def decorate(method):
        @functools.wraps(method)
        def run(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - containment boundary
                self.guard.error(where, exc)
                return None
        return run
    return decorate
