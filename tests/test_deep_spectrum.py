"""Deep-spectrum features on real EmoDB speech: the EfficientNet-Lite0 loader, spectrogram images,
the fixed ImageNet-CNN feature and the fitted Attention-BLSTM-FCN feature inside the pipeline,
and bundles of the ``derived feature -> linear_svm`` compositions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import torch

from serkit.audio import load_audio
from serkit.blocks.imagenet_cnn import (
    FEATURE_DIM,
    WEIGHTS_SHA256,
    efficientnet_lite0_weights_path,
    load_efficientnet_lite0,
    normalise_images,
    penultimate_features,
)
from serkit.blocks.spectrogram_image import spectrogram_image
from serkit.bundle import load_bundle
from serkit.derived.base import DERIVED, get_derived
from serkit.derived.deep_spectrum import BLSTMFCNDeepSpectrum, ImageNetDeepSpectrum
from serkit.errors import BundleError, ConfigError, FeatureError
from serkit.evaluation.report import read_predictions
from serkit.experiment import run_experiment, train_bundle
from serkit.features import extract_audio, get_extractor
from serkit.features.data import FeatureSpec
from serkit.features.layout import Layout
from serkit.io import sha256_file
from serkit.models import network
from serkit.pipeline import FeaturePlan
from serkit.recipe import resolve_recipe
from serkit.training.trainer import speaker_holdout

pytestmark = pytest.mark.usefixtures("torch_one_thread")

PAPER_LOGMEL = {"n_mels": 40, "window": "hamming", "preemphasis": 0.0, "filterbank": "librosa"}
LOGMEL_SPEC = {"logmel": FeatureSpec("frame", Layout.of(("mel", 40)), 0.01)}
SPEAKERS = ("03", "08", "10")
#: A recording of a speaker none of the tests trains on.
UNSEEN = "11a02Wc.wav"
#: A Attention-BLSTM-FCN small enough to train in seconds (both branches, attention on both).
TINY = {"fcn_filters": [4, 8, 8], "lstm_hidden": 8, "lstm_layers": 1, "dnn_hidden": [8], "max_epochs": 3,
        "patience": 3, "batch_size": 8, "max_train_frames": 120}  # fmt: skip


@pytest.fixture(scope="module")
def cnn():
    return load_efficientnet_lite0(pretrained=True)


@pytest.fixture(scope="module")
def emodb_subset(emodb_root):
    """Real EmoDB log-mels of 3 speakers x (anger, neutral) x 2 texts: 12 utterances."""
    extractor = get_extractor("logmel", PAPER_LOGMEL)
    X, y, groups, paths = [], [], [], []
    for speaker in SPEAKERS:
        for code, k in (("W", 0), ("N", 1)):
            files = sorted((emodb_root / "wav").glob(f"{speaker}*{code}?.wav"))[:2]
            assert len(files) == 2
            for f in files:
                X.append(extract_audio(load_audio(f), extractor))
                y.append(k)
                groups.append(speaker)
                paths.append(f)
    return X, np.array(y), np.array(groups), paths, extractor


@pytest.fixture(scope="module")
def corpus(emodb_subset, tmp_path_factory) -> Path:
    """A CSV manifest of the same 12 EmoDB recordings."""
    _, y, groups, paths, _ = emodb_subset
    root = tmp_path_factory.mktemp("manifest")
    labels = ["anger", "neutral"]
    rows = [{"path": str(p), "label": labels[k], "speaker": s} for p, k, s in zip(paths, y, groups)]
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


def _recipe(corpus: Path, deep_spectrum: dict, **extra) -> dict:
    features = {"logmel": {"extractor": "logmel", "config": PAPER_LOGMEL}, "deep_spectrum": deep_spectrum}
    raw = {"corpus": {"name": "manifest", "root": str(corpus)}, "features": features, "n_jobs": 1, "cache_dir": None,
           "model": {"name": "linear_svm", "config": {"C": [0.01, 1.0]}}, "normalisation": "global", **extra}  # fmt: skip
    return resolve_recipe(raw, name="deep-spectrum-test")


def _cnn_feature(cnn, **config) -> ImageNetDeepSpectrum:
    feature = get_derived("imagenet_deep_spectrum", config)
    feature.bind(LOGMEL_SPEC)
    feature.network = cnn  # the module's loaded network instead of a second copy
    return feature


def _by_hand(cnn, logmel: np.ndarray) -> np.ndarray:
    """The Deep Spectrum steps written out: image, then the CNN's penultimate activations."""
    return penultimate_features(cnn, spectrogram_image(logmel, 224, "viridis")[None])[0].numpy()


