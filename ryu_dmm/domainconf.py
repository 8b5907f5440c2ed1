"""The domain configuration file: one INI file, also given to ``ryu-manager --config-file``.

Ryu's own options live in ``[DEFAULT]`` (e.g. ``wsapi_port``); ours in ``[dmm]``, ``[timers]`` and
one ``[maar:NAME]`` per MAAR. The whole file is validated before anything is applied: a wrong file
raises ``ConfigError`` naming the section and key, and nothing starts half-configured.
"""
from __future__ import annotations

import configparser
import ipaddress
import os
import re
from dataclasses import dataclass, field, fields, replace
from typing import Optional
from urllib.parse import urlsplit

from .agent import authz
from .mobility.config import Dereg, Domain, MaarInfo, Mode, Timers
from .wire import Prefix, canonical6, mac_text, parse_mac

TUNNEL_TYPES = ("gre", "vxlan")
FLOW_CONTROL = ("cmd", "maar")  # who programs the MAARs' switches (docs/flow-control.md)


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the bad section and key."""


STORE_BACKENDS = ("sqlite", "memory", "redis")
DEFAULT_STATE_DIR = "/var/lib/ryu-dmm"
STATE_DIR_ENV = "RYU_DMM_STATE_DIR"  # overrides the default (not a dir set in the file): tests, containers


def default_state_dir() -> str:
    return os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR


@dataclass(frozen=True)
class StoreSettings:
    """``[store]``: where the CMD keeps its binding cache and the agents their restart counters
    (docs/store.md). A relative ``dir`` is taken from the configuration file's folder."""

    backend: str = "sqlite"  # "memory": nothing survives a restart (benchmarks, throw-away labs)
    dir: str = field(default_factory=default_state_dir)
    file: str = "cmd.sqlite"  # the CMD's SQLite file, in ``dir`` unless absolute
    synchronous: str = "full"  # SQLite's PRAGMA synchronous in WAL mode: "full" survives power loss, "normal" a crash
    on_corrupt: str = "fail"  # "move-aside": start empty, the unreadable file renamed next to it
    max_batch: int = 1000  # binding changes per group commit
    # backend = redis (docs/deploy-cmds.md): a plain URL, or the sentinels and the service they watch
    url: str = ""  # redis://[user:password@]host:port/db, rediss://... or unix:///path
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str = "dmm"  # the name the sentinels monitor the primary under
    namespace: str = "dmm"  # prefix of every key: several domains can share one Redis
    wait_replicas: int = 0  # an accepted PBA also waits until this many replicas have the change (WAIT)
    wait_timeout_ms: int = 100  # ... for at most this long; fewer acknowledged: the write counts as failed
    timeout: float = 1.0  # seconds to connect to or hear from Redis before a write counts as failed
    active_active: bool = False  # several CMDs on this Redis at once (per-MN check-and-set, timer leases)
    instance: str = ""  # this CMD's name among them (default: its address and port)
    lease: float = 3.0  # seconds an instance's lease lasts: its timers are taken over within lease + lease/3

    @property
    def path(self) -> str:
        return os.path.join(self.dir, self.file)


@dataclass(frozen=True)
class RestSettings:
    """``[rest]``: who may use the CMD's HTTP listeners, REST and metrics (docs/security.md).

    A listener on a loopback address is served as configured here (plain HTTP when there is no
    TLS); one on any other address only with TLS and a bearer token or client certificates
    (``httpaccess.check_listener``). File paths are absolute (taken from the configuration file's
    folder when given relative)."""

    token: Optional[str] = field(default=None, repr=False)  # never shown: repr, logs, errors
    tls_cert: Optional[str] = None
    tls_key: Optional[str] = None
    client_ca: Optional[str] = None  # TLS client certificates signed by this CA are required
    allow: tuple = ()  # ipaddress networks a client must come from (403 otherwise); () = any

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


