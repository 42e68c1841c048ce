"""Attention-BLSTM-FCN and its deep-spectrum SVM from the same trained networks, plus the
EfficientNet-Lite0 deep-spectrum baseline, on one recipe's speaker-independent folds.

``serkit experiment recipes/blstm_fcn.yaml`` and ``serkit experiment recipes/blstm_fcn_svm.yaml``
would each train one network per fold; this script trains the ``blstm_fcn_svm`` model once per
fold and scores both of its heads (the network's DNN and the linear SVM on its fused vectors),
halving the CPU time. It also times every fold (seconds per epoch). The fixed CNN features do not
depend on the fold, so with ``--cnn`` they are computed once and a training-fold-standardised
linear SVM is fitted per fold (the ``deep_spectrum_cnn_svm`` model does the same inside
``serkit experiment``, recomputing the CNN features every fold).

Each head is written as a normal run folder (``report.md``, ``metrics.json``, …)::

    python benchmarks/bench_blstm_fcn.py recipes/blstm_fcn_svm.yaml --out results/blstm_fcn \\
        --seeds 0 1 2 --set protocol={name: lkgo, k: 5} [--cnn]

On a shared machine the folds can run in separate processes (``--folds 0 1``, ``--folds 2 3``,
…, same other arguments); each writes its folds to ``<out>/partial/``, and ``--merge`` then
writes the run folders once every fold is there.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from serkit.evaluation.protocols import make_folds
from serkit.evaluation.report import write_run
from serkit.experiment import Dataset, fit_normalisers, normalise, prepare_dataset
from serkit.models.base import get_model
from serkit.models.deep_spectrum import DeepSpectrumCNNSVM
from serkit.models.svm import LinearSVM
from serkit.recipe import load_recipe


def predictions(data: Dataset, test: np.ndarray, fold: str, proba: np.ndarray) -> pd.DataFrame:
    """The rows ``serkit experiment`` writes to ``predictions.csv`` for one fold."""
    rows = data.table.iloc[test]
    frame = pd.DataFrame(
        {
            "utterance_id": rows["utterance_id"].to_numpy(),
            "speaker": rows["speaker"].to_numpy(),
            "fold": fold,
            "true": rows["label"].to_numpy(),
            "predicted": [data.labels[k] for k in proba.argmax(axis=1)],
        }
    )
    for k, lab in enumerate(data.labels):
        frame[f"p_{lab}"] = proba[:, k]
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--cnn", action="store_true", help="also run the EfficientNet-Lite0 deep-spectrum baseline")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--folds", type=int, nargs="*", help="run only these fold indices (write partial results)")
    parser.add_argument("--merge", action="store_true", help="merge partial results into run folders")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe, overrides=args.overrides)
    started = time.perf_counter()
    data = prepare_dataset(recipe, progress=False)
    protocol = make_folds(data.table, recipe["protocol"])
    described = {**protocol.describe(), "normalisation": recipe["normalisation"]}
    speakers = data.table["speaker"].to_numpy(dtype=str)
    print(f"features ready in {time.perf_counter() - started:.0f} s; {len(protocol.folds)} folds", flush=True)

    if args.cnn:
        t0 = time.perf_counter()
        cnn = DeepSpectrumCNNSVM({"colormap": "viridis"})
        vectors = cnn.vectors({"x": list(data.features[next(iter(data.features))])})
        cnn_s = time.perf_counter() - t0
        frames = []
        for fold in protocol.folds:
            norm = fit_normalisers("global", {"v": vectors[fold.train]}, speakers[fold.train])
            svm = LinearSVM().fit(normalise(norm, {"v": vectors[fold.train]}, speakers[fold.train]),
                                  data.y[fold.train], labels=data.labels, groups=speakers[fold.train])
            proba = svm.predict_proba(normalise(norm, {"v": vectors[fold.test]}, speakers[fold.test]))
            frames.append(predictions(data, fold.test, fold.name, proba))
        cnn_recipe = {**recipe, "name": "deep_spectrum_cnn_svm", "normalisation": "none",
                      "model": {"name": "deep_spectrum_cnn_svm", "config": {}}}
        write_run(args.out / "cnn_svm", config=cnn_recipe, predictions=pd.concat(frames, ignore_index=True),
                  labels=data.labels, protocol=described,
                  extra={"wall_time_s": {"cnn_features": round(cnn_s, 1), "total": round(time.perf_counter() - t0, 1)}},
                  overwrite=True)
        print(f"cnn baseline done ({time.perf_counter() - t0:.0f} s)", flush=True)

    partial = args.out / "partial"
    for seed in args.seeds:
        if args.merge:
            merge(args.out, partial, recipe, data, protocol, described, seed)
            continue
        partial.mkdir(parents=True, exist_ok=True)
        chosen = range(len(protocol.folds)) if args.folds is None else args.folds
        for i in chosen:
            fold = protocol.folds[i]
            t0 = time.perf_counter()
            norms = fit_normalisers(recipe["normalisation"], data.rows(fold.train), speakers[fold.train])
            x_train = normalise(norms, data.rows(fold.train), speakers[fold.train])
            x_test = normalise(norms, data.rows(fold.test), speakers[fold.test])
            valid = None
            if fold.valid is not None:
                valid = (normalise(norms, data.rows(fold.valid), speakers[fold.valid]), data.y[fold.valid])
            model = get_model(recipe["model"]["name"], recipe["model"]["config"])
            model.fit(x_train, data.y[fold.train], labels=data.labels, groups=speakers[fold.train], seed=seed, valid=valid)
            fit_s = time.perf_counter() - t0
            for head, proba in (("network", model.network_.predict_proba(x_test)), ("svm", model.predict_proba(x_test))):
                predictions(data, fold.test, fold.name, proba).to_csv(partial / f"{head}-seed{seed}-fold{i}.csv", index=False)
            epochs = len(model.network_.history_)
            timing = {"fit_s": round(fit_s, 1), "epochs": epochs, "best_epoch": model.network_.best_epoch_,
                      "s_per_epoch_incl_svm": round(fit_s / max(epochs, 1), 1), "fit": model.fit_info()}
            (partial / f"timing-seed{seed}-fold{i}.json").write_text(json.dumps(timing))
            print(f"seed {seed} {fold.name}: fit {fit_s:.0f} s, {epochs} epochs (best {timing['best_epoch']})", flush=True)
        if args.folds is None:
            merge(args.out, partial, recipe, data, protocol, described, seed)


def merge(out: Path, partial: Path, recipe: dict, data: Dataset, protocol, described: dict, seed: int) -> None:
    """Write one run folder per head from the per-fold files of ``seed`` (all folds must be there)."""
    n = len(protocol.folds)
    timing = {protocol.folds[i].name: json.loads((partial / f"timing-seed{seed}-fold{i}.json").read_text()) for i in range(n)}
    fit_info = {name: t.pop("fit") for name, t in timing.items()}
    for head in ("network", "svm"):
        frames = [pd.read_csv(partial / f"{head}-seed{seed}-fold{i}.csv", dtype={"speaker": str, "fold": str}) for i in range(n)]
        run_recipe = {**recipe, "seed": seed, "name": f"{recipe['name']}-{head}"}
        write_run(out / f"{head}-seed{seed}", config=run_recipe, predictions=pd.concat(frames, ignore_index=True),
                  labels=data.labels, protocol=described,
                  extra={"head": head, "timing": timing, "fit": fit_info,
                         "fit_wall_time_s": round(sum(t["fit_s"] for t in timing.values()), 1)},
                  overwrite=True)


if __name__ == "__main__":
    main()
