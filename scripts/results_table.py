"""Print a Markdown table of run folders: corpus, features, normalisation, UA, WA, macro-F1.

Usage:
    python scripts/results_table.py RUN_DIR [RUN_DIR ...]
    python scripts/results_table.py --seeds RUN_DIR [RUN_DIR ...]
    python scripts/results_table.py --cost RUN_DIR [RUN_DIR ...]

``--seeds`` groups folders whose names differ only in a trailing seed (``…-s0``, ``…-seed1``)
and prints, per group, the mean ± sample standard deviation over seeds of the pooled UA, WA and
macro-F1, the number of seeds, and the mean wall time of one run.
``--cost`` prints one row per run with UA, WA, macro-F1, the fold mean ± std of UA, the mean best
and run epochs of trained networks, and the wall time, CPU (user) seconds and peak resident memory
that GNU ``time -v`` wrote to ``RUN_DIR.time`` (the run scripts in ``scripts/`` write it). For
a run continued with ``serkit experiment --resume``, whose earlier parts may have been killed
before ``time`` could report, they come from ``metrics.json`` instead (wall: its total, CPU: the
folds' user seconds, peak: the largest fold's) and the run is marked "(resumed)".
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import yaml


def row(run: Path) -> str:
    metrics = json.loads((run / "metrics.json").read_text())
    config = yaml.safe_load((run / "config.yaml").read_text())
    features = "; ".join(
        f"{spec['extractor']} {spec['config'].get('feature_set', '')}".strip() for spec in config["features"].values()
    )
    fm = metrics["fold_mean"]
    wall = _wall(metrics)
    return (
        f"| {config['corpus']['name']} | {features} | {config['model']['name']} | {config['normalisation']} "
        f"| {metrics['ua']:.3f} | {metrics['wa']:.3f} | {metrics['macro_f1']:.3f} "
        f"| {fm['mean']['ua']:.3f} ± {fm['std']['ua']:.3f} | {wall:.0f} |"
    )


def _wall(metrics: dict) -> float:
    extra = metrics.get("extra", {})
    return extra.get("wall_time_s", {}).get("total", extra.get("fit_wall_time_s", float("nan")))


def seed_rows(runs: list[Path]) -> None:
    groups: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        groups[re.sub(r"-(s|seed)\d+$", "", run.name)].append(json.loads((run / "metrics.json").read_text()))
    print("| runs | seeds | UA | WA | macro-F1 | wall s per run |")
    print("|---|---|---|---|---|---|")
    for name, metrics in groups.items():
        cells = []
        for key in ("ua", "wa", "macro_f1"):
            values = [m[key] for m in metrics]
            spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
            cells.append(f"{statistics.mean(values):.3f}{spread}")
        wall = statistics.mean(_wall(m) for m in metrics)
        print(f"| {name} | {len(metrics)} | {' | '.join(cells)} | {wall:.0f} |")


def _gnu_time(path: Path) -> dict[str, str]:
    """Fields of a GNU ``time -v`` report, keyed by their label."""
    if not path.exists():
        return {}
    pairs = (line.strip().split(": ", 1) for line in path.read_text().splitlines() if ": " in line)
    return {key: value for key, value in pairs}


def cost_rows(runs: list[Path]) -> None:
    print("| run | UA | WA | macro-F1 | fold UA | best / run epochs | wall (h:mm:ss) | CPU s | peak GiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    names = [run.name for run in runs]
    for run in runs:
        metrics = json.loads((run / "metrics.json").read_text())
        fm = metrics["fold_mean"]
        label = run.name if names.count(run.name) == 1 else f"{run.parent.name}/{run.name}"
        # serkit experiment stores fit[fold] = {best_epoch, ...}; bench_blstm_fcn.py nests it under "network"
        fits = [f.get("network", f) for f in metrics.get("extra", {}).get("fit", {}).values()]
        fits = [f for f in fits if "best_epoch" in f]
        epochs = (
            f"{statistics.mean(f['best_epoch'] for f in fits):.1f} / {statistics.mean(f['epochs_run'] for f in fits):.1f}"
            if fits
            else "–"
        )
        extra = metrics.get("extra", {})
        if extra.get("resumed_folds"):
            costs = extra["fold_cost"].values()
            seconds = round(extra["wall_time_s"]["total"])
            wall = f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
            cpu = f"{sum(c['user_cpu_s'] for c in costs):.0f}"
            peak = f"{max(c['peak_rss_mib'] for c in costs) / 2**10:.2f}"
            label += " (resumed)"
        else:
            timed = _gnu_time(run.with_name(run.name + ".time"))
            wall = timed.get("Elapsed (wall clock) time (h:mm:ss or m:ss)", "–")
            cpu = f"{float(timed['User time (seconds)']):.0f}" if "User time (seconds)" in timed else "–"
            peak = timed.get("Maximum resident set size (kbytes)")
            peak = f"{int(peak) / 2**20:.2f}" if peak else "–"
        print(
            f"| {label} | {100 * metrics['ua']:.1f} | {100 * metrics['wa']:.1f} | {100 * metrics['macro_f1']:.1f} "
            f"| {100 * fm['mean']['ua']:.1f} ± {100 * fm['std']['ua']:.1f} | {epochs} | {wall} | {cpu} | {peak} |"
        )


def main(args: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--seeds", action="store_true", help="mean ± std over seeds per group of runs")
    mode.add_argument("--cost", action="store_true", help="one row per run with epochs, wall, CPU s, peak memory")
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (other paths, e.g. RUN.time, are ignored)")
    opts = parser.parse_args(args)
    # Globs like results/x/emodb-* also match the runs' GNU time reports (RUN.time) and the
    # benchmarks' partial/ folders: keep folders with a metrics.json, name skipped folders.
    runs = [run for run in opts.runs if (run / "metrics.json").is_file()]
    for skipped in sorted(set(opts.runs) - set(runs)):
        if not skipped.exists():
            print(f"skipped {skipped}: no such file or folder", file=sys.stderr)
        elif skipped.is_dir():
            print(f"skipped {skipped}: no metrics.json (unfinished run?)", file=sys.stderr)
    if not runs:
        parser.error("none of the given paths is a run folder")
    if opts.seeds:
        seed_rows(runs)
    elif opts.cost:
        cost_rows(runs)
    else:
        print("| corpus | features | model | normalisation | UA | WA | macro-F1 | UA fold mean ± std | wall s |")
        print("|---|---|---|---|---|---|---|---|---|")
        for run in runs:
            print(row(run))


if __name__ == "__main__":
    main(sys.argv[1:])
