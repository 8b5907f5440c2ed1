"""tshark's verdict on a lab run in distributed mode (docs/mode-distributed.md): no CMD on the wire.

Expected from the lab's facts (MAARs' addresses, each MN's MN-ID and its prefixes from its own SLAAC
addresses, the move times) and the design, not from the agents' code: every PBU answered by a PBA from
its destination with its sequence number and MN-ID; statuses only 0, 153 (not an anchor for this MN)
or 157 (a newer attachment is known); per attachment the MAAR the MN came to sends every other MAAR a
PBU with the MN-ID, its new prefix in HNP and itself as Serving MAAR; each MAAR the MN left behind
answers accepted with its prefix in an Anchored Prefix option (RFC 8885 type 65), every other MAAR
153. The result has the keys of ``wire_verdict.judge``'s (the lab prints both alike), and per
attachment ``messages``: the PBUs and PBAs it took.
"""
from __future__ import annotations

from .wire_verdict import MH_BA, MH_BU, Dissected, _addr, _first, prefix_text

ALLOWED = {0, 153, 157}


def judge(d: Dissected, *, maars: dict, registrations: list, handovers: list) -> dict:
    maars = {n: _addr(a) for n, a in maars.items()}
    msgs = sorted(d.messages, key=lambda m: m.frame)
    pbus = [m for m in msgs if m.mhtype == MH_BU]
    pbas = [m for m in msgs if m.mhtype == MH_BA]
    problems, unanswered, answers = [], [], {}
    for u in pbus:
        a = _first((b for b in pbas if b.frame > u.frame), src=u.dst, dst=u.src, seq=u.seq)
        if a is None:
            unanswered.append({**u.brief(), "mn": u.mn_id})
            continue
        answers[u.frame] = a
        if a.mn_id != u.mn_id:
            problems.append(f"frame {a.frame}: PBA echoes MN-ID {a.mn_id!r}, its PBU carried {u.mn_id!r}")
    answered = {a.frame for a in answers.values()}
    stray = [{**b.brief(), "mn": b.mn_id} for b in pbas if b.frame not in answered]
    rejected = [{**b.brief(), "mn": b.mn_id} for b in pbas if b.status not in ALLOWED]
    attachments = ([{**r, "to": r["maar"], "new_prefix": r["prefix"], "previous": {}, "t_move": 0.0} for r in registrations]
                   + list(handovers))
    judged = [_attachment(x, pbus, answers, maars) for x in attachments]
    regs, per_ho = judged[:len(registrations)], judged[len(registrations):]
    ok = (d.frames > 0 and not (d.malformed or d.expert_errors or d.lua_errors or d.undecoded or unanswered
                                 or stray or rejected or problems) and all(x["ok"] for x in judged))
    return {"ok": ok, "tool": "tshark -T pdml -X lua_script:tools/wireshark/rfc8885.lua", "frames": d.frames,
            "pbus": len(pbus), "pbas": len(pbas), "other_mh": len(msgs) - len(pbus) - len(pbas), "esp": d.esp,
            "malformed": d.malformed, "expert_errors": d.expert_errors, "expert_warnings": len(d.expert_warnings),
            "lua_errors": d.lua_errors, "undecoded": d.undecoded, "unanswered": unanswered, "stray_pbas": stray,
            "direct_pbas": 0, "rejected": rejected, "seq_regressions": [], "problems": problems,
            "registrations": regs, "per_handover": per_ho}


def _attachment(x: dict, pbus: list, answers: dict, maars: dict) -> dict:
    """The new MAAR's discovery after ``x["t_move"]``: a PBU to every other MAAR, the right answers."""
    to, new = maars[x["to"]], prefix_text(x["new_prefix"])
    out = {"mn": x["mn"], "to": x["to"], "problems": [], "peers": []}
    messages = 0
    for name, addr in sorted(maars.items()):
        if addr == to:
            continue
        u = next((m for m in pbus if m.src == to and m.dst == addr and m.mn_id == x["mn_id"]
                  and x["t_move"] <= m.t <= x.get("t_end", float("inf")) and m.lifetime), None)
        row = {"maar": name}
        if u is None:
            out["problems"].append(f"no discovery PBU from {x['to']} to {name}")
            out["peers"].append(row)
            continue
        messages += 1
        row["pbu"] = u.brief()
        if u.hnp[:1] != [new] or u.serving_maar != [to]:
            out["problems"].append(f"PBU frame {u.frame} to {name}: HNP {u.hnp}, Serving MAAR {u.serving_maar}; "
                                   f"expected [{new}] and [{to}]")
        a = answers.get(u.frame)
        if a is not None:
            messages += 1
            row["pba"] = {**a.brief(), "anchored": a.anchored}
            anchors = name in x["previous"]
            want = ([prefix_text(x["previous"][name])], 0) if anchors else ([], 153)
            if (a.anchored, a.status) != want:
                out["problems"].append(f"PBA frame {a.frame} from {name}: status {a.status}, Anchored Prefix "
                                       f"{a.anchored}; expected {want[1]} and {want[0]}")
        out["peers"].append(row)
    out["messages"] = messages
    out["ok"] = not out["problems"]
    return out
