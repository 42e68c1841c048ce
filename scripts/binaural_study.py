"""Tables 1-7 of the binaural paper (Zhang et al., IEEE Access 2020) on one corpus, from recipes/binaural*.yaml.

Every table row is one ``serkit experiment`` run of the binaural composition (log-Mel views ->
``segment_cnn`` [-> ``finetuned_segment_cnn``] -> ``temporal_pool`` -> model), built from the base
recipe by keeping the chains of the row's channels and choosing the model, written to
``<out>/<corpus>/<mode>/<row>/`` (skipped when that folder holds a finished run, so an interrupted
study resumes). The CNN's segment features (frozen) or cut activations (fine-tuned) are cached by
the pipeline under the recipe's ``cache_dir``, so after the first row of a mode the others cost
pooling and SVMs only (fine-tuned rows also train their heads, per fold and channel).

Rows and models:

- Tables 1-5, ``<channel>-<pooling>``: one channel, block-based / global, max / average pooling;
  ``score_fusion`` with that channel alone (its SVM trained where the channel is present, uniform
  scores where it is missing; without missing rows this is ``linear_svm``, as in
  ``recipes/binaural_mid.yaml``);
- Table 6, ``score-LR``, ``score-MS``, ``score-LRMS``: ``score_fusion``, weights searched on the
  training speakers' out-of-fold scores (honest; they differ per fold), and the paper's choice
  on the test data, ``score-* ORACLE``: eq. 8-10 searched on the pooled test predictions of the
  single-channel block-max rows. **The oracle rows have seen the test labels.**
- Table 7, ``feature-LR``, ``feature-MS``, ``feature-LRMS``: one ``linear_svm`` on the
  concatenated channels.

Tables written to ``<out>/<corpus>/<mode>/tables.md`` and ``tables.json``.

Usage (run the serkit of this checkout; heavy: use flock and OMP_NUM_THREADS=1 on shared machines)::

    python scripts/binaural_study.py --corpus emovo --root ../shared/corpora/emovo --set cache_dir=/tmp/c
    python scripts/binaural_study.py --corpus emovo --root ../shared/corpora/emovo --mode finetune --seed 1
    python scripts/binaural_study.py --corpus emodb --root ../shared/corpora/emodb --rows main --single left mid
    python scripts/binaural_study.py --corpus emovo --summary
"""

from __future__ import annotations

import argparse
import copy
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
from serkit.models.fusion import apply_fusion, search_fusion
from serkit.recipe import load_recipe

CHANNELS = ("left", "right", "mid", "side")
POOLINGS = {
    "block-max": {"pooling": "block", "pool": "max"},
    "block-avg": {"pooling": "block", "pool": "avg"},
    "global-max": {"pooling": "global", "pool": "max"},
    "global-avg": {"pooling": "global", "pool": "avg"},
}
GROUPS = {"LR": [["left", "right"]], "MS": [["mid", "side"]], "LRMS": [["left", "right"], ["mid", "side"]]}
#: Base recipe of each mode (frozen ImageNet features; last stage fine-tuned per fold).
MODES = {"frozen": "recipes/binaural.yaml", "finetune": "recipes/binaural_finetune.yaml"}
#: The paper's names of the fusion weights (eq. 8-10), by fit_info key.
WEIGHT_NAMES = {"left+right": "alpha", "mid+side": "beta", "groups": "lambda"}


def restrict(features: dict, channels: list[str], pooling: dict | None = None) -> dict:
    """The recipe's feature entries of ``channels`` only (``<channel>`` and ``*_<channel>`` keys),
    the pooled outputs (``<channel>``) with ``pooling`` when given."""
    kept = {}
    for key, spec in features.items():
        channel = next((c for c in channels if key == c or key.endswith(f"_{c}")), None)
        if channel is None:
            continue
        spec = copy.deepcopy(spec)
        if key == channel and pooling is not None:
            spec["config"] = {**spec.get("config", {}), **pooling}
        kept[key] = spec
    return kept


