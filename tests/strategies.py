"""hypothesis strategies for wire values."""
from hypothesis import strategies as st

from ryu_dmm.wire import (
    AccessTechnologyTypeOption, AnchoredPrefix, BindingAck, BindingUpdate, DlifLinkLayerAddress,
    DlifLinkLocalAddress, HandoffIndicatorOption, HomeNetworkPrefix, LinkLocalAddress, LocalPrefix,
    Heartbeat, MNLinkLayerIdentifier, MobileNodeIdentifier, Prefix, PreviousMaar, RestartCounter, ServingMaar,
    Timestamp, UnknownOption, unpack6,
)

addresses = st.binary(min_size=16, max_size=16).map(unpack6)
prefixes = st.builds(Prefix, st.binary(min_size=16, max_size=16), st.integers(0, 128))
u8 = st.integers(0, 255)

options = st.one_of(
    st.builds(MobileNodeIdentifier, st.binary(min_size=1, max_size=60), u8),
    st.builds(HomeNetworkPrefix, prefixes),
    st.builds(AnchoredPrefix, prefixes),
    st.builds(LocalPrefix, prefixes),
    st.builds(HandoffIndicatorOption, u8),
    st.builds(AccessTechnologyTypeOption, u8),
    st.builds(MNLinkLayerIdentifier, st.binary(min_size=1, max_size=16)),
    st.builds(DlifLinkLayerAddress, st.binary(min_size=1, max_size=16)),
    st.builds(LinkLocalAddress, addresses),
    st.builds(ServingMaar, addresses),
    st.builds(DlifLinkLocalAddress, addresses),
    st.builds(Timestamp, st.integers(0, 2**64 - 1)),
    st.builds(PreviousMaar, addresses, prefixes),
    st.builds(RestartCounter, st.integers(0, 2**32 - 1)),
    st.builds(UnknownOption, st.integers(2, 255).filter(lambda t: t not in {8, 22, 23, 24, 25, 26, 27, 28, 65, 66, 67, 68, 69, 70}),
              st.binary(max_size=40)),
)
lifetimes = st.integers(0, 0xFFFF).map(lambda units: units * 4)
option_sets = st.lists(options, max_size=12).map(tuple)

binding_updates = st.builds(BindingUpdate, st.integers(0, 0xFFFF), lifetimes, option_sets, st.integers(0, 0xFFFF))
binding_acks = st.builds(BindingAck, u8, st.integers(0, 0xFFFF), lifetimes, option_sets, u8)
heartbeats = st.builds(Heartbeat, st.integers(0, 2**32 - 1), st.booleans(), st.booleans(), option_sets)
messages = st.one_of(binding_updates, binding_acks, heartbeats)
