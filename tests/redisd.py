"""Fixtures giving a test module its own Redis (``ryu_dmm.lab.redisd``): a fresh ``redis-server``
(``redis_server``), or a primary, a replica and three sentinels (``redis_cluster``), on free
loopback ports in a private folder, stopped by pid when the module ends. ``redis_url`` empties the
module's server before each test. Without the Debian packages a test skips (fails in CI)."""
import shutil

import pytest

from ryu_dmm.lab import redisd


def need(condition: bool, why: str) -> None:
    from tests.conftest import need as check  # (conftest imports this module)
    check(condition, why)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    need(shutil.which("redis-server") is not None, "redis-server is not installed (tools/setup.sh)")
    with redisd.redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server) -> str:
    """The module's server, emptied for this test."""
    assert redisd.command(redis_server.port, "FLUSHALL").startswith(b"+OK")
    return redis_server.url


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory):
    need(shutil.which("redis-server") is not None and shutil.which("redis-sentinel") is not None,
         "redis-server and redis-sentinel are not installed (tools/setup.sh)")
    with redisd.redis_cluster(tmp_path_factory.mktemp("redis-ha")) as cluster:
        yield cluster
