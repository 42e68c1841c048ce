"""Print a Markdown table of run folders: corpus, features, normalisation, UA, WA, macro-F1.

Usage:
    python scripts/results_table.py RUN_DIR [RUN_DIR ...]
    python scripts/results_table.py --seeds RUN_DIR [RUN_DIR ...]

``--seeds`` groups folders whose names differ only in a trailing seed (``…-s0``, ``…-seed1``)
and prints, per group, the mean ± sample standard deviation over seeds of the pooled UA, WA and
macro-F1, the number of seeds, and the mean wall time of one run.
"""

from __future__ import annotations

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


def seed_rows(runs: list[str]) -> None:
    groups: dict[str, list[dict]] = defaultdict(list)
    for run in map(Path, runs):
        groups[re.sub(r"-(s|seed)\d+$", "", run.name)].append(json.loads((run / "metrics.json").read_text()))
    print("| runs | seeds | UA | WA | macro-F1 | wall s per run |")
    print("|---|---|---|---|---|---|")
    for name, metrics in groups.items():
        cells = []
        for key in ("ua", "wa", "macro_f1"):
            values = [m[key] for m in metrics]
            spread = statistics.stdev(values) if len(values) > 1 else float("nan")
            cells.append(f"{statistics.mean(values):.3f} ± {spread:.3f}")
        wall = statistics.mean(_wall(m) for m in metrics)
        print(f"| {name} | {len(metrics)} | {' | '.join(cells)} | {wall:.0f} |")


def main(runs: list[str]) -> None:
    if runs and runs[0] == "--seeds":
        seed_rows(runs[1:])
        return
    print("| corpus | features | model | normalisation | UA | WA | macro-F1 | UA fold mean ± std | wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        print(row(Path(run)))


if __name__ == "__main__":
    main(sys.argv[1:])