@dataclass(frozen=True)
class AuthSettings:
    """``[auth]``: which MNs the MAAR agents serve and how many prefixes one access port may hold
    (docs/security.md). Read by the agents (``agent/authz.py``); the CMD ignores it."""

    mode: str = "open"  # "open": every MN (the behaviour before [auth]); "allowlist": only listed ones
    allow_macs: tuple = ()  # checked patterns (agent/authz.py)
    allow_nais: tuple = ()
    allow_file: Optional[str] = None  # one pattern a line, re-read by the agents on SIGHUP
    max_prefixes_per_port: Optional[int] = None  # prefixes held by MNs of one access port; None: no cap


@dataclass(frozen=True)
class RoleSettings:
    """``[roles]``: OpenFlow master/slave roles among several CMD instances (docs/openflow-roles.md).
    No ``redis``: one instance, no role requests (the switches keep the equal role)."""

    redis: Optional[str] = None  # redis://host:port/db holding the switches' leases, or "store": [store]'s Redis
    instance: str = ""  # this instance's name, unique in the domain ("": [store] instance, else hostname-pid)
    lease_ttl: float = 1.5
    renew_interval: float = 0.5
    key_prefix: str = "dmm"


@dataclass(frozen=True)
class CmdSettings:
    """What the CMD process needs besides the domain itself."""

    listen: str = "::"
    port: int = 5436
    raw_mh: bool = False
    tunnel: str = "gre"
    tunnel_key: int = 0x444D4D
    switches: tuple = ()  # SwitchSettings of the MAARs that have a datapath
    rcvbuf: int = 2 << 20  # bytes of receive buffer to ask for per signalling socket (0: kernel default)
    # Prometheus metrics (docs/observability.md). Port None: the default, 9460, which is given up
    # with a warning if that port is taken; a port set in the file must open; 0 disables metrics.
    metrics_listen: str = "127.0.0.1"
    metrics_port: Optional[int] = None
    store: StoreSettings = field(default_factory=StoreSettings)
    rest: RestSettings = field(default_factory=RestSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)  # for the agents
    # "cmd": the CMD programs every MAAR's switch from its sessions; "maar": each MAAR's agent
    # programs its own switch from its own state, and the CMD only signals (docs/flow-control.md)
    flow_control: str = "cmd"
    roles: RoleSettings = field(default_factory=RoleSettings)
    # the CMD and the agents start only where nftables drops plaintext signalling (docs/security.md)
    require_ipsec: bool = False


@dataclass(frozen=True)
class SwitchSettings:
    """A MAAR's edge switch: which OpenFlow port plays which role (see openflow_pipelines/)."""

    maar: str
    core_port: int
    tunnel_port: int
    agent_port: int
    access_ports: tuple[int, ...]
    core_gateway_mac: bytes


_DMM_KEYS = {"cmd_address", "cmd_addresses", "mode", "lma", "dereg", "listen", "port", "raw_mh", "tunnel",
             "tunnel_key", "rcvbuf", "metrics_listen", "metrics_port", "flow_control", "require_ipsec"}
_SWITCH_KEYS = {"core_port", "tunnel_port", "agent_port", "access_ports", "core_gateway_mac"}
_MAAR_KEYS = {"address", "pool", "prefix_length", "mac", "datapath_id"} | _SWITCH_KEYS
_TIMER_KEYS = {f.name: f.type for f in fields(Timers)}
_STORE_KEYS = {"backend", "dir", "file", "synchronous", "on_corrupt", "max_batch", "url", "sentinels", "service",
               "namespace", "wait_replicas", "wait_timeout_ms", "timeout", "active_active", "instance", "lease"}
_REDIS_KEYS = _STORE_KEYS - {"backend", "dir", "file", "synchronous", "on_corrupt", "max_batch"}
_NAME = re.compile(r"[A-Za-z0-9_.:@-]{1,64}")
_AUTH_KEYS = {"mode", "allow_macs", "allow_nais", "allow_file", "max_prefixes_per_port"}
_ROLE_KEYS = {f.name for f in fields(RoleSettings)}
_REST_KEYS = {"token", "token_file", "tls_cert", "tls_key", "client_ca", "allow"}
TOKEN_MIN = 16  # characters of a bearer token at least (a guessable one protects nothing)
TOKEN_MAX = 4096
_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")  # RFC 6750 §2.1 b64token

