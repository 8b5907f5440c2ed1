"""The mobility domain as the cores see it: mode, de-registration variant, MAARs, timers."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import Enum
from typing import Optional

from ..wire import Prefix, canonical6
from ..wire import constants as C


class Mode(str, Enum):
    """The CMD's role in a handover (RFC 8885 §3.2-3.4), or ``legacy``: the domain runs as plain
    Proxy Mobile IPv6 with one MAAR as LMA (the draft's Appendix A.5 fallback; docs/mode-legacy.md),
    or ``distributed``: no CMD, the MAARs find an MN's previous MAARs among themselves (draft §4;
    docs/mode-distributed.md)."""

    RELAY = "relay"
    LOCATOR = "locator"
    PROXY = "proxy"
    LEGACY = "legacy"
    DISTRIBUTED = "distributed"


# RFC 5213 §2.2 ALL_ZERO: the Home Network Prefix a MAG sends when it asks the LMA to assign one.
ALL_ZERO = Prefix(bytes(16), 0)


class Dereg(str, Enum):
    """De-registration variants of RFC 8885 §3.5."""

    SERVING_ONLY = "serving-only"  # a P-MAAR stops its BCE timer on a PBU with Serving MAAR
    RENEWAL = "renewal"  # a P-MAAR de-registers at expiry; the CMD renews while the MN is in the domain


# The most P-MAARs a PBA can list. Largest possible PBA, in bytes (option layouts in FACTS.md):
# 12 (MH header and BA data) + echoes at most once each (messages.pba_for): MN-ID 2+1+254 = 257,
# HNP 20, HI 4, ATT 4, MN-LL-ID 2+2+253 = 257, Timestamp 10, Serving MAAR 18, plus at most 7 bytes
# of padding before each of the 4 aligned ones = 598; then per P-MAAR a Previous MAAR option 36,
# DLIF link-local 18 and DLIF link-layer 10 (6-byte MAC), at most 7 + 7 padding = 78; and at most
# 7 bytes of final padding. 12 + 598 + 78 n + 7 <= 2048 (the Mobility Header limit) gives n <= 18.
MAX_PMAARS_LIMIT = 18
# The shortest heartbeat interval accepted: a lab setting (RFC 5847's floor is 30 s).
MIN_LAB_HEARTBEAT_INTERVAL = 0.1
ANCHOR_IDLE_TIMEOUT = 7440.0  # RFC 5382 REQ-5: 2 hours 4 minutes (see Timers.anchor_idle_timeout)
MAX_ANCHOR_IDLE_TIMEOUT = 7 * 86400.0


@dataclass(frozen=True)
class Timers:
    """Timers (seconds; defaults from RFC 5213 §9 and §6.9.4 where it has one) and the bounds on
    the cores' state (counts). All are keys of the ``[timers]`` section."""

    lifetime: int = 3600  # granted binding lifetime (multiple of 4)
    reregister_fraction: float = 0.8  # re-register after this share of the lifetime
    initial_bindack_timeout: float = C.INITIAL_BINDACK_TIMEOUT
    max_bindack_timeout: float = C.MAX_BINDACK_TIMEOUT
    max_tries: int = 5  # transmissions of one PBU before its failure is reported
    max_update_rate: int = C.MAX_UPDATE_RATE  # PBUs per second per peer and MN
    aggregate_timeout: float = 3.0  # relay/locator: answer the S-MAAR with what has come by then
    partial_lifetime: int = 8  # lifetime granted with a partial answer: the S-MAAR comes back soon
    min_delay_before_bce_delete: float = C.MIN_DELAY_BEFORE_BCE_DELETE
    timestamp_window: float = C.TIMESTAMP_VALIDITY_WINDOW
    # An MN's P-MAAR list holds at most this many anchors; a handover beyond it releases the oldest.
    # 8 keeps the largest PBA at 1,184 bytes (at most 1,241 in any option order; see MAX_PMAARS_LIMIT)
    # and a handover's fan-out at 8 PBUs.
    max_pmaars: int = 8
    # PBUs awaiting an answer from one peer; one more evicts the oldest as failed. Half the 16-bit
    # sequence space at most, so that numbers in flight stay unambiguous.
    max_outstanding: int = 4096
    # Sessions one MAAR serves or anchors (MaarCore bindings; the CMD's sessions served by a MAAR);
    # beyond it a registration is answered 130 (insufficient resources).
    max_sessions: int = 65536
    # Unsolicited Router Advertisements to each attached MN (RFC 4861 §6.2.1: MaxRtrAdvInterval
    # default 600 s, AdvDefaultLifetime 3 x that = 1800 s). At most a third of the router lifetime,
    # so that two lost RAs in a row still leave the MN its default route.
    ra_interval: float = 600.0
    router_lifetime: int = 1800
    # RFC 5847 §5 Heartbeats to the signalling peers: a request every heartbeat_interval seconds
    # (0: none sent; requests from peers are still answered), a peer unreachable after
    # missing_heartbeats_allowed unanswered ones in a row. The RFC wants at least 30 s; down to
    # MIN_LAB_HEARTBEAT_INTERVAL is accepted for labs and tests, which want restarts seen within seconds.
    heartbeat_interval: float = C.HEARTBEAT_INTERVAL
    missing_heartbeats_allowed: int = C.MISSING_HEARTBEATS_ALLOWED
    # A P-MAAR is released for an MN once no packet of that MN's old prefix has crossed its tunnel,
    # in either direction, for this long (the CMD polls the switches' tunnel-exit flow counters;
    # docs/anchor-release.md). 0: never (kept while the session lives). The default is RFC 5382's
    # idle timeout for established TCP through a NAT (2 h 4 min): longer than the 2 h after which
    # an idle TCP connection sends its first keepalive (RFC 1122 4.2.3.6), so a kept-alive
    # connection keeps its anchor.
    anchor_idle_timeout: float = ANCHOR_IDLE_TIMEOUT
    # A MAAR with several CMDs ([dmm] cmd_addresses) moves to the next once a request to the current
    # one (PBU, retransmission, Heartbeat request) has gone this long with no word from it; 0: never.
    # 2 s: one retransmission (initial_bindack_timeout, 1 s) still goes to the current CMD, and the
    # registration in flight, re-sent to the next CMD, is answered within 3 s (docs/failover.md).
    failover_timeout: float = 2.0

    def __post_init__(self) -> None:
        for name in ("lifetime", "partial_lifetime"):
            value = getattr(self, name)
            if value <= 0 or value % 4 or value > C.MAX_LIFETIME:
                raise ValueError(f"timers.{name} {value} must be a positive multiple of 4 up to {C.MAX_LIFETIME}")
        if not 0 < self.reregister_fraction < 1:
            raise ValueError("timers.reregister_fraction must be between 0 and 1")
        if self.max_tries < 1 or self.max_update_rate < 1:
            raise ValueError("timers.max_tries and timers.max_update_rate must be at least 1")
        if not 1 <= self.max_pmaars <= MAX_PMAARS_LIMIT:
            raise ValueError(f"timers.max_pmaars {self.max_pmaars} must be within 1..{MAX_PMAARS_LIMIT}")
        if not 1 <= self.max_outstanding <= 0x8000:
            raise ValueError(f"timers.max_outstanding {self.max_outstanding} must be within 1..32768")
        if not 4 <= self.ra_interval <= self.router_lifetime / 3 or not 0 < self.router_lifetime <= 9000:
            raise ValueError("timers.ra_interval must be within 4 s and router_lifetime / 3, and "
                             "timers.router_lifetime within 1..9000 s (RFC 4861 §6.2.1)")
        if self.max_sessions < 1:
            raise ValueError("timers.max_sessions must be at least 1")
        if not (self.heartbeat_interval == 0 or MIN_LAB_HEARTBEAT_INTERVAL <= self.heartbeat_interval <= 86400):
            raise ValueError(f"timers.heartbeat_interval {self.heartbeat_interval} must be 0 (no heartbeats) or "
                             f"within {MIN_LAB_HEARTBEAT_INTERVAL}..86400 s (RFC 5847: at least "
                             f"{C.MIN_HEARTBEAT_INTERVAL:g} s outside a lab)")
        if not 1 <= self.missing_heartbeats_allowed <= 255:
            raise ValueError(f"timers.missing_heartbeats_allowed {self.missing_heartbeats_allowed} must be "
                             "within 1..255")
        if not (self.anchor_idle_timeout == 0 or 1 <= self.anchor_idle_timeout <= MAX_ANCHOR_IDLE_TIMEOUT):
            raise ValueError(f"timers.anchor_idle_timeout {self.anchor_idle_timeout} must be 0 (anchors kept while "
                             f"the session lives) or within 1..{MAX_ANCHOR_IDLE_TIMEOUT:g} s")
        if not (self.failover_timeout == 0 or MIN_LAB_HEARTBEAT_INTERVAL <= self.failover_timeout <= 3600):
            raise ValueError(f"timers.failover_timeout {self.failover_timeout} must be 0 (never) or within "
                             f"{MIN_LAB_HEARTBEAT_INTERVAL}..3600 s")
        for name in ("initial_bindack_timeout", "max_bindack_timeout", "aggregate_timeout", "timestamp_window"):
            if getattr(self, name) <= 0:
                raise ValueError(f"timers.{name} must be positive")


