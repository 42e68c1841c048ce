"""Small real model bundles of every kind serkit can save, for the bundle safety and fuzz tests.

Each kind is trained by :func:`serkit.experiment.train_bundle` on the same 12 real EmoDB
recordings (speakers 03, 08 and 10, anger and neutral, two of each) with networks small enough to
train in seconds. A bundle is built once per test process (:func:`bundle`) and copied by tests
that change it.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import pandas as pd
from conftest import SHARED

from serkit.experiment import train_bundle
from serkit.recipe import resolve_recipe

SPEAKERS = ("03", "08", "10")
LOGMEL = {"extractor": "logmel", "config": {"n_mels": 40}}
POOLED = {"derive": "pooled_stats", "from": "mel"}
SVM = {"name": "linear_svm", "config": {"C": [0.01, 1.0]}}
NET = {"max_epochs": 1, "valid_speakers": 0, "batch_size": 4, "device": "cpu"}
TINY_BLSTM_FCN = {"fcn_filters": [4, 8, 8], "lstm_hidden": 8, "lstm_layers": 1, "dnn_hidden": [8], "max_train_frames": 120, **NET}
SEGMENTS = {"extractor": "logmel", "config": {"n_mels": 64, "fmin": 20, "fmax": 8000, "filterbank": "librosa"}}

#: kind -> (features, model) of the recipe that trains it.
KINDS: dict[str, tuple[dict, dict]] = {
    "linear_svm": ({"mel": LOGMEL, "pooled": POOLED}, SVM),
    "linear_svm_select": ({"mel": LOGMEL, "pooled": POOLED},
                          {"name": "linear_svm", "config": {"C": [0.01, 1.0], "select": "stat", "windows": [1, 2]}}),
    "score_fusion": ({"mel": LOGMEL, "mean": {**POOLED, "config": {"stats": ["mean"]}},
                      "std": {**POOLED, "config": {"stats": ["std"]}}},
                     {"name": "score_fusion", "config": {"member": SVM}}),
    "msir": ({"logmel": {"extractor": "logmel", "config": {"n_mels": 40, "deltas": 1}}},
             {"name": "msir", "config": {"lld_key": None, "encoder_key": None, "conv_channels": [4, 8], "frame_fc": 8,
                                         "hidden": 8, "classifier": [8], **NET}}),
    "blstm_fcn": ({"logmel": LOGMEL}, {"name": "blstm_fcn", "config": TINY_BLSTM_FCN}),
    "emotion_ae": ({"spectrogram": {"extractor": "stft"}},
                   {"name": "emotion_ae", "config": {"functionals_key": None, "channels": 16, "bank_channels": 8,
                                                     "encoder_gru": 8, "decoder_gru": 8, "classifier": [16, 8], **NET}}),
    "pca": ({"mel": LOGMEL, "pooled": POOLED, "pca": {"derive": "pca", "from": "pooled", "config": {"components": 4}}}, SVM),
    "blstm_fcn_deep_spectrum": ({"mel": LOGMEL, "deep": {"derive": "blstm_fcn_deep_spectrum", "from": "mel",
                                                          "config": TINY_BLSTM_FCN}}, SVM),
    "finetuned_segment_cnn": ({"mel": SEGMENTS,
                               "cut": {"derive": "segment_cnn", "from": "mel", "config": {"image_size": 64, "finetune_stages": 1}},
                               "cnn": {"derive": "finetuned_segment_cnn", "from": "cut", "config": NET},
                               "pooled": {"derive": "temporal_pool", "from": "cnn"}}, SVM),
}

_ROOT: Path | None = None
_BUILT: dict[str, Path] = {}


def _root() -> Path:
    global _ROOT
    if _ROOT is None:
        _ROOT = Path(tempfile.mkdtemp(prefix="serkit-bundle-kinds-"))
        atexit.register(shutil.rmtree, _ROOT, True)
        wav = SHARED / "corpora" / "emodb" / "wav"
        rows = []
        for speaker in SPEAKERS:
            for code, label in (("W", "anger"), ("N", "neutral")):
                for path in sorted(wav.glob(f"{speaker}a0?{code}*.wav"))[:2]:
                    rows.append({"path": str(path), "label": label, "speaker": speaker})
        (_ROOT / "corpus").mkdir()
        pd.DataFrame(rows).to_csv(_ROOT / "corpus" / "manifest.csv", index=False)
    return _ROOT


def recipe(kind: str) -> dict:
    """The resolved recipe that trains ``kind`` on the 12 recordings."""
    features, model = KINDS[kind]
    raw = {"corpus": {"name": "manifest", "root": str(_root() / "corpus")}, "features": features, "model": model,
           "n_jobs": 1, "cache_dir": None, "normalisation": "global"}  # fmt: skip
    return resolve_recipe(raw, name=f"bundle-{kind}")


def bundle(kind: str) -> Path:
    """The bundle folder of ``kind`` (trained on first use in this process; do not change it: copy it)."""
    if kind not in _BUILT:
        _BUILT[kind] = train_bundle(recipe(kind), _root() / "bundles" / kind, progress=False)
    return _BUILT[kind]


def copy(kind: str, to: Path) -> Path:
    """A copy of the bundle of ``kind`` at ``to`` (a new folder), for tests that change it."""
    shutil.copytree(bundle(kind), to)
    return to


def rehash(bundle: Path) -> None:
    """Rewrite ``bundle.json``'s checksum list to match the folder, as someone who changed a file
    on purpose would (so the file's own reader, not the checksum, has to refuse it)."""
    meta = json.loads((bundle / "bundle.json").read_text())
    files = sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file() and p.name != "bundle.json")
    meta["files"] = {rel: hashlib.sha256((bundle / rel).read_bytes()).hexdigest() for rel in files}
    (bundle / "bundle.json").write_text(json.dumps(meta))
