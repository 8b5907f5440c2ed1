"""Messages of every kind, shared by the wire tests and the codec benchmark."""
from ..wire import (
    AccessTechnologyTypeOption, AnchoredPrefix, BindingAck, BindingUpdate, DlifLinkLayerAddress,
    DlifLinkLocalAddress, HandoffIndicatorOption, Heartbeat, HomeNetworkPrefix, LinkLocalAddress, LocalPrefix,
    MNLinkLayerIdentifier, MobileNodeIdentifier, Prefix, PreviousMaar, RestartCounter, ServingMaar, Timestamp,
)
from ..wire.constants import BU_A, BU_D, BU_P

PREF1 = Prefix.parse("2001:db8:1:1::/64")
PREF2 = Prefix.parse("2001:db8:2:7::/64")
MAC = bytes.fromhex("0200000000aa")
TS = Timestamp(0x6553F100_1234)

PBU = BindingUpdate(7, 3600, (
    MobileNodeIdentifier.nai("mn1@dmm.example"), HomeNetworkPrefix(PREF2), HandoffIndicatorOption(3),
    AccessTechnologyTypeOption(3), MNLinkLayerIdentifier(MAC), LinkLocalAddress("fe80::aa"), TS,
))
PBU_TO_PMAAR = BindingUpdate(8, 3600, (
    MobileNodeIdentifier.nai("mn1@dmm.example"), HomeNetworkPrefix(PREF1), HandoffIndicatorOption(3),
    AccessTechnologyTypeOption(3), TS, ServingMaar("2001:db8:ff::2"),
))
PBA_WITH_PMAARS = BindingAck(0, 7, 3600, (
    MobileNodeIdentifier.nai("mn1@dmm.example"), HomeNetworkPrefix(PREF2), HandoffIndicatorOption(3),
    AccessTechnologyTypeOption(3), TS, PreviousMaar("2001:db8:ff::1", PREF1),
    PreviousMaar("2001:db8:ff::3", Prefix.parse("2001:db8:3::/48")),
    DlifLinkLocalAddress("fe80::1"), DlifLinkLayerAddress(MAC), AnchoredPrefix(PREF1), LocalPrefix(PREF2),
))
# What the CMD sends the S-MAAR after a handover with one P-MAAR.
PBA_TYPICAL = BindingAck(0, 7, 3600, (
    MobileNodeIdentifier.nai("mn1@dmm.example"), HomeNetworkPrefix(PREF2), HandoffIndicatorOption(3),
    AccessTechnologyTypeOption(3), TS, PreviousMaar("2001:db8:ff::1", PREF1),
))
PBA_REJECT = BindingAck(155, 9, 0, (MobileNodeIdentifier.nai("mn1@dmm.example"),))
DEREG = BindingUpdate(10, 0, PBU.options, BU_A | BU_P | BU_D)
# RFC 5847 Heartbeats: a request and its answer, each with the sender's Restart Counter; the sequence
# number and counter use all 32 bits.
HB_REQUEST = Heartbeat(0x89ABCDEF, options=(RestartCounter(0x12345678),))
HB_RESPONSE = Heartbeat(0x89ABCDEF, response=True, options=(RestartCounter(0xFEDCBA98),))

ALL = {"pbu": PBU, "pbu_to_pmaar": PBU_TO_PMAAR, "pba_pmaars": PBA_WITH_PMAARS, "pba_typical": PBA_TYPICAL,
       "pba_reject": PBA_REJECT,
       "dereg": DEREG, "hb_request": HB_REQUEST, "hb_response": HB_RESPONSE}
