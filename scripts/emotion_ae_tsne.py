"""t-SNE of the emotion-embedding autoencoder (emotion-embedding-ae Sec. V-B, Fig. 6-7).

Trains the recipe's ``emotion_ae`` model on every speaker except ``--test-speakers`` (the same
normalisation as the experiment), then writes one PNG with two panels and the 2-D points:

- the five emotion-embedding tables Emb1-5 of the decoder (``5 x K`` points of 512 dimensions
  at full width, one colour per emotion, one marker per layer);
- the utterance representations of the held-out speakers' utterances (attended encoder output,
  averaged over frames and windows; the classifier's deep emotion feature before the IS10
  concatenation), coloured by their true emotion.

Usage::

    python scripts/emotion_ae_tsne.py recipes/emotion_ae.yaml --test-speakers 03 08 \\
        --out results/emotion_ae/tsne-emodb [--corpus emovo --root ../shared/corpora/emovo] \\
        [--set model.config.max_epochs=10 ...]

The output folder gets ``tsne.png`` and ``tsne.csv``, written atomically.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from sklearn.manifold import TSNE

from serkit.errors import ConfigError
from serkit.experiment import fit_normalisers, normalise, prepare_dataset
from serkit.features.data import take_rows
from serkit.io import atomic_directory
from serkit.models.base import get_model
from serkit.recipe import load_recipe

MARKERS = ("o", "s", "^", "D", "v")


def tsne_2d(points: np.ndarray, seed: int) -> np.ndarray:
    """2-D t-SNE of ``(n, d)`` points, perplexity ``min(30, (n - 1) / 3)``."""
    perplexity = max(1.0, min(30.0, (len(points) - 1) / 3))
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        points
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--test-speakers", nargs="+", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--corpus")
    parser.add_argument("--root")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    torch.set_num_threads(1)
    recipe = load_recipe(
        args.recipe, corpus=args.corpus, root=args.root, overrides=args.overrides
    )
    if recipe["model"]["name"] != "emotion_ae":
        raise ConfigError(
            f"{args.recipe}: t-SNE needs an emotion_ae model, got {recipe['model']['name']!r}"
        )
    data = prepare_dataset(recipe, progress=False)
    speakers = data.table["speaker"].to_numpy(dtype=str)
    test = np.isin(speakers, args.test_speakers)
    if not test.any() or test.all():
        raise ConfigError(
            f"--test-speakers {args.test_speakers} must name some, not all, of {sorted(set(speakers))}"
        )
    train_rows, test_rows = np.flatnonzero(~test), np.flatnonzero(test)
    inputs, _ = data.fold_inputs(train_rows, recipe["seed"])  # fitted derived features: training rows only
    x_train = {key: take_rows(x, train_rows) for key, x in inputs.items()}
    x_test = {key: take_rows(x, test_rows) for key, x in inputs.items()}
    normalisers = fit_normalisers(recipe["normalisation"], x_train, speakers[train_rows])
    model = get_model("emotion_ae", recipe["model"]["config"])
    model.fit(
        normalise(normalisers, x_train, speakers[train_rows]),
        data.y[train_rows],
        labels=data.labels,
        groups=speakers[train_rows],
        seed=recipe["seed"],
        layouts=data.plan.layouts,
    )
    reps = model.representations(normalise(normalisers, x_test, speakers[test_rows]))
    rep_2d = tsne_2d(reps, recipe["seed"])
    table = pd.DataFrame(
        {"kind": "utterance", "utterance_id": data.table["utterance_id"].to_numpy()[test_rows],
         "label": np.asarray(data.labels)[data.y[test_rows]], "layer": 0, "x": rep_2d[:, 0], "y": rep_2d[:, 1]}
    )  # fmt: skip
    embeddings = model.embeddings()
    fig, axes = plt.subplots(
        1, 2 if embeddings is not None else 1, figsize=(12, 5), squeeze=False
    )
    colours = {lab: plt.cm.tab10(i) for i, lab in enumerate(data.labels)}
    if embeddings is not None:
        layers, k, width = embeddings.shape
        emb_2d = tsne_2d(embeddings.reshape(layers * k, width), recipe["seed"])
        layer_of, label_of = (
            np.repeat(np.arange(1, layers + 1), k),
            np.tile(np.asarray(data.labels), layers),
        )
        emb_table = pd.DataFrame(
            {"kind": "embedding", "utterance_id": "", "label": label_of, "layer": layer_of,
             "x": emb_2d[:, 0], "y": emb_2d[:, 1]}
        )  # fmt: skip
        table = pd.concat([emb_table, table], ignore_index=True)
        ax = axes[0, 1]
        for (x, y), layer, label in zip(emb_2d, layer_of, label_of, strict=True):
            ax.scatter(
                x,
                y,
                color=colours[label],
                marker=MARKERS[(layer - 1) % len(MARKERS)],
                s=60,
            )
        for layer in range(1, layers + 1):
            ax.scatter(
                [],
                [],
                color="grey",
                marker=MARKERS[(layer - 1) % len(MARKERS)],
                label=f"Emb{layer}",
            )
        ax.legend(fontsize=8)
        ax.set_title(f"emotion embeddings Emb1-{layers} ({k} emotions x {width} dims)")
    ax = axes[0, 0]
    for label in data.labels:
        rows = table[(table["kind"] == "utterance") & (table["label"] == label)]
        ax.scatter(rows["x"], rows["y"], color=colours[label], label=label, s=14)
    ax.legend(fontsize=8)
    ax.set_title(
        f"utterance representations, held-out speakers {', '.join(args.test_speakers)}"
    )
    fig.suptitle(f"t-SNE, {recipe['name']} on {recipe['corpus']['name']}")
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110, bbox_inches="tight")
    with atomic_directory(args.out, overwrite=True) as tmp:
        (tmp / "tsne.png").write_bytes(png.getvalue())
        table.to_csv(tmp / "tsne.csv", index=False)
    print(Path(args.out) / "tsne.png")


if __name__ == "__main__":
    main()
