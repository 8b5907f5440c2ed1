"""What the CMD reads from its switches about the MNs on their access ports, in plain ``struct``.

A packet-in: the pipeline copies the controller only frames from access ports (an MN's RS, NS
including DAD probes, MLD reports, and any IPv6 frame no uplink flow routes:
``openflow_pipelines/dmm_edge.toml``, ``[punt]``), so the source MAC of any of them says which port
that MN is on now. A port status: an access port that came up is asked who is there (an MLD query),
because OVS's port status names the port, not the MN behind it.
"""
from __future__ import annotations

from typing import Optional

from .agent import nd

OFPPR_ADD, OFPPR_MODIFY = 0, 2  # OpenFlow 1.3 port-status reasons
OFPPS_LINK_DOWN, OFPPC_PORT_DOWN = 1, 1  # ofp_port state and config bits


def mn_source(frame: bytes) -> Optional[bytes]:
    """The MAC of the MN that sent ``frame``; None if the frame has no unicast source (counted as
    packet_in.unparsed)."""
    return nd.unicast_source(frame)


def access_ports(domain, settings, maar: str) -> tuple[int, ...]:
    """The access ports configured for the switch of the MAAR at address ``maar``."""
    for sw in settings.switches:
        if domain.maar(sw.maar).address == maar:
            return tuple(sw.access_ports)
    return ()


def port_up_query(domain, settings, maar: str, reason: int, port_no: int, state: int, config: int) -> Optional[bytes]:
    """An MLD General Query from the MAAR's own MAC and link-local for an access port that was added
    or changed and is now up, else None. Every MN there answers with an MLD Report within 1 ms, which
    the pipeline copies to the agent and to us: its attachment, detected without waiting for it."""
    if reason not in (OFPPR_ADD, OFPPR_MODIFY) or state & OFPPS_LINK_DOWN or config & OFPPC_PORT_DOWN:
        return None
    if port_no not in access_ports(domain, settings, maar):
        return None
    info = domain.by_address()[maar]
    return nd.mld_query(info.mac, info.link_local)
