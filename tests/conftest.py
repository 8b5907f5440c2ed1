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
# under this run's temporary folder unless their configuration names one: never in /var/lib.
# tests/procs.running_cmd/running_agent give each configuration folder a state folder of its own.
os.environ.setdefault("RYU_DMM_STATE_DIR", tempfile.mkdtemp(prefix="ryu-dmm-test-state-"))
