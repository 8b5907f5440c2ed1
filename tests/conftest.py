"""Shared fixtures. Tests that need root, OVS or tshark skip on a developer's machine without them
but fail in CI (CI=true), where .ci/run installs everything: nothing that should run is skipped."""
import os
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
