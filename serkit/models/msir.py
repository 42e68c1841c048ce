"""MSIR: multi-source low-level information with recurrent branches (Wu, Li, Zhao, Xu, IEICE 2024).

Three branches read three frame-level inputs, each pools its frames with attention, the pooled
vectors are concatenated and classified (msir-2024 Sec. 3, Fig. 1):

- **CR branch** (Sec. 3.1, eq. 1–3; after ACRNN, the paper's ref. [18]) on log-Mels with Δ
  (2 channels; 3 with Δ²): 5×3 convolutions (time × frequency), the first with 128 kernels,
  batch normalisation and one 2×2 max-pool, the others with 256 kernels, Leaky-ReLU; a
  fully-connected layer per frame; a BiLSTM whose two directions are concatenated (eq. 3);
  attention pooling (eq. 2).
- **LLD branch** (Sec. 3.2, eq. 4) on openSMILE ComParE LLDs (+ Δ, Δ²): BiLSTM whose directions
  are *summed* (the paper's definition under eq. 5), attention pooling.
- **encoder branch** (Sec. 3.2, eq. 5) on frozen speech-encoder frames
  (:mod:`serkit.features.encoders`): the same, optionally after a learned softmax-weighted sum
  of several encoder layers (when the encoder feature holds more than one: ``layer: all``; not
  in the paper, which uses one layer).

The inputs' layouts say what the recipe no longer repeats: the log-Mel's band count and its
static/Δ/Δ² channels (``delta × mel``), and how many encoder layers are stacked
(``layer × unit``).

Attention (eq. 2, 4, 5): the paper writes ``P = ω · tanh(D)`` (and ``D ⊙ (ω · tanh(D))`` for the
CR branch) for a BiLSTM output ``D`` of ``T`` frames; read, as in its refs. [18] and [31], as
attention pooling: scores ``e_t = ω^T tanh(d_t)``, weights ``α = softmax_t(e)`` over the real
(unpadded) frames, output ``Σ_t α_t d_t``.

Fusion (eq. 6): concatenation, fully-connected layers, softmax. Loss (eq. 7): focal loss with
per-class ζ and focus θ (:mod:`serkit.blocks.focal_loss`), or cross-entropy (``loss:
cross_entropy``, Table 1's "MSIR (w/o FL)"). Adam; the learning rate may be chosen from a grid
(Sec. 4.1) on the validation speakers; batch 64; up to 100 epochs with early stopping
(:mod:`serkit.training.trainer`).

Every Table 1 row is this class with branches switched off by setting their feature key to
``None`` (``recipes/msir*.yaml``): ACRNN (2D / 3D: CR only), LLF-LSTM (1D/2D/3D-LLD: LLD only),
ACRNN + LLF-LSTM, encoder only ("w2v-EN"), LLF-LSTM + encoder, MSIR w/o FL, MSIR.

Not stated in the paper, chosen here (and configurable): the number of 256-kernel layers
(ACRNN has five; default one, for CPU cost), the per-frame FC width (768, as ACRNN), BiLSTM
units (128 per direction, as ACRNN), the classifier (one hidden layer of 64 units, ReLU, dropout
0.2), ζ = 0.25 and θ = 2 (Lin et al.'s recommended setting). Batch-norm momentum is the paper's
0.99 in Keras' convention (``torch`` momentum 0.01); its 0.001 weight decay on that layer is not
applied.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from serkit.blocks.attention import masked_softmax
from serkit.blocks.focal_loss import class_weights, focal_loss
from serkit.blocks.sequences import length_mask, reverse_within_length
from serkit.errors import ConfigError
from serkit.features.data import Inputs
from serkit.features.layout import DELTA, LAYER, MEL, Layout
from serkit.models.base import Layouts, register
from serkit.models.network import TorchSERModel
from serkit.training.trainer import TrainConfig

#: Branch names in the fused vector's order (eq. 6).
BRANCHES = ("cr", "lld", "encoder")


# --------------------------------------------------------------------------- building blocks


class AttentionPooling(nn.Module):
    """Attention pooling over frames (msir-2024 eq. 2, 4, 5; module docstring).

    ``forward(h (B, T, dim) float32, mask (B, T) bool)`` returns the pooled ``(B, dim)`` and the
    weights ``(B, T)``, zero on padded frames and summing to one over each row's real frames.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Linear(dim, 1, bias=False)

    def forward(
        self, h: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        weights = masked_softmax(self.score(torch.tanh(h))[..., 0], mask)
        return torch.einsum("bt,btd->bd", weights, h), weights


class RecurrentPooling(nn.Module):
    """BiLSTM over the real frames, directions concatenated (eq. 3) or summed (eq. 4–5), then attention.

    ``forward(x (B, T, d_in), lengths (B,))`` returns pooled ``(B, out_dim)`` and weights ``(B, T)``.
    Each direction is a unidirectional ``nn.LSTM`` on the zero-padded batch; the backward one
    reads each sequence reversed within its own length, so real frames never see padding and an
    utterance gives the same states alone or in a batch. (Packed sequences do the same, but their
    backward pass on the CPU was 50–70 times slower in torch 2.13.)
    """

    def __init__(self, d_in: int, hidden: int, merge: Literal["concat", "sum"]):
        super().__init__()
        self.forward_lstm = nn.LSTM(d_in, hidden, batch_first=True)
        self.backward_lstm = nn.LSTM(d_in, hidden, batch_first=True)
        self.merge = merge
        self.out_dim = 2 * hidden if merge == "concat" else hidden
        self.attention = AttentionPooling(self.out_dim)

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = lengths.to(x.device)
        forward_h = self.forward_lstm(x)[0]
        backward_h = reverse_within_length(
            self.backward_lstm(reverse_within_length(x, lengths))[0], lengths
        )
        if self.merge == "sum":
            h = forward_h + backward_h
        else:
            h = torch.cat([forward_h, backward_h], dim=-1)
        return self.attention(h, length_mask(lengths, x.shape[1]))


class ConvRecurrentBranch(nn.Module):
    """The CR branch (msir-2024 Sec. 3.1, eq. 1–3): conv 5×3 layers, one 2×2 max-pool, FC per frame, BiLSTM, attention.

    Input ``(B, T, channels * n_mels)`` with blocks ``[static, Δ, (Δ²)]`` as the ``logmel``
    extractor lays them out; it is viewed as ``(B, channels, T, n_mels)``. Padded frames are
    zeroed after every convolution, so an utterance gives the same output alone or in a batch
    (up to batch-norm statistics in training mode). Time after pooling: ``ceil(T / 2)``.
    """

    def __init__(self, channels: int, n_mels: int, cfg: MSIRConfig):
        super().__init__()
        self.channels, self.n_mels = channels, n_mels
        kt, kf = cfg.kernel
        layers = []
        previous = channels
        for i, width in enumerate(cfg.conv_channels):
            block: list[nn.Module] = [
                nn.Conv2d(previous, width, (kt, kf), padding=(kt // 2, kf // 2))
            ]
            if i == 0:
                block.append(nn.BatchNorm2d(width, momentum=0.01))
            block.append(nn.LeakyReLU(cfg.leaky_slope))
            layers.append(nn.Sequential(*block))
            previous = width
        self.convs = nn.ModuleList(layers)
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        self.frame_fc = nn.Linear(previous * -(-n_mels // 2), cfg.frame_fc)
        self.recurrent = RecurrentPooling(cfg.frame_fc, cfg.hidden, "concat")
        self.out_dim = self.recurrent.out_dim

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, _ = x.shape
        h = x.view(b, t, self.channels, self.n_mels).permute(0, 2, 1, 3)
        for i, conv in enumerate(self.convs):
            h = conv(h) * length_mask(lengths, h.shape[2])[:, None, :, None]
            if i == 0:
                h = self.pool(h)
                lengths = (lengths + 1) // 2
        h = h.permute(0, 2, 1, 3).flatten(2)
        return self.recurrent(self.frame_fc(h), lengths)


class LayerWeightedSum(nn.Module):
    """Softmax-weighted sum of ``n`` stacked encoder layers: ``(B, T, n * d) -> (B, T, d)``."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n
        self.logits = nn.Parameter(torch.zeros(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, width = x.shape
        return torch.einsum(
            "btnd,n->btd",
            x.view(b, t, self.n, width // self.n),
            torch.softmax(self.logits, 0),
        )


class MSIRNet(nn.Module):
    """The fused network (msir-2024 Fig. 1, eq. 6): enabled branches, concatenation, FC layers.

    ``forward(batch)`` takes :meth:`TorchSERModel.make_batch`'s dict and returns logits ``(B, K)``;
    :meth:`attention` returns each branch's frame weights.
    """

    def __init__(self, cfg: MSIRConfig, layouts: Mapping[str, Layout], n_classes: int):
        super().__init__()
        self.keys = cfg.branch_keys
        self.branches = nn.ModuleDict()
        if "cr" in self.keys:
            logmel = layouts[self.keys["cr"]]
            self.branches["cr"] = ConvRecurrentBranch(logmel.size(DELTA), logmel.size(MEL), cfg)
        if "lld" in self.keys:
            self.branches["lld"] = RecurrentPooling(layouts[self.keys["lld"]].dim, cfg.hidden, "sum")
        if "encoder" in self.keys:
            encoder = layouts[self.keys["encoder"]]
            n = encoder.size(LAYER) if encoder.has(LAYER) else 1
            self.mix = LayerWeightedSum(n) if n > 1 else nn.Identity()
            self.branches["encoder"] = RecurrentPooling(encoder.dim // n, cfg.hidden, "sum")
        width = sum(branch.out_dim for branch in self.branches.values())
        head: list[nn.Module] = []
        for units in cfg.classifier:
            head += [nn.Linear(width, units), nn.ReLU(), nn.Dropout(cfg.dropout)]
            width = units
        head.append(nn.Linear(width, n_classes))
        self.head = nn.Sequential(*head)

    def pooled(
        self, batch: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The fused utterance vector ``S`` ``(B, width)`` (eq. 6) and each branch's attention weights."""
        parts, weights = [], {}
        for name, branch in self.branches.items():
            key = self.keys[name]
            x = batch[key]
            if name == "encoder":
                x = self.mix(x)
            pooled, weights[name] = branch(x, batch[f"{key}_lengths"])
            parts.append(pooled)
        return torch.cat(parts, dim=1), weights

    def attention(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Branch name -> attention weights ``(B, T_branch)`` (zero on padding, rows sum to one)."""
        return self.pooled(batch)[1]

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.pooled(batch)[0])


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class MSIRConfig(TrainConfig):
    """MSIR options (module docstring for the paper's values and the choices made here).

    Attributes:
        logmel_key, lld_key, encoder_key: the recipe's feature keys feeding the CR, LLD and
            encoder branches; ``None`` switches a branch off (Table 1 variants). Each must be a
            frame-level feature; the log-Mel's layout must name its ``delta`` and ``mel`` axes
            (the ``logmel`` extractor's does).
        conv_channels: kernels of the CR branch's convolutions, first to last (first: BN + pool).
        kernel: convolution size (time, frequency).
        leaky_slope: Leaky-ReLU negative slope.
        frame_fc: width of the per-frame fully-connected layer before the CR BiLSTM.
        hidden: LSTM units per direction in every branch.
        classifier: hidden fully-connected layer widths after the fusion.
        dropout: dropout after each hidden classifier layer.
        loss: ``"focal"`` (eq. 7) or ``"cross_entropy"`` (MSIR w/o FL).
        zeta: ζ, one value, one per class, or ``"balanced"`` (see
            :func:`~serkit.blocks.focal_loss.class_weights`).
        theta: focus factor θ >= 0.
        learning_rates: when given, ``fit`` trains once per rate (Sec. 4.1's grid is
            5e-6 … 1e-2) and keeps the model with the best validation score;
            ``learning_rate`` is then ignored.
    """

    logmel_key: str | None = "logmel"
    lld_key: str | None = "lld"
    encoder_key: str | None = "encoder"
    conv_channels: tuple[int, ...] = (128, 256)
    kernel: tuple[int, int] = (5, 3)
    leaky_slope: float = 0.01
    frame_fc: int = 768
    hidden: int = 128
    classifier: tuple[int, ...] = (64,)
    dropout: float = 0.2
    loss: Literal["focal", "cross_entropy"] = "focal"
    zeta: float | tuple[float, ...] | str = 0.25
    theta: float = 2.0
    learning_rates: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.branch_keys:
            raise ConfigError(
                "msir: at least one of logmel_key, lld_key, encoder_key must be set"
            )
        if self.loss not in ("focal", "cross_entropy"):
            raise ConfigError(
                f"msir: loss must be 'focal' or 'cross_entropy', got {self.loss!r}"
            )
        if self.theta < 0:
            raise ConfigError(f"msir: theta must be >= 0, got {self.theta}")
        if (
            not self.conv_channels
            or len(self.kernel) != 2
            or min(*self.conv_channels, *self.kernel) < 1
        ):
            raise ConfigError(
                "msir: conv_channels needs at least one layer; kernel is (time, frequency) >= 1"
            )
        if self.hidden < 1 or self.frame_fc < 1:
            raise ConfigError("msir: hidden and frame_fc must be >= 1")
        if not 0 <= self.dropout < 1 or any(lr <= 0 for lr in self.learning_rates):
            raise ConfigError("msir: dropout must be in [0, 1) and learning rates > 0")

    @property
    def branch_keys(self) -> dict[str, str]:
        """Enabled branch name -> feature key, in :data:`BRANCHES` order."""
        keys = (self.logmel_key, self.lld_key, self.encoder_key)
        return {
            name: key
            for name, key in zip(BRANCHES, keys, strict=True)
            if key is not None
        }


@register
class MSIR(TorchSERModel):
    """MSIR and its Table 1 variants on serkit's trainer (module docstring).

    Inputs: the frame-level features named by the config's ``*_key`` options, each a list of
    ``(frames_i, dims)`` float32 arrays (frame rates may differ: every branch pools its own
    frames). Fitted state as :class:`~serkit.models.network.TorchSERModel`, plus
    ``learning_rate_`` (the rate kept).
    """

    name = "msir"
    Config = MSIRConfig

    def build(self, layouts: Mapping[str, Layout], n_classes: int) -> nn.Module:
        """The untrained :class:`MSIRNet` for inputs of these layouts.

        Raises:
            ConfigError: a branch's feature is missing, or the log-Mel's layout does not name
                its ``delta`` and ``mel`` axes.
        """
        cfg = self.config
        for name, key in cfg.branch_keys.items():
            if key not in layouts:
                raise ConfigError(f"msir: the {name} branch reads feature {key!r}, inputs have {sorted(layouts)}")
        if "cr" in cfg.branch_keys and not {DELTA, MEL} <= set(layouts[cfg.logmel_key].names):
            raise ConfigError(
                f"msir: the CR branch needs a log-Mel laid out as delta × mel, {cfg.logmel_key!r} is {layouts[cfg.logmel_key]}"
            )
        return MSIRNet(cfg, layouts, n_classes)

    def training_loss(
        self,
        module: nn.Module,
        batch: dict[str, torch.Tensor],
        y: torch.Tensor,
        class_counts: torch.Tensor,
    ) -> torch.Tensor:
        """Focal loss (eq. 7) or cross-entropy on the module's logits."""
        logits = module(batch)
        if self.config.loss == "cross_entropy":
            return nn.functional.cross_entropy(logits, y)
        zeta = self.config.zeta
        return focal_loss(
            logits, y, class_weights(zeta, class_counts.cpu()), self.config.theta
        )

    def fit(
        self,
        X: Inputs,
        y: np.ndarray,
        *,
        labels: Sequence[str],
        groups: np.ndarray | None = None,
        seed: int = 0,
        valid: tuple[Inputs, np.ndarray] | None = None,
        layouts: Layouts | None = None,
    ) -> MSIR:
        """Train (see :meth:`TorchSERModel.fit`); with ``learning_rates``, once per rate on the
        same validation split, keeping the best validation score.

        Raises:
            ConfigError: as :meth:`TorchSERModel.fit`; a branch's feature is utterance level.
        """
        for name, key in self.config.branch_keys.items():
            if key in X and isinstance(X[key], np.ndarray):
                raise ConfigError(
                    f"msir: the {name} branch needs frame-level features, {key!r} is utterance level"
                )
        rates = self.config.learning_rates
        if not rates:
            super().fit(X, y, labels=labels, groups=groups, seed=seed, valid=valid, layouts=layouts)
            self.learning_rate_ = self.config.learning_rate
            self.grid_ = []
            return self
        trials = []
        grid = []
        for rate in rates:
            trial = type(self)(
                dataclasses.replace(self.config, learning_rate=rate, learning_rates=())
            )
            trial.fit(X, y, labels=labels, groups=groups, seed=seed, valid=valid, layouts=layouts)
            key = "valid_ua" if self.config.monitor == "ua" else "valid_loss"
            scores = [h[key] for h in trial.history_ if key in h]
            score = (
                (max(scores) if key == "valid_ua" else -min(scores))
                if scores
                else float("-inf")
            )
            grid.append(
                {"learning_rate": rate, "score": score, "best_epoch": trial.best_epoch_}
            )
            trials.append(trial)
        chosen = trials[int(np.argmax([g["score"] for g in grid]))]
        self.module_, self.labels_, self.layouts_ = chosen.module_, chosen.labels_, chosen.layouts_
        self.history_, self.best_epoch_ = chosen.history_, chosen.best_epoch_
        self.learning_rate_, self.grid_ = chosen.config.learning_rate, grid
        return self

    def fit_info(self) -> dict[str, Any]:
        rate = getattr(self, "learning_rate_", self.config.learning_rate)
        return {
            **super().fit_info(),
            "learning_rate": rate,
            "grid": getattr(self, "grid_", []),
        }
