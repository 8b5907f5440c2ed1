"""The CMD's optional raw Mobility Header transport (IPv6 next header 135), as root in a namespace."""
import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import need
from tests.procs import MANAGER

pytestmark = pytest.mark.root
CMD, MAAR1, MAAR2 = "2001:db8:ff::100", "2001:db8:ff::1", "2001:db8:ff::2"
CLIENT = r"""
import json, socket, sys, time
from ryu_dmm.mobility import messages as M
from ryu_dmm.wire import Prefix, decode, encode, encode_mh
src, prefix, hi, corrupt = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 135)
s.bind((src, 0))
s.settimeout(2)
mh = encode_mh(M.pbu(1, time.time(), "mn1", Prefix.parse(prefix), 3600, hi, 3), src, "2001:db8:ff::100")
if corrupt:  # Linux fills MH checksums on raw sockets by default (offset 4): switch that off
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_CHECKSUM, -1)
    mh = mh[:12] + bytes((mh[12] ^ 0xFF,)) + mh[13:]
s.sendto(mh, ("2001:db8:ff::100", 0))
out = []
try:
    while True:
        data, addr = s.recvfrom(4096)
        if addr[0] == "2001:db8:ff::100":
            msg = decode(data, addr[0], src)  # verifies the kernel-filled checksum
            out.append({"type": type(msg).__name__, "status": getattr(msg, "status", None),
                        "pmaars": [p.maar for p in msg.previous_maars], "serving": msg.serving_maar})
except socket.timeout:
    pass
print(json.dumps(out))
"""


def test_raw_mobility_header(tmp_path):
    need(os.geteuid() == 0, "raw sockets and namespaces need root")
    ns = f"dmmraw{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    proc = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        for a in (CMD, MAAR1, MAAR2):
            subprocess.run(["ip", "-n", ns, "addr", "add", f"{a}/128", "dev", "lo", "nodad"], check=True)
        (tmp_path / "d.ini").write_text(f"[DEFAULT]\nwsapi_host = 127.0.0.1\nwsapi_port = 8080\n[dmm]\n"
                                        f"cmd_address = {CMD}\nlisten = {CMD}\nraw_mh = true\n"
                                        f"[maar:maar1]\naddress = {MAAR1}\npool = 2001:db8:1::/48\n"
                                        f"[maar:maar2]\naddress = {MAAR2}\npool = 2001:db8:2::/48\n")
        log = tmp_path / "cmd.log"
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *MANAGER, "--config-file",
                                 str(tmp_path / "d.ini"), "ryu_dmm.cmd"], cwd=tmp_path, stdout=open(log, "w"),
                                stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while "ryu-dmm CMD started" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)

        def client(src, prefix, hi, corrupt=False):
            out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", CLIENT, src, prefix, str(hi),
                                  "1" if corrupt else "0"], capture_output=True, text=True, timeout=30)
            assert out.returncode == 0, out.stderr
            return json.loads(out.stdout)
        assert client(MAAR1, "2001:db8:1::/64", 1) == [{"type": "BindingAck", "status": 0, "pmaars": [], "serving": None}]
        # bad checksum: dropped (by the kernel, which verifies MH checksums on a socket with IPV6_CHECKSUM
        # set; the decoder verifies again against IPV6_PKTINFO's destination)
        assert client(MAAR1, "2001:db8:1:1::/64", 1, corrupt=True) == []
        got = client(MAAR2, "2001:db8:2::/64", 3)
        assert got == [{"type": "BindingAck", "status": 0, "pmaars": [MAAR1], "serving": None}]
        assert "Traceback" not in log.read_text()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(15)
        subprocess.run(["ip", "netns", "del", ns])
