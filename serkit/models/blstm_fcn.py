"""Attention-BLSTM-FCN (Zhao et al., "Exploring deep spectrum representations via attention-based
recurrent and convolutional neural networks for speech emotion recognition", IEEE Access 2019).

A log-mel spectrogram (``logmel`` extractor with ``filterbank: librosa``, 16 kHz, Hamming
25 ms / 10 ms, 40 bands; Sec. III-A) goes through two parallel branches (Sec. III, Fig. 1):

- **Attention-BLSTM** (Sec. III-B): BLSTM layers of 128 × 2 cells, the two directions combined
  linearly per frame (eq. 3, hidden states; or eq. 4, cell states), then linear-score softmax
  attention over time (eq. 5–6);
- **Attention-FCN** (Sec. III-C): three blocks of conv (64, 128, 128 filters, stride 1) →
  max-pool → batch norm → ReLU → dropout; the ``F × T × C`` output read as ``L = F·T``
  annotation vectors (eq. 7) and pooled with ``e_i = uᵀ tanh(W a_i + b)`` and a scaled softmax,
  ``λ = 0.3`` (eq. 8–10).

The two utterance vectors are concatenated (the *deep spectrum* representation; the derived
feature ``blstm_fcn_deep_spectrum`` of :mod:`serkit.derived.deep_spectrum` feeds it to an SVM)
and classified by a DNN. Training uses the class-weighted cross-entropy with ``r_k = N / N_k``
(eq. 11) and Adam (lr 1e-3), batch 100, up to 100 epochs (Sec. IV-B), early stopping on
held-out training speakers (:mod:`serkit.training.trainer`).

**Variable length.** The paper feeds 40 × 500 inputs; serkit keeps every utterance whole: a batch
is zero-padded to its longest utterance and every stage is masked so the padding has no effect —
each BLSTM direction runs on its own (the backward one on sequences reversed within their
length), the FCN re-zeroes padded frames before each convolution, its batch norm takes
statistics over real frames only, the mask follows each max-pool (a pooled
position is real only when its whole window is, ``T -> floor(T / pool)``, exactly what pooling
the unpadded utterance keeps), and both attentions give padded positions zero weight. A padded
batch therefore yields the same utterance vectors as each utterance alone (tested). Utterances
shorter than ``pool ** blocks`` frames (8 frames = 95 ms by default) are zero-padded up to it.

**Batch-norm recalibration** (not in the paper): dropout inside the FCN blocks shifts the batch
norms' input statistics between training and evaluation, which made the FCN-only rows predict one
class; after every epoch the norms' running statistics are re-estimated on the training
utterances with dropout off (:func:`recalibrate_batch_norm`, option ``bn_recalibrate``).

**Adam's "decay of 1e-6"** is the Keras optimiser argument of the time: inverse-time learning-rate
decay per update, ``lr_t = lr / (1 + 1e-6 t)``. At ≤ 100 updates per epoch for ≤ 100 epochs it
changes the learning rate by less than 1 %; serkit's shared trainer keeps the learning rate
constant, i.e. this decay is not applied. It is not an L2 weight decay (``weight_decay`` stays 0).

Table 5's comparison rows are configurations of the same model (``recipes/blstm_fcn*.yaml``):
``branches`` picks the BLSTM and/or FCN branch, ``bidirectional: false`` gives Attention-LSTM,
``fcn_pooling: mean`` the FCN baseline (masked global average pooling instead of attention).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from serkit.errors import ConfigError
from serkit.blocks.attention import (
    LinearAttentionPooling,
    TanhAttentionPooling,
    masked_softmax,
)
from serkit.blocks.sequences import length_mask, reverse_within_length
from serkit.features.data import Inputs
from serkit.features.layout import Layout
from serkit.models.base import register
from serkit.models.network import TorchSERModel
from serkit.training.trainer import TrainConfig

BRANCHES = ("blstm", "fcn")


def class_weights(counts: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Class weights ``r_k = N / N_k`` (Zhao et al. 2019, eq. 11).

    Args:
        counts: ``(K,)`` non-negative training-example counts ``N_k``.

    Returns:
        ``(K,)`` float32 weights; a class without training examples gets weight 0 (it never
        occurs as a target, and an infinite weight would poison the loss).

    Raises:
        ConfigError: negative counts or no examples at all.
    """
    counts = torch.as_tensor(counts, dtype=torch.float64)
    if bool((counts < 0).any()) or float(counts.sum()) <= 0:
        raise ConfigError(f"class counts must be non-negative with a positive total, got {counts.tolist()}")
    total = counts.sum()
    safe = torch.where(counts > 0, counts, torch.ones_like(counts))
    return torch.where(counts > 0, total / safe, torch.zeros_like(counts)).float()


