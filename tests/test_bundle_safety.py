"""Model bundles are safe to load: nothing in them runs, every file is checksummed, and their
parts must agree with each other (issue 25, items 1 and 2).

Every bundle kind serkit can save is trained on real EmoDB recordings (:mod:`bundle_kinds`).
A crafted pickle whose unpickling creates a marker file is put in place of each file, with and
without the checksum list rewritten to match, and under the names older serkit used (``.joblib``,
``.pt``): loading refuses every one with a :class:`BundleError`, and the marker never appears.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import bundle_kinds
import numpy as np
import pytest
from typer.testing import CliRunner

from serkit.audio import load_audio
from serkit.bundle import FORMAT_VERSION, load_bundle
from serkit.cli import app
from serkit.errors import BundleError, FeatureError
from serkit.models.svm import LinearSVM

runner = CliRunner()


class _Payload:
    """Unpickling this creates the file ``marker``: what a crafted ``svm.joblib`` could do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _payload(marker: Path) -> bytes:
    data = pickle.dumps(_Payload(marker))
    pickle.loads(data).close()  # the payload is live: loading it runs code ...
    assert marker.exists()
    marker.unlink()  # ... and the tests below show serkit never loads it
    return data


def _edit_meta(bundle: Path, edit) -> None:
    meta = json.loads((bundle / "bundle.json").read_text())
    edit(meta)
    (bundle / "bundle.json").write_text(json.dumps(meta))


def _said(result) -> str:
    """The command's output as one line (the console wraps long messages at its width)."""
    return result.output.replace("\n", "")


def _files(bundle: Path) -> list[str]:
    return sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file() and p.name != "bundle.json")


@pytest.mark.parametrize("kind", sorted(bundle_kinds.KINDS))
def test_a_crafted_pickle_in_any_file_of_any_bundle_kind_never_runs(kind, tmp_path):
    original = bundle_kinds.bundle(kind)
    loaded = load_bundle(original)
    # What a bundle holds: JSON and safetensors files only, each listed with its SHA-256.
    files = _files(original)
    assert files == sorted(loaded.meta["files"]) and all(f.endswith((".json", ".safetensors")) for f in files)
    assert all(not (original / f).read_bytes().startswith((b"\x80", b"PK")) for f in files)  # no pickle, no torch zip
    marker = tmp_path / "marker"
    payload = _payload(marker)
    for i, rel in enumerate(files):
        for rehash in (False, True):
            bundle = bundle_kinds.copy(kind, tmp_path / f"b{i}-{rehash}")
            (bundle / rel).write_bytes(payload)
            if rehash:
                bundle_kinds.rehash(bundle)
            with pytest.raises(BundleError, match=rel.split("/")[-1]):
                load_bundle(bundle)
            assert not marker.exists()
    # The names older serkit used, listed and hashed: refused, never opened.
    for name in ("model/svm.joblib", "model/module.pt", "derived/x/head.pt", "model/state.pkl"):
        bundle = bundle_kinds.copy(kind, tmp_path / f"old-{Path(name).stem}")
        (bundle / name).parent.mkdir(parents=True, exist_ok=True)
        (bundle / name).write_bytes(payload)
        bundle_kinds.rehash(bundle)
        with pytest.raises(BundleError, match="not a file a bundle holds"):
            load_bundle(bundle)
        assert not marker.exists()


def test_serkit_predict_refuses_a_tampered_bundle_in_one_line(tmp_path, emodb_file):
    marker = tmp_path / "marker"
    bundle = bundle_kinds.copy("linear_svm", tmp_path / "bundle")
    (bundle / "model" / "weights.safetensors").write_bytes(_payload(marker))
    for args in (["predict", str(bundle), str(emodb_file)], ["predict", str(emodb_file), "--model", str(bundle)]):
        result = runner.invoke(app, [*args, "--no-vad", "--json"])
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert "weights.safetensors: SHA-256 differs" in _said(result)
        assert not marker.exists()


