"""Print a Markdown table of run folders: corpus, features, normalisation, UA, WA, macro-F1.

Usage: python scripts/results_table.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml


def row(run: Path) -> str:
    metrics = json.loads((run / "metrics.json").read_text())
    config = yaml.safe_load((run / "config.yaml").read_text())
    features = "; ".join(
        f"{spec['extractor']} {spec['config'].get('feature_set', '')}".strip() for spec in config["features"].values()
    )
    fm = metrics["fold_mean"]
    wall = metrics.get("extra", {}).get("wall_time_s", {}).get("total", float("nan"))
    return (
        f"| {config['corpus']['name']} | {features} | {config['model']['name']} | {config['normalisation']} "
        f"| {metrics['ua']:.3f} | {metrics['wa']:.3f} | {metrics['macro_f1']:.3f} "
        f"| {fm['mean']['ua']:.3f} ± {fm['std']['ua']:.3f} | {wall:.0f} |"
    )


def main(runs: list[str]) -> None:
    print("| corpus | features | model | normalisation | UA | WA | macro-F1 | UA fold mean ± std | wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        print(row(Path(run)))


if __name__ == "__main__":
    main(sys.argv[1:])
