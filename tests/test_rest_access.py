"""Issue 11 item 4: who may use the CMD's REST API and metrics (docs/security.md).

Unit cases for ``[rest]`` and the listener rule; then the real ``ryu-manager``: a listener on a
non-loopback address refused at start without TLS and a token; served on 0.0.0.0 with TLS
(a self-signed certificate made here with the openssl CLI) and a bearer token: 401 without or
with a wrong token, 200 with it, the token never in the log; client certificates instead of a token.
"""
import json
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ryu_dmm import domainconf, httpaccess
from ryu_dmm.domainconf import ConfigError, RestSettings
from tests.procs import MANAGER, clean_env, free_port, running_cmd, wait_for

TOKEN = "s3cr3t-" + "a1b2c3d4" * 4  # 39 characters of RFC 6750 b64token
BASE = "[dmm]\ncmd_address = ::1\n"


def parse_rest(text: str, tmp_path: Path) -> RestSettings:
    path = tmp_path / "d.ini"
    path.write_text(BASE + "[rest]\n" + text)
    return domainconf.load(str(path))[1].rest


# ---- [rest] in the configuration --------------------------------------------------------------------
def test_rest_defaults_to_nothing_required(tmp_path):
    assert parse_rest("", tmp_path) == RestSettings()
    assert domainconf.parse(BASE)[1].rest == RestSettings()


def test_token_file_is_read_relative_to_the_configuration_and_never_shown(tmp_path):
    (tmp_path / "token").write_text(TOKEN + "\n")
    rest = parse_rest("token_file = token\n", tmp_path)
    assert rest.token == TOKEN and TOKEN not in repr(rest) and TOKEN not in repr(domainconf.load(
        str(tmp_path / "d.ini")))


@pytest.mark.parametrize("text, message", [
    ("token = short\n", "[rest] token: a token is 16..4096 characters"),
    ("token = has spaces in it, really\n", "[rest] token: a token is"),
    (f"token = {TOKEN}\ntoken_file = t\n", "[rest] token, token_file: give one of them"),
    ("token_file = /nonexistent/token\n", "[rest] token_file: cannot read /nonexistent/token"),
    ("tls_cert = c.pem\n", "[rest] tls_cert, tls_key: give both"),
    ("tls_key = k.pem\n", "[rest] tls_cert, tls_key: give both"),
    ("client_ca = ca.pem\n", "[rest] client_ca: client certificates need TLS"),
    ("allow = 10.0.0.0/8, nowhere\n", "[rest] allow: 'nowhere' is not an address"),
    ("password = x\n", "[rest] password: unknown key"),
])
def test_bad_rest_keys_are_refused_by_name(tmp_path, text, message):
    with pytest.raises(ConfigError) as exc:
        parse_rest(text, tmp_path)
    assert message in str(exc.value)


def test_a_bad_token_is_not_echoed_in_the_error(tmp_path):
    with pytest.raises(ConfigError) as exc:
        parse_rest("token = almost-a-good-token but not\n", tmp_path)
    assert "almost" not in str(exc.value)


# ---- the listener rule ------------------------------------------------------------------------------
TLS_TOKEN = RestSettings(token=TOKEN, tls_cert="/c", tls_key="/k")


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost", "::ffff:127.0.0.1"])
def test_loopback_listeners_need_nothing(host):
    httpaccess.check_listener("[DEFAULT] wsapi_host", host, RestSettings())


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", "2001:db8::1", "cmd.example.org"])
@pytest.mark.parametrize("rest, missing", [
    (RestSettings(), "tls_cert and tls_key and token_file"),
    (RestSettings(token=TOKEN), "tls_cert and tls_key (docs"),
    (RestSettings(tls_cert="/c", tls_key="/k"), "token_file (or token, or client_ca)"),
])
def test_other_listeners_need_tls_and_a_credential(host, rest, missing):
    with pytest.raises(ValueError) as exc:
        httpaccess.check_listener("[DEFAULT] wsapi_host", host, rest)
    assert f"[DEFAULT] wsapi_host = {host} is not a loopback address" in str(exc.value)
    assert missing in str(exc.value)


@pytest.mark.parametrize("rest", [TLS_TOKEN, RestSettings(tls_cert="/c", tls_key="/k", client_ca="/ca")])
def test_tls_with_a_token_or_client_certificates_may_listen_anywhere(rest):
    httpaccess.check_listener("[dmm] metrics_listen", "0.0.0.0", rest)


