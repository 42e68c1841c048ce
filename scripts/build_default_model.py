"""Build the model bundle serkit ships in ``serkit/default_model/``.

Steps (recipe ``recipes/default_model.yaml``):

1. write a CSV manifest pooling EmoDB and EMOVO over the six emotions both corpora act
   (anger, disgust, fear, happiness, neutral, sadness); speakers are prefixed with the corpus
   (``emodb-03``, ``emovo-f1``) so that leave-one-speaker-out holds out one real person;
2. evaluate the recipe leave-one-speaker-out (16 folds) with :func:`serkit.experiment.run_experiment`
   -- the same thing ``serkit experiment recipes/default_model.yaml --root <manifest folder>`` does;
3. fit the recipe on every utterance with :func:`serkit.experiment.train_bundle` and write the
   bundle into the package, with a ``README.md`` stating its data, its LOSO scores and its limits
   (a document of the bundle, listed with its SHA-256 like every other file).

Usage::

    python scripts/build_default_model.py [--emodb ../shared/corpora/emodb]
        [--emovo ../shared/corpora/emovo] [--work results/default_model] [--out serkit/default_model]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from serkit.corpora import load_corpus
from serkit.experiment import run_experiment, train_bundle
from serkit.io import atomic_write_text
from serkit.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]
LABELS = ("anger", "disgust", "fear", "happiness", "neutral", "sadness")


def write_manifest(emodb: Path, emovo: Path, folder: Path) -> pd.DataFrame:
    """Pool both corpora over :data:`LABELS` into ``folder/manifest.csv`` (absolute paths)."""
    parts = []
    for name, root in (("emodb", emodb), ("emovo", emovo)):
        table = load_corpus(name, root)
        table = table[table["label"].isin(LABELS)].copy()
        for column in ("utterance_id", "speaker", "session"):
            table[column] = f"{name}-" + table[column].astype(str)
        table["path"] = table["path"].map(lambda p: str(Path(p).resolve()))
        parts.append(table[["path", "label", "speaker", "utterance_id", "session", "gender"]])
    manifest = pd.concat(parts, ignore_index=True)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "manifest.csv", manifest.to_csv(index=False))
    return manifest


def model_readme(metrics: dict, manifest: pd.DataFrame, loso_s: float) -> str:
    """The bundle's README: data, protocol, scores, limits."""
    counts = pd.crosstab(manifest["speaker"].str.split("-").str[0], manifest["label"])
    table = "| corpus | " + " | ".join(counts.columns) + " |\n|---" * 1 + "|---" * len(counts.columns) + "|\n"
    table += "".join(f"| {corpus} | " + " | ".join(str(v) for v in row) + " |\n" for corpus, row in counts.iterrows())
    recall = " | ".join(f"{lab} {metrics['per_class'][lab]['recall']:.2f}" for lab in metrics["labels"])
    return f"""# serkit default model

eGeMAPSv02 functionals (88, openSMILE) + linear SVM (C chosen on inner leave-one-speaker-out
folds, class-balanced, softmax-temperature probabilities), global standardisation with the
training statistics. Built by `python scripts/build_default_model.py` from
`recipes/default_model.yaml`.

**Trained on** {len(manifest)} acted utterances of 16 speakers: EmoDB (German, 10 actors) and
EMOVO (Italian, 6 actors), pooled over the six emotions both corpora contain:
{", ".join(LABELS)}. EmoDB's boredom and EMOVO's surprise are left out.

{table}

**Leave-one-speaker-out** on the same recipe (16 folds, each actor held out once; the command:
`serkit experiment recipes/default_model.yaml --root results/default_model/corpus`):
UA {metrics['ua']:.3f}, WA {metrics['wa']:.3f}, macro-F1 {metrics['macro_f1']:.3f}
(fold mean UA {metrics['fold_mean']['mean']['ua']:.3f} ± {metrics['fold_mean']['std']['ua']:.3f}).
Per-class recall: {recall}. Chance is 1/6 = 0.167. Wall time of the LOSO run on 2 cores:
{loso_s:.0f} s.

**Format.** A serkit model bundle of format v2: arrays (safetensors) and JSON, every file's
SHA-256 listed in `bundle.json`; nothing in it is a pickle (`docs/security.md`).

**Limits.** Acted, studio-quality read sentences by 16 actors in two languages. Spontaneous
speech, other languages, telephone bandwidth, noise, overlapping speakers, children and
emotions outside the six above are all outside what it has seen; expect much lower accuracy on
real recordings than the LOSO figure. openSMILE's licence (research and education only)
applies to the features.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    shared = REPO.parent / "shared" / "corpora"
    parser.add_argument("--emodb", type=Path, default=shared / "emodb")
    parser.add_argument("--emovo", type=Path, default=shared / "emovo")
    parser.add_argument("--work", type=Path, default=REPO / "results" / "default_model")
    parser.add_argument("--out", type=Path, default=REPO / "serkit" / "default_model")
    args = parser.parse_args()

    corpus_dir = args.work / "corpus"
    manifest = write_manifest(args.emodb, args.emovo, corpus_dir)
    recipe = load_recipe(REPO / "recipes" / "default_model.yaml", root=corpus_dir)

    started = time.perf_counter()
    run_dir = run_experiment(recipe, args.work / "loso", overwrite=True)
    loso_s = time.perf_counter() - started
    metrics = json.loads((run_dir / "metrics.json").read_text())
    print(f"LOSO: UA {metrics['ua']:.3f} WA {metrics['wa']:.3f} ({loso_s:.0f} s) -> {run_dir}")

    started = time.perf_counter()
    readme = model_readme(metrics, manifest, loso_s)
    bundle_dir = train_bundle(recipe, args.out, overwrite=True, documents={"README.md": readme})
    train_s = time.perf_counter() - started
    size = sum(p.stat().st_size for p in bundle_dir.rglob("*") if p.is_file())
    print(f"bundle: {bundle_dir} ({size / 1e6:.2f} MB, fit {train_s:.0f} s)")


if __name__ == "__main__":
    main()
