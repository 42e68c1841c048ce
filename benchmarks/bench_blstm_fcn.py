"""Attention-BLSTM-FCN and its deep-spectrum SVM from the same trained networks, on one recipe's
speaker-independent folds.

``serkit experiment recipes/blstm_fcn.yaml`` and ``serkit experiment recipes/blstm_fcn_svm.yaml``
would each train one network per fold. This script runs the ``blstm_fcn_svm`` composition (the
fitted derived feature ``blstm_fcn_deep_spectrum`` -> ``linear_svm``) and scores both heads of
each fold's network: its own DNN (:meth:`BLSTMFCNDeepSpectrum.network_proba`, the Table 5 system)
and the linear SVM on its fused vectors (Table 7), halving the CPU time. The SVM head is exactly
what ``serkit experiment`` computes for that recipe (same features, normalisation, model and
seed). It also times every fold (seconds per epoch).

Each head is written as a normal run folder (``report.md``, ``metrics.json``, …)::

    python benchmarks/bench_blstm_fcn.py recipes/blstm_fcn_svm.yaml --out results/blstm_fcn \\
        --seeds 0 1 2 --set 'protocol={name: lkgo, k: 5}' --set features.deep_spectrum.config.lstm_hidden=64

On a shared machine the folds can run in separate processes (``--folds 0 1``, ``--folds 2 3``,
…, same other arguments); each writes its folds to ``<out>/partial/``, and ``--merge`` then
writes the run folders once every fold is there. (The fixed ImageNet-CNN deep spectrum needs no
script: ``serkit experiment recipes/blstm_fcn_cnn_svm.yaml`` computes its features once, cached.)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from serkit.derived.deep_spectrum import BLSTMFCNDeepSpectrum
from serkit.evaluation.protocols import Fold, make_folds
from serkit.evaluation.report import write_run
from serkit.experiment import Dataset, fit_normalisers, normalise, prepare_dataset
from serkit.features.data import take_rows
from serkit.models.base import SERModel, get_model
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


def deep_spectrum_key(data: Dataset) -> str:
    """The key of the recipe's one ``blstm_fcn_deep_spectrum`` feature.

    Raises:
        SystemExit: the recipe has none, or several.
    """
    keys = [key for key, node in data.plan.nodes.items() if isinstance(node.derived, BLSTMFCNDeepSpectrum)]
    if len(keys) != 1:
        raise SystemExit(f"the recipe needs exactly one blstm_fcn_deep_spectrum feature, found {keys}")
    return keys[0]


def both_heads(
    recipe: dict, data: Dataset, key: str, fold: Fold, seed: int
) -> tuple[np.ndarray, np.ndarray, BLSTMFCNDeepSpectrum, SERModel]:
    """Test probabilities ``(n_test, K)`` of the network's DNN and of the SVM on its vectors, the
    fitted feature and the fitted SVM.

    The feature (network) is fitted on ``fold.train`` only, as :func:`serkit.experiment.run_fold`
    does, holding out its own validation speaker(s) from those rows; then the SVM is fitted as
    there, on the outputs normalised with training statistics. A protocol's validation rows
    (``fold.valid``) are not used: fitted derived features receive training rows only.
    """
    speakers = data.speakers
    inputs, fitted = data.fold_inputs(fold.train, seed)
    feature = fitted[key]
    source = {name: take_rows(data.features[name], fold.test) for name in data.plan.nodes[key].inputs}
    network_proba = feature.network_proba(source)
    rows = {name: {k: take_rows(x, index) for k, x in inputs.items()} for name, index in
            (("train", fold.train), ("test", fold.test))}  # fmt: skip
    norms = fit_normalisers(recipe["normalisation"], rows["train"], speakers[fold.train])
    model = get_model(recipe["model"]["name"], recipe["model"]["config"])
    model.fit(normalise(norms, rows["train"], speakers[fold.train]), data.y[fold.train], labels=data.labels,
              groups=speakers[fold.train], seed=seed, layouts=data.plan.layouts)  # fmt: skip
    svm_proba = model.predict_proba(normalise(norms, rows["test"], speakers[fold.test]))
    return network_proba, svm_proba, feature, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--folds", type=int, nargs="*", help="run only these fold indices (write partial results)")
    parser.add_argument("--merge", action="store_true", help="merge partial results into run folders")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe, overrides=args.overrides)
    started = time.perf_counter()
    data = prepare_dataset(recipe, progress=False)
    key = deep_spectrum_key(data)
    protocol = make_folds(data.table, recipe["protocol"])
    described = {**protocol.describe(), "normalisation": recipe["normalisation"]}
    print(f"features ready in {time.perf_counter() - started:.0f} s; {len(protocol.folds)} folds", flush=True)

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
            network_proba, svm_proba, feature, model = both_heads(recipe, data, key, fold, seed)
            fit_s = time.perf_counter() - t0
            for head, proba in (("network", network_proba), ("svm", svm_proba)):
                predictions(data, fold.test, fold.name, proba).to_csv(partial / f"{head}-seed{seed}-fold{i}.csv", index=False)
            epochs = len(feature.network_.history_)
            timing = {"fit_s": round(fit_s, 1), "epochs": epochs, "best_epoch": feature.network_.best_epoch_,
                      "s_per_epoch_incl_svm": round(fit_s / max(epochs, 1), 1),
                      "fit": {"network": feature.fit_info(), "svm": model.fit_info()}}  # fmt: skip
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