# --------------------------------------------------------------------------- the CNN and the image


def test_weight_file_hash_is_checked(tmp_path):
    assert sha256_file(efficientnet_lite0_weights_path()) == WEIGHTS_SHA256
    fake = tmp_path / "fake.pth"
    torch.save({"w": torch.zeros(1)}, fake)
    with pytest.raises(ConfigError, match="SHA-256"):
        load_efficientnet_lite0(weights=fake)
    with pytest.raises(ConfigError):
        load_efficientnet_lite0(weights=tmp_path / "missing.pth")


def test_pretrained_cnn_recognises_a_photo_and_features_feed_its_classifier(cnn):
    from sklearn.datasets import load_sample_image

    photo = torch.from_numpy(load_sample_image("flower.jpg").astype(np.float32) / 255).permute(2, 0, 1)[None]
    photo = torch.nn.functional.interpolate(photo, size=(224, 224), mode="bilinear", antialias=True)
    features = penultimate_features(cnn, photo)
    assert features.shape == (1, FEATURE_DIM)
    with torch.no_grad():
        logits = cnn(normalise_images(photo))
        torch.testing.assert_close(cnn._fc(features), logits, rtol=1e-4, atol=1e-4)
    top5 = logits[0].topk(5).indices.tolist()
    assert 985 in top5  # ImageNet class 985 "daisy": the weights and input scaling are right
    with pytest.raises(ConfigError):
        penultimate_features(cnn, torch.zeros(1, 1, 224, 224))


def test_spectrogram_image_orientation_and_range():
    logmel = np.full((50, 40), -5.0)
    logmel[:, :4] = 3.0  # energy in the lowest bands only
    image = spectrogram_image(logmel, size=64)
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert float(image.min()) >= 0 and float(image.max()) <= 1
    # viridis: high values are yellow (red + green high, blue low), low values dark purple.
    bottom, top = image[:, -2, 32], image[:, 1, 32]
    assert bottom[0] > 0.8 and bottom[1] > 0.8 and bottom[2] < 0.3
    assert top[0] < 0.4 and top[1] < 0.1 and top[2] > 0.25
    flat = spectrogram_image(np.zeros((10, 40)), size=32)
    assert torch.allclose(flat, flat[:, :1, :1].expand_as(flat))  # constant input: one colour
    with pytest.raises(FeatureError):
        spectrogram_image(np.zeros((0, 40)))
    with pytest.raises(FeatureError):
        spectrogram_image(np.array([[0.0, np.nan]]))
    with pytest.raises(ConfigError):
        spectrogram_image(np.zeros((10, 40)), colormap="no-such-map")


def test_spectrogram_image_shows_the_spectrum_not_its_level(emodb_subset):
    for logmel in emodb_subset[0]:
        image = spectrogram_image(logmel)
        # Min-max scaling per utterance: a louder copy (x4, exact in floating point) is the same picture.
        torch.testing.assert_close(spectrogram_image(4.0 * logmel), image, rtol=0, atol=0)
        # Speech has more energy in the low bands: the bottom of the picture is brighter (viridis'
        # green channel rises with the value). Standardising every band first, as the experiment's
        # normalisation would, flattens that tilt away: the recipes standardise the CNN's vectors,
        # never the log-Mels it looks at.
        green = image[1].mean(dim=1)  # per image row, top (high bands) to bottom
        assert float(green[112:].mean() - green[:112].mean()) > 0.02 and float(green.std()) > 0.03
        flat = spectrogram_image((logmel - logmel.mean(axis=0)) / logmel.std(axis=0))[1].mean(dim=1)
        assert float(flat.std()) < 0.003


# --------------------------------------------------------------------------- the fixed CNN feature


