"""Feature-extraction speed on EmoDB: real-time factor per extractor, serial vs parallel, cache effect.

Usage::

    python benchmarks/bench_features.py --root /path/to/emodb [--limit N] [--jobs N]

For each extractor it runs :func:`serkit.features.extract_features` over the first ``--limit``
utterances of the EmoDB copy at ``--root`` (``data/emodb`` or the original WAV release) and prints

- RTF (real-time factor) = wall-clock seconds / seconds of audio, with ``n_jobs=1`` and with
  ``n_jobs=--jobs`` (the worker pool is started by a warm-up call first, so pool start-up is
  not counted; all timings include reading and decoding the files, which are read once
  beforehand so the page cache is warm for every run);
- the cache effect: wall time of a cold run into an empty temporary cache (extract, hash,
  write) and of the warm run that follows (hash, read), and their ratio (both ``n_jobs=1``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from serkit.corpora import load_corpus
from serkit.features import extract_features, get_extractor

EXTRACTORS: list[tuple[str, str, dict]] = [
    ("logmel pss 40+Δ", "logmel", {"n_mels": 40, "deltas": 1}),
    ("stft 513", "stft", {}),
    ("opensmile_lld ComParE +Δ+Δ²", "opensmile_lld", {"feature_set": "ComParE_2016"}),
    ("functionals eGeMAPSv02", "opensmile_functionals", {"feature_set": "eGeMAPSv02"}),
    ("functionals ComParE_2016", "opensmile_functionals", {"feature_set": "ComParE_2016"}),
    ("functionals IS09", "opensmile_functionals", {"feature_set": "IS09"}),
    ("functionals IS10", "opensmile_functionals", {"feature_set": "IS10"}),
]


def emodb_table(root: Path, limit: int | None) -> tuple[pd.DataFrame, float]:
    """The EmoDB table (WAV or the shipped FLAC copy; first ``limit`` utterances) and its duration in seconds."""
    table = load_corpus("emodb", root, strict=False).iloc[:limit]
    return table, float(table["duration"].sum())


def timed(table: pd.DataFrame, extractor, **kwargs) -> float:
    start = time.perf_counter()
    result = extract_features(table, extractor, progress=False, **kwargs)
    elapsed = time.perf_counter() - start
    if result.failures:
        sys.exit(f"unexpected failures: {result.failures}")
    return elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="EmoDB root (holding wav/), e.g. data/emodb")
    parser.add_argument("--limit", type=int, default=None, help="use the first N files (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes of the parallel run (default 2)")
    args = parser.parse_args(argv)

    table, seconds = emodb_table(args.root, args.limit)
    for path in table["path"]:  # read every file once so that no timed run pays for a cold disk
        Path(path).read_bytes()
    print(f"EmoDB: {len(table)} files, {seconds:.1f} s of audio; parallel runs with n_jobs={args.jobs}")
    columns = ["dim", "RTF j=1", f"RTF j={args.jobs}", "speedup", "cold s", "warm s", "cold/warm"]
    header = f"{'extractor':32s} " + " ".join(f"{c:>9s}" for c in columns)
    print(header)
    print("-" * len(header))
    for label, name, config in EXTRACTORS:
        extractor = get_extractor(name, config)
        extract_features(table.iloc[:2], extractor, progress=False)  # load libraries in this process
        serial = timed(table, extractor, n_jobs=1)
        extract_features(table.iloc[: 2 * args.jobs], extractor, n_jobs=args.jobs, progress=False)  # start the pool
        parallel = timed(table, extractor, n_jobs=args.jobs)
        with tempfile.TemporaryDirectory() as cache:
            cold = timed(table, extractor, n_jobs=1, cache_dir=cache)
            warm = timed(table, extractor, n_jobs=1, cache_dir=cache)
        print(
            f"{label:32s} {extractor.dim:9d} {serial / seconds:9.4f} {parallel / seconds:9.4f} "
            f"{serial / parallel:9.2f} {cold:9.2f} {warm:9.3f} {cold / warm:9.1f}"
        )


if __name__ == "__main__":
    main()
