"""A domain CA for the keys of a ryu-dmm domain: one CA, and a key and certificate per entity (the
CMD, each MAAR's switch), made with the ``openssl`` command (Debian's ``openssl`` package).

Used for OpenFlow over TLS (docs/security.md): the CMD and every switch present a certificate of
this CA and accept only peers with one. The interface is three calls, ``create_ca``, ``load_ca`` and
``issue``, returning file paths, so that another tool (say strongSwan's ``pki`` for IPsec
certificates) can stand behind the same calls. Keys are ECDSA P-256, written with mode 0600.

    python -m ryu_dmm.ca init DIR                      # DIR/ca.pem, DIR/ca.key
    python -m ryu_dmm.ca issue DIR NAME [--ip A] [--dns N]   # DIR/NAME.pem, DIR/NAME.key
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

CA_DAYS = 3650
CERT_DAYS = 825  # the longest server certificate lifetime browsers accept; renew with `issue` again
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # entity names are file names too
KEY_ARGS = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")


class CaError(RuntimeError):
    """The CA cannot be made or used (openssl missing or failing, bad name, files missing)."""


@dataclass(frozen=True)
class Ca:
    cert: Path  # PEM: give it to every peer as the CA to trust
    key: Path


@dataclass(frozen=True)
class Issued:
    name: str
    cert: Path
    key: Path
    ca_cert: Path


def _openssl(*args: str) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        raise CaError("'openssl' is missing: install Debian's openssl package")
    out = subprocess.run([exe, *args], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise CaError(f"openssl {args[0]}: {out.stderr.strip()[-400:]}")


def _private(path: Path) -> None:
    os.chmod(path, 0o600)


def create_ca(folder: Path, subject: str = "ryu-dmm domain CA", days: int = CA_DAYS) -> Ca:
    """A new CA in ``folder`` (ca.pem, ca.key); refuses to overwrite one."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ca = Ca(folder / "ca.pem", folder / "ca.key")
    if ca.cert.exists() or ca.key.exists():
        raise CaError(f"{folder} holds a CA already (ca.pem/ca.key): use it, or remove it first")
    _openssl("req", "-x509", "-new", *KEY_ARGS, "-keyout", str(ca.key), "-out", str(ca.cert),
             "-days", str(days), "-subj", f"/CN={subject}",
             "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _private(ca.key)
    return ca


def load_ca(folder: Path) -> Ca:
    ca = Ca(Path(folder) / "ca.pem", Path(folder) / "ca.key")
    for path in (ca.cert, ca.key):
        if not path.is_file():
            raise CaError(f"{path} is missing: create the CA first (python -m ryu_dmm.ca init {folder})")
    return ca


def issue(ca: Ca, folder: Path, name: str, ips: tuple[str, ...] = (), dns: tuple[str, ...] = (),
          days: int = CERT_DAYS) -> Issued:
    """A key and a certificate for ``name`` (its CN; NAME.pem, NAME.key in ``folder``) signed by
    ``ca``, good for TLS as server and as client, with ``ips`` and ``dns`` as subject alt names."""
    if not NAME.match(name):
        raise CaError(f"name {name!r}: letters, digits, '.', '_' and '-' only, at most 64")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = Issued(name, folder / f"{name}.pem", folder / f"{name}.key", ca.cert)
    try:
        alt = [f"IP:{ipaddress.ip_address(a)}" for a in ips] + [f"DNS:{d}" for d in dns]
    except ValueError as exc:
        raise CaError(str(exc)) from None
    ext = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature",
           "extendedKeyUsage=serverAuth,clientAuth"] + ([f"subjectAltName={','.join(alt)}"] if alt else [])
    with tempfile.TemporaryDirectory() as tmp:
        csr, extfile = Path(tmp) / "req.csr", Path(tmp) / "ext.cnf"
        extfile.write_text("\n".join(ext) + "\n")
        _openssl("req", "-new", *KEY_ARGS, "-keyout", str(out.key), "-out", str(csr), "-subj", f"/CN={name}")
        _private(out.key)
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
                 "-set_serial", str(secrets.randbits(63)), "-days", str(days), "-sha256",
                 "-extfile", str(extfile), "-out", str(out.cert))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ryu_dmm.ca", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="op", required=True)
    init = sub.add_parser("init", help="create the CA: DIR/ca.pem, DIR/ca.key")
    init.add_argument("dir")
    init.add_argument("--subject", default="ryu-dmm domain CA")
    iss = sub.add_parser("issue", help="a key and certificate for NAME: DIR/NAME.pem, DIR/NAME.key")
    iss.add_argument("dir")
    iss.add_argument("name")
    iss.add_argument("--ip", action="append", default=[], help="an IP address subject alt name (repeatable)")
    iss.add_argument("--dns", action="append", default=[], help="a DNS subject alt name (repeatable)")
    args = ap.parse_args(argv)
    try:
        if args.op == "init":
            ca = create_ca(Path(args.dir), args.subject)
            print(f"{ca.cert}\n{ca.key}")
        else:
            got = issue(load_ca(Path(args.dir)), Path(args.dir), args.name, tuple(args.ip), tuple(args.dns))
            print(f"{got.cert}\n{got.key}")
    except CaError as exc:
        print(f"ryu_dmm.ca: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
