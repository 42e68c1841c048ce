"""Recipes: defaults, overrides, validation, and round-tripping the saved config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from serkit.errors import ConfigError
from serkit.models.base import get_model
from serkit.pipeline import FeaturePlan
from serkit.recipe import DEFAULTS, apply_override, load_recipe, read_recipe_mapping, resolve_recipe

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


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.config.C=high"], r"recipe: model: linear_svm: C must be a finite number or a list"),
        (["model.config.C=-1"], r"linear_svm: C must be a number > 0 or a non-empty list of them, got -1"),
        (["model.config.C=[]"], r"linear_svm: C must be a number > 0 or a non-empty list of them, got \[\]"),
        (["model.config.C=[0.1, .nan]"], r"linear_svm: C must be"),
        (["model.config.class_weight=even"], r"class_weight must be one of 'balanced', None"),
        (["model={name: blstm_fcn, config: {learning_rate: fast}}"], r"blstm_fcn: learning_rate must be a finite number"),
        (["model={name: msir, config: {kernel: [5]}}"], r"msir: kernel must be a list of 2 items"),
        (["model={name: emotion_ae, config: {device: gpu}}"], r"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
        (["model={name: score_fusion, config: {member: {name: linear_svm, config: {C: high}}}}"], r"linear_svm: C must be"),
        (["features.f.config.feature_set=eGeMAPS"], r"recipe: features: features.f: .*feature_set must be one of"),
        (["features.p={derive: pca, from: f, config: {components: many}}"], r"pca: components must be an integer"),
        (["features.f.channel=centre"], r"channel must be one of"),
        (["protocol={name: loso, k: 3}"], r"recipe: protocol: protocol loso: unknown option"),
        (["corpus.name=emodbx"], r"recipe: corpus: unknown corpus 'emodbx'"),
        (["n_jobs=0"], r"n_jobs must be a positive integer or -1"),
        (["features.f.config=[1]"], r"features.f.config must be a mapping"),
    ],
)
def test_every_component_is_checked_before_any_work(overrides, message):
    from serkit.experiment import check_recipe

    with pytest.raises(ConfigError, match=message):
        check_recipe(resolve_recipe(MINIMAL, overrides=overrides))


def test_a_bad_option_stops_the_command_before_any_feature_is_extracted(tmp_path):
    from typer.testing import CliRunner

    from serkit.cli import app

    for command, value in (("experiment", "high"), ("experiment", "-1"), ("train", "[]")):
        result = CliRunner().invoke(app, [command, str(REPO / "recipes" / "egemaps_svm.yaml"), "--out", str(tmp_path / "out"),
                                          "--set", f"model.config.C={value}", "--set", f"cache_dir={tmp_path / 'cache'}"])
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert "linear_svm: C must be" in result.output.replace("\n", "")
        assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()  # nothing was extracted


def test_override_creates_missing_mappings():
    recipe = {"a": None}
    apply_override(recipe, "a.b.c=[1, 2]")
    assert recipe == {"a": {"b": {"c": [1, 2]}}}


@pytest.mark.parametrize(
    "path", sorted((REPO / "recipes").rglob("*.yaml")), ids=lambda p: str(p.relative_to(REPO / "recipes"))
)
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


# --------------------------------------------------------------------------- base: one recipe extends another


def _write(path: Path, mapping: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(mapping, sort_keys=False))
    return path


def test_base_is_deep_merged_and_the_extending_file_wins(tmp_path):
    _write(tmp_path / "full.yaml", {
        **MINIMAL,
        "model": {"name": "linear_svm", "config": {"C": [0.01, 0.1], "class_weight": "balanced"}},
        "protocol": {"name": "lkgo", "k": 5},
        "seed": 3,
    })
    _write(tmp_path / "variants" / "small.yaml", {"base": "../full.yaml", "model": {"config": {"C": [1.0]}}})
    _write(tmp_path / "variants" / "smaller.yaml", {"base": "small.yaml", "protocol": {"k": 2}, "seed": 4})
    recipe = load_recipe(tmp_path / "variants" / "smaller.yaml", overrides=["normalisation=speaker"])
    assert recipe["model"] == {"name": "linear_svm", "config": {"C": [1.0], "class_weight": "balanced"}}
    assert recipe["protocol"] == {"name": "lkgo", "k": 2}
    assert recipe["seed"] == 4 and recipe["normalisation"] == "speaker"
    assert recipe["name"] == "smaller"
    # What a run saves holds the merged result, not the base: it re-runs on its own.
    assert "base" not in recipe
    assert resolve_recipe(yaml.safe_load(yaml.safe_dump(recipe))) == recipe
    assert read_recipe_mapping(tmp_path / "variants" / "small.yaml")["seed"] == 3


def test_base_cycles_missing_files_and_bad_values_are_refused(tmp_path):
    _write(tmp_path / "a.yaml", {**MINIMAL, "base": "b.yaml"})
    _write(tmp_path / "b.yaml", {"base": "c.yaml"})
    _write(tmp_path / "c.yaml", {"base": "b.yaml"})
    with pytest.raises(ConfigError, match=r"cycle: .*b\.yaml -> .*c\.yaml -> .*b\.yaml"):
        load_recipe(tmp_path / "a.yaml")
    _write(tmp_path / "self.yaml", {**MINIMAL, "base": "self.yaml"})
    with pytest.raises(ConfigError, match="cycle"):
        load_recipe(tmp_path / "self.yaml")
    _write(tmp_path / "orphan.yaml", {**MINIMAL, "base": "../nowhere/full.yaml"})
    with pytest.raises(ConfigError, match=r"orphan\.yaml: base '../nowhere/full\.yaml' is not a recipe file"):
        load_recipe(tmp_path / "orphan.yaml")
    _write(tmp_path / "listed.yaml", {**MINIMAL, "base": ["a.yaml"]})
    with pytest.raises(ConfigError, match="listed.yaml: base must be a recipe file path"):
        load_recipe(tmp_path / "listed.yaml")
    (tmp_path / "broken.yaml").write_text("features: [unclosed")
    _write(tmp_path / "on_broken.yaml", {"base": "broken.yaml"})
    with pytest.raises(ConfigError, match=r"broken\.yaml: not valid YAML"):
        load_recipe(tmp_path / "on_broken.yaml")
    with pytest.raises(ConfigError, match="load_recipe"):
        resolve_recipe({**MINIMAL, "base": "x.yaml"})


# --------------------------------------------------------------------------- reduced recipes

# The CPU-budget settings of docs/results_*.md, as the runs applied them (see the recipes' headers).
MSIR_REDUCTION = {
    "model.config.max_epochs": 30,
    "model.config.patience": 6,
    "model.config.conv_channels": [32, 64],
    "model.config.frame_fc": 256,
}
MSIR_LOSS = {
    "ce": {"model.config.loss": "cross_entropy"},
    "fl": {"model.config.loss": "focal", "model.config.zeta": 0.25, "model.config.theta": 2.0},
}
BLSTM_FCN_REDUCTION = {
    "model.config.fcn_filters": [16, 32, 32],
    "model.config.lstm_hidden": 64,
    "model.config.max_train_frames": 300,
    "model.config.batch_size": 32,
    "model.config.max_epochs": 30,
    "model.config.patience": 6,
}
EMOTION_AE_REDUCTION = {
    "model.config.channels": 64,
    "model.config.bank_channels": 16,
    "model.config.encoder_gru": 32,
    "model.config.decoder_gru": 64,
    "model.config.max_epochs": 12,
    "model.config.patience": 4,
    "n_jobs": 1,
}
REDUCED = sorted((REPO / "recipes" / "reduced").glob("*.yaml"))


def _flat(value, prefix=""):
    if isinstance(value, dict) and value:
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}{key}.").items()}
    return {prefix[:-1]: value}


def _reduction(stem: str) -> dict:
    if stem.startswith("msir"):
        return {**MSIR_REDUCTION, **MSIR_LOSS[stem.rsplit("_", 1)[1]]}
    if stem == "blstm_fcn_svm":  # the network is the derived feature the SVM reads
        return {key.replace("model.config", "features.deep_spectrum.config"): v for key, v in BLSTM_FCN_REDUCTION.items()}
    if stem.startswith("blstm_fcn"):
        return BLSTM_FCN_REDUCTION
    if stem.startswith("emotion_ae"):
        return EMOTION_AE_REDUCTION
    raise AssertionError(f"{stem}: no stated reduction for this family")


def test_there_are_reduced_recipes_for_every_reduced_system():
    families = {path.stem.split("_")[0] for path in REDUCED}
    assert families == {"msir", "blstm", "emotion"}


@pytest.mark.parametrize("path", REDUCED, ids=lambda p: p.stem)
def test_reduced_recipe_differs_from_its_base_only_in_the_stated_reduction(path):
    reduction = _reduction(path.stem)
    raw = yaml.safe_load(path.read_text())
    base = (path.parent / raw.pop("base")).resolve()
    assert base.parent == REPO / "recipes"  # it extends a full recipe
    # The file states the reduction and nothing else ...
    assert _flat(raw) == reduction
    reduced, full = _flat(load_recipe(path)), _flat(load_recipe(base))
    # ... so the resolved recipes differ in those keys (and the run name) only.
    changed = {key for key in reduced.keys() | full.keys() if reduced.get(key) != full.get(key)}
    assert changed <= set(reduction) | {"name"}
    assert {key: reduced[key] for key in reduction} == reduction
    # Every reduced option is one the model and the features know (a misspelt one would be refused).
    spec = load_recipe(path)
    get_model(spec["model"]["name"], spec["model"]["config"])
    FeaturePlan(spec["features"])


def test_reduced_msir_without_focal_loss_is_the_full_recipe_with_cross_entropy():
    # The runs "msir-ce" were made from recipes/msir.yaml with the loss switched; the reduced recipe
    # extends recipes/msir_wo_fl.yaml instead, which must be the same system.
    reduced = load_recipe(REPO / "recipes" / "reduced" / "msir_ce.yaml")
    as_run = load_recipe(
        REPO / "recipes" / "msir.yaml",
        overrides=[f"{key}={value}" for key, value in {**MSIR_REDUCTION, **MSIR_LOSS["ce"]}.items()],
    )
    assert {**reduced, "name": None} == {**as_run, "name": None}
