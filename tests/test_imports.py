"""The runtime package stays light: its sans-IO cores pull in no Ryu, eventlet, greenlet or scapy."""
import subprocess
import sys

from tests.procs import clean_env

CHECK = ("import sys, ryu_dmm.wire, ryu_dmm.mobility; "
         "assert not [m for m in sys.modules if m.split('.')[0] in ('ryu','eventlet','greenlet','scapy')]")


def test_cores_import_without_ryu_eventlet_or_scapy(tmp_path):
    out = subprocess.run([sys.executable, "-c", CHECK], cwd=tmp_path, env=clean_env(), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
