"""The signalling endpoint and the shell's guards in-process: a handler or a receive that raises
costs one error report and the loop goes on; timers likewise; the receive buffer and the kernel's
drop counter; the ``[dmm] rcvbuf`` key at its bounds."""
import logging
import os
import socket
import time

import eventlet
import eventlet.green.socket
import pytest

from ryu_dmm import domainconf, signalling
from ryu_dmm.hubtimers import HubTimers
from ryu_dmm.logsafe import Guard, SafeLog
from ryu_dmm.signalling import Endpoint, kernel_counters, set_rcvbuf


def proc_int(name: str) -> int:
    with open(f"/proc/sys/net/core/{name}") as f:
        return int(f.read())


@pytest.fixture
def green(monkeypatch):
    """The endpoint's sockets made green, as ryu-manager's monkey patching does."""
    monkeypatch.setattr(signalling, "socket", eventlet.green.socket)


def run_until(predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        eventlet.sleep(0.01)
    return predicate()


class Flaky:
    """A socket whose first receive fails (as a transient ENOBUFS would)."""

    def __init__(self, sock):
        self._sock, self.failed = sock, False

    def recvfrom(self, size):
        if not self.failed:
            self.failed = True
            raise OSError(105, "No buffer space available")
        return self._sock.recvfrom(size)

    def __getattr__(self, name):
        return getattr(self._sock, name)


def test_a_raising_handler_or_receive_costs_one_report_and_the_loop_goes_on(green):
    errors, seen = [], []

    def handle(data, src, addr, raw_dst):
        seen.append(data)
        if data.startswith(b"boom"):
            raise ValueError(data.decode())

    def on_error(where, exc):
        errors.append((where, type(exc).__name__))
        raise RuntimeError("a failing error report must not end the loop either")

    ep = Endpoint("::1", 0, False, "::1", {}, rcvbuf=0, on_error=on_error)
    ep.udp = Flaky(ep.udp)
    ep.serve(handle)
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as client:
        for data in (b"boom1", b"ok1", b"boom2", b"ok2"):
            client.sendto(data, ("::1", ep.bound_port))
        assert run_until(lambda: len(seen) == 4)
    assert seen == [b"boom1", b"ok1", b"boom2", b"ok2"]
    assert errors == [("receive", "OSError"), ("datagram", "ValueError"), ("datagram", "ValueError")]
    ep.close()
    eventlet.sleep(0.05)
    assert len(errors) == 3  # closing ends the loop quietly


def test_a_raising_timer_is_contained_and_later_timers_fire():
    counts, fired = [], []
    guard = Guard(counts.append, SafeLog(logging.getLogger("test.timers")))

    def fire(key):
        fired.append(key)
        if key == "bad":
            raise KeyError(key)
    timers = HubTimers(guard.wrap("timer", fire))
    now = time.time()
    timers.set("bad", now)
    timers.set("good", now + 0.05)
    assert run_until(lambda: fired == ["bad", "good"])
    assert counts == ["internal_error.timer"]
    timers.stop()


def test_rcvbuf_zero_keeps_the_kernel_default():
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        got = set_rcvbuf(s, 0)
        assert got == {"rcvbuf_requested": 0, "rcvbuf": proc_int("rmem_default"), "rcvbuf_forced": False}


def test_rcvbuf_beyond_rmem_max():
    want = 2 * proc_int("rmem_max")
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        got = set_rcvbuf(s, want)
    # socket(7): the kernel doubles the value; SO_RCVBUF caps it at rmem_max, SO_RCVBUFFORCE (root) does not.
    if os.geteuid() == 0:
        assert got == {"rcvbuf_requested": want, "rcvbuf": 2 * want, "rcvbuf_forced": True}
    else:
        assert got == {"rcvbuf_requested": want, "rcvbuf": 2 * proc_int("rmem_max"), "rcvbuf_forced": False}


def test_kernel_drops_are_read_for_this_socket():
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as rx, \
            socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as other:
        set_rcvbuf(rx, 4096)  # the kernel's minimum is about 2 KiB: a few datagrams fit
        rx.bind(("::1", 0))
        other.bind(("::1", 0))
        assert kernel_counters(rx, "udp6") == {"kernel_drops": 0, "queued_bytes": 0}
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as tx:
            for _ in range(200):
                tx.sendto(b"x" * 100, rx.getsockname())
        counters = kernel_counters(rx, "udp6")
        rx.setblocking(False)
        received = 0
        while True:
            try:
                rx.recv(2048)
                received += 1
            except BlockingIOError:
                break
        assert received > 0 and counters["queued_bytes"] > 0
        assert counters["kernel_drops"] == 200 - received  # what was not queued was dropped, and counted
        assert kernel_counters(other, "udp6")["kernel_drops"] == 0  # another socket's line, not ours
    assert kernel_counters(rx, "udp6") is None  # closed: nothing to tell


def test_rcvbuf_key_bounds_and_default():
    base = "[dmm]\ncmd_address = ::1\n"
    assert domainconf.parse(base)[1].rcvbuf == 2 << 20  # documented default: 2 MiB
    assert domainconf.parse(base + "rcvbuf = 1073741824\n")[1].rcvbuf == 1 << 30
    assert domainconf.parse(base + "rcvbuf = 0\n")[1].rcvbuf == 0
    with pytest.raises(domainconf.ConfigError, match=r"\[dmm\] rcvbuf: 1073741825 is outside 0..1073741824"):
        domainconf.parse(base + "rcvbuf = 1073741825\n")
    with pytest.raises(domainconf.ConfigError, match=r"\[dmm\] rcvbuf: -1 is outside"):
        domainconf.parse(base + "rcvbuf = -1\n")
    domain, settings = domainconf.parse(base + "rcvbuf = 12345\n")
    assert domainconf.parse(domainconf.render(domain, settings))[1].rcvbuf == 12345


def test_under_a_flood_the_receive_loop_yields_every_batch(green):
    seen, ticks = [], []
    ep = Endpoint("::1", 0, False, "::1", {}, rcvbuf=1 << 21)
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as client:
        for _ in range(1000):  # queued before the loop starts: the socket is never empty until all are read
            client.sendto(b"x", ("::1", ep.bound_port))
    assert kernel_counters(ep.udp, "udp6")["kernel_drops"] == 0

    def ticker():
        while len(seen) < 1000:
            ticks.append(len(seen))
            eventlet.sleep(0)
    eventlet.spawn(ticker)
    ep.serve(lambda data, src, addr, raw_dst: seen.append(data))
    assert run_until(lambda: len(seen) == 1000)
    ep.close()
    runs = [b - a for a, b in zip(ticks, ticks[1:])]
    assert max(runs) == signalling.BATCH  # other greenthreads ran after every BATCH datagrams, not later
