"""Operators' IPsec tooling (docs/security.md): ``python -m ryu_dmm.ipsec COMMAND``.

  nft [--port 5436]                       print the require_ipsec nftables table (pipe to ``nft -f -``)
  check [--port 5436]                     say whether this namespace has it (exit 0 yes, 2 no)
  ca DIR                                  make the domain CA (DIR/ca.pem, DIR/ca.key: keep the key offline)
  issue DIR NAME ADDRESS                  a key and certificate for host NAME, identity ADDRESS, signed by DIR's CA
  swanctl ADDRESS CERT PEER=ADDR[,initiator]...  [--mode transport|tunnel]   print swanctl.conf
  strongswan-conf DIR [--kernel-esp]      print a strongswan.conf for a charon whose vici socket and log are in DIR
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import enforce, pki, strongswan


def _peer(text: str) -> strongswan.Peer:
    name, _, rest = text.partition("=")
    address, _, flag = rest.partition(",")
    if not name or not address or flag not in ("", "initiator"):
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME=ADDRESS or NAME=ADDRESS,initiator")
    return strongswan.Peer(name, address, flag == "initiator")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ryu_dmm.ipsec", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    for name in ("nft", "check"):
        p = sub.add_parser(name)
        p.add_argument("--port", type=int, default=5436)
    sub.add_parser("ca").add_argument("dir", type=Path)
    p = sub.add_parser("issue")
    p.add_argument("dir", type=Path)
    p.add_argument("name")
    p.add_argument("address")
    p = sub.add_parser("swanctl")
    p.add_argument("address")
    p.add_argument("cert")
    p.add_argument("peers", nargs="+", type=_peer)
    p.add_argument("--mode", choices=("transport", "tunnel"), default="transport")
    p.add_argument("--port", type=int, default=5436)
    p = sub.add_parser("strongswan-conf")
    p.add_argument("dir", type=Path)
    p.add_argument("--kernel-esp", action="store_true")
    args = ap.parse_args(argv)
    try:
        if args.command == "nft":
            sys.stdout.write(enforce.ruleset(args.port))
        elif args.command == "check":
            problem = enforce.check(args.port)
            print(problem or "ok: plaintext PMIPv6 signalling is dropped in this network namespace")
            return 2 if problem else 0
        elif args.command == "ca":
            print(*pki.make_ca(args.dir))
        elif args.command == "issue":
            print(*pki.issue(args.dir / "ca.pem", args.dir / "ca.key", args.dir, args.name, args.address))
        elif args.command == "swanctl":
            sys.stdout.write(strongswan.swanctl_conf(args.address, args.cert, args.peers, args.port, args.mode))
        else:
            sys.stdout.write(strongswan.strongswan_conf(args.dir, userspace_esp=not args.kernel_esp))
    except pki.PkiError as exc:
        print(f"ryu_dmm.ipsec: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
