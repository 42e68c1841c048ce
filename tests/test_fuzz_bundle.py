"""Fuzzing (hypothesis): model bundles and recipes fail only in documented ways.

Bundles: every file of a real bundle of every kind (:mod:`bundle_kinds`), ``bundle.json``
included, gets random bytes, byte edits (flips, overwrites, cuts, insertions) or, for JSON files,
edits of its structure (a value replaced by another of any JSON type, a key deleted), with the
checksum list left alone or rewritten to match. :func:`load_bundle` must load the bundle or raise
a :class:`BundleError`; a bundle that loads must label a real recording with finite
probabilities or refuse it with a :class:`FeatureError` or :class:`AudioError`.

Recipes: the shipped recipes get the same kinds of edits, as text and as YAML structure;
:func:`load_recipe` and :func:`~serkit.experiment.check_recipe` (every component built) must
accept the recipe or raise a :class:`ConfigError`.

Runs are derandomised, so CI sees the same examples every time.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import bundle_kinds
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serkit.audio import load_audio
from serkit.bundle import load_bundle
from serkit.errors import AudioError, BundleError, ConfigError, FeatureError
from serkit.experiment import check_recipe
from serkit.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {"deadline": None, "derandomize": True,
            "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]}  # fmt: skip

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 300) | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def _paths(value, prefix=()):
    """Every path (tuple of keys / indices) to a value inside parsed JSON or YAML, the root excluded."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


@st.composite
def structural_edit(draw, data):
    """``data`` (parsed JSON or YAML) with one value replaced or one key deleted."""
    paths = list(_paths(data))
    if not paths:
        return draw(json_values)
    *parent_path, last = draw(st.sampled_from(paths))
    parent = data
    for key in parent_path:
        parent = parent[key]
    if isinstance(parent, dict) and draw(st.booleans()):
        del parent[last]
    else:
        parent[last] = draw(json_values)
    return data


@st.composite
def byte_edit(draw, data: bytes) -> bytes:
    """``data`` with a few random flips, overwrites, cuts and insertions, or random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=256))
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "overwrite", "truncate", "insert"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[pos : pos + len(chunk)] = chunk
        elif kind == "truncate":
            del data[pos:]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


@pytest.fixture(scope="module")
def clip(emodb_file):
    """One second of a real EmoDB recording (what a bundle that loads is asked to label)."""
    return load_audio(emodb_file).slice(0.0, 1.0)


def _fuzz_bundle(kind: str, data, tmp_path: Path, clip) -> None:
    bundle = tmp_path / "bundle"
    shutil.rmtree(bundle, ignore_errors=True)
    bundle_kinds.copy(kind, bundle)
    files = sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file())
    rel = data.draw(st.sampled_from(files), label="file")
    path = bundle / rel
    if rel.endswith(".json") and data.draw(st.booleans(), label="structural"):
        edited = data.draw(structural_edit(json.loads(path.read_text())), label="edit")
        path.write_text(json.dumps(edited))
    else:
        path.write_bytes(data.draw(byte_edit(path.read_bytes()), label="bytes"))
    if rel != "bundle.json" and data.draw(st.booleans(), label="rehash"):
        bundle_kinds.rehash(bundle)
    try:
        loaded = load_bundle(bundle)
    except BundleError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    try:
        proba = loaded.predict([loaded.features(clip)])
    except (FeatureError, AudioError):
        return
    assert proba.shape == (1, len(loaded.labels)) and np.all(np.isfinite(proba)) and np.isclose(proba.sum(), 1.0)


@pytest.mark.parametrize("kind", sorted(set(bundle_kinds.KINDS) - {"finetuned_segment_cnn"}))
@settings(max_examples=25, **SETTINGS)
@given(data=st.data())
def test_edited_bundles_load_or_raise_a_bundle_error(kind, data, tmp_path, clip):
    _fuzz_bundle(kind, data, tmp_path, clip)


@settings(max_examples=8, **SETTINGS)
@given(data=st.data())
def test_edited_finetuned_cnn_bundles_load_or_raise_a_bundle_error(data, tmp_path, clip):
    # Fewer examples: each load rebuilds the ImageNet backbone the fine-tuned stages sit on.
    _fuzz_bundle("finetuned_segment_cnn", data, tmp_path, clip)


RECIPES = ["egemaps_svm", "encoder_svm", "encoder_compare_fusion", "msir", "blstm_fcn_svm", "emotion_ae", "default_model"]


@pytest.mark.parametrize("name", RECIPES)
@settings(max_examples=40, **SETTINGS)
@given(data=st.data())
def test_edited_recipes_load_or_raise_a_config_error(name, data, tmp_path):
    text = (REPO / "recipes" / f"{name}.yaml").read_text()
    if data.draw(st.booleans(), label="structural"):
        edited = yaml.safe_dump(data.draw(structural_edit(yaml.safe_load(text)), label="edit"))
        (tmp_path / "r.yaml").write_text(edited)
    else:
        (tmp_path / "r.yaml").write_bytes(data.draw(byte_edit(text.encode()), label="bytes"))
    try:
        recipe = load_recipe(tmp_path / "r.yaml")
        check_recipe(recipe)
    except ConfigError as exc:
        assert str(exc)
        return
    assert set(recipe["features"]) and recipe["model"]["name"]
