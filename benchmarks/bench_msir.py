"""MSIR throughput: training time per epoch.

    python benchmarks/bench_msir.py epoch --recipe recipes/msir.yaml [--n 128] [--set model.config.logmel_key=null ...]

The speech encoder's extraction speed (real-time factor one at a time and batched, against the
machine's measured matrix-multiply rate) is ``benchmarks/bench_encoder.py``, which replaces this
script's former ``encoder`` sub-command.

``epoch``: extracts the recipe's features for the corpus's first ``n`` utterances (from the
feature cache when it holds them), then times ``--epochs`` training epochs of the recipe's model
on them (no validation) and prints seconds per epoch and per 100 utterances.

Which encoder layer to use is no longer a benchmark: ``recipes/encoder_svm.yaml`` chooses it on
inner folds of the training speakers inside ``serkit experiment`` (``docs/results_msir.md``).

It prints JSON with the process's peak resident memory (``ru_maxrss``) and the torch thread count.
Wall times depend on the machine's load; the CPU seconds of the process (``cpu_s``) much less so.
Run on an idle machine for comparable timings.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from serkit.corpora import get_corpus
from serkit.features import extract_features, get_extractor
from serkit.models.base import get_model
from serkit.recipe import load_recipe


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_epoch(args: argparse.Namespace) -> dict:
    recipe = load_recipe(args.recipe, overrides=args.set)
    corpus = recipe["corpus"]
    table = (
        get_corpus(corpus["name"])
        .load(corpus["root"], **(corpus.get("options") or {}))
        .iloc[: args.n]
    )
    inputs = {}
    for key, spec in recipe["features"].items():
        extractor = get_extractor(spec["extractor"], spec.get("config"))
        features = extract_features(
            table, extractor, cache_dir=recipe["cache_dir"], n_jobs=1, progress=False
        )
        inputs[key] = list(features.select(table["utterance_id"].tolist()).values)
    labels = sorted(set(table["label"]))
    y = table["label"].map({lab: i for i, lab in enumerate(labels)}).to_numpy()
    config = {
        **recipe["model"]["config"],
        "max_epochs": args.epochs,
        "valid_speakers": 0,
        "device": "cpu",
    }
    model = get_model(recipe["model"]["name"], config)
    start, cpu_start = time.perf_counter(), time.process_time()
    model.fit(inputs, y, labels=labels, seed=0)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    n_params = sum(p.numel() for p in model.module_.parameters())
    return {
        "recipe": args.recipe,
        "overrides": args.set,
        "utterances": len(y),
        "epochs": args.epochs,
        "parameters": n_params,
        "s_per_epoch": round(wall / args.epochs, 2),
        "s_per_epoch_per_100_utterances": round(wall / args.epochs / len(y) * 100, 2),
        "cpu_s_per_epoch": round(cpu / args.epochs, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    ep = sub.add_parser("epoch")
    ep.add_argument("--recipe", default="recipes/msir.yaml")
    ep.add_argument("--n", type=int, default=128)
    ep.add_argument("--epochs", type=int, default=1)
    ep.add_argument(
        "--set", action="append", default=[], help="recipe override KEY=VALUE"
    )
    args = parser.parse_args()
    run = {"epoch": bench_epoch}[args.what]
    result = run(args)
    result.update(
        {
            "peak_rss_mib": round(_peak_mib(), 1),
            "torch_threads": torch.get_num_threads(),
        }
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
