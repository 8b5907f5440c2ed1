"""Who may use the CMD's HTTP listeners (REST and metrics): the rule, the TLS context, the check of
each request (docs/security.md).

The rule: a listener on a loopback address may serve plain HTTP; on any other address (a wildcard
included) it must have TLS and a bearer token or client certificates, else the CMD does not start.
A configured token is required on every listener, loopback too. Refusals are JSON: 403 for a
client outside ``[rest] allow``, 401 with ``WWW-Authenticate: Bearer`` for a missing or wrong
token (RFC 6750 §3). The token is compared in constant time and never logged.
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import ssl
from typing import Callable, Optional

from eventlet.green import ssl as green_ssl

from .domainconf import RestSettings

REALM = "ryu-dmm"
DEFAULT_HOST = "127.0.0.1"  # REST's [DEFAULT] wsapi_host unless the configuration sets one


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address literal, or ``localhost``) is a loopback address. A name other
    than ``localhost`` counts as not loopback: what it resolves to may change."""
    if host.strip().lower() == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(host.strip().strip("[]"))
    except ValueError:
        return False
    mapped = getattr(addr, "ipv4_mapped", None)
    return (mapped or addr).is_loopback


def check_listener(what: str, host: str, rest: RestSettings) -> None:
    """ValueError (a message for the operator) unless a listener on ``host`` may be served with ``rest``."""
    if is_loopback(host) or (rest.tls and (rest.token is not None or rest.client_ca is not None)):
        return
    missing = []
    if not rest.tls:
        missing.append("tls_cert and tls_key")
    if rest.token is None and rest.client_ca is None:
        missing.append("token_file (or token, or client_ca)")
    raise ValueError(f"{what} = {host} is not a loopback address: serving there needs [rest] "
                     f"{' and '.join(missing)} (docs/security.md); or listen on 127.0.0.1 or ::1")


def server_context(rest: RestSettings) -> Optional[ssl.SSLContext]:
    """The TLS context of the listeners (a green one: handshakes yield to the hub), or None without
    TLS. ValueError naming the key if a file cannot be used."""
    if not rest.tls:
        return None
    return tls_server_context(rest.tls_cert, rest.tls_key, rest.client_ca,
                              "[rest] tls_cert, tls_key", "[rest] client_ca")


def tls_server_context(cert: str, key: str, client_ca: Optional[str], names: str,
                       ca_name: str) -> ssl.SSLContext:
    """A green TLS server context (TLS 1.2 at least) with ``cert`` and ``key``; with ``client_ca``,
    peers must present a certificate it signed. ValueError naming the settings (``names``,
    ``ca_name``) if a file cannot be used: the caller stops start-up with it (exit 2)."""
    ctx = green_ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"{names}: cannot load {cert} with {key}: "
                         f"{getattr(exc, 'strerror', None) or exc}") from None
    if client_ca is not None:
        try:
            ctx.load_verify_locations(cafile=client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"{ca_name}: cannot load {client_ca}: "
                             f"{getattr(exc, 'strerror', None) or exc}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _refusal(start_response, status: int, message: str, headers=()) -> list[bytes]:
    body = json.dumps({"error": message, "status": status}, sort_keys=True).encode()
    reason = {401: "Unauthorized", 403: "Forbidden"}[status]
    start_response(f"{status} {reason}", [("Content-Type", "application/json; charset=utf-8"),
                                          ("Content-Length", str(len(body))), *headers])
    return [body]


def guarded(app, rest: RestSettings, refused: Callable[[str], None]):
    """``app`` behind the checks of ``rest``; ``refused(reason)`` counts each refusal ("forbidden",
    "unauthorized"). Without ``allow`` and token, ``app`` itself."""
    if not rest.allow and rest.token is None:
        return app
    token = rest.token.encode() if rest.token is not None else None
    allow = rest.allow

    def checked(environ, start_response):
        if allow:
            try:
                addr = ipaddress.ip_address(environ.get("REMOTE_ADDR", "").split("%", 1)[0])
                addr = getattr(addr, "ipv4_mapped", None) or addr
            except ValueError:
                addr = None
            if addr is None or not any(addr.version == net.version and addr in net for net in allow):
                refused("forbidden")
                return _refusal(start_response, 403, "forbidden: this address may not use this API ([rest] allow)")
        if token is not None:
            scheme, _, given = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
            if scheme.lower() != "bearer" or not given.strip():
                refused("unauthorized")
                return _refusal(start_response, 401, "unauthorized: send Authorization: Bearer <token>",
                                [("WWW-Authenticate", f'Bearer realm="{REALM}"')])
            if not hmac.compare_digest(given.strip().encode("latin-1", "replace"), token):
                refused("unauthorized")
                return _refusal(start_response, 401, "unauthorized: wrong token",
                                [("WWW-Authenticate", f'Bearer realm="{REALM}", error="invalid_token"')])
        return app(environ, start_response)
    return checked
