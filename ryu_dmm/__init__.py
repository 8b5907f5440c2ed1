"""ryu-dmm: network-based Distributed Mobility Management (RFC 8885) for Ryu and Open vSwitch."""

__version__ = "0.1.0"