DEFAULT_TEXT = """\
# Embedded default: a CMD with no MAARs yet, proxy mode. Copy and extend (docs/configuration.md).
[dmm]
cmd_address = ::1
mode = proxy
"""


def _parse_mac(section: str, key: str, text: str) -> bytes:
    try:
        return parse_mac(text)
    except ValueError:
        raise ConfigError(f"[{section}] {key}: {text!r} is not a MAC address like 02:00:00:00:00:01") from None


def _int(section: str, key: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise ConfigError(f"[{section}] {key}: {text!r} is not an integer") from None
    if not low <= value <= high:
        raise ConfigError(f"[{section}] {key}: {value} is outside {low}..{high}")
    return value


def _bool(section: str, key: str, text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "yes", "true", "on"):
        return True
    if low in ("0", "no", "false", "off"):
        return False
    raise ConfigError(f"[{section}] {key}: {text!r} is not a boolean")


def _address(section: str, key: str, text: str) -> str:
    try:
        return canonical6(text.strip())
    except ValueError:
        raise ConfigError(f"[{section}] {key}: {text!r} is not an IPv6 address") from None


def _ip(section: str, key: str, text: str) -> str:
    """An IPv4 or IPv6 address to listen on, as text."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise ConfigError(f"[{section}] {key}: {text!r} is not an IPv4 or IPv6 address") from None


def _ports(section: str, text: str) -> tuple[int, ...]:
    """``10,11`` or ``10-19`` or a mix."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        low, _, high = part.partition("-")
        first = _int(section, "access_ports", low, 1, 0xFFFFFEFF)
        last = _int(section, "access_ports", high, first, 0xFFFFFEFF) if high else first
        out.extend(range(first, last + 1))
    return tuple(out)


def _switch(section: str, name: str, items: dict) -> Optional[SwitchSettings]:
    present = _SWITCH_KEYS & set(items)
    if not present:
        return None
    for key in sorted(_SWITCH_KEYS - {"core_gateway_mac"}):
        if key not in items:
            raise ConfigError(f"[{section}] {key}: missing (a MAAR with switch ports needs all of "
                              f"{', '.join(sorted(_SWITCH_KEYS))})")
    if "datapath_id" not in items:
        raise ConfigError(f"[{section}] datapath_id: missing (needed with switch ports)")
    return SwitchSettings(
        name, _int(section, "core_port", items["core_port"], 1, 0xFFFFFEFF),
        _int(section, "tunnel_port", items["tunnel_port"], 1, 0xFFFFFEFF),
        _int(section, "agent_port", items["agent_port"], 1, 0xFFFFFEFF), _ports(section, items["access_ports"]),
        _parse_mac(section, "core_gateway_mac", items.get("core_gateway_mac", "02:00:00:00:ff:ff")))


def _check_keys(section: str, items: dict, allowed: set) -> None:
    for key in items:
        if key not in allowed:
            raise ConfigError(f"[{section}] {key}: unknown key (known: {', '.join(sorted(allowed))})")


def parse(text: str, source: str = "<config>") -> tuple[Domain, CmdSettings]:
    parser = configparser.ConfigParser(default_section="\0none", interpolation=None)
    try:
        parser.read_string(text, source)
    except configparser.Error as exc:
        raise ConfigError(f"{source}: {exc}") from None
    known = {"DEFAULT", "dmm", "timers", "store", "rest", "auth", "roles"}
    for section in parser.sections():
        if section not in known and not section.startswith("maar:"):
            raise ConfigError(f"[{section}]: unknown section (known: [dmm], [timers], [store], [rest], [auth], [roles], "
                              "[maar:NAME], [DEFAULT] for Ryu)")
    if not parser.has_section("dmm"):
        raise ConfigError("[dmm]: section missing")
    dmm = dict(parser.items("dmm"))
    _check_keys("dmm", dmm, _DMM_KEYS)
    try:
        mode = Mode(dmm.get("mode", "proxy"))
    except ValueError:
        raise ConfigError(f"[dmm] mode: {dmm['mode']!r} is not one of relay, locator, proxy, legacy, "
                          "distributed") from None
    if "cmd_address" not in dmm and mode is not Mode.DISTRIBUTED:
        raise ConfigError("[dmm] cmd_address: missing")
    # distributed: there is no CMD (docs/mode-distributed.md); "::" stands for none
    cmd_address = _address("dmm", "cmd_address", dmm.get("cmd_address", "::"))
    # the agents' CMDs in order of preference (fail-over, docs/failover.md); default cmd_address alone
    cmd_addresses = tuple(_address("dmm", "cmd_addresses", a) for a in dmm.get("cmd_addresses", "").split(",")
                          if a.strip())
    lma = dmm.get("lma")
    if (mode is Mode.LEGACY) != (lma is not None):
        raise ConfigError("[dmm] lma: missing: mode = legacy needs the MAAR acting as LMA (lma = maar1)"
                          if lma is None else f"[dmm] lma: only with mode = legacy (mode is {mode.value})")
    try:
        dereg = Dereg(dmm.get("dereg", "serving-only"))
    except ValueError:
        raise ConfigError(f"[dmm] dereg: {dmm['dereg']!r} is not one of serving-only, renewal") from None
    tunnel = dmm.get("tunnel", "gre")
    if tunnel not in TUNNEL_TYPES:
        raise ConfigError(f"[dmm] tunnel: {tunnel!r} is not one of {', '.join(TUNNEL_TYPES)}")
    listen = _address("dmm", "listen", dmm.get("listen", "::"))
    port = _int("dmm", "port", dmm.get("port", "5436"), 1, 65535)
    raw_mh = _bool("dmm", "raw_mh", dmm.get("raw_mh", "false"))
    require_ipsec = _bool("dmm", "require_ipsec", dmm.get("require_ipsec", "false"))
    tunnel_key = _int("dmm", "tunnel_key", dmm.get("tunnel_key", str(0x444D4D)), 0, 2**32 - 1)
    rcvbuf = _int("dmm", "rcvbuf", dmm.get("rcvbuf", str(CmdSettings.rcvbuf)), 0, 2**30)
    metrics_listen = _ip("dmm", "metrics_listen", dmm.get("metrics_listen", CmdSettings.metrics_listen))
    metrics_port = _int("dmm", "metrics_port", dmm["metrics_port"], 0, 65535) if "metrics_port" in dmm else None
    flow_control = dmm.get("flow_control", "maar" if mode is Mode.DISTRIBUTED else "cmd").strip()
    if flow_control not in FLOW_CONTROL:
        raise ConfigError(f"[dmm] flow_control: {flow_control!r} is not one of {', '.join(FLOW_CONTROL)}")
    if mode is Mode.DISTRIBUTED and flow_control != "maar":
        raise ConfigError("[dmm] flow_control: mode = distributed has no CMD to program the switches: maar only")
    timers_kw: dict = {}
    if parser.has_section("timers"):
        items = dict(parser.items("timers"))
        _check_keys("timers", items, set(_TIMER_KEYS))
        for key, text in items.items():
            try:
                timers_kw[key] = float(text) if _TIMER_KEYS[key] in (float, "float") else int(text, 0)
            except ValueError:
                raise ConfigError(f"[timers] {key}: {text!r} is not a number") from None
    try:
        timers = Timers(**timers_kw)
    except ValueError as exc:
        raise ConfigError(f"[{exc}".replace("[timers.", "[timers] ", 1)) from None
    maars, switches = [], []
    for section in parser.sections():
        if not section.startswith("maar:"):
            continue
        name = section[5:]
        if not name:
            raise ConfigError(f"[{section}]: a MAAR needs a name, as in [maar:maar1]")
        items = dict(parser.items(section))
        _check_keys(section, items, _MAAR_KEYS)
        for key in ("address", "pool"):
            if key not in items:
                raise ConfigError(f"[{section}] {key}: missing")
        try:
            pool = Prefix.parse(items["pool"].strip())
        except ValueError as exc:
            raise ConfigError(f"[{section}] pool: {exc}") from None
        switch = _switch(section, name, items)
        if switch is not None:
            switches.append(switch)
        dpid: Optional[int] = None
        if "datapath_id" in items:
            dpid = _int(section, "datapath_id", items["datapath_id"], 0, 2**64 - 1)
        try:
            maars.append(MaarInfo(
                name, _address(section, "address", items["address"]), pool,
                _int(section, "prefix_length", items.get("prefix_length", "64"), 1, 128),
                _parse_mac(section, "mac", items["mac"]) if "mac" in items else b"", dpid))
        except ValueError as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"[{section}] {exc}") from None
    try:
        domain = Domain(cmd_address, tuple(maars), mode, dereg, timers, lma, cmd_addresses)
    except ValueError as exc:
        if lma is not None and all(m.name != lma for m in maars):
            raise ConfigError(f"[dmm] lma: {lma!r} is not a configured MAAR (no [maar:{lma}] section)") from None
        raise ConfigError(str(exc)) from None
    dpids = [m.datapath_id for m in maars if m.datapath_id is not None]
    if len(dpids) != len(set(dpids)):
        raise ConfigError("two MAARs have the same datapath_id")
    store = _store(dict(parser.items("store")) if parser.has_section("store") else {}, source)
    rest = _rest(dict(parser.items("rest")) if parser.has_section("rest") else {}, source)
    auth = _auth(dict(parser.items("auth")) if parser.has_section("auth") else {}, source)
    roles = _roles(dict(parser.items("roles")) if parser.has_section("roles") else {})
    if roles.redis and store.backend != "redis":  # a new master reconciles the switches from the shared state
        raise ConfigError("[roles] needs the binding store shared by the instances: [store] backend = redis")
    if roles.redis and flow_control == "maar":  # no switch connects to a CMD then
        raise ConfigError("[roles] elects a master CMD per switch, but with [dmm] flow_control = maar each MAAR's "
                          "agent drives its own switch: remove [roles] or use flow_control = cmd")
    return domain, CmdSettings(listen, port, raw_mh, tunnel, tunnel_key, tuple(switches), rcvbuf=rcvbuf,
                               metrics_listen=metrics_listen, metrics_port=metrics_port, store=store, rest=rest,
                               auth=auth, flow_control=flow_control, roles=roles,
                               require_ipsec=require_ipsec)