# ---- the request checks (a WSGI app behind httpaccess.guarded) --------------------------------------
def call(app, headers=None, remote="127.0.0.1"):
    got = {}

    def start_response(status, hdrs):
        got["status"], got["headers"] = status, dict(hdrs)
    environ = {"REMOTE_ADDR": remote, "PATH_INFO": "/", **(headers or {})}
    body = b"".join(app(environ, start_response))
    return int(got["status"].split()[0]), got["headers"], body


def inner(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b"{}"]


def test_without_allow_or_token_the_app_is_served_as_it_is():
    assert httpaccess.guarded(inner, RestSettings(), lambda r: None) is inner


def test_token_checks():
    refused = []
    app = httpaccess.guarded(inner, RestSettings(token=TOKEN), refused.append)
    status, headers, body = call(app)
    assert status == 401 and headers["WWW-Authenticate"] == 'Bearer realm="ryu-dmm"'
    assert json.loads(body) == {"error": "unauthorized: send Authorization: Bearer <token>", "status": 401}
    status, headers, body = call(app, {"HTTP_AUTHORIZATION": "Bearer " + TOKEN[:-1] + "x"})
    assert status == 401 and 'error="invalid_token"' in headers["WWW-Authenticate"] and TOKEN not in body.decode()
    assert call(app, {"HTTP_AUTHORIZATION": "Basic " + TOKEN})[0] == 401
    assert call(app, {"HTTP_AUTHORIZATION": "Bearer " + TOKEN + TOKEN})[0] == 401  # a longer one
    assert call(app, {"HTTP_AUTHORIZATION": "Bearer caf\xe9"})[0] == 401  # not ASCII: no crash
    assert call(app, {"HTTP_AUTHORIZATION": "bearer " + TOKEN})[0] == 200  # the scheme is case-insensitive
    assert refused == ["unauthorized"] * 5