def test_a_bundle_of_format_v1_is_refused_with_how_to_rebuild_it(tmp_path):
    marker = tmp_path / "marker"
    bundle = bundle_kinds.copy("linear_svm", tmp_path / "old")
    (bundle / "model" / "weights.safetensors").unlink()
    (bundle / "model" / "svm.joblib").write_bytes(_payload(marker))
    _edit_meta(bundle, lambda m: (m.update(format_version=1, serkit_version="0.0.9"), m.pop("files")))
    with pytest.raises(BundleError, match=r"format v1 .*serkit train RECIPE --out NEW_DIR"):
        load_bundle(bundle)
    result = runner.invoke(app, ["predict", "--model", str(bundle), str(bundle / "bundle.json")])
    assert result.exit_code == 2 and "serkit train" in _said(result) and "Traceback" not in result.output
    assert not marker.exists()


def _changed_byte(bundle: Path) -> None:
    path = bundle / "model" / "weights.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: (b / "model" / "weights.safetensors").unlink(), r"model/weights.safetensors: missing"),
        (lambda b: (b / "notes.txt").write_text("hi"), r"notes.txt: not listed in bundle.json"),
        (lambda b: (b / "model" / "extra.json").write_text("{}"), r"model/extra.json: not listed"),
        (_changed_byte, r"model/weights.safetensors: SHA-256 differs"),
        (lambda b: (b / "model" / "state.json").write_text(""), r"model/state.json: SHA-256 differs"),
        (lambda b: os.symlink("/etc/hostname", b / "model" / "link.json"), r"model/link.json: a link or special file"),
        (lambda b: _edit_meta(b, lambda m: m.pop("files")), r"bundle.json: field 'files' is missing"),
        (lambda b: _edit_meta(b, lambda m: m["files"].update({"../x": "0" * 64})), r"'\.\./x', not a relative path"),
        (lambda b: (b / "bundle.json").write_text("{not json"), r"bundle.json: not valid JSON"),
        (lambda b: (b / "bundle.json").write_text('{"format": NaN}'), r"bundle.json: not valid JSON"),
        (lambda b: (b / "bundle.json").write_bytes(b"\xff\xfe"), r"bundle.json: not valid JSON"),
    ],
)
def test_every_file_is_checked_against_the_list_before_any_is_read(damage, message, tmp_path):
    bundle = bundle_kinds.copy("linear_svm", tmp_path / "bundle")
    damage(bundle)
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not a safetensors array file"),  # an empty model file
        (None, "not a safetensors array file"),  # a truncated one
        (b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":1}", "not a safetensors array file"),
    ],
)
def test_empty_truncated_or_garbage_model_files_are_one_line_errors(content, message, tmp_path, emodb_file):
    bundle = bundle_kinds.copy("linear_svm", tmp_path / "bundle")
    path = bundle / "model" / "weights.safetensors"
    path.write_bytes(path.read_bytes()[:100] if content is None else content)
    bundle_kinds.rehash(bundle)
    with pytest.raises(BundleError, match=f"weights.safetensors: {message}"):
        load_bundle(bundle)
    result = runner.invoke(app, ["predict", "--model", str(bundle), str(emodb_file), "--no-vad"])
    assert result.exit_code == 2 and "Traceback" not in result.output and message in _said(result)


@pytest.mark.parametrize(
    "state, message",
    [
        ("garbage", "model/state.json: not valid JSON"),
        ("[1, 2]", "model/state.json: must hold a JSON object"),
        ('{"labels": ["anger", "neutral"]}', "model/state.json: field 'inputs' is missing"),
    ],
)
def test_garbage_state_json_is_a_bundle_error_naming_the_file(state, message, tmp_path):
    bundle = bundle_kinds.copy("linear_svm", tmp_path / "bundle")
    (bundle / "model" / "state.json").write_text(state)
    bundle_kinds.rehash(bundle)
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle)


