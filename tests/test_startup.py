"""Plain `ryu-manager ryu_dmm.cmd` starts on Python >= 3.10 with the pinned eventlet, and stops cleanly."""
import json
import signal
import subprocess
import sys
import urllib.request

import pytest

from tests.procs import MANAGER, clean_env, free_port, stop, tcp_open, wait_for


def test_pth_hook_supplies_already_handled_before_any_ryu_import(tmp_path):
    code = ("import sys; assert 'ryu_dmm_eventlet_compat' in sys.modules, 'hook not run'; assert 'ryu_dmm' not in sys.modules; "
            "import eventlet, eventlet.wsgi; print(eventlet.__version__, eventlet.wsgi.ALREADY_HANDLED); "
            "import ryu.app.wsgi")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=clean_env(), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "ALREADY_HANDLED" in out.stdout


def test_hook_is_lazy_and_idempotent(tmp_path):
    code = ("import sys, ryu_dmm_eventlet_compat as c; c.install(); c.install(); "
            "assert 'eventlet' not in sys.modules; "
            "assert sum(isinstance(f, c._Finder) for f in sys.meta_path) == 1")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=clean_env(), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_existing_already_handled_is_left_alone():
    from types import ModuleType

    from ryu_dmm_eventlet_compat import patch
    mod = ModuleType("eventlet.wsgi")
    mod.ALREADY_HANDLED = marker = object()
    patch(mod)
    assert mod.ALREADY_HANDLED is marker


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ryu_manager_runs_the_cmd_and_exits_cleanly(tmp_path, sig):
    port, rest = free_port(), free_port()
    log = tmp_path / "ryu.log"
    # No --config-file: the embedded default (no MAARs, proxy mode, PMIPv6 on [::]:5436).
    with open(log, "w") as out:
        proc = subprocess.Popen([*MANAGER, "--ofp-tcp-listen-port", str(port),
                                 "--wsapi-port", str(rest), "--wsapi-host", "127.0.0.1", "ryu_dmm.cmd"],
                                cwd=tmp_path, env=clean_env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: tcp_open(port) or proc.poll() is not None, 30), "OpenFlow port never opened"
        assert proc.poll() is None, log.read_text()
        assert wait_for(lambda: "ryu-dmm CMD started" in log.read_text(), 10), log.read_text()
        assert wait_for(lambda: tcp_open(rest), 10), log.read_text()
        with urllib.request.urlopen(f"http://127.0.0.1:{rest}/dmm/v1/stats", timeout=5) as r:
            assert json.loads(r.read())["mode"] == "proxy"
    finally:
        code = stop(proc, sig)
    text = log.read_text()
    assert code == 0, text
    assert "ImportError" not in text and "Traceback" not in text, text
    assert not tcp_open(port)
