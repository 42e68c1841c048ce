"""Run folders: contents equal the metrics, CSV round-trip, atomicity, overwrite rules."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.image import imread

import serkit.evaluation.report as report
from serkit.errors import ConfigError
from serkit.evaluation import compute_metrics, make_folds, read_predictions, summarise_folds, write_run
from serkit.io import atomic_write_text

CODES = {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happiness", "T": "sadness", "N": "neutral"}
LABELS = list(CODES.values())


@pytest.fixture(scope="module")
def emodb_table(emodb_root: Path) -> pd.DataFrame:
    """EmoDB table from the real file names (speaker = chars 1-2, emotion = char 6)."""
    stems = sorted(p.stem for p in (emodb_root / "wav").glob("*.wav"))
    return pd.DataFrame(
        {
            "utterance_id": stems,
            "path": "",
            "speaker": [s[:2] for s in stems],
            "session": [s[:2] for s in stems],
            "gender": "",
            "label": [CODES[s[5]] for s in stems],
            "duration": 0.0,
        }
    )


def fake_predictions(table: pd.DataFrame, protocol, seed: int = 0) -> pd.DataFrame:
    """Per-fold predictions of a noisy classifier that favours the true class."""
    rng = np.random.default_rng(seed)
    frames = []
    for fold in protocol.folds:
        rows = table.iloc[fold.test]
        scores = rng.gamma(1.0, 1.0, (len(rows), len(LABELS)))
        scores[np.arange(len(rows)), [LABELS.index(t) for t in rows["label"]]] += 1.5
        probs = scores / scores.sum(axis=1, keepdims=True)
        frame = pd.DataFrame(
            {
                "utterance_id": rows["utterance_id"].to_numpy(),
                "speaker": rows["speaker"].to_numpy(),
                "fold": fold.name,
                "true": rows["label"].to_numpy(),
                "predicted": [LABELS[i] for i in probs.argmax(axis=1)],
            }
        )
        for j, lab in enumerate(LABELS):
            frame[f"p_{lab}"] = probs[:, j]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


CONFIG = {
    "name": "emodb-svm-test",
    "corpus": {"name": "emodb", "root": Path("/data/emodb")},
    "features": [{"name": "egemaps", "level": "functionals"}],
    "normalisation": "speaker",
    "model": {"name": "svm", "C": np.float64(0.01), "class_weight": "balanced"},
    "protocol": {"name": "loso"},
    "seed": np.int64(0),
}


@pytest.fixture(scope="module")
def loso_run(emodb_table, tmp_path_factory):
    protocol = make_folds(emodb_table, "loso")
    predictions = fake_predictions(emodb_table, protocol)
    out = tmp_path_factory.mktemp("runs") / "loso"
    failures = [{"utterance_id": "99z99Xx", "error": "unreadable audio"}]
    path = write_run(out, config=CONFIG, predictions=predictions, labels=LABELS, protocol=protocol.describe(),
                     extra={"failures": failures, "seconds": 1.5})
    return path, predictions


def test_run_folder_holds_every_file_and_nothing_else(loso_run):
    path, _ = loso_run
    assert sorted(p.name for p in path.iterdir()) == sorted(report.FILES)
    assert not [p for p in path.parent.iterdir() if ".partial-" in p.name or ".old-" in p.name]


def test_metrics_json_equals_compute_metrics(loso_run, emodb_table):
    path, predictions = loso_run
    metrics = json.loads((path / "metrics.json").read_text())
    pooled = compute_metrics(predictions["true"], predictions["predicted"], LABELS)
    for key in ("ua", "wa", "macro_f1", "per_class", "confusion", "labels"):
        assert metrics[key] == pooled[key]
    assert metrics["n_utterances"] == 535 == sum(sum(r) for r in metrics["confusion"]["counts"])
    assert len(metrics["folds"]) == 10
    for fold in metrics["folds"]:
        rows = predictions[predictions["fold"] == fold["fold"]]
        assert fold["test_speakers"] == sorted(rows["speaker"].unique())
        assert fold["ua"] == compute_metrics(rows["true"], rows["predicted"], LABELS)["ua"]
    assert [f["test_speakers"][0] for f in metrics["folds"]] == sorted(emodb_table["speaker"].unique())
    assert metrics["fold_mean"] == summarise_folds(metrics["folds"])
    assert metrics["protocol"]["speaker_independent"] is True
    assert metrics["protocol"]["normalisation"] == "speaker"  # taken from the config
    assert metrics["detection"]["anger"]["confusion"][1][1] == metrics["confusion"]["counts"][0][0]
    assert metrics["failures"][0]["utterance_id"] == "99z99Xx"
    assert metrics["extra"] == {"seconds": 1.5}


def test_predictions_csv_and_config_round_trip(loso_run):
    path, predictions = loso_run
    back = read_predictions(path / "predictions.csv")
    pd.testing.assert_frame_equal(back, predictions, check_exact=True)
    assert back["speaker"].iloc[0] == "03"  # ids stay strings, leading zero kept
    config = yaml.safe_load((path / "config.yaml").read_text())
    assert config["corpus"]["root"] == "/data/emodb"
    assert config["model"]["C"] == 0.01 and config["seed"] == 0
    assert list(config) == list(CONFIG)


def test_report_md_and_png(loso_run):
    path, _ = loso_run
    metrics = json.loads((path / "metrics.json").read_text())
    text = (path / "report.md").read_text()
    assert f"{100 * metrics['ua']:.2f}" in text
    fm = metrics["fold_mean"]
    assert f"{100 * fm['mean']['ua']:.2f} ± {100 * fm['std']['ua']:.2f}" in text
    assert "SPEAKER-DEPENDENT" not in text
    assert "99z99Xx" in text and "speaker-16" in text
    counts_row = "| anger | " + " | ".join(map(str, metrics["confusion"]["counts"][0])) + " |"
    assert counts_row in text
    image = imread(path / "confusion.png")
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200


def test_kfold_report_warns_speaker_dependent(emodb_table, tmp_path):
    protocol = make_folds(emodb_table, {"name": "kfold", "k": 5})
    predictions = fake_predictions(emodb_table, protocol, seed=1)
    path = write_run(
        tmp_path / "kfold", config={"name": "kf"}, predictions=predictions, labels=LABELS, protocol=protocol
    )
    text = (path / "report.md").read_text()
    assert "SPEAKER-DEPENDENT" in text
    assert json.loads((path / "metrics.json").read_text())["protocol"]["speaker_independent"] is False


def test_failure_midway_leaves_nothing(emodb_table, tmp_path, monkeypatch):
    protocol = make_folds(emodb_table, "loso")
    predictions = fake_predictions(emodb_table, protocol)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full while plotting")

    monkeypatch.setattr(report, "plot_confusion", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_run(tmp_path / "run", config={}, predictions=predictions, labels=LABELS, protocol=protocol)
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_unless_asked(emodb_table, tmp_path):
    protocol = make_folds(emodb_table, "loso")
    predictions = fake_predictions(emodb_table, protocol)
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("previous run")
    with pytest.raises(ConfigError, match="not empty"):
        write_run(out, config={}, predictions=predictions, labels=LABELS, protocol=protocol)
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    write_run(out, config={}, predictions=predictions, labels=LABELS, protocol=protocol, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == sorted(report.FILES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_bad_predictions_are_rejected_before_writing(emodb_table, tmp_path):
    protocol = make_folds(emodb_table, "loso")
    predictions = fake_predictions(emodb_table, protocol)
    cases = [
        predictions.drop(columns=["p_fear"]),
        pd.concat([predictions, predictions.iloc[:1]], ignore_index=True),
        predictions.assign(predicted="calm"),
        predictions.assign(p_anger=np.nan),
    ]
    for bad in cases:
        with pytest.raises(ConfigError):
            write_run(tmp_path / "run", config={}, predictions=bad, labels=LABELS, protocol=protocol)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_text_keeps_old_content_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    atomic_write_text(target, "first")
    assert target.read_text() == "first"
    atomic_write_text(target, "second")
    assert target.read_text() == "second"

    def crash(fd):
        raise OSError("power cut")

    monkeypatch.setattr("serkit.io.os.fsync", crash)
    with pytest.raises(OSError, match="power cut"):
        atomic_write_text(target, "third, never complete")
    assert target.read_text() == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_atomic_write_gives_the_permissions_of_a_plain_write(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "atomic.json", "{}")
        (tmp_path / "plain.json").write_text("{}")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "atomic.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.json").stat().st_mode) == 0o666 & ~umask