def _roles(items: dict) -> RoleSettings:
    from .roles.election import GUARD
    _check_keys("roles", items, _ROLE_KEYS)
    d = RoleSettings()
    url = items.get("redis") or None
    if url is not None and url != "store":
        _redis_url("[roles] redis", url, "store (the binding store's) or ")
    ttl = _float("roles", "lease_ttl", items.get("lease_ttl", str(d.lease_ttl)), 2 * GUARD, 60.0)
    every = _float("roles", "renew_interval", items.get("renew_interval", str(d.renew_interval)), 0.05, 30.0)
    if every > (ttl - GUARD) / 2:
        raise ConfigError(f"[roles] renew_interval: at most half of lease_ttl - {GUARD} s (two renewals before our "
                          f"lease can end), here {(ttl - GUARD) / 2:g}")
    instance = items.get("instance", d.instance).strip()
    if not re.fullmatch(r"[A-Za-z0-9._:-]{0,64}", instance):
        raise ConfigError(f"[roles] instance: {instance!r}: up to 64 letters, digits, '.', '_', ':', '-'")
    prefix = items.get("key_prefix", d.key_prefix).strip()
    if not re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", prefix):
        raise ConfigError(f"[roles] key_prefix: {prefix!r}: 1-64 letters, digits, '.', '_', ':', '-'")
    return RoleSettings(url, instance, ttl, every, prefix)


