"""Rendered flows onto real switches: Flow -> OFPFlowMod, per-MN replacement, reconciliation.

Kept out of the Ryu app module so the app stays a thin shell: this module knows OpenFlow 1.3
messages, the app knows when to call it.
"""
from __future__ import annotations

import ipaddress
from typing import Iterable

from .pipeline import Flow, Pipeline

ALL_COOKIES = 0xFFFF_FFFF_FFFF_FFFF


def _value(field: str, value):
    if isinstance(value, bytes):
        return ":".join(f"{b:02x}" for b in value)
    if field in ("ipv6_src", "ipv6_dst"):
        net = ipaddress.IPv6Network(value)
        return (str(net.network_address), str(net.netmask))
    return value


def match_of(parser, flow: Flow):
    return parser.OFPMatch(**{k: _value(k, v) for k, v in flow.match})


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
                             command=ofp.OFPFC_ADD, priority=flow.priority, match=match_of(parser, flow),
                             instructions=inst)


def delete_cookie(dp, cookie: int):
    ofp, parser = dp.ofproto, dp.ofproto_parser
    return parser.OFPFlowMod(dp, cookie=cookie, cookie_mask=ALL_COOKIES, table_id=ofp.OFPTT_ALL,
                             command=ofp.OFPFC_DELETE, out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
                             match=parser.OFPMatch())


def replace(dp, pipeline: Pipeline, cookie: int, flows: Iterable[Flow]) -> int:
    """Replace the group of flows tagged ``cookie`` by ``flows``, then a barrier. Returns the xid
    of the barrier, whose reply confirms the switch has applied everything before it."""
    dp.send_msg(delete_cookie(dp, cookie))
    for f in flows:
        dp.send_msg(flow_mod(dp, pipeline, f))
    barrier = dp.ofproto_parser.OFPBarrierRequest(dp)
    dp.set_xid(barrier)
    dp.send_msg(barrier)
    return barrier.xid


def key(table_id: int, priority: int, cookie: int, match) -> tuple:
    return table_id, priority, cookie, tuple(sorted((k, str(v)) for k, v in match.items()))


def reconcile(dp, pipeline: Pipeline, wanted: list[Flow], installed_stats) -> tuple[int, int]:
    """Given the switch's flow stats, delete what no binding wants and add what is missing.
    Returns (deleted, added)."""
    ofp, parser = dp.ofproto, dp.ofproto_parser
    wanted_keys = {key(pipeline.table(f.table).id, f.priority, f.cookie, match_of(parser, f)): f for f in wanted}
    present = set()
    deleted = 0
    for st in installed_stats:
        k = key(st.table_id, st.priority, st.cookie, st.match)
        if k in wanted_keys:
            present.add(k)
            continue
        dp.send_msg(parser.OFPFlowMod(dp, cookie=st.cookie, cookie_mask=ALL_COOKIES, table_id=st.table_id,
                                      command=ofp.OFPFC_DELETE_STRICT, priority=st.priority, match=st.match,
                                      out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY))
        deleted += 1
    added = 0
    for k, f in wanted_keys.items():
        if k not in present:
            dp.send_msg(flow_mod(dp, pipeline, f))
            added += 1
    dp.send_msg(parser.OFPBarrierRequest(dp))
    return deleted, added
