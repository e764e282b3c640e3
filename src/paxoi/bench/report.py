"""Human-readable tables of `paxoi bench` results (the JSON document of `runner`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _num(v: float | None, fmt: str = ",.1f") -> str:
    return "-" if v is None else format(v, fmt)


def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def _mb(v: int | None) -> str:
    return "-" if v is None else f"{v / 1e6:.1f} MB"


def header(doc: dict[str, Any]) -> str:
    p = doc["parameters"]
    fsync = "fsync on" if p["fsync"] else "fsync OFF (--no-fsync)"
    m = doc["machine"]
    probe = m.get("fsync_probe_ms")
    probe_txt = f", one fsync {probe:.2f} ms" if probe is not None and p["fsync"] else ""
    return (
        f"paxoi bench: {p['servers']} servers, {p['size']}-byte commands, {fsync}; "
        f"{p['duration']:g} s measured after {p['warmup']:g} s warm-up; "
        f"{m['cpu_count']} CPUs, Python {m['python']}{probe_txt}"
    )


def point_table(run: dict[str, Any]) -> str:
    lat = run["latency_ms"]
    lines = [
        f"load        {run['clients']} client(s) x {run['outstanding']} outstanding "
        f"in {run['load_processes']} load process(es)",
        f"throughput  {run['throughput']:,.0f} commands/s ({run['throughput_mb_s']:.2f} MB/s); "
        f"{run['committed']:,} committed, {run['errors']:,} errors"
        + (" (leader changed!)" if run.get("leader_changed") else ""),
        f"latency ms  p50 {_ms(lat['p50'])}  p90 {_ms(lat['p90'])}  p99 {_ms(lat['p99'])}  "
        f"p99.9 {_ms(lat['p99.9'])}  max {_ms(lat['max'])}  (mean {_ms(lat['mean'])})",
    ]
    fs = run["fsync"]
    word = "fsyncs/s" if fs["enabled"] else "writes/s (no fsync)"
    lines.append(
        f"fsync       leader {_num(fs['leader_syncs_per_s'], ',.0f')} {word}, "
        f"{_num(fs['commands_per_sync'], ',.2f')} commands per write"
    )
    lines.append("")
    lines.append(
        f"{'server':<7}{'role':<10}{'CPU %':>7}{'syncs/s':>10}{'cmd/sync':>10}"
        f"{'applied/s':>11}{'RSS start':>12}{'RSS end':>11}"
    )
    for node, s in sorted(run["servers"].items(), key=lambda kv: int(kv[0])):
        role = "leader" if s["leader"] else ("follower" if s["up"] else "DOWN")
        lines.append(
            f"{node:<7}{role:<10}{_num(s['cpu_percent']):>7}{_num(s['syncs_per_s'], ',.0f'):>10}"
            f"{_num(s['commands_per_sync'], ',.2f'):>10}{_num(s['applied_per_s'], ',.0f'):>11}"
            f"{_mb(s['rss_start_bytes']):>12}{_mb(s['rss_end_bytes']):>11}"
        )
    load_cpu = ", ".join(_num(c) for c in run["load_cpu_percent"])
    lines.append(f"load processes CPU %: {load_cpu}")
    return "\n".join(lines)


def sweep_table(runs: Sequence[dict[str, Any]]) -> str:
    lines = [
        f"{'clients':>7} {'x K':<5}{'in flight':>9}{'cmd/s':>10}{'p50 ms':>9}{'p90 ms':>9}"
        f"{'p99 ms':>9}{'max ms':>9}{'cmd/sync':>9}{'leader CPU%':>12}{'load CPU%':>10}{'errors':>7}"
    ]
    for r in runs:
        lat = r["latency_ms"]
        leader = r["servers"].get(str(r["leader"]), {}) if r["leader"] is not None else {}
        load = [c for c in r["load_cpu_percent"] if c is not None]
        lines.append(
            f"{r['clients']:>7} x{r['outstanding']:<4}{r['in_flight']:>9}{r['throughput']:>10,.0f}"
            f"{_ms(lat['p50']):>9}{_ms(lat['p90']):>9}{_ms(lat['p99']):>9}{_ms(lat['max']):>9}"
            f"{_num(r['fsync']['commands_per_sync'], ',.1f'):>9}"
            f"{_num(leader.get('cpu_percent')):>12}"
            f"{_num(sum(load) if load else None):>10}{r['errors']:>7}"
            + ("  leader changed" if r.get("leader_changed") else "")
        )
    return "\n".join(lines)


def full_report(doc: dict[str, Any]) -> str:
    runs = doc["runs"]
    parts = [header(doc)]
    if len(runs) == 1:
        parts.append(point_table(runs[0]))
    else:
        parts.append(sweep_table(runs))
    return "\n".join(parts)
