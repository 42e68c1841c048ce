"""Paired comparison of two systems run on the same folds and seeds (per-fold UA).

Usage:
    python scripts/compare_runs.py --a RUN_DIR [RUN_DIR ...] --b RUN_DIR [RUN_DIR ...]

Runs are matched by their trailing seed (``…-s0``, ``…-seed1``, then an optional ``-vN``) and,
within a seed, folds by name (``speaker-03``), so every pair is one test speaker scored by both
systems with the same seed. Prints the number of pairs, how often A's fold UA is above, equal to and
below B's, the mean paired difference A − B with its standard error, a two-sided Wilcoxon
signed-rank test and a two-sided sign test (ties dropped). The pairs are not independent (the same
speaker appears once per seed), so the p-values are descriptive, not a licence to call a difference
real.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
from pathlib import Path

from scipy.stats import binomtest, wilcoxon


def fold_ua(runs: list[Path]) -> dict[tuple[str, str], float]:
    """(seed, fold name) -> fold UA for every fold of every run; seed from the folder name."""
    scores = {}
    for run in runs:
        match = re.search(r"-(?:s|seed)(\d+)(?:-v\d+)?$", run.name)
        if match is None:
            raise SystemExit(f"{run}: folder name does not end in -sN or -seedN (optionally then -vN)")
        for fold in json.loads((run / "metrics.json").read_text())["folds"]:
            scores[(match.group(1), fold["fold"])] = fold["ua"]
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", type=Path, nargs="+", required=True)
    parser.add_argument("--b", type=Path, nargs="+", required=True)
    args = parser.parse_args()
    a, b = fold_ua(args.a), fold_ua(args.b)
    keys = sorted(a.keys() & b.keys())
    unmatched = sorted(a.keys() ^ b.keys())
    if unmatched:
        raise SystemExit(f"(seed, fold) pairs in only one system: {unmatched}")
    diffs = [a[k] - b[k] for k in keys]
    wins, ties = sum(d > 0 for d in diffs), sum(d == 0 for d in diffs)
    losses = len(diffs) - wins - ties
    se = statistics.stdev(diffs) / math.sqrt(len(diffs))
    print(f"pairs (seed, fold): {len(diffs)} over seeds {sorted({k[0] for k in keys})}")
    print(f"A above / equal / below B: {wins} / {ties} / {losses}")
    print(f"mean fold UA: A {statistics.mean(a[k] for k in keys):.4f}, B {statistics.mean(b[k] for k in keys):.4f}")
    print(f"mean paired difference A - B: {statistics.mean(diffs):+.4f} ± {se:.4f} (standard error)")
    print(f"Wilcoxon signed-rank, two-sided: p = {wilcoxon(diffs).pvalue:.3f}")
    print(f"sign test, two-sided (ties dropped): p = {binomtest(wins, wins + losses).pvalue:.3f}")


if __name__ == "__main__":
    main()