def _auth(items: dict, source: str) -> AuthSettings:
    _check_keys("auth", items, _AUTH_KEYS)
    mode = items.get("mode", "open").strip()
    if mode not in authz.MODES:
        raise ConfigError(f"[auth] mode: {mode!r} is not one of {', '.join(authz.MODES)}")
    try:
        macs = tuple(authz.mac_pattern(p, "[auth] allow_macs") for p in items.get("allow_macs", "").split(",")
                     if p.strip())
        nais = tuple(authz.nai_pattern(p, "[auth] allow_nais") for p in items.get("allow_nais", "").split(",")
                     if p.strip())
    except authz.PolicyError as exc:
        raise ConfigError(str(exc)) from None
    allow_file = _beside(source, items["allow_file"]) if items.get("allow_file", "").strip() else None
    if mode == "allowlist" and not (macs or nais or allow_file):
        raise ConfigError("[auth] mode = allowlist: give allow_macs, allow_nais or allow_file (an empty list "
                          "would refuse every MN)")
    if mode == "open" and (macs or nais or allow_file):
        raise ConfigError("[auth] allow_macs, allow_nais, allow_file: only read with mode = allowlist")
    cap = None
    if "max_prefixes_per_port" in items:
        cap = _int("auth", "max_prefixes_per_port", items["max_prefixes_per_port"], 1, 2**32)
    return AuthSettings(mode, macs, nais, allow_file, cap)


