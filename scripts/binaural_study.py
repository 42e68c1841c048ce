"""Tables 1-7 of the binaural paper (Zhang et al., IEEE Access 2020) on one corpus, from recipes/binaural*.yaml.

Every table row is one ``serkit experiment`` run of a binaural recipe with ``--set`` overrides,
written to ``<out>/<corpus>/<mode>/<row>/`` (skipped when that folder exists, so an interrupted
study resumes); the CNN activations and fine-tuned heads are cached (``.cache/serkit/binaural``),
so after the first run of a mode the other rows cost pooling and SVMs only.

Tables written to ``<out>/<corpus>/<mode>/tables.md`` and ``tables.json``:

- Tables 1-5: each channel alone, block-based / global max / average pooling;
- Table 6: two-stage score fusion with weights searched on the training speakers' out-of-fold
  scores (honest; the weights differ per fold), and the paper's choice on the test data
  (**oracle**: weights searched on the pooled test predictions of the single-channel rows);
- Table 7: feature-level fusion (concatenation).

Usage::

    python scripts/binaural_study.py --corpus emovo --root ../shared/corpora/emovo
    python scripts/binaural_study.py --corpus emovo --root ../shared/corpora/emovo --mode finetune --seed 1
    python scripts/binaural_study.py --corpus emodb --root ../shared/corpora/emodb --rows main
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from serkit.evaluation.metrics import compute_metrics
from serkit.experiment import run_experiment
from serkit.io import atomic_write_text
from serkit.blocks.binaural_ops import apply_two_stage, search_two_stage
from serkit.recipe import load_recipe

CHANNELS = ("left", "right", "mid", "side")
POOLINGS = {
    "block-max": ("block", "max"),
    "block-avg": ("block", "avg"),
    "global-max": ("global", "max"),
    "global-avg": ("global", "avg"),
}
GROUPS = {"LR": ["left", "right"], "MS": ["mid", "side"], "LRMS": list(CHANNELS)}
MODES = {
    "frozen": ["model.config.finetune_stages=0"],
    "finetune": [
        "model.config.finetune_stages=1",
        "model.config.max_epochs=10",
        "model.config.patience=3",
    ],
}


def rows(which: str, single: tuple[str, ...]) -> dict[str, list[str]]:
    """Row name -> recipe overrides: single channels (``which="all"``: four poolings each;
    ``"main"``: block max only), then score and feature fusion of LR, MS and LRMS."""
    out: dict[str, list[str]] = {}
    poolings = POOLINGS if which == "all" else {"block-max": POOLINGS["block-max"]}
    for channel in single:
        for name, (pooling, pool) in poolings.items():
            out[f"{channel}-{name}"] = [
                f"model.config.channels=[{channel}]",
                f"model.config.pooling={pooling}",
                f"model.config.pool={pool}",
            ]
    for group, members in GROUPS.items():
        for fusion in ("score", "feature"):
            out[f"{fusion}-{group}"] = [
                f"model.config.channels=[{', '.join(members)}]",
                f"model.config.fusion={fusion}",
            ]
    return out


def load_predictions(folder: Path) -> pd.DataFrame:
    return (
        pd.read_csv(folder / "predictions.csv")
        .sort_values("utterance_id")
        .reset_index(drop=True)
    )


def oracle_fusion(folder: Path) -> dict[str, dict]:
    """The paper's weight choice: search eq. 8-10 on the pooled test predictions (an oracle).

    Uses the single-channel block-max rows; groups with a channel not run are left out.
    """
    channels = [
        c for c in CHANNELS if (folder / f"{c}-block-max" / "predictions.csv").is_file()
    ]
    if not channels:
        return {}
    preds = {c: load_predictions(folder / f"{c}-block-max") for c in channels}
    first = preds[channels[0]]
    labels = [c[2:] for c in first.columns if c.startswith("p_")]
    y = first["true"].map({lab: i for i, lab in enumerate(labels)}).to_numpy()
    scores = {c: p[[f"p_{lab}" for lab in labels]].to_numpy() for c, p in preds.items()}
    out = {}
    for group, members in GROUPS.items():
        if not set(members) <= set(channels):
            continue
        table = {c: scores[c] for c in members}
        weights = search_two_stage(table, y)
        fused = apply_two_stage(table, weights)
        metrics = compute_metrics(
            first["true"], [labels[k] for k in fused.argmax(axis=1)], labels
        )
        out[group] = {
            "ua": metrics["ua"],
            "wa": metrics["wa"],
            "weights": {k: v for k, v in weights.items() if not k.startswith("ua")},
        }
    return out


def summarise(folder: Path) -> dict:
    metrics = json.loads((folder / "metrics.json").read_text())
    fit = metrics["extra"]["fit"]
    weights = {
        fold: info.get("weights") for fold, info in fit.items() if info.get("weights")
    }
    return {
        "ua": metrics["ua"],
        "wa": metrics["wa"],
        "wall_s": metrics["extra"]["wall_time_s"]["total"],
        "fold_weights": weights,
        "absent": sorted(
            {c for info in fit.values() for c in info.get("absent_channels", [])}
        ),
    }


def write_tables(folder: Path, results: dict, oracle: dict, header: str) -> None:
    lines = [header, "", "| row | UA | WA | wall s | notes |", "|---|---|---|---|---|"]
    for name, r in results.items():
        note = ""
        if r["fold_weights"]:
            keys = ("alpha", "beta", "lambda")
            per_fold = [
                ",".join(f"{k[0]}={w[k]}" for k in keys if k in w)
                for w in r["fold_weights"].values()
            ]
            note = "weights per fold (inner folds): " + "; ".join(per_fold)
        if r["absent"]:
            note += f" absent: {', '.join(r['absent'])}"
        lines.append(
            f"| {name} | {r['ua']:.3f} | {r['wa']:.3f} | {r['wall_s']:.0f} | {note} |"
        )
    for group, r in oracle.items():
        w = ", ".join(f"{k}={v}" for k, v in r["weights"].items())
        lines.append(
            f"| score-{group} ORACLE (weights chosen on test labels, paper-style) | {r['ua']:.3f} | {r['wa']:.3f} | - | {w} |"
        )
    atomic_write_text(folder / "tables.md", "\n".join(lines) + "\n")
    atomic_write_text(
        folder / "tables.json",
        json.dumps({"rows": results, "oracle": oracle}, indent=2, default=float),
    )


#: The paper's accuracies (%) on AFEW 5.0 / BAUM-1s, Tables 2-7 (other corpora: context only).
PAPER = {
    "left-global-max": "29.57 / 42.31", "left-global-avg": "29.24 / 42.26",
    "left-block-max": "32.64 / 43.10", "left-block-avg": "31.33 / 43.04",
    "right-global-max": "30.88 / 32.04", "right-global-avg": "30.35 / 32.82",
    "right-block-max": "32.90 / 33.77", "right-block-avg": "31.59 / 35.69",
    "mid-global-max": "30.85 / 38.18", "mid-global-avg": "29.33 / 37.73",
    "mid-block-max": "32.89 / 41.52", "mid-block-avg": "32.37 / 41.24",
    "side-global-max": "22.71 / 38.72", "side-global-avg": "21.35 / 36.96",
    "side-block-max": "25.06 / 41.09", "side-block-avg": "24.54 / 39.86",
    "score-LR": "34.51 (α=0.4) / 43.70 (α=0.6)", "score-MS": "34.99 (β=0.7) / 42.72 (β=0.6)",
    "score-LRMS": "36.29 (λ=0.6) / 44.31 (λ=0.5)",
    "feature-LR": "33.95 / 43.56", "feature-MS": "34.18 / 41.45", "feature-LRMS": "35.47 / 44.02",
}  # fmt: skip


def _cell(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f} (n={len(values)})"


def combined_tables(corpus_folder: Path) -> str:
    """One markdown table over the frozen run and every fine-tuned seed of a corpus folder:
    UA (WA) per row, fine-tuned as mean ± sample std over seeds, the ORACLE rows, the paper."""
    studies = {}
    for tables in sorted(corpus_folder.glob("*/tables.json")):
        studies[tables.parent.name] = json.loads(tables.read_text())
    frozen = studies.get("frozen", {"rows": {}, "oracle": {}})
    tuned = [v for k, v in studies.items() if k.startswith("finetune")]
    names = list(frozen["rows"]) + [
        n for t in tuned for n in t["rows"] if n not in frozen["rows"]
    ]
    names = list(dict.fromkeys(names))
    lines = [
        "| row | frozen UA | frozen WA | fine-tuned UA | fine-tuned WA | paper AFEW / BAUM (%) |",
        "|---|---|---|---|---|---|",
    ]
    for name in names:
        f = frozen["rows"].get(name)
        ua = [t["rows"][name]["ua"] for t in tuned if name in t["rows"]]
        wa = [t["rows"][name]["wa"] for t in tuned if name in t["rows"]]
        cells = [
            f"{f['ua']:.3f}" if f else "-",
            f"{f['wa']:.3f}" if f else "-",
            _cell(ua),
            _cell(wa),
        ]
        lines.append(f"| {name} | {' | '.join(cells)} | {PAPER.get(name, '-')} |")
    for group in GROUPS:
        f = frozen["oracle"].get(group)
        ua = [t["oracle"][group]["ua"] for t in tuned if group in t["oracle"]]
        wa = [t["oracle"][group]["wa"] for t in tuned if group in t["oracle"]]
        if f is None and not ua:
            continue
        cells = [
            f"{f['ua']:.3f}" if f else "-",
            f"{f['wa']:.3f}" if f else "-",
            _cell(ua),
            _cell(wa),
        ]
        lines.append(
            f"| score-{group} **ORACLE** (test labels) | {' | '.join(cells)} | {PAPER[f'score-{group}']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="emovo")
    parser.add_argument("--root", default="../shared/corpora/emovo")
    parser.add_argument("--recipe", default="recipes/binaural.yaml")
    parser.add_argument("--out", default="results/binaural")
    parser.add_argument("--mode", choices=sorted(MODES), default="frozen")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", choices=("all", "main"), default="all")
    parser.add_argument(
        "--single", nargs="+", default=list(CHANNELS), help="channels run alone"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help="extra recipe override",
    )
    parser.add_argument(
        "--summary",
        action="store_true",
        help="print the table over all runs, run nothing",
    )
    args = parser.parse_args()
    if args.summary:
        print(combined_tables(Path(args.out) / args.corpus))
        return
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(message)s"
    )
    torch.set_num_threads(1)
    folder = (
        Path(args.out)
        / args.corpus
        / (f"{args.mode}-seed{args.seed}" if args.mode == "finetune" else args.mode)
    )
    results = {}
    for name, overrides in rows(args.rows, tuple(args.single)).items():
        run_dir = folder / name
        if not (run_dir / "metrics.json").is_file():
            recipe = load_recipe(
                args.recipe,
                corpus=args.corpus,
                root=args.root,
                overrides=[
                    *MODES[args.mode],
                    *overrides,
                    f"seed={args.seed}",
                    "n_jobs=1",
                    *args.overrides,
                ],
            )
            started = time.perf_counter()
            run_experiment(recipe, run_dir, progress=False, overwrite=True)
            print(f"{name}: {time.perf_counter() - started:.0f} s", flush=True)
        results[name] = summarise(run_dir)
        print(
            f"{name}: UA {results[name]['ua']:.3f} WA {results[name]['wa']:.3f}",
            flush=True,
        )
    oracle = oracle_fusion(folder)
    header = (
        f"# Binaural study: {args.corpus}, {args.mode} CNN, seed {args.seed} (LOSO)"
    )
    write_tables(folder, results, oracle, header)
    print((folder / "tables.md").read_text())


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
