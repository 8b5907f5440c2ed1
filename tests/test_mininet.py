"""The Mininet topology against `ryu_dmm.cmd`, run contained: own PID, mount and network
namespaces, own OVS instance, private /tmp (Mininet's clean-up kills by name and deletes files)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import need

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.root
def test_mininet_topology_with_the_cmd():
    need(os.geteuid() == 0 and shutil.which("mn") is not None and Path("/usr/bin/mnexec").exists(),
         "needs root and Debian's mininet")
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    out = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "--mount", "--net", "bash",
                          str(ROOT / "tests" / "mininet_contained.sh"), str(ROOT), str(Path(sys.executable).parent)],
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    # the pipeline's base flows, from our CMD: per access port 5 punted ICMPv6 types, 1 into uplink, 1 for
    # unrouted frames, 3 more (docs/pipeline.md)
    assert summary["flows"] == {"maar1": 10, "maar2": 10, "maar3": 10}
    assert summary["ports"]["maar1"] == [0, 1, 11] and summary["ports"]["wan"] == [0, 1, 2, 3, 4]
    assert summary["hosts"] == ["cn", "mn1"]
    # nothing leaked onto the host
    assert subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout == links