def _beside(source: str, path: str) -> str:
    """``path`` as given, or from the configuration file's folder when relative."""
    path = os.path.expanduser(path.strip())
    if os.path.isabs(path):
        return path
    base = os.path.dirname(os.path.abspath(source)) if not source.startswith("<") else os.getcwd()
    return os.path.normpath(os.path.join(base, path))


def _rest(items: dict, source: str) -> RestSettings:
    _check_keys("rest", items, _REST_KEYS)
    if "token" in items and "token_file" in items:
        raise ConfigError("[rest] token, token_file: give one of them, not both")
    key, token = None, None
    if "token_file" in items:
        key, path = "token_file", _beside(source, items["token_file"])
        try:
            with open(path, encoding="utf-8") as f:
                token = f.read(TOKEN_MAX + 2).strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"[rest] token_file: cannot read {path}: "
                              f"{getattr(exc, 'strerror', None) or 'not UTF-8 text'}") from None
    elif "token" in items:
        key, token = "token", items["token"].strip()
    if token is not None:  # the token itself is never put in a message
        if not TOKEN_MIN <= len(token) <= TOKEN_MAX or not _TOKEN.fullmatch(token):
            raise ConfigError(f"[rest] {key}: a token is {TOKEN_MIN}..{TOKEN_MAX} characters of A-Z a-z 0-9 "
                              "- . _ ~ + / (then = padding), as RFC 6750 b64token; e.g. from "
                              "'openssl rand -hex 32'")
    paths = {k: _beside(source, items[k]) for k in ("tls_cert", "tls_key", "client_ca") if items.get(k, "").strip()}
    if ("tls_cert" in paths) != ("tls_key" in paths):
        raise ConfigError("[rest] tls_cert, tls_key: give both (the certificate chain and its private key) or neither")
    if "client_ca" in paths and "tls_cert" not in paths:
        raise ConfigError("[rest] client_ca: client certificates need TLS: set tls_cert and tls_key too")
    allow = []
    for part in filter(None, (p.strip() for p in items.get("allow", "").split(","))):
        try:
            allow.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigError(f"[rest] allow: {part!r} is not an address or network like 10.0.0.0/8 or "
                              "2001:db8::/32") from None
    return RestSettings(token, paths.get("tls_cert"), paths.get("tls_key"), paths.get("client_ca"), tuple(allow))


