"""The domain CA (ryu_dmm/ca.py), judged by openssl itself: the chain verifies, the names and uses
are what was asked for, keys are private, and mistakes get a clear error."""
import stat
import subprocess

import pytest

from ryu_dmm import ca


def openssl(*args: str) -> str:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=True, timeout=30).stdout


def test_issued_certificate_verifies_against_the_ca_only(tmp_path):
    authority = ca.create_ca(tmp_path / "ca")
    other = ca.create_ca(tmp_path / "other")
    got = ca.issue(authority, tmp_path / "ca", "cmd", ips=("2001:db8:ff::100",), dns=("cmd.example",))
    assert openssl("verify", "-CAfile", str(authority.cert), str(got.cert)).strip().endswith(": OK")
    bad = subprocess.run(["openssl", "verify", "-CAfile", str(other.cert), str(got.cert)], capture_output=True)
    assert bad.returncode != 0
    text = openssl("x509", "-in", str(got.cert), "-noout", "-subject", "-ext",
                   "subjectAltName,extendedKeyUsage,basicConstraints")
    assert "CN = cmd" in text and "IP Address:2001:DB8:FF:0:0:0:0:100" in text and "DNS:cmd.example" in text
    assert "TLS Web Server Authentication" in text and "TLS Web Client Authentication" in text
    assert "CA:FALSE" in text
    assert "CA:TRUE" in openssl("x509", "-in", str(authority.cert), "-noout", "-ext", "basicConstraints")
    for key in (authority.key, got.key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "ASN1 OID: prime256v1" in openssl("pkey", "-in", str(got.key), "-noout", "-text")


def test_mistakes_are_refused_clearly(tmp_path, capsys):
    authority = ca.create_ca(tmp_path)
    with pytest.raises(ca.CaError, match="holds a CA already"):
        ca.create_ca(tmp_path)
    with pytest.raises(ca.CaError, match="name"):
        ca.issue(authority, tmp_path, "../evil")
    with pytest.raises(ca.CaError, match="does not appear to be an IPv4 or IPv6 address"):
        ca.issue(authority, tmp_path, "x", ips=("not-an-ip",))
    assert ca.main(["issue", str(tmp_path / "none"), "cmd"]) == 2
    assert "create the CA first" in capsys.readouterr().err
