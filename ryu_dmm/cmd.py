"""The CMD as a Ryu application: ``ryu-manager [--config-file FILE] ryu_dmm.cmd``.

A thin shell around ``mobility.cmd.CmdCore``: PMIPv6 over UDP 5436 (IPv6 and IPv4 on one
dual-stack socket), the core's timers on the eventlet hub, OpenFlow 1.3 towards the MAARs' switches,
and the REST API of ``ryu_dmm.rest``. See docs/architecture.md.
"""
import logging
import os
import signal
import socket
import sys
import time

import greenlet
from eventlet.hubs import trampoline
from ryu import cfg
from ryu.app.wsgi import WSGIApplication
from ryu.base import app_manager
from ryu.controller import ofp_event
from ryu.controller.handler import CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from ryu.lib import hub
from ryu.lib.packet import ethernet, icmpv6, packet
from ryu.ofproto import ofproto_v1_3

from . import domainconf, ofsync, pipeline, rest
from .hubtimers import HubTimers
from .mobility.cmd import CmdCore
from .mobility.events import CancelTimer, Received, Report, Send, SetTimer, TimerFired
from .mobility.views import dataplanes
from .stats import Stats
from .wire import BindingAck, DecodeError, canonical6, decode, encode


def install_clean_exit(logger) -> None:
    """Make SIGINT/SIGTERM end ``ryu-manager`` through its own ``finally: app_mgr.close()``.

    Under eventlet a plain Ctrl-C lands in the hub's greenlet and ryu-manager keeps running. Work
    started from a signal handler is not seen either: the hub's epoll is retried after EINTR with
    its old timeout (PEP 475). So the handler only writes to a pipe the hub polls; a greenthread
    reading it throws SystemExit into the main greenlet, which is blocked in ``hub.joinall``.
    """
    main = greenlet.getcurrent()
    rfd, wfd = os.pipe()
    os.set_blocking(wfd, False)

    def waiter() -> None:
        trampoline(rfd, read=True)
        signum = os.read(rfd, 1)[0]
        logger.info("signal %d: shutting down", signum)
        main.throw(SystemExit(0))

    def on_signal(signum, _frame) -> None:
        try:
            os.write(wfd, bytes((signum,)))
        except BlockingIOError:
            pass  # a shutdown is already pending

    hub.spawn(waiter)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)


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


def _config_path():
    files = list(getattr(cfg.CONF, "config_file", None) or [])
    return files[-1] if files else None


