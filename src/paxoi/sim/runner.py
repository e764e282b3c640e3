"""`paxoi sim`: run many seeds, stop at the first violation and say how to reproduce it."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator

from ..core.bugs import Bug, parse_bugs
from .checker import Violation
from .cluster import FAULTS, LAYOUTS, SimParams, Simulation

NODE_COUNTS = (3, 5, 7)


def parse_faults(text: str) -> frozenset[str]:
    if text in ("all", ""):
        return frozenset(FAULTS)
    if text == "none":
        return frozenset()
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        raise ValueError(f"unknown fault(s): {', '.join(unknown)}; known: {', '.join(FAULTS)}")
    return frozenset(names)


def plan(
    args: argparse.Namespace, bugs: frozenset[Bug], faults: frozenset[str]
) -> Iterator[SimParams]:
    """Seed i runs with the i-th (nodes, layout) combination, so N seeds spread over all."""
    nodes = args.nodes or list(NODE_COUNTS)
    layouts = args.layout or list(LAYOUTS)
    combos = [(n, lay) for lay in layouts for n in nodes]
    for i in range(args.seeds):
        seed = args.start_seed + i
        n, layout = combos[seed % len(combos)]
        yield SimParams(seed=seed, nodes=n, layout=layout, bugs=bugs, faults=faults)


def main(args: argparse.Namespace) -> int:
    out = sys.stdout
    if args.list_bugs:
        for bug in Bug:
            print(bug.value, file=out)
        return 0
    try:
        bugs = parse_bugs([args.bug] if args.bug else [])
        faults = parse_faults(args.faults)
    except ValueError as e:
        print(f"paxoi sim: {e}", file=sys.stderr)
        return 2
    if args.seeds < 1:
        print("paxoi sim: --seeds must be at least 1", file=sys.stderr)
        return 2
    started = time.monotonic()
    count = 0
    for params in plan(args, bugs, faults):
        sim = Simulation(params)
        try:
            result = sim.run()
        except Violation as v:
            report(out, params, v, sim)
            return 1
        count += 1
        if args.verbose:
            print(
                f"seed {params.seed}: {params.nodes} {params.layout}, {result.acked} acked, "
                f"{result.decided} slots, {result.crashes} crashes, {result.leaders} leaderships, "
                f"{result.sim_ms} simulated ms",
                file=out,
            )
    elapsed = time.monotonic() - started
    print(f"({elapsed:.1f} s)", file=sys.stderr)
    print(f"{count} seeds, 0 violations", file=out)
    return 0


def report(out: object, params: SimParams, v: Violation, sim: Simulation) -> None:
    w = out.write  # type: ignore[attr-defined]
    w(f"VIOLATION at seed {params.seed} ({params.nodes} nodes, {params.layout}): {v}\n")
    w(f"invariant: {v.invariant}\n")
    w("last events:\n")
    for line in sim.format_trace()[-15:]:
        w(f"  {line[:200]}\n")
    w(f"reproduce: {params.command_line()}\n")
    w("1 violation\n")


def run_seed(params: SimParams) -> Violation | None:
    """One seed; the violation it finds, if any (for tests)."""
    try:
        Simulation(params).run()
    except Violation as v:
        return v
    return None


def demo(args: argparse.Namespace) -> int:
    """A simulated 3-server chat cluster under crashes, loss and partitions, start to end.

    Until the networked servers exist this is the main job: it shows the protocol
    keeping every replica's log identical through leader crashes.
    """
    params = SimParams(
        seed=getattr(args, "seed", 7), nodes=3, clients=3, commands=30, all_up_at_end=True
    )
    sim = Simulation(params)
    print(
        f"paxoi demo: 3 simulated servers, {params.clients} clients x {params.commands} "
        "chat messages; faults: message loss, duplication, reordering, partitions, crashes"
    )
    try:
        result = sim.run()
    except Violation as v:
        report(sys.stdout, params, v, sim)
        return 1
    print(
        f"{result.acked} messages acknowledged, {result.decided} slots decided, "
        f"{result.crashes} server crashes, {result.leaders} leaderships, "
        f"{result.sim_ms / 1000:.1f} simulated seconds"
    )
    digests = set()
    for nid in sim.config.learners:
        machine = sim.machines[nid]
        digest = machine.digest()
        digests.add(digest)
        print(f"  server {nid}: {len(machine.applied)} log entries, sha256 {digest[:16]}")
    if len(digests) != 1:
        print("FAIL: the replicas' logs differ")
        return 1
    print("OK: every replica holds the same log")
    return 0
