"""Binaural deep representations (Zhang et al. 2020): views, segments, pooling, fusion, the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from serkit.audio import load_audio
from serkit.bundle import load_bundle, save_bundle
from serkit.errors import ConfigError, FeatureError
from serkit.features.normalise import fit_normaliser
from serkit.features import extract_audio, get_extractor
from serkit.models.binaural import BinauralDCNN
from serkit.blocks.binaural_ops import (
    apply_two_stage,
    block_bounds,
    block_pool,
    fuse_pair,
    global_pool,
    is_silent,
    search_two_stage,
    search_weight,
    segment_logmel,
    segment_planes,
    segment_starts,
)
from serkit.blocks.segment_cnn import AlexNet, Resize, build_backbone, load_alexnet
from plans import plan_of

LOGMEL = {
    "n_mels": 64,
    "sample_rate": 16000,
    "fmin": 20,
    "fmax": 8000,
    "window": "hamming",
    "preemphasis": 0.0,
    "filterbank": "librosa",
}
VIEWS = ("left", "right", "mid", "side")
SMALL = {"image_size": 64, "svm_C": [0.01, 1.0], "cnn_batch_size": 128}


@pytest.fixture(scope="module")
def extractor():
    return get_extractor("logmel", LOGMEL)


@pytest.fixture(scope="module")
def emovo_set(emovo_root, extractor):
    """Real EMOVO log-Mels, four views: 3 speakers x (anger, neutral) x 2 sentences; speaker f1's
    neutral files have identical channels and its anger file b1 is mono, so Side is silent there."""
    X = {v: [] for v in VIEWS}
    y, groups = [], []
    for speaker in ("f1", "m1", "m2"):
        for k, code in enumerate(("rab", "neu")):
            for sentence in ("b1", "b2"):
                audio = load_audio(
                    emovo_root / speaker / f"{code}-{speaker}-{sentence}.flac"
                )
                for v in VIEWS:
                    X[v].append(extract_audio(audio, extractor, v))
                y.append(k)
                groups.append(speaker)
    return X, np.array(y), np.array(groups)


# --------------------------------------------------------------------------- views and segments


def test_views_of_a_real_stereo_file_reconstruct_left_and_right(
    emovo_file, emovo_root, extractor
):
    audio = load_audio(emovo_file)
    assert audio.channels == 2
    left, right, mid, side = (
        audio.view(v).samples[0].astype(np.float64) for v in VIEWS
    )
    np.testing.assert_array_equal(left, audio.samples[0])
    np.testing.assert_array_equal(right, audio.samples[1])
    np.testing.assert_allclose(mid + side, left, atol=1e-7)
    np.testing.assert_allclose(mid - side, right, atol=1e-7)
    # Spaced microphones: a real Side signal.
    assert np.sqrt(np.mean(side**2)) > 0.05 * np.sqrt(np.mean(mid**2))
    assert not is_silent(extract_audio(audio, extractor, "side"))
    # The degenerate cases: the mono file and a file with identical channels have a silent Side.
    for name in ("f1/rab-f1-b1.flac", "f1/neu-f1-b1.flac"):
        other = load_audio(emovo_root / name)
        logmels = {v: extract_audio(other, extractor, v) for v in VIEWS}
        assert is_silent(logmels["side"]) and not is_silent(logmels["mid"])
        np.testing.assert_array_equal(logmels["left"], logmels["right"])
        np.testing.assert_array_equal(logmels["left"], logmels["mid"])


def test_segment_starts_cover_the_utterance():
    np.testing.assert_array_equal(segment_starts(192, 64, 32), [0, 32, 64, 96, 128])
    # Tail segment.
    np.testing.assert_array_equal(
        segment_starts(200, 64, 32), [0, 32, 64, 96, 128, 136]
    )
    np.testing.assert_array_equal(segment_starts(64, 64, 32), [0])
    np.testing.assert_array_equal(segment_starts(10, 64, 32), [0])
    np.testing.assert_array_equal(segment_starts(128, 64, 64), [0, 64])
    with pytest.raises(ConfigError):
        segment_starts(100, 64, 65)
    with pytest.raises(FeatureError):
        segment_starts(0)


def test_segments_and_planes_on_real_speech(emovo_set):
    logmel = emovo_set[0]["left"][0]
    segments = segment_logmel(logmel)
    starts = segment_starts(len(logmel))
    assert segments.shape == (len(starts), 64, 64) and segments.dtype == np.float32
    np.testing.assert_array_equal(segments[1], logmel[32:96])
    np.testing.assert_array_equal(segments[-1], logmel[-64:])
    planes = segment_planes(logmel)
    assert planes.shape == (len(starts), 3, 64, 64) and planes.dtype == np.float32
    # Static plane: the standardised segment, bands as rows with the lowest band at the bottom.
    static = segments.astype(np.float64)
    expected = (static[1] - static.mean()) / static.std()
    np.testing.assert_allclose(planes[1, 0], expected.T[::-1], rtol=1e-5, atol=1e-5)
    for plane in range(3):
        assert (
            abs(planes[:, plane].mean()) < 1e-4
            and abs(planes[:, plane].std() - 1) < 1e-4
        )
    # Δ is computed inside each segment along time: a linear ramp has a constant Δ away from the
    # two edge frames on each side (where HTK's edge repetition flattens the slope).
    ramp = np.tile(np.arange(64, dtype=np.float32)[:, None], (1, 8))
    ramp_planes = segment_planes(ramp)
    assert ramp_planes.shape == (1, 3, 8, 64)
    interior = ramp_planes[0, 1, :, 2:-2]
    np.testing.assert_allclose(interior, interior[0, 0], rtol=1e-5)
    assert ramp_planes[0, 1, 0, 0] < interior[0, 0]
    # Short utterance: one segment padded with each band's minimum.
    short = logmel[:40]
    padded = segment_logmel(short)
    assert padded.shape == (1, 64, 64)
    np.testing.assert_array_equal(
        padded[0, 40:], np.broadcast_to(short.min(axis=0), (24, 64))
    )
    with pytest.raises(FeatureError):
        segment_logmel(np.full((10, 64), np.nan))


def test_bilinear_resize_to_cnn_input():
    planes = torch.from_numpy(
        segment_planes(
            np.random.default_rng(0).normal(size=(100, 64)).astype(np.float32)
        )
    )
    for size in (224, 227):
        assert Resize(size)(planes).shape == (len(planes), 3, size, size)
    flat = Resize(227)(torch.full((1, 3, 64, 64), 0.25))
    torch.testing.assert_close(flat, torch.full((1, 3, 227, 227), 0.25))


# --------------------------------------------------------------------------- pooling (eq. 3-7)

# Segment features X (4 segments, 2 dims). Their regression ΔX (half-width 2, edges repeated):
# column 0 [1, 3, 2, 0] -> [0.4, -0.1, -0.5, -0.8]; column 1 [0, -1, 5, 2] -> [0.9, 0.9, 0.7, 0.3].
X4 = np.array([[1.0, 0.0], [3.0, -1.0], [2.0, 5.0], [0.0, 2.0]])


def test_block_pooling_known_answer():
    np.testing.assert_allclose(
        block_pool(X4, 2, "max"), [3, 1, 2, 5, 0.4, 0.9, 0.8, 0.7]
    )
    np.testing.assert_allclose(
        block_pool(X4, 2, "avg"), [2, 0.5, 1, 3.5, 0.25, 0.9, 0.65, 0.5]
    )
    np.testing.assert_allclose(block_pool(X4, 1, "max"), [3, 5, 0.8, 0.9])
    np.testing.assert_allclose(
        block_pool(X4, 2, "max", pyramid=True),
        [3, 5, 3, 1, 2, 5, 0.8, 0.9, 0.4, 0.9, 0.8, 0.7],
    )
    np.testing.assert_allclose(global_pool(X4, "max"), [3, 5])
    np.testing.assert_allclose(global_pool(X4, "avg"), [1.5, 2])


def test_block_pooling_with_fewer_segments_than_blocks():
    assert block_bounds(1, 2) == [(0, 1), (0, 1)]
    assert block_bounds(2, 3) == [(0, 1), (0, 1), (1, 2)]
    assert block_bounds(5, 2) == [(0, 2), (2, 5)]
    one = np.array([[1.0, -2.0]])
    np.testing.assert_allclose(block_pool(one, 2, "max"), [1, 2, 1, 2, 0, 0, 0, 0])
    # ΔX of two segments: (x2 - x1) * 3/10 on both.
    two = np.array([[1.0, 0.0], [0.0, 4.0]])
    np.testing.assert_allclose(
        block_pool(two, 3, "avg"), [1, 0, 1, 0, 0, 4, 0.3, 1.2, 0.3, 1.2, 0.3, 1.2]
    )
    with pytest.raises(FeatureError):
        block_pool(np.zeros((0, 2)))
    with pytest.raises(ConfigError):
        block_pool(X4, 0)
    with pytest.raises(ConfigError):
        global_pool(X4, "median")


# --------------------------------------------------------------------------- fusion (eq. 8-10)


def _table(first: list[float]) -> np.ndarray:
    """Two-class scores whose class 1 wins when the fused column 1 exceeds 0.5."""
    return np.stack([np.full(4, 0.5), np.array(first)], axis=1)


# y = [0, 0, 1, 1]. A alone gets 2 of 4 right, B alone 2 of 4; w A + (1 - w) B is right on
# utterance 0 iff w < 0.75, on 1 iff w > 0.652, on 2 iff w > 0.11, on 3 iff w < 0.75: only w = 0.7.
Y = np.array([0, 0, 1, 1])
A = _table([0.6, 0.1, 0.9, 0.4])
B = _table([0.2, 1.25, 0.45, 0.8])


def test_fusion_weight_search_on_a_known_score_table():
    assert search_weight(A, B, Y) == (0.7, 1.0)
    assert search_weight(B, A, Y) == pytest.approx((0.3, 1.0))
    # Stage 1 (eq. 8, 9): alpha and beta found independently; stage 2 ties: the equal weight wins.
    weights = search_two_stage({"left": A, "right": B, "mid": B, "side": A}, Y)
    assert (weights["alpha"], weights["beta"], weights["lambda"]) == (0.7, 0.3, 0.5)
    # Stage 2 (eq. 10): L = R = A and M = S = B, so alpha and beta tie at 0.5 and lambda must be 0.7.
    weights = search_two_stage({"left": A, "right": A, "mid": B, "side": B}, Y)
    assert (weights["alpha"], weights["beta"], weights["lambda"]) == (0.5, 0.5, 0.7)
    fused = apply_two_stage({"left": A, "right": A, "mid": B, "side": B}, weights)
    np.testing.assert_allclose(fused, 0.7 * A + 0.3 * B)
    # One pair only: one weight, no second stage.
    assert set(search_two_stage({"mid": A, "side": B}, Y)) == {"beta", "ua_beta"}
    with pytest.raises(ConfigError):
        search_two_stage({"left": A, "mid": B}, Y)


def test_absent_side_gives_its_weight_to_mid():
    present = np.array([True, False, True, False])
    fused = fuse_pair(A, B, 0.3, None, present)
    np.testing.assert_allclose(fused[~present], A[~present])
    np.testing.assert_allclose(fused[present], 0.3 * A[present] + 0.7 * B[present])
    both_absent = fuse_pair(A, B, 0.5, np.zeros(4, bool), np.zeros(4, bool))
    assert np.isnan(both_absent).all()


# --------------------------------------------------------------------------- segment CNNs


def test_efficientnet_stages_reproduce_the_network_and_cut_where_asked():
    from serkit.blocks.imagenet_cnn import load_efficientnet_lite0

    net = load_efficientnet_lite0(pretrained=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference = net.extract_features(
            torch.nn.functional.interpolate(x, size=(96, 96), mode="bilinear")
        ).mean((2, 3))
        for stages, cut_channels in ((0, 320), (2, 192), (-1, None)):
            backbone = build_backbone("efficientnet_lite0", stages, 96)
            cut = backbone.frozen(x)
            if cut_channels is not None:
                assert cut.shape[1] == cut_channels
            torch.testing.assert_close(
                backbone.trainable(cut), reference, rtol=1e-4, atol=1e-4
            )
    assert backbone.cut == 0 and not any(
        p.requires_grad
        for p in build_backbone("efficientnet_lite0", 1).frozen.parameters()
    )
    with pytest.raises(ConfigError):
        build_backbone("efficientnet_lite0", 19)
    with pytest.raises(ConfigError):
        build_backbone("vgg16", 0)


def test_alexnet_architecture_weights_and_stages(tmp_path):
    torch.manual_seed(0)
    model = AlexNet().eval()
    x = torch.randn(1, 3, 99, 99)  # the 6 x 6 adaptive pool takes any input from 63 px
    with torch.no_grad():
        fc7 = x
        for stage in model.stages():
            fc7 = stage(fc7)
        assert fc7.shape == (1, 4096)
        torch.testing.assert_close(model.classifier[6](fc7), model(x))
    path = tmp_path / "alexnet.pth"
    torch.save(model.state_dict(), path)
    from serkit.io import sha256_file

    loaded = load_alexnet(path, sha256_file(path))
    torch.testing.assert_close(loaded.features[0].weight, model.features[0].weight)
    with pytest.raises(ConfigError, match="SHA-256"):
        load_alexnet(path, "0" * 64)
    with pytest.raises(ConfigError, match="weights_sha256"):
        load_alexnet(path)
    with pytest.raises(ConfigError, match="from scratch"):
        BinauralDCNN({"cnn": "alexnet"})


# --------------------------------------------------------------------------- the model


def test_model_on_real_stereo_speech_with_silent_sides(
    emovo_set, torch_one_thread, tmp_path
):
    X, y, groups = emovo_set
    side_silent = np.array([is_silent(m) for m in X["side"]])
    # F1: rab-b1 is mono, neu-b1 and neu-b2 have identical channels.
    assert side_silent.sum() == 3
    model = BinauralDCNN({**SMALL, "cache_dir": str(tmp_path / "cache")})
    model.fit(X, y, labels=["anger", "neutral"], groups=groups)
    info = model.fit_info()
    assert info["absent_channels"] == [] and {"alpha", "beta", "lambda"} <= set(
        info["weights"]
    )
    scores, present = model.channel_scores(X)
    np.testing.assert_array_equal(present["side"], ~side_silent)
    assert (
        np.isnan(scores["side"][side_silent]).all()
        and not np.isnan(scores["mid"]).any()
    )
    proba = model.predict_proba(X)
    w = info["weights"]
    expected = apply_two_stage(scores, w, present)
    np.testing.assert_allclose(proba, expected / expected.sum(1, keepdims=True))
    assert proba.shape == (12, 2) and np.allclose(proba.sum(1), 1)
    # Second run of the same recipe is served by the activation cache: identical numbers.
    again = BinauralDCNN({**SMALL, "cache_dir": str(tmp_path / "cache")}).fit(
        X, y, labels=["anger", "neutral"], groups=groups
    )
    np.testing.assert_allclose(again.predict_proba(X), proba)
    # Feature-level fusion: one SVM on the concatenated standardised vectors (4 x 2 x 2 x 1280).
    joined = BinauralDCNN({**SMALL, "fusion": "feature"}).fit(
        X, y, labels=["anger", "neutral"], groups=groups
    )
    assert joined.svm_.svm_.coef_.shape[-1] == 4 * 2 * 2 * 1280
    assert np.allclose(joined.predict_proba(X).sum(1), 1)


def test_mono_corpus_skips_side_and_bundle_round_trips(
    emodb_root, extractor, torch_one_thread, tmp_path
):
    files = [
        f
        for s in ("03", "08", "10")
        for c in "WN"
        for f in sorted((emodb_root / "wav").glob(f"{s}*{c}?.wav"))[:2]
    ]
    audio = [load_audio(f) for f in files]
    X = {v: [extract_audio(a, extractor, v) for a in audio] for v in VIEWS}
    y = np.array([0, 0, 1, 1] * 3)
    groups = np.repeat(["03", "08", "10"], 4)
    model = BinauralDCNN(SMALL).fit(X, y, labels=["anger", "neutral"], groups=groups)
    assert model.fit_info()["absent_channels"] == ["side"]
    scores, present = model.channel_scores(X)
    np.testing.assert_allclose(scores["left"], scores["mid"])  # L = M for mono input
    assert not present["side"].any()
    proba = model.predict_proba(X)
    # Side absent: the Mid-Side stage is Mid itself (eq. 9 with the weight moved to Mid).
    w = model.weights_
    stage1 = w["alpha"] * scores["left"] + (1 - w["alpha"]) * scores["right"]
    np.testing.assert_allclose(
        proba, w["lambda"] * stage1 + (1 - w["lambda"]) * scores["mid"]
    )
    extractors = {v: (extractor, v) for v in VIEWS}
    normalisers = {v: fit_normaliser("none", X[v]) for v in VIEWS}
    save_bundle(
        tmp_path / "b",
        recipe={"name": "t"},
        labels=["anger", "neutral"],
        plan=plan_of(extractors),
        fitted={},
        normalisers=normalisers,
        model=model,
        trained_on={"corpus": "emodb"},
    )
    bundle = load_bundle(tmp_path / "b")
    np.testing.assert_allclose(
        bundle.predict([bundle.features(a) for a in audio[:3]]), proba[:3], atol=1e-5
    )


def test_finetuning_trains_the_head_and_is_cached(
    emovo_set, torch_one_thread, tmp_path
):
    X, y, groups = emovo_set
    channels = {k: X[k] for k in ("mid", "side")}
    config = {
        **SMALL,
        "channels": ["mid", "side"],
        "finetune_stages": 1,
        "max_epochs": 2,
        "valid_speakers": 1,
        "cache_dir": str(tmp_path),
    }
    model = BinauralDCNN(config).fit(
        channels, y, labels=["anger", "neutral"], groups=groups, seed=1
    )
    info = model.fit_info()
    assert info["mid"]["finetune"]["epochs_run"] == 2 and set(info["weights"]) == {
        "beta",
        "ua_beta",
    }
    pretrained = build_backbone("efficientnet_lite0", 1, 64).trainable
    tuned = model.channels_["mid"].net.trainable
    # The head's 1x1 conv moved.
    assert not torch.equal(tuned[0][0].weight, pretrained[0][0].weight)
    # Silent sides left out.
    assert info["side"]["finetune"]["segments"] < info["mid"]["finetune"]["segments"]
    again = BinauralDCNN(config).fit(
        channels, y, labels=["anger", "neutral"], groups=groups, seed=1
    )
    assert again.fit_info()["mid"]["finetune"]["cached"] is True
    np.testing.assert_allclose(
        again.predict_proba(channels), model.predict_proba(channels), rtol=1e-6
    )


def test_alexnet_from_scratch_trains_end_to_end(emovo_set, torch_one_thread):
    X, y, _ = emovo_set
    config = {
        **SMALL,
        "cnn": "alexnet",
        "channels": ["mid"],
        "finetune_stages": -1,
        "max_epochs": 1,
        "valid_speakers": 0,
        "batch_size": 64,
        "svm_C": 0.01,
    }
    model = BinauralDCNN(config).fit(
        {"mid": X["mid"][:4]}, y[:4], labels=["anger", "neutral"]
    )
    net = model.channels_["mid"].net
    assert net.trainable[-1][1].out_features == 4096  # segment features are fc7's
    assert model.fit_info()["mid"]["finetune"]["epochs_run"] == 1
    assert model.predict_proba({"mid": X["mid"][:2]}).shape == (2, 2)


@pytest.mark.parametrize(
    "name",
    [
        "binaural",
        "binaural_mid",
        "binaural_feature_fusion",
        "binaural_finetune",
        "binaural_alexnet",
        "binaural_emodb",
    ],
)
def test_recipes_resolve_to_valid_models(name):
    from serkit.recipe import load_recipe

    recipe = load_recipe(f"recipes/{name}.yaml")
    model = BinauralDCNN(recipe["model"]["config"])
    assert set(model.config.channels) <= set(recipe["features"])
    for channel in model.config.channels:
        spec = recipe["features"][channel]
        assert (
            spec["channel"] == channel
            and spec["config"]["n_mels"] == 64
            and spec["config"]["fmax"] == 8000
        )
    assert recipe["normalisation"] == "none"
