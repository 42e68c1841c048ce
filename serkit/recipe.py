"""Recipes: an experiment described as data.

A recipe is a YAML mapping. Every key has a default except ``features`` and ``model``::

    name: compare_svm                  # run name (default: the file's stem)
    corpus: {name: emodb, root: data/emodb, options: {}}
    features:                          # key -> extractor, or derived feature of other keys
      functionals: {extractor: opensmile_functionals, config: {feature_set: ComParE_2016},
                    channel: downmix}
      # encoder: {extractor: speech_encoder, config: {layer: all}}
      # pooled:  {derive: pooled_stats, from: encoder, config: {stats: [mean, std]}}
    model: {name: linear_svm, config: {C: [0.0001, 0.001, 0.01, 0.1, 1.0]}}
    protocol: {name: loso}             # see serkit.evaluation.protocols
    normalisation: global              # global | speaker | none
    seed: 0
    cache_dir: .cache/serkit           # null switches the feature cache off
    n_jobs: -1                         # processes for feature extraction (-1: all cores)
    cluster: null                      # Dask scheduler address; null: SERKIT_CLUSTER or local

A recipe file may extend another one: ``base: ../msir.yaml`` (a path relative to the file that
names it) takes that recipe's mapping and merges this file's mapping into it, key by key through
nested mappings (this file wins; a list or any other value replaces the base's whole). The base
may itself name a base. ``base`` never reaches the resolved recipe: the run's ``config.yaml``
holds the merged result, so it re-runs without the files it came from.

:func:`load_recipe` follows ``base``, fills the defaults, applies command-line overrides and
validates the result; the resolved recipe is what a run saves as ``config.yaml`` and re-runs
from.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from serkit.errors import ConfigError

DEFAULTS: dict[str, Any] = {
    "name": None,
    "corpus": {"name": "emodb", "root": "data/emodb", "options": {}},
    "features": None,
    "model": None,
    "protocol": {"name": "loso"},
    "normalisation": "global",
    "seed": 0,
    "cache_dir": ".cache/serkit",
    "n_jobs": -1,
    # Where the work runs (serkit.cluster): a Dask scheduler address, "local", or null
    # (the environment variable SERKIT_CLUSTER, else local). Never part of a result.
    "cluster": None,
}
FEATURE_KEYS = {"extractor", "config", "channel"}
DERIVED_KEYS = {"derive", "from", "config"}
BASE_KEY = "base"


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_override(recipe: dict[str, Any], assignment: str) -> None:
    """Apply one ``dotted.key=value`` override in place; the value is parsed as YAML.

    ``model.config.C=0.01`` sets a float, ``protocol={name: kfold, k: 5}`` a mapping.

    Raises:
        ConfigError: no ``=``, an empty key, or a path through a non-mapping.
    """
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} is not of the form key=value")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {assignment!r} has an empty key")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {assignment!r}: value is not valid YAML ({exc})") from exc
    node = recipe
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {assignment!r}: {part!r} is not a mapping")
        node = child
    node[parts[-1]] = value


def resolve_recipe(
    raw: Mapping[str, Any],
    *,
    name: str | None = None,
    corpus: str | None = None,
    root: str | Path | None = None,
    overrides: Iterable[str] = (),
) -> dict[str, Any]:
    """Defaults + ``raw`` + ``--corpus``/``--root`` + ``--set`` overrides, validated.

    Raises:
        ConfigError: unknown top-level key, missing ``features`` or ``model``, malformed entry,
            or a ``base`` key (only :func:`load_recipe` can follow it: it is relative to a file).
    """
    if BASE_KEY in raw:
        raise ConfigError(
            f"recipe: {BASE_KEY!r} names a file relative to the recipe file; load the recipe with load_recipe(path)"
        )
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"recipe: unknown key(s) {unknown}; known: {sorted(DEFAULTS)}")
    recipe = _merge(DEFAULTS, raw)
    if corpus is not None:
        # A different corpus does not inherit the recipe corpus's root or options.
        if corpus != recipe["corpus"].get("name"):
            recipe["corpus"] = {"name": corpus, "root": None, "options": {}}
    if root is not None:
        recipe["corpus"]["root"] = str(root)
    for assignment in overrides:
        apply_override(recipe, assignment)
    if recipe["name"] is None:
        recipe["name"] = name or "run"
    _validate(recipe)
    return recipe


def load_recipe(path: str | Path, **kwargs: Any) -> dict[str, Any]:
    """Read a recipe YAML file, follow its ``base`` chain and :func:`resolve_recipe` it.

    Args:
        path: the recipe file. Its stem is the run name unless the recipe (or a base) sets one.
        **kwargs: ``corpus``, ``root`` and ``overrides`` as in :func:`resolve_recipe`.

    Raises:
        ConfigError: an unreadable file or invalid YAML (the message names the file), a base
            that is missing or not a path (names the file that asks for it and the path), a cycle
            of bases (names every file in it), or an invalid recipe.
    """
    path = Path(path)
    return resolve_recipe(read_recipe_mapping(path), name=path.stem, **kwargs)


def read_recipe_mapping(path: str | Path) -> dict[str, Any]:
    """The mapping a recipe file states, with its ``base`` chain merged in (no defaults filled).

    Returns:
        The base's mapping (recursively its own base's first) with this file's mapping merged
        into it; the ``base`` key removed.

    Raises:
        ConfigError: as in :func:`load_recipe`.
    """
    return _read_chain(Path(path), ())


def _read_chain(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    here = path.resolve()
    if here in chain:
        loop = " -> ".join(str(p) for p in (*chain[chain.index(here):], here))
        raise ConfigError(f"recipe base cycle: {loop}")
    raw = _read_mapping(path)
    if BASE_KEY not in raw:
        return dict(raw)
    base = raw.pop(BASE_KEY)
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"{path}: {BASE_KEY} must be a recipe file path (relative to {path.parent}), got {base!r}")
    base_path = path.parent / base
    if not base_path.is_file():
        raise ConfigError(f"{path}: {BASE_KEY} {base!r} is not a recipe file (looked for {base_path})")
    return _merge(_read_chain(base_path, (*chain, here)), raw)


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read recipe ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: a recipe must be a YAML mapping")
    return dict(raw)


def _validate(recipe: dict[str, Any]) -> None:
    corpus = recipe["corpus"]
    if not isinstance(corpus, dict) or not corpus.get("name"):
        raise ConfigError("recipe: corpus needs a name")
    if not corpus.get("root"):
        raise ConfigError(f"recipe: corpus {corpus['name']!r} needs a root folder (--root PATH)")
    features = recipe["features"]
    if not isinstance(features, dict) or not features:
        raise ConfigError("recipe: features must map at least one key to {extractor: NAME, config: {...}}")
    for key, spec in features.items():
        if not isinstance(spec, dict) or ("extractor" in spec) == ("derive" in spec):
            raise ConfigError(f"recipe: features.{key} needs an extractor name, or a derived feature (derive: NAME, from: KEY)")
        known = FEATURE_KEYS if "extractor" in spec else DERIVED_KEYS
        extra = sorted(set(spec) - known)
        if extra:
            raise ConfigError(f"recipe: features.{key} has unknown key(s) {extra}; known: {sorted(known)}")
        if spec.get("config") is None:
            spec["config"] = {}
        if "extractor" in spec:
            spec.setdefault("channel", "downmix")
    model = recipe["model"]
    if not isinstance(model, dict) or not model.get("name"):
        raise ConfigError("recipe: model needs a name")
    model.setdefault("config", {})
    if isinstance(recipe["protocol"], str):
        recipe["protocol"] = {"name": recipe["protocol"]}
    if recipe["normalisation"] not in ("global", "speaker", "none"):
        raise ConfigError(f"recipe: normalisation must be global, speaker or none, got {recipe['normalisation']!r}")
    if not isinstance(recipe["seed"], int):
        raise ConfigError(f"recipe: seed must be an integer, got {recipe['seed']!r}")
    if recipe["cluster"] is not None and not (isinstance(recipe["cluster"], str) and recipe["cluster"].strip()):
        raise ConfigError(f"recipe: cluster must be a Dask scheduler address, a scheduler file or 'local', got {recipe['cluster']!r}")
