"""One pure timer heap for every shell: keys with absolute deadlines, no clock, no I/O.

The CMD on Ryu's hub (``hubtimers``) and the MAAR agent's select loop (``agent.loop``) drive the
same heap: they ask it for the next deadline, sleep until then, and pop what is due. Setting a key
again replaces its deadline; cancelling leaves a stale entry that is skipped when popped and
reclaimed by compaction once stale entries outnumber live ones (re-registering one MN 300k times
must not grow memory).
"""
from __future__ import annotations

import heapq
import itertools
from typing import Hashable, Optional

COMPACT_MIN = 1024  # below this many heap entries stale ones are just skipped, never compacted


class TimerHeap:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Hashable]] = []
        self._live: dict[Hashable, tuple[float, int]] = {}  # key -> (deadline, token of its live entry)
        self._count = itertools.count()

    def __len__(self) -> int:
        """Live timers (stale heap entries not counted)."""
        return len(self._live)

    @property
    def entries(self) -> int:
        """Heap entries including stale ones: bounded by about twice the live timers."""
        return len(self._heap)

    def set(self, key: Hashable, at: float) -> bool:
        """Arm ``key`` for ``at``, replacing any earlier deadline. True if it is now the earliest."""
        token = next(self._count)
        self._live[key] = (at, token)
        earliest = not self._heap or at < self._heap[0][0]
        heapq.heappush(self._heap, (at, token, key))
        self._compact()
        return earliest

    def cancel(self, key: Hashable) -> None:
        if self._live.pop(key, None) is not None:
            self._compact()

    def deadline(self, key: Hashable) -> Optional[float]:
        live = self._live.get(key)
        return live[0] if live is not None else None

    def next_at(self) -> Optional[float]:
        """The earliest live deadline, or None."""
        heap = self._heap
        while heap and self._live.get(heap[0][2], (None, None))[1] != heap[0][1]:
            heapq.heappop(heap)  # stale head
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> list[Hashable]:
        """Keys whose deadline is ``now`` or earlier, in deadline order, removed from the heap."""
        due = []
        heap, live = self._heap, self._live
        while heap and heap[0][0] <= now:
            _, token, key = heapq.heappop(heap)
            if live.get(key, (None, None))[1] == token:
                del live[key]
                due.append(key)
        return due

    def _compact(self) -> None:
        if len(self._heap) > COMPACT_MIN and len(self._heap) > 2 * len(self._live):
            self._heap = [(at, token, key) for key, (at, token) in self._live.items()]
            heapq.heapify(self._heap)