def rows(
    which: str, single: tuple[str, ...], member: dict
) -> dict[str, tuple[list[str], dict, dict | None]]:
    """Row name -> (channels, model, pooling): single channels (``which="all"``: four poolings
    each; ``"main"``: block max only), then score and feature fusion of LR, MS and LRMS.

    A channel silent in every recording of the corpus (EmoDB's Side) stays in the fusion rows:
    ``score_fusion`` leaves it out (a pair reduces to its partner, the meaning of a missing channel
    in eq. 8-10) and ``linear_svm``'s block of it is all zeros (no part in the kernel).
    """
    out: dict[str, tuple[list[str], dict, dict | None]] = {}
    poolings = POOLINGS if which == "all" else {"block-max": POOLINGS["block-max"]}
    for channel in single:
        for name, pooling in poolings.items():
            model = {"name": "score_fusion", "config": {"groups": [[channel]], "member": member}}
            out[f"{channel}-{name}"] = ([channel], model, pooling)
    for group, groups in GROUPS.items():
        channels = [c for g in groups for c in g]
        out[f"score-{group}"] = (channels, {"name": "score_fusion", "config": {"groups": groups, "member": member}}, None)
        out[f"feature-{group}"] = (channels, copy.deepcopy(member), None)
    return out


def load_predictions(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "predictions.csv").sort_values("utterance_id").reset_index(drop=True)


def oracle_fusion(folder: Path) -> dict[str, dict]:
    """The paper's weight choice: eq. 8-10 searched on the pooled TEST predictions (an oracle).

    Uses the single-channel block-max rows; groups with a channel not run are left out.
    """
    channels = [c for c in CHANNELS if (folder / f"{c}-block-max" / "predictions.csv").is_file()]
    if not channels:
        return {}
    preds = {c: load_predictions(folder / f"{c}-block-max") for c in channels}
    first = preds[channels[0]]
    labels = [c[2:] for c in first.columns if c.startswith("p_")]
    y = first["true"].map({lab: i for i, lab in enumerate(labels)}).to_numpy()
    scores = {c: p[[f"p_{lab}" for lab in labels]].to_numpy() for c, p in preds.items()}
    out = {}
    for group, groups in GROUPS.items():
        members = [c for g in groups for c in g]
        if not set(members) <= set(channels):
            continue
        table = {c: scores[c] for c in members}
        weights = search_fusion(table, y, groups)
        fused = apply_fusion(table, weights, groups)
        metrics = compute_metrics(first["true"], [labels[k] for k in fused.argmax(axis=1)], labels)
        named = {"+".join(g): w for g, w in zip(groups, weights.pairs)}
        if weights.groups is not None:
            named["groups"] = weights.groups
        out[group] = {"ua": metrics["ua"], "wa": metrics["wa"], "weights": {WEIGHT_NAMES[k]: v for k, v in named.items()}}
    return out


def summarise(folder: Path) -> dict:
    metrics = json.loads((folder / "metrics.json").read_text())
    fit = metrics["extra"]["fit"]
    weights = {fold: {WEIGHT_NAMES.get(k, k): v for k, v in info.get("weights", {}).items()} for fold, info in fit.items()}
    return {
        "ua": metrics["ua"],
        "wa": metrics["wa"],
        "wall_s": metrics["extra"]["wall_time_s"]["total"],
        "fold_weights": {fold: w for fold, w in weights.items() if w},
        "absent": sorted({c for info in fit.values() for c in info.get("absent_inputs", info.get("missing_inputs", []))}),
    }


