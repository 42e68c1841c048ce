"""MSIR throughput: speech-encoder real-time factor and training time per epoch.

    python benchmarks/bench_msir.py encoder --root data/emodb --n 40 [--model whisper-base] [--batch 8]
    python benchmarks/bench_msir.py epoch --recipe recipes/msir.yaml [--n 128] [--set model.config.logmel_key=null ...]

``encoder``: extracts frames for ``n`` EmoDB utterances one at a time and then in length-sorted
batches of ``--batch`` (after one warm-up call, so loading the weights is not timed), and prints the
wall time, the audio duration and the real-time factor (wall time / audio time) of each mode, plus
the largest difference between batched and one-at-a-time frames.

``epoch``: extracts the recipe's features for the corpus's first ``n`` utterances (from the
feature cache when it holds them), then times ``--epochs`` training epochs of the recipe's model
on them (no validation) and prints seconds per epoch and per 100 utterances.

Which encoder layer to use is no longer a benchmark: ``recipes/encoder_svm.yaml`` chooses it on
inner folds of the training speakers inside ``serkit experiment`` (``docs/results_msir.md``).

All print JSON with the process's peak resident memory (``ru_maxrss``) and the torch thread count.
Wall times depend on the machine's load; the CPU seconds of the process (``cpu_s``) much less so.
Run on an idle machine for comparable timings.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import torch

from serkit.audio import load_audio
from serkit.corpora import get_corpus
from serkit.features import extract_features, get_extractor
from serkit.features.encoders import SpeechEncoder
from serkit.models.base import get_model
from serkit.recipe import load_recipe


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_encoder(args: argparse.Namespace) -> dict:
    table = get_corpus("emodb").load(args.root).iloc[: args.n]
    audios = [load_audio(p) for p in table["path"]]
    seconds = sum(a.duration for a in audios)
    extractor = SpeechEncoder({"model": args.model, "layer": args.layer})
    extractor.extract(audios[0])  # load the weights, warm up
    start, cpu = time.perf_counter(), time.process_time()
    single = [extractor.extract(a) for a in audios]
    t_single, c_single = time.perf_counter() - start, time.process_time() - cpu
    order = np.argsort([a.n_samples for a in audios])
    batched: list[np.ndarray | None] = [None] * len(audios)
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(order), args.batch):
        index = order[i : i + args.batch]
        for j, frames in zip(
            index, extractor.extract_batch([audios[k] for k in index]), strict=True
        ):
            batched[j] = frames
    t_batch, c_batch = time.perf_counter() - start, time.process_time() - cpu
    diff = max(float(np.abs(s - b).max()) for s, b in zip(single, batched, strict=True))
    return {
        "model": args.model,
        "layer": args.layer,
        "utterances": len(audios),
        "audio_s": round(seconds, 2),
        "one_at_a_time": {
            "wall_s": round(t_single, 2),
            "rtf": round(t_single / seconds, 4),
            "cpu_rtf": round(c_single / seconds, 4),
        },
        f"batched_{args.batch}": {
            "wall_s": round(t_batch, 2),
            "rtf": round(t_batch / seconds, 4),
            "cpu_rtf": round(c_batch / seconds, 4),
        },
        "max_abs_diff_batched_vs_single": diff,
    }


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
    enc = sub.add_parser("encoder")
    enc.add_argument("--root", default="data/emodb")
    enc.add_argument("--n", type=int, default=40)
    enc.add_argument("--model", default="whisper-base")
    enc.add_argument(
        "--layer", default="all", type=lambda v: v if v == "all" else int(v)
    )
    enc.add_argument("--batch", type=int, default=8)
    ep = sub.add_parser("epoch")
    ep.add_argument("--recipe", default="recipes/msir.yaml")
    ep.add_argument("--n", type=int, default=128)
    ep.add_argument("--epochs", type=int, default=1)
    ep.add_argument(
        "--set", action="append", default=[], help="recipe override KEY=VALUE"
    )
    args = parser.parse_args()
    run = {"encoder": bench_encoder, "epoch": bench_epoch}[
        args.what
    ]
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
