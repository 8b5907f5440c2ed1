"""tshark's verdict on the lab's signalling capture: the lab judged on the wire.

The lab records the PMIPv6 signalling on the core bridge (``CAPTURE_FILTER``: UDP 5436, raw
Mobility Header, ESP) and hands the capture to tshark with the RFC 8885 plugin
(tools/wireshark/rfc8885.lua). ``dissect`` reads tshark's PDML: every Mobility Header message with
its addresses, sequence number, status and options as tshark decodes them, and whatever tshark
found wrong (malformed packets, expert errors, Lua errors). ``judge`` compares that with what the
lab did, all of it known without the code under test: the MAARs' and the CMD's addresses (the lab's
configuration), each MN's identifier (from the MAC the lab gave it), its prefixes (its own
addresses, configured by its kernel from our RAs), when each move started and the mode. What a
message must carry comes from RFC 5213 and RFC 8885 (see the checks in ``judge``), not from the
CMD's or the agents' code.
"""
from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Optional

PLUGIN = Path(__file__).resolve().parents[2] / "tools" / "wireshark" / "rfc8885.lua"
CAPTURE_FILTER = "udp port 5436 or ip6 proto 135 or esp"
MH_BU, MH_BA = 5, 6  # Mobility Header types (RFC 6275): Binding Update, Binding Acknowledgement
SEVERITY_ERROR = 0x00800000  # Wireshark's PI_ERROR
SEVERITY_WARN = 0x00600000  # PI_WARN


@dataclass
class Mh:
    """One Mobility Header message as tshark decoded it."""

    frame: int
    t: float
    src: str
    dst: str
    mhtype: int
    seq: Optional[int] = None
    status: Optional[int] = None  # PBA
    lifetime: Optional[int] = None
    p_flag: Optional[bool] = None
    a_flag: Optional[bool] = None  # PBU
    mn_id: Optional[str] = None
    hnp: list = field(default_factory=list)  # "prefix/len" of every Home Network Prefix option
    serving_maar: list = field(default_factory=list)  # rfc8885.serving_maar
    previous_maar: list = field(default_factory=list)  # (rfc8885.previous_maar.address, .prefix)
    anchored: list = field(default_factory=list)  # rfc8885.anchored_prefix ("prefix/len")

    @property
    def kind(self) -> str:
        return {MH_BU: "PBU", MH_BA: "PBA"}.get(self.mhtype, f"MH{self.mhtype}")

    def brief(self) -> dict:
        return {"frame": self.frame, "t": round(self.t, 6), "src": self.src, "dst": self.dst, "seq": self.seq,
                **({"status": self.status} if self.mhtype == MH_BA else {})}


@dataclass
class Dissected:
    frames: int = 0
    messages: list = field(default_factory=list)  # Mh
    esp: int = 0  # ESP packets (their content cannot be judged without the keys)
    malformed: list = field(default_factory=list)  # frame numbers
    expert_errors: list = field(default_factory=list)  # {"frame", "message"}
    expert_warnings: list = field(default_factory=list)
    lua_errors: list = field(default_factory=list)
    undecoded: list = field(default_factory=list)  # frames tshark did not decode as ESP or MIPv6
    tshark_stderr: str = ""


def _addr(text: str) -> str:
    try:
        return ipaddress.IPv6Address(text).compressed
    except ValueError:
        return text


def prefix_text(text: str) -> str:
    """A prefix in one canonical form; a prefix with host bits set stays as sent (so it never
    equals a clean one)."""
    try:
        return str(ipaddress.IPv6Network(text))
    except ValueError:
        return text


def _show(el: ET.Element, name: str) -> Optional[str]:
    for f in el.iter("field"):
        if f.get("name") == name:
            return f.get("show")
    return None


def _bool(text: Optional[str]) -> Optional[bool]:
    return None if text is None else text in ("1", "True", "true")


def _int(text: Optional[str]) -> Optional[int]:
    return None if text is None else int(text, 0)


