"""The CMD's PMIPv6 endpoint on the eventlet hub: UDP 5436 (dual stack) and optional raw Mobility
Header over IPv6, and where to send each answer.

Answers to a message go exactly where it came from; other messages to a MAAR go to the port it
last signalled from (0: it speaks raw MH), or the configured port before it has spoken.
"""
from __future__ import annotations

import socket
from typing import Callable, Optional

from eventlet.hubs import trampoline
from ryu.lib import hub

from .wire import canonical6

RECV_SIZE = 65535
RESOLVED_MAX = 4096  # cached socket addresses (a MAAR that changes its source port adds one each time)


def peer_address(host: str) -> str:
    """Canonical text of a datagram's source (scope dropped; IPv4 shows as ::ffff:a.b.c.d)."""
    return canonical6(host.split("%", 1)[0])


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


class Endpoint:
    def __init__(self, listen: str, port: int, raw_mh: bool, own_address: str, maars) -> None:
        """Opens the sockets (raises OSError). ``maars``: the signalling addresses of the domain."""
        self.port = port
        self._own = own_address
        self._maars = maars
        self.udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            self.udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            self.udp.bind((listen, port))  # no SO_REUSEADDR: a second CMD on this port fails
            self.raw = raw_mh_socket(listen) if raw_mh else None
        except OSError:
            self.udp.close()
            raise
        self._ports: dict[str, int] = {}  # MAAR -> the UDP port it last signalled from (0: raw MH)
        self._resolved: dict[tuple[str, int], tuple] = {}
        self._current: Optional[tuple[str, tuple]] = None  # (source, socket address) being answered
        self._threads: list = []

    @property
    def bound_port(self) -> int:
        return self.udp.getsockname()[1]

    def serve(self, handle: Handler) -> None:
        self._threads = [hub.spawn(self._serve_udp, handle)]  # not RyuApp.threads: stop() joins those
        if self.raw is not None:
            self._threads.append(hub.spawn(self._serve_raw, handle))

    def _serve_udp(self, handle: Handler) -> None:
        while True:
            try:
                data, addr = self.udp.recvfrom(RECV_SIZE)
            except OSError:
                return  # socket closed at shutdown
            self._dispatch(handle, data, addr, None)

    def _serve_raw(self, handle: Handler) -> None:
        while True:
            try:
                trampoline(self.raw.fileno(), read=True)  # eventlet does not green recvmsg
                data, ancdata, _flags, addr = self.raw.recvmsg(RECV_SIZE, 256)
            except BlockingIOError:
                continue
            except OSError:
                return
            dst = None
            for level, kind, value in ancdata:
                if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
                    dst = socket.inet_ntop(socket.AF_INET6, value[:16])
            if dst is None or peer_address(addr[0]) == self._own:
                continue  # no destination to verify against, or our own message seen on the way out
            self._dispatch(handle, data, (addr[0], 0), dst)

    def _dispatch(self, handle: Handler, data: bytes, addr: tuple, raw_dst: Optional[str]) -> None:
        src = peer_address(addr[0])
        if src in self._maars:
            self._ports[src] = addr[1]
        self._current = (src, addr)
        try:
            handle(data, src, addr, raw_dst)
        finally:
            self._current = None

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
        for thread in self._threads:
            hub.kill(thread)
        if self.raw is not None:
            self.raw.close()
        self.udp.close()
