"""The CMD's PMIPv6 endpoint on the eventlet hub: UDP 5436 (dual stack) and optional raw Mobility
Header over IPv6, and where to send each answer.

Answers to a message go exactly where it came from; other messages to a MAAR go to the port it
last signalled from (0: it speaks raw MH), or the configured port before it has spoken.

Receive path: the sockets get a large receive buffer (``[dmm] rcvbuf``) so that a burst waits in the
kernel instead of being dropped there, and what the kernel still drops is read on demand from
``/proc/net/udp6`` and ``/proc/net/raw6`` (the ``drops`` column of our sockets' inodes: nothing is
paid per datagram). A handler that raises, or a receive error, costs one ``on_error`` call (the
shell counts and logs it); the receive loops only end when the endpoint is closed. Under a flood the
UDP loop yields to the hub every ``BATCH`` datagrams, so that REST, timers and OpenFlow still run.
"""
from __future__ import annotations

import os
import socket
import sys
from typing import Callable, Optional

from eventlet.hubs import trampoline

from .runtime import hub
from .wire import peer_address

RECV_SIZE = 65535
RESOLVED_MAX = 4096  # cached socket addresses (a MAAR that changes its source port adds one each time)
ERROR_PAUSE = 0.01  # seconds a receive loop waits after an unexpected receive error (no busy loop)
BATCH = 32  # datagrams a receive loop handles in a row (~1.5 ms) before it yields to the hub (REST, timers, OpenFlow)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33 if sys.platform.startswith("linux") else None)


def set_rcvbuf(sock: socket.socket, size: int) -> dict:
    """Ask for a ``size``-byte receive buffer: SO_RCVBUFFORCE when root (beyond net.core.rmem_max;
    needs CAP_NET_ADMIN), else or if refused SO_RCVBUF (the kernel caps it at net.core.rmem_max).
    Returns what was asked and what the kernel granted (``rcvbuf``: its own figure, which counts
    bookkeeping overhead and is about twice the request)."""
    forced = False
    if size:
        if SO_RCVBUFFORCE is not None and os.geteuid() == 0:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
                forced = True
            except OSError:
                pass  # e.g. root in a user namespace without CAP_NET_ADMIN
        if not forced:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return {"rcvbuf_requested": size, "rcvbuf": sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
            "rcvbuf_forced": forced}


def kernel_counters(sock: socket.socket, table: str) -> Optional[dict]:
    """The kernel's ``drops`` and queued bytes for ``sock`` from ``/proc/net/<table>`` (udp6,
    raw6), found by the socket's inode; None where /proc cannot tell (not Linux, or closed)."""
    try:
        inode = str(os.fstat(sock.fileno()).st_ino)
        with open(f"/proc/net/{table}", encoding="ascii") as f:
            next(f)
            for line in f:
                cols = line.split()
                if len(cols) >= 13 and cols[9] == inode:
                    return {"kernel_drops": int(cols[12]), "queued_bytes": int(cols[4].split(":")[1], 16)}
    except (OSError, ValueError, StopIteration):
        pass
    return None



def raw_mh_socket(listen: str) -> socket.socket:
    """Raw IPv6 socket for Mobility Header messages (next header 135; needs CAP_NET_RAW). The kernel
    fills in the MH checksum over the pseudo-header (IPV6_CHECKSUM at offset 4, Linux's default for
    this protocol, set explicitly) and reports each datagram's destination (IPV6_PKTINFO), against
    which the decoder verifies the checksum again (seen here: with the option set, the kernel itself
    drops MH datagrams whose checksum is wrong)."""
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 135)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_CHECKSUM, 4)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    if listen != "::":
        s.bind((listen, 0))
    return s


# (data, source address text, source socket address, destination for raw MH or None)
Handler = Callable[[bytes, str, tuple, Optional[str]], None]
# (where, exception): told about an exception the endpoint contained; must not raise
OnError = Callable[[str, BaseException], None]


def _ignore(where: str, exc: BaseException) -> None:
    pass


