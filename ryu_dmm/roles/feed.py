"""Changed sessions, from the instance that changed them to the switches' masters (Redis pub/sub).

With active-active CMDs any instance may handle an MN's PBU, but only a switch's master may write
to it. So the instance whose check-and-set won publishes the MNs it changed on ``PREFIX:changed``,
and every instance re-reads those sessions from the store and hands them to its core and flow
mirror, which pushes what changed to the switches it is master of (docs/openflow-roles.md).

Pub/sub loses what is published while a subscriber is not connected: after every (re)subscription
the instance re-reads everything (``on_gap``), as at a promotion.

Publishing never holds up a won check: the MN IDs wait in a coalescing set (at most
``MAX_PENDING``) that one publisher greenthread drains, at most ``MAX_IDS`` per message, so a slow
Redis costs one connection, not one per check. When the set is full, or a publish failed, the IDs
are dropped (counted) and the next message asks every instance for a full re-read instead.
"""
from __future__ import annotations

import itertools
import json
from typing import Callable

from ..runtime import hub

RETRY = 0.5  # seconds before subscribing again after Redis went away
MAX_IDS = 4096  # MN IDs read from one message (a check-and-set changes a handful); more: a full re-read
MAX_PENDING = 65536  # MN IDs waiting to be published; one more: all dropped, a full re-read asked for


class ChangeFeed:
    def __init__(self, client, channel: str, instance: str, on_changed: Callable[[list], None],
                 on_gap: Callable[[], None], guard) -> None:
        self._r, self._channel, self.instance = client, channel, instance
        self._changed, self._gap, self._guard = on_changed, on_gap, guard
        self._thread = self._publisher = None
        self.max_pending = MAX_PENDING
        self._pending: dict[str, None] = {}  # MN IDs to publish, in order, each once
        self._everything = False  # IDs were dropped: the next message asks for a full re-read
        self._wake = hub.Event()
        self.counts = {"published": 0, "received": 0, "failed": 0, "resubscribed": 0, "dropped": 0,
                       "publish_failed": 0, "asked_reread": 0}

    def start(self) -> None:
        self._thread = hub.spawn(self._run)
        self._publisher = hub.spawn(self._drain)

    def stop(self) -> None:
        for t in (self._thread, self._publisher):
            if t is not None:
                hub.kill(t)
        self._thread = self._publisher = None

    def publish(self, mn_ids: list) -> None:
        """Tell the others (the publisher greenthread sends it: a won check's effects never wait)."""
        pending = self._pending
        for mn_id in mn_ids:
            if self._everything:  # (a full re-read is asked for: it covers this one)
                self.counts["dropped"] += 1
                continue
            if mn_id in pending:
                continue
            if len(pending) >= self.max_pending:  # Redis is slow or away: the others will re-read it all
                self.counts["dropped"] += len(pending) + 1
                pending.clear()
                self._everything = True
                break
            pending[mn_id] = None
        if pending or self._everything:
            self._wake.set()

    def _drain(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._pending or self._everything:
                if not self._guard.call("roles_feed", self._flush):
                    hub.sleep(RETRY)

    def _flush(self) -> None:
        """One message: a full re-read asked for, or the next ``MAX_IDS`` pending IDs. If Redis does
        not take it, those IDs are dropped and a full re-read is asked for next."""
        if self._everything:
            body: dict = {"from": self.instance, "mns": [], "all": True}
            ids: list = []
        else:
            ids = list(itertools.islice(self._pending, MAX_IDS))
            body = {"from": self.instance, "mns": ids}
        for mn_id in ids:
            del self._pending[mn_id]
        try:
            self._r.publish(self._channel, json.dumps(body))
        except Exception:
            self.counts["publish_failed"] += 1
            self.counts["dropped"] += len(ids) + len(self._pending)
            self._pending.clear()
            self._everything = True
            raise
        if body.get("all"):
            self._everything = False
            self.counts["asked_reread"] += 1
        self.counts["published"] += 1

    def _publish(self, mn_ids: list) -> None:
        """``mn_ids`` published now (tests; the CMD uses ``publish``)."""
        self.publish(mn_ids)
        while self._pending or self._everything:
            self._flush()

    def _run(self) -> None:
        while True:
            self._guard.call("roles_feed", self._listen)
            self.counts["failed"] += 1
            hub.sleep(RETRY)

    def _listen(self) -> None:
        pubsub = self._r.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(self._channel)
            self.counts["resubscribed"] += 1
            self._gap()  # whatever was published before we listened
            while True:
                msg = pubsub.get_message(timeout=1.0)
                if msg is not None and msg["type"] == "message":
                    self._message(msg["data"])
        finally:
            pubsub.close()

    def _message(self, data: bytes) -> None:
        try:
            body = json.loads(data)
            sender, mns = body["from"], body["mns"]
        except (ValueError, TypeError, KeyError):
            return  # not ours
        if sender != self.instance and isinstance(mns, list):
            self.counts["received"] += 1
            if len(mns) > MAX_IDS or body.get("all") is True:
                self._gap()
            else:
                self._changed([m for m in mns if isinstance(m, str)])
