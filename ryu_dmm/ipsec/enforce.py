"""``require_ipsec``: the kernel drops plaintext PMIPv6 signalling before any application sees it.

The signalling is protected by ESP between the hosts (strongSwan, see ``strongswan.py``). With the
userspace ESP of strongSwan's kernel-libipsec, decrypted packets come in through its TUN device
(``ipsec0``); with kernel ESP they carry a security path (``meta secpath exists``). The table below
drops every other UDP datagram to or from the signalling port and every Mobility Header datagram,
in and out, and counts them in two named counters an operator can read:
``nft list counters table inet ryu_dmm_ipsec``. Loopback is left alone (it never crosses a network).

``check`` is what the CMD and the agents run at start-up when ``require_ipsec = true``: it reads
the table back from the kernel (``nft -j``) and names what is missing.
"""
from __future__ import annotations

import json
import subprocess
from typing import Callable, Optional

FAMILY, TABLE = "inet", "ryu_dmm_ipsec"
TUN = "ipsec0"  # kernel-libipsec's TUN device (strongSwan names its first one so)
COUNTERS = ("plaintext_in", "plaintext_out")
MH = 135  # IPv6 Mobility Header (RFC 6275)
_MH_NAMES = {MH, "mobility-header", "ipv6-mh", "mh"}  # how nft may print protocol 135


def ruleset(port: int = 5436, tun: str = TUN) -> str:
    """The nft script (``nft -f``) that installs the table, replacing an older copy of it."""
    def chain(name: str, hook: str, iface: str, counter: str) -> str:
        # kernel ESP: a decrypted packet carries a security path (only on the way in)
        secpath = "    meta secpath exists accept\n" if hook == "input" else ""
        return (f"  chain {name} {{\n    type filter hook {hook} priority -10; policy accept;\n"
                f"    {iface} {{ \"lo\", \"{tun}\" }} accept\n{secpath}"
                f"    udp dport {port} counter name {counter} drop\n"
                f"    udp sport {port} counter name {counter} drop\n"
                f"    meta l4proto {MH} counter name {counter} drop\n  }}\n")
    return (f"table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n"
            f"table {FAMILY} {TABLE} {{\n"
            + "".join(f"  counter {c} {{ }}\n" for c in COUNTERS)
            + chain("signalling_in", "input", "iifname", COUNTERS[0])
            + chain("signalling_out", "output", "oifname", COUNTERS[1]) + "}\n")


def _drops(rule: dict, port: int) -> set:
    """What a rule drops, as {"udp", "mh"}: a ``drop`` verdict after a match of the port or of 135."""
    exprs = rule.get("expr", [])
    if not any("drop" in e for e in exprs):
        return set()
    found = set()
    for e in exprs:
        m = e.get("match") if isinstance(e, dict) else None
        if not m or m.get("op", "==") != "==":
            continue
        left, right = m.get("left", {}), m.get("right")
        if left.get("payload", {}).get("protocol") == "udp" and left["payload"].get("field") in ("dport", "sport") \
                and right == port:
            found.add(("udp", left["payload"]["field"]))
        if left.get("meta", {}).get("key") == "l4proto" and right in _MH_NAMES:
            found.add(("mh", None))
    return found


_TRUSTED = {"lo", "ipsec0"}  # where plaintext signalling may pass: loopback and the userspace-ESP device


def _wide_accept(rule: dict) -> bool:
    """An ``accept`` that lets more through than loopback, the ESP device or what the kernel decrypted
    (``meta ipsec exists``): placed before the drops it would void them."""
    exprs = rule.get("expr", [])
    if not any(isinstance(e, dict) and "accept" in e for e in exprs):
        return False
    matches = [e["match"] for e in exprs if isinstance(e, dict) and "match" in e]

    def narrow(m: dict) -> bool:
        key, right = m.get("left", {}).get("meta", {}).get("key"), m.get("right")
        items = right["set"] if isinstance(right, dict) and "set" in right else [right]
        names = {x for x in items if isinstance(x, str)} if isinstance(items, list) else set()
        return m.get("op", "==") == "==" and (
            (key in ("iifname", "oifname") and len(names) == len(items) and names <= _TRUSTED)
            or (key == "ipsec" and right is True))
    return not matches or not all(narrow(m) for m in matches)