def _state(bundle: Path, edit) -> None:
    path = bundle / "model" / "state.json"
    state = json.loads(path.read_text())
    edit(state)
    path.write_text(json.dumps(state))
    bundle_kinds.rehash(bundle)


def _recipe_rate(meta: dict) -> None:
    meta["recipe"]["features"]["mel"]["config"]["sample_rate"] = 8000


def _narrow(meta: dict) -> None:
    norm = meta["normalisers"]["pooled"]
    norm.update(dim=40, mean=norm["mean"][:40], std=norm["std"][:40])


@pytest.mark.parametrize(
    "edit, message",
    [
        # labels cut, extended, reversed: count and order are the model's own
        (lambda m: m.update(labels=m["labels"][:1]), "field 'labels' must be a list of at least two"),
        (lambda m: m.update(labels=[*m["labels"], "joy"]), r"field 'labels' lists 3 classes .* fitted on 2 classes"),
        (lambda m: m.update(labels=m["labels"][::-1]), r"field 'labels' lists 2 classes \['neutral', 'anger'\]"),
        # the sample rate: of the description, or of the recipe's extractor
        (lambda m: m["features"]["mel"].update(sample_rate=8000), r"field 'features.mel.sample_rate' is 8000"),
        (_recipe_rate, r"field 'features.mel.config' is .* the recipe's extractor has"),
        # a normaliser of another width than the feature
        (_narrow, r"field 'normalisers.pooled.dim' is 40, the input 'pooled' has 80 columns"),
        (lambda m: m["normalisers"]["pooled"]["std"].__setitem__(0, 0.0), r"normalisers.pooled: field 'std' must be"),
        (lambda m: m["inputs"]["pooled"].update(layout=[["dim", 80]]), r"field 'inputs.pooled' is"),
        (lambda m: m["model"].update(name="msir"), r"field 'model.config': msir: unknown option"),
        (lambda m: m["model"]["config"].update(C="high"), r"field 'model.config': linear_svm: C must be"),
        (lambda m: m.update(format_version=3), r"bundle format 'serkit-model-bundle' v3"),
    ],
)
def test_bundle_parts_that_disagree_are_refused(edit, message, tmp_path):
    bundle = bundle_kinds.copy("linear_svm", tmp_path / "bundle")
    _edit_meta(bundle, edit)
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.update(labels=["neutral", "anger"]), r"field 'labels' lists 2 classes \['anger', 'neutral'\], the model"),
        (lambda s: s.update(widths=[81]), r"weights.safetensors: coef has 80 columns, the model reads 81"),
        (lambda s: s.update(temperature=-1), r"state.json: field 'temperature' must be a number > 0"),
        (lambda s: s.update(columns=[5, 3]), r"state.json: field 'columns' must be null or ascending"),
    ],
)
def test_a_model_state_that_disagrees_with_its_arrays_or_the_bundle_is_refused(edit, message, tmp_path):
    bundle = bundle_kinds.copy("linear_svm", tmp_path / "bundle")
    _state(bundle, edit)
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle)


def test_a_network_description_that_does_not_fit_its_tensors_allocates_nothing(tmp_path):
    bundle = bundle_kinds.copy("blstm_fcn", tmp_path / "bundle")
    path = bundle / "model" / "module.json"
    state = json.loads(path.read_text())
    state["layouts"]["logmel"] = [["mel", 10**9]]  # a network of 10^9 inputs would not fit in memory
    path.write_text(json.dumps(state))
    bundle_kinds.rehash(bundle)
    with pytest.raises(BundleError, match="module.safetensors: tensor .* has shape"):
        load_bundle(bundle)


