"""The CMD core: binding cache, validation, handover in relay/locator/proxy mode, de-registration.

Sans-IO: ``handle(event, now)`` returns effects. Message sequences follow RFC 8885 §3.1-3.5; where
the RFC is silent the choice is written in docs/mobility.md ("Decisions").
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

from ..wire import BindingAck, BindingUpdate, Heartbeat, HomeNetworkPrefix, Prefix, Status, missing_mandatory
from . import messages as M
from .config import ALL_ZERO, Domain, MaarInfo, Mode
from .events import (
    AnchorIdle, BindingChanged, CancelTimer, Effect, Persist, PersistMeta, Received, Report, ReportKind, RetxKey, Send,
    SetTimer, TimerFired, TimerKey, TimerKind,
)
from .heartbeat import Heartbeats, HeartbeatKey, PeerRestarted
from .pool import PrefixPool
from .retransmit import Outstanding, Retransmitter
from .views import Record, Session

SEQ_BLOCK = 1024  # CMD sequence numbers reserved per peer in the store at a time (PersistMeta)
REBUILD_CHUNK = 256  # PBUs re-sending a restarted MAAR its bindings per step (REBUILD timer)
REBUILD_STEP = 0.05  # seconds between two steps: at most ~5,000 PBUs/s towards one restarting MAAR


@dataclass(slots=True)
class Handover:
    """A handover whose P-MAARs have not all answered yet."""

    smaar: str
    seq: int  # the S-MAAR's PBU to answer (relay/locator)
    request: Optional[BindingUpdate]  # None after a restart (restore): nobody is owed an answer
    started: float
    waiting: dict[str, Outstanding] = field(default_factory=dict)
    answered: set[str] = field(default_factory=set)
    smaar_answered: bool = False
    initial: bool = False  # legacy mode: the first registration, at a MAAR other than the LMA
    foreign: bool = False  # active-active: another CMD runs it (reload); ours once we write (finish_handover)


@dataclass(slots=True)
class Bce:
    """One mobility session: serving MAAR and its prefix, the P-MAAR list, lifetime, last PBU seen."""

    mn_id: str
    serving: str
    prefix: Prefix
    expires: float
    att: int
    mac: bytes = b""  # the MN's link-layer identifier (MN-LL-ID), for the serving MAAR's flows
    last_ts: int = 0  # last accepted timestamp (RFC 5213 format), 0 if none
    last_seq: int = -1  # last accepted sequence number from ``serving``
    pmaars: tuple[tuple[str, Prefix], ...] = ()  # (P-MAAR address, prefix it anchors)
    handover: Optional[Handover] = None


class CmdCore:
    """The Central Mobility Database of RFC 8885: a PMIPv6 LMA reduced to its binding cache.

    It validates PBUs from MAARs, keeps one session per MN (serving MAAR, its prefix, the P-MAAR
    list), runs handovers in the configured mode and de-registers sessions whose lifetime ends. It
    owns no socket, clock or switch: the shell feeds it events and carries out its effects, and
    reads its state only through ``session()``/``sessions()``.
    """

    def __init__(self, domain: Domain, restart_counter: int = 0) -> None:
        self.domain = domain
        self.address = domain.cmd_address
        self.mode = domain.mode
        self.timers = domain.timers
        self.maars: dict[str, MaarInfo] = domain.by_address()
        self._pools = {m.address: PrefixPool(m.pool, m.prefix_length) for m in domain.maars}
        # Legacy mode: the LMA MAAR's address; we assign every MN's prefix from its pool, as an LMA
        # does (RFC 5213 §5.3.1), and list the LMA as the session's one P-MAAR (docs/mode-legacy.md).
        self.lma: Optional[str] = domain.lma_info.address if domain.lma_info is not None else None
        self.cache: dict[str, Bce] = {}
        self.retx = Retransmitter(domain.timers)
        # prefix -> the MN whose session holds it (serving or P-MAAR prefix): at most sessions x
        # (1 + max_pmaars) entries. Sessions served per MAAR, for timers.max_sessions.
        self._owner: dict[Prefix, str] = {}
        self._served: dict[str, int] = {}
        # Messages accepted without RFC 8885's D flag (§4.1, §4.2), e.g. from a plain PMIPv6 peer;
        # P-MAARs' PBAs ignored for a wrong echo (docs/security.md).
        self.counters = {"pbu_without_d": 0, "pba_without_d": 0, "pba_echo_mismatch": 0}

        self._reserved: dict[str, int] = {}  # peer -> sequence number reserved up to (PersistMeta)
        self.heartbeats = Heartbeats(restart_counter, domain.timers.heartbeat_interval,
                                     domain.timers.missing_heartbeats_allowed)
        self._counters: dict[str, int] = {}  # peer -> Restart Counter as last persisted
        self._rebuilding: dict[str, tuple[int, list[str]]] = {}  # restarted MAAR -> (its new counter, MNs to re-send)
        self._also_changed: list[str] = []  # MNs an event changed besides its own (a PBU evicted elsewhere)

    # ---- public view -------------------------------------------------------------------------
    def session(self, mn_id: str) -> Optional[Session]:
        bce = self.cache.get(mn_id)
        return _view(bce) if bce is not None else None

    def sessions(self):
        """Every session, in registration order (a generator: views are built as they are read)."""
        return (_view(b) for b in self.cache.values())

    def mn_ids(self) -> list[str]:
        """A snapshot of every MN with a session (cheap: no views are built)."""
        return list(self.cache)

    def __len__(self) -> int:
        return len(self.cache)

    def peers(self):
        """RFC 5847 state of every MAAR (``heartbeat.PeerView``)."""
        return self.heartbeats.views()

    def record(self, mn_id: str) -> Optional[Record]:
        """What the binding store keeps of one session (None: no session)."""
        bce = self.cache.get(mn_id)
        if bce is None:
            return None
        return Record(bce.mn_id, bce.serving, bce.prefix, bce.mac, bce.pmaars, bce.expires, bce.att, bce.last_ts,
                      bce.last_seq, bce.handover is not None)

    def reload(self, mn_id: str, record: Optional[Record], now: float, renotify: bool = True) -> list[Effect]:
        """Another CMD sharing the store changed this MN's session (active-active, docs/deploy-cmds.md:
        a check-and-set of ours lost, or its sessions are taken over): forget what this core held of
        it (its timers, the PBUs about it still awaiting answers) and hold the stored one instead.
        With ``renotify`` (this CMD now finishes it: it is the session's owner, or the owner died), a
        handover the store marks unfinished is sent to its P-MAARs again (a copy they may have had
        already is harmless: it names the same serving MAAR)."""
        effects: list[Effect] = []
        old = self.cache.pop(mn_id, None)
        if old is not None:
            for prefix in (old.prefix, *(p for _, p in old.pmaars)):
                if self._owner.get(prefix) == mn_id:
                    del self._owner[prefix]
            self._served[old.serving] -= 1
            effects += [CancelTimer(TimerKey(TimerKind.LIFETIME, mn_id)),
                        CancelTimer(TimerKey(TimerKind.AGGREGATE, mn_id))]
        for peer in self.maars:
            for out in self.retx.outstanding(peer, mn_id):
                effects += self.retx.cancel(out)
        if record is None or record.serving not in self.maars or any(a not in self.maars for a, _ in record.pmaars):
            return effects + ([BindingChanged(mn_id, None)] if old is not None else [])
        effects += self._install(record)
        if record.handover and record.pmaars:
            if renotify:
                effects += self._renotify(self.cache[mn_id], now)
            else:  # its owner finishes it; we keep the mark, so that what we would write keeps it too
                self.cache[mn_id].handover = Handover(record.serving, -1, None, now, smaar_answered=True, foreign=True)
        return effects

    def finish_handover(self, mn_id: str, now: float) -> list[Effect]:
        """Active-active: this CMD changed the session of an MN whose handover another CMD runs
        (``reload`` without ``renotify``); once that is written it is the session's owner, so it
        finishes the handover from here: its P-MAARs are told again (harmless if they knew)."""
        bce = self.cache.get(mn_id)
        if bce is None or bce.handover is None or not bce.handover.foreign:
            return []
        return self._renotify(bce, now)

    def _install(self, r: Record) -> list[Effect]:
        bce = self.cache[r.mn_id] = Bce(r.mn_id, r.serving, r.prefix, r.expires, r.att, r.mac, r.last_ts, r.last_seq,
                                        r.pmaars)
        for prefix in (r.prefix, *(p for _, p in r.pmaars)):
            self._owner[prefix] = r.mn_id
        if self.lma is not None:
            self._pools[self.lma].adopt(r.prefix)
        self._served[r.serving] = self._served.get(r.serving, 0) + 1
        return [self._life_timer(r.mn_id, r.expires), _changed(bce)]

    def restore(self, records, sequences: dict[str, int], now: float, renotify=None) -> list[Effect]:
        """Start from what the binding store kept (a restart). Sessions of MAARs no longer configured
        are dropped (returned as ``Persist(mn, None)``). Each lifetime timer is set at its stored
        deadline (one already past fires at once, in deadline order); every session is announced to
        the data plane; a handover that may not have reached all its P-MAARs is sent to them again,
        and the serving MAAR's next copy of its PBU is answered from the session (docs/store.md).
        ``renotify(record)``: whether this CMD finishes that handover (active-active: only its own)."""
        effects: list[Effect] = []
        for peer, seq in sequences.items():
            if peer in self.maars:
                self.retx.start_at(peer, seq)
        winner: dict[Prefix, Record] = {}  # a prefix in two records (a crash between two batches):
        for r in records:                   # the newer registration keeps it
            for prefix in (r.prefix, *(p for _, p in r.pmaars)):
                held = winner.get(prefix)
                if held is None or r.last_ts > held.last_ts:
                    winner[prefix] = r
        for r in records:
            known = r.serving in self.maars and all(a in self.maars for a, _ in r.pmaars)
            clash = any(winner[p] is not r for p in (r.prefix, *(p for _, p in r.pmaars)))
            if not known or clash or r.mn_id in self.cache:
                effects.append(Persist(r.mn_id, None) if not known or clash else Report(
                    ReportKind.FAILED, r.mn_id, "stored twice: the first record kept"))
                if clash:
                    effects.append(Report(ReportKind.FAILED, r.mn_id, "a prefix of this stored session is bound "
                                          "to a newer one: dropped"))
                continue
            effects += self._install(r)
            if r.handover and r.pmaars and (renotify is None or renotify(r)):
                effects += self._renotify(self.cache[r.mn_id], now)
        return effects

    def adopt(self, records, now: float, skip=None) -> list[Effect]:
        """Make the cache what a shared store holds now: every session that differs is reloaded
        (``reload``, without re-sending handovers: their owners do), one no longer stored ends
        quietly (whoever ended it told the MAARs). Used when this instance becomes a switch's
        OpenFlow master (docs/openflow-roles.md): another instance may have changed sessions since
        this one read them. ``skip(mn_id)``: leave that MN as it is (an event of ours about it is
        being checked against the store, which settles it)."""
        stored = {r.mn_id: r for r in records}
        effects: list[Effect] = []
        for mn_id in [m for m in self.cache if m not in stored] + [m for m, r in stored.items() if self.record(m) != r]:
            if skip is None or not skip(mn_id):
                effects += self.reload(mn_id, stored.get(mn_id), now, renotify=False)
        return effects

    def watch_peers(self, counters: dict[str, int], now: float) -> list[Effect]:
        """Start RFC 5847 heartbeats with every MAAR; ``counters``: their Restart Counters as
        persisted, so that a MAAR that restarted while we were down is noticed at its first answer."""
        self._counters = {p: c for p, c in counters.items() if p in self.maars}
        effects: list[Effect] = []
        for peer in self.maars:
            effects += self.heartbeats.watch(peer, now, self._counters.get(peer))
        return effects

    def _on_heartbeat(self, src: str, hb: Heartbeat, now: float) -> list[Effect]:
        effects, restarted = self.heartbeats.handle_message(src, hb, now)
        if restarted is not None:  # reported by _rebuild, with what it re-sends
            effects = [e for e in effects if not (type(e) is Report and e.kind is ReportKind.PEER_RESTARTED)]
            return effects + self._rebuild(restarted, now)
        view = self.heartbeats.view(src)
        if (view is not None and view.restart_counter is not None and src not in self._rebuilding
                and self._counters.get(src) != view.restart_counter):  # a peer's first counter
            effects.append(self._remember_counter(src, view.restart_counter))
        return effects

    def _remember_counter(self, peer: str, counter: int) -> PersistMeta:
        self._counters[peer] = counter
        return PersistMeta(f"counter:{peer}", str(counter))

    def _rebuild(self, restarted: PeerRestarted, now: float) -> list[Effect]:
        """A MAAR lost its bindings (RFC 5847 Restart Counter changed): re-send it, a chunk per
        step, what it must hold: the MNs it serves and the prefixes it anchors for MNs elsewhere
        (docs/store.md, "A MAAR restarts")."""
        peer = restarted.peer
        todo = [b.mn_id for b in self.cache.values()
                if b.serving == peer or any(a == peer for a, _ in b.pmaars)]
        # The new counter is stored only once everything was re-sent: a CMD restarted mid-rebuild
        # still knows the old one and rebuilds again from the MAAR's next Heartbeat.
        self._rebuilding[peer] = (restarted.new, todo[::-1])  # popped from the end: registration order
        return [Report(ReportKind.PEER_RESTARTED, "", f"{self.maars[peer].name} restarted: re-sending it "
                       f"{len(todo)} binding(s)")] + self._rebuild_step(peer, now)

    def _rebuild_step(self, peer: str, now: float) -> list[Effect]:
        if peer not in self._rebuilding:
            return []
        counter, todo = self._rebuilding[peer]
        effects: list[Effect] = []
        room = min(REBUILD_CHUNK, self.timers.max_outstanding // 2 - self.retx.count(peer))
        while todo and room > 0:
            bce = self.cache.get(todo.pop())
            if bce is None:
                continue
            lifetime = self._remaining(bce, now, 4)
            if bce.serving == peer:
                def build(seq: int, t: float, b=bce, life=lifetime) -> BindingUpdate:
                    return M.pbu(seq, t, b.mn_id, b.prefix, life, M.HI_REREGISTRATION, b.att, b.mac or None,
                                 serving=peer)
            else:
                anchored = next((p for a, p in bce.pmaars if a == peer), None)
                if anchored is None:
                    continue

                def build(seq: int, t: float, b=bce, life=lifetime, anchored=anchored) -> BindingUpdate:
                    return M.pbu(seq, t, b.mn_id, anchored, life, M.HI_BETWEEN_MAARS, b.att, serving=b.serving)
            effects += self._send_pbu(peer, bce.mn_id, build, now, "rebuild")[0]
            room -= 1
        if todo:
            effects.append(SetTimer(TimerKey(TimerKind.REBUILD, peer), now + REBUILD_STEP))
        else:
            del self._rebuilding[peer]
            effects.append(self._remember_counter(peer, counter))
        return effects

    def _renotify(self, bce: Bce, now: float) -> list[Effect]:
        """Tell every P-MAAR again where the MN is served (after a restart mid-handover). Nobody is
        owed a PBA: the serving MAAR's retransmission is answered as a copy of its accepted PBU."""
        ho = bce.handover = Handover(bce.serving, -1, None, now, smaar_answered=True)
        lifetime = self._remaining(bce, now, 4)
        effects: list[Effect] = []
        for addr, anchored in bce.pmaars:
            def build(seq: int, t: float, anchored=anchored, smaar=bce.serving) -> BindingUpdate:
                return M.pbu(seq, t, bce.mn_id, anchored, lifetime, M.HI_BETWEEN_MAARS, bce.att, serving=smaar)
            sent, ho.waiting[addr] = self._send_pbu(addr, bce.mn_id, build, now, ho)
            effects += sent
        return effects

    # ---- dispatch ----------------------------------------------------------------------------
    def handle(self, event, now: float) -> list[Effect]:
        """One event at time ``now`` (seconds since the epoch, the clock of the PBU timestamps).

        Events: ``Received(src, PBU)`` from a MAAR, ``Received(src, PBA)`` from a P-MAAR answering a
        PBU of ours, ``TimerFired(key)`` for a key we set. Effects, in the order to carry them out:
        ``Send`` (a PBU or PBA to a MAAR's signalling address), ``SetTimer``/``CancelTimer``,
        ``BindingChanged`` (a session's placement changed or it ended: the data plane follows),
        ``Report`` (what an operator must see), and for the binding store ``Persist`` (first, before
        the answers it explains) and ``PersistMeta``. Anything else is ignored.
        """
        mn_id = self.subject(event)
        bce = self.cache.get(mn_id) if mn_id is not None else None
        before = _state(bce) if bce is not None else None
        effects = self._dispatch(event, now)
        after = self.cache.get(mn_id) if mn_id is not None else None
        changed = [mn_id] if (_state(after) if after is not None else None) != before else []
        if self._also_changed:
            changed += [m for m in self._also_changed if m != mn_id]
            self._also_changed.clear()
        if not changed:
            return effects
        return [Persist(m, self.record(m)) for m in changed] + effects

    def subject(self, event) -> Optional[str]:
        """The MN whose session an event may change (None: no session's)."""
        if type(event) is Received:
            if type(event.msg) is BindingUpdate:
                return event.msg.mn_id
            if type(event.msg) is not BindingAck:
                return None
            out = self.retx.pending.get((event.src, event.msg.sequence))
            return out.mn_id if out is not None else None
        if type(event) is TimerFired:
            key = event.key
            if type(key) is RetxKey:
                out = self.retx.pending.get(key)
                return out.mn_id if out is not None else None
            if type(key) is TimerKey:
                return key.mn_id if key.kind is not TimerKind.REBUILD else None  # (a REBUILD's key names a peer)
        if type(event) is AnchorIdle:
            return event.mn_id
        return None

    def _dispatch(self, event, now: float) -> list[Effect]:
        if type(event) is Received:
            msg = event.msg
            if type(msg) is BindingUpdate:
                return self._on_pbu(event.src, msg, now)
            if type(msg) is Heartbeat:
                return self._on_heartbeat(event.src, msg, now)
            return self._on_pba(event.src, msg, now)
        if type(event) is TimerFired:
            key = event.key
            if type(key) is RetxKey:
                effects, failed = self.retx.fire(key, now)
                return effects + self._on_peer_failed(failed, now) if failed else effects
            if type(key) is TimerKey and key.kind is TimerKind.LIFETIME:
                return self._on_expiry(key.mn_id, now)
            if type(key) is TimerKey and key.kind is TimerKind.AGGREGATE:
                return self._on_aggregate_timeout(key.mn_id, now)
            if type(key) is HeartbeatKey:
                return self.heartbeats.handle_timer(key, now)
            if type(key) is TimerKey and key.kind is TimerKind.REBUILD:
                return self._rebuild_step(key.mn_id, now)
        if type(event) is AnchorIdle:
            return self._on_anchor_idle(event, now)
        return []

    # ---- PBU from a MAAR ---------------------------------------------------------------------
    def _reject(self, src: str, pbu: BindingUpdate, status: int, why: str) -> list[Effect]:
        return [Send(src, M.pba_for(pbu, status, 0)), Report(ReportKind.REJECTED, pbu.mn_id or "", why, status)]

    def _on_pbu(self, src: str, pbu: BindingUpdate, now: float) -> list[Effect]:
        if src not in self.maars:
            return self._reject(src, pbu, Status.MAG_NOT_AUTHORIZED_FOR_PROXY_REG, f"{src} is not a MAAR")
        if not pbu.is_proxy:
            return self._reject(src, pbu, Status.PROXY_REG_NOT_ENABLED, "Binding Update without the P flag")
        if not pbu.d:
            self.counters["pbu_without_d"] += 1
        missing = missing_mandatory(pbu)
        if missing is not None:
            return self._reject(src, pbu, missing, f"missing option ({missing.name})")
        hnps = pbu.hnps
        if len(hnps) != 1:
            return self._reject(src, pbu, Status.ADMINISTRATIVELY_PROHIBITED, "a MAAR anchors one prefix per MN")
        prefix = hnps[0]
        mn_id = pbu.mn_id
        bce = self.cache.get(mn_id)
        if self.lma is not None:
            if prefix != ALL_ZERO and not self._pools[self.lma].contains(prefix):
                return self._reject(src, pbu, Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX,
                                    f"{prefix} is not in the pool of the LMA {self.maars[self.lma].name}")
            if prefix == ALL_ZERO and bce is not None:  # the MN's prefix, wherever it attaches
                prefix, pbu = bce.prefix, _assigned(pbu, bce.prefix)
        elif not self._pools[src].contains(prefix):
            return self._reject(src, pbu, Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX,
                                f"{prefix} is not in the pool of {self.maars[src].name}")
        if (bce is not None and bce.serving == src and bce.last_seq == pbu.sequence and bce.prefix == prefix
                and pbu.lifetime and (bce.handover is None or bce.handover.smaar_answered)):
            # A retransmission of the PBU we accepted (its PBA was lost): answer it again, whatever its
            # timestamp, and change nothing.
            lifetime = self._remaining(bce, now, 4)
            return [Send(src, M.pba_for(pbu, Status.ACCEPTED, lifetime,
                                        M.previous_maar_options(bce.pmaars, self.maars)))]
        ts = pbu.timestamp
        if ts is not None:
            if abs(ts / 65536 - now) > self.timers.timestamp_window:
                return self._reject(src, pbu, Status.TIMESTAMP_MISMATCH, "timestamp outside the validity window")
            # A move must be strictly newer: equal timestamps from two MAARs cannot be ordered. A
            # lifetime-0 PBU for anything but the serving binding (a P-MAAR's audit or variant B's
            # renewal, listed or not) moves nothing, so it is not ordered against the serving
            # MAAR's PBUs (their clocks may differ a little): it is renewed or told "not here".
            audit = (pbu.lifetime == 0 and bce is not None
                     and (src != bce.serving or prefix != bce.prefix))
            if bce is not None and not audit and (ts < bce.last_ts or (ts == bce.last_ts and src != bce.serving)):
                return self._reject(src, pbu, Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED,
                                    "older than the last accepted PBU")
        elif bce is not None and bce.serving == src and bce.last_seq >= 0:
            delta = (pbu.sequence - bce.last_seq) & 0xFFFF
            if delta >= 0x8000:
                return self._reject(src, pbu, Status.SEQUENCE_NUMBER_OUT_OF_WINDOW, "stale sequence number")
        if pbu.lifetime == 0:
            return self._on_dereg(src, pbu, prefix, bce, now)
        owner = self._owner.get(prefix)
        if owner is not None and owner != mn_id:
            return self._reject(src, pbu, Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX,
                                f"{prefix} is bound to another MN")
        if (bce is not None and bce.serving == src and bce.prefix != prefix
                and pbu.handoff == M.HI_REREGISTRATION):
            return self._reject(src, pbu, Status.BCE_PBU_PREFIX_SET_DO_NOT_MATCH,
                                f"re-registration with {prefix}, the session holds {bce.prefix}")
        if (bce is None or bce.serving != src) and self._served.get(src, 0) >= self.timers.max_sessions:
            return self._reject(src, pbu, Status.INSUFFICIENT_RESOURCES,
                                f"{self.maars[src].name} serves {self.timers.max_sessions} sessions already")
        lifetime = min(pbu.lifetime, self.timers.lifetime)
        expires = now + lifetime
        if bce is None:
            if prefix == ALL_ZERO:  # legacy: assign one from the LMA's pool
                prefix = self._pools[self.lma].allocate(now)
                if prefix is None:
                    return self._reject(src, pbu, Status.INSUFFICIENT_RESOURCES,
                                        f"the LMA's pool {self.maars[self.lma].pool} is exhausted")
                pbu = _assigned(pbu, prefix)
            bce = self.cache[mn_id] = Bce(mn_id, src, prefix, expires, pbu.att, pbu.mn_ll_id or b"", ts or 0,
                                          pbu.sequence)
            self._owner[prefix] = mn_id
            self._served[src] = self._served.get(src, 0) + 1
            if self.lma is not None and src != self.lma:  # the LMA must tunnel the prefix here first
                return self._handover(bce, src, prefix, pbu, lifetime, now, initial=True)
            return ([Send(src, M.pba_for(pbu, Status.ACCEPTED, lifetime)), self._life_timer(mn_id, expires),
                     _changed(bce), Report(ReportKind.REGISTERED, mn_id, self.maars[src].name)]
                    + self._confirm(bce, lifetime, now))
        bce.expires = expires
        bce.last_ts = ts or bce.last_ts
        if bce.serving == src and bce.prefix == prefix:  # re-registration, or a retransmitted PBU
            bce.last_seq = pbu.sequence
            effects: list[Effect] = [self._life_timer(mn_id, expires)]
            ho = bce.handover
            if ho is not None and ho.smaar == src and not ho.smaar_answered:
                ho.seq, ho.request = pbu.sequence, pbu  # answered when the P-MAARs have
                return effects
            if ho is not None and ho.waiting:  # still partial: have the S-MAAR come back soon
                lifetime = self._shorten(bce, now)
            return effects + [Send(src, M.pba_for(pbu, Status.ACCEPTED, lifetime,
                                                  M.previous_maar_options(bce.pmaars, self.maars)))]
        return self._handover(bce, src, prefix, pbu, lifetime, now)

    def _handover(self, bce: Bce, src: str, prefix: Prefix, pbu: BindingUpdate, lifetime: int,
                  now: float, initial: bool = False) -> list[Effect]:
        """``src`` serves the MN now (a move, a return to a P-MAAR, or the serving MAAR attaching it
        anew with a new prefix after it lost its binding; in legacy mode also a first registration
        away from the LMA: ``initial``)."""
        mn_id = bce.mn_id
        effects: list[Effect] = [self._life_timer(mn_id, bce.expires)]
        stale = self.retx.outstanding(src, mn_id)  # before the superseded handover cancels them
        effects += self._cancel_stale(mn_id, {bce.serving, *(a for a, _ in bce.pmaars)} - {src})
        if bce.handover is not None:
            effects += self._close_handover(bce, now, superseded=True)
        if bce.serving != src:  # a withdrawal still owed to the MAAR the MN left: the handover tells it more
            for out in self.retx.outstanding(bce.serving, mn_id):
                if out.context == "withdraw":
                    effects += self.retx.cancel(out)
        released = []
        if self.lma is not None:
            effects += self._legacy_move(bce, src, now)
            pmaars = {} if src == self.lma else {self.lma: prefix}
        else:
            pmaars = dict(bce.pmaars)
            back = pmaars.pop(src, None)  # the MN came back to a MAAR that anchors one of its prefixes
            if back is not None and back != prefix:
                self._owner.pop(back, None)  # that MAAR anchors a new prefix for it instead
            if bce.serving != src:
                pmaars[bce.serving] = bce.prefix
                self._served[bce.serving] -= 1
                self._served[src] = self._served.get(src, 0) + 1
            else:
                self._owner.pop(bce.prefix, None)  # a new attachment at the serving MAAR: its old prefix is gone
            while len(pmaars) > self.timers.max_pmaars:  # the oldest anchor goes (insertion order)
                addr = next(iter(pmaars))
                released.append((addr, pmaars.pop(addr)))
        bce.serving, bce.prefix, bce.last_seq = src, prefix, pbu.sequence
        self._owner[prefix] = mn_id
        bce.mac = pbu.mn_ll_id or bce.mac
        bce.pmaars = tuple(pmaars.items())
        ho = Handover(src, pbu.sequence, pbu, now, initial=initial)
        bce.handover = ho
        effects.append(_changed(bce))
        effects += self._confirm(bce, lifetime, now, stale)
        for addr, anchored in released:
            effects += self._release(bce, addr, anchored, now, ReportKind.DEREGISTERED,
                                     f"more than {self.timers.max_pmaars} P-MAARs")
        if self.mode is Mode.PROXY:  # answer the S-MAAR first, then tell the P-MAARs (§3.4)
            ho.smaar_answered = True
            effects.append(Send(src, M.pba_for(pbu, Status.ACCEPTED, lifetime,
                                               M.previous_maar_options(bce.pmaars, self.maars))))
        for addr, anchored in bce.pmaars:
            def build(seq: int, t: float, anchored=anchored, smaar=src) -> BindingUpdate:
                return M.pbu(seq, t, mn_id, anchored, lifetime, M.HI_BETWEEN_MAARS, bce.att, serving=smaar)
            sent, ho.waiting[addr] = self._send_pbu(addr, mn_id, build, now, ho)
            effects += sent
        if not ho.waiting:
            effects += self._close_handover(bce, now)
        elif self.mode is not Mode.PROXY:
            effects.append(SetTimer(TimerKey(TimerKind.AGGREGATE, mn_id), now + self.timers.aggregate_timeout))
        return effects

    def _legacy_move(self, bce: Bce, src: str, now: float) -> list[Effect]:
        """Legacy mode: the MN left ``bce.serving`` for ``src``. Tell the MAAR it left, as a P-MAAR
        is told in DMM: a PBU naming ``src`` Serving MAAR. The LMA then tunnels the prefix there
        (that PBU is the handover's); any other MAAR anchors nothing, so it drops its binding at
        once (plain RFC 5213 would leave it to the old MAG's de-registration or its lifetime)."""
        old = bce.serving
        if old == src:
            return []
        self._served[old] -= 1
        self._served[src] = self._served.get(src, 0) + 1
        if old == self.lma:
            return []
        lifetime = self._remaining(bce, now, 4)

        def build(seq: int, t: float, prefix=bce.prefix) -> BindingUpdate:
            return M.pbu(seq, t, bce.mn_id, prefix, lifetime, M.HI_BETWEEN_MAARS, bce.att, serving=src)
        return self._send_pbu(old, bce.mn_id, build, now, "moved")[0]

    def _close_handover(self, bce: Bce, now: float, superseded: bool = False) -> list[Effect]:
        """Answer the S-MAAR if still owed (with the P-MAARs that answered) and end the handover."""
        ho = bce.handover
        bce.handover = None
        effects: list[Effect] = ([CancelTimer(TimerKey(TimerKind.AGGREGATE, bce.mn_id))]
                                  if self.mode is not Mode.PROXY else [])
        if not ho.smaar_answered:
            confirmed = [(a, p) for a, p in bce.pmaars if a in ho.answered] if ho.waiting else list(bce.pmaars)
            if ho.waiting and not superseded:  # partial: a short lifetime brings the S-MAAR back for the rest
                lifetime = self._shorten(bce, now)
                effects.append(self._life_timer(bce.mn_id, bce.expires))
            else:
                lifetime = self._remaining(bce, now, 0)
            effects.append(Send(ho.smaar, M.pba_for(ho.request, Status.ACCEPTED, lifetime,
                                                    M.previous_maar_options(confirmed, self.maars))))
        for out in ho.waiting.values():
            if superseded:
                effects += self.retx.cancel(out)
        if superseded:
            effects.append(Report(ReportKind.FAILED, bce.mn_id, "handover superseded by a newer one before all "
                                  f"P-MAARs answered: {sorted(self.maars[a].name for a in ho.waiting)}"))
        elif ho.waiting:
            effects.append(Report(ReportKind.HANDOVER, bce.mn_id, f"partial: no answer yet from "
                                  f"{sorted(self.maars[a].name for a in ho.waiting)}"))
        elif ho.initial:
            effects.append(Report(ReportKind.REGISTERED, bce.mn_id, f"{self.maars[ho.smaar].name} via the LMA",
                                  duration=now - ho.started))
        else:
            effects.append(Report(ReportKind.HANDOVER, bce.mn_id, f"to {self.maars[ho.smaar].name}",
                                  duration=now - ho.started))
        return effects

    # ---- PBA from a P-MAAR -------------------------------------------------------------------
    def _on_pba(self, src: str, pba: BindingAck, now: float) -> list[Effect]:
        out = self.retx.pending.get((src, pba.sequence))
        if not pba.d:
            self.counters["pba_without_d"] += 1
        if out is None:
            return []  # late, duplicated or not an answer to anything we sent: ignored
        if not M.echo_matches(out.sent, pba):
            self.counters["pba_echo_mismatch"] += 1
            return []  # its echo does not match the copy sent last: ignored (RFC 5213 §6.9.1)
        self.retx.acknowledge(src, pba.sequence)
        effects: list[Effect] = [CancelTimer(out.key)]
        bce = self.cache.get(out.mn_id)
        ho = out.context
        if bce is None or not isinstance(ho, Handover) or bce.handover is not ho:
            return effects  # a de-registration's answer, or a handover already closed
        ho.waiting.pop(src, None)
        if pba.accepted:
            ho.answered.add(src)
        else:
            for a, p in bce.pmaars:
                if a == src:
                    self._owner.pop(p, None)
            bce.pmaars = tuple((a, p) for a, p in bce.pmaars if a != src)
            effects += [_changed(bce), Report(ReportKind.REJECTED, bce.mn_id, f"P-MAAR {self.maars[src].name} refused",
                                              pba.status)]
        if not ho.waiting:
            effects += self._close_handover(bce, now)
        return effects

    def _on_peer_failed(self, out: Outstanding, now: float) -> list[Effect]:
        effects: list[Effect] = [Report(ReportKind.FAILED, out.mn_id, f"no PBA from {self.maars[out.dst].name} "
                                        f"after {out.tries} tries")]
        bce = self.cache.get(out.mn_id)
        if bce is not None and bce.handover is out.context:
            self._also_changed.append(out.mn_id)
            bce.handover.waiting.pop(out.dst, None)
            if not bce.handover.waiting:
                effects += self._close_handover(bce, now)
        return effects

    def _on_aggregate_timeout(self, mn_id: str, now: float) -> list[Effect]:
        bce = self.cache.get(mn_id)
        if bce is None or bce.handover is None or bce.handover.smaar_answered:
            return []
        ho = bce.handover
        effects = self._close_handover(bce, now)
        if ho.waiting:  # keep retransmitting to the laggards; their answers are then just recorded
            bce.handover = Handover(ho.smaar, ho.seq, ho.request, ho.started, ho.waiting, ho.answered, True)
            for out in ho.waiting.values():
                out.context = bce.handover
        return effects

    # ---- end of a session --------------------------------------------------------------------
    def _on_dereg(self, src: str, pbu: BindingUpdate, prefix: Prefix, bce: Optional[Bce],
                  now: float) -> list[Effect]:
        if bce is not None and bce.serving == src and bce.prefix == prefix:
            return [Send(src, M.pba_for(pbu, Status.ACCEPTED, 0))] + self._end_session(bce, now, notify_serving=False)
        if bce is not None and (src, prefix) in bce.pmaars:  # variant B: renew while the MN is in the domain
            remaining = self._remaining(bce, now, 4)
            return [Send(src, M.pba_for(pbu, Status.ACCEPTED, remaining)),
                    Report(ReportKind.RENEWED, pbu.mn_id, f"P-MAAR {self.maars[src].name} for {remaining} s")]
        return [Send(src, M.pba_for(pbu, Status.ACCEPTED, 0))]  # nothing here: let it clean up

    def _send_pbu(self, dst: str, mn_id: str, build, now: float, context) -> tuple[list[Effect], Outstanding]:
        """Send a PBU with retransmission; a PBU evicted to make room (retransmit.py) fails at once."""
        sent, out, evicted = self.retx.send(dst, mn_id, build, now, context=context)
        upto = self._reserved.get(dst)
        if upto is None or not SEQ_BLOCK // 2 < (upto - out.seq) & 0xFFFF <= SEQ_BLOCK:  # half used up
            upto = self._reserved[dst] = (out.seq + SEQ_BLOCK) & 0xFFFF
            sent = [PersistMeta(f"seq:{dst}", str(upto))] + sent
        return (sent + self._on_peer_failed(evicted, now) if evicted is not None else sent), out

    def _confirm(self, bce: Bce, lifetime: int, now: float, stale=None) -> list[Effect]:
        """Our PBUs to the new serving MAAR about this MN, written before we accepted its registration,
        may still be on their way (or be sent again); one arriving after our PBA would take the serving
        role away. Cancel them and follow with a PBU naming that MAAR itself as serving, newer than
        all of them by our clock: the MAAR then refuses the stale ones with 157, or takes its role back
        if one came first (docs/mobility.md, Decisions)."""
        src, mn_id = bce.serving, bce.mn_id
        stale = self.retx.outstanding(src, mn_id) if stale is None else stale
        if not stale:
            return []
        effects: list[Effect] = []
        for out in stale:
            effects += self.retx.cancel(out)

        def build(seq: int, t: float, prefix=bce.prefix) -> BindingUpdate:
            return M.pbu(seq, t, mn_id, prefix, lifetime, M.HI_REREGISTRATION, bce.att, serving=src)
        return effects + self._send_pbu(src, mn_id, build, now, "confirm")[0]

    def _cancel_stale(self, mn_id: str, peers) -> list[Effect]:
        """PBUs that tell a MAAR where it stands for this MN (a rebuild's, a confirmation's) and that
        a move or the end of the session has made wrong: a copy sent again later would undo it."""
        effects: list[Effect] = []
        for peer in peers:
            for out in self.retx.outstanding(peer, mn_id):
                if out.context in ("rebuild", "confirm"):
                    effects += self.retx.cancel(out)
        return effects

    def _release(self, bce: Bce, addr: str, prefix: Prefix, now: float, kind: ReportKind,
                 why: str) -> list[Effect]:
        """An anchor leaves the session (the list is full, or its tunnel went idle): de-register
        it at that P-MAAR (PBU, lifetime 0); the caller has taken it out of ``bce.pmaars``."""
        self._owner.pop(prefix, None)
        cancelled = self._cancel_stale(bce.mn_id, (addr,))

        def build(seq: int, t: float) -> BindingUpdate:
            return M.pbu(seq, t, bce.mn_id, prefix, 0, M.HI_UNKNOWN, bce.att)
        return cancelled + self._send_pbu(addr, bce.mn_id, build, now, "dereg")[0] + [
            Report(kind, bce.mn_id, f"P-MAAR {self.maars[addr].name} released ({prefix}): {why}")]

    def _on_anchor_idle(self, ev: AnchorIdle, now: float) -> list[Effect]:
        """No traffic crossed the anchor's tunnel for ``anchor_idle_timeout``: release it (RFC 8885
        keeps a P-MAAR only while it "is still involved in an active flow"). Not while a handover
        is open: the handover wins, and the flow mirror restarts the anchor's idle clock with it."""
        bce = self.cache.get(ev.mn_id)
        if (self.lma is not None or bce is None or bce.handover is not None
                or (ev.maar, ev.prefix) not in bce.pmaars):
            return []  # (legacy mode: the LMA anchors the MN's only prefix for as long as the session)
        bce.pmaars = tuple(a for a in bce.pmaars if a != (ev.maar, ev.prefix))
        timeout = f"no traffic for {self.timers.anchor_idle_timeout:g} s"
        return ([_changed(bce)] + self._release(bce, ev.maar, ev.prefix, now, ReportKind.RELEASED, timeout)
                + self._withdraw(bce, ev.prefix, now))

    def _withdraw(self, bce: Bce, prefix: Prefix, now: float) -> list[Effect]:
        """Tell the serving MAAR that ``prefix`` is no longer anchored for the MN: a de-registration
        (lifetime 0) of that prefix naming it Serving MAAR. It drops the uplink tunnel and advertises
        the prefix with valid lifetime 0 (docs/anchor-release.md); a lost one is repaired by its next
        re-registration, whose PBA lists the P-MAARs left."""
        serving = bce.serving

        def build(seq: int, t: float) -> BindingUpdate:
            return M.pbu(seq, t, bce.mn_id, prefix, 0, M.HI_UNKNOWN, bce.att, serving=serving)
        return self._send_pbu(serving, bce.mn_id, build, now, "withdraw")[0]

    def _remaining(self, bce: Bce, now: float, floor: int) -> int:
        """The session's remaining lifetime as a PBA can grant it: whole 4 s units, at most the
        configured lifetime, at least ``floor``."""
        return max(floor, min(int(bce.expires - now) // 4 * 4, self.timers.lifetime))

    def _shorten(self, bce: Bce, now: float) -> int:
        lifetime = min(self.timers.partial_lifetime, self.timers.lifetime)
        bce.expires = now + lifetime
        return lifetime

    def _life_timer(self, mn_id: str, expires: float) -> SetTimer:
        """Expiry is acted on MinDelayBeforeBCEDelete late, so that the serving MAAR, whose own
        lifetime ends at the same moment, de-registers the session itself (RFC 8885 §3.5)."""
        return SetTimer(TimerKey(TimerKind.LIFETIME, mn_id), expires + self.timers.min_delay_before_bce_delete)

    def _on_expiry(self, mn_id: str, now: float) -> list[Effect]:
        bce = self.cache.get(mn_id)
        if bce is None or bce.expires + self.timers.min_delay_before_bce_delete > now:
            return []
        return self._end_session(bce, now, notify_serving=True)

    def _end_session(self, bce: Bce, now: float, notify_serving: bool) -> list[Effect]:
        """Delete the BCE and tell every MAAR involved to remove its state (PBU, lifetime 0)."""
        del self.cache[bce.mn_id]
        for _, prefix in ((bce.serving, bce.prefix),) + bce.pmaars:
            self._owner.pop(prefix, None)
        if self.lma is not None:  # back to the LMA's pool after the usual quarantine
            self._pools[self.lma].release(bce.prefix, now + self.timers.min_delay_before_bce_delete)
        self._served[bce.serving] -= 1
        effects: list[Effect] = [CancelTimer(TimerKey(TimerKind.LIFETIME, bce.mn_id)),
                                 CancelTimer(TimerKey(TimerKind.AGGREGATE, bce.mn_id)), BindingChanged(bce.mn_id, None)]
        effects += self._cancel_stale(bce.mn_id, {bce.serving, *(a for a, _ in bce.pmaars)})
        if bce.handover is not None:
            for out in bce.handover.waiting.values():
                effects += self.retx.cancel(out)
        targets = list(bce.pmaars) + ([(bce.serving, bce.prefix)] if notify_serving else [])
        for addr, anchored in targets:
            def build(seq: int, t: float, anchored=anchored) -> BindingUpdate:
                return M.pbu(seq, t, bce.mn_id, anchored, 0, M.HI_UNKNOWN, bce.att)
            effects += self._send_pbu(addr, bce.mn_id, build, now, "dereg")[0]
        effects.append(Report(ReportKind.DEREGISTERED, bce.mn_id, "lifetime expired" if notify_serving else
                              f"by {self.maars[bce.serving].name}"))
        return effects


def _assigned(pbu: BindingUpdate, prefix: Prefix) -> BindingUpdate:
    """``pbu`` with its (ALL_ZERO) Home Network Prefix replaced by the one we assign: the PBAs echo it,
    so the MAAR learns its MN's prefix from our answer (RFC 5213 §5.3.1)."""
    opts = tuple(HomeNetworkPrefix(prefix) if type(o) is HomeNetworkPrefix else o for o in pbu.options)
    return replace(pbu, options=opts)


def _view(bce: Bce) -> Session:
    return Session(bce.mn_id, bce.serving, bce.prefix, bce.mac, bce.pmaars, bce.expires, bce.handover is not None)


def _state(bce: Bce) -> tuple:
    """What ``Record`` keeps of a BCE, cheaply comparable: a change means a ``Persist``."""
    return (bce.serving, bce.prefix, bce.mac, bce.pmaars, bce.expires, bce.att, bce.last_ts, bce.last_seq,
            bce.handover is not None)


def _changed(bce: Bce) -> BindingChanged:
    return BindingChanged(bce.mn_id, _view(bce))
