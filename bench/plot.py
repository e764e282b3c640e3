"""Plots of `paxoi bench` results, as PNG files for docs/.

    python bench/plot.py --sweep SWEEP.json [--latency RUN.json ...] [--out docs]

- `docs/bench-throughput.png`: throughput against commands in flight (clients x
  outstanding), and the throughput-latency curve (p50 and p99 against throughput), from
  a `paxoi bench --sweep --json` file, or from a `bench/compare_pysyncobj.py --sweep
  --json` file (then PySyncObj's curve is drawn too).
- `docs/bench-latency.png`: the latency distribution (CDF, log scale) of every run of
  the `--latency` files (any `paxoi bench --json` file; default: the sweep's runs).

matplotlib (the `bench` extra), with the Agg backend: no display needed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from paxoi.bench.stats import LatencyHistogram

Series = tuple[str, list[dict[str, Any]]]


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def series_of(doc: dict[str, Any]) -> list[Series]:
    """(label, runs) of each system in a bench or comparison document."""
    if "pysyncobj" in doc and "paxoi" in doc:
        fsync = "fsync" if doc["paxoi"]["parameters"]["fsync"] else "no fsync"
        return [(f"paxoi ({fsync})", doc["paxoi"]["runs"]), ("PySyncObj", doc["pysyncobj"]["runs"])]
    if "runs" in doc:
        fsync = "fsync" if doc["parameters"]["fsync"] else "no fsync"
        return [(f"paxoi ({fsync})", doc["runs"])]
    raise ValueError("not a paxoi bench or comparison JSON document")


def _plain(axis: Any) -> None:
    """Tick labels as plain numbers (1, 10, 64), not powers (10^0, 2^6)."""
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "1235" else ""))


def plot_throughput(series: list[Series], out: Path) -> None:
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, runs in series:
        flight = [r["clients"] * r["outstanding"] for r in runs]
        tput = [r["throughput"] for r in runs]
        left.plot(flight, tput, marker="o", label=label)
        for r, x, y in zip(runs, flight, tput, strict=True):
            left.annotate(
                f"{r['clients']}x{r['outstanding']}",
                (x, y),
                fontsize=7,
                textcoords="offset points",
                xytext=(3, 3),
            )
        p50 = [r["latency_ms"]["p50"] for r in runs]
        p99 = [r["latency_ms"]["p99"] for r in runs]
        line = right.plot(tput, p99, marker="o", label=f"{label} p99")[0]
        right.plot(
            tput, p50, marker=".", linestyle="--", color=line.get_color(), label=f"{label} p50"
        )
    left.set_xscale("log", base=2)
    _plain(left.xaxis)
    left.set_xlabel("commands in flight (clients x outstanding)")
    left.set_ylabel("committed commands/s")
    left.set_title("throughput")
    left.grid(True, alpha=0.3)
    left.legend(fontsize=8)
    right.set_yscale("log")
    _plain(right.yaxis)
    right.set_xlabel("committed commands/s")
    right.set_ylabel("latency (ms)")
    right.set_title("throughput vs latency")
    right.axhline(10.0, color="grey", linewidth=0.8, linestyle=":")
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_latency(series: list[Series], out: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for label, runs in series:
        for r in runs:
            hist = LatencyHistogram.from_json(r["latency_histogram"])
            if hist.count == 0:
                continue
            cdf = hist.cdf()
            xs = [v / 1e6 for v, _ in cdf]
            ys = [f for _, f in cdf]
            p99 = r["latency_ms"]["p99"]
            ax.step(
                xs,
                ys,
                where="post",
                label=f"{label} {r['clients']}x{r['outstanding']} "
                f"({r['throughput']:,.0f}/s, p99 {p99:.2f} ms)",
            )
    ax.set_xscale("log")
    _plain(ax.xaxis)
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of commands")
    ax.set_title("latency distribution (CDF)")
    for q in (0.5, 0.9, 0.99):
        ax.axhline(q, color="grey", linewidth=0.6, linestyle=":")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--sweep",
        type=Path,
        required=True,
        metavar="JSON",
        help="paxoi bench --sweep --json output, or compare_pysyncobj --sweep --json",
    )
    ap.add_argument(
        "--latency",
        type=Path,
        action="append",
        default=[],
        metavar="JSON",
        help="runs whose latency CDF to draw (default: the sweep's)",
    )
    ap.add_argument("--out", type=Path, default=Path("docs"), help="directory (docs)")
    args = ap.parse_args(argv)
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: pip install 'paxoi[bench]'", file=sys.stderr)
        return 2
    matplotlib.use("Agg")
    try:
        sweep = series_of(load(args.sweep))
        latency = [s for p in args.latency for s in series_of(load(p))] or sweep
    except (OSError, ValueError, KeyError) as e:
        print(f"plot: {e}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    plot_throughput(sweep, args.out / "bench-throughput.png")
    plot_latency(latency, args.out / "bench-latency.png")
    print(f"wrote {args.out / 'bench-throughput.png'} and {args.out / 'bench-latency.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
