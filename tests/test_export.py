"""ONNX export of neural model bundles: parity with PyTorch under onnxruntime on real EmoDB features."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from plans import plan_of
from torch import nn
from typer.testing import CliRunner

from serkit.audio import load_audio
from serkit.blocks.sequences import length_mask
from serkit.bundle import load_bundle, save_bundle
from serkit.cli import app
from serkit.features import get_extractor
from serkit.features.normalise import fit_normaliser
from serkit.inference import DEFAULT_MODEL
from serkit.models.base import register
from serkit.models.network import TorchSERModel
from serkit.training.trainer import TrainConfig


class TwoInputNet(nn.Module):
    """BiLSTM over frame features with masked mean pooling, joined with an utterance vector."""

    def __init__(self, frame_dim: int, utt_dim: int, n_classes: int):
        super().__init__()
        self.lstm = nn.LSTM(frame_dim, 8, batch_first=True, bidirectional=True)
        self.out = nn.Linear(16 + utt_dim, n_classes)

    def forward(self, batch):
        x, lengths = batch["mel"], batch["mel_lengths"]
        h, _ = self.lstm(x)
        mask = length_mask(lengths, x.shape[1]).unsqueeze(-1).float()
        pooled = (h * mask).sum(1) / lengths[:, None].float()
        return self.out(torch.cat([pooled, batch["func"]], dim=1))


@dataclass(frozen=True)
class OnnxTestConfig(TrainConfig):
    max_epochs: int = 2
    valid_speakers: int = 0
    device: str = "cpu"


@register
class OnnxTestNet(TorchSERModel):
    name = "onnx_test_net"
    Config = OnnxTestConfig

    def build(self, layouts, n_classes):
        return TwoInputNet(layouts["mel"].dim, layouts["func"].dim, n_classes)


@pytest.fixture(scope="module")
def files(emodb_root):
    return sorted((emodb_root / "wav").glob("03a*.wav"))[:8]


@pytest.fixture(scope="module")
def neural_bundle(files, tmp_path_factory):
    """A small TorchSERModel fitted on real EmoDB log-Mel + eGeMAPS features and saved as a bundle."""
    extractors = {"mel": (get_extractor("logmel"), "downmix"),
                  "func": (get_extractor("opensmile_functionals", {"feature_set": "eGeMAPSv02"}), "downmix")}
    audio = [load_audio(f) for f in files]
    raw = {key: [ex.extract(a.resample(ex.sample_rate)) for a in audio] for key, (ex, _) in extractors.items()}
    raw["func"] = np.stack(raw["func"])
    speakers = np.array(["03"] * len(files))
    normalisers = {key: fit_normaliser("global", data, speakers) for key, data in raw.items()}
    X = {key: normalisers[key].transform(data, speakers) for key, data in raw.items()}
    labels = sorted({f.name[5] for f in files})
    y = np.array([labels.index(f.name[5]) for f in files])
    model = OnnxTestNet().fit(X, y, labels=labels, groups=speakers, seed=0)
    out = tmp_path_factory.mktemp("neural") / "bundle"
    save_bundle(out, recipe={}, labels=labels, plan=plan_of(extractors), fitted={}, normalisers=normalisers, model=model,
                trained_on={"corpus": "emodb", "n_utterances": len(files)})
    return out


def test_cli_export_matches_pytorch_on_real_features(neural_bundle, emodb_root, tmp_path):
    target = tmp_path / "net.onnx"
    # The TorchScript exporter takes seconds; the default torch.export path takes a minute on two
    # busy cores and runs the same parity check inside export_onnx before it writes anything.
    result = CliRunner().invoke(app, ["export", str(neural_bundle), "--onnx", "--out", str(target),
                                      "--exporter", "torchscript"])
    assert result.exit_code == 0, result.output
    assert "torchscript exporter" in result.output
    proto = onnx.load(str(target))
    onnx.checker.check_model(proto)
    meta = {p.key: p.value for p in proto.metadata_props}
    bundle = load_bundle(neural_bundle)
    assert meta["serkit_labels"] == str(bundle.labels).replace("'", '"')
    # Unseen recordings of other speakers, of different lengths, through the bundle's own path.
    others = [load_audio(p) for p in sorted((emodb_root / "wav").glob("1[05]a0*.wav"))[:5]]
    feats = [bundle.features(a) for a in others]
    want = bundle.predict(feats)
    speakers = np.array(["x"] * len(feats))
    X = {"mel": bundle.normalisers["mel"].transform([f["mel"] for f in feats], speakers),
         "func": bundle.normalisers["func"].transform(np.stack([f["func"] for f in feats]), speakers)}
    batch = bundle.model.make_batch(X, np.arange(len(feats)), train=False, rng=np.random.default_rng(0))
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(batch)
    got = session.run(["probabilities"], {k: v.numpy() for k, v in batch.items()})[0]
    assert got.shape == want.shape == (5, len(bundle.labels))
    np.testing.assert_allclose(got, want, atol=1e-5)
    # One utterance at a time (batch of one, no padding) gives the same numbers.
    single = bundle.model.make_batch(X, np.array([2]), train=False, rng=np.random.default_rng(0))
    np.testing.assert_allclose(session.run(["probabilities"], {k: v.numpy() for k, v in single.items()})[0][0],
                               want[2], atol=1e-5)


def test_the_shipped_model_exports_whole_and_matches_serkit_predict(tmp_path, emodb_root):
    """The default model (Whisper blocks + pooling + standardisation + logistic regression +
    temperature) as one graph from log-Mel, against `serkit predict` on real recordings."""
    import json

    from serkit.features.whisper import whisper_log_mel, whisper_mel_filters

    result = CliRunner().invoke(app, ["export", str(DEFAULT_MODEL), "--onnx", "--out", str(tmp_path / "x.onnx")])
    assert result.exit_code == 0, result.output
    session = ort.InferenceSession(str(tmp_path / "x.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["log_mel"]
    files = [emodb_root / "wav" / name for name in ("03a01Wa.wav", "11a02Tc.wav", "16b10Lb.wav")]
    args = ["predict", "--model", str(DEFAULT_MODEL), *map(str, files), "--json", "--no-vad", "--window", "30",
            "--hop", "30", "--adapt", "none"]  # fmt: skip
    predicted = json.loads(CliRunner().invoke(app, args).stdout)
    labels = load_bundle(DEFAULT_MODEL).labels
    filters = torch.from_numpy(whisper_mel_filters(80))
    for path, row in zip(files, predicted, strict=True):
        audio = load_audio(path).resample(16000).downmix()
        mel = whisper_log_mel(audio.samples[0], filters).numpy()[None]
        got = session.run(["probabilities"], {"log_mel": mel})[0][0]
        (window,) = row["windows"]
        np.testing.assert_allclose(got, [window["probabilities"][lab] for lab in labels], atol=2e-4)
    result = CliRunner().invoke(app, ["export", str(DEFAULT_MODEL)])
    assert result.exit_code == 2 and "--onnx" in result.output
