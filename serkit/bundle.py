"""Self-describing model bundles: everything needed to label new recordings, and nothing that runs.

A bundle is a folder::

    bundle.json     format version, serkit version, labels, sample rates, the feature
                    extractors (name, version, config, channel), the derived features (name,
                    version, config, inputs), what the model reads and its layouts, normaliser
                    statistics, the model's name and config, the resolved training recipe,
                    what it was trained on, and ``files``: the SHA-256 of every other file
    derived/<key>/  the fitted state of each fitted derived feature (its ``save``)
    model/          the model's own files (written by ``SERModel.save``)
    README.md …     documents given to :func:`save_bundle` (optional)

Every file holds arrays (safetensors) or JSON (:mod:`serkit.state_files`): nothing in a bundle is
a pickle, and nothing serkit reads from one can run code. The feature graph is rebuilt from the
recipe's ``features`` (:class:`~serkit.pipeline.FeaturePlan`), so a recording goes through exactly
the steps of training.

:func:`save_bundle` writes into a temporary sibling and renames it into place
(:func:`serkit.io.atomic_directory`), so an interrupted save leaves no bundle behind.
:func:`load_bundle` checks, in this order, and raises a :class:`~serkit.errors.BundleError`
naming the file (and the field) at the first problem:

1. ``bundle.json`` is a JSON object of this format and version. A bundle of format version 1
   (serkit before checksums; its SVMs were pickles) is refused with the command that rebuilds it.
2. the ``files`` list: every file in the folder is listed, every listed file is present, and
   each one's SHA-256 matches, all before any of them is read; links and special files are
   refused.
3. the parts agree: each extractor's name, version, config, channel and sample rate, and each
   derived feature's, are those the recipe builds; the model inputs' layouts are those the
   plan gives; a normaliser per input, of the input's width; ``labels`` are the model's own
   classes in the model's order; the widths the model was fitted on are the inputs' widths.

The checksums guard against damage and half-replaced bundles, not against someone who can
rewrite the whole folder: what protects the machine is that the formats carry data only.
:attr:`Bundle.digest` (the SHA-256 of ``bundle.json``, which lists every other file's) names a
bundle's exact contents, to compare with the one its publisher states.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import serkit
from serkit.adaptation import MIN_WINDOWS, Adapted, standardise
from serkit.audio import Audio
from serkit.derived.base import FittedFeature
from serkit.errors import BundleError, ConfigError, FeatureError, SerkitError
from serkit.features.base import Extractor
from serkit.features.normalise import Normaliser
from serkit.io import atomic_directory, sha256_file
from serkit.models.base import SERModel, model_class
from serkit.pipeline import FeaturePlan
from serkit.state_files import is_labels, is_object, read_json, take, write_json

FORMAT = "serkit-model-bundle"
FORMAT_VERSION = 2
META = "bundle.json"
#: What a model's or a fitted feature's files may be (:mod:`serkit.state_files`).
STATE_SUFFIXES = (".json", ".safetensors")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_DOCUMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\.(md|txt)")


def save_bundle(
    out_dir: str | Path,
    *,
    recipe: dict[str, Any],
    labels: Sequence[str],
    plan: FeaturePlan,
    fitted: dict[str, FittedFeature],
    normalisers: dict[str, Normaliser],
    model: SERModel,
    trained_on: dict[str, Any],
    documents: Mapping[str, str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a fitted model and everything that rebuilds its inputs as a bundle folder.

    Args:
        out_dir: bundle folder to create.
        recipe: the resolved training recipe (its ``features`` rebuild the plan).
        labels: class order of the model's outputs.
        plan: the recipe's feature graph.
        fitted: key -> fitted derived feature, for each of the plan's fitted ones.
        normalisers: model input key -> fitted normaliser.
        model: the fitted model.
        trained_on: corpus, utterance count, speakers, fit info (plain data).
        documents: file name (``README.md``; letters, digits, ``_.-``, ending ``.md`` or
            ``.txt``) -> UTF-8 text, written beside ``bundle.json`` and listed with the rest.
        overwrite: replace an existing bundle.

    Returns:
        ``out_dir``, complete, with the SHA-256 of every file listed in ``bundle.json``.

    Raises:
        ConfigError: ``out_dir`` exists and is not empty without ``overwrite``; the plan is not
            the recipe's; a document name that is not a plain ``.md``/``.txt`` file name.
    """
    if recipe.get("features") not in (None, plan.recipe):
        raise ConfigError("save_bundle: the plan was not built from the recipe's features")
    documents = dict(documents or {})
    for name in documents:
        if not _DOCUMENT.fullmatch(name):
            raise ConfigError(f"save_bundle: document name {name!r} is not a plain .md or .txt file name")
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "serkit_version": serkit.__version__,
        "labels": list(labels),
        "features": {key: _describe_extractor(extractor, channel) for key, (extractor, channel) in plan.extractors.items()},
        "derived": {
            key: {**node.derived.describe(), "from": list(node.inputs)} for key, node in plan.nodes.items() if node.derived is not None
        },
        "inputs": {key: spec.to_dict() for key, spec in plan.specs.items()},
        "normalisers": {key: norm.to_dict() for key, norm in normalisers.items()},
        "model": model.describe(),
        "recipe": {**recipe, "features": plan.recipe},
        "trained_on": trained_on,
    }
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        for key, feature in fitted.items():
            (tmp / "derived" / key).mkdir(parents=True)
            feature.save(tmp / "derived" / key)
        (tmp / "model").mkdir()
        model.save(tmp / "model")
        for name, text in documents.items():
            (tmp / name).write_text(text, encoding="utf-8")
        meta["files"] = {rel: sha256_file(tmp / rel) for rel in sorted(_bundle_files(tmp))}
        write_json(tmp / META, meta)
    return Path(out_dir)