def test_the_predict_path_never_gives_nan_and_json_output_stays_valid(tmp_path, emodb_file, monkeypatch):
    bundle = load_bundle(bundle_kinds.bundle("linear_svm"))
    features = [bundle.features(load_audio(emodb_file))]
    assert np.isfinite(bundle.predict(features)).all()
    monkeypatch.setattr(LinearSVM, "predict_proba", lambda self, X: np.full((1, 2), np.nan))
    with pytest.raises(FeatureError, match="no valid probabilities"):
        bundle.predict(features)
    command = ["predict", "--model", str(bundle.path), str(emodb_file), "--no-vad", "--json"]
    # Labelled file by file, the file is reported and skipped ...
    result = runner.invoke(app, [*command, "--adapt", "none"])
    assert result.exit_code == 1
    rows = json.loads(result.stdout, parse_constant=lambda name: pytest.fail(f"{name} in JSON output"))
    assert rows == [{"file": str(emodb_file), "error": rows[0]["error"]}] and "no valid probabilities" in rows[0]["error"]
    # ... and labelled as one call (adapted to the batch), each file of the call is reported the same way.
    result = runner.invoke(app, command)
    assert result.exit_code == 1
    again = json.loads(result.stdout, parse_constant=lambda name: pytest.fail(f"{name} in JSON output"))
    assert again == rows


def test_the_service_answers_a_model_that_gives_nan_with_a_valid_json_error(emodb_file, monkeypatch):
    from fastapi.testclient import TestClient

    from serkit.inference import InferenceConfig, Recognizer
    from serkit.service import create_app

    recognizer = Recognizer(bundle_kinds.bundle("linear_svm"), InferenceConfig(vad=False))
    client = TestClient(create_app(recognizer), raise_server_exceptions=False)
    upload = {"file": ("x.wav", emodb_file.read_bytes(), "audio/wav")}
    assert client.post("/v1/recognize", files=upload).status_code == 200
    monkeypatch.setattr(LinearSVM, "predict_proba", lambda self, X: np.full((len(X["pooled"]), 2), np.nan))
    response = client.post("/v1/recognize", files=upload)
    assert response.status_code == 422
    body = json.loads(response.text, parse_constant=lambda name: pytest.fail(f"{name} in JSON output"))
    assert body["error"] == "unusable_audio" and "no valid probabilities" in body["message"]


def test_the_model_argument_is_never_guessed_from_a_folder_that_holds_audio(tmp_path, emodb_file):
    bundle = bundle_kinds.copy("linear_svm", tmp_path / "bundle")
    # A folder holding only a bundle, first: it is the model.
    result = runner.invoke(app, ["predict", str(bundle), str(emodb_file), "--no-vad", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["label"] in ("anger", "neutral")
    # Alone: there is nothing to label.
    result = runner.invoke(app, ["predict", str(bundle)])
    assert result.exit_code == 2 and "name the recordings to label after it" in _said(result)
    # A downloaded folder of recordings that also holds a bundle.json: neither guessed.
    mixed = tmp_path / "downloads"
    mixed.mkdir()
    (mixed / "bundle.json").write_text((bundle / "bundle.json").read_text())
    (mixed / "talk.wav").write_bytes(emodb_file.read_bytes())
    result = runner.invoke(app, ["predict", str(mixed), str(emodb_file), "--no-vad"])
    assert result.exit_code == 2 and "holds a model bundle (bundle.json) and audio files" in _said(result)
    # Named with --model it is what the user says, and then refused: the bundle's files are missing.
    result = runner.invoke(app, ["predict", "--model", str(mixed), str(emodb_file), "--no-vad"])
    assert result.exit_code == 2 and "not listed in bundle.json" in _said(result)


def test_the_shipped_model_is_a_checked_v2_bundle():
    from serkit.inference import DEFAULT_MODEL

    bundle = load_bundle(DEFAULT_MODEL)
    assert bundle.meta["format_version"] == FORMAT_VERSION
    assert _files(DEFAULT_MODEL) == ["README.md", "model/state.json", "model/weights.safetensors"]
    assert bundle.digest == hashlib.sha256((DEFAULT_MODEL / "bundle.json").read_bytes()).hexdigest()
