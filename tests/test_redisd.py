"""The project's Redis service tooling (ryu_dmm/lab/redisd.py): Debian's redis-server and
redis-sentinel started on free loopback ports in private folders, answering, and stopped by pid."""
import os

import redis

from ryu_dmm.lab import redisd


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # our child that exited but was not reaped would still answer: Popen.wait reaped it
    return False


def test_a_server_answers_keeps_its_files_in_its_folder_and_stops_by_pid(tmp_path):
    with redisd.redis_server(tmp_path / "r") as server:
        client = redis.Redis(port=server.port)
        assert client.ping() is True
        client.set("k", "v")
        assert client.get("k") == b"v"
        assert client.config_get("dir")["dir"] == str(tmp_path / "r")
        assert client.config_get("appendonly")["appendonly"] == "yes"
        pid = server.pid
        client.close()
    assert _gone(pid)
    assert not redisd.answers(server.port)


def test_two_servers_get_different_ports(tmp_path):
    with redisd.redis_server(tmp_path / "a") as a, redisd.redis_server(tmp_path / "b") as b:
        assert a.port != b.port and redisd.answers(a.port) and redisd.answers(b.port)


def test_a_taken_port_is_retried_on_another(tmp_path, monkeypatch):
    with redisd.redis_server(tmp_path / "a") as a:
        ports = iter([a.port])  # the first pick collides with a running server
        real = redisd.free_port
        monkeypatch.setattr(redisd, "free_port", lambda: next(ports, None) or real())
        with redisd.redis_server(tmp_path / "b") as b:
            assert b.port != a.port and redisd.answers(b.port)


def test_the_cluster_replicates_and_the_sentinels_fail_over_when_the_primary_dies(redis_cluster):
    c = redis_cluster
    assert c.primary_port() == c.primary.port
    sentinel = redis.Sentinel([("127.0.0.1", s.port) for s in c.sentinels], socket_timeout=1)
    primary = sentinel.master_for(redisd.SERVICE, socket_timeout=1)
    primary.set("k", "v")
    assert primary.wait(1, 2000) == 1  # the replica acknowledged it
    assert redis.Redis(port=c.replica.port).get("k") == b"v"
    c.primary.kill()
    assert c.wait_primary(c.replica.port, timeout=15) < 15
    assert sentinel.master_for(redisd.SERVICE, socket_timeout=1).get("k") == b"v"