def test_allow_list_answers_403_before_the_token():
    import ipaddress
    refused = []
    rest = RestSettings(token=TOKEN, allow=(ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128")))
    app = httpaccess.guarded(inner, rest, refused.append)
    auth = {"HTTP_AUTHORIZATION": "Bearer " + TOKEN}
    status, _, body = call(app, auth, remote="192.0.2.7")
    assert status == 403 and json.loads(body)["status"] == 403
    assert call(app, auth, remote="10.1.2.3")[0] == 200
    assert call(app, auth, remote="::ffff:10.1.2.3")[0] == 200  # an IPv4 client on a dual-stack socket
    assert call(app, auth, remote="::1")[0] == 200
    assert call(app, {}, remote="10.1.2.3")[0] == 401
    assert call(app, auth, remote="not an address")[0] == 403
    assert refused == ["forbidden", "unauthorized", "forbidden"]


# ---- the real CMD ------------------------------------------------------------------------------------
def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1 and a client certificate, both signed by the CA."""
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
            "-subj", "/CN=ryu-dmm test CA", cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"), ("client", "extendedKeyUsage=clientAuth")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}", cwd=d)
        (d / f"{name}.ext").write_text(ext + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext", cwd=d)
    return d


def cmd_config(tmp: Path, rest: int, metrics: int, host: str, extra: str = "") -> Path:
    path = tmp / "d.ini"
    path.write_text(f"[DEFAULT]\n{host}wsapi_port = {rest}\n[dmm]\ncmd_address = ::1\nport = "
                    f"{free_port(socket.AF_INET, socket.SOCK_DGRAM)}\nmetrics_port = {metrics}\n"
                    f"metrics_listen = 0.0.0.0\n[store]\nbackend = memory\n{extra}")
    return path


def test_a_non_loopback_listener_without_tls_and_token_stops_the_start(tmp_path):
    path = cmd_config(tmp_path, free_port(), 0, "wsapi_host = 0.0.0.0\n", f"[rest]\ntoken = {TOKEN}\n")
    out = subprocess.run([*MANAGER, "--config-file", str(path), "--ofp-tcp-listen-port", str(free_port()),
                          "ryu_dmm.cmd"], cwd=tmp_path, env=clean_env(tmp_path), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2, out.stderr
    assert ("bad configuration: [DEFAULT] wsapi_host = 0.0.0.0 is not a loopback address: serving there needs "
            "[rest] tls_cert and tls_key (docs/security.md)") in out.stderr
    assert TOKEN not in out.stderr + out.stdout


def test_metrics_on_a_non_loopback_address_is_held_to_the_same_rule(tmp_path):
    path = cmd_config(tmp_path, free_port(), free_port(), "")  # REST on its default (localhost)
    out = subprocess.run([*MANAGER, "--config-file", str(path), "--ofp-tcp-listen-port", str(free_port()),
                          "ryu_dmm.cmd"], cwd=tmp_path, env=clean_env(tmp_path), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and "[dmm] metrics_listen = 0.0.0.0 is not a loopback address" in out.stderr


def listening_addresses(port: int) -> set:
    """Local addresses of the TCP sockets listening on ``port`` (from /proc/net/tcp and tcp6)."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, _, hexport = local.partition(":")
            if state == "0A" and int(hexport, 16) == port:
                out.add(addr)
    return out


def test_rest_listens_on_localhost_when_the_file_names_no_address(tmp_path):
    rest = free_port()
    path = cmd_config(tmp_path, rest, 0, "").with_name("d.ini")
    path.write_text(path.read_text().replace("metrics_listen = 0.0.0.0\n", ""))
    with running_cmd(path, free_port(), rest, tmp_path / "cmd.log"):
        assert listening_addresses(rest) == {"0100007F"}  # 127.0.0.1, not 0.0.0.0 (Ryu's own default)


def https(port: int, path: str, ca: Path, token=None, cert=None):
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(*cert)
    req = urllib.request.Request(f"https://127.0.0.1:{port}{path}")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


@pytest.fixture(scope="module")
def tls_cmd(pki, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tlscmd")
    (tmp / "token").write_text(TOKEN + "\n")
    rest, metrics = free_port(), free_port()
    path = cmd_config(tmp, rest, metrics, "wsapi_host = 0.0.0.0\n",
                      f"[rest]\ntoken_file = token\ntls_cert = {pki}/server.pem\ntls_key = {pki}/server.key\n")
    log = tmp / "cmd.log"
    with running_cmd(path, free_port(), rest, log):
        assert wait_for(lambda: listening_addresses(metrics), 10)
        yield {"rest": rest, "metrics": metrics, "log": log, "ca": pki / "ca.pem"}


def test_on_0000_with_tls_a_request_without_token_gets_401(tls_cmd):
    status, headers, body = https(tls_cmd["rest"], "/dmm/v1/stats", tls_cmd["ca"])
    assert status == 401 and headers["WWW-Authenticate"] == 'Bearer realm="ryu-dmm"'
    assert headers["Content-Type"].startswith("application/json") and json.loads(body)["status"] == 401


def test_on_0000_with_tls_a_wrong_token_gets_401_and_the_right_one_200(tls_cmd):
    status, headers, _ = https(tls_cmd["rest"], "/dmm/v1/stats", tls_cmd["ca"], token=TOKEN.upper())
    assert status == 401 and 'error="invalid_token"' in headers["WWW-Authenticate"]
    status, _, body = https(tls_cmd["rest"], "/dmm/v1/stats", tls_cmd["ca"], token=TOKEN)
    stats = json.loads(body)
    assert status == 200 and stats["messages"]["http_refused.rest.unauthorized"] >= 1 and "protocol" in stats
    assert TOKEN not in tls_cmd["log"].read_text()


def test_metrics_are_served_over_tls_with_the_same_token(tls_cmd):
    assert https(tls_cmd["metrics"], "/metrics", tls_cmd["ca"])[0] == 401
    status, _, body = https(tls_cmd["metrics"], "/metrics", tls_cmd["ca"], token=TOKEN)
    assert status == 200 and b'dmm_http_refused_total{listener="metrics",reason="unauthorized"} 1.0' in body


def test_plain_http_to_the_tls_port_gets_no_answer_and_the_server_goes_on(tls_cmd):
    with socket.create_connection(("127.0.0.1", tls_cmd["rest"]), timeout=5) as s:
        s.sendall(b"GET /dmm/v1/stats HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            reply = s.recv(4096)
        except ConnectionResetError:
            reply = b""
    assert not reply.startswith(b"HTTP/1.1 200")
    assert https(tls_cmd["rest"], "/dmm/v1/stats", tls_cmd["ca"], token=TOKEN)[0] == 200


def test_client_certificates_instead_of_a_token(pki, tmp_path):
    rest = free_port()
    path = cmd_config(tmp_path, rest, 0, "wsapi_host = 0.0.0.0\n",
                      f"[rest]\ntls_cert = {pki}/server.pem\ntls_key = {pki}/server.key\nclient_ca = {pki}/ca.pem\n")
    with running_cmd(path, free_port(), rest, tmp_path / "cmd.log"):
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            https(rest, "/dmm/v1/stats", pki / "ca.pem")  # no client certificate: the handshake fails
        cert = (str(pki / "client.pem"), str(pki / "client.key"))
        assert https(rest, "/dmm/v1/stats", pki / "ca.pem", cert=cert)[0] == 200
