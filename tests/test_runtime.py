"""The CMD on os-ken (docs/runtime.md): which framework ``ryu_dmm.runtime`` picks, and what differs
under ``osken-manager`` without our ``--user-flags``. The CMD-process tests run under os-ken too
(``make test``: ``DMM_RUNTIME=osken``); these check what they cannot."""
import configparser
import json
import os
import re
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ryu_dmm.runtime import choose
from tests.conftest import need
from tests.procs import ROOT, clean_env, free_port, stop, tcp_open, wait_for

OSKEN_BIN = Path(os.environ.get("DMM_OSKEN_VENV", ROOT / ".venv-osken")) / "bin"


@pytest.mark.parametrize("imported,installed,expected", [
    ({"ryu"}, True, "ryu"),  # under ryu-manager
    ({"os_ken"}, True, "os_ken"),  # under osken-manager, Ryu installed as well
    ({"os_ken", "ryu"}, True, "ryu"),
    (set(), True, "ryu"),  # a test or tool: Ryu when it is there
    (set(), False, "os_ken"),
])
def test_the_framework_is_the_one_the_manager_imported(imported, installed, expected):
    assert choose(dict.fromkeys(imported), lambda name: installed) == expected


@pytest.fixture
def osken() -> Path:
    need((OSKEN_BIN / "osken-manager").exists(), f"no os-ken venv at {OSKEN_BIN.parent} (make venv-osken)")
    return OSKEN_BIN


def run(python: Path, code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-c", code], env={**clean_env(), **env}, capture_output=True, text=True,
                          timeout=60)


def test_the_osken_venv_runs_the_shell_on_os_ken_alone(osken):
    out = run(osken / "python", "import ryu_dmm.cmd, ryu_dmm.runtime as r, os_ken; print(r.FRAMEWORK, os_ken.__version__)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["os_ken", "3.1.1"]
    assert "No module named 'ryu'" in run(osken / "python", "import ryu").stderr  # nothing comes from Ryu


def test_os_kens_native_hub_is_refused_with_a_reason(osken):
    out = run(osken / "python", "import ryu_dmm.runtime", OSKEN_HUB_TYPE="native")
    assert out.returncode != 0
    assert "ryu_dmm needs os-ken's eventlet hub (OSKEN_HUB_TYPE=eventlet), not 'native'" in out.stderr


def test_plain_osken_manager_reads_the_rest_port_from_the_file_only(osken, tmp_path):
    rest, udp = free_port(), free_port()
    (tmp_path / "d.ini").write_text(f"[DEFAULT]\nwsapi_host = 127.0.0.1\nwsapi_port = {rest}\n"
                                    f"[dmm]\ncmd_address = ::1\nlisten = ::1\nport = {udp}\nmetrics_port = 0\n")
    argv = [str(osken / "osken-manager"), "--config-file", str(tmp_path / "d.ini"), "--ofp-tcp-listen-port",
            str(free_port())]
    refused = subprocess.run([*argv, "--wsapi-port", str(free_port()), "ryu_dmm.cmd"], cwd=tmp_path, env=clean_env(),
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "wsapi-port" in refused.stderr  # only with --user-flags (docs/runtime.md)
    log = tmp_path / "cmd.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([*argv, "ryu_dmm.cmd"], cwd=tmp_path, env=clean_env(), stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: tcp_open(rest) or proc.poll() is not None, 30), log.read_text()
        with urllib.request.urlopen(f"http://127.0.0.1:{rest}/dmm/v1/stats", timeout=5) as resp:
            assert json.load(resp)["sessions"] == 0
        with pytest.raises(urllib.error.HTTPError) as outside:  # not ours: the router's own 404, as on Ryu
            urllib.request.urlopen(f"http://127.0.0.1:{rest}/other", timeout=5)
        assert outside.value.code == 404
    finally:
        assert stop(proc, signal.SIGTERM) == 0, log.read_text()
    assert "ryu-dmm CMD started" in log.read_text()


def test_the_osken_venv_installs_our_dependencies_with_os_ken_for_ryu():
    """tools/setup.sh lists the os-ken venv's packages by hand (pip must not pull Ryu in): the same as
    setup.cfg's, with os-ken in place of Ryu."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    ours = [r for r in cfg["options"]["install_requires"].split() if not r.startswith("ryu")]
    listed = re.search(r'OSKEN_PKGS="([^"]*)"', (ROOT / "tools" / "setup.sh").read_text()).group(1).split()
    assert listed == ["os-ken==3.1.1", *ours]
