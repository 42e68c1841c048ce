"""Binaural deep representations (Zhang et al. 2020) as a composition on real EMOVO recordings:
views, segments, the segment CNN and its fine-tuned head (derived features), temporal pooling,
missing Side channels, score fusion, recipes and a bundle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import torch

from serkit.audio import load_audio
from serkit.blocks.binaural_ops import (
    block_bounds,
    block_pool,
    global_pool,
    is_silent,
    segment_logmel,
    segment_planes,
    segment_starts,
)
from serkit.blocks.segment_cnn import AlexNet, Resize, build_backbone, load_alexnet
from serkit.bundle import load_bundle
from serkit.corpora import get_corpus
from serkit.derived.base import DERIVED, get_derived
from serkit.errors import ConfigError, FeatureError
from serkit.evaluation.report import read_predictions
from serkit.experiment import run_experiment, train_bundle
from serkit.features import extract_audio, get_extractor
from serkit.features.data import FeatureSpec
from serkit.features.layout import Layout
from serkit.features.normalise import fit_normaliser
from serkit.models.base import MODELS, get_model
from serkit.models.fusion import check_groups, search_fusion
from serkit.models.svm import LinearSVM
from serkit.pipeline import FeaturePlan
from serkit.recipe import load_recipe

pytestmark = pytest.mark.usefixtures("torch_one_thread")

LOGMEL = {"n_mels": 64, "sample_rate": 16000, "fmin": 20, "fmax": 8000, "window": "hamming", "preemphasis": 0.0,
          "filterbank": "librosa"}  # fmt: skip
VIEWS = ("left", "right", "mid", "side")
#: The frozen network at 64 px (the recipes use 112): the same stages, 3x cheaper.
CNN = {"cnn": "efficientnet_lite0", "image_size": 64}
#: Speakers of the small real corpora: f1's neutral files have identical channels and its anger
#: file b1 is mono, so Side is silent there; the others are genuinely stereo. The experiments
#: use a fourth speaker, so that every inner fold of the Side SVM still sees both classes.
SPEAKERS = ("f1", "m1", "m2")
MANIFEST_SPEAKERS = (*SPEAKERS, "m3")


@pytest.fixture(scope="module")
def extractor():
    return get_extractor("logmel", LOGMEL)


@pytest.fixture(scope="module")
def emovo_set(emovo_root, extractor):
    """Real EMOVO log-Mels, four views: 3 speakers x (anger, neutral) x 2 sentences."""
    X = {v: [] for v in VIEWS}
    y, groups = [], []
    for speaker in SPEAKERS:
        for k, code in enumerate(("rab", "neu")):
            for sentence in ("b1", "b2"):
                audio = load_audio(emovo_root / speaker / f"{code}-{speaker}-{sentence}.flac")
                for v in VIEWS:
                    X[v].append(extract_audio(audio, extractor, v))
                y.append(k)
                groups.append(speaker)
    return X, np.array(y), np.array(groups)


@pytest.fixture(scope="module")
def manifest(emovo_root, tmp_path_factory) -> Path:
    """A CSV manifest of 16 EMOVO files: 4 speakers x (anger, neutral) x 2 sentences."""
    root = tmp_path_factory.mktemp("emovo-manifest")
    rows = [{"path": str(emovo_root / s / f"{code}-{s}-{n}.flac"), "label": label, "speaker": s}
            for s in MANIFEST_SPEAKERS for code, label in (("rab", "anger"), ("neu", "neutral")) for n in ("b1", "b2")]  # fmt: skip
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


def _on_manifest(recipe: str, manifest: Path, *overrides: str) -> dict:
    return load_recipe(recipe, corpus="manifest", root=manifest, overrides=["cache_dir=null", "n_jobs=1", *overrides])


def _bound(name: str, config: dict, inputs: dict) -> object:
    feature = get_derived(name, config)
    feature.bind(inputs)
    return feature


MEL_SPEC = FeatureSpec("frame", Layout.of(("delta", 1), ("mel", 64)), 0.01)


# --------------------------------------------------------------------------- views and segments (Sec. II-A)


def test_views_of_a_real_stereo_file_reconstruct_left_and_right(emovo_file, emovo_root, extractor):
    audio = load_audio(emovo_file)
    assert audio.channels == 2
    left, right, mid, side = (audio.view(v).samples[0].astype(np.float64) for v in VIEWS)
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
    np.testing.assert_array_equal(segment_starts(200, 64, 32), [0, 32, 64, 96, 128, 136])  # tail segment
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
        assert abs(planes[:, plane].mean()) < 1e-4 and abs(planes[:, plane].std() - 1) < 1e-4
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
    np.testing.assert_array_equal(padded[0, 40:], np.broadcast_to(short.min(axis=0), (24, 64)))
    with pytest.raises(FeatureError):
        segment_logmel(np.full((10, 64), np.nan))


def test_bilinear_resize_to_cnn_input():
    planes = torch.from_numpy(segment_planes(np.random.default_rng(0).normal(size=(100, 64)).astype(np.float32)))
    for size in (224, 227):
        assert Resize(size)(planes).shape == (len(planes), 3, size, size)
    flat = Resize(227)(torch.full((1, 3, 64, 64), 0.25))
    torch.testing.assert_close(flat, torch.full((1, 3, 227, 227), 0.25))


# --------------------------------------------------------------------------- pooling (Sec. II-C, eq. 3-7)

# Segment features X (4 segments, 2 dims). Their regression ΔX (half-width 2, edges repeated):
# column 0 [1, 3, 2, 0] -> [0.4, -0.1, -0.5, -0.8]; column 1 [0, -1, 5, 2] -> [0.9, 0.9, 0.7, 0.3].
X4 = np.array([[1.0, 0.0], [3.0, -1.0], [2.0, 5.0], [0.0, 2.0]])


def test_block_pooling_known_answer():
    np.testing.assert_allclose(block_pool(X4, 2, "max"), [3, 1, 2, 5, 0.4, 0.9, 0.8, 0.7])
    np.testing.assert_allclose(block_pool(X4, 2, "avg"), [2, 0.5, 1, 3.5, 0.25, 0.9, 0.65, 0.5])
    np.testing.assert_allclose(block_pool(X4, 1, "max"), [3, 5, 0.8, 0.9])
    np.testing.assert_allclose(block_pool(X4, 2, "max", pyramid=True), [3, 5, 3, 1, 2, 5, 0.8, 0.9, 0.4, 0.9, 0.8, 0.7])
    np.testing.assert_allclose(global_pool(X4, "max"), [3, 5])
    np.testing.assert_allclose(global_pool(X4, "avg"), [1.5, 2])


def test_block_pooling_with_fewer_segments_than_blocks():
    assert block_bounds(1, 2) == [(0, 1), (0, 1)]
    assert block_bounds(2, 3) == [(0, 1), (0, 1), (1, 2)]
    assert block_bounds(5, 2) == [(0, 2), (2, 5)]
    np.testing.assert_allclose(block_pool(np.array([[1.0, -2.0]]), 2, "max"), [1, 2, 1, 2, 0, 0, 0, 0])
    # ΔX of two segments: (x2 - x1) * 3/10 on both.
    two = np.array([[1.0, 0.0], [0.0, 4.0]])
    np.testing.assert_allclose(block_pool(two, 3, "avg"), [1, 0, 1, 0, 0, 4, 0.3, 1.2, 0.3, 1.2, 0.3, 1.2])
    with pytest.raises(FeatureError):
        block_pool(np.zeros((0, 2)))
    with pytest.raises(ConfigError):
        block_pool(X4, 0)
    with pytest.raises(ConfigError):
        global_pool(X4, "median")


def test_temporal_pool_is_eq_3_to_7_with_its_columns_laid_out():
    segments = FeatureSpec("frame", Layout.of(("unit", 2)))
    block = _bound("temporal_pool", {"pooling": "block", "pool": "max", "blocks": 2}, {"cnn": segments})
    assert block.spec == FeatureSpec("utterance", Layout.of(("delta", 2), ("block", 2), ("unit", 2)))
    pooled = block.compute({"cnn": X4.astype(np.float32)})
    assert pooled.dtype == np.float32
    layout = block.spec.layout
    # delta 0 = X, delta 1 = ΔX (eq. 3); block 1 of ΔX holds max |Δx| over segments 2-3 (eq. 7).
    np.testing.assert_allclose(pooled[layout.columns("delta", 0)], [3, 1, 2, 5])
    np.testing.assert_allclose(pooled[layout.columns("delta", 1)], [0.4, 0.9, 0.8, 0.7], rtol=1e-6)
    pyramid = _bound("temporal_pool", {"blocks": 2, "pyramid": True}, {"cnn": segments})
    assert pyramid.spec.layout.size("block") == 3
    globally = _bound("temporal_pool", {"pooling": "global", "pool": "avg"}, {"cnn": segments})
    assert globally.spec.layout == segments.layout
    np.testing.assert_allclose(globally.compute({"cnn": X4}), [1.5, 2])
    # An utterance without segments (a silent channel) is a missing row: entirely NaN.
    assert np.isnan(block.compute({"cnn": np.zeros((0, 2), np.float32)})).all()
    with pytest.raises(FeatureError):
        block.compute({"cnn": np.zeros((3, 5))})
    with pytest.raises(ConfigError):
        get_derived("temporal_pool", {"pool": "median"})
    with pytest.raises(ConfigError, match="frame-level"):
        _bound("temporal_pool", {}, {"x": FeatureSpec("utterance", Layout.of(("unit", 2)))})


# --------------------------------------------------------------------------- the segment CNN (Sec. II-B)


def test_efficientnet_stages_reproduce_the_network_and_cut_where_asked():
    from serkit.blocks.imagenet_cnn import load_efficientnet_lite0

    net = load_efficientnet_lite0(pretrained=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference = net.extract_features(torch.nn.functional.interpolate(x, size=(96, 96), mode="bilinear")).mean((2, 3))
        for stages, cut_channels in ((0, 320), (2, 192), (-1, None)):
            backbone = build_backbone("efficientnet_lite0", stages, 96)
            cut = backbone.frozen(x)
            if cut_channels is not None:
                assert cut.shape[1] == cut_channels
            torch.testing.assert_close(backbone.trainable(cut), reference, rtol=1e-4, atol=1e-4)
    assert backbone.cut == 0 and not any(p.requires_grad for p in build_backbone("efficientnet_lite0", 1).frozen.parameters())
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
    # Random frozen stages would differ in every process: only from scratch, every stage trained.
    with pytest.raises(ConfigError, match="from scratch"):
        get_derived("segment_cnn", {"cnn": "alexnet", "finetune_stages": 2})


def test_segment_cnn_features_are_the_pretrained_last_stage_on_the_float16_cut(emovo_set):
    logmels = emovo_set[0]["mid"][:3]
    frozen = _bound("segment_cnn", CNN, {"mel": MEL_SPEC})
    assert frozen.spec == FeatureSpec("frame", Layout.of(("unit", 1280)))
    features = frozen.compute_batch([{"mel": m} for m in logmels])
    for logmel, feats in zip(logmels, features):
        assert feats.shape == (len(segment_starts(len(logmel))), 1280) and feats.dtype == np.float32
        assert (feats >= 0).all() and (feats <= 6).all()  # ReLU6 then averaging
    # An utterance's rows do not depend on what it is computed with (a corpus chunk in training,
    # alone at inference): bit for bit.
    np.testing.assert_array_equal(frozen.compute({"mel": logmels[1]}), features[1])
    # finetune_stages: 1 stops before the last stage and gives its float16 input; the pretrained
    # last stage applied to it gives the frozen features exactly.
    trunk = _bound("segment_cnn", {**CNN, "finetune_stages": 1}, {"mel": MEL_SPEC})
    assert trunk.spec.layout.names == ("channel", "row", "col") and trunk.spec.layout.size("channel") == 320
    cut = trunk.compute({"mel": logmels[0]})
    assert cut.dtype == np.float16 and cut.shape == (len(features[0]), trunk.spec.dim)
    head = build_backbone("efficientnet_lite0", 1, 64).trainable
    with torch.no_grad():
        again = head(torch.from_numpy(cut.astype(np.float32)).reshape(len(cut), *trunk._cut_shape))
    np.testing.assert_array_equal(again.numpy(), features[0])
    # ... and they are the ImageNet network's penultimate activations (up to the float16 cut).
    from serkit.blocks.imagenet_cnn import load_efficientnet_lite0

    net = load_efficientnet_lite0()
    with torch.no_grad():
        images = Resize(64)(torch.from_numpy(segment_planes(logmels[0])))
        reference = net.extract_features(images).mean((2, 3)).numpy()
    np.testing.assert_allclose(features[0], reference, rtol=2e-2, atol=2e-2)
    assert np.corrcoef(features[0].ravel(), reference.ravel())[0, 1] > 0.9999


def test_segment_cnn_refuses_inputs_and_options_it_cannot_use():
    with pytest.raises(ConfigError, match="static log-Mel"):
        _bound("segment_cnn", CNN, {"mel": FeatureSpec("frame", Layout.of(("delta", 3), ("mel", 64)))})
    with pytest.raises(ConfigError, match="frame-level"):
        _bound("segment_cnn", CNN, {"mel": FeatureSpec("utterance", Layout.of(("mel", 64)))})
    with pytest.raises(ConfigError):
        get_derived("segment_cnn", {"segment_frames": 64, "segment_hop": 65})
    # The fine-tuned stages are those the segment_cnn left out: read from it, never restated.
    trunk = _bound("segment_cnn", {**CNN, "finetune_stages": 2}, {"mel": MEL_SPEC})
    head = _bound("finetuned_segment_cnn", {}, {"cut": trunk.spec})
    assert len(head._backbone.trainable) == len(trunk._backbone.trainable) and head._cnn.finetune_stages == 2
    frozen = _bound("segment_cnn", CNN, {"mel": MEL_SPEC})
    with pytest.raises(ConfigError, match="finetune_stages other than 0"):
        _bound("finetuned_segment_cnn", {}, {"cut": frozen.spec})
    for option in ("cnn", "finetune_stages"):
        with pytest.raises(ConfigError, match="unknown option"):
            get_derived("finetuned_segment_cnn", {option: CNN.get(option, 1)})


def test_a_silent_side_is_a_missing_row_left_out_of_the_statistics(emovo_root, tmp_path):
    """Through the pipeline: mono file -> zero segments -> an all-NaN pooled row -> not in the
    training statistics (the old model's fit_normaliser("global", vectors[present]))."""
    features = {
        "logmel_side": {"extractor": "logmel", "config": LOGMEL, "channel": "side"},
        "cnn_side": {"derive": "segment_cnn", "from": "logmel_side", "config": CNN},
        "side": {"derive": "temporal_pool", "from": "cnn_side"},
    }
    names = ["f1/rab-f1-b1", "f1/neu-f1-b1", "m1/rab-m1-b1", "m2/neu-m2-b1", "m1/neu-m1-b2"]
    table = pd.DataFrame({"utterance_id": [n.split("/")[1] for n in names],
                          "path": [str(emovo_root / f"{n}.flac") for n in names]})  # fmt: skip
    plan = FeaturePlan(features)
    pooled = plan.materialise(table, cache_dir=tmp_path, n_jobs=1, progress=False).features["side"]
    missing = np.isnan(pooled).all(axis=1)
    np.testing.assert_array_equal(missing, [True, True, False, False, False])
    assert not np.isnan(pooled[~missing]).any()
    scaler = fit_normaliser("global", pooled)
    present_only = fit_normaliser("global", pooled[~missing])
    np.testing.assert_array_equal(scaler.mean_, present_only.mean_)
    np.testing.assert_array_equal(scaler.std_, present_only.std_)
    standardised = scaler.transform(pooled)
    assert np.isnan(standardised[missing]).all()
    np.testing.assert_array_equal(standardised[~missing], present_only.transform(pooled[~missing]))
    # The cache serves the same rows (missing ones included) on a second pass.
    again = FeaturePlan(features).materialise(table, cache_dir=tmp_path, n_jobs=1, progress=False).features["side"]
    np.testing.assert_array_equal(np.isnan(again), np.isnan(pooled))
    np.testing.assert_array_equal(again[~missing], pooled[~missing])


# --------------------------------------------------------------------------- the fine-tuned segment CNN


class SpyFinetuned(DERIVED.get("finetuned_segment_cnn")):
    """Records the speakers and cut activations of every fit."""

    name = "spy_finetuned_segment_cnn"
    fits: ClassVar[list[dict]] = []

    def fit(self, X, y, *, labels, groups, seed, valid=None):
        (acts,) = X.values()
        super().fit(X, y, labels=labels, groups=groups, seed=seed, valid=valid)
        SpyFinetuned.fits.append({"speakers": set(groups.tolist()), "rows": {a.tobytes() for a in acts},
                                  "info": self.fit_info(), "net": self.net_})  # fmt: skip
        return self


DERIVED.register(SpyFinetuned)


def test_the_fine_tuned_cnn_is_fitted_on_training_speakers_only(manifest, tmp_path):
    SpyFinetuned.fits.clear()
    recipe = _on_manifest("recipes/binaural_finetune.yaml", manifest)
    keep = ("logmel_mid", "cut_mid", "cnn_mid", "mid")
    recipe["features"] = {k: recipe["features"][k] for k in keep}
    recipe["features"]["cut_mid"]["config"]["image_size"] = 64
    recipe["features"]["cnn_mid"].update(derive="spy_finetuned_segment_cnn")
    recipe["features"]["cnn_mid"]["config"].update(max_epochs=2, patience=1)  # its network: the trunk's, 64 px
    recipe["model"] = {"name": "linear_svm", "config": {"C": 0.01}}
    run = run_experiment(recipe, tmp_path / "run", progress=False)
    predictions = read_predictions(run / "predictions.csv")
    # Every utterance's cut activations, to know which rows belong to which speaker.
    plan = FeaturePlan({k: recipe["features"][k] for k in ("logmel_mid", "cut_mid")})
    table = pd.read_csv(manifest / "manifest.csv").assign(utterance_id=lambda t: [Path(p).stem for p in t["path"]])
    cuts = plan.materialise(table, n_jobs=1, progress=False).features["cut_mid"]
    rows_of = {uid: cuts[i].tobytes() for i, uid in enumerate(table["utterance_id"])}
    assert len(SpyFinetuned.fits) == len(MANIFEST_SPEAKERS)
    pretrained = build_backbone("efficientnet_lite0", 1, 64).trainable
    for fit, fold in zip(SpyFinetuned.fits, sorted(set(predictions["fold"]))):
        test = predictions[predictions["fold"] == fold]
        assert set(test["speaker"]) & fit["speakers"] == set()
        assert {rows_of[uid] for uid in test["utterance_id"]} & fit["rows"] == set()
        assert len(fit["rows"]) == len(table) - len(test)
        # Early stopping on one training speaker held out from the training segments.
        (valid,) = fit["info"]["valid_speakers"]
        assert valid in fit["speakers"] and valid not in set(test["speaker"])
        assert fit["info"]["segments"] + fit["info"]["valid_segments"] == sum(
            len(cuts[i]) for i, uid in enumerate(table["utterance_id"]) if rows_of[uid] in fit["rows"]
        )
        # The last stage was trained (its 1x1 convolution moved from the ImageNet weights).
        assert not torch.equal(fit["net"].trainable[0][0].weight, pretrained[0][0].weight)
    info = json.loads((run / "metrics.json").read_text())["extra"]["fit"]
    assert all(fold["derived"]["cnn_mid"]["epochs_run"] >= 1 for fold in info.values())


def test_alexnet_from_scratch_trains_every_stage(emovo_set):
    X, y, groups = emovo_set
    trunk = _bound("segment_cnn", {"cnn": "alexnet", "image_size": 64, "finetune_stages": -1}, {"mel": MEL_SPEC})
    assert trunk.spec.layout == Layout.of(("channel", 3), ("row", 64), ("col", 64))  # the image planes
    planes = trunk.compute_batch([{"mel": m} for m in X["mid"][:4]])
    np.testing.assert_allclose(planes[0].astype(np.float32).reshape(-1, 3, 64, 64), segment_planes(X["mid"][0]), atol=5e-3)
    config = {"max_epochs": 1, "valid_speakers": 0, "batch_size": 64}  # network and stages: the trunk's
    head = _bound("finetuned_segment_cnn", config, {"cut": trunk.spec})
    head.fit({"cut": planes}, y[:4], labels=["anger", "neutral"], groups=groups[:4], seed=0)
    assert head.spec.dim == 4096 and head.net_.trainable[-1][1].out_features == 4096  # fc7
    assert head.fit_info()["epochs_run"] == 1
    out = head.transform({"cut": planes[:2]})
    assert [o.shape for o in out] == [(len(p), 4096) for p in planes[:2]]


# --------------------------------------------------------------------------- score fusion (Sec. II-D, eq. 8-10)

# The weight search itself: tests/test_fusion.py. Here: the binaural recipe in an experiment.
LRMS = [["left", "right"], ["mid", "side"]]


class SpySVM(LinearSVM):
    """linear_svm recording the speakers and rows of every fit, and its out-of-fold scores."""

    name = "spy_svm"
    fits: ClassVar[list[dict]] = []

    def fit(self, X, y, **kwargs):
        super().fit(X, y, **kwargs)
        ((key, data),) = X.items()
        SpySVM.fits.append({"key": key, "speakers": set(np.asarray(kwargs["groups"]).tolist()), "n": len(data),
                            "oof": self.out_of_fold_proba(), "y": np.asarray(y)})  # fmt: skip
        return self


MODELS.register(SpySVM)


def test_score_fusion_weights_come_from_the_training_speakers_out_of_fold_scores(manifest, tmp_path):
    SpySVM.fits.clear()
    recipe = _on_manifest("recipes/binaural.yaml", manifest, "model.config.member.name=spy_svm",
                          "model.config.member.config.C=[0.01, 1.0]")  # fmt: skip
    for channel in VIEWS:
        recipe["features"][f"cnn_{channel}"]["config"]["image_size"] = 64
    run = run_experiment(recipe, tmp_path / "run", progress=False)
    predictions = read_predictions(run / "predictions.csv")
    info = json.loads((run / "metrics.json").read_text())["extra"]["fit"]
    folds = sorted(set(predictions["fold"]))
    assert len(SpySVM.fits) == 4 * len(folds)
    table = get_corpus("manifest").load(manifest)  # the experiment's row order
    silent_side = {s: int(((table["speaker"] == s) & table["path"].str.contains("f1/(?:neu|rab-f1-b1)")).sum()) for s in MANIFEST_SPEAKERS}
    for i, fold in enumerate(folds):
        test_speakers = set(predictions.loc[predictions["fold"] == fold, "speaker"])
        fits = {f["key"]: f for f in SpySVM.fits[4 * i : 4 * (i + 1)]}
        n_train = int((~table["speaker"].isin(test_speakers)).sum())
        for key, fit in fits.items():
            assert fit["speakers"] & test_speakers == set()  # nothing of a test speaker enters
            missing = sum(silent_side[s] for s in fit["speakers"]) if key == "side" else 0
            assert fit["n"] == n_train - missing  # trained where its input is present
        # The fold's weights are the search on exactly those out-of-fold scores.
        oof, present = {}, {}
        for key, fit in fits.items():
            rows = np.ones(n_train, bool)
            if key == "side" and fit["n"] < n_train:
                train_table = table[~table["speaker"].isin(test_speakers)]
                rows = ~train_table["path"].str.contains("f1/(?:neu|rab-f1-b1)").to_numpy()
            oof[key] = np.full((n_train, 2), np.nan)
            oof[key][rows] = fit["oof"]
            present[key] = rows
        expected = search_fusion(oof, fits["left"]["y"], LRMS, present)
        assert info[fold]["weights"] == {"left+right": expected.pairs[0], "mid+side": expected.pairs[1], "groups": expected.groups}
        assert info[fold]["groups"] == LRMS and set(info[fold]["members"]) == set(VIEWS)


# --------------------------------------------------------------------------- recipes and a bundle


@pytest.mark.parametrize(
    "name", ["binaural", "binaural_mid", "binaural_feature_fusion", "binaural_finetune", "binaural_alexnet", "binaural_emodb"]
)
def test_recipes_are_compositions_of_the_paper_steps(name):
    recipe = load_recipe(f"recipes/{name}.yaml")
    plan = FeaturePlan(recipe["features"])
    model = get_model(recipe["model"]["name"], recipe["model"]["config"])
    assert recipe["normalisation"] == "global"  # the pooled vectors are standardised on the training fold
    channels = [c for c in VIEWS if c in plan.outputs]
    # Mid alone, or every view (EmoDB's Side, silent in every file, is left out by the fusion itself).
    expected = {"binaural_mid": ["mid"]}.get(name, list(VIEWS))
    assert channels == plan.outputs == expected
    for channel in channels:
        chain, key = [], channel
        while plan.nodes[key].derived is not None:
            chain.append(plan.nodes[key].derived)
            (key,) = plan.nodes[key].inputs
        mel = plan.nodes[key]
        assert mel.channel == channel and mel.extractor.config.n_mels == 64 and mel.extractor.config.fmax == 8000
        names = [f.name for f in reversed(chain)]
        assert names in (["segment_cnn", "temporal_pool"], ["segment_cnn", "finetuned_segment_cnn", "temporal_pool"])
        if len(chain) == 3:  # the fine-tuned stages are the ones segment_cnn left out, read from it
            assert chain[1]._cnn == chain[2].config and chain[2].config.finetune_stages != 0
    if model.name == "score_fusion":
        assert check_groups(model.config.groups) == (("left", "right"), ("mid", "side"))


def test_a_binaural_bundle_labels_real_stereo_and_mono_recordings(manifest, emovo_root, tmp_path):
    recipe = _on_manifest("recipes/binaural.yaml", manifest, "model.config.member.config.C=[0.01, 1.0]")
    bundle = load_bundle(train_bundle(recipe, tmp_path / "bundle", progress=False))
    fusion = bundle.model
    assert bundle.meta["model"]["name"] == "score_fusion" and fusion.absent_ == []
    # Inference runs the training graph: a training recording's features equal the materialised ones.
    table = pd.read_csv(manifest / "manifest.csv").assign(utterance_id=lambda t: [Path(p).stem for p in t["path"]])
    stored = bundle.plan.materialise(table, n_jobs=1, progress=False).features
    i = table.index[table["path"].str.endswith("rab-m1-b2.flac")][0]
    feats = bundle.features(load_audio(table["path"][i]))
    for channel in VIEWS:
        np.testing.assert_array_equal(feats[channel], stored[channel][i])
    # An unseen stereo file and an unseen file with identical channels (Side silent).
    stereo, mono = (bundle.features(load_audio(emovo_root / n)) for n in ("f2/rab-f2-b1.flac", "f1/neu-f1-b3.flac"))
    assert not np.isnan(stereo["side"]).any() and np.isnan(mono["side"]).all()
    np.testing.assert_array_equal(mono["left"], mono["mid"])
    proba = bundle.predict([stereo, mono])
    assert proba.shape == (2, 2) and np.allclose(proba.sum(axis=1), 1)
    # The mono file's Mid-Side stage is Mid alone (eq. 9, the weight moved to Mid).
    inputs = {k: bundle.normalisers[k].transform(mono[k][None]) for k in VIEWS}
    scores, present = fusion.input_scores(inputs)
    assert not present["side"][0] and np.isnan(scores["side"]).all()
    (alpha, _), lam = fusion.weights_.pairs, fusion.weights_.groups
    stage1 = alpha * scores["left"] + (1 - alpha) * scores["right"]
    np.testing.assert_allclose(proba[1:], lam * stage1 + (1 - lam) * scores["mid"])
    assert all((tmp_path / "bundle" / "model" / f"member-{k}").is_dir() for k in range(4))
