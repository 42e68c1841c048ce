"""Unsupervised adaptation of feature standardisation to the recordings being labelled.

A model standardises its inputs with statistics of its training data
(:mod:`serkit.features.normalise`). On speech from another corpus, microphone or language those
statistics are off, and that shift is the largest loss of a model used outside its corpora
(cross-corpus SER: Schuller et al., "Cross-corpus acoustic emotion recognition: variances and
strategies", IEEE TAC 2010, Sec. IV, speaker and corpus normalisation). Without any label, the
recordings being labelled can give their own statistics:

``"none"``
    the training statistics (what the model saw);
``"batch"``
    every input standardised with the mean and standard deviation of the batch being labelled
    (all windows of one call: the files of one ``serkit predict``, a folder, one long recording,
    one service request);
``"speaker"``
    the same per group of the batch (a speaker column of a manifest, or a channel).

Statistics come from the features only; labels are never read. A group needs at least
``min_windows`` windows; a smaller one keeps the training statistics and is reported. Own
statistics remove what the whole group shares: a group that holds one emotion throughout
(a calm call, an angry speaker) is centred on it, and its emotion is erased. So the predictions
made with the training statistics are checked first: when one class takes at least
:data:`UNIFORM_SHARE` of a group's windows, the group is reported as too uniform to adapt on
(it is still adapted; the note says so).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from serkit.errors import ConfigError
from serkit.features.data import FeatureData
from serkit.features.normalise import Normaliser, fit_normaliser

ADAPT_MODES = ("none", "batch", "speaker")
#: Fewest windows a group needs for its own statistics (default of ``--min-batch``).
MIN_WINDOWS = 20
#: Share of one class, predicted with the training statistics, above which a group is "uniform".
UNIFORM_SHARE = 0.7


@dataclass
class Adapted:
    """Standardised inputs and what adaptation did.

    Attributes:
        inputs: key -> standardised features (``(n, d)`` or a list of ``(frames, d)``).
        groups: group -> ``"adapted"`` or ``"training statistics"`` (the statistics used).
        notes: human-readable warnings (group too small, too uniform).
    """

    inputs: dict[str, FeatureData]
    groups: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def check_adapt(mode: str, min_windows: int) -> None:
    """Raise :class:`ConfigError` for an unknown ``mode`` or ``min_windows < 2``."""
    if mode not in ADAPT_MODES:
        raise ConfigError(f"adapt must be one of {', '.join(ADAPT_MODES)}, got {mode!r}")
    if isinstance(min_windows, bool) or not isinstance(min_windows, (int, np.integer)) or min_windows < 2:
        raise ConfigError(f"min_batch must be an integer >= 2, got {min_windows!r}")


def standardise(
    normalisers: Mapping[str, Normaliser],
    raw: Mapping[str, FeatureData],
    groups: Sequence[str],
    mode: str = "none",
    *,
    min_windows: int = MIN_WINDOWS,
    predict: Callable[[dict[str, FeatureData]], np.ndarray] | None = None,
    labels: Sequence[str] = (),
) -> Adapted:
    """Standardise raw model inputs with the training statistics or the batch's own (module docstring).

    Args:
        normalisers: the bundle's fitted normalisers, one per input key (training statistics).
        raw: key -> unnormalised features of ``n`` windows (``(n, d)`` or a list of ``n``
            ``(frames, d)`` arrays).
        groups: ``(n,)`` group of each window: the speaker (channel) for ``"speaker"``; ignored
            for ``"batch"`` (one group) and ``"none"``. A speaker-normalised bundle uses them in
            every mode (its training statistics are per speaker).
        mode: one of :data:`ADAPT_MODES`.
        min_windows: fewest windows a group needs for its own statistics.
        predict: the model's ``predict_proba`` on standardised inputs; when given, the uniformity
            check runs on the training-statistics predictions of each adapted group.
        labels: class names for the notes.

    Returns:
        :class:`Adapted`.

    Raises:
        ConfigError: bad ``mode`` or ``min_windows``, ``groups`` of the wrong length.
        FeatureError: features of the wrong width or not finite (as the normalisers).
    """
    check_adapt(mode, min_windows)
    n = len(next(iter(raw.values()))) if raw else 0
    groups = np.asarray([str(g) for g in groups])
    if len(groups) != n:
        raise ConfigError(f"adapt: {len(groups)} groups for {n} windows")
    trained = {key: normalisers[key].transform(data, groups) for key, data in raw.items()}
    if mode == "none":
        return Adapted(trained, {g: "training statistics" for g in dict.fromkeys(groups)})
    if mode == "batch":
        groups = np.full(n, "batch")
    out = Adapted({key: _copy(data) for key, data in trained.items()})
    baseline = predict(trained) if predict is not None else None
    for g in dict.fromkeys(groups):
        rows = np.flatnonzero(groups == g)
        if len(rows) < min_windows:
            out.groups[g] = "training statistics"
            out.notes.append(f"{g}: {len(rows)} windows, fewer than {min_windows}: not adapted (training statistics)")
            continue
        out.groups[g] = "adapted"
        for key, data in raw.items():
            part = data[rows] if isinstance(data, np.ndarray) else [data[i] for i in rows]
            own = fit_normaliser("global", part).transform(part)
            if isinstance(data, np.ndarray):
                out.inputs[key][rows] = own
            else:
                for i, x in zip(rows, own):
                    out.inputs[key][i] = x
        if baseline is not None:
            counts = np.bincount(baseline[rows].argmax(axis=1), minlength=baseline.shape[1])
            top = int(counts.argmax())
            if counts[top] >= UNIFORM_SHARE * len(rows):
                name = labels[top] if top < len(labels) else str(top)
                out.notes.append(
                    f"{g}: {counts[top] / len(rows):.0%} of the windows are {name} with the training statistics; "
                    "own statistics assume mixed emotions and may erase one held throughout"
                )
    return out


def _copy(data: FeatureData) -> FeatureData:
    return data.copy() if isinstance(data, np.ndarray) else [x.copy() for x in data]