def _describe_extractor(extractor: Extractor, channel: str) -> dict[str, Any]:
    return {**extractor.describe(), "channel": channel, "sample_rate": extractor.sample_rate, "level": extractor.level}


def _as_saved(value: Any) -> Any:
    """``value`` as it reads back from ``bundle.json`` (tuples as lists)."""
    return json.loads(json.dumps(value))


@dataclass
class Bundle:
    """A loaded bundle. Use :meth:`predict` on recordings.

    Attributes:
        path: the bundle folder.
        meta: the parsed ``bundle.json``.
        labels: class order of probabilities.
        plan: the feature graph of the training recipe.
        fitted: key -> fitted derived feature.
        normalisers: model input key -> normaliser.
        model: the fitted model.
        digest: SHA-256 (hex) of ``bundle.json``; it lists every other file's, so it names the
            bundle's whole contents.
    """

    path: Path
    meta: dict[str, Any]
    labels: list[str]
    plan: FeaturePlan
    fitted: dict[str, FittedFeature]
    normalisers: dict[str, Normaliser]
    model: SERModel
    digest: str = ""

    @property
    def extractors(self) -> dict[str, tuple[Extractor, str]]:
        """Extractor key -> (extractor, channel), as in training."""
        return self.plan.extractors

    def features(self, audio: Audio) -> dict[str, np.ndarray]:
        """Raw (unnormalised) model inputs of one recording, key by key.

        The recording is resampled and its channel chosen per extractor, and derived features
        computed from those, as in training.

        Raises:
            AudioError: the recording cannot be used (too short for an extractor, …).
            FeatureError: a derived feature cannot use it.
        """
        return self.plan.compute_one(audio, self.fitted)

    def features_many(self, audios: Sequence[Audio]) -> list[dict[str, np.ndarray]]:
        """:meth:`features` of several recordings, batched through each extractor (equal up to
        float rounding).

        Raises:
            As :meth:`features`, for the first recording that fails.
        """
        return self.plan.compute_many(audios, self.fitted)

    def predict(self, features: Sequence[dict[str, np.ndarray]], speaker: str = "unknown") -> np.ndarray:
        """Class probabilities ``(len(features), K)`` float64 from :meth:`features` of recordings of one speaker.

        With speaker normalisation (``normalisation: speaker`` in the recipe) the recordings are
        standardised with their own statistics, so they must come from one speaker and number at
        least the normaliser's ``min_utterances``; global normalisation uses the training
        statistics and treats each recording on its own.

        Raises:
            ConfigError: speaker normalisation with too few recordings.
            FeatureError: the model's output is not ``K`` finite probabilities per recording
                summing to one (input far outside anything seen in training), so no NaN ever
                reaches a result.
        """
        return self.predict_adapted(features, [speaker] * len(features))[0]

    def predict_adapted(
        self,
        features: Sequence[dict[str, np.ndarray]],
        groups: Sequence[str],
        adapt: str = "none",
        min_windows: int = MIN_WINDOWS,
    ) -> tuple[np.ndarray, Adapted]:
        """Class probabilities ``(len(features), K)`` with the standardisation adapted to the
        batch (``adapt``: :mod:`serkit.adaptation`), and what adaptation did.

        Args:
            features: :meth:`features` of each window.
            groups: speaker (or channel) of each window.
            adapt: ``"none"``, ``"batch"`` or ``"speaker"``.
            min_windows: fewest windows a group needs for its own statistics.

        Raises:
            ConfigError: bad ``adapt``/``min_windows``; speaker normalisation with too few windows.
            FeatureError: as :meth:`predict`.
        """
        raw = {}
        for key, spec in self.plan.specs.items():
            per_utt = [f[key] for f in features]
            raw[key] = np.stack(per_utt) if spec.level == "utterance" else per_utt
        adapted = standardise(self.normalisers, raw, groups, adapt, min_windows=min_windows,
                              predict=self.model.predict_proba, labels=self.labels)  # fmt: skip
        proba = np.asarray(self.model.predict_proba(adapted.inputs), dtype=np.float64)
        if proba.shape != (len(features), len(self.labels)) or not np.all(np.isfinite(proba)) \
                or not np.allclose(proba.sum(axis=1), 1.0, atol=1e-6):  # fmt: skip
            raise FeatureError(
                f"the model gave no valid probabilities for this recording (shape {proba.shape}, NaN, infinite "
                "or not summing to one)"
            )
        return proba, adapted

    @property
    def per_speaker(self) -> bool:
        """Whether inputs are standardised per speaker (see :meth:`predict`)."""
        return any(n.mode == "speaker" for n in self.normalisers.values())