def _default_mac(name: str) -> bytes:
    """A stable locally administered unicast MAC for a MAAR's DLIF, derived from its name."""
    digest = hashlib.sha256(name.encode()).digest()
    return bytes((0x02, digest[0], digest[1], digest[2], digest[3], digest[4]))


def link_local_from_mac(mac: bytes) -> str:
    """fe80::/64 with the modified EUI-64 interface identifier of ``mac`` (RFC 4291 appendix A)."""
    eui = bytes((mac[0] ^ 0x02, mac[1], mac[2], 0xFF, 0xFE, mac[3], mac[4], mac[5]))
    return canonical6("fe80::" + ":".join(f"{eui[i]:02x}{eui[i + 1]:02x}" for i in range(0, 8, 2)))


@dataclass(frozen=True)
class MaarInfo:
    """A MAAR: signalling address (also its tunnel endpoint), exclusive pool, DLIF identity."""

    name: str
    address: str
    pool: Prefix
    prefix_length: int = 64
    mac: bytes = b""  # DLIF link-layer address; derived from the name when empty
    datapath_id: Optional[int] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", canonical6(self.address))
        if not self.mac:
            object.__setattr__(self, "mac", _default_mac(self.name))
        if len(self.mac) != 6:
            raise ValueError(f"maar {self.name}: mac must be 6 bytes")
        if not self.pool.length <= self.prefix_length <= 128:
            raise ValueError(f"maar {self.name}: prefix_length {self.prefix_length} outside pool {self.pool}")

    @property
    def link_local(self) -> str:
        return link_local_from_mac(self.mac)


