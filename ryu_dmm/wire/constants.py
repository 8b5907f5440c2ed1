"""IANA numbers, flags, status codes and timers of PMIPv6 (RFC 5213/5844/5847) and DMM (RFC 8885), and
the Ethernet/ICMPv6 numbers the switch pipeline and the agent's Neighbour Discovery share."""
from enum import IntEnum

IPPROTO_MH = 135
IPPROTO_NONE = 59
PMIP6_CNTL_PORT = 5436

ETH_IPV6 = 0x86DD  # EtherType
ICMPV6 = 58  # IPv6 next header
ND_RS, ND_RA, ND_NS, ND_NA = 133, 134, 135, 136  # ICMPv6 types of Neighbour Discovery (RFC 4861)

MH_BINDING_UPDATE = 5
MH_BINDING_ACK = 6
MH_HEARTBEAT = 13  # RFC 5847 §3.1

# Heartbeat flags: the two lowest bits of the 16-bit reserved field after the MH header (RFC 5847 §3.1).
HB_U = 0x0002  # unsolicited
HB_R = 0x0001  # response

# Binding Update flags (16-bit field after the sequence number).
BU_A = 0x8000
BU_H = 0x4000
BU_L = 0x2000
BU_K = 0x1000
BU_M = 0x0800
BU_R = 0x0400
BU_P = 0x0200
BU_D = 0x0010  # RFC 8885 §4.1: PBU sent by a MAAR or the CMD

# Binding Acknowledgement flags (8-bit field after the status).
BA_K = 0x80
BA_R = 0x40
BA_P = 0x20
BA_D = 0x02  # RFC 8885 §4.2

LIFETIME_UNIT = 4  # seconds per lifetime unit on the wire
MAX_LIFETIME = 0xFFFF * LIFETIME_UNIT


class OptionType(IntEnum):
    PAD1 = 0
    PADN = 1
    MN_IDENTIFIER = 8
    HOME_NETWORK_PREFIX = 22
    HANDOFF_INDICATOR = 23
    ACCESS_TECHNOLOGY_TYPE = 24
    MN_LINK_LAYER_ID = 25
    LINK_LOCAL_ADDRESS = 26
    TIMESTAMP = 27
    RESTART_COUNTER = 28  # RFC 5847 §3.2
    ANCHORED_PREFIX = 65
    LOCAL_PREFIX = 66
    PREVIOUS_MAAR = 67
    SERVING_MAAR = 68
    DLIF_LINK_LOCAL_ADDRESS = 69
    DLIF_LINK_LAYER_ADDRESS = 70


MNID_SUBTYPE_NAI = 1


class HandoffIndicator(IntEnum):
    NEW_INTERFACE = 1
    BETWEEN_INTERFACES = 2
    BETWEEN_MAGS = 3
    UNKNOWN = 4
    NO_HANDOFF = 5


class AccessTechnology(IntEnum):
    VIRTUAL = 1
    PPP = 2
    IEEE_802_3 = 3
    IEEE_802_11 = 4
    IEEE_802_16E = 5


class Status(IntEnum):
    """PBA status codes (RFC 6275 / RFC 5213); values below 128 mean accepted."""

    ACCEPTED = 0
    REASON_UNSPECIFIED = 128
    ADMINISTRATIVELY_PROHIBITED = 129
    INSUFFICIENT_RESOURCES = 130
    SEQUENCE_NUMBER_OUT_OF_WINDOW = 135  # RFC 6275, for PBUs without a timestamp
    PROXY_REG_NOT_ENABLED = 152
    NOT_LMA_FOR_THIS_MOBILE_NODE = 153
    MAG_NOT_AUTHORIZED_FOR_PROXY_REG = 154
    NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX = 155
    TIMESTAMP_MISMATCH = 156
    TIMESTAMP_LOWER_THAN_PREV_ACCEPTED = 157
    MISSING_HOME_NETWORK_PREFIX_OPTION = 158
    BCE_PBU_PREFIX_SET_DO_NOT_MATCH = 159
    MISSING_MN_IDENTIFIER_OPTION = 160
    MISSING_HANDOFF_INDICATOR_OPTION = 161
    MISSING_ACCESS_TECH_TYPE_OPTION = 162


def accepted(status: int) -> bool:
    return status < 128


# Timers and constants (RFC 5213 §9 and §6.9.4), in seconds.
MIN_DELAY_BEFORE_BCE_DELETE = 10.0
MAX_DELAY_BEFORE_NEW_BCE_ASSIGN = 1.5
TIMESTAMP_VALIDITY_WINDOW = 0.3
INITIAL_BINDACK_TIMEOUT = 1.0
MAX_BINDACK_TIMEOUT = 32.0
MAX_UPDATE_RATE = 3  # PBUs per second per peer

# Heartbeat configuration variables (RFC 5847 §5): seconds between requests (at least 30 s on a real
# network), and unanswered requests after which a peer is unreachable.
HEARTBEAT_INTERVAL = 60.0
MIN_HEARTBEAT_INTERVAL = 30.0
MISSING_HEARTBEATS_ALLOWED = 3
