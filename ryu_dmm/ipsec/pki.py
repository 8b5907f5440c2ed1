"""The domain CA and the hosts' certificates, made with strongSwan's ``pki`` (Debian strongswan-pki).

Ed25519 keys: Debian's charon has no openssl plugin, so no ECDSA; Ed25519 comes with its curve25519
plugin and is the smallest and fastest of what is left. A host's certificate names its signalling
address as an IP subjectAltName, which is its IKE identity: a MAAR's key cannot sign for another
MAAR's address.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

CA_LIFETIME_DAYS = 3650
HOST_LIFETIME_DAYS = 730


class PkiError(RuntimeError):
    pass


def _pki(*args: str, stdin: bytes | None = None) -> bytes:
    try:
        out = subprocess.run(["pki", *args], input=stdin, capture_output=True, timeout=60)
    except FileNotFoundError:
        raise PkiError("the pki command is missing (Debian package strongswan-pki)") from None
    if out.returncode != 0:
        raise PkiError(f"pki {args[0]}: {out.stderr.decode(errors='replace').strip().splitlines()[-1:]}")
    return out.stdout


def _key(path: Path) -> None:
    path.write_bytes(_pki("--gen", "--type", "ed25519", "--outform", "pem"))
    os.chmod(path, 0o600)


def make_ca(folder: Path, name: str = "ryu-dmm domain CA") -> tuple[Path, Path]:
    """A new CA in ``folder`` (ca.key, ca.pem); returns (certificate, key). Keep ca.key offline."""
    folder.mkdir(parents=True, exist_ok=True)
    key, cert = folder / "ca.key", folder / "ca.pem"
    _key(key)
    cert.write_bytes(_pki("--self", "--ca", "--lifetime", str(CA_LIFETIME_DAYS), "--in", str(key), "--type",
                          "ed25519", "--dn", f"CN={name}", "--outform", "pem"))
    return cert, key


def issue(ca_cert: Path, ca_key: Path, folder: Path, name: str, address: str) -> tuple[Path, Path]:
    """A key and certificate for host ``name`` whose signalling address is ``address``:
    ``folder/name.key``, ``folder/name.pem``."""
    folder.mkdir(parents=True, exist_ok=True)
    key, cert = folder / f"{name}.key", folder / f"{name}.pem"
    _key(key)
    public = _pki("--pub", "--in", str(key), "--outform", "pem")
    cert.write_bytes(_pki("--issue", "--lifetime", str(HOST_LIFETIME_DAYS), "--cacert", str(ca_cert), "--cakey",
                          str(ca_key), "--type", "pub", "--dn", f"CN={name}", "--san", address, "--flag",
                          "serverAuth", "--flag", "clientAuth", "--outform", "pem", stdin=public))
    return cert, key
