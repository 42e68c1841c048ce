"""Recipes: an experiment described as data.

A recipe is a YAML mapping. Every key has a default except ``features`` and ``model``::

    name: compare_svm                  # run name (default: the file's stem)
    corpus: {name: emodb, root: data/emodb, options: {}}
    # corpora:                         # several corpora pooled into one table, instead of corpus
    #   - {name: emodb, root: ../shared/corpora/emodb}
    #   - {name: ravdess, root: /tmp/corpora/ravdess/Audio_Speech_Actors_01-24}
    labels: null                       # [anger, neutral, ...] keeps those classes, drops the rest;
                                       # {neutral: [neutral, calm], ...} merges labels into a class
    features:                          # key -> extractor, or derived feature of other keys
      functionals: {extractor: opensmile_functionals, config: {feature_set: ComParE_2016},
                    channel: downmix}
      # encoder: {extractor: speech_encoder, config: {layer: all}}
      # pooled:  {derive: pooled_stats, from: encoder, config: {stats: [mean, std]}}
    model: {name: linear_svm, config: {C: [0.0001, 0.001, 0.01, 0.1, 1.0]}}
    protocol: {name: loso}             # see serkit.evaluation.protocols
    normalisation: global              # global | speaker | none
    adapt: none                        # test side: none | batch | speaker (serkit.adaptation)
    augment: null                      # {speed: [0.9, 1.1]}: training copies (serkit.augment)
    seed: 0
    cache_dir: .cache/serkit           # null switches the feature cache off
    n_jobs: -1                         # processes for feature extraction (-1: all cores)
    cluster: null                      # Dask scheduler address; null: SERKIT_CLUSTER or local

``corpora`` pools its corpora into one table (:func:`serkit.corpora.pool.load_pooled`: ids
prefixed with the corpus name, a ``corpus`` column), the table the protocol
``leave_one_corpus_out`` needs; with ``loso`` it is leave-one-speaker-out over the pooled speakers.
A recipe gives ``corpus`` or ``corpora``: when ``corpora`` is set the resolved ``corpus`` is null
(a recipe extending one that names a ``corpus`` sets ``corpus: null``). On the command line
``--corpus emodb,emovo --root A --root B`` pools (one ``--root`` per corpus, in order); one name
chooses one corpus. ``labels`` (:func:`serkit.corpora.vocabulary.select_labels`) applies to either.

``adapt`` standardises the *test* rows of each fold without their labels
(:mod:`serkit.adaptation`): ``none`` with the training statistics, ``batch`` with the statistics
of the fold's test rows together (the held-out corpus of ``leave_one_corpus_out``), ``speaker``
with each test speaker's own. It needs ``normalisation: global``.

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
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from serkit.corpora.vocabulary import label_mapping
from serkit.errors import ConfigError

DEFAULTS: dict[str, Any] = {
    "name": None,
    "corpus": {"name": "emodb", "root": "data/emodb", "options": {}},
    "corpora": None,
    "labels": None,
    "features": None,
    "model": None,
    "protocol": {"name": "loso"},
    "normalisation": "global",
    "adapt": "none",
    # Training-side speed perturbation (serkit.augment), checked with the other components.
    "augment": None,
    "seed": 0,
    "cache_dir": ".cache/serkit",
    "n_jobs": -1,
    # Where the work runs (serkit.cluster): a Dask scheduler address, "local", or null
    # (the environment variable SERKIT_CLUSTER, else local). Never part of a result.
    "cluster": None,
}
CORPUS_KEYS = {"name", "root", "options"}
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
    root: str | Path | Sequence[str | Path] | None = None,
    overrides: Iterable[str] = (),
) -> dict[str, Any]:
    """Defaults + ``raw`` + ``--corpus``/``--root`` + ``--set`` overrides, validated.

    Args:
        raw: the recipe mapping.
        name: run name when the recipe sets none.
        corpus: ``--corpus``: one adapter name, or several separated by commas (pooled, recipe
            key ``corpora``). A corpus the recipe already names keeps its root and options; any
            other starts without.
        root: ``--root``: one folder, or a list with one folder per corpus in order.
        overrides: ``--set`` assignments (:func:`apply_override`), applied last.

    Raises:
        ConfigError: unknown top-level key, missing ``features`` or ``model``, malformed entry,
            both ``corpus`` and ``corpora``, a corpus named twice or without a root, roots not
            one per corpus, a malformed ``labels``, or a ``base`` key (only :func:`load_recipe`
            can follow it: it is relative to a file).
    """
    if BASE_KEY in raw:
        raise ConfigError(
            f"recipe: {BASE_KEY!r} names a file relative to the recipe file; load the recipe with load_recipe(path)"
        )
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"recipe: unknown key(s) {unknown}; known: {sorted(DEFAULTS)}")
    if raw.get("corpus") is not None and raw.get("corpora") is not None:
        raise ConfigError("recipe: give corpus (one corpus) or corpora (several), not both; set corpus: null to pool")
    recipe = _merge(DEFAULTS, raw)
    if recipe["corpora"] is not None:
        recipe["corpus"] = None
    if corpus is not None or root is not None:
        _corpus_arguments(recipe, corpus, root)
    for assignment in overrides:
        apply_override(recipe, assignment)
    if recipe["name"] is None:
        recipe["name"] = name or "run"
    _validate(recipe)
    return recipe


def _corpus_arguments(recipe: dict[str, Any], corpus: str | None, root: Any) -> None:
    """Apply ``--corpus`` and ``--root`` (see :func:`resolve_recipe`) in place."""
    current = [spec for spec in (recipe["corpora"] or [recipe["corpus"]]) if isinstance(spec, dict)]
    pooled = recipe["corpora"] is not None
    if corpus is not None:
        names = [n.strip() for n in corpus.split(",")]
        if not all(names):
            raise ConfigError(f"--corpus {corpus!r}: an empty corpus name")
        known = {spec.get("name"): spec for spec in current}
        specs = [copy.deepcopy(known.get(n)) or {"name": n, "root": None, "options": {}} for n in names]
        pooled = len(names) > 1
    else:
        specs = copy.deepcopy(current)
    if root is not None:
        roots = [root] if isinstance(root, (str, Path)) else list(root)
        if len(roots) != len(specs):
            raise ConfigError(
                f"--root given {len(roots)} time(s) for {len(specs)} corpora ({', '.join(str(s.get('name')) for s in specs)}): "
                "give one root per corpus, in the order of --corpus"
            )
        for spec, folder in zip(specs, roots):
            spec["root"] = str(folder)
    recipe["corpora"], recipe["corpus"] = (specs, None) if pooled else (None, specs[0])


def corpus_specs(recipe: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The corpora of a resolved recipe as ``[{name, root, options}]``: ``corpora``, or ``[corpus]``."""
    return list(recipe.get("corpora") or [recipe["corpus"]])