def tshark_env(home: Path) -> dict:
    """A private HOME: no personal preferences, and no installed copy of the plugin loaded twice."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "WIRESHARK_"))}
    env["HOME"] = str(home)
    return env


def dissect(pcap: Path, plugin: Path = PLUGIN, home: Optional[Path] = None) -> Dissected:
    """Run tshark with the plugin over ``pcap`` (PDML) and collect the Mobility Header messages."""
    tshark = shutil.which("tshark")
    if tshark is None:
        raise FileNotFoundError("tshark is not installed (apt-get install tshark)")
    if not plugin.is_file():
        raise FileNotFoundError(f"the RFC 8885 Wireshark plugin is missing: {plugin}")
    home = home or pcap.parent / ".tshark-home"
    run = subprocess.run([tshark, "-n", "-X", f"lua_script:{plugin}", "-r", str(pcap), "-T", "pdml"],
                         capture_output=True, text=True, timeout=300, env=tshark_env(home))
    out = Dissected(tshark_stderr="\n".join(line for line in run.stderr.splitlines()
                                            if "Running as user" not in line))
    if run.returncode != 0:
        raise RuntimeError(f"tshark failed on {pcap}: {run.stderr.strip()}")
    for packet in ET.fromstring(run.stdout).findall("packet"):
        out.frames += 1
        frame = int(_show(packet, "frame.number") or 0)
        protos = {p.get("name") for p in packet.iter("proto")}
        if "_ws.malformed" in protos:
            out.malformed.append(frame)
        for f in packet.iter("field"):
            name = f.get("name")
            if name == "_ws.expert":
                sev, msg = _int(_show(f, "_ws.expert.severity")), _show(f, "_ws.expert.message")
                if sev is not None and sev >= SEVERITY_ERROR:
                    out.expert_errors.append({"frame": frame, "message": msg})
                elif sev is not None and sev >= SEVERITY_WARN:
                    out.expert_warnings.append({"frame": frame, "message": msg})
            elif name == "_ws.lua.error":
                out.lua_errors.append({"frame": frame, "message": f.get("showname")})
        if "esp" in protos:
            out.esp += 1
            continue
        mip = next((p for p in packet.iter("proto") if p.get("name") == "mipv6"), None)
        if mip is None:
            out.undecoded.append(frame)
            continue
        out.messages.append(_message(packet, mip, frame))
    return out


def _message(packet: ET.Element, mip: ET.Element, frame: int) -> Mh:
    ip6 = next(p for p in packet.iter("proto") if p.get("name") == "ipv6")
    m = Mh(frame, float(_show(packet, "frame.time_epoch") or 0), _addr(_show(ip6, "ipv6.src") or ""),
           _addr(_show(ip6, "ipv6.dst") or ""), int(_show(mip, "mip6.mhtype") or -1))
    if m.mhtype == MH_BU:
        m.seq, m.lifetime = _int(_show(mip, "mip6.bu.seqnr")), _int(_show(mip, "mip6.bu.lifetime"))
        m.p_flag, m.a_flag = _bool(_show(mip, "mip6.bu.p_flag")), _bool(_show(mip, "mip6.bu.a_flag"))
    elif m.mhtype == MH_BA:
        m.seq, m.lifetime = _int(_show(mip, "mip6.ba.seqnr")), _int(_show(mip, "mip6.ba.lifetime"))
        m.status, m.p_flag = _int(_show(mip, "mip6.ba.status")), _bool(_show(mip, "mip6.ba.p_flag"))
    m.mn_id = _show(mip, "mip6.mnid.identifier")
    for el in mip.iter():
        name = el.get("name")
        if el.tag == "field" and name == "mip6.options.hnp":
            prefix, plen = _show(el, "mip6.nemo.mnp.mnp"), _show(el, "mip6.nemo.mnp.pfl")
            m.hnp.append(prefix_text(f"{prefix}/{plen}"))
        elif el.tag == "proto" and name == "rfc8885":
            serving = _show(el, "rfc8885.serving_maar")
            if serving is not None:
                m.serving_maar.append(_addr(serving))
            anchored = _show(el, "rfc8885.anchored_prefix")
            if anchored is not None:
                m.anchored.append(prefix_text(anchored))
            pmaar = _show(el, "rfc8885.previous_maar.address")
            if pmaar is not None:
                m.previous_maar.append((_addr(pmaar), prefix_text(_show(el, "rfc8885.previous_maar.prefix") or "")))
    return m


# ---- the verdict ------------------------------------------------------------------------------
def _newer_or_same(a: int, b: int) -> bool:
    """Sequence number b is not older than a (16-bit serial arithmetic, RFC 1982)."""
    return (b - a) % 65536 < 32768


def _first(msgs: Iterable[Mh], **want) -> Optional[Mh]:
    for m in msgs:
        if all(getattr(m, k) == v for k, v in want.items()):
            return m
    return None


def handover_input(h: dict) -> dict:
    """What ``judge`` needs of one handover of the lab's report (``told`` and ``pbu_hnp``: see ``judge``)."""
    return {k: h[k] for k in ("mn", "mn_id", "to", "new_prefix", "t_move", "t_end")} | {
        "previous": h["previous_prefixes"], "told": h.get("told"), "pbu_hnp": h.get("pbu_hnp"),
        "cmd": h.get("cmd")}


