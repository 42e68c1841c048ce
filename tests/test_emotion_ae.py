"""Emotion-embedding autoencoder (emotion-embedding-ae): crops, windows, layer sizes of Tables 1-3,
instance norm, emotion embedding, window averaging, overfitting, save/load, Table 4 recipes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from serkit.audio import load_audio
from serkit.bundle import save_bundle
from serkit.errors import ConfigError
from serkit.features.normalise import fit_normaliser
from serkit.features import extract_audio, get_extractor
from serkit.features.spectral import segment_starts
from serkit.inference import InferenceConfig, Recognizer
from serkit.features.layout import Layout
from serkit.models.base import get_model
from serkit.models.emotion_ae import (
    EmotionAE,
    EmotionAEConfig,
    crop_starts,
    fill_frames,
)
from serkit.recipe import load_recipe
from plans import plan_of

REPO = Path(__file__).resolve().parents[1]
FILES = (
    "03a01Fa.wav",
    "03a01Nc.wav",
    "08a01Ab.wav",
    "10a01Ac.wav",
    "11a01Ld.wav",
    "16a01Ec.wav",
)
SMALL = {
    "channels": 16,
    "bank_channels": 8,
    "encoder_gru": 8,
    "decoder_gru": 8,
    "classifier": [32, 16, 8],
    "device": "cpu",
}
LAYOUTS = {"spectrogram": Layout.flat(513), "functionals": Layout.flat(10)}

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def inputs(emodb_root: Path) -> dict:
    """Real 513-bin log-magnitude spectrograms (12.5 ms hop) of EmoDB utterances of different
    lengths, standardised per bin, and 10 stand-in utterance-level functionals."""
    stft = get_extractor("stft")
    spectra = [extract_audio(load_audio(emodb_root / "wav" / f), stft) for f in FILES]
    frames = np.concatenate(spectra)
    mean, std = frames.mean(axis=0), frames.std(axis=0) + 1e-6
    spectra = [(x - mean) / std for x in spectra]
    functionals = (
        np.random.default_rng(0).standard_normal((len(FILES), 10)).astype(np.float32)
    )
    return {"spectrogram": spectra, "functionals": functionals}


def _model(**options) -> EmotionAE:
    return EmotionAE({**SMALL, **options})


def _net(model: EmotionAE, seed: int = 0):
    torch.manual_seed(seed)
    return model.build(LAYOUTS, 4)


# --------------------------------------------------------------------------- crops and windows (Sec. IV-A)


def test_crops_never_run_past_the_end_and_cover_every_start():
    rng = np.random.default_rng(0)
    lengths = np.array([1, 50, 127, 128, 129, 130, 400] * 5000)
    starts = crop_starts(lengths, 128, rng)
    assert np.all(starts >= 0)
    assert np.all(starts[lengths > 128] + 128 <= lengths[lengths > 128])
    assert np.all(starts[lengths <= 128] == 0)
    # t uniform on [0, T - 128): every start is drawn, T - 128 itself never.
    for length in (130, 400):
        seen = set(starts[lengths == length].tolist())
        assert seen == set(range(length - 128))


def test_short_utterances_are_filled_with_their_own_frames():
    x = np.arange(50 * 3, dtype=np.float32).reshape(50, 3)
    filled = fill_frames(x, 128)
    assert filled.shape == (128, 3)
    np.testing.assert_array_equal(filled[:50], x)
    np.testing.assert_array_equal(filled[50:100], x)
    np.testing.assert_array_equal(filled[100:], x[:28])
    assert fill_frames(x, 20) is x
    with pytest.raises(ConfigError):
        fill_frames(x[:0], 128)


@pytest.mark.parametrize("n_frames", [1, 127, 128, 129, 200, 256, 777])
def test_windows_cover_every_frame_and_stay_inside(n_frames):
    starts = segment_starts(n_frames, 128, 64)
    last = max(n_frames - 128, 0)
    assert starts[0] == 0 and starts[-1] == last and np.all(np.diff(starts) > 0)
    covered = np.zeros(max(n_frames, 128), dtype=bool)
    for s in starts:
        covered[s : s + 128] = True
    assert covered.all()


def test_training_crops_are_slices_of_real_utterances(inputs):
    model = _model()
    spectra = inputs["spectrogram"]
    short = spectra[0][:70]  # shorter than one crop
    X = {"spectrogram": [short, *spectra[1:]], "functionals": inputs["functionals"]}
    batch = model.make_batch(
        X, np.arange(len(FILES)), train=True, rng=np.random.default_rng(3)
    )
    assert batch["spec"].shape == (len(FILES), 128, 513) and "owner" not in batch
    np.testing.assert_array_equal(batch["spec"][0].numpy(), fill_frames(short, 128))
    for row, x in enumerate(X["spectrogram"][1:], start=1):
        crop = batch["spec"][row].numpy()
        hits = [t for t in range(len(x) - 127) if np.array_equal(x[t : t + 128], crop)]
        assert hits and hits[0] + 128 <= len(x)


# --------------------------------------------------------------------------- network (Tables 1-3)


def test_encoder_decoder_shapes_on_real_spectrograms_of_different_lengths(inputs):
    model = _model()
    net = _net(model).eval()
    lengths = [len(x) for x in inputs["spectrogram"]]
    assert len(set(lengths)) == len(lengths) and min(lengths) > 128
    batch = model.make_batch(
        inputs, np.arange(len(FILES)), train=False, rng=np.random.default_rng(0)
    )
    n_windows = [len(segment_starts(n, 128, 64)) for n in lengths]
    assert batch["spec"].shape == (sum(n_windows), 128, 513)
    assert batch["owner"].tolist() == [
        i for i, n in enumerate(n_windows) for _ in range(n)
    ]
    y = torch.zeros(len(batch["owner"]), dtype=torch.int64)
    with torch.no_grad():
        z = net.encode(batch["spec"])
        rebuilt = net.reconstruct(batch["spec"], y)
        logits = net(batch)
    assert z.shape == (
        sum(n_windows),
        16,
        128 // 8,
    )  # three stride-2 blocks, no pooling
    assert (
        rebuilt.shape == batch["spec"].shape
    )  # decoder: back to 128 frames x 513 bins
    assert logits.shape == (len(FILES), 4)


def test_default_layer_sizes_follow_tables_1_to_3():
    net = EmotionAE({"device": "cpu"}).build(
        {"spectrogram": Layout.flat(513), "functionals": Layout.flat(1582)}, 7
    )
    enc, dec, cls = net.encoder, net.decoder, net.classifier
    assert [c.conv.kernel_size[0] for c in enc.bank] == list(range(1, 9))
    assert {(c.conv.in_channels, c.conv.out_channels) for c in enc.bank} == {(513, 128)}
    assert (enc.conv2.conv.in_channels, enc.conv2.conv.out_channels) == (1537, 512)
    assert [b.second.conv.stride[0] for b in enc.blocks] == [2, 2, 2, 1, 1]
    assert (enc.gru.hidden_size, enc.gru.bidirectional, enc.fc5.in_channels) == (
        128,
        True,
        768,
    )
    assert [
        (b.first.conv.in_channels, b.first.conv.out_channels) for b in dec.blocks[:3]
    ] == [(512, 1024)] * 3
    assert [tuple(t.weight.shape) for t in dec.embeddings] == [(7, 512)] * 5
    assert (dec.gru.hidden_size, dec.fc5.in_channels, dec.fc6.out_channels) == (
        256,
        1536,
        513,
    )
    linears = [m for m in cls.head if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (512 + 1582, 1024),
        (1024, 512),
        (512, 128),
        (128, 7),
    ]
    assert cls.attention.num_heads == 1
    assert sum(isinstance(m, torch.nn.InstanceNorm1d) for m in enc.modules()) > 0
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in net.modules())


def test_instance_norm_normalises_each_sample_on_its_own(inputs):
    X = {k: v for k, v in inputs.items()}
    spec = _model().make_batch(
        X, np.arange(4), train=True, rng=np.random.default_rng(0)
    )["spec"]
    outputs = {}
    for norm in ("instance", "batch"):
        net = _net(_model(norm=norm, dropout=0.0)).train()
        layer = net.encoder.conv2.norm
        captured: list[torch.Tensor] = []
        layer.register_forward_hook(
            lambda m, i, o, store=captured: store.append(o.detach())
        )
        with torch.no_grad():
            net.encode(spec)
            net.encode(spec[:1])
        outputs[norm] = captured
    together, alone = outputs["instance"]
    # Every (sample, channel) has mean 0 and variance 1 over frames ...
    torch.testing.assert_close(
        together.mean(dim=2), torch.zeros(4, 16), atol=1e-4, rtol=0
    )
    torch.testing.assert_close(
        together.var(dim=2, unbiased=False), torch.ones(4, 16), atol=1e-3, rtol=0
    )
    # ... and a sample's output does not depend on the other samples of the batch.
    torch.testing.assert_close(together[:1], alone, atol=1e-5, rtol=1e-5)
    # Batch norm (the ablation) normalises across the batch: alone, the same sample changes.
    batch_together, batch_alone = outputs["batch"]
    assert not torch.allclose(batch_together[:1], batch_alone, atol=1e-3)
    assert not torch.allclose(batch_together.mean(dim=2), torch.zeros(4, 16), atol=1e-2)


def test_emotion_embedding_changes_the_reconstruction(inputs):
    spec = _model().make_batch(
        inputs, np.arange(2), train=True, rng=np.random.default_rng(0)
    )["spec"]
    with_ee = _net(_model(emotion_embedding=True)).eval()
    without = _net(_model(emotion_embedding=False)).eval()
    with torch.no_grad():
        a = with_ee.reconstruct(spec, torch.tensor([0, 0]))
        b = with_ee.reconstruct(spec, torch.tensor([1, 2]))
        c = without.reconstruct(spec, torch.tensor([0, 0]))
        d = without.reconstruct(spec, torch.tensor([1, 2]))
        latent_0, latent_1 = with_ee.encode(spec), with_ee.encode(spec)
    assert float((a - b).abs().mean()) > 1e-3  # the label steers the decoder (eq. 1)
    torch.testing.assert_close(c, d)  # without EE the label is never seen
    torch.testing.assert_close(latent_0, latent_1)  # the encoder never sees the label
    assert without.decoder.embeddings is None
    with pytest.raises(ConfigError):
        with_ee.reconstruct(spec, None)


def test_prediction_averages_window_probabilities_and_skips_the_decoder(inputs):
    model = _model()
    model.module_, model.labels_ = _net(model).eval(), list("abcd")
    calls = []
    model.module_.decoder.register_forward_hook(lambda *a: calls.append(1))
    proba = model.predict_proba(inputs)
    assert proba.shape == (len(FILES), 4) and np.allclose(proba.sum(axis=1), 1)
    assert not calls
    batch = model.make_batch(
        inputs, np.arange(len(FILES)), train=False, rng=np.random.default_rng(0)
    )
    with torch.no_grad():
        per_window = torch.softmax(
            model.module_.window_logits(batch, model.module_.encode(batch["spec"])), 1
        )
    owner = batch["owner"].numpy()
    expected = np.stack(
        [per_window.numpy()[owner == i].mean(axis=0) for i in range(len(FILES))]
    )
    np.testing.assert_allclose(proba, expected, atol=1e-5)


# --------------------------------------------------------------------------- training


def test_tiny_overfit_and_save_load_round_trip(inputs, tmp_path):
    y = np.array([0, 1, 2, 3, 0, 1])
    # Utterance ends would be new crops: train and test on the first 128 frames only.
    X = {
        "spectrogram": [x[:128] for x in inputs["spectrogram"]],
        "functionals": inputs["functionals"] * 0,
    }
    model = get_model(
        "emotion_ae",
        {
            **SMALL,
            "max_epochs": 80,
            "valid_speakers": 0,
            "batch_size": 6,
            "learning_rate": 3e-3,
            "dropout": 0.0,
        },
    )
    model.fit(X, y, labels=list("abcd"), seed=0)
    losses = [h["train_loss"] for h in model.history_]
    assert losses[-1] < 0.4 * losses[0]
    proba = model.predict_proba(X)
    assert np.array_equal(proba.argmax(axis=1), y)
    with torch.no_grad():
        rebuilt = model.module_.reconstruct(
            torch.from_numpy(np.stack(X["spectrogram"])), torch.from_numpy(y)
        )
    assert (
        float((rebuilt - torch.from_numpy(np.stack(X["spectrogram"]))).abs().mean())
        < 0.6
    )  # MAE learnt
    model.save(tmp_path)
    again = EmotionAE.load(tmp_path, model.describe()["config"])
    np.testing.assert_allclose(again.predict_proba(X), proba, atol=1e-6)
    assert again.embeddings().shape == (5, 4, 16)
    assert again.representations(X).shape == (len(FILES), 16)


def test_bundle_labels_a_real_recording_through_the_recognizer(
    inputs, emodb_file, tmp_path
):
    """A fitted model saved as a bundle is what ``serkit predict`` loads (spectrogram only here:
    the IS10 path is the same utterance-level input the SVM bundles already use)."""
    X = {"spectrogram": inputs["spectrogram"]}
    y = np.array([0, 1, 0, 1, 0, 1])
    model = get_model(
        "emotion_ae",
        {**SMALL, "functionals_key": None, "max_epochs": 1, "valid_speakers": 0},
    )
    model.fit(X, y, labels=["anger", "sadness"], seed=0)
    save_bundle(
        tmp_path / "bundle",
        recipe={"name": "emotion_ae_test"},
        labels=["anger", "sadness"],
        plan=plan_of({"spectrogram": (get_extractor("stft"), "downmix")}),
        fitted={},
        normalisers={"spectrogram": fit_normaliser("global", inputs["spectrogram"])},
        model=model,
        trained_on={"corpus": "emodb", "n_utterances": len(y)},
    )
    recognizer = Recognizer(
        tmp_path / "bundle", InferenceConfig(vad=False, window=1.0, hop=0.5)
    )
    timeline = recognizer.recognize_file(
        emodb_file
    )  # windows of 1 s: 81 frames, filled to 128
    probs = timeline.windows[["p_anger", "p_sadness"]].to_numpy()
    assert len(probs) >= 2 and np.allclose(probs.sum(axis=1), 1)
    assert set(timeline.windows["label"]) <= {"anger", "sadness"}


def test_without_functionals_the_classifier_reads_the_autoencoder_alone(inputs):
    model = _model(functionals_key=None)
    net = model.build({"spectrogram": Layout.flat(513)}, 4)
    assert net.classifier.head[0].in_features == 16
    batch = model.make_batch(
        {"spectrogram": inputs["spectrogram"]},
        np.arange(2),
        train=False,
        rng=np.random.default_rng(0),
    )
    assert "functionals" not in batch
    with torch.no_grad():
        assert net.eval()(batch).shape == (2, 4)


def test_config_errors():
    with pytest.raises(ConfigError):
        EmotionAEConfig(norm="layer")
    with pytest.raises(ConfigError):
        EmotionAEConfig(crop_frames=100)
    with pytest.raises(ConfigError):
        EmotionAEConfig(channels=10, attention_heads=3)
    with pytest.raises(ConfigError, match="unclassified"):
        EmotionAEConfig(crop_frames=128, window_hop=129)
    with pytest.raises(ConfigError):
        EmotionAE({}).build(
            {"spectrogram": Layout.flat(513)}, 4
        )  # IS10 functionals configured but missing
    with pytest.raises(ConfigError):
        _model().make_batch(
            {"spectrogram": np.zeros((2, 513)), "functionals": np.zeros((2, 3))},
            np.arange(2),
            train=True,
            rng=np.random.default_rng(0),
        )


# --------------------------------------------------------------------------- Table 4 recipes

ROWS = {
    "emotion_ae_os": (False, "batch", False),
    "emotion_ae_os_ee_in": (True, "instance", False),
    "emotion_ae_ae": (False, "batch", True),
    "emotion_ae_ee": (True, "batch", True),
    "emotion_ae_in": (False, "instance", True),
    "emotion_ae": (True, "instance", True),
}


@pytest.mark.parametrize("name", sorted(ROWS))
def test_table_4_recipes(name):
    spec = load_recipe(REPO / "recipes" / f"{name}.yaml")
    model = get_model(spec["model"]["name"], spec["model"]["config"])
    ee, norm, os_ = ROWS[name]
    cfg = model.config
    assert (cfg.emotion_embedding, cfg.norm, cfg.functionals_key is not None) == (
        ee,
        norm,
        os_,
    )
    extractors = {
        k: get_extractor(f["extractor"], f.get("config"))
        for k, f in spec["features"].items()
    }
    assert (
        extractors["spectrogram"].dim == 513
        and extractors["spectrogram"].frame_shift == 0.0125
    )
    assert ("functionals" in extractors) == os_
    if os_:
        assert extractors["functionals"].dim == 1582
    assert (cfg.learning_rate, cfg.max_epochs, cfg.crop_frames) == (1e-4, 40, 128)