def load_bundle(path: str | Path) -> Bundle:
    """Load a bundle folder written by :func:`save_bundle`, checking it first (module docstring).

    Raises:
        BundleError: not a folder or no ``bundle.json``; wrong format or version (version 1 with
            how to rebuild it); a file missing, added, changed, a link or not a plain file; a
            malformed or inconsistent part. The message names the file and the field.
    """
    path = Path(path)
    meta_path = path / META
    if not path.is_dir():
        raise BundleError(f"{path}: not a serkit model bundle (a bundle is a folder holding {META})")
    if meta_path.is_symlink() or not meta_path.is_file():
        raise BundleError(f"{path}: not a serkit model bundle (no {META})")
    meta = read_json(meta_path)
    _check_format(meta, meta_path)
    check_files(path, take(meta, "files", is_object, "an object of file -> SHA-256", meta_path))
    try:
        return _load_checked(path, meta, sha256_file(meta_path))
    except BundleError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OSError, SerkitError) as exc:
        raise BundleError(f"{path}: incomplete or inconsistent bundle ({exc!r})") from exc


def _check_format(meta: dict[str, Any], meta_path: Path) -> None:
    version = meta.get("format_version")
    if meta.get("format") != FORMAT:
        raise BundleError(f"{meta_path}: field 'format' is {meta.get('format')!r}, not {FORMAT!r}: not a serkit model bundle")
    if version == 1:
        raise BundleError(
            f"{meta_path}: a bundle of format v1 (serkit {meta.get('serkit_version', '?')}) may hold pickled files "
            "and lists no checksums, so this serkit does not read it; rebuild it with "
            "`serkit train RECIPE --out NEW_DIR` (its training recipe is the field 'recipe' of this file)"
        )
    if version != FORMAT_VERSION:
        raise BundleError(f"{meta_path}: bundle format {FORMAT!r} v{version!r}, this serkit reads v{FORMAT_VERSION}")


