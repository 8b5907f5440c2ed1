"""PMIPv6 (RFC 5213, 5847) / RFC 8885 wire codec: pure ``struct``, no I/O. Import names from here."""
from .addr import Prefix, canonical6, mac_text, pack6, parse_mac, peer_address, unpack6
from .constants import AccessTechnology, HandoffIndicator, OptionType, Status, accepted
from .errors import DecodeError
from .messages import BindingAck, BindingUpdate, Heartbeat, Message, decode, encode, encode_mh, missing_mandatory
from .options import (
    AccessTechnologyTypeOption, AnchoredPrefix, DlifLinkLayerAddress, DlifLinkLocalAddress,
    HandoffIndicatorOption, HomeNetworkPrefix, LinkLocalAddress, LocalPrefix, MNLinkLayerIdentifier,
    MobileNodeIdentifier, Option, PreviousMaar, RestartCounter, ServingMaar, Timestamp, UnknownOption,
    show_mn_id,
)

__all__ = [
    "AccessTechnology", "AccessTechnologyTypeOption", "AnchoredPrefix", "BindingAck", "BindingUpdate",
    "DecodeError", "DlifLinkLayerAddress", "DlifLinkLocalAddress", "HandoffIndicator",
    "HandoffIndicatorOption", "Heartbeat", "HomeNetworkPrefix", "LinkLocalAddress", "LocalPrefix",
    "MNLinkLayerIdentifier", "Message", "MobileNodeIdentifier", "Option", "OptionType", "Prefix",
    "PreviousMaar", "RestartCounter", "ServingMaar", "Status", "Timestamp", "UnknownOption", "accepted", "canonical6",
    "decode", "encode", "encode_mh", "mac_text", "missing_mandatory", "pack6", "parse_mac", "peer_address", "show_mn_id", "unpack6",
]
