"""Speech-encoder extraction speed against this machine's measured matrix-multiply rate.

    flock /tmp/serkit-cpu.lock python benchmarks/bench_encoder.py \\
        [--root data/emodb] [--n 60] [--model whisper-base] [--blocks all,2,3] \\
        [--threads 1,2] [--batch 8] [--repeat 3] [--json results.json]

Run it alone on the machine (the ``flock`` above, or an idle machine): it measures speed.

**The limit, measured in the same run.** For each thread count, the float32 multiply rate of a
2048 × 2048 by 2048 × 2048 product (best of several), through ``torch.mm`` (the BLAS ``torch``
was built with: MKL on x86) and through oneDNN's linear primitive (what
:mod:`serkit.features.whisper_forward` uses when present). The machine's rate is the higher
of the two: on an AMD AVX-512 CPU, MKL takes its AVX2 path and oneDNN runs about twice as fast.

**The work.** The first ``--n`` files of the corpus (EmoDB by default), loaded once. For each
``--blocks`` setting (``all``: every layer, ``layer: all``; ``k``: layers 0..k, ``layer:
{up_to: k}``, so ``k`` blocks run) and each thread count, these modes:

- ``one``: ``extract`` one recording at a time;
- ``batched``: ``extract_batch`` over groups of ``--batch`` recordings sorted by length;
- ``pipeline``: ``extract_features`` on the table, without cache, in this process (files read
  and decoded, length-sorted batches of the extractor's ``batch_size``), as ``serkit
  experiment`` extracts with ``n_jobs: 1``;
- ``processes`` (rows with ``t > 1`` threads): the same with ``n_jobs = t`` worker processes of
  one thread each, ``serkit experiment``'s default (``n_jobs: -1``) on a ``t``-core machine.

Each mode is timed ``--repeat`` times after a warm-up; the best wall time is kept.

**Printed per row**: wall seconds, real-time factor (wall / audio seconds), GFLOP per second of
audio of the blocks run, GFLOP/s achieved, its fraction of ``torch.mm``'s rate and of the
machine's rate at the same thread count, and the largest difference from ``one`` relative to
the largest magnitude, and ``others``: the cores other processes kept busy during the row's runs
(from ``/proc/stat``; above ~0.1, the 2-thread rows were slowed by them). FLOPs are counted from the model's weight shapes on the real frames of
each 30-s piece (2 per multiply-add): the two convolutions (``2 M·n_mels·3·d`` and
``2 T·3d·d`` for ``M`` mel frames, ``T = ceil(M / 2)``), per block the query/key/value and
output projections (``2 T·4d·d``), the attention scores and their weighted sum (``4 T²·d``) and
the MLP (``4 T·d·f``). The log-Mel front end, norms and activations are work but not counted.
Load averages are printed before and after: other processes on the machine slow the 2-thread rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from machine import busy_seconds, own_cpu_seconds

from serkit.audio import load_audio
from serkit.corpora import get_corpus
from serkit.features import extract_features
from serkit.features.encoders import SpeechEncoder
from serkit.features.whisper import WHISPER_CHUNK, WHISPER_HOP, WHISPER_N_FFT


def _timed(run: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Best wall seconds of ``repeat`` runs after a warm-up, and the cores other processes kept
    busy meanwhile (machine-wide busy CPU time minus this process's and its workers', per wall
    second)."""
    run()  # warm-up
    best, busy, own, start_all = float("inf"), busy_seconds(), own_cpu_seconds(), time.perf_counter()
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    others = (busy_seconds() - busy - (own_cpu_seconds() - own)) / (time.perf_counter() - start_all)
    return best, max(0.0, others)


def _best_seconds(run: Callable[[], object], repeat: int) -> float:
    return _timed(run, repeat)[0]


