"""Lab and development tools, not used by the CMD or the MAAR agent (install with the ``[lab]`` extra).

``python -m ryu_dmm.lab`` (``make lab``) builds the real lab: every MAAR a network namespace with its
own Open vSwitch, agent and underlay address; the CMD under ``ryu-manager``; MNs and a correspondent
node as Linux hosts (``__main__``, ``net``, ``ovs``, ``topology``, ``traffic``).
``python -m ryu_dmm.lab.sigdemo`` (``make demo``) runs the signalling alone, without switches.
``ofreference`` builds the CMD's OpenFlow messages as Ryu objects, the reference its struct
encoder is tested against. ``wire_verdict`` judges the lab's signalling capture with tshark and the RFC 8885 plugin
(``python -m ryu_dmm.lab.wire_verdict OUT``). ``scapy_layers``, ``packets`` (IP/UDP framing, pcap)
and ``samples`` (one message of every kind) serve the wire tests, captures and the codec benchmark.
"""
