"""OpenFlow over TLS (issue 11 item 3, docs/security.md): real Open vSwitch bridges connect to the
CMD over TLS with certificates of the domain CA, and nothing else is served on OpenFlow: a plain
TCP OpenFlow client, a TLS client without a certificate and one with a foreign CA's are refused.
Bad TLS options stop the CMD at start-up with exit 2 and one clear line."""
import json
import socket
import ssl
import subprocess
import time
import urllib.request

import pytest

from ryu_dmm import ca
from ryu_dmm.pipeline import SwitchPorts, base_flows
from tests.conftest import need
from tests.ovs import Ovs, available, cmd_domain
from tests.procs import MANAGER, clean_env, free_port, running_cmd, tcp_open, wait_for

MAARS = {"maar1": ("127.0.0.2", 1), "maar2": ("127.0.0.3", 2)}
BASE = len(base_flows(SwitchPorts(1, 2, 3, (10,))))
# OpenFlow 1.3 HELLO (OpenFlow Switch Specification 1.3.5 §7.1, §7.5.1): version 0x04, type 0
# (OFPT_HELLO), length 8, xid 1. A controller speaking plain OpenFlow answers with its own HELLO.
OF13_HELLO = bytes.fromhex("0400000800000001")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    authority = ca.create_ca(folder / "ca")
    foreign = ca.create_ca(folder / "foreign", "someone else's CA")
    return {"ca": authority, "cmd": ca.issue(authority, folder / "ca", "cmd", ips=("127.0.0.1",)),
            "switch": ca.issue(authority, folder / "ca", "switch"),
            "stranger": ca.issue(foreign, folder / "foreign", "stranger")}


def tls_args(pki, ssl_port: int) -> list[str]:
    return ["--ctl-privkey", str(pki["cmd"].key), "--ctl-cert", str(pki["cmd"].cert),
            "--ca-certs", str(pki["ca"].cert), "--ofp-ssl-listen-port", str(ssl_port)]


def domain_file(folder, rest: int, udp: int):
    path = folder / "d.ini"
    path.write_text(cmd_domain(MAARS, rest, udp))
    return path


def rest_get(port: int, path: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return json.loads(r.read())


def openflow_answer(sock: socket.socket) -> tuple[bytes, bool]:
    """Send an OpenFlow HELLO and read what comes back: up to 8 bytes, and whether the peer closed
    the connection (or reset it) within 3 s."""
    sock.settimeout(3)
    got = b""
    try:
        sock.sendall(OF13_HELLO)
        while len(got) < 8:
            chunk = sock.recv(8 - len(got))
            if not chunk:
                return got, True
            got += chunk
    except socket.timeout:
        return got, False
    except OSError:  # (ssl.SSLError too) a reset, an alert: the peer is gone
        return got, True
    return got, False


def tls_client(pki, cert=None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki["ca"].cert))
    ctx.check_hostname = False
    if cert is not None:
        ctx.load_cert_chain(str(cert.cert), str(cert.key))
    return ctx


