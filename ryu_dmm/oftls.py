"""OpenFlow over TLS between the CMD and its switches (docs/security.md, "OpenFlow over TLS").

The framework's own options turn it on: ``--ctl-privkey``, ``--ctl-cert`` and ``--ca-certs`` (or
``ctl_privkey``, ``ctl_cert``, ``ca_certs`` in ``[DEFAULT]``), with ``--ofp-ssl-listen-port``. With a
key and certificate, Ryu and os-ken listen for OpenFlow on the SSL port only: no plain TCP listener.
This module checks those options when the CMD starts (a missing or bad file, or half a key pair,
stops it with exit 2 before anything is bound: Ryu would load the files only at the first switch's
connection, or silently serve plain TCP with half a pair) and takes over the TLS handshake of the
framework's OpenFlow server, because:

* Ryu 4.34's server (``ryu.lib.hub.StreamServer``) pops its SSL context out of its arguments at the
  first connection, so every later switch's handshake fails (os-ken fixed that);
* neither bounds the handshake: a peer that connects and sends nothing holds a greenthread forever;
* a failed handshake (a plain TCP OpenFlow client, a client without a certificate of the CA) should
  cost one counter and one rate-limited line, not a traceback.

So the CMD's context (TLS 1.2 at least, a client certificate of ``ca_certs`` required) is built
once and each accepted connection gets ``HANDSHAKE_TIMEOUT`` seconds to complete its handshake.
"""
from __future__ import annotations

import importlib
import socket
import ssl
from dataclasses import dataclass
from typing import Callable, Optional

from .httpaccess import tls_server_context
from .runtime import hub

HANDSHAKE_TIMEOUT = 5.0  # seconds from accept to a complete TLS handshake; OVS's takes milliseconds


@dataclass(frozen=True)
class OfTls:
    privkey: str
    cert: str
    ca_certs: str


def from_conf(conf) -> Optional[OfTls]:
    """The TLS settings of the framework's configuration ``conf``, or None for plain TCP.
    ValueError (a message for the operator) when they are incomplete."""
    key, cert, ca = conf.ctl_privkey, conf.ctl_cert, conf.ca_certs
    if not key and not cert:
        if ca:
            raise ValueError("--ca-certs without --ctl-privkey and --ctl-cert: OpenFlow would be plain TCP")
        return None
    if not key or not cert:
        # Ryu and os-ken would then quietly listen in plain TCP
        raise ValueError(f"OpenFlow TLS needs both --ctl-privkey and --ctl-cert (only "
                         f"{'--ctl-privkey' if key else '--ctl-cert'} given)")
    if not ca:
        raise ValueError("OpenFlow TLS needs --ca-certs: the switches are authenticated by certificates of "
                         "that CA (docs/security.md)")
    if conf.ofp_ssl_listen_port is None and conf.ofp_tcp_listen_port is not None:
        raise ValueError("with OpenFlow TLS give --ofp-ssl-listen-port (the CMD listens on it only; "
                         "--ofp-tcp-listen-port is not used)")
    return OfTls(key, cert, ca)


def context(tls: OfTls) -> ssl.SSLContext:
    """The server context; ValueError naming the option whose file cannot be used."""
    return tls_server_context(tls.cert, tls.privkey, tls.ca_certs, "--ctl-cert, --ctl-privkey", "--ca-certs")


def install(ctx: ssl.SSLContext, framework: str, refused: Callable[[tuple, BaseException], None]) -> None:
    """Make the framework's OpenFlow server hand every accepted connection to ``ctx`` (replaces
    ``StreamServer`` in its ``controller`` module, which the OpenFlow controller calls when it
    starts, after the apps are made). ``refused(addr, exc)``: a failed handshake (the socket is
    closed)."""
    controller = importlib.import_module(f"{framework}.controller.controller")
    base = getattr(controller.StreamServer, "wrapped", controller.StreamServer)

    def server(listen_info, handle=None, backlog=None, spawn="default", **ssl_args):
        srv = base(listen_info, handle)  # the listener, plain: the handshake is ours
        if ssl_args:
            srv.handle = lambda sock, addr: handshake(ctx, sock, addr, handle, refused)
        return srv
    server.wrapped = base
    controller.StreamServer = server


class HandshakeTimeout(Exception):
    def __str__(self) -> str:
        return f"no complete TLS handshake within {HANDSHAKE_TIMEOUT:g} s"


def handshake(ctx: ssl.SSLContext, sock: socket.socket, addr, handle, refused) -> None:
    """TLS on an accepted connection within HANDSHAKE_TIMEOUT, then the framework's ``handle``."""
    deadline = hub.Timeout(HANDSHAKE_TIMEOUT, HandshakeTimeout())
    tls = None
    try:
        tls = ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        tls.do_handshake()
    except (OSError, ValueError, HandshakeTimeout) as exc:  # (ssl.SSLError is an OSError)
        (tls or sock).close()  # (wrapping detached ``sock``: its descriptor is the TLS socket's now)
        refused(addr, exc)
        return
    finally:
        deadline.cancel()
    handle(tls, addr)