def _bundle_files(folder: Path) -> list[str]:
    """Every file below ``folder`` but ``bundle.json``, as POSIX paths relative to it.

    Raises:
        BundleError: a symbolic link or something other than a plain file or folder.
    """
    found = []
    for root, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            entry = Path(root) / name
            if entry.is_symlink() or not (entry.is_dir() or entry.is_file()):
                raise BundleError(f"{entry}: a link or special file; a bundle holds plain files and folders only")
        found.extend((Path(root) / name).relative_to(folder).as_posix() for name in files)
    return [rel for rel in found if rel != META]


def check_files(path: Path, listed: Mapping[str, Any]) -> None:
    """Check the folder against ``bundle.json``'s ``files`` before any of them is read.

    Args:
        path: the bundle folder.
        listed: relative POSIX path -> SHA-256 hex digest (lower case), as :func:`save_bundle` writes.

    Raises:
        BundleError: an entry that is not a relative path and a digest, or names a file other
            than ``.json``/``.safetensors`` state or a top-level ``.md``/``.txt`` document; a
            file not listed (an extra file), a listed file missing, a digest that does not match
            (a changed or damaged file), or a link or special file; the message names the file.
    """
    where = path / META
    for rel, digest in listed.items():
        parts = rel.split("/")
        if rel == META or rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in parts):
            raise BundleError(f"{where}: field 'files' lists {rel!r}, not a relative path inside the bundle")
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise BundleError(f"{where}: field 'files' gives {rel!r} the digest {digest!r}, not a SHA-256 in hex")
        if not (rel.endswith(STATE_SUFFIXES) or (len(parts) == 1 and _DOCUMENT.fullmatch(rel))):
            raise BundleError(f"{path / rel}: not a file a bundle holds (only {', '.join(STATE_SUFFIXES)} files, "
                              "and .md/.txt documents beside bundle.json)")  # fmt: skip
    present = set(_bundle_files(path))
    added, missing = sorted(present - set(listed)), sorted(set(listed) - present)
    if added:
        raise BundleError(f"{path / added[0]}: not listed in {META} (a file added to the bundle); remove it or rebuild the bundle")
    if missing:
        raise BundleError(f"{path / missing[0]}: missing (listed in {META})")
    for rel in sorted(listed):
        if sha256_file(path / rel) != listed[rel]:
            raise BundleError(f"{path / rel}: SHA-256 differs from the one {META} lists: the file was changed or damaged")


def _load_checked(path: Path, meta: dict[str, Any], digest: str) -> Bundle:
    """The parts of a bundle whose files passed :func:`check_files`, checked against each other."""
    where = path / META
    labels = take(meta, "labels", is_labels, "a list of at least two distinct class names", where)
    recipe = take(meta, "recipe", is_object, "an object (the training recipe)", where)
    try:
        plan = FeaturePlan(take(recipe, "features", lambda v: is_object(v) and v, "an object of features", f"{where}: recipe"))
    except ConfigError as exc:
        raise BundleError(f"{where}: field 'recipe.features': {exc}") from exc
    _check_features(plan, meta, where)
    fitted = {}
    for key, node in plan.nodes.items():
        if node.derived is not None and node.derived.fitted:
            fitted[key] = type(node.derived).load(path / "derived" / key, node.derived.describe()["config"], node.derived.input_specs)
    saved = take(meta, "normalisers", lambda v: is_object(v) and set(v) == set(plan.specs),
                 f"an object with one normaliser per model input {sorted(plan.specs)}", where)  # fmt: skip
    normalisers = {}
    for key, spec in plan.specs.items():
        normalisers[key] = Normaliser.from_dict(saved[key], where=f"{where}: normalisers.{key}")
        if normalisers[key].dim != spec.dim:
            raise BundleError(f"{where}: field 'normalisers.{key}.dim' is {normalisers[key].dim}, the input {key!r} has {spec.dim} columns")
    model = _load_model(path, meta, where)
    fitted_labels = list(getattr(model, "labels_", labels))
    if fitted_labels != labels:
        raise BundleError(
            f"{where}: field 'labels' lists {len(labels)} classes {labels}, the model in {path / 'model'} was fitted on "
            f"{len(fitted_labels)} classes {fitted_labels} (count and order must match)"
        )
    widths = model.input_widths()
    for key, width in widths.items():
        if key not in plan.specs or plan.specs[key].dim != width:
            have = plan.specs[key].dim if key in plan.specs else "no such input"
            raise BundleError(f"{path / 'model'}: the model reads {width} columns of {key!r}, the bundle's input has {have}")
    if widths and set(widths) != set(plan.specs):
        raise BundleError(f"{path / 'model'}: the model reads {sorted(widths)}, the bundle's inputs are {sorted(plan.specs)}")
    return Bundle(path, meta, labels, plan, fitted, normalisers, model, digest)