@pytest.mark.root
def test_switches_connect_over_tls_and_nothing_else_is_served(tmp_path, pki):
    need(available(), "needs root and Open vSwitch")
    rest, udp = free_port(), free_port(socket.AF_INET, socket.SOCK_DGRAM)
    of_tcp, of_ssl = free_port(), free_port()
    config = domain_file(tmp_path, rest, udp)
    ovs = Ovs(tmp_path / "ovs")
    (tmp_path / "ovs").mkdir()
    try:
        ovs.start()
        ovs.vsctl("set-ssl", str(pki["switch"].key), str(pki["switch"].cert), str(pki["ca"].cert))
        with running_cmd(config, of_tcp, rest, tmp_path / "cmd.log", *tls_args(pki, of_ssl)):
            for name, (_, dpid) in MAARS.items():  # two switches: Ryu 4.34 alone serves only the first
                ovs.bridge(f"br{name}", dpid, of_ssl, {f"{name}core": 1, f"{name}tun": 2, f"{name}agt": 3,
                                                        f"{name}acc": 10}, scheme="ssl")
            for name in MAARS:
                assert ovs.vsctl("get-controller", f"br{name}").strip() == f"ssl:127.0.0.1:{of_ssl}"
                assert wait_for(lambda n=name: ovs.vsctl("get", "controller", f"br{n}", "is_connected").strip()
                                == "true", 20), (tmp_path / "cmd.log").read_text()
                assert wait_for(lambda n=name: len(ovs.flows(f"br{n}")) == BASE, 15), ovs.flows(f"br{name}")
            assert all(m["connected"] for m in rest_get(rest, "/dmm/v1/maars")["maars"])
            # no plain OpenFlow anywhere: the TCP port given is not listened on ...
            assert not tcp_open(of_tcp)
            # ... and a plain OpenFlow client on the TLS port gets no OpenFlow answer
            with socket.create_connection(("127.0.0.1", of_ssl), timeout=5) as plain:
                answer, closed = openflow_answer(plain)
            assert closed and not answer.startswith(b"\x04"), answer  # (at most a TLS alert, 0x15)
            # TLS without a client certificate, or with one of another CA: refused
            for who in (None, pki["stranger"]):
                raw = socket.create_connection(("127.0.0.1", of_ssl), timeout=5)
                try:
                    tls = tls_client(pki, who).wrap_socket(raw)
                except (ssl.SSLError, OSError):
                    raw.close()
                    continue  # refused in the handshake
                with tls:  # (TLS 1.3: the server checks the client's certificate after the client's side is done)
                    assert openflow_answer(tls) == (b"", True), who
            # a switch's own certificate is accepted: the CMD answers with its OpenFlow HELLO
            with tls_client(pki, pki["switch"]).wrap_socket(socket.create_connection(("127.0.0.1", of_ssl),
                                                                                     timeout=5)) as ok:
                assert openflow_answer(ok)[0][:2] == b"\x04\x00"  # version 1.3, OFPT_HELLO
            messages = rest_get(rest, "/dmm/v1/stats")["messages"]
            assert messages.get("openflow_tls_refused", 0) >= 3, messages
    finally:
        ovs.stop()


@pytest.mark.parametrize("case", ["missing key", "half a pair", "no CA", "key of another cert"])
def test_bad_tls_options_stop_the_cmd_with_a_clear_line(tmp_path, pki, case):
    args = tls_args(pki, free_port())
    if case == "missing key":
        args[1] = str(tmp_path / "nonexistent.key")
    elif case == "half a pair":
        args = args[:2] + args[4:]
    elif case == "no CA":
        args = args[:4] + args[6:]
    else:
        args[1] = str(pki["switch"].key)
    rest = free_port()
    out = subprocess.run([*MANAGER, "--wsapi-port", str(rest), "--wsapi-host", "127.0.0.1",
                          "--ofp-tcp-listen-port", str(free_port()), *args, "ryu_dmm.cmd"],
                         cwd=tmp_path, env=clean_env(tmp_path / "state"), capture_output=True, text=True, timeout=60)
    text = out.stdout + out.stderr
    assert out.returncode == 2, text
    assert "Traceback" not in text
    assert "ryu_dmm.cmd: bad configuration:" in out.stderr
    expected = {"missing key": "--ctl-cert, --ctl-privkey: cannot load", "half a pair": "needs both",
                "no CA": "needs --ca-certs", "key of another cert": "--ctl-cert, --ctl-privkey: cannot load"}[case]
    assert expected in out.stderr, out.stderr


def test_a_peer_that_never_completes_its_handshake_is_cut_off(tmp_path, pki):
    """docs/security.md: 5 s from accept to a complete TLS handshake, then the connection is closed
    and counted (neither framework bounds it: a silent peer would hold a greenthread for good)."""
    rest, of_ssl, metrics = free_port(), free_port(), free_port()
    config = tmp_path / "d.ini"
    config.write_text(cmd_domain(MAARS, rest, free_port(socket.AF_INET, socket.SOCK_DGRAM), f"metrics_port = {metrics}"))
    with running_cmd(config, free_port(), rest, tmp_path / "cmd.log", *tls_args(pki, of_ssl)):
        with socket.create_connection(("127.0.0.1", of_ssl), timeout=15) as silent:
            t0 = time.monotonic()
            try:
                closed = silent.recv(1) == b""
            except ConnectionResetError:
                closed = True
            waited = time.monotonic() - t0
        assert closed and 4.5 <= waited <= 8.0, waited
        assert rest_get(rest, "/dmm/v1/stats")["messages"]["openflow_tls_refused"] == 1
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as r:
            assert "dmm_openflow_tls_refused_total 1.0" in r.read().decode().splitlines()
        assert "TLS handshake failed" in (tmp_path / "cmd.log").read_text()
