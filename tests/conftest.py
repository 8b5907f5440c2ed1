"""Shared fixtures. Tests that need root, OVS or tshark skip on a developer's machine without them
but fail in CI (CI=true), where .ci/run installs everything: nothing that should run is skipped."""
import os
import tempfile
import shutil

import pytest


def need(condition: bool, why: str) -> None:
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"required in CI: {why}")
    pytest.skip(why)


@pytest.fixture
def tshark() -> str:
    path = shutil.which("tshark")
    need(path is not None, "tshark is not installed")
    return path



# The processes tests start keep their state (the CMD's binding store, the agents' restart counters)
# in a temporary folder unless their configuration names one: never in /var/lib. Each test has its
# own (the fixture below); a module-scoped fixture that starts a CMD runs before it and gets this
# run's folder, so it must give its processes one of their own (tests/procs.running_cmd and
# running_agent use the configuration's folder).
os.environ.setdefault("RYU_DMM_STATE_DIR", tempfile.mkdtemp(prefix="ryu-dmm-test-state-"))


@pytest.fixture(autouse=True)
def _private_state_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("RYU_DMM_STATE_DIR", str(tmp_path_factory.mktemp("state")))


# A private Redis per test module (tests/redisd.py)
from tests.redisd import redis_cluster, redis_server, redis_url  # noqa: E402,F401
