"""Per-fold feature standardisation (z-scoring).

Three modes:

``"global"``
    mean and standard deviation of every dimension over the training fold's features; the same
    statistics transform training and test data (nothing is learnt from the test fold).
``"speaker"``
    every speaker is standardised with its own mean and standard deviation — the speaker
    normalisation of the SER literature (e.g. Schuller et al.; the per-speaker column of the
    measured anchors in DESIGN.md). Statistics of the training speakers are kept; a speaker not
    seen at fit time (the test speaker of a speaker-independent fold, or a new user at inference)
    is standardised with statistics computed on *that speaker's rows of the batch being
    transformed*: its features only, never its labels. At least ``min_utterances`` utterances of
    such a speaker must be present, else :class:`~serkit.errors.ConfigError`.
``"none"``
    identity (the features are returned as float copies).

Inputs are either utterance-level matrices ``(n, d)`` or frame-level lists of ``n`` arrays of
shape ``(frames_i, d)``; for lists the statistics pool all frames of the relevant utterances and
the output is a list of the same shapes. Output dtype is the input's floating dtype (float64 for
integer input). Statistics are computed in float64 with the population standard deviation
(``ddof=0``). A dimension that is exactly constant over the data a statistic is computed on (or
has standard deviation 0) gets std = 1, so it is centred but not scaled and never divides by zero.

A row of an utterance-level matrix that is entirely NaN is a *missing* observation (a binaural
channel that is digital silence in that recording, :mod:`serkit.derived`): it is left out of
every statistic and of ``min_utterances``, and stays NaN. A feature missing in every row it is
fitted on (Side of a mono corpus) gets NaN statistics: it stays missing everywhere, and the model
decides what that means (``score_fusion`` leaves it out; ``linear_svm`` refuses it). A row that is partly NaN, or any
infinite value, is still a :class:`~serkit.errors.FeatureError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Union

import numpy as np

from serkit.errors import BundleError, ConfigError, FeatureError
from serkit.state_files import is_finite

Mode = Literal["global", "speaker", "none"]
MODES: tuple[str, ...] = ("global", "speaker", "none")

#: Utterance-level ``(n, d)`` matrix or frame-level list of ``(frames, d)`` arrays.
Features = Union[np.ndarray, Sequence[np.ndarray]]


@dataclass
class Normaliser:
    """Fitted standardisation statistics; build with :func:`fit_normaliser`.

    Attributes:
        mode: ``"global"``, ``"speaker"`` or ``"none"``.
        dim: feature dimension ``d`` seen at fit time.
        min_utterances: fewest utterances a speaker needs for its own statistics.
        mean_, std_: ``(d,)`` float64 statistics in ``"global"`` mode, else ``None``.
        speaker_stats_: ``{speaker: (mean (d,), std (d,))}`` in ``"speaker"`` mode.
    """

    mode: str
    dim: int
    min_utterances: int = 2
    mean_: np.ndarray | None = None
    std_: np.ndarray | None = None
    speaker_stats_: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def transform(self, features: Features, speakers: Sequence[str] | None = None) -> Features:
        """Standardise ``features`` (same layout and shapes as given).

        In ``"speaker"`` mode a speaker seen at fit time uses its stored statistics; any other
        speaker uses statistics of its own rows in this batch (features only). The fitted state
        is not changed.

        Args:
            features: ``(n, d)`` matrix or list of ``n`` arrays ``(frames_i, d)``.
            speakers: ``n`` speaker ids; required in ``"speaker"`` mode, ignored otherwise.

        Raises:
            FeatureError: wrong layout, dimension other than :attr:`dim`, NaN/Inf.
            ConfigError: ``"speaker"`` mode without ``speakers``, wrong length, or an unseen
                speaker with fewer than ``min_utterances`` utterances in the batch.
        """
        items, is_list = _as_items(features)
        _check_dim(items, self.dim)
        if self.mode == "none":
            out = [x.copy() for x in items]
        elif self.mode == "global":
            out = [(x - self.mean_) / self.std_ for x in items]
        else:
            spk = _check_speakers(speakers, len(items))
            stats = dict(self.speaker_stats_)
            for s in sorted(set(spk) - set(stats)):
                rows = [items[i] for i in range(len(items)) if spk[i] == s]
                stats[s] = _speaker_stats(rows, s, self.min_utterances)
            out = [(x - stats[s][0]) / stats[s][1] for x, s in zip(items, spk)]
        return _restore(out, items, is_list, features)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (plain lists of floats); inverse of :meth:`from_dict`."""
        out: dict[str, Any] = {"mode": self.mode, "dim": self.dim, "min_utterances": self.min_utterances}
        if self.mode == "global":
            out["mean"] = _json_vector(self.mean_)
            out["std"] = self.std_.tolist()
        elif self.mode == "speaker":
            out["speakers"] = {s: {"mean": _json_vector(m), "std": v.tolist()} for s, (m, v) in self.speaker_stats_.items()}
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "normaliser") -> Normaliser:
        """Rebuild a normaliser saved by :meth:`to_dict`.

        Args:
            data: the parsed JSON.
            where: the file (and key) it came from, for messages.

        Raises:
            BundleError: not an object, missing keys, unknown mode, a dimension or
                ``min_utterances`` below 1, statistics of the wrong length, a standard deviation
                that is not a finite number > 0, or a mean that is neither all finite nor all
                null (a feature missing in every training row); the message names ``where``.
        """
        if not isinstance(data, dict):
            raise BundleError(f"{where}: must be an object, got {type(data).__name__}")
        mode, dim, least = data.get("mode"), data.get("dim"), data.get("min_utterances", 2)
        if mode not in MODES:
            raise BundleError(f"{where}: field 'mode' must be one of {', '.join(MODES)}, got {mode!r}")
        for name, value in (("dim", dim), ("min_utterances", least)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BundleError(f"{where}: field {name!r} must be an integer >= 1, got {value!r}")
        norm = cls(mode=mode, dim=dim, min_utterances=least)
        if mode == "global":
            norm.mean_, norm.std_ = _saved_stats(data, dim, where)
        elif mode == "speaker":
            speakers = data.get("speakers")
            if not isinstance(speakers, dict):
                raise BundleError(f"{where}: field 'speakers' must be an object of per-speaker statistics")
            norm.speaker_stats_ = {str(s): _saved_stats(v, dim, f"{where}: speakers.{s}") for s, v in speakers.items()}
        return norm


def fit_normaliser(
    mode: str, features: Features, speakers: Sequence[str] | None = None, *, min_utterances: int = 2
) -> Normaliser:
    """Fit standardisation statistics on a training fold.

    Args:
        mode: ``"global"``, ``"speaker"`` or ``"none"`` (module docstring).
        features: ``(n, d)`` matrix or list of ``n`` arrays ``(frames_i, d)`` of the training rows.
        speakers: ``n`` speaker ids (required for ``"speaker"``).
        min_utterances: fewest utterances a speaker needs for its own statistics (at fit time and
            for unseen speakers at transform time); default 2, since one utterance-level vector
            standardised by its own mean is all zeros.

    Returns:
        A fitted :class:`Normaliser`.

    Raises:
        ConfigError: unknown mode, missing/mismatched ``speakers``, ``min_utterances < 1`` or a
            training speaker with fewer than ``min_utterances`` utterances.
        FeatureError: empty input, inconsistent dimensions, NaN/Inf.
    """
    if mode not in MODES:
        raise ConfigError(f"unknown normalisation {mode!r}; choose one of {', '.join(MODES)}")
    if isinstance(min_utterances, bool) or not isinstance(min_utterances, (int, np.integer)) or min_utterances < 1:
        raise ConfigError(f"min_utterances must be an integer >= 1, got {min_utterances!r}")
    items, _ = _as_items(features)
    dim = _check_dim(items, None)
    norm = Normaliser(mode=mode, dim=dim, min_utterances=int(min_utterances))
    if mode == "global":
        norm.mean_, norm.std_ = _stats(items)
    elif mode == "speaker":
        spk = _check_speakers(speakers, len(items))
        for s in sorted(set(spk)):
            rows = [items[i] for i in range(len(items)) if spk[i] == s]
            norm.speaker_stats_[s] = _speaker_stats(rows, s, norm.min_utterances)
    return norm


# --------------------------------------------------------------------------- pure helpers


def _stats(items: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (ddof=0) per dimension over all observed rows of ``items``; constant dims -> std 1.

    Every row missing: mean NaN and std 1, so the feature stays missing (NaN) wherever it is
    transformed.
    """
    observed = [x for x in items if not _missing(x)]
    if not observed and items:
        return np.full(items[0].shape[1], np.nan), np.ones(items[0].shape[1])
    stacked = np.concatenate(observed, axis=0).astype(np.float64, copy=False)
    if stacked.shape[0] == 0:
        raise FeatureError("cannot compute normalisation statistics on zero frames")
    mean = stacked.mean(axis=0)
    std = stacked.std(axis=0)
    constant = (stacked.max(axis=0) == stacked.min(axis=0)) | (std == 0)
    std[constant] = 1.0
    return mean, std


def _speaker_stats(rows: list[np.ndarray], speaker: str, min_utterances: int) -> tuple[np.ndarray, np.ndarray]:
    observed = sum(not _missing(x) for x in rows)
    if 0 < observed < min_utterances:
        raise ConfigError(
            f"speaker normalisation: speaker {speaker!r} has {observed} utterance(s) with the feature, "
            f"fewer than min_utterances={min_utterances}"
        )
    return _stats(rows)


def _missing(x: np.ndarray) -> bool:
    """Whether ``x`` is a missing utterance-level observation: one row, all NaN."""
    return x.shape[0] == 1 and bool(np.isnan(x).all())


def _as_items(features: Features) -> tuple[list[np.ndarray], bool]:
    """Split features into a list of 2-D arrays (one per utterance); flag list input."""
    if isinstance(features, np.ndarray):
        if features.ndim != 2:
            raise FeatureError(f"utterance-level features must be (n, d), got shape {features.shape}")
        if features.shape[0] == 0:
            raise FeatureError("no utterances to normalise")
        _check_finite(features[~np.isnan(features).all(axis=1)] if np.issubdtype(features.dtype, np.floating) else features)
        return [features[i : i + 1] for i in range(features.shape[0])], False
    if not isinstance(features, (list, tuple)) or len(features) == 0:
        raise FeatureError("features must be an (n, d) array or a non-empty list of (frames, d) arrays")
    items = []
    for i, x in enumerate(features):
        x = np.asarray(x)
        if x.ndim != 2:
            raise FeatureError(f"frame-level item {i} must be (frames, d), got shape {x.shape}")
        _check_finite(x)
        items.append(x)
    return items, True


def _check_finite(x: np.ndarray) -> None:
    if not np.issubdtype(x.dtype, np.number):
        raise FeatureError(f"features must be numeric, got dtype {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise FeatureError(f"features contain {int(np.count_nonzero(~np.isfinite(x)))} NaN/Inf value(s)")


def _check_dim(items: list[np.ndarray], dim: int | None) -> int:
    dims = {x.shape[1] for x in items}
    if len(dims) != 1:
        raise FeatureError(f"features have inconsistent dimensions {sorted(dims)}")
    found = dims.pop()
    if dim is not None and found != dim:
        raise FeatureError(f"normaliser was fitted on {dim}-dimensional features, got {found}")
    return found


def _check_speakers(speakers: Sequence[str] | None, n: int) -> list[str]:
    if speakers is None:
        raise ConfigError("speaker normalisation needs the speaker id of every utterance")
    spk = [str(s) for s in speakers]
    if len(spk) != n:
        raise ConfigError(f"got {len(spk)} speaker ids for {n} utterances")
    return spk


def _restore(out: list[np.ndarray], items: list[np.ndarray], is_list: bool, original: Features) -> Features:
    dtypes = [x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float64) for x in items]
    out = [y.astype(dt, copy=False) for y, dt in zip(out, dtypes)]
    if is_list:
        return out
    return np.concatenate(out, axis=0)


def _json_vector(values: np.ndarray) -> list[float | None]:
    """Plain floats, NaN (a feature missing in every training row) as ``None``: JSON has no NaN."""
    return [None if np.isnan(v) else float(v) for v in values]


def _saved_stats(data: Any, dim: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, std)`` ``(dim,)`` float64 from saved JSON lists, checked (see :meth:`Normaliser.from_dict`)."""
    if not isinstance(data, dict):
        raise BundleError(f"{where}: must be an object with mean and std")
    out = []
    for name in ("mean", "std"):
        values = data.get(name)
        ok = isinstance(values, list) and len(values) == dim
        if ok and name == "mean" and all(v is None for v in values):
            out.append(np.full(dim, np.nan))  # a feature missing in every training row
            continue
        ok = ok and all(is_finite(v) for v in values)
        if ok and name == "std":
            ok = all(v > 0 for v in values)
        if not ok:
            what = "finite numbers > 0" if name == "std" else "finite numbers (or all null)"
            raise BundleError(f"{where}: field {name!r} must be a list of {dim} {what}")
        out.append(np.asarray(values, dtype=np.float64))
    return out[0], out[1]