def select_feature(keys: Sequence[str], wanted: str | None, who: str) -> str:
    """The feature key a model reads: ``wanted``, or the only key when ``wanted`` is ``None``.

    Raises:
        ConfigError: ``wanted`` is not among ``keys``, or it is ``None`` and there is not exactly one key.
    """
    if wanted is None:
        if len(keys) != 1:
            raise ConfigError(f"{who}: several features {sorted(keys)}; set model.config.feature")
        return next(iter(keys))
    if wanted not in keys:
        raise ConfigError(f"{who}: feature {wanted!r} not among the inputs {sorted(keys)}")
    return wanted


# --------------------------------------------------------------------------- BLSTM branch


def lstm_cell_states(lstm: nn.LSTM, inputs: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
    """Cell states ``c_t`` of a one-layer, one-direction LSTM, recomputed from its inputs and outputs.

    ``nn.LSTM`` returns hidden states only; the cell-state output of Zhao et al. 2019 (eq. 4)
    needs ``c_t``. Every gate depends only on ``x_t`` and ``h_{t-1}``, so all gates are computed
    at once from the returned hidden states and the recurrence ``c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t``
    (``c_{-1} = 0``) is an element-wise scan.

    Args:
        lstm: the ``batch_first``, single-layer, unidirectional LSTM that produced ``outputs``.
        inputs: ``(B, T, n_in)`` inputs it was run on (from ``h_{-1} = c_{-1} = 0``).
        outputs: ``(B, T, H)`` its hidden states.

    Returns:
        ``(B, T, H)`` cell states.
    """
    h_prev = torch.cat([torch.zeros_like(outputs[:, :1]), outputs[:, :-1]], dim=1)
    gates = inputs @ lstm.weight_ih_l0.T + lstm.bias_ih_l0 + h_prev @ lstm.weight_hh_l0.T + lstm.bias_hh_l0
    i, f, g, _ = gates.chunk(4, dim=-1)  # PyTorch's gate order: input, forget, cell, output
    i, f, g = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g)
    c = torch.zeros_like(outputs[:, 0])
    cells = []
    for t in range(inputs.shape[1]):
        c = f[:, t] * c + i[:, t] * g[:, t]
        cells.append(c)
    return torch.stack(cells, dim=1)


