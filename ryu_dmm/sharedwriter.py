"""The active-active shell's store side (docs/deploy-cmds.md): one greenthread sends the shared
gate's check-and-sets to Redis in one pipeline per round and settles them; another renews this
instance's lease and takes over the sessions of instances whose lease ran out.

A check whose outcome is unknown (Redis did not answer: a fail-over, a lost connection) may or may
not have been written; its sessions are read again and settled as lost, so the event is handled
again against what the store holds. Reads and writes that fail are retried after a pause while
the events wait (bounded in the gate); the MAARs retransmit meanwhile.
"""
from __future__ import annotations

import time
from typing import Callable

from .kicked import Kicked
from .runtime import hub
from .store import StoreError
from .store.shared import Check, SharedGate

RETRY_PAUSE = 0.2  # seconds before a failed round is tried again (a Sentinel fail-over takes ~1-3 s)
ADOPT_CHUNK = 500  # sessions of a dead instance adopted per pipeline


class SharedWriter:
    def __init__(self, store, gate: SharedGate, settle: Callable, adopted: Callable,
                 failed: Callable[[Exception], None], lease: float) -> None:
        self.store, self.gate = store, gate
        self._settle, self._adopted, self._failed = settle, adopted, failed
        self.lease = lease
        self._checks = Kicked(self._rounds, failed)
        self._lease_thread = None
        self.rounds = 0
        self.dead: list[str] = []  # instances seen dead at the last lease round
        self.takeovers: list[dict] = []  # the last few take-overs: instance, sessions, seconds
        self.takeover_count = 0
        self.lease_ok = True

    def start(self) -> None:
        self._checks.start()
        self._lease_thread = hub.spawn(self._leases)

    def stop(self) -> None:
        """Stop, giving the lease up: the others take this instance's sessions over within a renewal
        period (lease/3) instead of a whole lease."""
        self._checks.stop()
        if self._lease_thread is not None:
            hub.kill(self._lease_thread)
            self._lease_thread = None
            try:
                self.store.drop_lease()
            except StoreError as exc:
                self._failed(exc)

    def kick(self) -> None:
        self._checks.kick()

    # ---- checks --------------------------------------------------------------------------------
    def _rounds(self) -> None:
        while checks := self.gate.take():
            self._round(checks)

    def _round(self, checks: list[Check]) -> None:
        try:
            results = self.store.cas([c.items for c in checks])
        except StoreError as exc:
            self._failed(exc)
            self._unknown(checks)
            return
        self.rounds += 1
        for check, result in zip(checks, results):
            self._settled(check, result.won, result.versions, result.lost)

    def _settled(self, check: Check, won: bool, versions: dict, current: list) -> None:
        try:  # one event failing (a bug) costs a report, never the others of its round
            self._settle(check, won, versions, current)
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)

    def _unknown(self, checks: list[Check]) -> None:
        """Outcomes unknown: read the sessions again (retrying until Redis answers), settle as lost."""
        mn_ids = sorted({mn for c in checks for mn, _, _ in c.items})
        while True:
            hub.sleep(RETRY_PAUSE)
            try:
                now = {c.mn_id: c for c in self.store.read(mn_ids)}
                break
            except StoreError as exc:
                self._failed(exc)
        for check in checks:
            self._settled(check, False, {}, [now[mn] for mn, _, _ in check.items])

    # ---- leases and take-over ------------------------------------------------------------------
    def _leases(self) -> None:
        renewing_since = None  # since when our renewals succeed without a break
        while True:
            try:
                dead = self.store.renew_lease(self.lease)
                self.lease_ok = True
                renewing_since = renewing_since or time.monotonic()
                # Another instance counts as dead only once we have renewed for a whole lease: after
                # a start, or an outage of Redis (a fail-over longer than the lease lets every lease
                # run out), the others must have had the time to renew theirs too.
                self.dead = dead if time.monotonic() - renewing_since >= self.lease else []
                for d in self.dead:
                    self._take_over(d)
            except StoreError as exc:
                self.lease_ok = False
                renewing_since = None
                self._failed(exc)
            except Exception as exc:  # noqa: BLE001
                self._failed(exc)
            hub.sleep(self.lease / 3)

    def _take_over(self, dead: str) -> None:
        owned = self.store.claim(dead, self.lease)
        if not owned:
            return
        started = time.monotonic()
        adopted = 0
        for i in range(0, len(owned), ADOPT_CHUNK):
            current = [c for c in self.store.read(owned[i:i + ADOPT_CHUNK]) if c.owner == dead and c.record]
            # writing each session back unchanged makes this instance its owner, if nobody changed it meanwhile
            results = self.store.cas([[(c.mn_id, c.version, c.record)] for c in current])
            won = [(c, r.versions[c.mn_id]) for c, r in zip(current, results) if r.won]
            adopted += len(won)
            self._adopted(won)
        self.store.release_claim(dead)
        self.takeover_count += 1
        self.takeovers = (self.takeovers + [{"instance": dead, "sessions": adopted,
                                             "seconds": round(time.monotonic() - started, 3),
                                             "at": round(time.time(), 3)}])[-8:]

    def state(self) -> dict:
        return {**self.gate.state(), "rounds": self.rounds, "lease_ok": self.lease_ok, "dead": self.dead,
                "takeovers": self.takeovers, "takeover_count": self.takeover_count}
