"""Check EmoBox's fold lists for one corpus against serkit's table and its leave-one-speaker-out folds.

Reads the lists with serkit's ``emobox`` protocol (so every listed id must match the corpus table,
with the same label) and prints, per fold, its size, its test speakers and the test speakers that
are also in training; then whether every utterance is tested exactly once and whether the folds
are serkit's ``loso`` folds (the same test set and the same training set, in any order).

Usage (EmoBox's lists are not part of serkit; see docs/emobox_folds.md for how to get them)::

    python scripts/check_emobox_folds.py --corpus emovo --root ../shared/corpora/emovo \\
        --folds /tmp/corpora/emobox-folds/emovo [--require-loso]

Exit status: 0, or 1 with ``--require-loso`` when the folds are not leave-one-speaker-out;
a list that does not match the table stops with serkit's ConfigError.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from serkit.corpora import load_corpus
from serkit.evaluation import make_folds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True, help="serkit corpus adapter, e.g. emovo")
    parser.add_argument("--root", required=True, help="corpus root folder")
    parser.add_argument("--folds", required=True, help="EmoBox's data/<dataset> folder")
    parser.add_argument("--require-loso", action="store_true", help="exit 1 unless the folds equal loso")
    args = parser.parse_args(argv)

    table = load_corpus(args.corpus, args.root)
    emobox = make_folds(table, {"name": "emobox", "folder": args.folds})
    speakers = table["speaker"].to_numpy(dtype=str)
    print(f"{args.corpus}: {len(table)} utterances, {np.unique(speakers).size} speakers; "
          f"EmoBox lists {emobox.options['dataset']} sha256 {emobox.options['sha256'][:16]}…, "
          f"{emobox.options['n_unlisted']} table rows in no list")  # fmt: skip
    for fold in emobox.folds:
        test_spk = sorted(set(speakers[fold.test]))
        shared = sorted(set(test_spk) & set(speakers[fold.train]))
        print(f"  {fold.name}: train {fold.train.size:5d}  test {fold.test.size:4d}  "
              f"test speakers {','.join(test_spk)}  also in training: {','.join(shared) or 'none'}")  # fmt: skip
    tested = np.sort(np.concatenate([f.test for f in emobox.folds]))
    print(f"speaker-independent: {emobox.speaker_independent}")
    print(f"every utterance tested exactly once: {np.array_equal(tested, np.arange(len(table)))}")
    loso = make_folds(table, "loso")
    same = sorted((tuple(f.test), tuple(f.train)) for f in emobox.folds) == sorted(
        (tuple(f.test), tuple(f.train)) for f in loso.folds
    )
    print(f"equal to serkit's loso ({len(loso.folds)} folds): {same}")
    return 1 if args.require_loso and not same else 0


if __name__ == "__main__":
    sys.exit(main())