def matmul_rates(threads: int, n: int = 2048, repeat: int = 5) -> dict[str, float]:
    """GFLOP/s of an ``n × n`` float32 product on ``threads`` threads: ``torch.mm`` and oneDNN."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    flop = 2.0 * n**3
    reps = max(1, int(2e10 // flop))

    def loop(product: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(reps):
                product()

        return run

    rates = {"torch.mm": reps * flop / _best_seconds(loop(lambda: torch.mm(a, b)), repeat) / 1e9}
    if torch.backends.mkldnn.is_available():
        onednn = torch.ops.mkldnn._linear_pointwise
        rates["oneDNN"] = reps * flop / _best_seconds(loop(lambda: onednn(a, b, None, "none", [], "")), repeat) / 1e9
    return rates


def encoder_flops(extractor: SpeechEncoder, n_samples: Sequence[int], n_blocks: int) -> float:
    """FLOPs of the convolutions and the first ``n_blocks`` blocks on recordings of ``n_samples``."""
    net = extractor.network  # the fused Whisper encoder
    d, n_mels, kernel = net.conv1[0].shape
    block = net.blocks[0]
    per_row = sum(pair[0].numel() for pair in (block.qkv, block.out, block.fc1, block.fc2))
    total = 0.0
    for n in n_samples:
        for start in range(0, n, WHISPER_CHUNK):
            piece = min(WHISPER_CHUNK, n - start)
            if piece <= WHISPER_N_FFT // 2 and start > 0:
                continue
            mel = piece // WHISPER_HOP
            t = (mel + 1) // 2
            total += 2.0 * mel * n_mels * kernel * d + 2.0 * t * kernel * d * d
            total += n_blocks * (2.0 * t * per_row + 4.0 * t * t * d)
    return total


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def _max_rel_diff(reference: list[np.ndarray], other: list[np.ndarray]) -> float:
    scale = max(float(np.abs(r).max()) for r in reference)
    return max(float(np.abs(r - o).max()) for r, o in zip(reference, other, strict=True)) / scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="data/emodb")
    parser.add_argument("--corpus", default="emodb")
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--model", default="whisper-base", choices=["whisper-base", "whisper-tiny.en"])
    parser.add_argument("--blocks", default="all,2,3", help="comma list of 'all' and block counts k (layers 0..k)")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    load_before = os.getloadavg()

    rates = {t: matmul_rates(t) for t in threads}
    table = get_corpus(args.corpus).load(args.root).iloc[: args.n]
    audios = [load_audio(p) for p in table["path"]]
    seconds = sum(a.duration for a in audios)
    lengths = [a.n_samples for a in audios]
    order = np.argsort(lengths, kind="stable")
    groups = [[int(k) for k in order[i : i + args.batch]] for i in range(0, len(order), args.batch)]
    base = SpeechEncoder({"model": args.model, "layer": "all"})
    n_layers = base.shape[0]

    rows = []
    for setting in args.blocks.split(","):
        k = n_layers if setting == "all" else int(setting)
        extractor = SpeechEncoder({"model": args.model, "layer": "all" if setting == "all" else {"up_to": k}})
        extractor._net = base.network  # one copy of the weights
        flop = encoder_flops(extractor, lengths, k)
        for t in threads:
            torch.set_num_threads(t)
            results: dict[str, list[np.ndarray]] = {}

            def one(store: dict = results, ex: SpeechEncoder = extractor) -> None:
                store["one"] = [ex.extract(a) for a in audios]

            def batched(store: dict = results, ex: SpeechEncoder = extractor) -> None:
                out: list = [None] * len(audios)
                for group in groups:
                    for i, frames in zip(group, ex.extract_batch([audios[i] for i in group]), strict=True):
                        out[i] = frames
                store["batched"] = out

            def pipeline(store: dict = results, ex: SpeechEncoder = extractor) -> None:
                store["pipeline"] = extract_features(table, ex, n_jobs=1, progress=False).values

            def processes(store: dict = results, ex: SpeechEncoder = extractor, workers: int = t) -> None:
                store["processes"] = extract_features(table, ex, n_jobs=workers, progress=False).values

            modes = [("one", one), ("batched", batched), ("pipeline", pipeline)]
            modes += [("processes", processes)] if t > 1 else []
            for mode, run in modes:
                wall, others = _timed(run, args.repeat)
                achieved = flop / wall / 1e9
                rows.append({
                    "blocks": setting, "threads": t, "mode": mode,
                    "batch": args.batch if mode == "batched" else 1 if mode == "one" else extractor.batch_size,
                    "wall_s": wall, "rtf": wall / seconds, "gflop_per_audio_s": flop / seconds / 1e9,
                    "gflop_s": achieved, "of_torch_mm": achieved / rates[t]["torch.mm"],
                    "of_machine": achieved / max(rates[t].values()),
                    "max_rel_diff": _max_rel_diff(results["one"], results[mode]), "others_cores": others,
                })  # fmt: skip

    load_after = os.getloadavg()
    print(f"torch {torch.__version__}, {_cpu_name()}, {os.cpu_count()} CPUs")
    print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")  # fmt: skip
    for t in threads:
        shown = ", ".join(f"{name} {rate:.1f}" for name, rate in rates[t].items())
        print(f"matrix multiply, {t} thread(s), GFLOP/s: {shown}")
    print(f"{args.model}: {len(audios)} files of {args.corpus}, {seconds:.1f} s of audio")
    header = "blocks threads mode      batch  wall_s     RTF  GFLOP/audio-s  GFLOP/s  of_mm  of_machine  rel_diff  others"
    print(header)
    for r in rows:
        print(f"{r['blocks']:>6} {r['threads']:>7} {r['mode']:<9} {r['batch']:>5} {r['wall_s']:>7.2f} "
              f"{r['rtf']:>7.4f} {r['gflop_per_audio_s']:>14.3f} {r['gflop_s']:>8.1f} {r['of_torch_mm']:>6.0%} "
              f"{r['of_machine']:>11.0%} {r['max_rel_diff']:>9.1e} {r['others_cores']:>7.2f}")  # fmt: skip
    if args.json:
        info = {
            "torch": torch.__version__, "load_before": load_before, "load_after": load_after,
            "matmul_gflop_s": {str(t): r for t, r in rates.items()}, "audio_s": seconds,
            "files": len(audios), "model": args.model, "rows": rows,
        }  # fmt: skip
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(info, f, indent=2)


if __name__ == "__main__":
    main()
