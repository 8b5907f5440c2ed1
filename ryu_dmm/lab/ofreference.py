"""The mirror's switch effects as Ryu OpenFlow 1.3 message objects: the reference the CMD's struct
encoder (``ofsync.encode``, ``ofwire``) is checked against byte for byte (tests/test_ofwire.py), and
what tests hand the fake switch message by message. Not used by the CMD itself (too slow for the hot
path: benchmarks/cmd_switches.py).
"""
from __future__ import annotations

import ipaddress

from ..flowmirror import ApplyDiff, ReplaceFlows, RequestFlowStats
from ..ofwire import ALL_COOKIES
from ..pipeline import Flow, InstalledFlow, Pipeline
from ..wire import mac_text


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
        table = ofp.OFPTT_ALL if effect.table_id is None else effect.table_id
        msg = parser.OFPFlowStatsRequest(dp, 0, table, ofp.OFPP_ANY, ofp.OFPG_ANY, 0, 0, parser.OFPMatch())
        msg.xid = effect.xid
        return [msg]
    raise TypeError(f"not a switch effect: {effect!r}")