def judge(d: Dissected, *, cmd: str, maars: dict, mode: str, registrations: list, handovers: list) -> dict:
    """The verdict over one capture.

    ``maars``: name -> signalling address. ``registrations``: per MN ``{"mn", "mn_id", "maar",
    "prefix", "t_end"}`` (its first attachment; ``t_end``: its first move or the end of the run).
    ``handovers``: per move ``{"mn", "mn_id", "to", "new_prefix", "previous": {maar: prefix the MN
    got there}, "t_move", "t_end"}`` (``t_end``: that MN's next move or the end of the run), and
    ``cmd`` when the new MAAR signalled to another CMD than ``cmd`` (several CMDs, lab/ha.py). Legacy mode
    (docs/mode-legacy.md) adds, per registration and handover, ``pbu_hnp`` (the MAAR's PBU asks with
    ALL_ZERO, ``::/0``), per registration ``previous`` (the LMA, away from it) and per handover ``told``
    (MAAR -> prefix: every MAAR the CMD's PBU goes to, the LMA and the MAAR left); and the CMD answers
    the new MAAR only after the LMA has answered, as in relay mode.

    Checks (RFC 5213 §5.3/§6.9, RFC 8885 §3, docs FACTS): every PBU (BU with P and A) is answered by
    a PBA with the same sequence number from its destination back to its source; PBU sequence
    numbers from one sender to one receiver for one MN never go back; a PBA echoes its PBU's MN-ID
    and an accepted one carries the prefix in HNP (RFC 5213 §5.3.6); per registration a PBU from
    the MAAR with the MN's MN-ID and its prefix in HNP, answered with an accepted PBA that names no
    previous MAAR; per handover: a PBU from the new MAAR with the MN-ID and the new prefix in HNP,
    the CMD's accepted PBA to it with exactly one Previous MAAR option per MAAR left behind (that
    MAAR's address and the MN's prefix there), a PBU from the CMD to each of those P-MAARs with HNP =
    the prefix it anchors and Serving MAAR = the new MAAR, answered by an accepted PBA with the same
    HNP and Serving MAAR; in locator mode also each P-MAAR's PBA straight to the new MAAR (its prefix in
    HNP); in relay mode the CMD answers the new MAAR only after every P-MAAR has answered it. In
    proxy mode the RFC lets the CMD answer without waiting for the P-MAARs, but does not oblige the
    answer to overtake theirs (our CMD holds it for the S-MAAR's switch barrier): the order seen is
    reported (``s_maar_answered_first``), not judged.
    """
    cmd = _addr(cmd)
    maars = {n: _addr(a) for n, a in maars.items()}
    maar_addrs = set(maars.values())
    msgs = sorted(d.messages, key=lambda m: m.frame)
    pbus = [m for m in msgs if m.mhtype == MH_BU]
    pbas = [m for m in msgs if m.mhtype == MH_BA]
    problems: list[str] = []

    # every PBU answered, between the same pair, with its sequence number
    unanswered, answers = [], {}
    for u in pbus:
        a = _first((b for b in pbas if b.frame > u.frame), src=u.dst, dst=u.src, seq=u.seq)
        if a is None:
            unanswered.append({**u.brief(), "mn": u.mn_id})
        else:
            answers[u.frame] = a
            if a.mn_id != u.mn_id:
                problems.append(f"frame {a.frame}: PBA echoes MN-ID {a.mn_id!r}, its PBU (frame {u.frame}) "
                                f"carried {u.mn_id!r}")
        if not (u.p_flag and u.a_flag):
            problems.append(f"frame {u.frame}: a BU without the P and A flags")
    answered_pbas = {a.frame for a in answers.values()}
    direct, stray = [], []
    for b in pbas:
        if b.frame in answered_pbas or _first((u for u in pbus if u.frame < b.frame), src=b.dst, dst=b.src, seq=b.seq):
            continue
        if mode == "locator" and b.src in maar_addrs and b.dst in maar_addrs:
            direct.append(b)  # a P-MAAR answering the S-MAAR directly (RFC 8885 §3.3)
        else:
            stray.append({**b.brief(), "mn": b.mn_id})
    rejected = [{**b.brief(), "mn": b.mn_id} for b in pbas if b.status is None or b.status >= 128]

    # sequence numbers never go back (per sender, receiver and MN)
    regressions, last = [], {}
    for u in pbus:
        key = (u.src, u.dst, u.mn_id)
        if key in last and not _newer_or_same(last[key].seq, u.seq):
            regressions.append({"from": last[key].brief(), "to": u.brief(), "mn": u.mn_id})
        last[key] = u

    regs = [_judge_registration(r, pbus, answers, maars, cmd) for r in registrations]
    per_ho = [_judge_handover(h, pbus, pbas, answers, maars, cmd, mode) for h in handovers]
    ok = (d.frames > 0 and not (d.malformed or d.expert_errors or d.lua_errors or d.undecoded or unanswered
                                 or stray or rejected or regressions or problems)
          and all(r["ok"] for r in regs) and all(h["ok"] for h in per_ho))
    return {
        "ok": ok, "tool": "tshark -T pdml -X lua_script:tools/wireshark/rfc8885.lua",
        "frames": d.frames, "pbus": len(pbus), "pbas": len(pbas), "other_mh": len(msgs) - len(pbus) - len(pbas),
        "esp": d.esp, "malformed": d.malformed, "expert_errors": d.expert_errors,
        "expert_warnings": len(d.expert_warnings), "lua_errors": d.lua_errors, "undecoded": d.undecoded,
        "unanswered": unanswered, "stray_pbas": stray, "direct_pbas": len(direct), "rejected": rejected,
        "seq_regressions": regressions, "problems": problems, "registrations": regs, "per_handover": per_ho,
    }


