"""A DMM topology for Mininet: MAAR switches laid out as ryu-dmm's pipeline expects them.

    mn --custom mininet_topos/dmm.py --topo dmm,3,1 \
       --switch ovs,datapath=user,protocols=OpenFlow13 --controller remote,ip=127.0.0.1,port=6653

``dmm,MAARS,MNS``: switches ``maar1..N`` (datapath id = the number), a ``wan`` switch (standalone
learning switch) joining every MAAR's core port (OpenFlow port 1) to the correspondent ``cn``, and
MNs ``mn1..M`` on port 10+j of ``maar1``. The tunnel port (2) and the agent's internal port (3) are
added after start-up by ``add_dmm_ports(net)`` (``mn`` users: see docs/mininet.md).

Run as a script (Debian's python3, where Mininet lives) it builds the network, adds those ports,
waits until the controller has installed the pipeline's base flows, prints a JSON summary and stops:
``python3 mininet_topos/dmm.py MAARS MNS CONTROLLER_PORT``. Only ever run Mininet contained
(tests/test_mininet.py shows how): its clean-up kills processes by name.
"""
import json
import socket
import sys
import time

from mininet.net import Mininet
from mininet.node import OVSSwitch, RemoteController
from mininet.topo import Topo

CORE_PORT, TUNNEL_PORT, AGENT_PORT, FIRST_ACCESS_PORT = 1, 2, 3, 10


class DmmTopo(Topo):
    def build(self, maars=3, mns=1):
        wan = self.addSwitch("wan", failMode="standalone", dpid="00000000000000ff")
        cn = self.addHost("cn", ip=None)
        self.addLink(cn, wan)
        for i in range(1, int(maars) + 1):
            self.addSwitch(f"maar{i}", dpid=f"{i:016x}")
            self.addLink(wan, f"maar{i}", port2=CORE_PORT)
        for j in range(1, int(mns) + 1):
            mn = self.addHost(f"mn{j}", ip=None, mac=f"02:00:00:00:0a:{j:02x}")
            self.addLink(mn, "maar1", port2=FIRST_ACCESS_PORT + j)


def add_dmm_ports(net):
    """The flow-based tunnel port and the agent's internal port on every MAAR switch."""
    for sw in net.switches:
        if sw.name.startswith("maar"):
            i = sw.name[4:]
            sw.cmd(f"ovs-vsctl add-port {sw.name} m{i}-tun -- set interface m{i}-tun type=ip6gre "
                   f"options:remote_ip=flow options:key=flow ofport_request={TUNNEL_PORT}")
            sw.cmd(f"ovs-vsctl add-port {sw.name} m{i}-agt -- set interface m{i}-agt type=internal "
                   f"ofport_request={AGENT_PORT}")


class DmmController(RemoteController):
    """Mininet's remote controller, whose start-up check pipes ``telnet`` output through a UTF-8
    decoder: the OpenFlow HELLO our CMD sends at once (its xid is random bytes) can fail that decode
    and stop Mininet. This check only connects."""

    def checkListening(self):
        try:
            socket.create_connection((self.ip, self.port), timeout=2).close()
        except OSError:
            print(f"Unable to contact the remote controller at {self.ip}:{self.port}", file=sys.stderr)


topos = {"dmm": DmmTopo}


def main(maars, mns, port):
    net = Mininet(topo=DmmTopo(maars=maars, mns=mns), switch=OVSSwitch, build=False, autoSetMacs=False,
                  controller=None)
    net.addController("cmd", controller=DmmController, ip="127.0.0.1", port=port)
    for sw in net.topo.switches():
        net.topo.setNodeInfo(sw, dict(net.topo.nodeInfo(sw), datapath="user", protocols="OpenFlow13"))
    net.build()
    net.start()
    add_dmm_ports(net)
    counts = {}
    deadline = time.time() + 30
    while time.time() < deadline:
        counts = {sw.name: len([line for line in sw.dpctl("dump-flows", "-O", "OpenFlow13").splitlines()
                                if "priority=" in line])
                  for sw in net.switches if sw.name.startswith("maar")}
        if counts and all(n >= 6 for n in counts.values()):
            break
        time.sleep(0.2)
    ports = {sw.name: sorted(int(p) for p in sw.ports.values()) for sw in net.switches}
    print(json.dumps({"flows": counts, "ports": ports, "hosts": [h.name for h in net.hosts]}), flush=True)
    net.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
