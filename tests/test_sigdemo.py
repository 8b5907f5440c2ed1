"""`make demo` (the signalling-only demo) end to end, as root, in every mode; nothing left behind."""
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import need


@pytest.mark.root
@pytest.mark.parametrize("mode", ["proxy", "relay", "locator"])
def test_lab_demo(tmp_path, mode):
    need(os.geteuid() == 0, "the lab needs root (network namespaces)")
    out = subprocess.run([sys.executable, "-m", "ryu_dmm.lab.sigdemo", "--mode", mode, "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] and report["mode"] == mode
    steps = report["steps"]
    assert [s["to"] for s in steps] == ["maar1", "maar2", "maar3"]
    assert steps[2]["previous_maars"] == ["maar1", "maar2"]
    assert all(s["rest_consistent"] for s in steps)
    for s in steps[1:]:
        assert s["smaar_tunnels_ms"] is not None and s["pmaars_updated_ms"] is not None
        assert s["serving_dataplane"]["to_anchor"]
    assert report["cmd_stats"]["events"]["handover"] == 2
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    assert report["namespace"] and report["namespace"] not in left


def test_lab_refuses_without_root():
    if os.geteuid() == 0:
        code = "import os; os.geteuid = lambda: 1000; import sys, ryu_dmm.lab.sigdemo as l; sys.exit(l.main(['--out', '/tmp/x']))"
    else:
        code = "import sys, ryu_dmm.lab.sigdemo as l; sys.exit(l.main(['--out', '/tmp/x']))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "must run as root" in out.stderr
