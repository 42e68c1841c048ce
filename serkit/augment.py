"""Training-side augmentation: speed perturbation of the training speakers' recordings.

Speed perturbation (Ko, Peddinti, Povey and Khudanpur, "Audio augmentation for speech
recognition", Interspeech 2015, Sec. 3) resamples a recording so that it plays ``factor`` times
faster: duration ``/ factor``, pitch and formants ``× factor``, as from a speaker with a shorter or
longer vocal tract. With a handful of training speakers (EMOVO has five per fold) each copy acts
as another speaker of the same emotions; the paper's factors, 0.9 and 1.1, are the default.

A recipe asks for it with ``augment: {speed: [0.9, 1.1]}``. Every utterance's features are then
also computed from each perturbed copy (the extractors wrapped in :class:`SpeedPerturbed`, so each
copy has its own cache entries); :func:`serkit.experiment.run_fold` adds the copies of the
training rows to the training data of each fold, never a test speaker's, and the protocol's
folds, the predictions and the metrics are over the original recordings only. A copy keeps its
speaker for the model's inner folds (no speaker reaches both sides of an inner split through its
copies) and is its own group ``<speaker>@<factor>`` for per-speaker normalisation.

Features fitted inside each fold (a derived feature with ``fitted`` state) are not augmented:
such a recipe is refused.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from serkit.audio import Audio
from serkit.config import check_option
from serkit.errors import ConfigError
from serkit.features.base import Extractor, get_extractor, register
from serkit.features.data import FeatureData, Inputs, concat_rows, take_rows
from serkit.features.layout import Layout

if TYPE_CHECKING:
    from serkit.pipeline import FeaturePlan

log = logging.getLogger(__name__)

#: Speed factors of Ko et al. (2015), Sec. 3.
DEFAULT_SPEEDS = (0.9, 1.1)
#: Outside this range a copy is no longer a plausible human voice (pitch shifted by > 1 octave).
SPEED_RANGE = (0.5, 2.0)


def speed_perturb(audio: Audio, factor: float) -> Audio:
    """``audio`` played ``factor`` times faster: resampled (soxr, high quality) from ``sr`` to
    ``sr / factor`` Hz and read at ``sr`` (Ko et al. 2015, Sec. 3); clipped to ``[-1, 1]`` (the
    resampling filter's ripple can overshoot by about 1 %).

    Args:
        audio: any rate, any channels.
        factor: speed factor in :data:`SPEED_RANGE` (``> 1``: shorter and higher).

    Returns:
        float32, same rate and channels, ``round(n / factor)`` samples.

    Raises:
        ConfigError: ``factor`` outside :data:`SPEED_RANGE`.
    """
    import soxr

    check_speed(factor, "speed_perturb")
    if factor == 1.0:
        return audio
    rate = audio.sample_rate
    x = soxr.resample(audio.samples.T.astype(np.float64), rate, rate / factor, quality="HQ")
    x = np.clip(np.asarray(x, dtype=np.float32).reshape(-1, audio.channels).T, -1.0, 1.0)
    return Audio(np.ascontiguousarray(x), rate, audio.path)


def check_speed(factor: object, who: str) -> None:
    """Raise :class:`ConfigError` unless ``factor`` is a finite number in :data:`SPEED_RANGE`."""
    ok = isinstance(factor, int | float) and not isinstance(factor, bool) and math.isfinite(factor)
    check_option(ok and SPEED_RANGE[0] <= factor <= SPEED_RANGE[1], who,
                 f"speed factor must be a number in [{SPEED_RANGE[0]}, {SPEED_RANGE[1]}], got {factor!r}")  # fmt: skip


@register
class SpeedPerturbed(Extractor):
    """Another extractor's features of the speed-perturbed recording (:func:`speed_perturb`).

    Config:
        extractor: the wrapped extractor's registered name; ``config``: its options.
        factor: the speed factor.

    Level, rate, dimension, layout and frame shift are the wrapped extractor's; its description
    (and so its cache folder) includes the factor.
    """

    name = "speed_perturbed"
    level = "utterance"  # replaced per instance by the wrapped extractor's

    @dataclass(frozen=True)
    class Config:
        extractor: str = "speech_encoder"
        config: Mapping[str, Any] = field(default_factory=dict)
        factor: float = 1.1

    def check_config(self) -> None:
        check_speed(self.config.factor, self.name)
        check_option(self.config.extractor != self.name, self.name, "cannot wrap itself")
        self.inner = get_extractor(self.config.extractor, dict(self.config.config))
        self.level = self.inner.level

    @property
    def sample_rate(self) -> int:
        return self.inner.sample_rate

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def frame_shift(self) -> float | None:
        return self.inner.frame_shift

    @property
    def layout(self) -> Layout:
        return self.inner.layout

    @property
    def batch_size(self) -> int:
        return self.inner.batch_size

    def extract(self, audio: Audio) -> np.ndarray:
        """The wrapped extractor's features of ``speed_perturb(audio, factor)``.

        Raises:
            What the wrapped extractor raises (e.g. a copy too short for one frame).
        """
        return self.inner.extract(speed_perturb(audio, self.config.factor))

    def extract_batch(self, audios: Sequence[Audio]) -> list[np.ndarray]:
        return self.inner.extract_batch([speed_perturb(a, self.config.factor) for a in audios])

    def describe(self) -> dict[str, Any]:
        """The standard description (its ``config`` round-trips) plus ``inner``, the wrapped
        extractor's own (with its version, so that the cache key changes with it)."""
        return {**super().describe(), "inner": self.inner.describe()}


def speeds(recipe: Mapping[str, Any], plan: FeaturePlan | None = None) -> tuple[float, ...]:
    """The speed factors of a recipe's ``augment`` (``()`` without augmentation).

    Raises:
        ConfigError: ``augment`` is not ``{speed: [factors]}`` with distinct factors in
            :data:`SPEED_RANGE` other than 1, or the recipe's ``plan`` fits a feature inside
            each fold (its copies would need that fold's fit).
    """
    spec = recipe.get("augment")
    if spec is None:
        return ()
    if plan is not None and plan.per_fold:
        raise ConfigError(f"augment: features fitted inside each fold ({', '.join(plan.per_fold)}) cannot be augmented")
    if not isinstance(spec, Mapping) or set(spec) != {"speed"}:
        raise ConfigError(f"augment must be {{speed: [factors]}}, e.g. {{speed: {list(DEFAULT_SPEEDS)}}}; got {spec!r}")
    factors = spec["speed"]
    if not isinstance(factors, list | tuple) or not factors:
        raise ConfigError(f"augment.speed must be a non-empty list of factors, got {factors!r}")
    for factor in factors:
        check_speed(factor, "augment.speed")
    if 1 in factors or len(set(factors)) != len(factors):
        raise ConfigError(f"augment.speed: factors must be distinct and not 1 (the recording itself), got {factors}")
    return tuple(float(f) for f in factors)


def perturbed_features(features: Mapping[str, Mapping[str, Any]], factor: float) -> dict[str, dict[str, Any]]:
    """A recipe's ``features`` with every extractor wrapped in :class:`SpeedPerturbed` at
    ``factor``; derived features, channels and keys unchanged."""
    out = {}
    for key, spec in features.items():
        spec = dict(spec)
        if "extractor" in spec:
            spec = {**spec, "extractor": SpeedPerturbed.name,
                    "config": {"extractor": spec["extractor"], "config": dict(spec.get("config") or {}), "factor": factor}}  # fmt: skip
        out[key] = spec
    return out


# --------------------------------------------------------------------------- the dataset's copies


@dataclass
class Copies:
    """The features of one speed factor's copies of a dataset's rows.

    Attributes:
        factor: the speed factor.
        rows: ``(m,)`` int, the dataset row each copy was made from (rows whose copy no extractor
            could use, e.g. too short once sped up, have none).
        features: the plan's outputs (the model's inputs) of the copies, in ``rows`` order.
    """

    factor: float
    rows: np.ndarray
    features: dict[str, FeatureData]


def compute_copies(recipe: Mapping[str, Any], plan: FeaturePlan, table: pd.DataFrame, *, progress: bool,
                   runner: Any = None) -> list[Copies]:  # fmt: skip
    """The copies of every row of ``table`` for each factor of the recipe's ``augment``.

    Each factor's features are a second plan (:func:`perturbed_features`) materialised on the
    same table, cached as the recipe's own are.

    Raises:
        ConfigError: ``augment`` is malformed, or the plan fits a feature inside each fold.
        FeatureError: no copy of a factor could be processed.
    """
    from serkit.pipeline import FeaturePlan

    factors = speeds(recipe, plan)
    index = pd.Index(table["utterance_id"])
    out = []
    for factor in factors:
        done = FeaturePlan(perturbed_features(recipe["features"], factor)).materialise(
            table, cache_dir=recipe.get("cache_dir"), n_jobs=recipe.get("n_jobs", -1), progress=progress, runner=runner
        )
        if done.failures:
            log.warning("augment: %d recordings have no copy at speed %g (first: %s)", len(done.failures), factor,
                        done.failures[0]["error"])  # fmt: skip
        out.append(Copies(factor, index.get_indexer(done.ids), {key: done.features[key] for key in plan.outputs}))
    return out


def add_copies(inputs: Inputs, rows: np.ndarray, y: np.ndarray, speakers: np.ndarray,
               copies: Sequence[Copies]) -> tuple[dict[str, FeatureData], np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Training data: dataset rows ``rows`` (``inputs`` are theirs) followed by their copies.

    Args:
        inputs: the model's inputs of ``rows``.
        rows: ``(n,)`` int dataset rows (a fold's training rows).
        y, speakers: ``(N,)`` labels and speakers of every dataset row.
        copies: :func:`compute_copies`' result; only copies of ``rows`` are taken.

    Returns:
        ``(inputs, labels, groups, norm_groups)``: ``groups`` keeps each copy's speaker (for
        the model's speaker-disjoint inner folds), ``norm_groups`` names it ``<speaker>@<factor>``
        (for per-speaker normalisation, each copy is a speaker of its own).
    """
    if not copies:
        return dict(inputs), y[rows], speakers[rows], speakers[rows]
    chosen = np.zeros(len(y), dtype=bool)
    chosen[rows] = True
    parts, labels, groups, norm = [dict(inputs)], [y[rows]], [speakers[rows]], [speakers[rows]]
    for copy in copies:
        keep = np.flatnonzero(chosen[copy.rows])
        source = copy.rows[keep]
        parts.append({key: take_rows(copy.features[key], keep) for key in inputs})
        labels.append(y[source])
        groups.append(speakers[source])
        norm.append(np.array([f"{s}@{copy.factor:g}" for s in speakers[source]], dtype=object))
    merged = {key: concat_rows([part[key] for part in parts]) for key in inputs}
    return merged, np.concatenate(labels), np.concatenate(groups), np.concatenate(norm).astype(str)