def _judge_registration(r: dict, pbus: list, answers: dict, maars: dict, cmd: str) -> dict:
    out = {"mn": r["mn"], "maar": r["maar"], "prefix": r["prefix"], "problems": []}
    p = out["problems"]
    u = next((m for m in pbus if m.src == maars[r["maar"]] and m.dst == cmd and m.mn_id == r["mn_id"]
              and m.t <= r["t_end"]), None)
    if u is None:
        p.append(f"no PBU from {r['maar']} to the CMD for {r['mn_id']}")
    else:
        out["pbu"] = u.brief()
        want = r.get("pbu_hnp") or r["prefix"]
        if u.hnp != [prefix_text(want)]:
            p.append(f"PBU frame {u.frame}: HNP {u.hnp}, expected [{want}]")
        a = answers.get(u.frame)
        if a is None:
            p.append(f"PBU frame {u.frame} unanswered")
        else:
            out["pba"] = a.brief()
            if a.status is None or a.status >= 128:
                p.append(f"PBA frame {a.frame}: status {a.status}")
            if a.hnp != [prefix_text(r["prefix"])]:
                p.append(f"PBA frame {a.frame}: HNP {a.hnp}, expected [{r['prefix']}]")
            prev = sorted((maars[m], prefix_text(pref)) for m, pref in r.get("previous", {}).items())
            if sorted(a.previous_maar) != prev:
                p.append(f"PBA frame {a.frame} of a first registration names previous MAARs {a.previous_maar}, "
                         f"expected {prev}")
    out["ok"] = not p
    return out


