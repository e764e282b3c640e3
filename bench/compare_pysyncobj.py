"""paxoi against PySyncObj: the same workload, on the same machine, in the same run.

    python bench/compare_pysyncobj.py [--clients 4] [--outstanding 16] [--size 16]
        [--duration 10] [--warmup 1.5] [--sweep [POINTS]] [--no-fsync] [--workers P]
        [--pso-drive leader|all] [--pso-profiles nobatch,batch2ms,batch10ms]
        [--pso-conf KEY=VALUE ...] [--order paxoi-first|pysyncobj-first] [--json FILE]

Needs PySyncObj (`pip install 'paxoi[bench]'`). For each (clients, outstanding) point:

- PySyncObj: a 3-replica cluster on 127.0.0.1, each replica its own process
  (`python -m paxoi.bench.pso_node`), replicating a chat room like paxoi's (`post(message)`
  appends a message and returns the count). At its fastest settings
  (`paxoi.bench.pso_node`): a 1 ms tick (default 50 ms), large batches, socket buffers
  and commands queue, no dynamic membership, no log compaction during the run, the log
  in memory. No single setting is fastest at every load, so it runs once per profile
  (`--pso-profiles`): `nobatch` (one AppendEntries per command, sent at once: lowest
  latency at low load), `batch2ms` and `batch10ms` (batched AppendEntries every 2 or
  10 ms; the default is 100 ms), and per point keeps the profile with the highest
  throughput. PySyncObj's journal file is never fsynced in any setting, so PySyncObj here
  is an in-memory replicated log: a crash of every replica loses everything. paxoi, by
  default, fsyncs every group commit (`--no-fsync` turns that off for a like-for-like
  durability comparison).
- paxoi: `paxoi bench` with the same points (3 servers, clients over TCP in separate
  load processes).

The asymmetry, stated plainly: PySyncObj has no client protocol, so its "clients" are
C x K closed loops issued inside a replica process (`--pso-drive leader`, the default:
inside the leader, the cheapest path: no client connection, no client-side encoding, no
network hop for the command and its answer, and no extra process; `--pso-drive all`
spreads them over the three replicas, whose followers forward commands to the leader).
paxoi's clients are real external clients: separate processes speaking the wire protocol
over TCP. Latency is measured the same way in both (`perf_counter_ns` around each
command, only commands answered inside the window, warm-up excluded), and both use the
same histogram code. Throughput is acknowledged commands per second. A PySyncObj
replica's CPU figure includes the closed loops it drives; paxoi's load processes are
reported apart. The two systems run one after the other (`--order`), never at once.

Prints both results and the ratios paxoi / PySyncObj: throughput (above 1: paxoi does
more), latency p50 and p99 (below 1: paxoi answers faster). With `--sweep`, also the best
throughput of each whose p99 stays under 10 ms, and their ratio.
"""

from __future__ import annotations

import argparse
import ast
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from paxoi.bench.cluster import proc_usage
from paxoi.bench.load import LoadError, LoadProcesses, split_clients
from paxoi.bench.pso_node import FAST_CONF, PROFILES
from paxoi.bench.report import sweep_table
from paxoi.bench.runner import (
    DEFAULT_SWEEP,
    BenchParams,
    Progress,
    best_under,
    drive_window,
    load_figures,
    machine_info,
    parse_points,
    run_bench,
    write_json,
)
from paxoi.server.config import free_ports

SCHEMA = "paxoi-compare-pysyncobj/1"
P99_BOUND_MS = 10.0


# ---------------------------------------------------------------------- PySyncObj


def _pso_sample(pids: list[int]) -> tuple[float, list[tuple[float, int] | None]]:
    return time.monotonic(), [proc_usage(pid) for pid in pids]


def _parse_conf(items: list[str]) -> dict[str, Any]:
    conf: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or (key not in FAST_CONF and not hasattr(_conf_defaults(), key)):
            raise SystemExit(f"--pso-conf {item!r}: KEY=VALUE with a SyncObjConf field")
        conf[key] = ast.literal_eval(value)
    return conf


def _conf_defaults() -> Any:
    from pysyncobj import SyncObjConf

    return SyncObjConf()


