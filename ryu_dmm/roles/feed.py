"""Changed sessions, from the instance that changed them to the switches' masters (Redis pub/sub).

With active-active CMDs any instance may handle an MN's PBU, but only a switch's master may write
to it. So the instance whose check-and-set won publishes the MNs it changed on ``PREFIX:changed``,
and every instance re-reads those sessions from the store and hands them to its core and flow
mirror, which pushes what changed to the switches it is master of (docs/openflow-roles.md).

Pub/sub loses what is published while a subscriber is not connected: after every (re)subscription
the instance re-reads everything (``on_gap``), as at a promotion.
"""
from __future__ import annotations

import json
from typing import Callable

from ..runtime import hub

RETRY = 0.5  # seconds before subscribing again after Redis went away
MAX_IDS = 4096  # MN IDs read from one message (a check-and-set changes a handful); more: a full re-read


class ChangeFeed:
    def __init__(self, client, channel: str, instance: str, on_changed: Callable[[list], None],
                 on_gap: Callable[[], None], guard) -> None:
        self._r, self._channel, self.instance = client, channel, instance
        self._changed, self._gap, self._guard = on_changed, on_gap, guard
        self._thread = None
        self.counts = {"published": 0, "received": 0, "feed_failed": 0, "resubscribed": 0}

    def start(self) -> None:
        self._thread = hub.spawn(self._run)

    def stop(self) -> None:
        if self._thread is not None:
            hub.kill(self._thread)
            self._thread = None

    def publish(self, mn_ids: list) -> None:
        """Tell the others (off the caller's greenthread: a won check's effects never wait for it)."""
        if mn_ids:
            hub.spawn(self._guard.call, "roles_feed", self._publish, list(mn_ids))

    def _publish(self, mn_ids: list) -> None:
        self._r.publish(self._channel, json.dumps({"from": self.instance, "mns": mn_ids}))
        self.counts["published"] += 1

    def _run(self) -> None:
        while True:
            self._guard.call("roles_feed", self._listen)
            self.counts["feed_failed"] += 1
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
            if len(mns) > MAX_IDS:
                self._gap()
            else:
                self._changed([m for m in mns if isinstance(m, str)])
