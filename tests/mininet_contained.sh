#!/usr/bin/env bash
# Runs inside `unshare --pid --fork --mount-proc --mount --net`: a private OVS on private run/config
# folders and a private /tmp, the CMD, then the Mininet topology. Mininet's clean-up can only reach
# what lives in these namespaces. Arguments: REPO VENV_BIN. The summary is the last line of stdout.
set -eu
repo=$1 bin=$2
mount --make-rprivate /
mount --bind "$repo" /mnt  # keep the checkout (and its venv) reachable at its own path below
for d in /var/run/openvswitch /etc/openvswitch /var/log/openvswitch /tmp; do
    mkdir -p "$d"; mount -t tmpfs tmpfs "$d"
done
if [ ! -d "$bin" ]; then  # the checkout lived under /tmp: put it back where its venv expects it
    mkdir -p "$repo"; mount --bind /mnt "$repo"
fi
ip link set lo up
ovsdb-tool create /etc/openvswitch/conf.db /usr/share/openvswitch/vswitch.ovsschema
ovsdb-server --remote=punix:/var/run/openvswitch/db.sock --pidfile --detach --log-file 2>/dev/null
ovs-vsctl --no-wait init
ovs-vswitchd --pidfile --detach --log-file 2>/dev/null
cat > /tmp/domain.ini <<EOT
[DEFAULT]
wsapi_host = 127.0.0.1
wsapi_port = 8080
[dmm]
cmd_address = 2001:db8:ff::100
listen = ::1
port = 15436
EOT
for i in 1 2 3; do cat >> /tmp/domain.ini <<EOT
[maar:maar$i]
address = 2001:db8:ff::$i
pool = 2001:db8:$i::/48
datapath_id = $i
core_port = 1
tunnel_port = 2
agent_port = 3
access_ports = 11
EOT
done
"$bin/ryu-manager" --config-file /tmp/domain.ini --ofp-tcp-listen-port 6653 ryu_dmm.cmd > /tmp/cmd.log 2>&1 &
sleep 2
timeout 120 /usr/bin/python3 "$repo/mininet_topos/dmm.py" 3 1 6653 2> /tmp/mn.log || { cat /tmp/mn.log /tmp/cmd.log >&2; exit 1; }
