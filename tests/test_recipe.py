"""Recipes: defaults, overrides, validation, and round-tripping the saved config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from serkit.errors import ConfigError
from serkit.recipe import DEFAULTS, apply_override, load_recipe, resolve_recipe

REPO = Path(__file__).resolve().parents[1]
MINIMAL = {
    "features": {"f": {"extractor": "opensmile_functionals", "config": {"feature_set": "eGeMAPSv02"}}},
    "model": {"name": "linear_svm"},
}


def test_defaults_are_filled():
    recipe = resolve_recipe(MINIMAL, name="x")
    assert recipe["name"] == "x"
    assert recipe["protocol"] == {"name": "loso"}
    assert recipe["normalisation"] == "global"
    assert recipe["features"]["f"]["channel"] == "downmix"
    assert recipe["model"]["config"] == {}
    assert set(recipe) == set(DEFAULTS)


def test_overrides_parse_yaml_values_and_nested_keys():
    recipe = resolve_recipe(
        MINIMAL,
        overrides=["model.config.C=0.01", "protocol={name: lkgo, k: 5}", "normalisation=speaker", "cache_dir=null"],
    )
    assert recipe["model"]["config"]["C"] == 0.01
    assert recipe["protocol"] == {"name": "lkgo", "k": 5}
    assert recipe["normalisation"] == "speaker"
    assert recipe["cache_dir"] is None


def test_corpus_switch_drops_the_old_root():
    recipe = resolve_recipe(MINIMAL, corpus="emovo", root="/some/emovo")
    assert recipe["corpus"] == {"name": "emovo", "root": "/some/emovo", "options": {}}
    with pytest.raises(ConfigError, match="needs a root"):
        resolve_recipe(MINIMAL, corpus="emovo")


@pytest.mark.parametrize(
    "raw, overrides, message",
    [
        ({**MINIMAL, "modle": {}}, [], "unknown key"),
        ({"model": {"name": "linear_svm"}}, [], "features"),
        ({"features": MINIMAL["features"]}, [], "model needs a name"),
        (MINIMAL, ["normalisation=zscore"], "normalisation"),
        (MINIMAL, ["seed=abc"], "seed"),
        (MINIMAL, ["features.f.extracter=x"], "unknown key"),
        (MINIMAL, ["no_equals_sign"], "key=value"),
        (MINIMAL, ["seed.x=1"], "not a mapping"),
    ],
)
def test_invalid_recipes_are_refused(raw, overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve_recipe(raw, overrides=overrides)


def test_override_creates_missing_mappings():
    recipe = {"a": None}
    apply_override(recipe, "a.b.c=[1, 2]")
    assert recipe == {"a": {"b": {"c": [1, 2]}}}


@pytest.mark.parametrize("path", sorted((REPO / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_resolve_and_round_trip(path):
    # Recipes for licensed corpora (IEMOCAP) name no root: the user passes --root.
    corpus = (yaml.safe_load(path.read_text()).get("corpus") or {})
    recipe = load_recipe(path, root=None if corpus.get("root") or "name" not in corpus else "/licensed/corpus")
    assert recipe["name"] == path.stem
    # What a run saves as config.yaml must resolve to itself.
    assert resolve_recipe(yaml.safe_load(yaml.safe_dump(recipe))) == recipe


def test_unreadable_recipe(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_recipe(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("features: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(bad)
    bad.write_text("- a list")
    with pytest.raises(ConfigError, match="mapping"):
        load_recipe(bad)
