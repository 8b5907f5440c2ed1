"""ryu-dmm: network-based Distributed Mobility Management (RFC 8885) for Ryu and Open vSwitch."""
import ryu_dmm_eventlet_compat

ryu_dmm_eventlet_compat.install()  # also when the .pth hook is absent (e.g. PYTHONPATH=. from a checkout)

__version__ = "0.1.0"
