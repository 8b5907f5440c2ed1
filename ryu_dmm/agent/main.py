"""``ryu-dmm-maar --config FILE --name NAME``: one MAAR's signalling agent.

It runs ``MaarCore`` behind a UDP socket on the MAAR's address (port 5436) and a control socket
(a Unix datagram socket taking JSON requests) through which an explicit attach trigger, a lower-layer
hint, arrives (and through which tools read its state and events). Events are also written to stdout
as JSON lines.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time
from typing import Optional

from .. import domainconf
from ..mobility.events import (
    Advertise, Attach, CancelTimer, DataPlaneChanged, Detach, Received, Report, Send, SetTimer, TimerFired,
)
from ..mobility.maar import MaarCore
from ..wire import DecodeError, canonical6, decode, encode, mac_text, parse_mac
from . import nd
from .loop import Loop

MAX_EVENTS = 10_000


def describe(effect) -> Optional[dict]:
    """JSON view of an effect worth showing outside (reports, data-plane changes, RAs)."""
    kind = type(effect)
    if kind is Report:
        return {"event": "report", "kind": effect.kind.value, "mn": effect.mn_id, "detail": effect.detail,
                "status": effect.status}
    if kind is DataPlaneChanged:
        s = effect.state
        return {"event": "dataplane", "mn": effect.mn_id,
                "local": [str(r.prefix) for r in s.local],
                "to_serving": [[str(t.prefix), t.serving_maar] for t in s.to_serving],
                "to_anchor": [[str(t.prefix), t.anchor_maar] for t in s.to_anchor]}
    if kind is Advertise:
        return {"event": "advertise", "mn": effect.mn_id, "port": effect.port,
                "prefixes": [{"prefix": str(p.prefix), "preferred": p.preferred, "valid": p.valid,
                              "dlif": p.dlif} for p in effect.prefixes]}
    return None


def mn_id_of(mac: bytes, realm: str = "dmm") -> str:
    """The NAI the agent gives an MN it detects from its Router Solicitation."""
    return f"mn-{mac.hex()}@{realm}"


class Agent:
    def __init__(self, config: str, name: str, port: int, control: str, cmd_port: int,
                 access_iface: Optional[str] = None, access_port: int = 0) -> None:
        self.domain, _ = domainconf.load(config)
        self.core = MaarCore(self.domain, name)
        self.port, self.cmd_port = port, cmd_port
        self.loop = Loop(lambda key: self._handle(TimerFired(key)))
        self.events: list[dict] = []
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        self.sock.bind((self.core.address, port))
        self.loop.add_reader(self.sock, self._on_signalling)
        if os.path.exists(control):
            os.unlink(control)
        self.control_path = control
        self.control = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.control.bind(control)
        self.loop.add_reader(self.control, self._on_control)
        # The access links: ND from the MNs reaches us on the switch's agent port (see the pipeline).
        self.access = None
        self.access_port = access_port
        self._mn_ll: dict[str, tuple[bytes, str]] = {}  # MN -> (MAC, link-local) from its RS
        if access_iface:
            self.access = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(nd.ETH_IPV6))
            self.access.bind((access_iface, 0))
            self.loop.add_reader(self.access, self._on_access)

    def _handle(self, event) -> None:
        now = time.time()
        for e in self.core.handle(event, now):
            kind = type(e)
            if kind is Send:
                port = self.cmd_port if e.dst == self.core.cmd else self.port
                try:
                    self.sock.sendto(encode(e.msg), (e.dst, port))
                except OSError as exc:
                    self._record({"event": "send-error", "dst": e.dst, "error": str(exc)}, now)
            elif kind is SetTimer:
                self.loop.timers.set(e.key, e.at)
            elif kind is CancelTimer:
                self.loop.timers.cancel(e.key)
            else:
                if kind is Advertise and self.access is not None:
                    self._send_ra(e)
                view = describe(e)
                if view is not None:
                    self._record(view, now)

    def _record(self, view: dict, now: float) -> None:
        view["t"] = now
        view["maar"] = self.core.info.name
        self.events.append(view)
        del self.events[:-MAX_EVENTS]
        print(json.dumps(view), flush=True)

    def _on_access(self) -> None:
        frame = self.access.recv(65535)
        sol = nd.parse(frame)
        if sol is None or sol.src_mac == self.core.info.mac:
            return
        if sol.kind == nd.RS:
            mn = mn_id_of(sol.src_mac)
            if sol.src_ip != "::":
                self._mn_ll[mn] = (sol.src_mac, sol.src_ip)
            self._record({"event": "rs", "mn": mn, "mac": mac_text(sol.src_mac)}, time.time())
            self._handle(Attach(mn, sol.src_mac, self.access_port))
        elif sol.kind == nd.NS and sol.src_ip != "::":
            mac = self._dlif_macs().get(sol.target)
            if mac is not None:
                self.access.send(nd.neighbor_advertisement(mac, sol.target, sol.src_mac, sol.src_ip))

    def _dlif_macs(self) -> dict[str, bytes]:
        """Link-local -> MAC of every logical interface we present: our own and, for each MAAR that
        anchors a prefix of an MN served here, that MAAR's DLIF (RFC 8885 §3.7)."""
        own = self.core.info
        out = {own.link_local: own.mac}
        for b in self.core.bindings.values():
            for anchor in b.anchors:
                info = self.core.peers.get(anchor)
                if info is not None:
                    out[info.link_local] = info.mac
        return out

    def _send_ra(self, adv: Advertise) -> None:
        mac, ll = self._mn_ll.get(adv.mn_id, (adv.mac, nd.ALL_NODES))
        try:
            for frame in nd.ra_frames(self.core.info, self.core.peers, mac, ll, adv.prefixes):
                self.access.send(frame)
        except OSError as exc:
            self._record({"event": "send-error", "dst": adv.mn_id, "error": str(exc)}, time.time())

    def _on_signalling(self) -> None:
        data, addr = self.sock.recvfrom(65535)
        try:
            msg = decode(data)
        except DecodeError as exc:
            self._record({"event": "decode-error", "src": addr[0], "error": str(exc)}, time.time())
            return
        self._handle(Received(canonical6(addr[0].split("%", 1)[0]), msg))

    def _on_control(self) -> None:
        data, peer = self.control.recvfrom(65535)
        try:
            reply = self._control(json.loads(data))
        except (ValueError, KeyError, TypeError) as exc:
            reply = {"ok": False, "error": f"bad request: {exc}"}
        if peer:
            try:
                self.control.sendto(json.dumps(reply).encode(), peer)
            except OSError:
                pass

    def _control(self, req: dict) -> dict:
        op = req["op"]
        if op == "attach":
            self._handle(Attach(str(req["mn"]), parse_mac(req["mac"]), int(req["port"])))
            return {"ok": True, "t": time.time()}
        if op == "detach":
            self._handle(Detach(str(req["mn"])))
            return {"ok": True, "t": time.time()}
        if op == "events":
            since = int(req.get("since", 0))
            return {"ok": True, "events": self.events[since:], "next": len(self.events)}
        if op == "state":
            return {"ok": True, "name": self.core.info.name, "pool_in_use": self.core.pool.in_use,
                    "bindings": {mn: describe(DataPlaneChanged(mn, self.core.dataplane(mn)))
                                 for mn in self.core.bindings}}
        raise ValueError(f"unknown op {op!r}")

    def close(self) -> None:
        self.sock.close()
        self.control.close()
        if self.access is not None:
            self.access.close()
        if os.path.exists(self.control_path):
            os.unlink(self.control_path)