def write_tables(folder: Path, results: dict, oracle: dict, header: str) -> None:
    lines = [header, "", "| row | UA | WA | wall s | notes |", "|---|---|---|---|---|"]
    for name, r in results.items():
        note = ""
        if r["fold_weights"]:
            per_fold = [",".join(f"{k[0]}={v}" for k, v in w.items()) for w in r["fold_weights"].values()]
            note = "weights per fold (training speakers' out-of-fold scores): " + "; ".join(per_fold)
        if r["absent"]:
            note += f" absent: {', '.join(r['absent'])}"
        lines.append(f"| {name} | {r['ua']:.3f} | {r['wa']:.3f} | {r['wall_s']:.0f} | {note} |")
    for group, r in oracle.items():
        w = ", ".join(f"{k}={v}" for k, v in r["weights"].items())
        lines.append(f"| score-{group} ORACLE (weights chosen on test labels, paper-style) | {r['ua']:.3f} | {r['wa']:.3f} | - | {w} |")
    atomic_write_text(folder / "tables.md", "\n".join(lines) + "\n")
    atomic_write_text(folder / "tables.json", json.dumps({"rows": results, "oracle": oracle}, indent=2, default=float))


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
    studies = {t.parent.name: json.loads(t.read_text()) for t in sorted(corpus_folder.glob("*/tables.json"))}
    frozen = studies.get("frozen", {"rows": {}, "oracle": {}})
    tuned = [v for k, v in studies.items() if k.startswith("finetune")]
    names = list(dict.fromkeys([*frozen["rows"], *(n for t in tuned for n in t["rows"])]))
    lines = [
        "| row | frozen UA | frozen WA | fine-tuned UA | fine-tuned WA | paper AFEW / BAUM (%) |",
        "|---|---|---|---|---|---|",
    ]

    def cells(f: dict | None, runs: list[dict]) -> str:
        ua, wa = [r["ua"] for r in runs], [r["wa"] for r in runs]
        return " | ".join([f"{f['ua']:.3f}" if f else "-", f"{f['wa']:.3f}" if f else "-", _cell(ua), _cell(wa)])

    for name in names:
        lines.append(f"| {name} | {cells(frozen['rows'].get(name), [t['rows'][name] for t in tuned if name in t['rows']])} "
                     f"| {PAPER.get(name, '-')} |")  # fmt: skip
    for group in GROUPS:
        f = frozen["oracle"].get(group)
        runs = [t["oracle"][group] for t in tuned if group in t["oracle"]]
        if f is not None or runs:
            lines.append(f"| score-{group} **ORACLE** (test labels) | {cells(f, runs)} | {PAPER[f'score-{group}']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="emovo")
    parser.add_argument("--root", default="../shared/corpora/emovo")
    parser.add_argument("--recipe", default=None, help="base recipe (default: the mode's, see MODES)")
    parser.add_argument("--out", default="results/binaural")
    parser.add_argument("--mode", choices=sorted(MODES), default="frozen")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", choices=("all", "main"), default="all")
    parser.add_argument("--only", nargs="+", default=None, help="run only these rows (names as in the tables)")
    parser.add_argument("--single", nargs="+", default=list(CHANNELS), help="channels run alone")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra recipe override")
    parser.add_argument("--summary", action="store_true", help="print the table over all runs, run nothing")
    args = parser.parse_args()
    if args.summary:
        print(combined_tables(Path(args.out) / args.corpus))
        return
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(1)
    folder = Path(args.out) / args.corpus / (f"{args.mode}-seed{args.seed}" if args.mode == "finetune" else args.mode)
    base = load_recipe(args.recipe or MODES[args.mode], corpus=args.corpus, root=args.root,
                       overrides=[f"seed={args.seed}", "n_jobs=1", *args.overrides])  # fmt: skip
    member = base["model"]["config"]["member"]
    results = {}
    for name, (channels, model, pooling) in rows(args.rows, tuple(args.single), member).items():
        if args.only is not None and name not in args.only:
            continue
        run_dir = folder / name
        if not (run_dir / "metrics.json").is_file():
            recipe = {**copy.deepcopy(base), "name": f"binaural-{name}", "model": model,
                      "features": restrict(base["features"], channels, pooling)}  # fmt: skip
            started = time.perf_counter()
            run_experiment(recipe, run_dir, progress=False, overwrite=True)
            print(f"{name}: {time.perf_counter() - started:.0f} s", flush=True)
        results[name] = summarise(run_dir)
        print(f"{name}: UA {results[name]['ua']:.3f} WA {results[name]['wa']:.3f}", flush=True)
    oracle = oracle_fusion(folder)
    write_tables(folder, results, oracle, f"# Binaural study: {args.corpus}, {args.mode} CNN, seed {args.seed} (LOSO)")
    print((folder / "tables.md").read_text())


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
