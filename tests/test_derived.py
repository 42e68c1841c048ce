"""Derived features and the feature graph on real EmoDB recordings: values, layouts, the cache,
fitting inside folds on training speakers only, bundles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serkit.audio import load_audio
from serkit.bundle import load_bundle
from serkit.derived.base import DERIVED
from serkit.errors import ConfigError
from serkit.evaluation.report import read_predictions
from serkit.experiment import run_experiment, train_bundle
from serkit.features import extract_audio, get_extractor
from serkit.features.data import FeatureSpec
from serkit.features.layout import Layout
from serkit.pipeline import FeaturePlan
from serkit.recipe import resolve_recipe

pytestmark = pytest.mark.usefixtures("torch_one_thread")

# Three speakers, two emotions (anger W, neutral N), four files each: 24 real utterances.
SPEAKERS = ("03", "08", "09")


@pytest.fixture(scope="module")
def corpus(emodb_root, tmp_path_factory) -> Path:
    """A CSV manifest of 24 EmoDB files (three speakers, anger and neutral)."""
    root = tmp_path_factory.mktemp("manifest")
    rows = []
    for speaker in SPEAKERS:
        for code, label in (("W", "anger"), ("N", "neutral")):
            for path in sorted((emodb_root / "wav").glob(f"{speaker}*{code}*.wav"))[:4]:
                rows.append({"path": str(path), "label": label, "speaker": speaker})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


def _recipe(corpus: Path, features: dict, model: dict | None = None, **extra) -> dict:
    raw = {"corpus": {"name": "manifest", "root": str(corpus)}, "features": features, "n_jobs": 1,
           "model": model or {"name": "linear_svm", "config": {"C": 0.01}}, "cache_dir": None, **extra}  # fmt: skip
    return resolve_recipe(raw, name="derived-test")


LOGMEL = {"extractor": "logmel", "config": {"n_mels": 20, "deltas": 1}}


# --------------------------------------------------------------------------- fixed features


def test_pooled_stats_are_mean_and_std_over_frames_with_the_layout_in_front(emodb_file):
    frames = extract_audio(load_audio(emodb_file), get_extractor("logmel", LOGMEL["config"]))
    plan = FeaturePlan({"mel": LOGMEL, "pooled": {"derive": "pooled_stats", "from": "mel"}})
    spec = plan.specs["pooled"]
    assert spec == FeatureSpec("utterance", Layout.of(("stat", 2), ("delta", 2), ("mel", 20)))
    pooled = plan.nodes["pooled"].derived.compute({"mel": frames})
    assert pooled.dtype == np.float32 and pooled.shape == (80,)
    np.testing.assert_allclose(pooled[spec.layout.columns("stat", 0)], frames.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pooled[spec.layout.columns("stat", 1)], frames.std(0), rtol=1e-4, atol=1e-5)


def test_selecting_an_encoder_layer_equals_extracting_that_layer(emodb_file):
    audio = load_audio(emodb_file)
    every = extract_audio(audio, get_extractor("speech_encoder", {"model": "whisper-tiny.en", "layer": "all"}))
    third = extract_audio(audio, get_extractor("speech_encoder", {"model": "whisper-tiny.en", "layer": 3}))
    plan = FeaturePlan({
        "enc": {"extractor": "speech_encoder", "config": {"model": "whisper-tiny.en", "layer": "all"}},
        "third": {"derive": "select", "from": "enc", "config": {"axis": "layer", "index": 3}},
    })  # fmt: skip
    assert plan.specs["third"].layout == Layout.of(("layer", 1), ("unit", 384))
    np.testing.assert_allclose(plan.nodes["third"].derived.compute({"enc": every}), third, atol=1e-5)


def test_a_wrong_graph_is_refused_before_any_audio_is_read():
    functionals = {"extractor": "opensmile_functionals", "config": {"feature_set": "eGeMAPSv02"}}
    with pytest.raises(ConfigError, match="features.p: pooled_stats: needs frame-level input"):
        FeaturePlan({"f": functionals, "p": {"derive": "pooled_stats", "from": "f"}})
    with pytest.raises(ConfigError, match="no entry of features defines"):
        FeaturePlan({"p": {"derive": "pooled_stats", "from": "nowhere"}})
    with pytest.raises(ConfigError, match="cycle"):
        FeaturePlan({"a": {"derive": "pooled_stats", "from": "b"}, "b": {"derive": "pooled_stats", "from": "a"}})
    with pytest.raises(ConfigError, match="unknown derived feature"):
        FeaturePlan({"mel": LOGMEL, "x": {"derive": "no_such_feature", "from": "mel"}})
    with pytest.raises(ConfigError, match="features.x: .*no axis 'layer'"):
        FeaturePlan({"mel": LOGMEL, "x": {"derive": "select", "from": "mel", "config": {"axis": "layer", "index": 0}}})


def test_the_model_reads_the_features_no_derived_feature_reads():
    plan = FeaturePlan({
        "mel": LOGMEL,
        "pooled": {"derive": "pooled_stats", "from": "mel"},
        "func": {"extractor": "opensmile_functionals", "config": {"feature_set": "eGeMAPSv02"}},
    })  # fmt: skip
    assert plan.outputs == ["pooled", "func"]
    assert plan.stored == ["pooled", "func"] and plan.per_fold == []


# --------------------------------------------------------------------------- the derived cache


class _Counting:
    """Counts the utterances a fixed derived feature computes (the cache serves the rest)."""

    def __init__(self, monkeypatch):
        self.n = 0
        cls = DERIVED.get("pooled_stats")
        original = cls.compute

        def compute(feature, inputs):
            self.n += 1
            return original(feature, inputs)

        monkeypatch.setattr(cls, "compute", compute)


def test_derived_cache_hits_and_misses_when_an_input_config_changes(corpus, tmp_path, monkeypatch):
    table = pd.read_csv(corpus / "manifest.csv").assign(utterance_id=lambda t: [Path(p).stem for p in t["path"]])
    counter = _Counting(monkeypatch)

    def run(mel_config: dict) -> dict:
        plan = FeaturePlan({"mel": {"extractor": "logmel", "config": mel_config},
                            "pooled": {"derive": "pooled_stats", "from": "mel"}})  # fmt: skip
        return plan.materialise(table, cache_dir=tmp_path, n_jobs=1, progress=False).features

    first = run(LOGMEL["config"])
    assert counter.n == len(table)
    again = run(LOGMEL["config"])
    assert counter.n == len(table)  # every utterance served from the cache
    np.testing.assert_array_equal(again["pooled"], first["pooled"])
    changed = run({**LOGMEL["config"], "hop_length": 0.02})  # an option of the INPUT feature
    assert counter.n == 2 * len(table)
    assert not np.allclose(changed["pooled"], first["pooled"])


def test_a_cache_entry_of_the_wrong_shape_is_recomputed(corpus, tmp_path, monkeypatch):
    table = pd.read_csv(corpus / "manifest.csv").assign(utterance_id=lambda t: [Path(p).stem for p in t["path"]])[:3]
    plan = FeaturePlan({"mel": LOGMEL, "pooled": {"derive": "pooled_stats", "from": "mel"}})
    first = plan.materialise(table, cache_dir=tmp_path, n_jobs=1, progress=False).features["pooled"]
    for entry in (tmp_path / "derived").rglob("*.npy"):
        np.save(entry, np.zeros(7, dtype=np.float32))
    again = plan.materialise(table, cache_dir=tmp_path, n_jobs=1, progress=False).features["pooled"]
    np.testing.assert_array_equal(again, first)


# --------------------------------------------------------------------------- fitted features


class SpyPCA(DERIVED.get("pca")):
    """PCA that records the speakers and the exact rows of every fit."""

    name = "spy_pca"
    fits: list[dict] = []

    def fit(self, X, y, *, labels, groups, seed, valid=None):
        (data,) = X.values()
        SpyPCA.fits.append({"speakers": set(groups.tolist()), "rows": {row.tobytes() for row in np.asarray(data)}})
        return super().fit(X, y, labels=labels, groups=groups, seed=seed, valid=valid)


DERIVED.register(SpyPCA)


def test_a_fitted_feature_never_sees_a_test_speaker(corpus, tmp_path):
    SpyPCA.fits.clear()
    features = {"mel": LOGMEL, "pooled": {"derive": "pooled_stats", "from": "mel"},
                "pca": {"derive": "spy_pca", "from": "pooled", "config": {"components": 4}}}  # fmt: skip
    recipe = _recipe(corpus, features)
    run = run_experiment(recipe, tmp_path / "run", progress=False)
    predictions = read_predictions(run / "predictions.csv")
    # Recompute every utterance's pooled vector to know which rows belong to which speaker.
    plan = FeaturePlan(features)
    table = pd.read_csv(corpus / "manifest.csv").assign(utterance_id=lambda t: [Path(p).stem for p in t["path"]])
    stored = plan.materialise(table, n_jobs=1, progress=False)
    rows_of = {uid: stored.features["pooled"][i].tobytes() for i, uid in enumerate(stored.ids)}
    assert len(SpyPCA.fits) == len(SPEAKERS)
    for fit, fold in zip(SpyPCA.fits, sorted(set(predictions["fold"]))):
        test = predictions[predictions["fold"] == fold]
        assert set(test["speaker"]) & fit["speakers"] == set()
        assert {rows_of[uid] for uid in test["utterance_id"]} & fit["rows"] == set()
        assert len(fit["rows"]) == len(table) - len(test)  # every training row, nothing else
    info = json.loads((run / "metrics.json").read_text())["extra"]["fit"]
    assert all("pca" in fold["derived"] for fold in info.values())


def test_a_bundle_replays_derived_and_fitted_features_on_new_audio(corpus, emodb_root, tmp_path):
    features = {"mel": LOGMEL, "pooled": {"derive": "pooled_stats", "from": "mel"},
                "pca": {"derive": "pca", "from": "pooled", "config": {"components": 6, "whiten": True}}}  # fmt: skip
    recipe = _recipe(corpus, features)
    bundle = load_bundle(train_bundle(recipe, tmp_path / "bundle", progress=False))
    assert (tmp_path / "bundle" / "derived" / "pca" / "pca.safetensors").is_file()
    assert bundle.meta["inputs"] == {"pca": FeatureSpec("utterance", Layout.of(("component", 6))).to_dict()}
    unseen = load_audio(emodb_root / "wav" / "10a01Wa.wav")
    feats = bundle.features(unseen)
    assert set(feats) == {"pca"} and feats["pca"].shape == (6,)
    # The same graph by hand: pooled log-Mel statistics projected with the bundle's own PCA.
    frames = extract_audio(unseen, get_extractor("logmel", LOGMEL["config"]))
    pooled = bundle.plan.nodes["pooled"].derived.compute({"mel": frames})
    np.testing.assert_allclose(feats["pca"], bundle.fitted["pca"].transform({"pooled": pooled[None]})[0], rtol=1e-5)
    proba = bundle.predict([feats])
    assert proba.shape == (1, 2) and np.isclose(proba.sum(), 1.0)
