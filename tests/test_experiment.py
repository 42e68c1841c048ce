"""End to end on real EmoDB: experiment, report, model bundle, command line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import balanced_accuracy_score
from typer.testing import CliRunner

from serkit.audio import load_audio
from serkit.bundle import FORMAT_VERSION, load_bundle
from serkit.cli import app
from serkit.errors import BundleError, ConfigError, FeatureError
from serkit.evaluation.report import read_predictions
from serkit.experiment import prepare_dataset, run_experiment, train_bundle
from serkit.recipe import load_recipe, resolve_recipe

REPO = Path(__file__).resolve().parents[1]
SHIPPED_EMODB = REPO / "data" / "emodb"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("feature-cache")


@pytest.fixture(scope="module")
def egemaps(cache_dir) -> dict:
    """The shipped eGeMAPS + SVM recipe on the shipped EmoDB copy, with a test-local cache."""
    return load_recipe(
        REPO / "recipes" / "egemaps_svm.yaml",
        root=SHIPPED_EMODB,
        overrides=[f"cache_dir={cache_dir}", "n_jobs=2"],
    )


@pytest.fixture(scope="module")
def global_run(egemaps, tmp_path_factory) -> Path:
    return run_experiment(egemaps, tmp_path_factory.mktemp("runs") / "global", progress=False)


def test_loso_egemaps_reaches_the_independent_anchor(global_run):
    metrics = json.loads((global_run / "metrics.json").read_text())
    # DESIGN.md anchor: eGeMAPS + linear SVM, EmoDB LOSO, global standardisation: UA 0.667.
    assert 0.62 <= metrics["ua"] <= 0.72
    assert metrics["protocol"]["speaker_independent"] is True
    assert metrics["protocol"]["normalisation"] == "global"
    assert metrics["n_utterances"] == 535
    assert len(metrics["folds"]) == 10


def test_speaker_normalisation_reaches_its_anchor(egemaps, tmp_path):
    recipe = resolve_recipe(egemaps, overrides=["normalisation=speaker"])
    metrics = json.loads((run_experiment(recipe, tmp_path / "spk", progress=False) / "metrics.json").read_text())
    # Anchor: 0.793 UA with per-speaker standardisation.
    assert 0.75 <= metrics["ua"] <= 0.84


def test_predictions_are_speaker_independent_and_match_metrics(global_run):
    pred = read_predictions(global_run / "predictions.csv")
    assert len(pred) == 535 and pred["utterance_id"].is_unique
    # Every utterance is tested in the fold that holds out its own speaker.
    assert (pred["fold"] == "speaker-" + pred["speaker"]).all()
    metrics = json.loads((global_run / "metrics.json").read_text())
    assert metrics["ua"] == pytest.approx(balanced_accuracy_score(pred["true"], pred["predicted"]))
    proba = pred[[f"p_{lab}" for lab in metrics["labels"]]].to_numpy()
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert (np.array(metrics["labels"])[proba.argmax(axis=1)] == pred["predicted"]).all()


def test_saved_config_reruns_to_the_same_result(global_run, tmp_path):
    config = yaml.safe_load((global_run / "config.yaml").read_text())
    again = run_experiment(resolve_recipe(config), tmp_path / "again", progress=False)
    first = read_predictions(global_run / "predictions.csv")
    second = read_predictions(again / "predictions.csv")
    pd.testing.assert_frame_equal(first, second)


def test_interrupted_run_resumes_to_the_uninterrupted_result(egemaps, global_run, tmp_path, count_folds):
    out = tmp_path / "run"
    count_folds(3)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(egemaps, out, progress=False)
    # No run folder, only the two finished folds.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.folds"]
    assert sorted(p.name for p in (tmp_path / "run.folds").iterdir()) == ["speaker-03.npz", "speaker-08.npz"]
    # Starting again without --resume would silently drop them: refused.
    with pytest.raises(ConfigError, match="resume"):
        run_experiment(egemaps, out, progress=False)

    calls = count_folds(0)
    resumed = run_experiment(egemaps, out, progress=False, resume=True)
    assert calls["n"] == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    pd.testing.assert_frame_equal(read_predictions(resumed / "predictions.csv"), read_predictions(global_run / "predictions.csv"))
    extra = json.loads((resumed / "metrics.json").read_text())["extra"]
    assert extra["resumed_folds"] == ["speaker-03", "speaker-08"]
    assert set(extra["fold_cost"]) == set(extra["fit"]) and len(extra["fold_cost"]) == 10
    assert all(cost["wall_s"] > 0 and cost["peak_rss_mib"] > 0 for cost in extra["fold_cost"].values())


def test_resume_refuses_folds_of_another_recipe(egemaps, tmp_path, count_folds):
    count_folds(2)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(egemaps, tmp_path / "run", progress=False)
    other = resolve_recipe(egemaps, overrides=["normalisation=speaker"])
    with pytest.raises(ConfigError, match="speaker-03.npz was made by a different recipe"):
        run_experiment(other, tmp_path / "run", progress=False, resume=True)
    # How many workers extract features is not part of the result: the fold is reused.
    moved = resolve_recipe(egemaps, overrides=["n_jobs=1"])
    calls = count_folds(1)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(moved, tmp_path / "run", progress=False, resume=True)
    assert calls["n"] == 1  # speaker-03 was reused, speaker-08 was the first fold fitted
    # Without resume, overwrite starts again: speaker-03 is fitted anew.
    calls = count_folds(1)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(other, tmp_path / "run", progress=False, overwrite=True)
    assert calls["n"] == 1 and not (tmp_path / "run.folds").exists()


@pytest.mark.parametrize("damage", ["truncated", "empty", "not a zip"])
def test_a_damaged_fold_checkpoint_is_refused_by_name(tmp_path, damage):
    from serkit.experiment import FoldCheckpoints, FoldResult

    checkpoints = FoldCheckpoints(tmp_path / "run", {"name": "x"})
    checkpoints.save("speaker-03", ["a", "b"], FoldResult(np.full((2, 3), 1 / 3), {"best_epoch": np.int64(4)}, {"wall_s": 1.0}))
    path = checkpoints.dir / "speaker-03.npz"
    assert checkpoints.load("speaker-03", ["a", "b"]).info == {"best_epoch": 4}
    raw = path.read_bytes()
    path.write_bytes({"truncated": raw[: len(raw) // 2], "empty": b"", "not a zip": b"RIFF....WAVE"}[damage])
    with pytest.raises(ConfigError, match="speaker-03.npz: unreadable fold checkpoint"):
        checkpoints.load("speaker-03", ["a", "b"])


def test_an_existing_run_folder_is_refused_before_any_work(egemaps, global_run, monkeypatch):
    import serkit.experiment as experiment

    def must_not_run(*args, **kwargs):
        raise AssertionError("features extracted although the run could never be written")

    monkeypatch.setattr(experiment, "prepare_dataset", must_not_run)
    with pytest.raises(ConfigError, match="already exists"):
        run_experiment(egemaps, global_run, progress=False)


def _manifest_with_bad_files(root: Path, emodb: Path) -> Path:
    """Three real EmoDB speakers plus one corrupt and one empty file, as a CSV manifest."""
    rows = []
    for path in sorted((emodb / "wav").glob("*.flac")):
        if path.name[:2] in {"03", "08", "09"}:
            rows.append({"path": str(path), "speaker": path.name[:2], "label": path.name[5]})
    (root / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage")
    (root / "empty.wav").write_bytes(b"")
    rows.append({"path": "corrupt.wav", "speaker": "03", "label": "W"})
    rows.append({"path": "empty.wav", "speaker": "08", "label": "N"})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


def test_bad_files_are_reported_and_the_run_goes_on(egemaps, tmp_path):
    (tmp_path / "corpus").mkdir()
    root = _manifest_with_bad_files(tmp_path / "corpus", SHIPPED_EMODB)
    recipe = resolve_recipe(egemaps, corpus="manifest", root=root)
    run = run_experiment(recipe, tmp_path / "run", progress=False)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_utterances"] == 49 + 58 + 43
    failed = {f["utterance_id"]: f for f in metrics["failures"]}
    assert set(failed) == {"corrupt", "empty"}
    assert "corrupt.wav" in failed["corrupt"]["path"]
    assert "corrupt" in (run / "report.md").read_text()


def test_a_corpus_with_no_usable_file_is_refused(egemaps, tmp_path):
    for name in ("a.wav", "b.wav"):
        (tmp_path / name).write_bytes(b"RIFF....WAVEnot audio")
    pd.DataFrame({"path": ["a.wav", "b.wav"], "speaker": ["s1", "s2"], "label": ["x", "y"]}).to_csv(
        tmp_path / "manifest.csv", index=False
    )
    recipe = resolve_recipe(egemaps, corpus="manifest", root=tmp_path)
    with pytest.raises(FeatureError, match="no utterance of manifest could be processed"):
        run_experiment(recipe, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def bundle_dir(egemaps, tmp_path_factory) -> Path:
    return train_bundle(egemaps, tmp_path_factory.mktemp("models") / "egemaps", progress=False)


def test_bundle_reproduces_the_training_features_and_describes_itself(bundle_dir, egemaps):
    bundle = load_bundle(bundle_dir)
    meta = bundle.meta
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["labels"] == ["anger", "boredom", "disgust", "fear", "happiness", "neutral", "sadness"]
    assert meta["features"]["functionals"]["sample_rate"] == 16000
    assert meta["normalisers"]["functionals"]["mode"] == "global"
    assert meta["trained_on"]["n_utterances"] == 535
    # The inference path (file -> Audio -> features) gives the training path's features.
    data = prepare_dataset(egemaps, progress=False)
    for i in (0, 200, 534):
        feats = bundle.features(load_audio(data.table["path"][i]))
        assert np.allclose(feats["functionals"], data.features["functionals"][i], rtol=1e-5, atol=1e-5)


def test_bundle_fits_its_training_data(bundle_dir, egemaps):
    bundle = load_bundle(bundle_dir)
    data = prepare_dataset(egemaps, progress=False)
    paths = data.table["path"][::25].tolist()
    proba = bundle.predict([bundle.features(load_audio(p)) for p in paths])
    truth = data.table["label"][::25].tolist()
    accuracy = np.mean([bundle.labels[k] == t for k, t in zip(proba.argmax(axis=1), truth)])
    assert accuracy >= 0.8  # training-set accuracy of a linear SVM on 88 functionals


def test_broken_bundles_are_refused(bundle_dir, tmp_path):
    with pytest.raises(BundleError, match="no bundle.json"):
        load_bundle(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(bundle_dir, copy)
    meta = json.loads((copy / "bundle.json").read_text())
    meta["format_version"] = 999
    (copy / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="v999"):
        load_bundle(copy)
    meta["format_version"] = FORMAT_VERSION
    (copy / "bundle.json").write_text(json.dumps(meta))
    (copy / "model" / "weights.safetensors").unlink()
    with pytest.raises(BundleError, match="weights.safetensors: missing"):
        load_bundle(copy)


runner = CliRunner()


def test_cli_predict_reports_bad_files_and_goes_on(bundle_dir, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    good = SHIPPED_EMODB / "wav" / "03a01Wa.flac"
    # Both forms name the model: `--model DIR` and a bundle folder as the first argument.
    for args in (["predict", str(good), str(bad), "--model", str(bundle_dir)], ["predict", str(bundle_dir), str(good), str(bad)]):
        result = runner.invoke(app, [*args, "--json"])
        assert result.exit_code == 1
        rows = json.loads(result.stdout)
        assert rows[0]["file"] == str(good) and rows[0]["label"] in load_bundle(bundle_dir).labels
        assert sum(rows[0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
        assert rows[1]["file"] == str(bad) and "cannot decode" in rows[1]["error"]


def test_cli_corpus_info_counts(emodb_root):
    result = runner.invoke(app, ["corpus", "info", "emodb", "--root", str(emodb_root), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["utterances"] == 535
    assert summary["per_label"]["anger"] == 127 and summary["per_speaker"]["16"] == 71


def test_cli_errors_are_clear(tmp_path):
    recipe = REPO / "recipes" / "egemaps_svm.yaml"
    result = runner.invoke(app, ["experiment", str(recipe), "--set", "normalisation=zscore", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "normalisation must be global, speaker or none" in result.output
    result = runner.invoke(app, ["corpus", "info", "emodb", "--root", str(tmp_path)])
    assert result.exit_code == 2 and "EmoDB" in result.output
    assert not (tmp_path / "x").exists()


def test_temperature_fitted_on_training_speakers_lowers_ece_on_held_out_speakers(egemaps, tmp_path):
    from serkit.evaluation.metrics import calibration_metrics

    runs = {}
    for calibrate in ("true", "false"):
        recipe = resolve_recipe(egemaps, overrides=["model.name=logistic_regression", f"model.config.calibrate={calibrate}"])
        runs[calibrate] = run_experiment(recipe, tmp_path / calibrate, progress=False)
    calibrated, raw = (json.loads((runs[c] / "metrics.json").read_text()) for c in ("true", "false"))
    pred = read_predictions(runs["true"] / "predictions.csv")
    labels = calibrated["labels"]
    y = pred["true"].map({lab: k for k, lab in enumerate(labels)}).to_numpy()
    assert calibrated["calibration"] == calibration_metrics(pred[[f"p_{lab}" for lab in labels]].to_numpy(), y)
    assert raw["ua"] == pytest.approx(calibrated["ua"])  # scaling never changes a decision
    # Every test utterance is from a speaker the temperature never saw (it was fitted on the
    # training speakers' out-of-fold logits); raw logistic regression is overconfident there.
    assert calibrated["calibration"]["ece"] < raw["calibration"]["ece"]
    assert calibrated["calibration"]["nll"] < raw["calibration"]["nll"]
    assert calibrated["calibration"]["mean_confidence"] < raw["calibration"]["mean_confidence"]