def test_cnn_feature_is_the_penultimate_activation_of_the_spectrogram_image(emodb_subset, cnn):
    X = emodb_subset[0]
    feature = _cnn_feature(cnn, batch_size=5)
    assert feature.spec == FeatureSpec("utterance", Layout.of(("unit", FEATURE_DIM)))
    for x in X[:3]:
        vector = feature.compute({"logmel": x})
        assert vector.shape == (FEATURE_DIM,) and vector.dtype == np.float32
        np.testing.assert_array_equal(vector, _by_hand(cnn, x))
    # Batches of 5, 5 and 2 give each utterance its own vector (to float32 rounding of the convolutions).
    batched = np.stack(feature.compute_batch([{"logmel": x} for x in X]))
    single = np.stack([feature.compute({"logmel": x}) for x in X])
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-5)
    # Real speech gives distinct, non-degenerate vectors.
    assert np.all(np.std(batched, axis=0).max() > 0) and len({v.tobytes() for v in batched}) == len(X)
    with pytest.raises(FeatureError):
        feature.compute({"logmel": np.zeros((0, 40), dtype=np.float32)})


def test_cnn_feature_refuses_wrong_inputs_and_options_before_any_work():
    with pytest.raises(ConfigError):
        get_derived("imagenet_deep_spectrum", {"colormap": "no-such-map"})
    with pytest.raises(ConfigError):
        get_derived("imagenet_deep_spectrum", {"batch_size": 0})
    with pytest.raises(ConfigError, match="frame"):
        get_derived("imagenet_deep_spectrum").bind({"f": FeatureSpec("utterance", Layout.flat(88))})
    assert {"imagenet_deep_spectrum", "blstm_fcn_deep_spectrum"} <= set(DERIVED.names())


def test_cnn_feature_is_cached_by_the_pipeline(corpus, cnn, tmp_path, monkeypatch):
    table = pd.read_csv(corpus / "manifest.csv").assign(utterance_id=lambda t: [Path(p).stem for p in t["path"]])[:6]
    plan = FeaturePlan(_recipe(corpus, {"derive": "imagenet_deep_spectrum", "from": "logmel"})["features"])
    plan.nodes["deep_spectrum"].derived.network = cnn
    calls = []
    original = ImageNetDeepSpectrum.compute_batch
    monkeypatch.setattr(ImageNetDeepSpectrum, "compute_batch", lambda self, items: calls.append(len(items)) or original(self, items))
    first = plan.materialise(table, cache_dir=tmp_path, n_jobs=1, progress=False)
    assert calls == [6]  # one call for the chunk: the feature batches the CNN itself
    again = plan.materialise(table, cache_dir=tmp_path, n_jobs=1, progress=False)
    assert calls == [6]  # every vector came from the cache
    assert list(first.features) == ["deep_spectrum"] and first.features["deep_spectrum"].shape == (6, FEATURE_DIM)
    np.testing.assert_array_equal(again.features["deep_spectrum"], first.features["deep_spectrum"])
    logmel = get_extractor("logmel", PAPER_LOGMEL)
    np.testing.assert_array_equal(first.features["deep_spectrum"][2], _by_hand(cnn, extract_audio(load_audio(table["path"][2]), logmel)))


# --------------------------------------------------------------------------- the fitted BLSTM-FCN feature


