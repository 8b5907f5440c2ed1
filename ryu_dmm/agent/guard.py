"""Bounded bookkeeping that keeps the agent alive and small under bad or hostile input.

* ``Counters``: exact counts of what went wrong (decode errors, bad control requests, refused
  attaches, internal errors, ...), shown in the control socket's ``state`` reply.
* ``LineLimiter``: at most ``burst`` log/event lines of one kind per ``window`` seconds; the lines
  it holds back are counted and the next line of that kind says how many (``suppressed``).
* ``WindowLimiter``: at most ``limit`` hits per key in any ``window`` seconds, over at most
  ``max_keys`` keys. A key whose last hit is older than the window holds no information and is
  dropped; when the table is full of live keys, a new key is refused (the limit is never bypassed by
  forgetting someone).
* ``AttachLimiter``: the two attach limits of docs/limits-agent.md: new MNs per access port and
  triggers per MAC.
* ``LruDict``: a dict that forgets its least recently set key beyond ``max_keys``.

Times are seconds from a monotonic clock, passed in (no clock here), so tests can drive them.
"""
from __future__ import annotations

from collections import OrderedDict, deque
from typing import Hashable, Optional

# Attach limits (defaults of ryu-dmm-maar's flags; see docs/limits-agent.md).
NEW_MN_LIMIT = 64  # new MNs (attaches that take a prefix from the pool) per access port ...
NEW_MN_WINDOW = 60.0  # ... in any window of this many seconds
MAC_LIMIT = 3  # attach triggers (RS or control attach) per MAC ...
MAC_WINDOW = 1.0  # ... in any window of this many seconds
MAX_MACS = 4096  # MACs the per-MAC limiter tracks at once
MAX_PORTS = 1024  # access ports the per-port limiter tracks at once

# Log/event lines about bad input: per kind, at most LINE_BURST lines per LINE_WINDOW seconds.
LINE_BURST = 10
LINE_WINDOW = 10.0

COUNTERS = (
    "decode_errors",  # signalling datagrams that are not a PBU/PBA (wire.decode refused them)
    "bad_control",  # control requests refused as malformed (bad JSON, not an object, bad fields)
    "refused_attaches",  # attach triggers refused (sum of the next five)
    "refused_mac_rate",  # ... because the MAC sent more than MAC_LIMIT triggers in MAC_WINDOW
    "refused_new_mn_rate",  # ... because the port had NEW_MN_LIMIT new MNs in NEW_MN_WINDOW
    "refused_limiter_full",  # ... because a limiter's table was full of live entries
    "refused_unauthorized",  # ... because [auth] does not allow the MN (agent/authz.py)
    "refused_port_cap",  # ... because the port's MNs hold [auth] max_prefixes_per_port prefixes already
    "bad_openflow",  # messages from our own switch (flow_control = maar) too short for their type or unparsable
    "bad_frames",  # frames on the access link that claim to be RS/NS but fail RFC 4861 validation
    "internal_errors",  # exceptions from the core, the encoder or a callback (a bug or an unencodable message)
    "send_errors",  # sendto/send failures (OSError) on the signalling or access socket
    "recv_errors",  # recv failures (OSError) on a socket
    "suppressed_lines",  # log/event lines held back by the line limiter
)


class Counters(dict):
    """Named counters, all present from the start (zero)."""

    def __init__(self) -> None:
        super().__init__((name, 0) for name in COUNTERS)

    def add(self, name: str, n: int = 1) -> None:
        self[name] = self.get(name, 0) + n


class LineLimiter:
    def __init__(self, burst: int = LINE_BURST, window: float = LINE_WINDOW) -> None:
        if burst < 1 or window <= 0:
            raise ValueError("line limiter: burst must be >= 1 and window > 0")
        self.burst, self.window = burst, window
        self._state: dict[str, list] = {}  # kind -> [window start, lines in it, suppressed since last line]

    def allow(self, kind: str, now: float) -> tuple[bool, int]:
        """(emit?, lines suppressed before this one). The kinds are a fixed set of the agent's own."""
        st = self._state.get(kind)
        if st is None or now - st[0] >= self.window:
            held = st[2] if st is not None else 0
            self._state[kind] = [now, 1, 0]
            return True, held
        if st[1] < self.burst:
            st[1] += 1
            held, st[2] = st[2], 0
            return True, held
        st[2] += 1
        return False, 0


class WindowLimiter:
    """A sliding-window log per key: exact ("at most ``limit`` in any ``window`` seconds") and
    bounded: at most ``limit`` timestamps per key and ``max_keys`` keys."""

    def __init__(self, limit: int, window: float, max_keys: int) -> None:
        if limit < 1 or window <= 0 or max_keys < 1:
            raise ValueError("window limiter: limit and max_keys must be >= 1 and window > 0")
        self.limit, self.window, self.max_keys = limit, window, max_keys
        self._hits: OrderedDict[Hashable, deque] = OrderedDict()  # oldest last hit first

    def __len__(self) -> int:
        return len(self._hits)

    def _expire(self, now: float) -> None:
        hits = self._hits
        while hits:
            key, times = next(iter(hits.items()))
            if now - times[-1] < self.window:
                break
            del hits[key]

    def check(self, key: Hashable, now: float) -> Optional[str]:
        """None if one more hit for ``key`` is allowed now, else why not ("rate" or "full")."""
        self._expire(now)
        times = self._hits.get(key)
        if times is None:
            return "full" if len(self._hits) >= self.max_keys else None
        while times and now - times[0] >= self.window:
            times.popleft()
        return "rate" if len(times) >= self.limit else None

    def hit(self, key: Hashable, now: float) -> None:
        """Record a hit (after ``check`` allowed it)."""
        times = self._hits.get(key)
        if times is None:
            times = self._hits[key] = deque(maxlen=self.limit)
        times.append(now)
        self._hits.move_to_end(key)


class AttachLimiter:
    """Per MAC: at most ``mac_limit`` attach triggers in any ``mac_window`` s. Per access port: at
    most ``new_limit`` new MNs (attaches that would take a prefix) in any ``new_window`` s. A refused
    trigger is not recorded, so a flood does not grow the tables beyond the accepted triggers."""

    def __init__(self, new_limit: int = NEW_MN_LIMIT, new_window: float = NEW_MN_WINDOW,
                 mac_limit: int = MAC_LIMIT, mac_window: float = MAC_WINDOW,
                 max_macs: int = MAX_MACS, max_ports: int = MAX_PORTS) -> None:
        self.macs = WindowLimiter(mac_limit, mac_window, max_macs)
        self.ports = WindowLimiter(new_limit, new_window, max_ports)

    def check(self, mac: bytes, port: int, new: bool, now: float) -> Optional[str]:
        """None if allowed (and then recorded), else the counter name of the refusal."""
        why = self.macs.check(mac, now)
        if why is None and new:
            why = self.ports.check(port, now)
            if why == "rate":
                return "refused_new_mn_rate"
        elif why == "rate":
            return "refused_mac_rate"
        if why is not None:
            return "refused_limiter_full"
        self.macs.hit(mac, now)
        if new:
            self.ports.hit(port, now)
        return None


class LruDict(OrderedDict):
    """At most ``max_keys`` entries: setting a new key beyond that forgets the least recently set."""

    def __init__(self, max_keys: int) -> None:
        super().__init__()
        self.max_keys = max_keys

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.max_keys:
            self.popitem(last=False)
