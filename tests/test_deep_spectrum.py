"""Deep-spectrum features: the EfficientNet-Lite0 loader, spectrogram images, the SVM models and bundles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from serkit.audio import load_audio
from serkit.bundle import load_bundle, save_bundle
from serkit.errors import ConfigError
from serkit.features.normalise import fit_normaliser
from serkit.features import extract_audio, get_extractor
from serkit.models.deep_spectrum import (
    BLSTMFCNSVM,
    DeepSpectrumCNNSVM,
    spectrogram_image,
)
from serkit.blocks.imagenet_cnn import (
    FEATURE_DIM,
    WEIGHTS_SHA256,
    efficientnet_lite0_weights_path,
    load_efficientnet_lite0,
    normalise_images,
    penultimate_features,
)
from serkit.io import sha256_file
from plans import plan_of

PAPER_LOGMEL = {"n_mels": 40, "window": "hamming", "preemphasis": 0.0, "filterbank": "librosa"}


@pytest.fixture(scope="module")
def cnn():
    return load_efficientnet_lite0(pretrained=True)


@pytest.fixture(scope="module")
def emodb_subset(emodb_root):
    """Real EmoDB log-mels of 3 speakers x (anger, neutral) x 2 texts: 12 utterances."""
    extractor = get_extractor("logmel", PAPER_LOGMEL)
    X, y, groups, paths = [], [], [], []
    for speaker in ("03", "08", "10"):
        for code, k in (("W", 0), ("N", 1)):
            files = sorted((emodb_root / "wav").glob(f"{speaker}*{code}?.wav"))[:2]
            assert len(files) == 2
            for f in files:
                X.append(extract_audio(load_audio(f), extractor))
                y.append(k)
                groups.append(speaker)
                paths.append(f)
    return X, np.array(y), np.array(groups), paths, extractor


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
    with pytest.raises(ConfigError):
        spectrogram_image(np.zeros((0, 40)))
    with pytest.raises(ConfigError):
        spectrogram_image(np.zeros((10, 40)), colormap="no-such-map")


def test_cnn_svm_fits_real_speech_and_round_trips(emodb_subset, cnn, tmp_path):
    X, y, groups, _, _ = emodb_subset
    model = DeepSpectrumCNNSVM({"batch_size": 6})
    model.cnn_ = cnn  # reuse the loaded network
    model.fit({"logmel": X}, y, labels=["anger", "neutral"], groups=groups)
    # The SVM was fitted on exactly these CNN vectors: its training predictions are the SVM's own.
    vectors = model.scaler_.transform(model.vectors({"logmel": X[:4]}))
    proba = model.predict_proba({"logmel": X[:4]})
    np.testing.assert_allclose(proba, model.svm_.predict_proba({"deep_spectrum": vectors}))
    assert proba.shape == (4, 2) and np.allclose(proba.sum(1), 1)
    model.save(tmp_path)
    again = DeepSpectrumCNNSVM.load(tmp_path, model.describe()["config"])
    again.cnn_ = cnn
    np.testing.assert_allclose(again.predict_proba({"logmel": X[:4]}), proba, rtol=1e-5, atol=1e-6)


def test_blstm_fcn_svm_trains_network_then_svm_and_bundle_round_trips(emodb_subset, tmp_path):
    X, y, groups, paths, extractor = emodb_subset
    config = {"fcn_filters": [4, 8, 8], "lstm_hidden": 8, "lstm_layers": 1, "dnn_hidden": [8], "max_epochs": 3,
              "valid_speakers": 0, "batch_size": 12, "max_train_frames": 120, "svm_C": [0.01, 1.0]}
    normaliser = fit_normaliser("global", X)
    inputs = {"logmel": normaliser.transform(X)}
    model = BLSTMFCNSVM(config).fit(inputs, y, labels=["anger", "neutral"], groups=groups, seed=0)
    assert len(model.network_.history_) == 3  # the network was trained first, on these utterances only
    vectors = model.network_.embed(inputs)
    assert vectors.shape == (12, 16)
    # The SVM sees the standardised deep-spectrum vectors: its decision equals the SVM on them.
    direct = model.svm_.predict_proba({"deep_spectrum": model.scaler_.transform(vectors)})
    np.testing.assert_allclose(model.predict_proba(inputs), direct)
    assert model.fit_info()["svm"]["C"] in (0.01, 1.0)
    recipe = {"name": "t", "model": model.describe(), "normalisation": "global"}
    save_bundle(tmp_path / "b", recipe=recipe, labels=["anger", "neutral"], plan=plan_of({"logmel": (extractor, "downmix")}), fitted={},
                normalisers={"logmel": normaliser}, model=model, trained_on={"corpus": "emodb"})
    bundle = load_bundle(tmp_path / "b")
    features = [bundle.features(load_audio(p)) for p in paths[:4]]
    np.testing.assert_allclose(bundle.predict(features), model.predict_proba({"logmel": normaliser.transform(X[:4])}),
                               rtol=1e-5, atol=1e-6)
