"""The REST server's limits in-process (``rest.serve`` on its own eventlet hub in a thread, a plain
client socket): the request deadline, and the ``[DEFAULT] wsapi_*`` keys at their bounds."""
import json
import logging
import re
import socket
import subprocess
import threading
import time

import eventlet
import pytest

from ryu_dmm import rest
from ryu_dmm.logsafe import SafeLog
from tests.procs import MANAGER, clean_env, free_port


def app(environ, start_response):
    delay = float(environ["PATH_INFO"].strip("/") or 0)
    eventlet.sleep(delay)  # a handler that takes this long (e.g. waiting for a switch's flows)
    body = json.dumps({"slept": delay}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture(scope="module")
def server():
    limits = rest.ServerLimits(max_connections=2, header_timeout=5.0, request_timeout=1.0)
    ready = threading.Event()
    box = {}

    def run():
        sock = eventlet.listen(("127.0.0.1", 0))
        box["port"] = sock.getsockname()[1]
        box["sock"] = sock
        ready.set()
        rest.serve(sock, app, limits, SafeLog(logging.getLogger("test.rest.server")))

    threading.Thread(target=run, daemon=True).start()  # a daemon thread: ends with the test process
    assert ready.wait(5)
    return box["port"]


def exchange(port, path):
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
    return reply, time.perf_counter() - t0


def test_a_response_finished_within_the_request_timeout_is_sent(server):
    reply, _ = exchange(server, "/0.7")
    assert reply.startswith(b"HTTP/1.1 200 ")


def test_a_response_not_finished_by_the_request_timeout_is_cut(server):
    reply, seconds = exchange(server, "/3")
    assert reply == b"" and 0.9 <= seconds < 2.0  # closed at the deadline, nothing sent
    reply, _ = exchange(server, "/0")  # the server goes on
    assert reply.startswith(b"HTTP/1.1 200 ")


def test_a_websocket_upgrade_has_no_request_deadline(server):
    with socket.create_connection(("127.0.0.1", server), timeout=5) as s:
        s.sendall(b"GET /1.5 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 ")  # 1.5 s > the 1 s request timeout: not cut


def test_defaults():
    assert rest.ServerLimits() == rest.ServerLimits(64, 10.0, 30.0)


@pytest.mark.parametrize("field,good,bad", [
    ("max_connections", (1, 10_000), (0, 10_001)),
    ("header_timeout", (0.1, 3600.0), (0.09, 3600.1)),
    ("request_timeout", (0.1, 3600.0), (0.0, 3601.0)),
])
def test_limits_at_their_bounds(field, good, bad):
    for value in good:
        assert getattr(rest.ServerLimits(**{field: value}), field) == value
    for value in bad:
        with pytest.raises(ValueError, match=rf"\[DEFAULT\] wsapi_{field}: {re.escape(str(value))} is outside"):
            rest.ServerLimits(**{field: value})


@pytest.mark.parametrize("line,message", [
    ("wsapi_max_connections = 0", "[DEFAULT] wsapi_max_connections: 0 is outside 1..10000"),
    ("wsapi_header_timeout = soon", "[DEFAULT] wsapi_header_timeout:"),
])
def test_a_bad_limit_stops_startup_naming_the_key(tmp_path, line, message):
    (tmp_path / "d.ini").write_text(f"[DEFAULT]\n{line}\n[dmm]\ncmd_address = ::1\nport = {free_port()}\n")
    out = subprocess.run([*MANAGER, "--config-file", str(tmp_path / "d.ini"), "--wsapi-port",
                          str(free_port()), "--ofp-tcp-listen-port", str(free_port()), "ryu_dmm.cmd"],
                         cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert f"ryu_dmm.cmd: bad configuration: {message}" in out.stderr + out.stdout
