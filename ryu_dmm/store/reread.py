"""Re-reading the shared store into a running CMD, as a sans-IO state machine
(docs/openflow-roles.md: a promotion to a switch's master, the change feed subscribed again).

A load takes many Redis round trips, and PBUs, checks settling and the change feed are handled
meanwhile. So what the snapshot says of an MN is stale if this instance changed or learnt that MN
after the load began, or holds a change of it the store does not have yet: such an MN is left as
this instance holds it (the later event, check or commit settles it). Everything else is made what
the store holds, including sessions another instance deleted. Loads run one at a time: requests
made during one are served together by one more load after it.
"""
from __future__ import annotations

from typing import Callable, Iterable, Optional

MAX_TOUCHED = 65536  # MNs remembered as changed during one load; one more: the snapshot is not used, loaded again


class Reread:
    def __init__(self, max_touched: int = MAX_TOUCHED) -> None:
        self.max_touched = max_touched
        self.running = False
        self.completed = 0  # loads finished (adopted, failed or thrown away)
        self._again = False  # asked for while one ran
        self._touched: set[str] = set()
        self._overflowed = False
        self.counts = {"loads": 0, "coalesced": 0, "kept": 0, "overflowed": 0}

    def request(self) -> tuple[bool, int]:
        """Someone needs the store re-read. (run: the caller loads now (``started``, then ``adopt``
        and ``finished``); ticket: the value of ``completed`` once a load begun after this request
        has finished.) While one runs, requests coalesce into one more load after it."""
        if not self.running:
            self.running = True
            return True, self.completed + 1
        self._again = True
        self.counts["coalesced"] += 1
        return False, self.completed + 2

    def started(self, pending: Iterable[str] = ()) -> None:
        """A load begins. ``pending``: MNs with a change not yet committed to the store (the
        durability gate's), which the snapshot may miss."""
        self.counts["loads"] += 1
        self._touched = set()
        self._overflowed = False
        self.touch(pending)

    def touch(self, mn_ids: Iterable[str]) -> None:
        """These MNs' sessions changed here (an event, a check settled, the feed): the running load's
        snapshot of them is stale."""
        if not self.running or self._overflowed:
            return
        for mn_id in mn_ids:
            if len(self._touched) >= self.max_touched and mn_id not in self._touched:
                self._overflowed = True
                self.counts["overflowed"] += 1
                self._touched = set()
                return
            self._touched.add(mn_id)

    def keep(self, mn_id: str, versions: Optional[dict] = None, held: Optional[dict] = None,
             busy: Optional[Callable[[str], bool]] = None) -> bool:
        """Leave ``mn_id`` as this instance holds it: touched during the load, its check is in flight
        (``busy``), or (active-active) the snapshot's version is older than the one held (a
        version never goes back; 0, no session, is a deletion and is taken)."""
        if mn_id in self._touched or (busy is not None and busy(mn_id)):
            return True
        if versions is not None and held is not None:
            loaded = versions.get(mn_id, 0)
            return 0 < loaded < held.get(mn_id, 0)
        return False

    def adopt(self, core, records, now: float, versions: Optional[dict] = None, held: Optional[dict] = None,
              busy: Optional[Callable[[str], bool]] = None) -> Optional[list]:
        """The snapshot into ``core`` (``CmdCore.adopt``) but for the MNs to ``keep``; ``held``
        (active-active: the shared gate's versions) takes the snapshot's ``versions`` of the others.
        None: too many MNs changed during the load to tell which are stale (nothing adopted; the
        caller's ``finished`` asks for another load)."""
        if self._overflowed:
            return None
        kept: set[str] = set()

        def skip(mn_id: str) -> bool:
            if self.keep(mn_id, versions, held, busy):
                kept.add(mn_id)
                return True
            return False
        effects = core.adopt(records, now, skip)
        if versions is not None and held is not None:
            for mn_id in set(versions) | set(held):
                if mn_id in kept or self.keep(mn_id, versions, held, busy):
                    continue
                if versions.get(mn_id, 0):
                    held[mn_id] = versions[mn_id]
                else:
                    held.pop(mn_id, None)
        self.counts["kept"] += len(kept)
        return effects

    def finished(self) -> bool:
        """The load is over. True: load again now (asked for meanwhile, or the snapshot was thrown
        away); the caller keeps running."""
        self.completed += 1
        again = self._again or self._overflowed
        self._again = False
        self.running = again
        self._touched = set()
        return again

    def state(self) -> dict:
        return {**self.counts, "running": self.running}
