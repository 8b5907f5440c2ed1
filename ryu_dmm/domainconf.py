"""The domain configuration file: one INI file, also given to ``ryu-manager --config-file``.

Ryu's own options live in ``[DEFAULT]`` (e.g. ``wsapi_port``); ours in ``[dmm]``, ``[timers]`` and
one ``[maar:NAME]`` per MAAR. The whole file is validated before anything is applied: a wrong file
raises ``ConfigError`` naming the section and key, and nothing starts half-configured.
"""
from __future__ import annotations

import configparser
import ipaddress
import os
from dataclasses import dataclass, field, fields
from typing import Optional

from .mobility.config import Dereg, Domain, MaarInfo, Mode, Timers
from .wire import Prefix, canonical6, mac_text, parse_mac

TUNNEL_TYPES = ("gre", "vxlan")


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the bad section and key."""


STORE_BACKENDS = ("sqlite", "memory")
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

    @property
    def path(self) -> str:
        return os.path.join(self.dir, self.file)


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


@dataclass(frozen=True)
class SwitchSettings:
    """A MAAR's edge switch: which OpenFlow port plays which role (see openflow_pipelines/)."""

    maar: str
    core_port: int
    tunnel_port: int
    agent_port: int
    access_ports: tuple[int, ...]
    core_gateway_mac: bytes


_DMM_KEYS = {"cmd_address", "mode", "lma", "dereg", "listen", "port", "raw_mh", "tunnel", "tunnel_key", "rcvbuf",
             "metrics_listen", "metrics_port"}
_SWITCH_KEYS = {"core_port", "tunnel_port", "agent_port", "access_ports", "core_gateway_mac"}
_MAAR_KEYS = {"address", "pool", "prefix_length", "mac", "datapath_id"} | _SWITCH_KEYS
_TIMER_KEYS = {f.name: f.type for f in fields(Timers)}
_STORE_KEYS = {"backend", "dir", "file", "synchronous", "on_corrupt", "max_batch"}

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
    known = {"DEFAULT", "dmm", "timers", "store"}
    for section in parser.sections():
        if section not in known and not section.startswith("maar:"):
            raise ConfigError(f"[{section}]: unknown section (known: [dmm], [timers], [store], [maar:NAME], "
                              "[DEFAULT] for Ryu)")
    if not parser.has_section("dmm"):
        raise ConfigError("[dmm]: section missing")
    dmm = dict(parser.items("dmm"))
    _check_keys("dmm", dmm, _DMM_KEYS)
    if "cmd_address" not in dmm:
        raise ConfigError("[dmm] cmd_address: missing")
    cmd_address = _address("dmm", "cmd_address", dmm["cmd_address"])
    try:
        mode = Mode(dmm.get("mode", "proxy"))
    except ValueError:
        raise ConfigError(f"[dmm] mode: {dmm['mode']!r} is not one of relay, locator, proxy, legacy") from None
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
    tunnel_key = _int("dmm", "tunnel_key", dmm.get("tunnel_key", str(0x444D4D)), 0, 2**32 - 1)
    rcvbuf = _int("dmm", "rcvbuf", dmm.get("rcvbuf", str(CmdSettings.rcvbuf)), 0, 2**30)
    metrics_listen = _ip("dmm", "metrics_listen", dmm.get("metrics_listen", CmdSettings.metrics_listen))
    metrics_port = _int("dmm", "metrics_port", dmm["metrics_port"], 0, 65535) if "metrics_port" in dmm else None
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
        domain = Domain(cmd_address, tuple(maars), mode, dereg, timers, lma)
    except ValueError as exc:
        if lma is not None and all(m.name != lma for m in maars):
            raise ConfigError(f"[dmm] lma: {lma!r} is not a configured MAAR (no [maar:{lma}] section)") from None
        raise ConfigError(str(exc)) from None
    dpids = [m.datapath_id for m in maars if m.datapath_id is not None]
    if len(dpids) != len(set(dpids)):
        raise ConfigError("two MAARs have the same datapath_id")
    store = _store(dict(parser.items("store")) if parser.has_section("store") else {}, source)
    return domain, CmdSettings(listen, port, raw_mh, tunnel, tunnel_key, tuple(switches), rcvbuf=rcvbuf,
                               metrics_listen=metrics_listen, metrics_port=metrics_port, store=store)


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
    return StoreSettings(backend, folder, file, sync, on_corrupt, max_batch)


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
    lines += ["[dmm]", f"cmd_address = {domain.cmd_address}", f"mode = {domain.mode.value}",
              *([f"lma = {domain.lma}"] if domain.lma is not None else []),
              f"dereg = {domain.dereg.value}", f"listen = {settings.listen}", f"port = {settings.port}",
              f"raw_mh = {str(settings.raw_mh).lower()}", f"tunnel = {settings.tunnel}",
              f"tunnel_key = {settings.tunnel_key:#x}", f"rcvbuf = {settings.rcvbuf}",
              f"metrics_listen = {settings.metrics_listen}"]
    if settings.metrics_port is not None:
        lines.append(f"metrics_port = {settings.metrics_port}")
    st = store or StoreSettings(dir="dmm-state", backend=settings.store.backend)
    lines += ["", "[store]", f"backend = {st.backend}", f"dir = {st.dir}", f"file = {st.file}",
              f"synchronous = {st.synchronous}", f"on_corrupt = {st.on_corrupt}", f"max_batch = {st.max_batch}"]
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
