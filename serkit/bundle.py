"""Self-describing model bundles: everything needed to label new recordings.

A bundle is a folder::

    bundle.json     format version, serkit version, labels, sample rates, the feature
                    extractors (name, version, config, channel), normaliser statistics,
                    the model's name and config, the resolved training recipe, what it was
                    trained on
    model/          the model's own files (written by ``SERModel.save``)

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
from serkit.audio import Audio
from serkit.errors import BundleError, ConfigError, SerkitError
from serkit.features.normalise import Normaliser
from serkit.features import extract_audio, get_extractor
from serkit.features.base import Extractor
from serkit.io import atomic_directory
from serkit.models.base import SERModel, model_class

FORMAT = "serkit-model-bundle"
FORMAT_VERSION = 1


def save_bundle(
    out_dir: str | Path,
    *,
    recipe: dict[str, Any],
    labels: Sequence[str],
    extractors: dict[str, tuple[Extractor, str]],
    normalisers: dict[str, Normaliser],
    model: SERModel,
    trained_on: dict[str, Any],
    overwrite: bool = False,
) -> Path:
    """Write a fitted model and everything that rebuilds its inputs as a bundle folder.

    Args:
        out_dir: bundle folder to create.
        recipe: the resolved training recipe.
        labels: class order of the model's outputs.
        extractors: feature key -> (extractor, channel) as used in training.
        normalisers: feature key -> fitted normaliser.
        model: the fitted model.
        trained_on: corpus, utterance count, speakers, fit info (plain data).
        overwrite: replace an existing bundle.

    Raises:
        ConfigError: ``out_dir`` exists and is not empty without ``overwrite``.
    """
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "serkit_version": serkit.__version__,
        "labels": list(labels),
        "features": {
            key: {**extractor.describe(), "channel": channel, "sample_rate": extractor.sample_rate, "level": extractor.level}
            for key, (extractor, channel) in extractors.items()
        },
        "normalisers": {key: norm.to_dict() for key, norm in normalisers.items()},
        "model": model.describe(),
        "recipe": recipe,
        "trained_on": trained_on,
    }
    text = json.dumps(meta, indent=2, allow_nan=False)
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
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
        extractors: feature key -> (extractor, channel).
        normalisers: feature key -> normaliser.
        model: the fitted model.
    """

    path: Path
    meta: dict[str, Any]
    labels: list[str]
    extractors: dict[str, tuple[Extractor, str]]
    normalisers: dict[str, Normaliser]
    model: SERModel

    def features(self, audio: Audio) -> dict[str, np.ndarray]:
        """Raw (unnormalised) features of one recording, key by key.

        The recording is resampled and its channel chosen per extractor, as in training.

        Raises:
            AudioError: the recording cannot be used (too short for an extractor, …).
        """
        return {key: extract_audio(audio, extractor, channel) for key, (extractor, channel) in self.extractors.items()}

    def predict(self, features: Sequence[dict[str, np.ndarray]], speaker: str = "unknown") -> np.ndarray:
        """Class probabilities ``(len(features), K)`` from :meth:`features` of recordings of one speaker.

        With speaker normalisation (``normalisation: speaker`` in the recipe) the recordings are
        standardised with their own statistics, so they must come from one speaker and number at
        least the normaliser's ``min_utterances``; global normalisation uses the training
        statistics and treats each recording on its own.

        Raises:
            ConfigError: speaker normalisation with too few recordings.
        """
        speakers = np.array([speaker] * len(features))
        inputs = {}
        for key, (extractor, _) in self.extractors.items():
            per_utt = [f[key] for f in features]
            data = np.stack(per_utt) if extractor.level == "utterance" else per_utt
            inputs[key] = self.normalisers[key].transform(data, speakers)
        return self.model.predict_proba(inputs)

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
        extractors = {}
        for key, spec in meta["features"].items():
            extractor = get_extractor(spec["name"], spec["config"])
            if extractor.version != spec["version"]:
                raise BundleError(
                    f"{path}: feature {key!r} was extracted by {spec['name']} v{spec['version']}, "
                    f"this serkit has v{extractor.version}"
                )
            extractors[key] = (extractor, spec["channel"])
        normalisers = {key: Normaliser.from_dict(d) for key, d in meta["normalisers"].items()}
        model = model_class(meta["model"]["name"]).load(path / "model", meta["model"]["config"])
    except BundleError:
        raise
    except (KeyError, TypeError, OSError, ConfigError, SerkitError) as exc:
        raise BundleError(f"{path}: incomplete or inconsistent bundle ({exc!r})") from exc
    return Bundle(path, meta, list(meta["labels"]), extractors, normalisers, model)