class AttentionBLSTM(nn.Module):
    """Attention-BLSTM branch (Zhao et al. 2019, Sec. III-B, eq. 3–6).

    Stacked BLSTM layers (dropout between layers), per-frame output
    ``y_t = W_f s_t^fwd + W_b s_t^bwd + b`` with ``s`` the hidden states (eq. 3) or the cell
    states (eq. 4) of the last layer, then :class:`LinearAttentionPooling` (eq. 5–6).

    Each direction is a unidirectional ``nn.LSTM`` on the zero-padded batch; the backward one
    reads every sequence reversed within its own length (:func:`reverse_within_length`), so it
    starts at the last real frame. Real frames never see padding: the result equals running each
    utterance alone. (Packed sequences would do the same, but their backward pass on the CPU was
    50–70 times slower in torch 2.13.)

    Args:
        n_in: input dimension (mel bands).
        hidden: cells per direction (paper: 128).
        layers: stacked layers (paper: 1–3, best 2).
        bidirectional: False gives the Attention-LSTM row of Table 5.
        output: ``"hidden"`` (eq. 3) or ``"cell"`` (eq. 4).
        dropout: dropout between stacked layers.

    Output dimension :attr:`dim` = ``hidden``.
    """

    def __init__(self, n_in: int, hidden: int, layers: int, bidirectional: bool, output: str, dropout: float):
        super().__init__()
        dirs = 2 if bidirectional else 1
        self.layers = nn.ModuleList(
            nn.ModuleList(nn.LSTM(n_in if k == 0 else dirs * hidden, hidden, batch_first=True) for _ in range(dirs))
            for k in range(layers)
        )
        self.output = output
        self.dropout = nn.Dropout(dropout)
        self.combine = nn.Linear(dirs * hidden, hidden)
        self.attention = LinearAttentionPooling(hidden)
        self.dim = hidden

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``(B, T, n_in)`` padded, ``lengths`` ``(B,)`` -> ``(B, hidden)`` vectors and ``(B, T)`` weights."""
        mask = length_mask(lengths.to(x.device), x.shape[1])
        for k, directions in enumerate(self.layers):
            if k > 0:
                x = self.dropout(x)
            hidden, states = [], []
            for d, lstm in enumerate(directions):
                seq = x if d == 0 else reverse_within_length(x, lengths)
                h = lstm(seq)[0]
                s = lstm_cell_states(lstm, seq, h) if self.output == "cell" and k == len(self.layers) - 1 else h
                if d == 1:
                    h, s = reverse_within_length(h, lengths), reverse_within_length(s, lengths)
                hidden.append(h)
                states.append(s)
            x = torch.cat(hidden, dim=-1) * mask[:, :, None].to(x.dtype)
        return self.attention(self.combine(torch.cat(states, dim=-1)), mask)


# --------------------------------------------------------------------------- FCN branch


class MaskedBatchNorm2d(nn.BatchNorm2d):
    """Batch norm over ``(B, C, F, T)`` whose training statistics use real time frames only.

    In evaluation mode it is ``nn.BatchNorm2d`` (running statistics). In training mode the mean and
    (biased) variance per channel pool the positions where ``mask`` is True; the running
    statistics are updated with the unbiased variance, as ``nn.BatchNorm2d`` does (exponential
    average with ``momentum``, or the cumulative average of all batches when ``momentum`` is
    ``None``, which :func:`recalibrate_batch_norm` uses).
    """

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """``x`` ``(B, C, F, T)``, ``mask`` ``(B, T)`` bool -> normalised ``x``."""
        if not self.training:
            return super().forward(x)
        weight = mask[:, None, None, :].to(x.dtype)
        count = weight.sum() * x.shape[2]
        mean = (x * weight).sum(dim=(0, 2, 3)) / count
        var = ((x - mean[None, :, None, None]) ** 2 * weight).sum(dim=(0, 2, 3)) / count
        with torch.no_grad():
            self.num_batches_tracked += 1
            factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            unbiased = var * count / max(float(count) - 1.0, 1.0)
            self.running_mean.mul_(1 - factor).add_(factor * mean)
            self.running_var.mul_(1 - factor).add_(factor * unbiased)
        normed = (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + self.eps)
        return normed * self.weight[None, :, None, None] + self.bias[None, :, None, None]


@torch.no_grad()
def recalibrate_batch_norm(module: nn.Module, batches: Iterable[Mapping[str, torch.Tensor]]) -> None:
    """Re-estimate the running statistics of every :class:`MaskedBatchNorm2d` with dropout off.

    The FCN block order of the paper (conv → max-pool → BN → ReLU → dropout, Sec. III-C) puts a
    dropout before the next block's batch norm: during training that norm sees dropped-out inputs,
    whose variance (and, after the ReLU, mean) differs from the evaluation-mode inputs without
    dropout, so the running statistics gathered in training do not fit evaluation (the "variance
    shift" of Li et al., "Understanding the disharmony between dropout and batch normalization",
    CVPR 2019). Measured on an EmoDB fold with the reduced FCN (``benchmarks/bn_shift.py``): in
    evaluation mode the third norm's input variance was 0.48 × its running variance and its mean
    0.59 running standard deviations off, and the network predicted near one class on its own
    training utterances.

    This forward-passes ``batches`` (the training utterances, whole, as evaluation sees them)
    with dropout off and every batch norm normalising with its batch's statistics, and sets each
    norm's running statistics to their average over the batches (PyTorch's ``momentum=None``
    cumulative average). Weights are not changed; ``module`` keeps its train/eval mode.
    """
    norms = [m for m in module.modules() if isinstance(m, MaskedBatchNorm2d)]
    if not norms:
        return
    was_training = module.training
    module.eval()
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
        norm.train()
    for batch in batches:
        module(batch)
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    module.train(was_training)


class AttentionFCN(nn.Module):
    """Attention-FCN branch (Zhao et al. 2019, Sec. III-C, eq. 7–10).

    Blocks of conv (``kernel × kernel``, stride 1, zero "same" padding) → max-pool
    (``pool × pool``) → batch norm → ReLU → dropout, then the ``F' × T' × C`` output read as
    ``L = F'·T'`` annotation vectors ``a_i`` in R^C (eq. 7) and pooled with
    :class:`TanhAttentionPooling` (``λ = scale``, eq. 8–10) or, for the FCN baseline of Table 5,
    a masked mean. Padding is masked at every stage (module docstring).

    Args:
        n_mels: input bands ``F`` (must reach at least 1 after the pools).
        filters: filters per block (paper: 64, 128, 128).
        kernel: odd square kernel size (the paper tuned it but does not report it; 3 here).
        pool: square max-pool size (not reported; 2 here).
        dropout: dropout after each block.
        pooling: ``"attention"`` or ``"mean"``.
        scale: ``λ`` of the scaled softmax (paper: 0.3).

    Output dimension :attr:`dim` = ``filters[-1]``.
    """

    def __init__(
        self,
        n_mels: int,
        filters: Sequence[int],
        kernel: int,
        pool: int,
        dropout: float,
        pooling: str,
        scale: float,
    ):
        super().__init__()
        self.pool = pool
        self.min_frames = pool ** len(filters)
        if n_mels // self.min_frames < 1:
            raise ConfigError(f"{n_mels} mel bands vanish after {len(filters)} max-pools of {pool}")
        channels = [1, *filters]
        self.convs = nn.ModuleList(nn.Conv2d(channels[k], channels[k + 1], kernel, padding=kernel // 2) for k in range(len(filters)))
        self.norms = nn.ModuleList(MaskedBatchNorm2d(c) for c in filters)
        self.dropout = nn.Dropout(dropout)
        self.attention = TanhAttentionPooling(filters[-1], scale=scale) if pooling == "attention" else None
        self.dim = filters[-1]

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``(B, T, F)`` padded, ``lengths`` ``(B,)`` -> ``(B, C)`` vectors and ``(B, F'·T')`` weights.

        Weights are laid out frequency-major: index ``f * T' + t``.
        """
        if x.shape[1] < self.min_frames:
            x = nn.functional.pad(x, (0, 0, 0, self.min_frames - x.shape[1]))
        z = x.transpose(1, 2).unsqueeze(1)  # (B, 1, F, T)
        for conv, norm in zip(self.convs, self.norms):
            z = z * length_mask(lengths, z.shape[-1])[:, None, None, :].to(z.dtype)
            z = nn.functional.max_pool2d(conv(z), self.pool)
            lengths = torch.clamp(lengths // self.pool, min=1)
            mask = length_mask(lengths, z.shape[-1])
            z = self.dropout(torch.relu(norm(z, mask)))
        batch, channels, bands, frames = z.shape
        annotations = z.permute(0, 2, 3, 1).reshape(batch, bands * frames, channels)
        mask = mask[:, None, :].expand(batch, bands, frames).reshape(batch, bands * frames)
        if self.attention is not None:
            return self.attention(annotations, mask)
        weights = masked_softmax(torch.zeros_like(mask, dtype=annotations.dtype), mask, 0.0)
        return torch.einsum("bl,blc->bc", weights, annotations), weights


# --------------------------------------------------------------------------- the network


class AttentionBLSTMFCNNet(nn.Module):
    """The two branches, their concatenation and the DNN classifier (Zhao et al. 2019, Fig. 1).

    ``forward(batch)`` takes the trainer's batch dict (``batch[key]`` ``(B, T, F)`` and
    ``batch[key + "_lengths"]``) and returns logits ``(B, K)``; :meth:`embed` returns the fused
    ``(B, dim)`` deep-spectrum vector that feeds the DNN.
    """

    def __init__(self, key: str, n_mels: int, n_classes: int, config: BLSTMFCNConfig):
        super().__init__()
        c = config
        self.key = key
        self.blstm = (
            AttentionBLSTM(n_mels, c.lstm_hidden, c.lstm_layers, c.bidirectional, c.lstm_output, c.dropout)
            if "blstm" in c.branches
            else None
        )
        self.fcn = (
            AttentionFCN(n_mels, c.fcn_filters, c.fcn_kernel, c.fcn_pool, c.dropout, c.fcn_pooling, c.attention_scale)
            if "fcn" in c.branches
            else None
        )
        self.dim = sum(branch.dim for branch in (self.blstm, self.fcn) if branch is not None)
        layers: list[nn.Module] = []
        width = self.dim
        for size in c.dnn_hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(c.dropout)]
            width = size
        layers.append(nn.Linear(width, n_classes))
        self.dnn = nn.Sequential(*layers)

    def embed(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The concatenated utterance vectors ``[BLSTM ; FCN]``, ``(B, dim)``."""
        x, lengths = batch[self.key], batch[f"{self.key}_lengths"]
        parts = [branch(x, lengths)[0] for branch in (self.blstm, self.fcn) if branch is not None]
        return torch.cat(parts, dim=1)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.dnn(self.embed(batch))


@dataclass(frozen=True)
class BLSTMFCNConfig(TrainConfig):
    """Options of :class:`AttentionBLSTMFCN` (defaults: the paper's best system, Sec. IV-B).

    Attributes:
        feature: key of the frame-level log-mel input; ``None`` takes the only feature.
        branches: ``("blstm", "fcn")``, ``("blstm",)`` or ``("fcn",)``.
        lstm_layers, lstm_hidden: stacked LSTM layers (1–3) and cells per direction (128).
        bidirectional: False for the Attention-LSTM row.
        lstm_output: ``"hidden"`` (eq. 3) or ``"cell"`` (eq. 4).
        fcn_filters, fcn_kernel, fcn_pool: FCN blocks (64, 128, 128; kernel and pool sizes are
            not reported in the paper: 3 and 2).
        fcn_pooling: ``"attention"`` (eq. 8–10) or ``"mean"`` (FCN baseline).
        attention_scale: ``λ`` of eq. 9 (0.3).
        dropout: dropout rate of the FCN blocks, between LSTM layers and in the DNN (the paper
            uses dropout without giving the rate).
        dnn_hidden: hidden layer sizes of the DNN classifier (not reported).
        class_weighted: weight the cross-entropy by ``r_k = N / N_k`` (eq. 11).
        max_train_frames: during training only, utterances longer than this are cut to a random
            window of this many frames (the paper's fixed input is 500 frames); ``None`` trains on
            whole utterances. Validation, test and prediction always see whole utterances.
        bn_recalibrate: after every epoch, re-estimate the FCN's batch-norm statistics on the
            whole training utterances with dropout off (:func:`recalibrate_batch_norm`; not in
            the paper, which does not say how it evaluates). ``False`` keeps the statistics
            gathered during training, which do not fit evaluation when ``dropout > 0``.
    """

    batch_size: int = 100
    max_epochs: int = 100
    patience: int = 10
    feature: str | None = None
    branches: tuple[str, ...] = BRANCHES
    lstm_layers: int = 2
    lstm_hidden: int = 128
    bidirectional: bool = True
    lstm_output: Literal["hidden", "cell"] = "hidden"
    fcn_filters: tuple[int, ...] = (64, 128, 128)
    fcn_kernel: int = 3
    fcn_pool: int = 2
    fcn_pooling: Literal["attention", "mean"] = "attention"
    attention_scale: float = 0.3
    dropout: float = 0.3
    dnn_hidden: tuple[int, ...] = (128,)
    class_weighted: bool = True
    max_train_frames: int | None = None
    bn_recalibrate: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        branches = tuple(self.branches)
        if not branches or len(set(branches)) != len(branches) or not set(branches) <= set(BRANCHES):
            raise ConfigError(f"blstm_fcn: branches must be a non-empty subset of {BRANCHES}, got {self.branches!r}")
        if self.lstm_layers < 1 or self.lstm_hidden < 1:
            raise ConfigError("blstm_fcn: lstm_layers and lstm_hidden must be >= 1")
        if self.lstm_output not in ("hidden", "cell"):
            raise ConfigError(f"blstm_fcn: lstm_output must be 'hidden' or 'cell', got {self.lstm_output!r}")
        if self.fcn_pooling not in ("attention", "mean"):
            raise ConfigError(f"blstm_fcn: fcn_pooling must be 'attention' or 'mean', got {self.fcn_pooling!r}")
        if not self.fcn_filters or min(self.fcn_filters) < 1 or self.fcn_kernel % 2 != 1 or self.fcn_pool < 1:
            raise ConfigError("blstm_fcn: fcn_filters must be positive, fcn_kernel odd, fcn_pool >= 1")
        if not 0.0 <= self.attention_scale <= 1.0:
            raise ConfigError(f"blstm_fcn: attention_scale must be in [0, 1], got {self.attention_scale}")
        if not 0.0 <= self.dropout < 1.0 or any(size < 1 for size in self.dnn_hidden):
            raise ConfigError("blstm_fcn: dropout must be in [0, 1) and dnn_hidden sizes >= 1")
        if self.max_train_frames is not None and self.max_train_frames < self.fcn_pool ** len(self.fcn_filters):
            raise ConfigError("blstm_fcn: max_train_frames must be None or at least fcn_pool ** len(fcn_filters)")


@register
class AttentionBLSTMFCN(TorchSERModel):
    """Attention-BLSTM-FCN of Zhao et al. 2019 (module docstring) on serkit's shared trainer.

    Input: one frame-level feature, float32 ``(frames_i, n_mels)`` per utterance (log-mel).
    """

    name = "blstm_fcn"
    Config = BLSTMFCNConfig

    def feature_key(self, keys: Sequence[str]) -> str:
        """The input key this model reads among ``keys`` (see :func:`select_feature`)."""
        return select_feature(keys, self.config.feature, self.name)

    def build(self, layouts: Mapping[str, Layout], n_classes: int) -> nn.Module:
        key = self.feature_key(list(layouts))
        return AttentionBLSTMFCNNet(key, layouts[key].dim, n_classes, self.config)

    def make_batch(self, X: Inputs, index: np.ndarray, *, train: bool, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        key = self.feature_key(list(X))
        if not isinstance(X[key], list):
            raise ConfigError(f"{self.name}: feature {key!r} must be frame-level (a list of (frames, n_mels) arrays)")
        limit = self.config.max_train_frames
        if train and limit is not None:
            items = [X[key][i] for i in index]
            starts = [int(rng.integers(0, len(x) - limit + 1)) if len(x) > limit else 0 for x in items]
            return super().make_batch({key: [x[s : s + limit] for x, s in zip(items, starts)]}, np.arange(len(items)), train=train, rng=rng)
        return super().make_batch({key: X[key]}, index, train=train, rng=rng)

    def before_evaluation(self, module: nn.Module, X: Inputs, device: torch.device) -> None:
        """Batch-norm recalibration on the training utterances (``bn_recalibrate``), FCN only."""
        if not self.config.bn_recalibrate or "fcn" not in self.config.branches:
            return
        recalibrate_batch_norm(module, (batch for _, batch in self.eval_batches(X, device)))

    def training_loss(
        self, module: nn.Module, batch: dict[str, torch.Tensor], y: torch.Tensor, class_counts: torch.Tensor
    ) -> torch.Tensor:
        """Cross-entropy weighted by ``r_k = N / N_k`` of the training set (eq. 11), or unweighted.

        PyTorch's weighted mean divides by the summed weights of the batch's targets, so the
        overall scale of ``r`` (``N`` vs. 1) does not matter, only the ratios ``1 / N_k``.
        """
        weight = class_weights(class_counts).to(y.device) if self.config.class_weighted else None
        return nn.functional.cross_entropy(module(batch), y, weight=weight)

    @torch.no_grad()
    def embed(self, X: Inputs) -> np.ndarray:
        """Deep-spectrum vectors (the fused ``[BLSTM ; FCN]`` vector before the DNN), ``(n, dim)`` float32.

        Computed in evaluation mode, utterances of similar length batched together.
        """
        module = self.module_.eval()
        out = np.zeros((len(X[self.feature_key(list(X))]), module.dim), dtype=np.float32)
        for index, batch in self.eval_batches(X, next(module.parameters()).device):
            out[index] = module.embed(batch).cpu().numpy()
        return out

