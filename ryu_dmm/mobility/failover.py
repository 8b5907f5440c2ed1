"""Which of the domain's CMDs a MAAR signals to, and when it moves to the next (docs/failover.md).

Sans-IO, owned by ``MaarCore``: the core tells it what it sent to the current CMD and what it heard
from it; it answers with timer effects and, when that CMD has been silent too long, with the CMD to
use next. The rule is one clock for every kind of request: when a request sent to the current CMD
(a PBU, a retransmission of one, or an RFC 5847 Heartbeat request) has had no message at all from
that CMD for ``timeout`` seconds, the CMD is taken as failed and the next one in the list, preferring
one not known to be unreachable, becomes current. Any message from the current CMD (a PBA, a
Heartbeat, a PBU) shows that it is alive and stops the clock; the next request starts it again.
"""
from __future__ import annotations

from typing import Callable, Optional

from ..wire import BindingUpdate, Heartbeat
from .events import CancelTimer, Effect, Send, SetTimer, TimerKey, TimerKind

KEY = TimerKey(TimerKind.FAILOVER, "")  # one per core: the current CMD's silence deadline


class CmdFailover:
    """An ordered list of CMD addresses, the current one, and the silence clock. With one CMD, or
    ``timeout`` 0, it never moves."""

    def __init__(self, cmds: tuple[str, ...], timeout: float) -> None:
        if not cmds or len(set(cmds)) != len(cmds):
            raise ValueError("the CMD list must hold distinct addresses, at least one")
        self.cmds = cmds
        self.timeout = timeout
        self.index = 0
        self.moves = 0  # fail-overs since start
        self._since: Optional[float] = None  # the oldest request to the current CMD not yet followed by a word from it

    @property
    def current(self) -> str:
        return self.cmds[self.index]

    @property
    def enabled(self) -> bool:
        return len(self.cmds) > 1 and self.timeout > 0

    def sent(self, effects: list[Effect], now: float) -> list[Effect]:
        """Effects about to be carried out: the first request among them to the current CMD, with
        none pending, starts the clock."""
        if not self.enabled or self._since is not None:
            return []
        for e in effects:
            if type(e) is Send and e.dst == self.current and (
                    type(e.msg) is BindingUpdate or type(e.msg) is Heartbeat and not e.msg.response):
                self._since = now
                return [SetTimer(KEY, now + self.timeout)]
        return []

    def heard(self, src: str) -> list[Effect]:
        """A message from ``src``: if it is the current CMD, the clock stops."""
        if src != self.current or self._since is None:
            return []
        self._since = None
        return [CancelTimer(KEY)]

    def fire(self, now: float, reachable: Callable[[str], bool]) -> Optional[str]:
        """The clock ran out: the CMD to move to (the next in the list that ``reachable`` does not rule
        out, else simply the next), or None if nothing is due (a stale timer)."""
        if self._since is None or now - self._since < self.timeout - 1e-9:
            return None
        self._since = None
        n = len(self.cmds)
        order = [(self.index + i) % n for i in range(1, n)]
        self.index = next((i for i in order if reachable(self.cmds[i])), order[0])
        self.moves += 1
        return self.current

    def describe(self) -> dict:
        return {"current": self.current, "list": list(self.cmds), "failovers": self.moves,
                "failover_timeout": self.timeout, "silent_since": self._since}