def run_pysyncobj(
    points: list[tuple[int, int]],
    size: int,
    warmup: float,
    duration: float,
    drive: str,
    conf: dict[str, Any],
    progress: bool,
    label: str = "PySyncObj",
) -> dict[str, Any]:
    """A 3-replica PySyncObj cluster with settings `conf` (over FAST_CONF), every point
    driven on it; the JSON document."""
    from pysyncobj.version import VERSION

    workdir = Path(tempfile.mkdtemp(prefix="paxoi-pso-"))
    addrs = [f"127.0.0.1:{p}" for p in free_ports(3)]
    specs: list[dict[str, Any]] = [
        {"self_addr": a, "partners": [b for b in addrs if b != a], "size": size, "conf": conf}
        for a in addrs
    ]
    runs: list[dict[str, Any]] = []
    try:
        idle = _pso_runs(
            workdir, addrs, specs, points, size, warmup, duration, drive, progress, runs, label
        )
    except BaseException:
        print(f"PySyncObj replicas' logs kept in {workdir}", file=sys.stderr)
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    return {
        "version": VERSION,
        "replicas": 3,
        "drive": drive,
        "conf": {**FAST_CONF, **conf},
        "durability": "in-memory log, no fsync (PySyncObj's journal never fsyncs)",
        "rss_idle_bytes": {str(n): u[1] if u else None for n, u in enumerate(idle[1])},
        "runs": runs,
    }


def _pso_runs(
    workdir: Path,
    addrs: list[str],
    specs: list[dict[str, Any]],
    points: list[tuple[int, int]],
    size: int,
    warmup: float,
    duration: float,
    drive: str,
    progress: bool,
    runs: list[dict[str, Any]],
    label: str,
) -> tuple[float, list[tuple[float, int] | None]]:
    """Start the replicas, drive each point (results appended to `runs`), stop them."""
    with LoadProcesses(specs, log_dir=workdir, module="paxoi.bench.pso_node", name="pso") as cl:
        cl.wait_ready(timeout=70.0)
        leader = addrs.index(_agreed_leader(cl, timeout=30.0))
        pids = cl.pids()
        idle = _pso_sample(pids)
        for i, (c, k) in enumerate(points):
            in_flight = c * k
            if drive == "leader":
                shares = [in_flight if n == leader else 0 for n in range(3)]
            else:
                shares = [*split_clients(in_flight, 3), 0, 0][:3]
            extra: list[dict[str, Any] | None] = [
                {"in_flight": s} if s > 0 else None for s in shares
            ]
            bar = Progress(sys.stderr if progress else None, f"{label} ({i + 1}/{len(points)}) ")
            m = drive_window(cl, warmup, duration, lambda: _pso_sample(pids), bar, extra)
            (_, first), (_, last) = m.first, m.last
            servers: dict[str, Any] = {}
            for n in range(3):
                a, b = first[n], last[n]
                servers[str(n)] = {
                    "leader": n == leader,
                    "cpu_percent": None
                    if a is None or b is None
                    else round(100.0 * (b[0] - a[0]) / m.seconds, 1),
                    "rss_start_bytes": a[1] if a else None,
                    "rss_end_bytes": b[1] if b else None,
                    "in_flight_issued_here": shares[n],
                }
            runs.append(
                {
                    "clients": c,
                    "outstanding": k,
                    "in_flight": in_flight,
                    **load_figures(m.result, duration, size),
                    "leader": leader,
                    "servers": servers,
                }
            )
        cl.check("at the end")
    return idle


def _agreed_leader(cl: LoadProcesses, timeout: float) -> str:
    """The leader every replica names, asked until they agree (an election may be on)."""
    deadline = time.monotonic() + timeout
    while True:
        leaders = {w.ready_doc.get("leader") for w in cl.workers}
        if len(leaders) == 1 and None not in leaders:
            return str(leaders.pop())
        if time.monotonic() > deadline:
            raise LoadError(f"the PySyncObj replicas do not agree on a leader: {leaders}")
        cl.send_all({"ask": "leader"})
        cl.poll(0.2)
        cl.check("while electing")