def _judge_handover(h: dict, pbus: list, pbas: list, answers: dict, maars: dict, cmd: str, mode: str) -> dict:
    to, mn_id = maars[h["to"]], h["mn_id"]
    cmd = _addr(h["cmd"]) if h.get("cmd") else cmd
    lo, hi = h["t_move"], h["t_end"]
    out = {"mn": h["mn"], "to": h["to"], "problems": []}
    p = out["problems"]

    def within(m: Mh) -> bool:
        return m.mn_id == mn_id and lo <= m.t <= hi

    u = next((m for m in pbus if within(m) and m.src == to and m.dst == cmd and m.lifetime), None)
    if u is None:
        p.append(f"no PBU from {h['to']} to the CMD for {mn_id} after the move")
        out["ok"] = False
        return out
    out["pbu"] = {**u.brief(), "hnp": u.hnp}
    want = h.get("pbu_hnp") or h["new_prefix"]
    if u.hnp != [prefix_text(want)]:
        p.append(f"PBU frame {u.frame}: HNP {u.hnp}, expected [{want}]")
    a = answers.get(u.frame)
    expected_prev = sorted((maars[m], prefix_text(pref)) for m, pref in h["previous"].items())
    if a is None:
        p.append(f"the S-MAAR's PBU (frame {u.frame}) is unanswered")
    else:
        out["pba"] = {**a.brief(), "hnp": a.hnp, "previous_maars": [list(x) for x in a.previous_maar]}
        if a.status is None or a.status >= 128:
            p.append(f"PBA frame {a.frame}: status {a.status}")
        if a.hnp != [prefix_text(h["new_prefix"])]:
            p.append(f"PBA frame {a.frame}: HNP {a.hnp}, expected [{h['new_prefix']}]")
        if sorted(a.previous_maar) != expected_prev:
            p.append(f"PBA frame {a.frame}: Previous MAAR options {a.previous_maar}, expected {expected_prev}")
    pm_out, pmaar_answers = [], []
    for name, pref in (h.get("told") or h["previous"]).items():
        addr = maars[name]
        row = {"maar": name, "prefix": pref}
        v = next((m for m in pbus if within(m) and m.frame > u.frame and m.src == cmd and m.dst == addr), None)
        if v is None:
            p.append(f"no PBU from the CMD to P-MAAR {name}")
            pm_out.append(row)
            continue
        row["pbu"] = {**v.brief(), "serving_maar": v.serving_maar, "hnp": v.hnp}
        if v.serving_maar != [to]:
            p.append(f"PBU frame {v.frame} to {name}: Serving MAAR {v.serving_maar}, expected [{to}]")
        if v.hnp != [prefix_text(pref)]:
            p.append(f"PBU frame {v.frame} to {name}: HNP {v.hnp}, expected [{pref}]")
        b = answers.get(v.frame)
        if b is None:
            p.append(f"PBU frame {v.frame} to {name} unanswered")
        else:
            row["pba"] = {**b.brief(), "serving_maar": b.serving_maar, "hnp": b.hnp}
            if name in h["previous"]:  # an anchor the handover waits for (legacy: the LMA, not the MAAR left)
                pmaar_answers.append(b)
            if b.status is None or b.status >= 128:
                p.append(f"PBA frame {b.frame} from {name}: status {b.status}")
            if b.hnp != [prefix_text(pref)]:
                p.append(f"PBA frame {b.frame} from {name}: HNP {b.hnp}, expected [{pref}]")
            if b.serving_maar != [to]:
                p.append(f"PBA frame {b.frame} from {name}: Serving MAAR {b.serving_maar}, expected [{to}]")
        if mode == "locator":
            w = next((m for m in pbas if within(m) and m.src == addr and m.dst == to), None)
            if w is None:
                p.append(f"locator: no PBA from P-MAAR {name} straight to {h['to']}")
            else:
                row["direct_pba"] = {**w.brief(), "hnp": w.hnp}
                if w.hnp != [prefix_text(pref)]:
                    p.append(f"direct PBA frame {w.frame} from {name}: HNP {w.hnp}, expected [{pref}]")
                if w.status is None or w.status >= 128:
                    p.append(f"direct PBA frame {w.frame} from {name}: status {w.status}")
        pm_out.append(row)
    out["pmaars"] = pm_out
    if a is not None and pmaar_answers:
        # capture order on the one bridge: did the S-MAAR's answer cross it before any anchor's?
        out["s_maar_answered_first"] = a.frame < min(b.frame for b in pmaar_answers)
        last = max(b.frame for b in pmaar_answers)
        if mode in ("relay", "legacy") and not a.frame > last:
            p.append(f"{mode}: the CMD answered the S-MAAR (frame {a.frame}) before every P-MAAR had (frame {last})")
    out["ok"] = not p
    return out


def as_json(d: Dissected) -> dict:
    """The dissected capture as plain data (for debugging)."""
    return {**asdict(d), "messages": [asdict(m) for m in d.messages]}


def judge_report(report: dict, pcap: Path, home: Optional[Path] = None) -> dict:
    """The verdict over ``pcap`` for the run ``report`` describes (the lab's report.json)."""
    return judge(dissect(pcap, home=home), cmd=report["cmd_address"], maars=report["maar_addresses"],
                 mode=report["mode"], registrations=report["registrations"],
                 handovers=[handover_input(h) for h in report["handovers"]])


def main(argv=None) -> int:
    """``python -m ryu_dmm.lab.wire_verdict OUT [PCAP]``: judge a lab run's signalling capture again
    (OUT: the lab's --out folder; PCAP: another capture of the same run, logs/signalling.pcap by default)."""
    import argparse
    import json
    import tempfile
    ap = argparse.ArgumentParser(prog="python -m ryu_dmm.lab.wire_verdict", description=main.__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("pcap", nargs="?")
    args = ap.parse_args(argv)
    out = Path(args.out)
    report = json.loads((out / "report.json").read_text())
    with tempfile.TemporaryDirectory() as home:
        verdict = judge_report(report, Path(args.pcap) if args.pcap else out / "logs" / "signalling.pcap", Path(home))
    print(json.dumps(verdict, indent=1))
    return 0 if verdict["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
