"""scapy layers for the PMIPv6 (22-28) and RFC 8885 (65-70) mobility options and the RFC 5847
Heartbeat message (MH type 13) scapy lacks.

Importing this module registers them with scapy's Mobility Header dissector, so that
``IPv6()/MIP6MH_BU(options=[...])`` builds and ``IPv6(raw)`` dissects complete PBU/PBA/Heartbeat
packets.
For tests, lab tools and traffic crafting; the signalling hot path uses ``ryu_dmm.wire`` instead.
"""
from scapy.fields import (
    BitField, ByteEnumField, ByteField, FieldLenField, FlagsField, IntField, IP6Field, LongField, MACField,
    ShortField, StrLenField, XShortField,
)
from scapy.layers import inet6
from scapy.layers.inet6 import IPv6, MIP6OptUnknown, _MIP6OptAlign, _MobilityHeader, _OptionsField, _PhantomAutoPadField

from ..wire import AccessTechnology, HandoffIndicator, OptionType
from ..wire.constants import MH_HEARTBEAT

_NAMES = {int(t): t.name.replace("_", " ").title() for t in OptionType}


def _prefix_fields(otype: int) -> list:
    return [ByteEnumField("otype", otype, _NAMES), ByteField("olen", 18), ByteField("reserved", 0),
            ByteField("plen", 64), IP6Field("prefix", "::")]


class MIP6OptHomeNetworkPrefix(_MIP6OptAlign):
    name = "PMIPv6 Option - Home Network Prefix"
    fields_desc = _prefix_fields(OptionType.HOME_NETWORK_PREFIX)
    x, y = 8, 4


class MIP6OptHandoffIndicator(_MIP6OptAlign):
    name = "PMIPv6 Option - Handoff Indicator"
    fields_desc = [ByteEnumField("otype", OptionType.HANDOFF_INDICATOR, _NAMES), ByteField("olen", 2),
                   ByteField("reserved", 0),
                   ByteEnumField("hi", 1, {int(v): v.name for v in HandoffIndicator})]
    x, y = 0, 0


class MIP6OptAccessTechType(_MIP6OptAlign):
    name = "PMIPv6 Option - Access Technology Type"
    fields_desc = [ByteEnumField("otype", OptionType.ACCESS_TECHNOLOGY_TYPE, _NAMES), ByteField("olen", 2),
                   ByteField("reserved", 0),
                   ByteEnumField("att", 3, {int(v): v.name for v in AccessTechnology})]
    x, y = 0, 0


class MIP6OptMNLinkLayerId(_MIP6OptAlign):
    name = "PMIPv6 Option - Mobile Node Link-layer Identifier"
    fields_desc = [ByteEnumField("otype", OptionType.MN_LINK_LAYER_ID, _NAMES),
                   FieldLenField("olen", None, length_of="lli", fmt="B", adjust=lambda pkt, x: x + 2),
                   ShortField("reserved", 0),
                   StrLenField("lli", b"\x00" * 6, length_from=lambda pkt: pkt.olen - 2)]
    x, y = 8, 2


class MIP6OptLinkLocalAddress(_MIP6OptAlign):
    name = "PMIPv6 Option - Link-local Address"
    fields_desc = [ByteEnumField("otype", OptionType.LINK_LOCAL_ADDRESS, _NAMES), ByteField("olen", 16),
                   IP6Field("lla", "::")]
    x, y = 8, 6


class MIP6OptTimestamp(_MIP6OptAlign):
    name = "PMIPv6 Option - Timestamp"
    fields_desc = [ByteEnumField("otype", OptionType.TIMESTAMP, _NAMES), ByteField("olen", 8),
                   LongField("timestamp", 0)]
    x, y = 8, 2


class MIP6OptRestartCounter(_MIP6OptAlign):
    name = "PMIPv6 Option - Restart Counter"
    fields_desc = [ByteEnumField("otype", OptionType.RESTART_COUNTER, _NAMES), ByteField("olen", 4),
                   IntField("counter", 0)]
    x, y = 4, 2