def test_blstm_fcn_feature_is_the_embedding_of_a_network_trained_on_training_rows(emodb_subset, tmp_path):
    X, y, groups, _, _ = emodb_subset
    train = np.flatnonzero(groups != "10")
    feature = get_derived("blstm_fcn_deep_spectrum", {**TINY, "valid_speakers": 0})
    assert feature.bind(LOGMEL_SPEC) == FeatureSpec("utterance", Layout.of(("unit", 8 + 8)))
    feature.fit({"logmel": [X[i] for i in train]}, y[train], labels=["anger", "neutral"], groups=groups[train], seed=0)
    assert len(feature.network_.history_) == 3  # trained, on these rows
    # The log-Mel bands are standardised with the training rows' frames only.
    frames = np.concatenate([X[i] for i in train]).astype(np.float64)
    np.testing.assert_allclose(feature.input_normaliser_.mean_, frames.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(feature.input_normaliser_.std_, frames.std(axis=0), rtol=1e-6)
    # Every row (test speaker included) is the network's fused vector of its standardised log-Mels.
    vectors = feature.transform({"logmel": X})
    assert vectors.shape == (12, 16) and vectors.dtype == np.float32
    by_hand = feature.network_.embed({"logmel": [((x - frames.mean(0)) / frames.std(0)).astype(np.float32) for x in X]})
    np.testing.assert_allclose(vectors, by_hand, rtol=1e-5, atol=1e-6)
    one = feature.transform({"logmel": [X[-1]]})  # how a bundle calls it: one recording
    np.testing.assert_allclose(one[0], vectors[-1], rtol=1e-4, atol=1e-5)
    proba = feature.network_proba({"logmel": X})
    assert proba.shape == (12, 2) and np.allclose(proba.sum(axis=1), 1)
    # Save and load: tensors and JSON only, the same vectors.
    feature.save(tmp_path)
    assert json.loads((tmp_path / "module.json").read_text())["labels"] == ["anger", "neutral"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input_normaliser.json", "module.json", "module.safetensors"]
    specs = LOGMEL_SPEC
    again = BLSTMFCNDeepSpectrum.load(tmp_path, feature.describe()["config"], specs)
    np.testing.assert_allclose(again.transform({"logmel": X}), vectors, rtol=1e-5, atol=1e-6)
    with pytest.raises(BundleError):  # a network of another size than the config says
        BLSTMFCNDeepSpectrum.load(tmp_path, {**feature.describe()["config"], "lstm_hidden": 9}, specs)
    (tmp_path / "input_normaliser.json").write_text("{")
    with pytest.raises(BundleError):
        BLSTMFCNDeepSpectrum.load(tmp_path, feature.describe()["config"], specs)


def test_blstm_fcn_feature_refuses_wrong_inputs_and_options():
    with pytest.raises(ConfigError):
        get_derived("blstm_fcn_deep_spectrum", {"feature": "logmel"})
    with pytest.raises(ConfigError):
        get_derived("blstm_fcn_deep_spectrum", {"input_normalisation": "speaker"})
    with pytest.raises(ConfigError):
        get_derived("blstm_fcn_deep_spectrum", {"branches": ["cnn"]})
    with pytest.raises(ConfigError, match="vanish"):  # 4 bands vanish after three 2x2 pools
        get_derived("blstm_fcn_deep_spectrum").bind({"m": FeatureSpec("frame", Layout.flat(4))})
    with pytest.raises(ConfigError, match="frame"):
        get_derived("blstm_fcn_deep_spectrum").bind({"m": FeatureSpec("utterance", Layout.flat(40))})
    spec = get_derived("blstm_fcn_deep_spectrum", {"branches": ["fcn"], "fcn_filters": [4, 8, 6]}).bind(LOGMEL_SPEC)
    assert spec.dim == 6


class SpyDeepSpectrum(BLSTMFCNDeepSpectrum):
    """Records which speakers and which log-Mel rows every fit saw, and the validation it kept."""

    name = "spy_blstm_fcn_deep_spectrum"
    fits: ClassVar[list[dict]] = []

    def fit(self, X, y, *, labels, groups, seed, valid=None):
        (data,) = X.values()
        super().fit(X, y, labels=labels, groups=groups, seed=seed, valid=valid)
        held = set(np.unique(groups[speaker_holdout(groups, self.config.valid_speakers, seed)]).tolist())
        SpyDeepSpectrum.fits.append({"speakers": set(groups.tolist()), "rows": {x.tobytes() for x in data},
                                     "held": held, "history": self.network_.history_})  # fmt: skip
        return self


DERIVED.register(SpyDeepSpectrum)


def test_blstm_fcn_feature_is_fitted_on_training_speakers_only(corpus, emodb_subset, tmp_path, monkeypatch):
    X, _, groups, paths, _ = emodb_subset
    SpyDeepSpectrum.fits.clear()
    trained = []  # rows the network's training loop got, fit by fit
    loop = network.train
    monkeypatch.setattr(network, "train", lambda module, n_rows, *a, **k: trained.append(n_rows) or loop(module, n_rows, *a, **k))
    recipe = _recipe(corpus, {"derive": "spy_blstm_fcn_deep_spectrum", "from": "logmel", "config": TINY})
    run = run_experiment(recipe, tmp_path / "run", progress=False)
    predictions = read_predictions(run / "predictions.csv")
    rows_of = {Path(p).stem: x.tobytes() for p, x in zip(paths, X)}
    folds = sorted(set(predictions["fold"]))
    assert len(SpyDeepSpectrum.fits) == len(folds) == len(SPEAKERS)
    for fit, fold, n_trained in zip(SpyDeepSpectrum.fits, folds, trained, strict=True):
        test = predictions[predictions["fold"] == fold]
        assert set(test["speaker"]) & fit["speakers"] == set()
        assert {rows_of[uid] for uid in test["utterance_id"]} & fit["rows"] == set()
        assert len(fit["rows"]) == len(X) - len(test)  # every training row, nothing else
        # Early stopping on one of the training speakers, never the test speaker: the network
        # trained on the other training speaker's rows and validated every epoch.
        assert len(fit["held"]) == 1 and fit["held"] <= fit["speakers"]
        assert n_trained == len(fit["rows"]) - np.isin(groups, list(fit["held"])).sum()
        assert all("valid_ua" in epoch for epoch in fit["history"])
    info = json.loads((run / "metrics.json").read_text())["extra"]["fit"]
    assert all(fold["derived"]["deep_spectrum"]["epochs_run"] >= 1 for fold in info.values())
    assert all(fold["C"] in (0.01, 1.0) for fold in info.values())  # the SVM read the vectors


# --------------------------------------------------------------------------- bundles of the compositions


def test_a_cnn_svm_bundle_labels_a_recording_as_the_pipeline_by_hand(corpus, emodb_subset, emodb_root, cnn, tmp_path):
    X, _, _, _, extractor = emodb_subset
    recipe = _recipe(corpus, {"derive": "imagenet_deep_spectrum", "from": "logmel", "config": {"batch_size": 4}})
    bundle = load_bundle(train_bundle(recipe, tmp_path / "bundle", progress=False))
    assert bundle.meta["inputs"] == {"deep_spectrum": FeatureSpec("utterance", Layout.of(("unit", 1280))).to_dict()}
    assert bundle.meta["derived"]["deep_spectrum"]["name"] == "imagenet_deep_spectrum"
    # The normaliser holds the statistics of the 12 training vectors, computed here step by step
    # (a unit that is 0 for every image, as after ReLU6 many are, is centred, not scaled).
    training = np.stack([_by_hand(cnn, x) for x in X]).astype(np.float64)
    mean, std = training.mean(axis=0), np.where(np.ptp(training, axis=0) > 0, training.std(axis=0), 1.0)
    np.testing.assert_allclose(bundle.normalisers["deep_spectrum"].mean_, mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bundle.normalisers["deep_spectrum"].std_, std, rtol=1e-4, atol=1e-5)
    unseen = load_audio(emodb_root / "wav" / UNSEEN)
    features = bundle.features(unseen)
    assert set(features) == {"deep_spectrum"}
    vector = _by_hand(cnn, extract_audio(unseen, extractor))
    np.testing.assert_allclose(features["deep_spectrum"], vector, rtol=1e-5, atol=1e-5)
    proba = bundle.predict([features])
    z = ((vector[None] - mean) / std).astype(np.float32)
    np.testing.assert_allclose(proba, bundle.model.predict_proba({"deep_spectrum": z}), rtol=1e-4, atol=1e-5)
    assert proba.shape == (1, 2) and np.isclose(proba.sum(), 1.0)
    assert bundle.model.fit_info()["C"] in (0.01, 1.0)


def test_a_blstm_fcn_svm_bundle_replays_the_fitted_network_on_a_recording(corpus, emodb_subset, emodb_root, tmp_path):
    _, _, _, _, extractor = emodb_subset
    recipe = _recipe(corpus, {"derive": "blstm_fcn_deep_spectrum", "from": "logmel", "config": TINY})
    bundle = load_bundle(train_bundle(recipe, tmp_path / "bundle", progress=False))
    saved = tmp_path / "bundle" / "derived" / "deep_spectrum"
    assert sorted(p.name for p in saved.iterdir()) == ["input_normaliser.json", "module.json", "module.safetensors"]
    fitted = bundle.fitted["deep_spectrum"]
    unseen = load_audio(emodb_root / "wav" / UNSEEN)
    features = bundle.features(unseen)
    logmel = extract_audio(unseen, extractor)
    norm = fitted.input_normaliser_
    by_hand = fitted.network_.embed({"logmel": [((logmel - norm.mean_) / norm.std_).astype(np.float32)]})[0]
    np.testing.assert_allclose(features["deep_spectrum"], by_hand, rtol=1e-5, atol=1e-6)
    z = bundle.normalisers["deep_spectrum"].transform(by_hand[None])
    np.testing.assert_allclose(bundle.predict([features]), bundle.model.predict_proba({"deep_spectrum": z}), rtol=1e-6)
