"""Speed perturbation (serkit.augment): the perturbed signal, the wrapping extractor on real speech,
the recipe key, and copies that reach only the training side of each fold."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serkit import experiment
from serkit.audio import Audio, load_audio
from serkit.augment import (
    Copies,
    SpeedPerturbed,
    add_copies,
    perturbed_features,
    speed_perturb,
    speeds,
)
from serkit.errors import ConfigError
from serkit.features.base import get_extractor
from serkit.features.data import n_rows
from serkit.features.encoders import SpeechEncoder
from serkit.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturbation_changes_duration_and_pitch_and_undoes_itself(emodb_file, factor):
    audio = load_audio(emodb_file)
    fast = speed_perturb(audio, factor)
    assert fast.sample_rate == audio.sample_rate and abs(fast.n_samples - audio.n_samples / factor) <= 1
    # Pitch and formants scale by the factor: the copy's spectrum (100 Hz - 4 kHz) is the
    # original's stretched by it, and by no other scale of a fine grid.
    def spectrum(x: np.ndarray) -> np.ndarray:
        return np.log(np.abs(np.fft.rfft(x, 1 << 16)) + 1e-6)

    freqs = np.fft.rfftfreq(1 << 16, 1 / 16000)
    band = (freqs > 100) & (freqs < 4000)
    original, copy = spectrum(audio.samples[0]), spectrum(fast.samples[0])
    scales = np.arange(0.8, 1.25, 0.005)
    fit = [np.corrcoef(copy[band], np.interp(freqs[band] / s, freqs, original))[0, 1] for s in scales]
    assert abs(scales[int(np.argmax(fit))] - factor) <= 0.005
    # Played back at 1 / factor it is the recording again (resampling is nearly lossless in band).
    back = speed_perturb(fast, 1 / factor).samples[0]
    n = min(len(back), audio.n_samples)
    assert np.corrcoef(back[:n], audio.samples[0][:n])[0, 1] > 0.99
    assert speed_perturb(audio, 1.0) is audio


@pytest.mark.parametrize("factor", [0, 0.3, 2.5, True, "fast", float("nan")])
def test_impossible_speed_factors_are_refused(factor):
    with pytest.raises(ConfigError, match="factor"):
        SpeedPerturbed({"extractor": "logmel", "factor": factor})


def test_the_wrapper_is_the_wrapped_extractor_on_the_perturbed_recording(emodb_file):
    """Whisper tiny.en on real speech: the wrapper's frames are the encoder's frames of the copy,
    about 1 / factor as many, and its description (the cache key) differs per factor."""
    audio = load_audio(emodb_file)
    inner = SpeechEncoder({"model": "whisper-tiny.en", "layer": 2})
    wrapped = get_extractor("speed_perturbed", {"extractor": "speech_encoder",
                                                "config": {"model": "whisper-tiny.en", "layer": 2}, "factor": 1.1})  # fmt: skip
    got = wrapped.extract(audio)
    np.testing.assert_allclose(got, inner.extract(speed_perturb(audio, 1.1)), atol=1e-5)
    assert got.shape[1] == inner.dim and abs(got.shape[0] - inner.extract(audio).shape[0] / 1.1) <= 1
    assert (wrapped.level, wrapped.layout, wrapped.sample_rate) == (inner.level, inner.layout, inner.sample_rate)
    batch = wrapped.extract_batch([audio, Audio(audio.samples[:, :20000], 16000)])
    np.testing.assert_allclose(batch[0], got, atol=1e-4)
    again = get_extractor("speed_perturbed", wrapped.describe()["config"])
    assert again.describe() == wrapped.describe()
    slower = get_extractor("speed_perturbed", {**wrapped.describe()["config"], "factor": 0.9})
    assert slower.describe() != wrapped.describe() and wrapped.describe()["inner"] == inner.describe()


def test_the_recipe_key_is_checked():
    assert speeds({"augment": None}) == () and speeds({"augment": {"speed": [0.9, 1.1]}}) == (0.9, 1.1)
    for bad in ({"speed": []}, {"speed": [1.0]}, {"speed": [0.9, 0.9]}, {"speed": [3]}, {"pitch": [1]}, [0.9]):
        with pytest.raises(ConfigError, match="augment"):
            speeds({"augment": bad})
    features = {"enc": {"extractor": "logmel", "config": {"n_mels": 40}, "channel": "left"},
                "pooled": {"derive": "pooled_stats", "from": "enc", "config": {}}}  # fmt: skip
    wrapped = perturbed_features(features, 0.9)
    assert wrapped["pooled"] == features["pooled"] and wrapped["enc"]["channel"] == "left"
    assert wrapped["enc"]["config"] == {"extractor": "logmel", "config": {"n_mels": 40}, "factor": 0.9}


def test_copies_of_the_chosen_rows_only_follow_them():
    y = np.array([0, 1, 2, 0, 1])
    speakers = np.array(["a", "a", "b", "b", "c"])
    X = np.arange(10.0).reshape(5, 2)
    # the copy of row 3 is missing (too short once sped up)
    copies = [Copies(0.9, np.array([0, 1, 2, 4]), {"f": 100 + X[[0, 1, 2, 4]]}),
              Copies(1.1, np.arange(5), {"f": 200 + X})]  # fmt: skip
    train = np.array([0, 2, 3])
    inputs, labels, groups, norm = add_copies({"f": X[train]}, train, y, speakers, copies)
    np.testing.assert_array_equal(inputs["f"], np.concatenate([X[train], 100 + X[[0, 2]], 200 + X[train]]))
    np.testing.assert_array_equal(labels, [0, 2, 0, 0, 2, 0, 2, 0])
    np.testing.assert_array_equal(groups, ["a", "b", "b", "a", "b", "a", "b", "b"])
    np.testing.assert_array_equal(norm, ["a", "b", "b", "a@0.9", "b@0.9", "a@1.1", "b@1.1", "b@1.1"])


def _three_speakers(root: Path, emodb: Path) -> Path:
    rows = [{"path": str(p), "speaker": p.name[:2], "label": p.name[5]}
            for p in sorted((emodb / "wav").glob("*.flac")) if p.name[:2] in {"03", "08", "09"}]  # fmt: skip
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


def test_copies_train_each_fold_and_never_reach_a_test_speaker(tmp_path, monkeypatch):
    """eGeMAPS + SVM, LOSO over three real EmoDB speakers, two speed factors: every fold's model is
    fitted on its training recordings and both copies of each (labels and speakers carried along),
    none of the test speaker's; predictions are of the original recordings only."""
    root = _three_speakers(tmp_path, REPO / "data" / "emodb")
    recipe = load_recipe(REPO / "recipes" / "egemaps_svm.yaml", corpus="manifest", root=root,
                         overrides=[f"cache_dir={tmp_path / 'cache'}", "n_jobs=2", "augment={speed: [0.9, 1.1]}"])  # fmt: skip
    fits = []
    real = experiment.get_model

    def spying(name, config):
        model = real(name, config)
        fit = model.fit

        def spy(X, y, **kwargs):
            fits.append((n_rows(X), np.asarray(y).copy(), np.asarray(kwargs["groups"]).copy()))
            return fit(X, y, **kwargs)

        model.fit = spy
        return model

    monkeypatch.setattr(experiment, "get_model", spying)
    run = experiment.run_experiment(recipe, tmp_path / "run", progress=False)
    predictions = pd.read_csv(run / "predictions.csv", dtype=str)
    table = pd.read_csv(root / "manifest.csv", dtype=str)
    assert len(predictions) == len(table) == predictions["utterance_id"].nunique()
    assert len(fits) == 3
    for test_speaker, (rows, y, groups) in zip(("03", "08", "09"), fits, strict=True):
        train = table[table["speaker"] != test_speaker]
        assert rows == 3 * len(train) and test_speaker not in set(groups)
        np.testing.assert_array_equal(groups, np.tile(train["speaker"].to_numpy(), 3))
        np.testing.assert_array_equal(y[: len(train)], y[len(train) : 2 * len(train)])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_utterances"] == len(table)


def test_a_feature_fitted_inside_each_fold_is_not_augmented(tmp_path):
    recipe = load_recipe(REPO / "recipes" / "egemaps_svm.yaml", root=REPO / "data" / "emodb",
                         overrides=[f"cache_dir={tmp_path}", "augment={speed: [1.1]}"])  # fmt: skip
    recipe["features"]["reduced"] = {"derive": "pca", "from": next(iter(recipe["features"])), "config": {}}
    with pytest.raises(ConfigError, match="fitted inside each fold"):
        experiment.prepare_dataset(recipe, progress=False)