class MIP6OptAnchoredPrefix(_MIP6OptAlign):
    name = "DMM Option - Anchored Prefix"
    fields_desc = _prefix_fields(OptionType.ANCHORED_PREFIX)
    x, y = 8, 4


class MIP6OptLocalPrefix(_MIP6OptAlign):
    name = "DMM Option - Local Prefix"
    fields_desc = _prefix_fields(OptionType.LOCAL_PREFIX)
    x, y = 8, 4


class MIP6OptPreviousMAAR(_MIP6OptAlign):
    name = "DMM Option - Previous MAAR"
    fields_desc = [ByteEnumField("otype", OptionType.PREVIOUS_MAAR, _NAMES), ByteField("olen", 34),
                   ByteField("reserved", 0), ByteField("plen", 64), IP6Field("pmaar", "::"),
                   IP6Field("prefix", "::")]
    x, y = 8, 4


class MIP6OptServingMAAR(_MIP6OptAlign):
    name = "DMM Option - Serving MAAR"
    fields_desc = [ByteEnumField("otype", OptionType.SERVING_MAAR, _NAMES), ByteField("olen", 16),
                   IP6Field("smaar", "::")]
    x, y = 8, 6


class MIP6OptDLIFLinkLocal(_MIP6OptAlign):
    name = "DMM Option - DLIF Link-Local Address"
    fields_desc = [ByteEnumField("otype", OptionType.DLIF_LINK_LOCAL_ADDRESS, _NAMES), ByteField("olen", 16),
                   IP6Field("lla", "::")]
    x, y = 8, 6


class MIP6OptDLIFLinkLayer(_MIP6OptAlign):
    name = "DMM Option - DLIF Link-Layer Address"
    fields_desc = [ByteEnumField("otype", OptionType.DLIF_LINK_LAYER_ADDRESS, _NAMES), ByteField("olen", 8),
                   ShortField("reserved", 0), MACField("lladdr", "00:00:00:00:00:00")]
    x, y = 0, 0


class MIP6MH_HB(_MobilityHeader):  # noqa: N801 - scapy's naming of Mobility Header layers
    """RFC 5847 §3.1 Heartbeat: 14 reserved bits, the U and R flags, a 32-bit sequence number."""

    name = "IPv6 Mobility Header - Heartbeat"
    fields_desc = [ByteEnumField("nh", 59, inet6.ipv6nh), ByteField("len", None),
                   ByteEnumField("mhtype", MH_HEARTBEAT, inet6.mhtypes), ByteField("res", 0),
                   XShortField("cksum", None), BitField("reserved", 0, 14), FlagsField("flags", 0, 2, "RU"),
                   IntField("seq", 0), _PhantomAutoPadField("autopad", 1),
                   _OptionsField("options", [], MIP6OptUnknown, 12, length_from=lambda pkt: 8 * pkt.len - 4)]
    overload_fields = {IPv6: {"nh": 135}}


LAYERS = (
    MIP6OptHomeNetworkPrefix, MIP6OptHandoffIndicator, MIP6OptAccessTechType, MIP6OptMNLinkLayerId,
    MIP6OptLinkLocalAddress, MIP6OptTimestamp, MIP6OptRestartCounter, MIP6OptAnchoredPrefix, MIP6OptLocalPrefix,
    MIP6OptPreviousMAAR, MIP6OptServingMAAR, MIP6OptDLIFLinkLocal, MIP6OptDLIFLinkLayer,
)
for _layer in LAYERS:
    inet6.moboptcls[_layer.fields_desc[0].default] = _layer
    inet6._mobopttypes[_layer.fields_desc[0].default] = _layer.name
inet6.mhtypes[MH_HEARTBEAT] = "Heartbeat"
inet6._mip6_mhtype2cls[MH_HEARTBEAT] = MIP6MH_HB