def run_pysyncobj_profiles(
    points: list[tuple[int, int]],
    size: int,
    warmup: float,
    duration: float,
    drive: str,
    profiles: list[str],
    conf: dict[str, Any],
    progress: bool,
) -> dict[str, Any]:
    """Every profile of PROFILES in turn (each its own cluster); per point, the run of
    the profile with the highest throughput."""
    docs = {
        name: run_pysyncobj(
            points, size, warmup, duration, drive, {**PROFILES[name], **conf}, progress, name
        )
        for name in profiles
    }
    best = []
    for i in range(len(points)):
        name, run = max(
            ((n, d["runs"][i]) for n, d in docs.items()), key=lambda x: x[1]["throughput"]
        )
        best.append({**run, "profile": name})
    first = next(iter(docs.values()))
    return {
        "version": first["version"],
        "replicas": 3,
        "drive": drive,
        "durability": first["durability"],
        "profiles": docs,
        "runs": best,
    }


# ---------------------------------------------------------------------- comparison


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else round(a / b, 3)


def ratios(
    paxoi_runs: list[dict[str, Any]], pso_runs: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    out = []
    for p, q in zip(paxoi_runs, pso_runs, strict=True):
        out.append(
            {
                "clients": p["clients"],
                "outstanding": p["outstanding"],
                "throughput": _ratio(p["throughput"], q["throughput"]),
                "p50": _ratio(p["latency_ms"]["p50"], q["latency_ms"]["p50"]),
                "p99": _ratio(p["latency_ms"]["p99"], q["latency_ms"]["p99"]),
            }
        )
    return out


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def comparison_table(
    paxoi_runs: list[dict[str, Any]], pso_runs: list[dict[str, Any]], rows: list[dict[str, Any]]
) -> str:
    lines = [
        f"{'point':<9}{'system':<11}{'cmd/s':>10}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}"
        f"{'max ms':>9}{'leader CPU%':>12} (PySyncObj profile)"
    ]
    for p, q, r in zip(paxoi_runs, pso_runs, rows, strict=True):
        point = f"{p['clients']}x{p['outstanding']}"
        for name, run in (("paxoi", p), ("PySyncObj", q)):
            lat = run["latency_ms"]
            profile = f" {run['profile']}" if "profile" in run else ""
            lead = run["servers"].get(str(run["leader"]), {})
            lines.append(
                f"{point if name == 'paxoi' else '':<9}{name:<11}{run['throughput']:>10,.0f}"
                f"{_fmt(lat['p50'], '.3f'):>9}{_fmt(lat['p90'], '.3f'):>9}"
                f"{_fmt(lat['p99'], '.3f'):>9}{_fmt(lat['max'], '.1f'):>9}"
                f"{_fmt(lead.get('cpu_percent'), '.1f'):>12}{profile}"
            )
        lines.append(
            f"{'':<9}{'ratio':<11}{_fmt(r['throughput'], '.2f') + 'x':>10}"
            f"{_fmt(r['p50'], '.2f') + 'x':>9}{'':>9}{_fmt(r['p99'], '.2f') + 'x':>9}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--outstanding", type=int, default=16)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument(
        "--duration", type=float, help="measured seconds per point (10; 5 with --sweep)"
    )
    ap.add_argument("--warmup", type=float, default=1.5)
    ap.add_argument("--sweep", nargs="?", const="default", metavar="POINTS")
    ap.add_argument("--no-fsync", action="store_true", help="paxoi without fsync, like PySyncObj")
    ap.add_argument("--workers", type=int, help="paxoi load processes (see paxoi bench)")
    ap.add_argument("--pso-drive", choices=("leader", "all"), default="leader")
    ap.add_argument(
        "--pso-profiles",
        default=",".join(PROFILES),
        help=f"PySyncObj settings to try, best kept per point ({','.join(PROFILES)})",
    )
    ap.add_argument(
        "--pso-conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a SyncObjConf field in every profile",
    )
    ap.add_argument("--order", choices=("paxoi-first", "pysyncobj-first"), default="paxoi-first")
    ap.add_argument("--json", type=Path, metavar="FILE")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    try:
        import pysyncobj  # noqa: F401
    except ImportError:
        print("PySyncObj is not installed: pip install 'paxoi[bench]'", file=sys.stderr)
        return 2
    if args.sweep is None:
        points = [(args.clients, args.outstanding)]
    else:
        points = list(DEFAULT_SWEEP) if args.sweep == "default" else parse_points(args.sweep)
    duration = args.duration if args.duration is not None else (5.0 if args.sweep else 10.0)
    conf = _parse_conf(args.pso_conf)
    profiles = [p.strip() for p in args.pso_profiles.split(",") if p.strip()]
    unknown = [p for p in profiles if p not in PROFILES]
    if unknown or not profiles:
        print(f"--pso-profiles: choose among {', '.join(PROFILES)}", file=sys.stderr)
        return 2
    progress = not args.quiet and sys.stderr.isatty()
    params = BenchParams(
        servers=3,
        clients=points[0][0],
        outstanding=points[0][1],
        size=args.size,
        duration=duration,
        warmup=args.warmup,
        fsync=not args.no_fsync,
        workers=args.workers,
        sweep=points if len(points) > 1 else None,
    )
    params.validate()

    def paxoi() -> dict[str, Any]:
        return run_bench(params, progress_stream=sys.stderr if progress else None)

    def pso() -> dict[str, Any]:
        return run_pysyncobj_profiles(
            points, args.size, args.warmup, duration, args.pso_drive, profiles, conf, progress
        )

    try:
        if args.order == "paxoi-first":
            paxoi_doc = paxoi()
            pso_doc = pso()
        else:
            pso_doc = pso()
            paxoi_doc = paxoi()
    except (LoadError, RuntimeError, TimeoutError, OSError) as e:
        print(f"compare_pysyncobj: {e}", file=sys.stderr)
        return 1

    rows = ratios(paxoi_doc["runs"], pso_doc["runs"])
    fsync = "fsync on" if params.fsync else "no fsync"
    print(
        f"paxoi: 3 servers, {fsync}, clients over TCP in separate load processes.\n"
        f"PySyncObj {pso_doc['version']}: 3 replicas, in-memory log (never fsyncs), commands "
        f"issued inside {'the leader' if args.pso_drive == 'leader' else 'every replica'}; "
        f"per point, the best of the profiles {', '.join(profiles)}.\n"
        f"{args.size}-byte commands; {duration:g} s measured per point after {args.warmup:g} s "
        f"warm-up. Ratios are paxoi / PySyncObj.\n"
    )
    print(comparison_table(paxoi_doc["runs"], pso_doc["runs"], rows))
    best: dict[str, Any] = {}
    if len(points) > 1:
        print("\npaxoi sweep:")
        print(sweep_table(paxoi_doc["runs"]))
        a = best_under(paxoi_doc["runs"], P99_BOUND_MS)
        b = best_under(pso_doc["runs"], P99_BOUND_MS)
        best = {
            "p99_bound_ms": P99_BOUND_MS,
            "paxoi": None
            if a is None
            else {k: a[k] for k in ("clients", "outstanding", "throughput")},
            "pysyncobj": None
            if b is None
            else {k: b[k] for k in ("clients", "outstanding", "throughput")},
            "ratio": _ratio(a["throughput"] if a else None, b["throughput"] if b else None),
        }

        def show(name: str, r: dict[str, Any] | None) -> str:
            if r is None:
                return f"{name}: no point with p99 < {P99_BOUND_MS:g} ms"
            return (
                f"{name}: {r['throughput']:,.0f} cmd/s at {r['clients']}x{r['outstanding']} "
                f"(p99 {r['latency_ms']['p99']:.2f} ms)"
            )

        print(f"\nbest throughput with p99 < {P99_BOUND_MS:g} ms:")
        print("  " + show("paxoi", a))
        print("  " + show("PySyncObj", b))
        print(f"  ratio paxoi / PySyncObj: {_fmt(best['ratio'], '.2f')}x")
    if args.json is not None:
        write_json(
            {
                "schema": SCHEMA,
                "argv": sys.argv,
                "machine": machine_info(),
                "parameters": {**vars(args), "json": str(args.json), "points": points},
                "paxoi": paxoi_doc,
                "pysyncobj": pso_doc,
                "ratios": rows,
                "best_under_p99": best,
            },
            args.json,
        )
        print(f"\nresults written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