class Endpoint:
    def __init__(self, listen: str, port: int, raw_mh: bool, own_address: str, maars, rcvbuf: int = 0,
                 on_error: OnError = _ignore) -> None:
        """Opens the sockets (raises OSError). ``maars``: the signalling addresses of the domain;
        ``rcvbuf``: receive buffer to ask for (0: keep the kernel's default); ``on_error``: told
        about every exception a handler raised (``datagram``) or a receive failed with (``receive``)."""
        self.port = port
        self._own = own_address
        self._maars = maars
        self._on_error = on_error
        self._closed = False
        self.udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.raw = None
        try:
            self.udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            self.buffers = {"udp": set_rcvbuf(self.udp, rcvbuf)}
            self.udp.bind((listen, port))  # no SO_REUSEADDR: a second CMD on this port fails
            if raw_mh:
                self.raw = raw_mh_socket(listen)
                self.buffers["raw_mh"] = set_rcvbuf(self.raw, rcvbuf)
        except OSError:
            self.udp.close()
            if self.raw is not None:
                self.raw.close()
            raise
        self._ports: dict[str, int] = {}  # MAAR -> the UDP port it last signalled from (0: raw MH)
        self._resolved: dict[tuple[str, int], tuple] = {}
        self._current: Optional[tuple[str, tuple]] = None  # (source, socket address) being answered
        self._threads: list = []

    def shortfalls(self) -> list[str]:
        """A line for each socket whose receive buffer the kernel granted smaller than asked."""
        return [f"{name} receive buffer: asked for {b['rcvbuf_requested']} bytes, the kernel granted {b['rcvbuf']} "
                "(its own figure, twice the usable size): raise net.core.rmem_max or run as root"
                for name, b in self.buffers.items() if b["rcvbuf"] < 2 * b["rcvbuf_requested"]]

    def receive_path(self) -> dict:
        """Per socket: the receive buffer asked for and granted, and the kernel's drop counter and
        queue now (from /proc); ``kernel_drops``: their sum (None if /proc cannot tell)."""
        sockets, total = {}, 0
        for name, sock, table in (("udp", self.udp, "udp6"), ("raw_mh", self.raw, "raw6")):
            if sock is None:
                continue
            counters = kernel_counters(sock, table)
            sockets[name] = dict(self.buffers[name], **(counters or {"kernel_drops": None, "queued_bytes": None}))
            total = None if counters is None or total is None else total + counters["kernel_drops"]
        return {"kernel_drops": total, "sockets": sockets}

    @property
    def current_source(self) -> str:
        """The source of the datagram being handled now, "-" between datagrams (e.g. in a timer)."""
        return self._current[0] if self._current is not None else "-"

    @property
    def bound_port(self) -> int:
        return self.udp.getsockname()[1]

    def serve(self, handle: Handler) -> None:
        self._threads = [hub.spawn(self._serve_udp, handle)]  # not RyuApp.threads: stop() joins those
        if self.raw is not None:
            self._threads.append(hub.spawn(self._serve_raw, handle))

    def _serve_udp(self, handle: Handler) -> None:
        n = 0
        while not self._closed:
            try:
                data, addr = self.udp.recvfrom(RECV_SIZE)  # yields to the hub only when nothing is queued
            except OSError as exc:
                self._receive_failed(exc)
                continue
            self._dispatch(handle, data, addr, None)
            n += 1
            if n == BATCH:  # under a flood the queue is never empty: let the rest of the CMD run too
                n = 0
                hub.sleep(0)

    def _serve_raw(self, handle: Handler) -> None:
        while not self._closed:  # trampoline yields to the hub before every datagram
            try:
                trampoline(self.raw.fileno(), read=True)  # eventlet does not green recvmsg
                data, ancdata, _flags, addr = self.raw.recvmsg(RECV_SIZE, 256)
            except BlockingIOError:
                continue
            except (OSError, ValueError) as exc:  # ValueError: fileno() of a closed socket
                self._receive_failed(exc)
                continue
            dst = None
            for level, kind, value in ancdata:
                if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
                    dst = socket.inet_ntop(socket.AF_INET6, value[:16])
            if dst is None or peer_address(addr[0]) == self._own:
                continue  # no destination to verify against, or our own message seen on the way out
            self._dispatch(handle, data, (addr[0], 0), dst)

    def _receive_failed(self, exc: Exception) -> None:
        if not self._closed:  # else: the socket was closed at shutdown and the loop ends
            self._contained("receive", exc)
            hub.sleep(ERROR_PAUSE)

    def _dispatch(self, handle: Handler, data: bytes, addr: tuple, raw_dst: Optional[str]) -> None:
        """One datagram to ``handle``; whatever it raises stays here (one ``on_error`` call)."""
        try:
            src = peer_address(addr[0])
            self._current = (src, addr)
            handle(data, src, addr, raw_dst)
        except Exception as exc:  # noqa: BLE001 - containment boundary: the loop must go on
            self._contained("datagram", exc)
        finally:
            self._current = None

    def heard(self, src: str, addr: tuple) -> None:
        """``src`` sent a message that decoded: later messages to it go to that port (0: raw MH).
        Not for any datagram: one garbage datagram from another port must not redirect them."""
        if src in self._maars:
            self._ports[src] = addr[1]

    def _contained(self, where: str, exc: BaseException) -> None:
        try:
            self._on_error(where, exc)
        except Exception:  # noqa: BLE001 - a failing error report must not end the loop either
            pass

    def sockaddr(self, dst: str) -> tuple:
        current = self._current
        if current is not None and current[0] == dst:
            return current[1]
        key = (dst, self._ports.get(dst, self.port))
        addr = self._resolved.get(key)
        if addr is None:
            if len(self._resolved) >= RESOLVED_MAX:
                self._resolved.clear()
            # Resolved once: with a text host, eventlet's sendto resolves it on every call, which
            # cost the CMD more than half of its throughput.
            addr = self._resolved[key] = socket.getaddrinfo(*key, socket.AF_INET6, socket.SOCK_DGRAM)[0][4]
        return addr

    def send(self, data: bytes, sockaddr: tuple) -> None:
        """Raises OSError."""
        sock = self.raw if sockaddr[1] == 0 and self.raw is not None else self.udp
        sock.sendto(data, sockaddr)

    def close(self) -> None:
        self._closed = True
        for thread in self._threads:
            hub.kill(thread)
        if self.raw is not None:
            self.raw.close()
        self.udp.close()
