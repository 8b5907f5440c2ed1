"""The flow mirror's effects as OpenFlow 1.3 messages, and flow stats back in the mirror's terms.

The only module that knows both the renderer's ``Flow`` and the wire: the mirror decides, this
module spells it. ``encode`` is what the CMD sends: one effect's messages as one buffer, packed by
``ofwire`` (plain struct; the hot path), for ``Datapath.send``. ``messages`` spells the same
messages as Ryu objects (for ``send_msg``; tests give it a fake switch that applies the serialized
messages): the reference ``encode`` is checked against byte for byte (tests/test_ofwire.py).
Replies are parsed by Ryu (``installed``).
"""
from __future__ import annotations

import ipaddress

from .flowmirror import ApplyDiff, ReplaceFlows, RequestFlowStats
from ryu.ofproto import ofproto_v1_3, ofproto_v1_3_parser

from . import ofwire
from .pipeline import Flow, InstalledFlow, Pipeline, action_key, match_key
from .wire import mac_text

ALL_COOKIES = ofwire.ALL_COOKIES


def _value(field: str, value):
    """A match or set-field value as Ryu's OFPMatch/OFPActionSetField take it."""
    if isinstance(value, bytes):
        return mac_text(value)
    if field in ("ipv6_src", "ipv6_dst"):
        net = ipaddress.IPv6Network(value)
        return str(net.network_address) if net.prefixlen == 128 else (str(net.network_address), str(net.netmask))
    return value


def _match(parser, items):
    return parser.OFPMatch(**{k: _value(k, v) for k, v in items})


def flow_mod(dp, pipeline: Pipeline, flow: Flow):
    ofp, parser = dp.ofproto, dp.ofproto_parser
    actions = []
    for kind, arg in flow.actions:
        if kind == "output":
            port = ofp.OFPP_CONTROLLER if arg == "CONTROLLER" else int(arg)
            actions.append(parser.OFPActionOutput(port, ofp.OFPCML_NO_BUFFER))
        else:
            field = kind.split(":", 1)[1]
            actions.append(parser.OFPActionSetField(**{field: _value(field, arg)}))
    inst = [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)] if actions else []
    if flow.goto is not None:
        inst.append(parser.OFPInstructionGotoTable(pipeline.table(flow.goto).id))
    return parser.OFPFlowMod(dp, cookie=flow.cookie, table_id=pipeline.table(flow.table).id,
                             command=ofp.OFPFC_ADD, priority=flow.priority, match=_match(parser, flow.match),
                             instructions=inst)


def delete_cookie(dp, cookie: int):
    ofp, parser = dp.ofproto, dp.ofproto_parser
    return parser.OFPFlowMod(dp, cookie=cookie, cookie_mask=ALL_COOKIES, table_id=ofp.OFPTT_ALL,
                             command=ofp.OFPFC_DELETE, out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
                             match=parser.OFPMatch())


def delete_strict(dp, entry: InstalledFlow):
    ofp, parser = dp.ofproto, dp.ofproto_parser
    return parser.OFPFlowMod(dp, cookie=entry.cookie, cookie_mask=ALL_COOKIES, table_id=entry.table_id,
                             command=ofp.OFPFC_DELETE_STRICT, priority=entry.priority,
                             match=_match(parser, entry.match), out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY)


def _barrier(dp, xid: int):
    msg = dp.ofproto_parser.OFPBarrierRequest(dp)
    msg.xid = xid  # the mirror's own id: its reply is matched to this push and nothing else
    return msg


def messages(dp, pipeline: Pipeline, effect) -> list:
    """The messages that carry out one of the mirror's switch effects, in order."""
    kind = type(effect)
    if kind is ReplaceFlows:
        return [delete_cookie(dp, effect.cookie)] + [flow_mod(dp, pipeline, f) for f in effect.flows] + \
            [_barrier(dp, effect.barrier)]
    if kind is ApplyDiff:
        return [delete_strict(dp, e) for e in effect.delete] + [flow_mod(dp, pipeline, f) for f in effect.add] + \
            [_barrier(dp, effect.barrier)]
    if kind is RequestFlowStats:
        ofp, parser = dp.ofproto, dp.ofproto_parser
        msg = parser.OFPFlowStatsRequest(dp, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, 0, 0, parser.OFPMatch())
        msg.xid = effect.xid
        return [msg]
    raise TypeError(f"not a switch effect: {effect!r}")


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
        return ofwire.flow_stats_request(effect.xid)
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
