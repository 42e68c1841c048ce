"""Regression deltas of frame-level features (HTK / openSMILE ``cDeltaRegression``).

For a feature sequence ``c`` of shape ``(frames, dims)`` and half-width ``W`` the delta of frame
``t`` is the least-squares slope over the ``2W + 1`` frames around it (HTK Book, Sec. 5.9):

    d_t = sum_{n=1..W} n (c_{t+n} - c_{t-n}) / (2 sum_{n=1..W} n^2)

Frames outside the sequence repeat the first / last frame (HTK's and python_speech_features'
edge rule), so the output has as many frames as the input. The slope is per frame, not per
second. Δ² is the delta of Δ.
"""

from __future__ import annotations

import numpy as np

from serkit.errors import ConfigError, FeatureError


def regression_delta(x: np.ndarray, width: int = 2) -> np.ndarray:
    """Regression delta of ``x`` along axis 0 (module docstring formula).

    Args:
        x: ``(frames, dims)`` (or ``(frames,)``) real array, at least one frame.
        width: half-width ``W`` of the regression window in frames, ``>= 1`` (openSMILE's
            ``deltawin``, HTK's ``DELTAWINDOW``; 2 in both).

    Returns:
        Array of ``x``'s shape and floating dtype (float64 for integer input).

    Raises:
        ConfigError: ``width`` is not a positive integer.
        FeatureError: ``x`` has no frames or more than two dimensions.
    """
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
        raise ConfigError(f"delta width must be a positive integer number of frames, got {width!r}")
    x = np.asarray(x)
    if x.ndim not in (1, 2) or x.shape[0] == 0:
        raise FeatureError(f"deltas need a (frames, dims) array with at least one frame, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    n = x.shape[0]
    padded = np.concatenate([np.repeat(x[:1], width, axis=0), x, np.repeat(x[-1:], width, axis=0)])
    out = np.zeros_like(x)
    for k in range(1, width + 1):
        out += k * (padded[width + k : width + k + n] - padded[width - k : width - k + n])
    out /= 2 * sum(k * k for k in range(1, width + 1))
    return out


def stack_deltas(x: np.ndarray, order: int, width: int = 2) -> np.ndarray:
    """Static features followed by their deltas up to ``order``: blocks ``[x, Δ, Δ², ...]``.

    Args:
        x: ``(frames, dims)`` features.
        order: 0 (return ``x``), 1 (``[x, Δ]``) or 2 (``[x, Δ, Δ²]``); higher orders continue
            the chain (Δ^k is the delta of Δ^(k-1)).
        width: regression half-width in frames (see :func:`regression_delta`).

    Returns:
        ``(frames, (order + 1) * dims)`` array of ``x``'s floating dtype.

    Raises:
        ConfigError: ``order`` is negative or not an integer, or ``width`` is invalid.
        FeatureError: ``x`` is not a non-empty 2-D array.
    """
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 0:
        raise ConfigError(f"delta order must be a non-negative integer, got {order!r}")
    x = np.asarray(x)
    if x.ndim != 2:
        raise FeatureError(f"stack_deltas needs a (frames, dims) array, got shape {x.shape}")
    blocks = [x]
    for _ in range(order):
        blocks.append(regression_delta(blocks[-1], width))
    return np.concatenate(blocks, axis=1)
