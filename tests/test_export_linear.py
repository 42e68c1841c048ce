"""ONNX export of linear-model bundles (Whisper blocks + pooling + standardisation + classifier +
temperature): parity with ``Bundle.predict`` under onnxruntime on real EmoDB recordings."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch
from sklearn.svm import SVC

from serkit.audio import load_audio
from serkit.bundle import load_bundle
from serkit.experiment import train_bundle
from serkit.export import export_onnx
from serkit.features.whisper import whisper_log_mel, whisper_mel_filters
from serkit.recipe import resolve_recipe

CLASSES = {"W": "anger", "N": "neutral", "F": "happiness", "T": "sadness"}


@pytest.fixture(scope="module")
def manifest(emodb_root, tmp_path_factory):
    """48 EmoDB utterances: 4 speakers x 4 emotions x 3."""
    rows = []
    for speaker in ("03", "08", "09", "10"):
        for code, label in CLASSES.items():
            for path in sorted((emodb_root / "wav").glob(f"{speaker}*{code}?.wav"))[:3]:
                rows.append({"path": str(path), "label": label, "speaker": speaker})
    root = tmp_path_factory.mktemp("manifest")
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


def _bundle(manifest, tmp_path_factory, model: str, layer, select: bool) -> object:
    recipe = resolve_recipe({
        "corpus": {"name": "manifest", "root": str(manifest)},
        "features": {
            "encoder": {"extractor": "speech_encoder", "config": {"model": "whisper-tiny.en", "layer": layer}},
            "pooled": {"derive": "pooled_stats", "from": "encoder"},
        },
        "model": {"name": model, "config": {"C": 0.1, **({"select": "layer"} if select else {})}},
        "cache_dir": None,
        "n_jobs": 1,
    })  # fmt: skip
    out = tmp_path_factory.mktemp("bundle") / "model"
    return train_bundle(recipe, out, progress=False)


@pytest.mark.parametrize(
    ("model", "layer", "select"),
    [("logistic_regression", {"up_to": 2}, True), ("linear_svm", "all", True), ("linear_svm", 2, False)],
)
def test_onnx_graph_from_log_mel_equals_bundle_predict(manifest, tmp_path_factory, emodb_root, model, layer, select):
    folder = _bundle(manifest, tmp_path_factory, model, layer, select)
    result = export_onnx(folder, exporter="torchscript")
    assert result["inputs"] == ["log_mel"] and result["max_abs_diff"] < 1e-4
    bundle = load_bundle(folder)
    session = ort.InferenceSession(result["path"], providers=["CPUExecutionProvider"])
    filters = torch.from_numpy(whisper_mel_filters(80))
    # speakers the model never saw, and one it did
    for name in ("11a01Wc.wav", "11a02Tc.wav", "16b10Lb.wav", "03a01Wa.wav"):
        audio = load_audio(emodb_root / "wav" / name).resample(16000).downmix()
        mel = whisper_log_mel(audio.samples[0], filters).numpy()[None]
        got = session.run(["probabilities"], {"log_mel": mel})[0]
        want = bundle.predict([bundle.features(audio)])
        np.testing.assert_allclose(got, want, atol=2e-4)


def test_svm_one_vs_rest_values_follow_scikit_learn():
    """The graph's vote + squashed-confidence transform equals SVC's decision_function_shape='ovr'."""
    from types import SimpleNamespace

    from serkit.export_linear import _linear_head
    from serkit.features.normalise import Normaliser
    from serkit.models.svm import PairwiseLinear

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((200, 5)), rng.integers(0, 4, 200)
    svm = SVC(kernel="linear", C=1.0, decision_function_shape="ovr", break_ties=True).fit(X, y)
    model = SimpleNamespace(svm_=PairwiseLinear.from_estimator(svm), labels_=list("abcd"), columns_=None, temperature_=1.0)
    bundle = SimpleNamespace(model=model, normalisers={"f": Normaliser("none", 5)}, meta={"model": {"name": "linear_svm"}},
                             path="test")  # fmt: skip
    head = _linear_head(bundle, "f")
    with torch.no_grad():
        proba = head(torch.from_numpy(X.astype(np.float32))).numpy()
    want = torch.softmax(torch.from_numpy(svm.decision_function(X)), dim=1).numpy()
    np.testing.assert_allclose(proba, want, atol=1e-5)


def test_a_trained_bundle_runs_only_the_blocks_its_model_reads(manifest, tmp_path_factory, emodb_root):
    from serkit.features.normalise import Normaliser
    from serkit.pipeline import FeaturePlan

    folder = _bundle(manifest, tmp_path_factory, "logistic_regression", "all", True)
    bundle = load_bundle(folder)
    (extractor, _), = bundle.plan.extractors.values()
    block = bundle.meta["trained_on"]["fit"]["layer"]
    assert extractor.layers == tuple(range(int(block) + 1)) and extractor.n_blocks == int(block) < 4
    # The same model on the untrimmed graph (every layer extracted, columns and statistics in
    # the full layout) gives the same probabilities.
    full = FeaturePlan({**bundle.plan.recipe, "encoder": {**bundle.plan.recipe["encoder"], "config": {
        "model": "whisper-tiny.en", "layer": "all"}}})  # fmt: skip
    layout = full.layouts["pooled"]
    kept = layout.columns("layer", list(range(int(block) + 1)))
    norm = bundle.normalisers["pooled"]
    mean, std = np.zeros(layout.dim), np.ones(layout.dim)
    mean[kept], std[kept] = norm.mean_, norm.std_
    audio = load_audio(emodb_root / "wav" / "11a02Tc.wav")
    raw = full.compute_one(audio)["pooled"][None]
    model = bundle.model
    trimmed_columns, trimmed_widths = model.columns_, model.widths_
    assert trimmed_widths == [len(kept)] and model.input_widths() == {"pooled": len(kept)}
    model.columns_, model.widths_ = kept[trimmed_columns], [layout.dim]
    want = model.predict_proba({"pooled": Normaliser("global", layout.dim, mean_=mean, std_=std).transform(raw)})
    model.columns_, model.widths_ = trimmed_columns, trimmed_widths
    np.testing.assert_allclose(bundle.predict([bundle.features(audio)]), want, atol=1e-5)