def _store(items: dict, source: str) -> StoreSettings:
    _check_keys("store", items, _STORE_KEYS)
    d = StoreSettings()
    backend = items.get("backend", d.backend)
    if backend not in STORE_BACKENDS:
        raise ConfigError(f"[store] backend: {backend!r} is not one of {', '.join(STORE_BACKENDS)}")
    folder = items.get("dir", d.dir).strip()
    if not folder:
        raise ConfigError("[store] dir: empty")
    if not os.path.isabs(folder):  # next to the configuration file (the lab and tests keep state there)
        base = os.path.dirname(os.path.abspath(source)) if not source.startswith("<") else os.getcwd()
        folder = os.path.normpath(os.path.join(base, folder))
    file = items.get("file", d.file).strip()
    if not file or file.endswith(("/", os.sep)):
        raise ConfigError(f"[store] file: {file!r} is not a file name")
    sync = items.get("synchronous", d.synchronous)
    if sync not in ("full", "normal"):
        raise ConfigError(f"[store] synchronous: {sync!r} is not one of full, normal")
    on_corrupt = items.get("on_corrupt", d.on_corrupt)
    if on_corrupt not in ("fail", "move-aside"):
        raise ConfigError(f"[store] on_corrupt: {on_corrupt!r} is not one of fail, move-aside")
    max_batch = _int("store", "max_batch", items.get("max_batch", str(d.max_batch)), 1, 100_000)
    base = StoreSettings(backend, folder, file, sync, on_corrupt, max_batch)
    if backend != "redis":
        extra = sorted(set(items) & _REDIS_KEYS)
        if extra:
            raise ConfigError(f"[store] {extra[0]}: only with backend = redis")
        return base
    return _redis(items, base)


def _redis_url(where: str, url: str, other: str = "") -> None:
    """Refuse a URL redis-py could not use (it would fail at start-up with a traceback otherwise)."""
    bad = ConfigError(f"{where}: {url!r:.80} is not {other}a redis://, rediss:// or unix:// URL")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (read to validate: digits, 0..65535)
    except ValueError:
        raise bad from None
    db = parts.path.strip("/")
    if parts.scheme == "unix":
        if not parts.path:
            raise bad
    elif parts.scheme not in ("redis", "rediss") or not parts.hostname or (db and not db.isdigit()):
        raise bad


def _redis(items: dict, base: StoreSettings) -> StoreSettings:
    """``[store]`` of the Redis backend: exactly one of ``url`` and ``sentinels``."""
    url = items.get("url", "").strip()
    sentinels = tuple(_host_port("sentinels", part.strip()) for part in items.get("sentinels", "").split(",")
                      if part.strip())
    if bool(url) == bool(sentinels):
        raise ConfigError("[store] backend = redis needs either url (redis://host:port/db) or sentinels "
                          "(host:port, host:port, ...) with service, not both")
    if url:
        _redis_url("[store] url", url)
    names = {}
    for key in ("service", "namespace", "instance"):
        value = items.get(key, getattr(base, key)).strip()
        if (value or key != "instance") and not _NAME.fullmatch(value):
            raise ConfigError(f"[store] {key}: {value!r:.80} is not 1-64 letters, digits or _.:@-")
        names[key] = value
    wait = _int("store", "wait_replicas", items.get("wait_replicas", "0"), 0, 16)
    wait_ms = _int("store", "wait_timeout_ms", items.get("wait_timeout_ms", "100"), 1, 60_000)
    timeout = _float("store", "timeout", items.get("timeout", "1.0"), 0.05, 60.0)
    lease = _float("store", "lease", items.get("lease", "3.0"), 0.5, 60.0)
    active = _bool("store", "active_active", items.get("active_active", "false"))
    return replace(base, url=url, sentinels=sentinels, wait_replicas=wait, wait_timeout_ms=wait_ms, timeout=timeout,
                   active_active=active, lease=lease, **names)