class CmdApp(app_manager.RyuApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]
    _CONTEXTS = {"wsgi": WSGIApplication}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        path = _config_path()
        try:
            self.domain, self.settings = domainconf.load(path)
        except domainconf.ConfigError as exc:
            # Before anything is bound or started: nothing is half-applied.
            print(f"ryu_dmm.cmd: bad configuration: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        self.config_path = path or "<embedded default>"
        self.core = CmdCore(self.domain)
        self.stats = Stats(self.domain.mode.value)
        self.timers = None
        self.sock = None
        self.raw = None
        self._servers = []
        self._ports = {}  # configured MAAR -> the UDP port it last signalled from
        self._resolved = {}
        self._hold = {}  # while applying one message's effects: MAAR address -> what its PBA waits for
        self._held = {}  # (datapath id, barrier xid) or ("port", MN) -> PBAs waiting for it
        self._confirming = {}  # MN -> (when its flows were pushed, {MAAR address: barrier not yet answered})
        self.flows_confirmed = {}  # MN -> (pushed at, all barriers answered at)
        self.datapaths = {}
        self._reply_to = None
        self._by_name = {m.name: m for m in self.domain.maars}
        self._by_dpid = {m.datapath_id: m for m in self.domain.maars if m.datapath_id is not None}
        self.pipeline = pipeline.load()
        dlif = {m.address: m.mac for m in self.domain.maars}
        self._switches = {}  # MAAR address -> (SwitchPorts, MaarView)
        for sw in self.settings.switches:
            m = self._by_name[sw.maar]
            ports = pipeline.SwitchPorts(sw.core_port, sw.tunnel_port, sw.agent_port, sw.access_ports)
            self._switches[m.address] = (ports, pipeline.MaarView(m.mac, sw.core_gateway_mac, self.settings.tunnel_key, dlif))
        self._mn_ports = {}  # (MAAR address, MN MAC) -> access port, learnt from the MN's RS
        self._mn_at = {}  # (serving MAAR address, MN MAC) -> MN, so an RS finds its session at once
        self._key_of = {}  # MN -> its key in _mn_at
        self._installed = {}  # MN -> {MAAR address: tuple of flows pushed}
        self._stats_wait = {}  # dpid -> (hub.Event, list of stats) for a flow-stats request in flight
        kwargs["wsgi"].register(rest.DmmRestController, {rest.APP_KEY: self})

    # ---- life cycle ------------------------------------------------------------------------------
    def start(self):
        thread = super().start()
        try:
            self.sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            self.sock.bind((self.settings.listen, self.settings.port))
            if self.settings.raw_mh:
                self.raw = raw_mh_socket(self.settings.listen)
        except OSError as exc:
            print(f"ryu_dmm.cmd: cannot open the PMIPv6 endpoint on [{self.settings.listen}]:{self.settings.port}"
                  f"{' (and raw MH)' if self.settings.raw_mh else ''}: {exc.strerror}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        self.timers = HubTimers(self._on_timer)
        self._servers = [hub.spawn(self._serve)]  # not in self.threads: RyuApp.stop() joins those
        if self.raw is not None:
            self._servers.append(hub.spawn(self._serve_raw))
        install_clean_exit(self.logger)
        self.logger.info("ryu-dmm CMD started: %s mode, %d MAAR(s), PMIPv6 on [%s]:%d, config %s",
                         self.domain.mode.value, len(self.domain.maars), self.settings.listen,
                         self.sock.getsockname()[1], self.config_path)
        return thread

    def stop(self):
        for thread in self._servers:
            hub.kill(thread)
        if self.raw is not None:
            self.raw.close()
        if self.timers is not None:
            self.timers.stop()
        if self.sock is not None:
            self.sock.close()
        super().stop()

    # ---- signalling ------------------------------------------------------------------------------
    def _serve(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(65535)
            except OSError:
                return  # socket closed at shutdown
            self.on_datagram(data, addr)

    def _serve_raw(self) -> None:
        while True:
            try:
                # eventlet does not green recvmsg: wait for the socket on the hub, then read
                trampoline(self.raw.fileno(), read=True)
                data, ancdata, _flags, addr = self.raw.recvmsg(65535, 256)
            except BlockingIOError:
                continue
            except OSError:
                return
            dst = None
            for level, kind, value in ancdata:
                if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
                    dst = socket.inet_ntop(socket.AF_INET6, value[:16])
            if dst is None or peer_address(addr[0]) == self.domain.cmd_address:
                continue  # no destination to verify against, or our own message seen on the way out
            self.on_datagram(data, addr, raw_dst=dst)

    def on_datagram(self, data: bytes, addr, raw_dst=None) -> None:
        """One PMIPv6 message from UDP (``raw_dst`` None) or raw IPv6 (checksum verified against
        the source and ``raw_dst``)."""
        src = peer_address(addr[0])
        try:
            msg = decode(data, src, raw_dst) if raw_dst else decode(data)
        except DecodeError as exc:
            self.stats.count(f"decode_error.{exc.reason}")
            self.logger.warning("dropped datagram from [%s]:%d: %s", addr[0], addr[1], exc)
            return
        if raw_dst is not None:
            addr = (addr[0], 0)
        if src in self.core.maars:
            self._ports[src] = addr[1]  # 0: this MAAR speaks raw MH
        self.stats.received(msg)
        self._reply_to = (src, addr)
        try:
            effects = self.core.handle(Received(src, msg), time.time())
            # Flows first: a PBA to a MAAR whose switch just got new flows waits for that switch's
            # barrier reply, so the MAAR's RA never offers a prefix its switch cannot forward yet.
            if msg.mn_id:
                self.resync(msg.mn_id)
                self._hold = dict(self._confirming.get(msg.mn_id, (0.0, {}))[1])
                bce = self.core.cache.get(msg.mn_id)
                if (bce is not None and bce.mac and bce.serving in self._switches
                        and (bce.serving, bce.mac) not in self._mn_ports):
                    # The RS's packet-in (the MN's port) has not arrived yet, so the serving MAAR has no
                    # flows towards the MN: its PBA waits for the packet-in and then for the barrier.
                    self._hold[bce.serving] = ("port", msg.mn_id)
            self._apply(effects)
        finally:
            self._reply_to = None
            self._hold = {}

    def _send(self, data: bytes, sockaddr, msg) -> None:
        sock = self.raw if sockaddr[1] == 0 and self.raw is not None else self.sock  # port 0: raw MH
        try:
            sock.sendto(data, sockaddr)
            self.stats.sent(msg)
        except OSError as exc:
            self.stats.count("send_error")
            self.logger.warning("cannot send to %s: %s", sockaddr, exc)

    def _release(self, barrier) -> None:
        for data, sockaddr, msg in self._held.pop(barrier, ()):
            self._send(data, sockaddr, msg)

    def _sockaddr(self, host: str, port: int):
        """A resolved socket address, cached: with a text host, eventlet's sendto resolves it on
        every call, which cost the CMD more than half of its throughput."""
        key = (host, port)
        addr = self._resolved.get(key)
        if addr is None:
            addr = self._resolved[key] = socket.getaddrinfo(host, port, socket.AF_INET6, socket.SOCK_DGRAM)[0][4]
        return addr

    def _on_timer(self, key) -> None:
        self._apply(self.core.handle(TimerFired(key), time.time()))
        if key[0] in ("life", "agg"):
            self.resync(key[1])

    def _apply(self, effects) -> None:
        reports = []
        for e in effects:
            kind = type(e)
            if kind is Send:
                if self._reply_to and self._reply_to[0] == e.dst:
                    sockaddr = self._reply_to[1]  # answers go exactly where the message came from
                else:
                    sockaddr = self._sockaddr(e.dst, self._ports.get(e.dst, self.settings.port))
                held = self._hold.get(e.dst) if type(e.msg) is BindingAck else None
                if held is not None:
                    self._held.setdefault(held, []).append((encode(e.msg), sockaddr, e.msg))
                    hub.spawn_after(1.0, self._release, held)  # if the switch never answers
                else:
                    self._send(encode(e.msg), sockaddr, e.msg)
            elif kind is SetTimer:
                self.timers.set(e.key, e.at)
            elif kind is CancelTimer:
                self.timers.cancel(e.key)
            elif kind is Report:
                reports.append(e)
                # Routine events are counted in /dmm/v1/stats; logging each costs more than handling it.
                if e.kind in ("failed", "rejected"):
                    self.logger.warning("%s %s %s (status %s)", e.kind, e.mn_id, e.detail, e.status)
                elif self.logger.isEnabledFor(logging.DEBUG):
                    self.logger.debug("%s %s %s", e.kind, e.mn_id, e.detail)
        self.stats.reported(reports)

    # ---- flows -----------------------------------------------------------------------------------
    def _mn_flows(self, bce) -> dict:
        """MAAR address -> the flows that MAAR's switch needs for ``bce``'s MN."""
        if not self._switches:  # a signalling-only domain: nothing to render
            return {}
        port = self._mn_ports.get((bce.serving, bce.mac))
        out = {}
        for addr, state in dataplanes(bce, port).items():
            sw = self._switches.get(addr)
            if sw is not None:
                out[addr] = tuple(pipeline.mn_flows(bce.mn_id, state, sw[0], sw[1]))
        return out

    def wanted_flows(self, address: str) -> list:
        """Every flow the MAAR at ``address`` should hold now (base flows and one group per MN)."""
        ports, _ = self._switches[address]
        flows = pipeline.base_flows(ports)
        for bce in self.core.cache.values():
            flows += self._mn_flows(bce).get(address, ())
        return flows

    def _datapath_of(self, address: str):
        m = self.core.maars.get(address)
        return self.datapaths.get(m.datapath_id) if m is not None else None

    def resync(self, mn_id: str) -> dict:
        """Bring every switch involved with this MN (before or after) to what its BCE wants.
        Returns MAAR address -> (datapath id, barrier xid) of the switches it changed; they stay in
        ``_confirming`` until their barrier replies arrive."""
        bce = self.core.cache.get(mn_id)
        if self._switches:
            self._index(mn_id, bce)
        want = self._mn_flows(bce) if bce is not None else {}
        old = self._installed.get(mn_id, {})
        cookie = pipeline.cookie_of(mn_id)
        barriers = {}
        for addr in set(old) | set(want):
            flows = want.get(addr, ())
            if old.get(addr, ()) == flows:
                continue
            dp = self._datapath_of(addr)
            if dp is not None:  # else the reconciliation at (re)connection brings it
                barriers[addr] = (dp.id, ofsync.replace(dp, self.pipeline, cookie, flows))
                self.stats.count("flow_groups_pushed")
        if want:
            self._installed[mn_id] = want
        else:
            self._installed.pop(mn_id, None)
        if barriers:
            pushed, waiting = self._confirming.get(mn_id, (time.time(), {}))
            self._confirming[mn_id] = (pushed, {**waiting, **barriers})
        return barriers

    def _index(self, mn_id: str, bce) -> None:
        old = self._key_of.pop(mn_id, None)
        if old is not None and self._mn_at.get(old) == mn_id:
            del self._mn_at[old]
        if bce is not None and bce.mac:
            key = (bce.serving, bce.mac)
            self._key_of[mn_id] = key
            self._mn_at[key] = mn_id

    # ---- OpenFlow --------------------------------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def _switch_features(self, ev):
        dp = ev.msg.datapath
        maar = self._by_dpid.get(dp.id)
        self.logger.info("switch %016x connected%s", dp.id, f" ({maar.name})" if maar else " (not a configured MAAR)")
        if maar is not None and maar.address in self._switches:
            hub.spawn(self._reconcile, dp, maar)

    def _reconcile(self, dp, maar) -> None:
        """At (re)connection: remove the flows no binding wants, add the missing ones."""
        installed = self.flow_stats(dp)
        if installed is None:
            self.logger.warning("%s: no flow statistics from the switch; not reconciled", maar.name)
            return
        deleted, added = ofsync.reconcile(dp, self.pipeline, self.wanted_flows(maar.address), installed)
        self.stats.count("reconciliations")
        self.logger.info("%s: reconciled flows: %d removed, %d added", maar.name, deleted, added)

    def flow_stats(self, dp, timeout: float = 3.0):
        """The switch's flows (all tables), or None if it does not answer in time."""
        event, got = hub.Event(), []
        self._stats_wait[dp.id] = (event, got)
        parser, ofp = dp.ofproto_parser, dp.ofproto
        dp.send_msg(parser.OFPFlowStatsRequest(dp, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, 0, 0,
                                               parser.OFPMatch()))
        ok = event.wait(timeout)
        self._stats_wait.pop(dp.id, None)
        return got if ok else None

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    def _flow_stats_reply(self, ev):
        waiting = self._stats_wait.get(ev.msg.datapath.id)
        if waiting is None:
            return
        waiting[1].extend(ev.msg.body)
        if not ev.msg.flags & ev.msg.datapath.ofproto.OFPMPF_REPLY_MORE:
            waiting[0].set()

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    def _barrier_reply(self, ev):
        barrier = (ev.msg.datapath.id, ev.msg.xid)
        self._release(barrier)
        now = time.time()
        for mn_id, (pushed, waiting) in list(self._confirming.items()):
            done = [addr for addr, b in waiting.items() if b == barrier]
            if done:
                for addr in done:
                    del waiting[addr]
                if not waiting:
                    del self._confirming[mn_id]
                    self.flows_confirmed[mn_id] = (pushed, now)
                    self.stats.flow_latency(now - pushed)

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def _packet_in(self, ev):
        """An MN's Router Solicitation tells us its access port (the switch reports it to its controller)."""
        msg = ev.msg
        maar = self._by_dpid.get(msg.datapath.id)
        if maar is None:
            return
        try:
            pkt = packet.Packet(msg.data)
        except Exception:  # noqa: BLE001 - a frame Ryu cannot parse is just not an RS
            self.stats.count("packet_in.unparsed")
            return
        rs = pkt.get_protocol(icmpv6.icmpv6)
        eth = pkt.get_protocols(ethernet.ethernet)
        if rs is None or rs.type_ != icmpv6.ND_ROUTER_SOLICIT or not eth:
            return
        mac = bytes(int(b, 16) for b in eth[0].src.split(":"))
        port = msg.match["in_port"]
        if self._mn_ports.get((maar.address, mac)) != port:
            self._mn_ports[(maar.address, mac)] = port
            self.stats.count("mn_ports_learnt")
            mn_id = self._mn_at.get((maar.address, mac))
            if mn_id is not None:  # its session is served here: its flows towards the MN can go in now
                barrier = self.resync(mn_id).get(maar.address)
                waiting = self._held.pop(("port", mn_id), None)
                if waiting and barrier is not None:
                    self._held.setdefault(barrier, []).extend(waiting)
                elif waiting:
                    for data, sockaddr, held_msg in waiting:
                        self._send(data, sockaddr, held_msg)

    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    def _state_change(self, ev):
        dp = ev.datapath
        if ev.state == MAIN_DISPATCHER:
            self.datapaths[dp.id] = dp
        elif self.datapaths.get(dp.id) is dp:
            del self.datapaths[dp.id]
