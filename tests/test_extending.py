"""docs/extending.md runs as written: its four classes, then its recipe, on real EmoDB recordings."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import yaml

from serkit.audio import load_audio
from serkit.bundle import load_bundle
from serkit.corpora import get_corpus
from serkit.errors import CorpusError
from serkit.evaluation.report import read_predictions
from serkit.experiment import run_experiment, train_bundle
from serkit.features import extract_audio, get_extractor
from serkit.pipeline import FeaturePlan
from serkit.recipe import resolve_recipe

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
EMOTIONS = {"W": "anger", "F": "happiness", "N": "neutral", "T": "sadness"}


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE.read_text(encoding="utf-8"), flags=re.S)


@pytest.fixture(scope="module")
def guide() -> dict:
    """The guide's Python blocks run in order as one module (this registers the four classes)."""
    module = types.ModuleType("serkit_extending_guide")
    sys.modules[module.__name__] = module
    blocks = _blocks("python")
    assert len(blocks) == 4
    for block in blocks:
        exec(compile(block, str(GUIDE), "exec", dont_inherit=True), module.__dict__)  # noqa: S102 - the guide's code
    return module.__dict__


@pytest.fixture(scope="module")
def corpus(emodb_root, tmp_path_factory) -> Path:
    """Four EmoDB speakers in the guide's <speaker>/<emotion>/ layout (links to the real files)."""
    root = tmp_path_factory.mktemp("folders")
    for speaker in ("03", "08", "09", "10"):
        for code, emotion in EMOTIONS.items():
            folder = root / speaker / emotion
            folder.mkdir(parents=True)
            for path in sorted((emodb_root / "wav").glob(f"{speaker}*{code}*.wav"))[:3]:
                (folder / path.name).symlink_to(path)
    return root


def test_the_corpus_adapter_reads_the_layout_and_refuses_another(guide, corpus, tmp_path):
    table = get_corpus("folders").load(corpus)
    assert set(table["speaker"]) == {"03", "08", "09", "10"}
    assert set(table["label"]) == set(EMOTIONS.values())
    assert table["utterance_id"].is_unique and (table["duration"] > 0.5).all()
    (tmp_path / "03" / "joy").mkdir(parents=True)
    with pytest.raises(CorpusError, match="joy"):
        get_corpus("folders").load(tmp_path)


def test_the_extractor_computes_what_it_says(guide, emodb_file):
    audio = load_audio(emodb_file)
    features = extract_audio(audio, get_extractor("energy_zcr"))
    x = audio.samples[0].astype(np.float64)
    assert features.shape == ((len(x) - 400) // 160 + 1, 2)
    first = x[:400]
    assert features[0, 0] == pytest.approx(np.log(np.mean(first**2) + 1e-10), rel=1e-5)
    assert features[0, 1] == pytest.approx(np.mean(np.abs(np.diff(np.sign(first))) > 0))


def test_the_derived_feature_is_percentiles_in_a_checked_graph(guide, emodb_file):
    plan = FeaturePlan({"lld": {"extractor": "energy_zcr"}, "pct": {"derive": "percentiles", "from": "lld"}})
    assert str(plan.specs["pct"].layout) == "stat 3 × lld 2"
    frames = extract_audio(load_audio(emodb_file), get_extractor("energy_zcr"))
    pct = plan.nodes["pct"].derived.compute({"lld": frames})
    np.testing.assert_allclose(pct.reshape(3, 2), np.percentile(frames, (10, 50, 90), axis=0), rtol=1e-6)


def test_the_recipe_runs_speaker_independently_and_its_bundle_predicts(guide, corpus, emodb_root, tmp_path):
    (raw,) = _blocks("yaml")
    recipe = resolve_recipe(yaml.safe_load(raw), name="guide", root=corpus, overrides=["cache_dir=null", "n_jobs=1"])
    run = run_experiment(recipe, tmp_path / "run", progress=False)
    predictions = read_predictions(run / "predictions.csv")
    assert (predictions["fold"] == "speaker-" + predictions["speaker"]).all()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_utterances"] == 48 and 0.0 <= metrics["ua"] <= 1.0
    bundle = load_bundle(train_bundle(recipe, tmp_path / "bundle", progress=False))
    proba = bundle.predict([bundle.features(load_audio(emodb_root / "wav" / "11a01Wc.wav"))])
    assert proba.shape == (1, 4) and np.isclose(proba.sum(), 1.0)
    # The model saved its means and reloaded them: nearest mean by hand gives the same answer.
    means = bundle.model.means_
    features = bundle.normalisers["pct"].transform(np.stack([bundle.features(load_audio(emodb_root / "wav" / "11a01Wc.wav"))["pct"]]))
    assert int(np.argmin(((features[0] - means) ** 2).sum(axis=1))) == int(np.argmax(proba))
