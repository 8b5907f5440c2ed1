"""The real lab: every MAAR a network namespace with its own Open vSwitch, agent and underlay
address; the CMD under ``ryu-manager``; MNs and a correspondent node as Linux hosts (``make lab``)."""
