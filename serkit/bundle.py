"""Self-describing model bundles: everything needed to label new recordings.

A bundle is a folder::

    bundle.json     format version, serkit version, labels, sample rates, the feature
                    extractors (name, version, config, channel), the derived features (name,
                    version, config, inputs), what the model reads and its layouts, normaliser
                    statistics, the model's name and config, the resolved training recipe,
                    what it was trained on
    derived/<key>/  the fitted state of each fitted derived feature (its ``save``)
    model/          the model's own files (written by ``SERModel.save``)

The feature graph is rebuilt from the recipe's ``features`` (:class:`~serkit.pipeline.FeaturePlan`),
so a recording goes through exactly the steps of training.

It is written into a temporary sibling and renamed into place (:func:`serkit.io.atomic_directory`),
so an interrupted save leaves no bundle behind. :func:`load_bundle` refuses a bundle with another
format version or a missing piece with a :class:`~serkit.errors.BundleError`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import serkit
from serkit.adaptation import MIN_WINDOWS, Adapted, standardise
from serkit.audio import Audio
from serkit.derived.base import DERIVED, FittedFeature
from serkit.errors import BundleError, ConfigError, SerkitError
from serkit.features.base import Extractor
from serkit.features.normalise import Normaliser
from serkit.io import atomic_directory
from serkit.models.base import SERModel, model_class
from serkit.pipeline import FeaturePlan

FORMAT = "serkit-model-bundle"
FORMAT_VERSION = 1


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
        overwrite: replace an existing bundle.

    Raises:
        ConfigError: ``out_dir`` exists and is not empty without ``overwrite``.
    """
    if recipe.get("features") not in (None, plan.recipe):
        raise ConfigError("save_bundle: the plan was not built from the recipe's features")
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "serkit_version": serkit.__version__,
        "labels": list(labels),
        "features": {
            key: {**extractor.describe(), "channel": channel, "sample_rate": extractor.sample_rate, "level": extractor.level}
            for key, (extractor, channel) in plan.extractors.items()
        },
        "derived": {key: {**node.derived.describe(), "from": list(node.inputs)}
                    for key, node in plan.nodes.items() if node.derived is not None},  # fmt: skip
        "inputs": {key: spec.to_dict() for key, spec in plan.specs.items()},
        "normalisers": {key: norm.to_dict() for key, norm in normalisers.items()},
        "model": model.describe(),
        "recipe": {**recipe, "features": plan.recipe},
        "trained_on": trained_on,
    }
    text = json.dumps(meta, indent=2, allow_nan=False)
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        for key, feature in fitted.items():
            (tmp / "derived" / key).mkdir(parents=True)
            feature.save(tmp / "derived" / key)
        (tmp / "model").mkdir()
        model.save(tmp / "model")
        (tmp / "bundle.json").write_text(text + "\n", encoding="utf-8")
    return Path(out_dir)


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
    """

    path: Path
    meta: dict[str, Any]
    labels: list[str]
    plan: FeaturePlan
    fitted: dict[str, FittedFeature]
    normalisers: dict[str, Normaliser]
    model: SERModel

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
        """Class probabilities ``(len(features), K)`` from :meth:`features` of recordings of one speaker.

        With speaker normalisation (``normalisation: speaker`` in the recipe) the recordings are
        standardised with their own statistics, so they must come from one speaker and number at
        least the normaliser's ``min_utterances``; global normalisation uses the training
        statistics and treats each recording on its own.

        Raises:
            ConfigError: speaker normalisation with too few recordings.
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
        """
        raw = {}
        for key, spec in self.plan.specs.items():
            per_utt = [f[key] for f in features]
            raw[key] = np.stack(per_utt) if spec.level == "utterance" else per_utt
        adapted = standardise(self.normalisers, raw, groups, adapt, min_windows=min_windows,
                              predict=self.model.predict_proba, labels=self.labels)  # fmt: skip
        return self.model.predict_proba(adapted.inputs), adapted

    @property
    def per_speaker(self) -> bool:
        """Whether inputs are standardised per speaker (see :meth:`predict`)."""
        return any(n.mode == "speaker" for n in self.normalisers.values())


def load_bundle(path: str | Path) -> Bundle:
    """Load a bundle folder written by :func:`save_bundle`.

    Raises:
        BundleError: missing folder or file, wrong format or version, or unusable contents.
    """
    path = Path(path)
    meta_path = path / "bundle.json"
    if not meta_path.is_file():
        raise BundleError(f"{path}: not a serkit model bundle (no bundle.json)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"{meta_path}: unreadable ({exc})") from exc
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{path}: bundle format {meta.get('format')!r} v{meta.get('format_version')!r}, "
            f"this serkit reads {FORMAT!r} v{FORMAT_VERSION}"
        )
    try:
        plan = FeaturePlan(meta["recipe"]["features"])
        for key, (extractor, _) in plan.extractors.items():
            saved = meta["features"][key]
            if extractor.version != saved["version"]:
                raise BundleError(
                    f"{path}: feature {key!r} was extracted by {saved['name']} v{saved['version']}, "
                    f"this serkit has v{extractor.version}"
                )
        fitted = {}
        for key, saved in meta.get("derived", {}).items():
            derived = plan.nodes[key].derived
            if derived.version != saved["version"]:
                raise BundleError(
                    f"{path}: derived feature {key!r} was made by {saved['name']} v{saved['version']}, "
                    f"this serkit has v{derived.version}"
                )
            if derived.fitted:
                fitted[key] = DERIVED.get(saved["name"]).load(path / "derived" / key, saved["config"], derived.input_specs)
        normalisers = {key: Normaliser.from_dict(d) for key, d in meta["normalisers"].items()}
        model = model_class(meta["model"]["name"]).load(path / "model", meta["model"]["config"])
    except BundleError:
        raise
    except (KeyError, TypeError, OSError, ConfigError, SerkitError) as exc:
        raise BundleError(f"{path}: incomplete or inconsistent bundle ({exc!r})") from exc
    return Bundle(path, meta, list(meta["labels"]), plan, fitted, normalisers, model)
