"""The flow mirror's effects as OpenFlow 1.3 messages, and flow stats back in the mirror's terms.

The mirror decides, this module spells it. ``encode`` is what the CMD sends: one effect's messages
as one buffer, packed by ``ofwire`` (plain struct; the hot path), for ``Datapath.send``. The same
messages as Ryu objects, the reference ``encode`` is checked against byte for byte, are a tool for
tests and benchmarks (``ryu_dmm.lab.ofreference``). Replies are parsed by Ryu (``installed``).
"""
from __future__ import annotations

import ipaddress

from .flowmirror import ApplyDiff, ReplaceFlows, RequestFlowStats
from . import ofwire
from .pipeline import InstalledFlow, Pipeline, action_key, match_key
from .runtime import ofproto_v1_3, ofproto_v1_3_parser



def encode(pipeline: Pipeline, effect) -> bytes:
    """The bytes that carry out one of the mirror's switch effects: its messages in order, for one
    write. Every message of a push carries the xid the mirror chose for its barrier (an error the
    switch sends back names the push); a stats request, the mirror's xid."""
    kind = type(effect)
    if kind is ReplaceFlows:
        x = effect.barrier
        return b"".join([ofwire.delete_cookie(x, effect.cookie), *_adds(pipeline, x, effect.flows), ofwire.barrier(x)])
    if kind is ApplyDiff:
        x = effect.barrier
        return b"".join([*(ofwire.delete_strict(x, e) for e in effect.delete), *_adds(pipeline, x, effect.add),
                         ofwire.barrier(x)])
    if kind is RequestFlowStats:
        return ofwire.flow_stats_request(effect.xid, ofwire.OFPTT_ALL if effect.table_id is None else effect.table_id)
    raise TypeError(f"not a switch effect: {effect!r}")


def _adds(pipeline: Pipeline, xid: int, flows) -> list:
    ids = {t.name: t.id for t in pipeline.tables}
    try:
        return [ofwire.flow_add(xid, ids[f.table], None if f.goto is None else ids[f.goto], f) for f in flows]
    except KeyError as exc:
        raise ValueError(f"pipeline {pipeline.name} has no table {exc.args[0]!r}") from None


def _from_ofp(field: str, value):
    if field in ("ipv6_src", "ipv6_dst") and isinstance(value, tuple):  # masked: (address, mask)
        return f"{value[0]}/{bin(int(ipaddress.IPv6Address(value[1]))).count('1')}"
    return value


def _actions(parser, ofp, instructions) -> tuple:
    out, goto = [], ()
    for inst in instructions:
        if isinstance(inst, parser.OFPInstructionGotoTable):
            goto = (("goto", inst.table_id),)
            continue
        for a in getattr(inst, "actions", ()):
            if isinstance(a, parser.OFPActionOutput):
                out.append(("output", "CONTROLLER" if a.port == ofp.OFPP_CONTROLLER else a.port))
            elif isinstance(a, parser.OFPActionSetField):
                out.append(action_key(f"set_field:{a.key}", a.value))
            else:
                out.append((type(a).__name__, None))  # nothing we render: never equal to a wanted flow
    return tuple(out) + goto


def installed(stats, parser=ofproto_v1_3_parser, ofp=ofproto_v1_3) -> tuple[InstalledFlow, ...]:
    """Ryu's OFPFlowStats entries as the mirror compares them with what it wants."""
    return tuple(InstalledFlow(st.table_id, st.priority, st.cookie,
                               match_key((k, _from_ofp(k, v)) for k, v in st.match.items()),
                               _actions(parser, ofp, st.instructions), st.packet_count)
                 for st in stats)
