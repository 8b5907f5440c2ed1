"""The CMD core alone (no I/O): handovers per second and memory per BCE, per mode and domain size.

Each run registers N MNs spread over the MAARs, then moves H distinct MNs once each to another MAAR
(their first handover: one P-MAAR each), answering the CMD's PBUs to P-MAARs at once as the P-MAAR
would. Only the time spent inside ``CmdCore.handle`` is counted; building the MAARs' messages is
done beforehand or excluded. Memory per BCE is the traced Python allocation growth per MN after
registration plus one handover, measured in a separate pass (tracemalloc slows the code).

Usage: python benchmarks/cmd_core.py [--sizes 1000,100000,1000000] [--handovers 100000] [--modes ...]
"""
from __future__ import annotations

import argparse
import gc
import random
import sys
import time
import tracemalloc

from ryu_dmm.mobility import messages as M
from ryu_dmm.mobility.cmd import CmdCore
from ryu_dmm.mobility.config import Domain, MaarInfo, Mode, Timers
from ryu_dmm.mobility.events import Received, Send
from ryu_dmm.mobility.pool import PrefixPool
from ryu_dmm.wire import BindingUpdate, Prefix

N_MAARS = 16
T0 = 1_700_000_000.0
STEP = 1e-5  # virtual time between two PBUs: keeps every timestamp strictly newer


def make_domain(mode: Mode) -> Domain:
    maars = tuple(MaarInfo(f"maar{i}", f"2001:db8:ff::{i + 1:x}", Prefix.parse(f"2001:db8:{i + 1:x}00::/40"))
                  for i in range(N_MAARS))
    return Domain("2001:db8:ff::100", maars, mode=mode, timers=Timers(lifetime=3600))


def registrations(d: Domain, n: int, rng: random.Random):
    pools = [PrefixPool(m.pool) for m in d.maars]
    where = []
    for i in range(n):
        k = rng.randrange(N_MAARS)
        where.append(k)
        yield d.maars[k].address, f"mn{i}@dmm", pools[k].allocate(0), k
    registrations.pools = pools  # reused for the handover prefixes


def run(mode: Mode, n: int, handovers: int, rng_seed: int = 1) -> tuple[float, int]:
    d = make_domain(mode)
    cmd = CmdCore(d)
    rng = random.Random(rng_seed)
    now = T0
    at = []
    for addr, mn, prefix, k in registrations(d, n, rng):
        now += STEP
        cmd.handle(Received(addr, M.pbu(0, now, mn, prefix, 3600, 1, 3)), now)
        at.append(k)
    pools = registrations.pools
    movers = rng.sample(range(n), min(handovers, n))
    batch = []
    t = now
    for i in movers:
        k = (at[i] + 1 + rng.randrange(N_MAARS - 1)) % N_MAARS
        t += STEP
        batch.append((d.maars[k].address, M.pbu(1, t, f"mn{i}@dmm", pools[k].allocate(0), 3600, 3, 3), t))
    gc.collect()
    spent = 0.0
    clock = time.perf_counter
    handle = cmd.handle
    for src, pbu, t in batch:
        start = clock()
        effects = handle(Received(src, pbu), t)
        spent += clock() - start
        answers = [Received(e.dst, M.pba_for(e.msg, 0, e.msg.lifetime))
                   for e in effects if type(e) is Send and type(e.msg) is BindingUpdate]
        start = clock()
        for ans in answers:
            handle(ans, t)
        spent += clock() - start
    assert all(b.handover is None for b in cmd.cache.values()) and not cmd.retx.pending
    return len(batch) / spent, len(batch)


def memory_per_bce(n: int) -> float:
    d = make_domain(Mode.PROXY)
    rng = random.Random(2)
    regs = list(registrations(d, n, rng))
    pools = registrations.pools
    moves = []
    t = T0 + n * STEP
    for addr, mn, prefix, k in regs:
        k2 = (k + 1) % N_MAARS
        t += STEP
        moves.append((d.maars[k2].address, M.pbu(1, t, mn, pools[k2].allocate(0), 3600, 3, 3), t))
    regs_msgs = [(addr, M.pbu(0, T0 + (i + 1) * STEP, mn, prefix, 3600, 1, 3), T0 + (i + 1) * STEP)
                 for i, (addr, mn, prefix, k) in enumerate(regs)]
    gc.collect()
    tracemalloc.start()
    cmd = CmdCore(d)
    base = tracemalloc.get_traced_memory()[0]
    for addr, pbu, now in regs_msgs:
        cmd.handle(Received(addr, pbu), now)
    for src, pbu, now in moves:
        for e in cmd.handle(Received(src, pbu), now):
            if type(e) is Send and type(e.msg) is BindingUpdate:
                cmd.handle(Received(e.dst, M.pba_for(e.msg, 0, e.msg.lifetime)), now)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del regs_msgs, moves
    return used / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,100000,1000000")
    ap.add_argument("--handovers", type=int, default=100_000, help="handovers timed per run (at most N)")
    ap.add_argument("--modes", default="proxy,relay,locator")
    ap.add_argument("--no-memory", action="store_true")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    modes = [Mode(m) for m in args.modes.split(",")]
    print(f"CMD core, {N_MAARS} MAARs, one P-MAAR per handover, python {sys.version.split()[0]}")
    print(f"{'mode':8} {'MNs':>9} {'handovers':>9} {'handovers/s':>12} {'us/handover':>12}")
    base: dict[Mode, float] = {}
    for mode in modes:
        for n in sizes:
            rate, count = run(mode, n, args.handovers)
            base.setdefault(mode, rate)
            print(f"{mode.value:8} {n:9d} {count:9d} {rate:12,.0f} {1e6 / rate:12.2f}"
                  f"   (cost per handover {(base[mode] / rate - 1) * 100:+.0f}% vs {sizes[0]} MNs)")
    if not args.no_memory:
        for n in sizes:
            print(f"memory per BCE at {n:9d} MNs: {memory_per_bce(n):7.0f} bytes (registered + one handover)")


if __name__ == "__main__":
    main()