def corpus_title(recipe: Mapping[str, Any]) -> str:
    """The corpus names of a recipe joined by ``+`` (``"emodb+emovo"``), for run names and tables;
    ``"?"`` when it names none."""
    names = [str(spec.get("name")) for spec in (recipe.get("corpora") or [recipe.get("corpus")]) if isinstance(spec, Mapping)]
    return "+".join(names) or "?"


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
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: a recipe must be a YAML mapping")
    return dict(raw)


def _check_corpus(spec: Any, where: str) -> None:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
        raise ConfigError(f"recipe: {where} needs a name")
    if not spec.get("root"):
        raise ConfigError(f"recipe: {where} {spec['name']!r} needs a root folder (--root PATH)")
    if not isinstance(spec["root"], str):
        raise ConfigError(f"recipe: {where}.root must be a folder path, got {spec['root']!r}")
    extra = sorted(set(spec) - CORPUS_KEYS)
    if extra:
        raise ConfigError(f"recipe: {where} has unknown key(s) {extra}; known: {sorted(CORPUS_KEYS)}")
    if spec.get("options") is None:
        spec["options"] = {}
    if not isinstance(spec["options"], dict):
        raise ConfigError(f"recipe: {where}.options must be a mapping of the adapter's options, got {spec['options']!r}")