def _check_features(plan: FeaturePlan, meta: dict[str, Any], where: Path) -> None:
    """``features``, ``derived`` and ``inputs`` of ``bundle.json`` against the plan the recipe builds."""
    saved = take(meta, "features", lambda v: is_object(v) and set(v) == set(plan.extractors),
                 f"an object describing the extractors {sorted(plan.extractors)}", where)  # fmt: skip
    for key, (extractor, channel) in plan.extractors.items():
        entry = take(saved, key, is_object, "an object", f"{where}: features")
        if entry.get("name") == extractor.name and entry.get("version") != extractor.version:
            raise BundleError(f"{where}: feature {key!r} was extracted by {extractor.name} v{entry.get('version')}, "
                              f"this serkit has v{extractor.version}")  # fmt: skip
        for field, value in _as_saved(_describe_extractor(extractor, channel)).items():
            if entry.get(field) != value:
                raise BundleError(f"{where}: field 'features.{key}.{field}' is {entry.get(field)!r}, the recipe's "
                                  f"extractor has {value!r}")  # fmt: skip
    derived = {key: node for key, node in plan.nodes.items() if node.derived is not None}
    saved = take(meta, "derived", lambda v: is_object(v) and set(v) == set(derived),
                 f"an object describing the derived features {sorted(derived)}", where, default={})  # fmt: skip
    for key, node in derived.items():
        entry = take(saved, key, is_object, "an object", f"{where}: derived")
        if entry.get("name") == node.derived.name and entry.get("version") != node.derived.version:
            raise BundleError(f"{where}: derived feature {key!r} was made by {node.derived.name} v{entry.get('version')}, "
                              f"this serkit has v{node.derived.version}")  # fmt: skip
        for field, value in _as_saved({**node.derived.describe(), "from": list(node.inputs)}).items():
            if entry.get(field) != value:
                raise BundleError(f"{where}: field 'derived.{key}.{field}' is {entry.get(field)!r}, the recipe gives {value!r}")
    inputs = take(meta, "inputs", is_object, "an object", where)
    for key, spec in plan.specs.items():
        if inputs.get(key) != _as_saved(spec.to_dict()):
            raise BundleError(f"{where}: field 'inputs.{key}' is {inputs.get(key)!r}, the recipe's features give {spec.to_dict()}")
    if set(inputs) != set(plan.specs):
        raise BundleError(f"{where}: field 'inputs' names {sorted(inputs)}, the model reads {sorted(plan.specs)}")


def _load_model(path: Path, meta: dict[str, Any], where: Path) -> SERModel:
    saved = take(meta, "model", is_object, "an object", where)
    name = take(saved, "name", lambda v: isinstance(v, str) and v, "a model name", f"{where}: model")
    config = take(saved, "config", is_object, "an object", f"{where}: model")
    try:
        cls = model_class(name)
    except ConfigError as exc:
        raise BundleError(f"{where}: field 'model.name': {exc}") from exc
    try:
        return cls.load(path / "model", config)
    except (ConfigError, FeatureError) as exc:
        raise BundleError(f"{where}: field 'model.config': {exc}") from exc