def _host_port(key: str, text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port``."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"[store] {key}: {text!r:.80} is not host:port (or [v6 address]:port)")
    return host, int(port)


def _float(section: str, key: str, text: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"[{section}] {key}: {text!r} is not a number") from None
    if not low <= value <= high:
        raise ConfigError(f"[{section}] {key}: {value:g} is outside {low:g}..{high:g}")
    return value


def load(path: Optional[str]) -> tuple[Domain, CmdSettings]:
    if path is None:
        return parse(DEFAULT_TEXT, "<embedded default>")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    return parse(text, path)


def render(domain: Domain, settings: CmdSettings = CmdSettings(), ryu: Optional[dict] = None,
           store: Optional[StoreSettings] = None) -> str:
    """A configuration file for ``domain`` (the lab and the tests write theirs with this). Its state
    goes next to the file (``[store] dir = dmm-state``) unless ``store`` says otherwise."""
    lines = []
    if ryu:
        lines += ["[DEFAULT]"] + [f"{k} = {v}" for k, v in ryu.items()] + [""]
    lines += ["[dmm]", f"cmd_address = {domain.cmd_address}",
              *([f"cmd_addresses = {', '.join(domain.cmd_addresses)}"] if domain.cmd_addresses else []),
              f"mode = {domain.mode.value}",
              *([f"lma = {domain.lma}"] if domain.lma is not None else []),
              f"dereg = {domain.dereg.value}", f"listen = {settings.listen}", f"port = {settings.port}",
              f"raw_mh = {str(settings.raw_mh).lower()}",
              f"require_ipsec = {str(settings.require_ipsec).lower()}", f"tunnel = {settings.tunnel}",
              f"tunnel_key = {settings.tunnel_key:#x}", f"rcvbuf = {settings.rcvbuf}",
              f"metrics_listen = {settings.metrics_listen}", f"flow_control = {settings.flow_control}"]
    if settings.metrics_port is not None:
        lines.append(f"metrics_port = {settings.metrics_port}")
    st = store or StoreSettings(dir="dmm-state", backend=settings.store.backend)
    lines += ["", "[store]", f"backend = {st.backend}", f"dir = {st.dir}", f"file = {st.file}",
              f"synchronous = {st.synchronous}", f"on_corrupt = {st.on_corrupt}", f"max_batch = {st.max_batch}"]
    if st.backend == "redis":
        where = ([f"url = {st.url}"] if st.url else
                 ["sentinels = " + ", ".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in st.sentinels)])
        lines += where + [f"service = {st.service}", f"namespace = {st.namespace}",
                          f"wait_replicas = {st.wait_replicas}", f"wait_timeout_ms = {st.wait_timeout_ms}",
                          f"timeout = {st.timeout}", f"active_active = {str(st.active_active).lower()}",
                          *([f"instance = {st.instance}"] if st.instance else []), f"lease = {st.lease}"]
    if settings.roles.redis:
        r = settings.roles
        lines += ["", "[roles]", f"redis = {r.redis}", *([f"instance = {r.instance}"] if r.instance else []),
                  f"lease_ttl = {r.lease_ttl}", f"renew_interval = {r.renew_interval}", f"key_prefix = {r.key_prefix}"]
    lines += ["", "[timers]"]
    switches = {s.maar: s for s in settings.switches}
    lines += [f"{f.name} = {getattr(domain.timers, f.name)}" for f in fields(Timers)]
    for m in domain.maars:
        lines += ["", f"[maar:{m.name}]", f"address = {m.address}", f"pool = {m.pool}",
                  f"prefix_length = {m.prefix_length}", "mac = " + mac_text(m.mac)]
        if m.datapath_id is not None:
            lines.append(f"datapath_id = {m.datapath_id:#x}")
        sw = switches.get(m.name)
        if sw is not None:
            lines += [f"core_port = {sw.core_port}", f"tunnel_port = {sw.tunnel_port}", f"agent_port = {sw.agent_port}",
                      "access_ports = " + ",".join(map(str, sw.access_ports)),
                      "core_gateway_mac = " + mac_text(sw.core_gateway_mac)]
    return "\n".join(lines) + "\n"
