"""Masked attention pooling of the attention-BLSTM-FCN paper (Zhao et al., IEEE Access 2019).

Two poolings turn a padded sequence of vectors into one vector per utterance:

- :class:`LinearAttentionPooling`, the 1-D attention on top of the BLSTM (Sec. III-B.2, eq. 5–6):
  linear scores ``f(x_i) = Wᵀ x_i``, softmax over time, weighted sum;
- :class:`TanhAttentionPooling`, the attention pooling on top of the FCN (Sec. III-C.2, eq. 8–10):
  ``e_i = uᵀ tanh(W a_i + b)``, scaled softmax ``α_i ∝ exp(λ e_i)``, weighted sum.

Both take a boolean mask (True on real positions): padded positions get weight exactly zero, so
a padded batch pools to the same vectors as each utterance on its own.
"""

from __future__ import annotations

import torch
from torch import nn

from serkit.errors import ConfigError


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Scaled softmax over the last axis restricted to ``mask`` (Zhao et al. 2019, eq. 5 and eq. 9).

    ``α_i = exp(λ s_i) / Σ_{k ∈ mask} exp(λ s_k)`` on masked-in positions, 0 elsewhere. ``λ = 1``
    is the ordinary softmax (eq. 5), ``λ = 0`` gives uniform weights over the real positions.

    Args:
        scores: ``(B, L)`` float scores.
        mask: ``(B, L)`` bool, True on real positions; every row needs at least one.
        scale: ``λ >= 0``.

    Returns:
        ``(B, L)`` weights of ``scores``' dtype, each row summing to one.

    Raises:
        ConfigError: ``scale < 0``, shapes differ, or a row of ``mask`` is all False.
    """
    if scale < 0:
        raise ConfigError(f"attention scale λ must be >= 0, got {scale}")
    if scores.shape != mask.shape:
        raise ConfigError(f"scores {tuple(scores.shape)} and mask {tuple(mask.shape)} differ in shape")
    if not bool(mask.any(dim=-1).all()):
        raise ConfigError("every sequence needs at least one unmasked position")
    scaled = (scale * scores).masked_fill(~mask, float("-inf"))
    return torch.softmax(scaled, dim=-1)


class LinearAttentionPooling(nn.Module):
    """1-D attention with a linear scoring function (Zhao et al. 2019, Sec. III-B.2, eq. 5–6).

    ``f(x_i) = Wᵀ x_i`` (``W`` in R^dim, no bias: a bias cancels in the softmax),
    ``α = softmax(f(x))`` over the real positions, output ``Σ_i α_i x_i``.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Linear(dim, 1, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool ``x`` ``(B, L, dim)`` with ``mask`` ``(B, L)`` bool.

        Returns:
            ``(B, dim)`` pooled vectors and ``(B, L)`` attention weights (rows sum to one).
        """
        weights = masked_softmax(self.score(x).squeeze(-1), mask)
        return torch.einsum("bl,bld->bd", weights, x), weights


class TanhAttentionPooling(nn.Module):
    """Attention pooling with a tanh MLP and a scaled softmax (Zhao et al. 2019, Sec. III-C.2, eq. 8–10).

    ``e_i = uᵀ tanh(W a_i + b)`` (eq. 8), ``α_i = exp(λ e_i) / Σ_k exp(λ e_k)`` (eq. 9),
    ``c = Σ_i α_i a_i`` (eq. 10). The paper uses ``λ = 0.3``; ``λ = 0`` is mean pooling.

    Args:
        dim: size ``C`` of the annotation vectors ``a_i``.
        hidden: rows of ``W`` (the paper does not give it; serkit uses ``dim`` by default).
        scale: ``λ`` in [0, 1].

    Raises:
        ConfigError: ``scale`` outside [0, 1] or ``hidden < 1``.
    """

    def __init__(self, dim: int, hidden: int | None = None, scale: float = 0.3):
        super().__init__()
        if not 0.0 <= scale <= 1.0:
            raise ConfigError(f"attention scale λ must be in [0, 1] (Zhao et al. 2019, eq. 9), got {scale}")
        hidden = dim if hidden is None else hidden
        if hidden < 1:
            raise ConfigError(f"attention hidden size must be >= 1, got {hidden}")
        self.scale = float(scale)
        self.project = nn.Linear(dim, hidden)
        self.u = nn.Linear(hidden, 1, bias=False)

    def forward(self, a: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool annotations ``a`` ``(B, L, C)`` with ``mask`` ``(B, L)`` bool.

        Returns:
            ``(B, C)`` utterance vectors ``c`` and ``(B, L)`` weights ``α`` (rows sum to one).
        """
        energies = self.u(torch.tanh(self.project(a))).squeeze(-1)
        weights = masked_softmax(energies, mask, self.scale)
        return torch.einsum("bl,blc->bc", weights, a), weights