@dataclass(frozen=True)
class Domain:
    cmd_address: str
    maars: tuple[MaarInfo, ...]
    mode: Mode = Mode.PROXY
    dereg: Dereg = Dereg.SERVING_ONLY
    timers: Timers = field(default_factory=Timers)
    lma: Optional[str] = None  # legacy mode: the name of the MAAR acting as LMA
    # The CMDs the MAARs signal to, in order (fail-over: mobility/failover.py); empty: cmd_address alone
    cmd_addresses: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "cmd_address", canonical6(self.cmd_address))
        object.__setattr__(self, "cmd_addresses", tuple(canonical6(a) for a in self.cmd_addresses))
        if len(set(self.cmd_addresses)) != len(self.cmd_addresses):
            raise ValueError("cmd_addresses: an address listed twice")
        object.__setattr__(self, "mode", Mode(self.mode))
        object.__setattr__(self, "dereg", Dereg(self.dereg))
        if (self.mode is Mode.LEGACY) != (self.lma is not None):
            raise ValueError("an LMA is named in legacy mode, and only there")
        if self.lma is not None and all(m.name != self.lma for m in self.maars):
            raise ValueError(f"lma {self.lma} is not a configured MAAR")
        names, addrs = set(), set()
        for m in self.maars:
            if m.name in names or m.address in addrs or m.address in (self.cmd_address, *self.cmd_addresses):
                raise ValueError(f"maar {m.name}: name or address used twice")
            names.add(m.name)
            addrs.add(m.address)
        nets = [(m, m.pool.network) for m in self.maars]
        for i, (a, na) in enumerate(nets):
            for b, nb in nets[i + 1:]:
                if na.overlaps(nb):
                    raise ValueError(f"maars {a.name} and {b.name}: pools {a.pool} and {b.pool} overlap")

    @property
    def cmds(self) -> tuple[str, ...]:
        """The CMDs a MAAR signals to, in order of preference."""
        return self.cmd_addresses or (self.cmd_address,)

    @property
    def lma_info(self) -> Optional[MaarInfo]:
        """Legacy mode: the MAAR acting as LMA, whose pool every MN's prefix comes from."""
        return self.maar(self.lma) if self.lma is not None else None

    def by_address(self) -> dict[str, MaarInfo]:
        return {m.address: m for m in self.maars}

    def maar(self, name: str) -> MaarInfo:
        for m in self.maars:
            if m.name == name:
                return m
        raise KeyError(name)