def _validate(recipe: dict[str, Any]) -> None:
    corpora = recipe["corpora"]
    if corpora is None:
        _check_corpus(recipe["corpus"], "corpus")
    else:
        if not isinstance(corpora, list) or not corpora:
            raise ConfigError(f"recipe: corpora must be a non-empty list of {{name, root, options}}, got {corpora!r}")
        for i, spec in enumerate(corpora):
            _check_corpus(spec, f"corpora[{i}]")
        names = [spec["name"] for spec in corpora]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"recipe: corpora names {twice} more than once")
    if recipe["labels"] is not None:
        label_mapping(recipe["labels"], "recipe: labels")
    if not isinstance(recipe["name"], str) or not recipe["name"]:
        raise ConfigError(f"recipe: name must be a non-empty string, got {recipe['name']!r}")
    if recipe["cache_dir"] is not None and not isinstance(recipe["cache_dir"], str):
        raise ConfigError(f"recipe: cache_dir must be a folder path or null, got {recipe['cache_dir']!r}")
    n_jobs = recipe["n_jobs"]
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1:
        raise ConfigError(f"recipe: n_jobs must be a positive integer or -1 (all cores), got {n_jobs!r}")
    features = recipe["features"]
    if not isinstance(features, dict) or not features:
        raise ConfigError("recipe: features must map at least one key to {extractor: NAME, config: {...}}")
    for key, spec in features.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"recipe: feature keys must be non-empty strings, got {key!r}")
        if not isinstance(spec, dict) or ("extractor" in spec) == ("derive" in spec):
            raise ConfigError(f"recipe: features.{key} needs an extractor name, or a derived feature (derive: NAME, from: KEY)")
        kind = "extractor" if "extractor" in spec else "derive"
        if not isinstance(spec[kind], str) or not spec[kind]:
            raise ConfigError(f"recipe: features.{key}.{kind} must be a name, got {spec[kind]!r}")
        known = FEATURE_KEYS if kind == "extractor" else DERIVED_KEYS
        extra = sorted(set(spec) - known, key=str)
        if extra:
            raise ConfigError(f"recipe: features.{key} has unknown key(s) {extra}; known: {sorted(known)}")
        if spec.get("config") is None:
            spec["config"] = {}
        if not isinstance(spec["config"], dict):
            raise ConfigError(f"recipe: features.{key}.config must be a mapping of options, got {spec['config']!r}")
        if "extractor" in spec:
            spec.setdefault("channel", "downmix")
    model = recipe["model"]
    if not isinstance(model, dict) or not isinstance(model.get("name"), str) or not model["name"]:
        raise ConfigError("recipe: model needs a name")
    if model.get("config") is None:
        model["config"] = {}
    if not isinstance(model["config"], dict) or set(model) - {"name", "config"}:
        raise ConfigError(f"recipe: model must be {{name: NAME, config: {{...}}}}, got {model!r}")
    if isinstance(recipe["protocol"], str):
        recipe["protocol"] = {"name": recipe["protocol"]}
    if recipe["normalisation"] not in ("global", "speaker", "none"):
        raise ConfigError(f"recipe: normalisation must be global, speaker or none, got {recipe['normalisation']!r}")
    if recipe["adapt"] not in ("none", "batch", "speaker"):
        raise ConfigError(f"recipe: adapt must be none, batch or speaker, got {recipe['adapt']!r}")
    if recipe["adapt"] != "none" and recipe["normalisation"] != "global":
        raise ConfigError("recipe: adapt applies to normalisation: global (the training statistics it replaces)")
    if isinstance(recipe["seed"], bool) or not isinstance(recipe["seed"], int):
        raise ConfigError(f"recipe: seed must be an integer, got {recipe['seed']!r}")
    if recipe["cluster"] is not None and not (isinstance(recipe["cluster"], str) and recipe["cluster"].strip()):
        raise ConfigError(f"recipe: cluster must be a Dask scheduler address, a scheduler file or 'local', got {recipe['cluster']!r}")
