"""Focal loss, generalised to several classes with a weighting factor per class (msir-2024 eq. 7).

MSIR (Sec. 3.3) writes the focal loss of Lin et al. (ICCV 2017, the paper's ref. [25]) as

    L_FL(p) = -ζ (1 - p)^θ log(p)

with ``p`` the predicted probability of the true class, weighting factor ``ζ ∈ [0, 1]`` and
focus factor ``θ >= 0``. With several classes, ``ζ`` may differ per class (``ζ_y`` for an
utterance of class ``y``). At ``θ = 0`` the loss is the ζ-weighted cross-entropy; with ``ζ = 0.5``
it is half the cross-entropy (the paper's "ζ = 0.5 is the standard cross-entropy", up to that
constant factor).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from serkit.errors import ConfigError


def class_weights(
    zeta: float | Sequence[float] | str, class_counts: np.ndarray | torch.Tensor
) -> torch.Tensor:
    """Per-class ζ as a float32 tensor ``(K,)``.

    Args:
        zeta: one value for every class, ``K`` values, or ``"balanced"``: ζ_k proportional to
            ``1 / N_k`` (classes absent from training get the largest weight), scaled so that the
            weights average 0.5 over the ``K`` classes.
        class_counts: ``(K,)`` training utterances per class.

    Raises:
        ConfigError: a value outside ``[0, 1]`` (balanced weights may exceed 1 for rare classes
            and are not clipped), a wrong number of values, or an unknown string.
    """
    counts = torch.as_tensor(np.asarray(class_counts), dtype=torch.float32)
    k = len(counts)
    if isinstance(zeta, str):
        if zeta != "balanced":
            raise ConfigError(
                f"zeta must be a number, a list of K numbers or 'balanced', got {zeta!r}"
            )
        inverse = 1.0 / counts.clamp(min=1.0)
        return 0.5 * k * inverse / inverse.sum()
    values = torch.as_tensor(
        np.atleast_1d(np.asarray(zeta, dtype=np.float64)), dtype=torch.float32
    )
    if values.numel() == 1:
        values = values.expand(k).clone()
    if values.numel() != k:
        raise ConfigError(f"zeta has {values.numel()} values for {k} classes")
    if bool(((values < 0) | (values > 1)).any()):
        raise ConfigError(f"zeta values must lie in [0, 1], got {values.tolist()}")
    return values


def focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, zeta: torch.Tensor, theta: float
) -> torch.Tensor:
    """Mean focal loss over a batch (msir-2024 eq. 7, per-class ζ).

    Args:
        logits: ``(B, K)`` unnormalised scores.
        targets: ``(B,)`` int64 class indices.
        zeta: ``(K,)`` weighting factors (:func:`class_weights`).
        theta: focus factor ``θ >= 0`` (0: weighted cross-entropy).

    Returns:
        Scalar tensor: ``mean_b  -ζ_{y_b} (1 - p_b)^θ log p_b`` with ``p_b`` the softmax
        probability of ``y_b``.

    Raises:
        ConfigError: ``theta < 0``.
    """
    if theta < 0:
        raise ConfigError(f"the focus factor theta must be >= 0, got {theta}")
    log_p = F.log_softmax(logits, dim=1).gather(1, targets[:, None])[:, 0]
    modulating = (1.0 - log_p.exp()).clamp(min=0.0) ** theta if theta > 0 else 1.0
    return (-zeta.to(logits.device)[targets] * modulating * log_p).mean()
