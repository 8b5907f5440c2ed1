"""A MAAR's exclusive prefix pool: a block carved into fixed-length prefixes."""
from __future__ import annotations

import heapq
from typing import Optional

from ..wire import Prefix


class PrefixPool:
    """Hands out prefixes in order; a returned prefix is quarantined until ``reusable_at``.

    The quarantine (MinDelayBeforeBCEDelete by default) keeps a prefix that just left one MN from
    reaching another while stale routes or flows for it may still exist elsewhere.
    """

    def __init__(self, block: Prefix, length: int = 64) -> None:
        if not block.length <= length <= 128:
            raise ValueError(f"prefix length {length} must be within 128 and at least {block.length}")
        self.block = block
        self.length = length
        self._base = int.from_bytes(block.packed, "big")
        self._step = 1 << (128 - length)
        self._size = 1 << (length - block.length)
        self._next = 0
        self._free: list[int] = []  # indexes returned and past quarantine
        self._quarantine: list[tuple[float, int]] = []
        self._stamps: dict[int, int] = {}  # quarantined index -> CMD timestamp of its release
        self._used: set[int] = set()

    @property
    def capacity(self) -> int:
        return self._size

    @property
    def in_use(self) -> int:
        return len(self._used)

    def contains(self, prefix: Prefix) -> bool:
        if prefix.length != self.length:
            return False
        offset = int.from_bytes(prefix.packed, "big") - self._base
        return 0 <= offset < self._size * self._step and offset % self._step == 0

    def _prefix(self, index: int) -> Prefix:
        return Prefix((self._base + index * self._step).to_bytes(16, "big"), self.length)

    def allocate(self, now: float) -> Optional[Prefix]:
        while self._quarantine and self._quarantine[0][0] <= now:
            index = heapq.heappop(self._quarantine)[1]
            self._stamps.pop(index, None)
            heapq.heappush(self._free, index)
        while self._free and self._free[0] in self._used:  # adopted while free
            heapq.heappop(self._free)
        if self._free:
            index = heapq.heappop(self._free)
        else:
            while self._next < self._size and self._next in self._used:  # adopted ahead of allocation
                self._next += 1
            if self._next >= self._size:
                return None
            index = self._next
            self._next += 1
        self._used.add(index)
        return self._prefix(index)

    def adopt(self, prefix: Prefix, stamp: int = 0) -> bool:
        """Take ``prefix`` back into use (even from quarantine) unless it is in use: for when the
        CMD, the source of truth, says we still anchor it for an MN. False if not ours, in use, or
        released by a CMD message newer than ``stamp`` (the asking PBU's timestamp: a late one)."""
        if not self.contains(prefix):
            return False
        index = (int.from_bytes(prefix.packed, "big") - self._base) // self._step
        if index in self._used or self._stamps.get(index, 0) > stamp:
            return False
        self._stamps.pop(index, None)
        self._quarantine = [(t, i) for t, i in self._quarantine if i != index]
        heapq.heapify(self._quarantine)
        self._used.add(index)
        return True

    def release(self, prefix: Prefix, reusable_at: float, stamp: int = 0) -> None:
        """Return ``prefix`` after quarantine; ``stamp``: the timestamp of the CMD PBU that ended its
        binding, if any (``adopt`` refuses older ones)."""
        index = (int.from_bytes(prefix.packed, "big") - self._base) // self._step
        if index in self._used:
            self._used.discard(index)
            heapq.heappush(self._quarantine, (reusable_at, index))
            if stamp:
                self._stamps[index] = stamp

    def stamp_release(self, prefix: Prefix, stamp: int) -> None:
        """The CMD de-registered ``prefix`` while it is already in quarantine here (our binding went
        first): remember the newer stamp, so a late, older PBU does not ``adopt`` it again."""
        if not self.contains(prefix):
            return
        index = (int.from_bytes(prefix.packed, "big") - self._base) // self._step
        if index not in self._used and any(i == index for _, i in self._quarantine):
            self._stamps[index] = max(self._stamps.get(index, 0), stamp)

    def __repr__(self) -> str:
        return f"PrefixPool({self.block}, /{self.length}, in use {self.in_use}/{self.capacity})"