def request(control: str, req: dict, timeout: float = 2.0) -> dict:
    """Send one JSON request to an agent's control socket and return its reply."""
    me = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = f"{control}.{os.getpid()}.{time.monotonic_ns()}"
    me.bind(path)
    try:
        me.settimeout(timeout)
        me.sendto(json.dumps(req).encode(), control)
        return json.loads(me.recv(1 << 20))
    finally:
        me.close()
        os.unlink(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="ryu-dmm-maar", description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="the domain configuration file (as for the CMD)")
    ap.add_argument("--name", required=True, help="this MAAR's name: its [maar:NAME] section")
    ap.add_argument("--port", type=int, default=5436, help="PMIPv6 UDP port to listen on (default 5436)")
    ap.add_argument("--cmd-port", type=int, default=None, help="the CMD's port (default: [dmm] port)")
    ap.add_argument("--control", default=None, help="control socket path (default /tmp/ryu-dmm-NAME.sock)")
    ap.add_argument("--access-iface", default=None,
                    help="interface of the switch's agent port: RS/NS from MNs arrive there, RA/NA leave there")
    ap.add_argument("--access-port", type=int, default=0, help="OpenFlow port number of the MNs' access link")
    args = ap.parse_args(argv)
    try:
        domain, settings = domainconf.load(args.config)
        domain.maar(args.name)
    except domainconf.ConfigError as exc:
        print(f"ryu-dmm-maar: bad configuration: {exc}", file=sys.stderr)
        return 2
    except KeyError:
        print(f"ryu-dmm-maar: no [maar:{args.name}] in {args.config}", file=sys.stderr)
        return 2
    try:
        agent = Agent(args.config, args.name, args.port, args.control or f"/tmp/ryu-dmm-{args.name}.sock",
                      args.cmd_port or settings.port, args.access_iface, args.access_port)
    except OSError as exc:
        print(f"ryu-dmm-maar: cannot open sockets: {exc}", file=sys.stderr)
        return 1

    def stop(_signum, _frame):
        agent.loop.running = False
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(json.dumps({"event": "started", "maar": args.name, "address": agent.core.address, "port": args.port}),
          flush=True)
    try:
        agent.loop.run()
    finally:
        agent.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
