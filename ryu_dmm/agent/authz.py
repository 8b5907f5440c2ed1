"""Which MNs a MAAR serves (``[auth]`` of the domain file; docs/security.md).

Checked by the agent on every attach trigger (an RS, a DAD probe, an MLD report, an unrouted frame,
a control ``attach``) before the trigger reaches ``MaarCore``: a refused MN takes no prefix, gets no
PBU sent and no RA. ``open`` (the default) serves every MN, as before ``[auth]`` existed;
``allowlist`` only the MNs whose MAC or NAI matches a pattern of ``allow_macs``, ``allow_nais`` or
the lines of ``allow_file`` (re-read on SIGHUP). Patterns are shell-style (``fnmatch``): ``*``,
``?``, ``[...]``; MACs compared in lower case as ``02:00:00:00:00:01``.

Pure: the agent reads the file and hands its text here.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

MODES = ("open", "allowlist")
MAX_PATTERNS = 100_000  # lines of an allow_file (and patterns in all): a file is not a database
_MAC_PATTERN = re.compile(r"[0-9a-f*?\[\]!:-]+")


class PolicyError(ValueError):
    """A pattern or file that cannot be used; the message names where."""


@dataclass(frozen=True)
class Policy:
    mode: str = "open"
    macs: frozenset = frozenset()  # exact MACs, lower-case text: a set lookup
    mac_globs: tuple = ()  # MAC patterns with wildcards
    nais: frozenset = frozenset()
    nai_globs: tuple = ()

    def allows(self, mn_id: str, mac: bytes) -> bool:
        if self.mode == "open":
            return True
        text = mac.hex(":")
        if text in self.macs or mn_id in self.nais:
            return True
        return (any(fnmatch.fnmatchcase(text, g) for g in self.mac_globs)
                or any(fnmatch.fnmatchcase(mn_id, g) for g in self.nai_globs))

    def describe(self) -> dict:
        return {"mode": self.mode, "patterns": len(self.macs) + len(self.mac_globs) + len(self.nais)
                + len(self.nai_globs)}


def mac_pattern(text: str, where: str) -> str:
    low = text.strip().lower()
    if not _MAC_PATTERN.fullmatch(low):
        raise PolicyError(f"{where}: {text.strip()!r} is not a MAC address or pattern like 02:00:00:00:00:01 "
                          "or 02:00:00:*")
    return low


def nai_pattern(text: str, where: str) -> str:
    nai = text.strip()
    if not 1 <= len(nai.encode("utf-8", "surrogateescape")) <= 254:  # the MN-ID option's limit (RFC 4283)
        raise PolicyError(f"{where}: an NAI pattern is 1..254 bytes")
    return nai


def file_patterns(text: str, source: str) -> tuple[list[str], list[str]]:
    """An allow_file: one pattern a line, ``#`` comments and blank lines ignored; a line holding
    ``@`` is an NAI pattern, any other a MAC pattern. (macs, nais); PolicyError naming the line."""
    macs, nais = [], []
    for n, line in enumerate(text.splitlines(), 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        if len(macs) + len(nais) >= MAX_PATTERNS:
            raise PolicyError(f"{source}: more than {MAX_PATTERNS} patterns")
        where = f"{source} line {n}"
        (nais.append(nai_pattern(entry, where)) if "@" in entry else macs.append(mac_pattern(entry, where)))
    return macs, nais


def build(mode: str, macs: list[str], nais: list[str]) -> Policy:
    """A policy from checked patterns: exact ones in sets, the others kept as globs."""
    def split(patterns):
        exact = frozenset(p for p in patterns if not any(c in p for c in "*?["))
        return exact, tuple(sorted(set(patterns) - exact))
    mac_exact, mac_globs = split(macs)
    nai_exact, nai_globs = split(nais)
    return Policy(mode, mac_exact, mac_globs, nai_exact, nai_globs)
