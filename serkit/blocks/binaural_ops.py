"""Pure functions of the binaural deep-representation system (Zhang et al., IEEE Access 2020).

The paper (``binaural-dcnn-2020``) turns each of the Left, Right, Mid and Side channels into
image-like log-Mel segments, learns segment features with an ImageNet CNN, pools them into one
utterance vector per channel, classifies with a linear SVM and fuses the channels' scores in two
stages. This module holds the maths of those steps, free of models and files:

- :func:`segment_starts`, :func:`segment_logmel` and :func:`segment_planes` — Sec. II-A: 64-frame
  segments of a 64-band log-Mel spectrogram, static / Δ / Δ² stacked as three image planes;
- :func:`block_pool` and :func:`global_pool` — Sec. II-C, Fig. 3, eq. 3–7: block-based temporal
  pooling of segment features ``X`` and their regression ``ΔX``, and the global pooling the paper
  compares it with (Tables 2–5).

The two-stage score fusion of Sec. II-D (eq. 8–10) is not binaural-specific and lives with the
model that applies it, :mod:`serkit.models.fusion`; the derived features that run these
functions in a recipe are in :mod:`serkit.derived.binaural`.

Choices where the paper is silent are stated in each docstring and in ``docs/results_binaural.md``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from serkit.errors import ConfigError, FeatureError
from serkit.features.deltas import regression_delta
from serkit.features.spectral import segment_starts

Pool = Literal["max", "avg"]


# --------------------------------------------------------------------------- segments (Sec. II-A)


def segment_logmel(logmel: np.ndarray, length: int = 64, hop: int = 32) -> np.ndarray:
    """Cut a log-Mel spectrogram into fixed-length segments (Sec. II-A: "a context window of 64 frames").

    An utterance shorter than ``length`` frames becomes one segment padded at the end with each
    band's minimum over the utterance (its quietest level), not with zeros, which would be a loud
    level in log units.

    Args:
        logmel: ``(frames, n_mels)`` finite log-Mel energies.
        length, hop: see :func:`segment_starts`.

    Returns:
        float32 ``(n_segments, length, n_mels)``.

    Raises:
        FeatureError: not a non-empty finite 2-D array.
        ConfigError: bad ``length``/``hop``.
    """
    logmel = np.asarray(logmel, dtype=np.float32)
    if (
        logmel.ndim != 2
        or logmel.shape[0] == 0
        or logmel.shape[1] == 0
        or not np.all(np.isfinite(logmel))
    ):
        raise FeatureError(
            f"segmenting needs a finite (frames, n_mels) log-Mel array, got shape {logmel.shape}"
        )
    starts = segment_starts(logmel.shape[0], length, hop)
    if logmel.shape[0] < length:
        pad = np.repeat(
            logmel.min(axis=0, keepdims=True), length - logmel.shape[0], axis=0
        )
        logmel = np.concatenate([logmel, pad])
    index = starts[:, None] + np.arange(length)[None, :]
    return logmel[index]


def is_silent(logmel: np.ndarray) -> bool:
    """True when a channel's log-Mel is exactly constant: digital silence.

    That is the Side channel of a mono recording (the degenerate case L = R, S = 0) or of a
    stereo file whose two channels are identical; any real recording varies. The rule holds
    after any affine normalisation of the log-Mel.
    """
    logmel = np.asarray(logmel)
    return logmel.size == 0 or float(np.ptp(logmel)) == 0.0


def segment_planes(
    logmel: np.ndarray, length: int = 64, hop: int = 32, delta_width: int = 2
) -> np.ndarray:
    """Image-like segments: static, Δ and Δ² log-Mel planes (Sec. II-A), standardised per utterance.

    Each ``length × n_mels`` static segment gets its first- and second-order regression
    coefficients along time, computed within the segment (the paper: "on the basis of the static
    segment … we compute its first order and second order regression coefficients"; HTK
    regression of half-width ``delta_width``, :func:`serkit.features.deltas.regression_delta`).
    Image rows are mel bands with the lowest band at the bottom, columns are frames.

    Scaling (the paper is silent): each plane is standardised with the mean and standard
    deviation of that plane over all segments of the utterance, so the three planes share the
    scale of a normalised ImageNet image (about zero mean, unit variance) while level changes
    between the segments of one utterance are kept. A constant plane is only centred.

    Args:
        logmel: ``(frames, n_mels)`` log-Mel energies of one channel.
        length, hop: see :func:`segment_starts`.
        delta_width: regression half-width in frames.

    Returns:
        float32 ``(n_segments, 3, n_mels, length)``.

    Raises:
        FeatureError, ConfigError: as :func:`segment_logmel`.
    """
    static = segment_logmel(logmel, length, hop).astype(np.float64)  # (S, T, F)
    delta = np.stack([regression_delta(s, delta_width) for s in static])
    delta2 = np.stack([regression_delta(d, delta_width) for d in delta])
    planes = np.stack([static, delta, delta2], axis=1)  # (S, 3, T, F)
    mean = planes.mean(axis=(0, 2, 3), keepdims=True)
    std = planes.std(axis=(0, 2, 3), keepdims=True)
    planes = (planes - mean) / np.where(std > 0, std, 1.0)
    # (S, 3, T, F) -> (S, 3, F, T) with the lowest band in the last row.
    return np.ascontiguousarray(
        planes.transpose(0, 1, 3, 2)[:, :, ::-1, :], dtype=np.float32
    )


# --------------------------------------------------------------------------- pooling (Sec. II-C)


def block_bounds(n: int, blocks: int) -> list[tuple[int, int]]:
    """Segment ranges ``[start, end)`` of ``blocks`` successive sub-blocks of ``n`` segments.

    With ``n >= blocks`` the blocks do not overlap, cover all segments and differ in size by at
    most one (``start_b = floor(b n / blocks)``). With fewer segments than blocks (a short
    utterance) block ``b`` is the single segment ``floor(b n / blocks)``: every block is defined
    and the segments are spread over the blocks in temporal order.

    Raises:
        ConfigError: ``blocks < 1``.
        FeatureError: ``n < 1``.
    """
    if (
        not isinstance(blocks, (int, np.integer))
        or isinstance(blocks, bool)
        or blocks < 1
    ):
        raise ConfigError(
            f"the number of sub-blocks must be an integer >= 1, got {blocks!r}"
        )
    if n < 1:
        raise FeatureError("pooling needs at least one segment")
    starts = [b * n // blocks for b in range(blocks)]
    return [(s, max((b + 1) * n // blocks, s + 1)) for b, s in enumerate(starts)]


def _pool(values: np.ndarray, mode: Pool) -> np.ndarray:
    if mode == "max":
        return np.abs(values).max(axis=0)
    return np.abs(values).mean(axis=0)


def _check_pool(X: np.ndarray, mode: str) -> np.ndarray:
    if mode not in ("max", "avg"):
        raise ConfigError(f"pooling must be 'max' or 'avg', got {mode!r}")
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0 or not np.all(np.isfinite(X)):
        raise FeatureError(
            f"pooling needs a finite (segments, dims) array with at least one segment, got {X.shape}"
        )
    return X


def block_pool(
    X: np.ndarray, blocks: int = 2, mode: Pool = "max", *, pyramid: bool = False
) -> np.ndarray:
    """Block-based temporal feature pooling (Sec. II-C, Fig. 3, eq. 3–7).

    ``ΔX`` is the first-order regression of the segment features along time (half-width 2, edge
    segments repeated; :func:`serkit.features.deltas.regression_delta`; one segment gives
    ``ΔX = 0``). ``X`` and ``ΔX`` are each split into ``blocks`` successive sub-blocks
    (:func:`block_bounds`) and every sub-block is pooled dimension by dimension over its
    segments; the result is ``f(X) = (f_l(X), f_l(ΔX))`` (eq. 3). Eq. 6–7 pool absolute values,
    ``max_j |x_j|``; ``"avg"`` averages the same absolute values. (CNN features after ReLU /
    ReLU6 are non-negative, so for ``X`` this is plain max / average pooling; for ``ΔX`` it is
    the size of the change, whatever its sign.)

    ``pyramid=True`` concatenates the levels ``l = 1 … blocks`` (eq. 4–5 read as a pyramid);
    the default uses the single level ``l = blocks`` (Fig. 3; the paper's setting ``l = 2``).

    Args:
        X: ``(n_segments, d)`` segment features of one utterance, in temporal order.
        blocks: ``l``, sub-blocks per level.
        mode: ``"max"`` or ``"avg"``.
        pyramid: concatenate all levels up to ``blocks``.

    Returns:
        float64 ``(2 d B,)`` with ``B = blocks`` (or ``blocks (blocks + 1) / 2`` for a pyramid):
        the blocks of ``X`` in temporal order, then those of ``ΔX``.

    Raises:
        ConfigError: bad ``blocks`` or ``mode``.
        FeatureError: ``X`` not a finite non-empty 2-D array.
    """
    X = _check_pool(X, mode)
    dX = regression_delta(X, 2)
    levels = range(1, blocks + 1) if pyramid else (blocks,)
    parts: list[np.ndarray] = []
    for values in (X, dX):
        for level in levels:
            parts.extend(
                _pool(values[a:b], mode) for a, b in block_bounds(len(values), level)
            )
    return np.concatenate(parts)


def global_pool(X: np.ndarray, mode: Pool = "max") -> np.ndarray:
    """Global max or average pooling of segment features over the whole utterance (Tables 2–5).

    The paper's comparison: "the global max or average operation is implemented on the whole
    divided segments" — ``X`` only, no ``ΔX``, no sub-blocks.

    Args:
        X: ``(n_segments, d)`` segment features.
        mode: ``"max"`` (``max_j |x_j|``) or ``"avg"`` (``mean_j |x_j|``), as :func:`block_pool`.

    Returns:
        float64 ``(d,)``.

    Raises:
        ConfigError, FeatureError: as :func:`block_pool`.
    """
    return _pool(_check_pool(X, mode), mode)


__all__ = [
    "block_bounds",
    "block_pool",
    "global_pool",
    "is_silent",
    "segment_logmel",
    "segment_planes",
    "segment_starts",
]