def verify(listing: dict, port: int = 5436) -> list[str]:
    """Problems with a table listing (``nft -j list table inet ryu_dmm_ipsec``); empty when both an
    input and an output hook drop UDP to and from ``port`` and the Mobility Header."""
    hooks: dict = {}
    for item in listing.get("nftables", []):
        if "chain" in item and item["chain"].get("hook") in ("input", "output"):
            hooks[item["chain"]["name"]] = item["chain"]["hook"]
    dropped: dict = {"input": set(), "output": set()}
    opened: set = set()  # hooks where a wide accept comes before (or among) the drops
    for item in listing.get("nftables", []):
        rule = item.get("rule")
        if rule and rule.get("chain") in hooks:
            dropped[hooks[rule["chain"]]] |= _drops(rule, port)
            if _wide_accept(rule):
                opened.add(hooks[rule["chain"]])
    want = {("udp", "dport"), ("udp", "sport"), ("mh", None)}
    problems = []
    for hook in ("input", "output"):
        for kind, field in sorted(want - dropped[hook], key=str):
            what = f"UDP {field} {port}" if kind == "udp" else f"Mobility Header (protocol {MH})"
            problems.append(f"no {hook}-hook rule drops plaintext {what}")
        if hook in opened:
            problems.append(f"an {hook}-hook rule accepts more than lo, ipsec0 and decrypted packets")
    return problems


def _list(timeout: float = 10.0) -> tuple[Optional[dict], str]:
    try:
        out = subprocess.run(["nft", "-j", "list", "table", FAMILY, TABLE], capture_output=True, text=True,
                             timeout=timeout)
    except FileNotFoundError:
        return None, "the nft command is missing (Debian package nftables)"
    except subprocess.TimeoutExpired:
        return None, f"nft did not answer within {timeout:g} s"
    if out.returncode != 0:
        return None, out.stderr.strip().splitlines()[0] if out.stderr.strip() else f"nft exited {out.returncode}"
    try:
        return json.loads(out.stdout), ""
    except ValueError:
        return None, "nft printed no JSON"


def check(port: int = 5436) -> Optional[str]:
    """None when this network namespace refuses plaintext signalling, else why not (one line)."""
    listing, error = _list()
    if listing is None:
        return (f"require_ipsec = true, but the nftables table {FAMILY} {TABLE} cannot be read in this network "
                f"namespace ({error}); install it with `python -m ryu_dmm.ipsec nft --port {port} | nft -f -` "
                "(docs/security.md)")
    problems = verify(listing, port)
    if problems:
        return (f"require_ipsec = true, but the nftables table {FAMILY} {TABLE} is incomplete: "
                + "; ".join(problems) + f"; reinstall it with `python -m ryu_dmm.ipsec nft --port {port} | nft -f -`")
    return None


def read_counters(timeout: float = 10.0) -> tuple[Optional[dict], str]:
    """({counter: packets} of plaintext signalling dropped so far, "") or (None, why not)."""
    listing, error = _list(timeout)
    if listing is None:
        return None, error
    out = {}
    for item in listing.get("nftables", []):
        c = item.get("counter")
        if c and c.get("name") in COUNTERS:
            out[c["name"]] = c.get("packets", 0)
    return out, ""


def counters() -> dict:
    """Plaintext signalling dropped so far ({counter: packets}); empty when the table is absent."""
    return read_counters()[0] or {}


COUNTERS_MAX_AGE = 10.0  # seconds an agent's `state` shows the same counters before reading them again
COUNTERS_TIMEOUT = 1.0  # seconds one read (nft -j) may hold the agent's loop


class CachedCounters:
    """The drop counters for a single-threaded loop that must not wait on ``nft``: read at most once
    per ``max_age`` seconds (a read costs a process, ~4 ms), each read cut at ``timeout``; a read
    that fails keeps the last counters and says why."""

    def __init__(self, max_age: float = COUNTERS_MAX_AGE, timeout: float = COUNTERS_TIMEOUT,
                 read: Callable[[float], tuple[Optional[dict], str]] = read_counters) -> None:
        self.max_age, self.timeout, self._read = max_age, timeout, read
        self.counters: dict = {}
        self._tried: Optional[float] = None  # when the last read was tried
        self._read_at: Optional[float] = None  # when the counters shown were read
        self.error: Optional[str] = None

    def view(self, now: float) -> dict:
        """``now``: a monotonic clock."""
        if self._tried is None or now - self._tried >= self.max_age:
            self._tried = now
            got, error = self._read(self.timeout)
            if got is None:
                self.error = error
            else:
                self.counters, self._read_at, self.error = got, now, None
        age = None if self._read_at is None else round(now - self._read_at, 3)
        return {"plaintext_dropped": dict(self.counters), "counters_age": age, "counters_error": self.error}
