"""The networks of the autoencoder with emotion embedding (Zhang and Xue 2021; emotion-embedding-ae).

Encoder (Sec. III-A: conv bank with kernels 1-8, convolutions with instance normalisation,
residual blocks, BiGRU), decoder with emotion-embedding layers (Sec. III-C), self-attention and
the classifier (Sec. III-D). The estimator that trains them, with the paper's loss (eq. 2-4) and
the options each ``cfg`` argument reads, is :class:`serkit.models.emotion_ae.EmotionAE`
(``cfg`` is its :class:`~serkit.models.emotion_ae.EmotionAEConfig`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from serkit.errors import ConfigError

class Conv(nn.Module):
    """Convolution (or per-frame FC with ``kernel=1``) -> Leaky-ReLU -> normalisation.

    "Same" zero padding, ``(k-1)//2`` frames before and ``k//2`` after:
    ``forward(x (B, c_in, T))`` returns ``(B, c_out, ceil(T / stride))``. ``norm`` is
    ``"instance"`` (per sample and channel over frames, no affine parameters; Sec. III-B [39]),
    ``"batch"`` (over the batch and frames [40]) or ``"none"``.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        *,
        norm: str,
        slope: float,
        stride: int = 1,
    ):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride=stride)
        self.pad = ((kernel - 1) // 2, kernel // 2)
        self.act = nn.LeakyReLU(slope)
        self.norm = make_norm(norm, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(x, self.pad)
        return self.norm(self.act(self.conv(x)))


def make_norm(norm: str, channels: int) -> nn.Module:
    """Instance norm (no affine parameters), batch norm or identity over ``(B, channels, T)``."""
    if norm == "instance":
        return nn.InstanceNorm1d(channels, affine=False)
    if norm == "batch":
        return nn.BatchNorm1d(channels)
    return nn.Identity()


def upsample_channels(x: torch.Tensor) -> torch.Tensor:
    """Re-read ``(B, 2C, T)`` as ``(B, C, 2T)``: channels ``2c`` and ``2c+1`` become frames ``2t``
    and ``2t+1`` of channel ``c`` (1-D sub-pixel up-sampling, decoder Conv1/3/5 of Table 2)."""
    b, c2, t = x.shape
    return x.view(b, c2 // 2, 2, t).transpose(2, 3).reshape(b, c2 // 2, 2 * t)


class EncoderBlock(nn.Module):
    """Two convolutions, the second with ``stride``; shortcut ``x[..., ::stride]`` (no pooling);
    dropout on the sum (Table 1, Conv3–Conv8 and FC1–FC4)."""

    def __init__(
        self,
        channels: int,
        kernel: int,
        stride: int,
        *,
        norm: str,
        slope: float,
        dropout: float,
    ):
        super().__init__()
        self.first = Conv(channels, channels, kernel, norm=norm, slope=slope)
        self.second = Conv(
            channels, channels, kernel, norm=norm, slope=slope, stride=stride
        )
        self.stride = stride
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(x[..., :: self.stride] + self.second(self.first(x)))


class DecoderBlock(nn.Module):
    """Emotion embedding added to the input, then two convolutions; with ``upsample`` the first
    doubles the channels, re-read as twice the frames, and the shortcut repeats each frame twice
    (Table 2, Conv1–Conv6 and FC1–FC4; Fig. 4)."""

    def __init__(
        self, channels: int, kernel: int, upsample: bool, *, norm: str, slope: float
    ):
        super().__init__()
        self.upsample = upsample
        width = 2 * channels if upsample else channels
        self.first = Conv(channels, width, kernel, norm="none", slope=slope)
        self.first_norm = make_norm(norm, channels)
        self.second = Conv(channels, channels, kernel, norm=norm, slope=slope)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None) -> torch.Tensor:
        if emb is not None:
            x = x + emb[:, :, None]
        h = self.first(x)
        if self.upsample:
            h, x = upsample_channels(h), x.repeat_interleave(2, dim=2)
        return x + self.second(self.first_norm(h))


class Encoder(nn.Module):
    """The encoder of Table 1 / Fig. 3 (module docstring).

    ``forward(x (B, n_bins, T) float32)`` returns the latent ``(B, channels, ceil(T / 8))``.
    """

    def __init__(self, cfg: Any, n_bins: int):
        super().__init__()
        norm, slope, c = cfg.norm, cfg.leaky_slope, cfg.channels
        self.bank = nn.ModuleList(
            Conv(n_bins, cfg.bank_channels, k, norm=norm, slope=slope)
            for k in range(1, cfg.bank_kernels + 1)
        )
        self.conv2 = Conv(
            n_bins + cfg.bank_kernels * cfg.bank_channels, c, 1, norm=norm, slope=slope
        )
        self.drop = nn.Dropout(cfg.dropout)
        conv_blocks = [
            EncoderBlock(c, 5, 2, norm=norm, slope=slope, dropout=cfg.dropout)
            for _ in range(3)
        ]
        dense_blocks = [
            EncoderBlock(c, 1, 1, norm=norm, slope=slope, dropout=cfg.dropout)
            for _ in range(2)
        ]
        self.blocks = nn.Sequential(*conv_blocks, *dense_blocks)
        self.gru = nn.GRU(c, cfg.encoder_gru, batch_first=True, bidirectional=True)
        self.fc5 = nn.Conv1d(c + 2 * cfg.encoder_gru, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.cat([x, *(conv(x) for conv in self.bank)], dim=1)
        h = self.blocks(self.drop(self.conv2(h)))
        rnn = self.gru(h.transpose(1, 2))[0].transpose(1, 2)
        return self.fc5(torch.cat([h, rnn], dim=1))


class Decoder(nn.Module):
    """The decoder of Table 2 / Fig. 4 (module docstring).

    ``forward(z (B, channels, T'), y (B,) int64 or None)`` returns the reconstruction
    ``(B, n_bins, 8 T')``; ``y`` is used only with emotion embedding.
    """

    def __init__(self, cfg: Any, n_bins: int, n_classes: int):
        super().__init__()
        norm, slope, c = cfg.norm, cfg.leaky_slope, cfg.channels
        self.embeddings = (
            nn.ModuleList(nn.Embedding(n_classes, c) for _ in range(5))
            if cfg.emotion_embedding
            else None
        )
        self.blocks = nn.ModuleList(
            [
                *(DecoderBlock(c, 3, True, norm=norm, slope=slope) for _ in range(3)),
                *(DecoderBlock(c, 1, False, norm=norm, slope=slope) for _ in range(2)),
            ]
        )
        self.gru = nn.GRU(c, cfg.decoder_gru, batch_first=True, bidirectional=True)
        width = c + 2 * cfg.decoder_gru + (c if cfg.emotion_embedding else 0)
        self.fc5 = nn.Conv1d(width, c, 1)
        self.act = nn.LeakyReLU(slope)
        self.fc6 = nn.Conv1d(c, n_bins, 1)

    def embed(self, y: torch.Tensor | None) -> list[torch.Tensor | None]:
        """The five embeddings ``(B, channels)`` of labels ``y`` (Emb1–5), or five ``None`` without EE."""
        if self.embeddings is None:
            return [None] * 5
        if y is None:
            raise ConfigError("the decoder with emotion embedding needs the labels y")
        return [table(y) for table in self.embeddings]

    def forward(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        emb = self.embed(y)
        h = z
        for i, block in enumerate(self.blocks):
            h = block(h, emb[i] if i < 3 else (emb[3] if i == 3 else None))
        if emb[4] is not None:
            h = h + emb[4][:, :, None]
        rnn = self.gru(h.transpose(1, 2))[0].transpose(1, 2)
        parts = (
            [h, rnn]
            if emb[4] is None
            else [h, rnn, emb[4][:, :, None].expand(-1, -1, h.shape[2])]
        )
        return self.fc6(self.act(self.fc5(torch.cat(parts, dim=1))))


class Classifier(nn.Module):
    """Self-attention, frame average, [IS10], FC layers (Table 3 / Fig. 5; module docstring).

    ``represent(z (B, channels, T'))`` returns the attended, averaged ``(B, channels)``;
    ``forward(rep (B, channels), functionals (B, d) or None)`` the logits ``(B, K)``.
    """

    def __init__(self, cfg: Any, n_functionals: int, n_classes: int):
        super().__init__()
        self.attention = nn.MultiheadAttention(
            cfg.channels, cfg.attention_heads, batch_first=True
        )
        layers: list[nn.Module] = []
        width = cfg.channels + n_functionals
        for i, units in enumerate(cfg.classifier):
            layers += [nn.Linear(width, units), nn.LeakyReLU(cfg.leaky_slope)]
            if i < 2:
                layers.append(nn.Dropout(cfg.dropout))
            width = units
        layers.append(nn.Linear(width, n_classes))
        self.head = nn.Sequential(*layers)

    def represent(self, z: torch.Tensor) -> torch.Tensor:
        frames = z.transpose(1, 2)
        return self.attention(frames, frames, frames, need_weights=False)[0].mean(dim=1)

    def forward(
        self, rep: torch.Tensor, functionals: torch.Tensor | None
    ) -> torch.Tensor:
        return self.head(
            rep if functionals is None else torch.cat([rep, functionals], dim=1)
        )


class EmotionAENet(nn.Module):
    """Encoder, decoder and classifier (Fig. 1).

    Batches come from :meth:`EmotionAE.make_batch`: ``spec`` ``(W, crop, n_bins)`` windows,
    ``functionals`` ``(B, d)`` when used, and at test time ``owner`` ``(W,)`` (the utterance of
    each window). ``forward(batch)`` returns ``(B, K)`` logits; with ``owner``, the log of the
    window-averaged class probabilities (module docstring), so their softmax is that average.
    """

    def __init__(
        self, cfg: Any, n_bins: int, n_functionals: int, n_classes: int
    ):
        super().__init__()
        self.encoder = Encoder(cfg, n_bins)
        self.decoder = Decoder(cfg, n_bins, n_classes)
        self.classifier = Classifier(cfg, n_functionals, n_classes)

    def encode(self, spec: torch.Tensor) -> torch.Tensor:
        """Latent ``(W, channels, crop / 8)`` of windows ``spec`` ``(W, crop, n_bins)``."""
        return self.encoder(spec.transpose(1, 2))

    def reconstruct(self, spec: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """``x' = decoder(encoder(x), y)`` (eq. 1) as ``(W, crop, n_bins)``."""
        return self.decoder(self.encode(spec), y).transpose(1, 2)

    def window_logits(
        self, batch: Mapping[str, torch.Tensor], z: torch.Tensor
    ) -> torch.Tensor:
        """Logits ``(W, K)`` of each window from its latent ``z``."""
        functionals = batch.get("functionals")
        if functionals is not None and "owner" in batch:
            functionals = functionals[batch["owner"]]
        return self.classifier(self.classifier.represent(z), functionals)

    def representation(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Utterance representations ``(B, channels)``: attended latent averaged over frames and
        over the utterance's windows (the deep emotion feature of Sec. III-C)."""
        rep = self.classifier.represent(self.encode(batch["spec"]))
        if "owner" not in batch:
            return rep
        return _average(rep, batch["owner"], int(batch["n_utterances"]))

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        logits = self.window_logits(batch, self.encode(batch["spec"]))
        if "owner" not in batch:
            return logits
        proba = _average(
            torch.softmax(logits, dim=1), batch["owner"], int(batch["n_utterances"])
        )
        return torch.log(proba.clamp_min(1e-30))


def _average(values: torch.Tensor, owner: torch.Tensor, n: int) -> torch.Tensor:
    """Mean of the rows of ``values`` ``(W, d)`` per owner index ``(W,)`` in ``[0, n)`` -> ``(n, d)``."""
    total = torch.zeros(n, values.shape[1], dtype=values.dtype, device=values.device)
    total.index_add_(0, owner, values)
    counts = torch.bincount(owner, minlength=n).to(values.dtype).clamp_min(1)
    return total / counts[:, None]
