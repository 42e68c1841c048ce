"""The dropout → batch-norm statistics shift of the reduced Attention-FCN, with and without
recalibration (docs/results_blstm_fcn.md, "A batch-norm bug").

Trains the Attention-FCN row (FCN 16/32/32, batch 32, 300-frame windows, no early stopping) on the
training speakers of the first EmoDB leave-one-speaker-out fold (test speaker 03), then reports, in
evaluation mode on the training utterances: each FCN batch norm's input variance and mean against
its running statistics, and the UA on those training utterances; also the UA with every batch norm
using its batch's own statistics (dropout off), and the test speaker's UA::

    OMP_NUM_THREADS=1 python benchmarks/bn_shift.py [--epochs 8] [--root data/emodb]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score

from serkit.evaluation.protocols import make_folds
from serkit.experiment import fit_normalisers, normalise, prepare_dataset
from serkit.features.data import take_rows
from serkit.models.base import get_model
from serkit.models.blstm_fcn import MaskedBatchNorm2d
from serkit.recipe import load_recipe


def fcn_norms(module: torch.nn.Module) -> list[MaskedBatchNorm2d]:
    """The FCN batch norms of ``module``, first to last."""
    return [m for m in module.modules() if isinstance(m, MaskedBatchNorm2d)]


def norm_inputs(model, X) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Per batch norm, the (input, mask) pairs of one evaluation pass over ``X``."""
    norms = fcn_norms(model.module_)
    seen: list[list] = [[] for _ in norms]
    hooks = [n.register_forward_hook(lambda mod, args, out, i=i: seen[i].append(args)) for i, n in enumerate(norms)]
    model.predict_proba(X)
    for hook in hooks:
        hook.remove()
    return seen


def masked_moments(pairs) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and variance over the real frames of all batches."""
    values = torch.cat([x.permute(1, 0, 2, 3)[:, m[:, None, :].expand(-1, x.shape[2], -1)] for x, m in pairs], dim=1)
    return values.double().mean(1), values.double().var(1)


@torch.no_grad()
def batch_stats_ua(model, X, y) -> float:
    """Training-utterance UA with dropout off and every batch norm on its batch's statistics."""
    module = model.module_.eval()
    norms = fcn_norms(module)
    saved = [(n.running_mean.clone(), n.running_var.clone(), n.momentum) for n in norms]
    for n in norms:
        n.train()
        n.momentum = 0.0  # batch statistics, running statistics left as they are
    pred = np.zeros(len(y), dtype=int)
    for index, batch in model.eval_batches(X, torch.device("cpu")):
        pred[index] = module(batch).argmax(1).numpy()
    for n, (mean, var, momentum) in zip(norms, saved, strict=True):
        n.eval()
        n.running_mean.copy_(mean), n.running_var.copy_(var)
        n.momentum = momentum
    return balanced_accuracy_score(y, pred)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--root", default="data/emodb")
    args = parser.parse_args()
    torch.set_num_threads(1)
    recipe = load_recipe(
        "recipes/blstm_fcn_attention_fcn.yaml",
        overrides=[
            f"corpus.root={args.root}",
            "model.config.fcn_filters=[16,32,32]",
            "model.config.max_train_frames=300",
            "model.config.batch_size=32",
            f"model.config.max_epochs={args.epochs}",
            "model.config.valid_speakers=0",
        ],
    )
    data = prepare_dataset(recipe, progress=False)
    fold = make_folds(data.table, recipe["protocol"]).folds[0]
    speakers = data.table["speaker"].to_numpy()
    inputs, _ = data.fold_inputs(fold.train, recipe["seed"])
    rows = {name: {key: take_rows(x, index) for key, x in inputs.items()} for name, index in
            (("train", fold.train), ("test", fold.test))}  # fmt: skip
    normalisers = fit_normalisers(recipe["normalisation"], rows["train"], speakers[fold.train])
    X = normalise(normalisers, rows["train"], speakers[fold.train])
    X_test = normalise(normalisers, rows["test"], speakers[fold.test])
    y = data.y[fold.train]
    for recalibrate in (False, True):
        model = get_model(recipe["model"]["name"], {**recipe["model"]["config"], "bn_recalibrate": recalibrate})
        model.fit(X, y, labels=data.labels, groups=speakers[fold.train], seed=0, layouts=data.plan.layouts)
        print(f"bn_recalibrate={recalibrate}, {fold.name} held out, {args.epochs} epochs")
        for i, (norm, pairs) in enumerate(zip(fcn_norms(model.module_), norm_inputs(model, X), strict=True)):
            mean, var = masked_moments(pairs)
            ratio = (var / norm.running_var.double()).median()
            shift = ((mean - norm.running_mean.double()).abs() / norm.running_var.double().sqrt()).median()
            print(
                f"  norm {i}: eval input variance / running variance {ratio:.2f}, "
                f"|mean - running mean| / running sd {shift:.2f} (medians over channels)"
            )
        train_ua = balanced_accuracy_score(y, model.predict_proba(X).argmax(1))
        test_ua = balanced_accuracy_score(data.y[fold.test], model.predict_proba(X_test).argmax(1))
        print(
            f"  training-utterance UA: evaluation mode {train_ua:.3f}, batch statistics {batch_stats_ua(model, X, y):.3f}; "
            f"test speaker UA {test_ua:.3f}"
        )


if __name__ == "__main__":
    main()
