"""Autoencoder with emotion embedding (Zhang and Xue, "Autoencoder With Emotion Embedding for
Speech Emotion Recognition", IEEE Access 2021; ``papers/emotion-embedding-ae.txt``).

Inputs (Sec. III-A): a 513-bin log-magnitude spectrogram (the ``stft`` extractor: 16 kHz,
``n_fft`` 1024, 50 ms Hann window, 12.5 ms hop — the paper defers to Tacotron [36] for the
analysis; 128 frames are 1.6 s) and, per utterance, the 1582 IS10 functionals
(``opensmile_functionals``, ``feature_set: IS10``).

Network (Fig. 1), all tensors ``(batch, channels, frames)`` inside:

- **Encoder** (Sec. III-B, Table 1, Fig. 3): a bank of eight 1-D convolutions with kernels
  1–8 (513 -> 128 each), concatenated with the input (8 * 128 + 513 = 1537), Conv2 (1 x 1,
  1537 -> 512), three residual blocks of two kernel-5 convolutions whose second one has
  stride 2 (Conv3–Conv8: 128 -> 16 frames), two residual blocks of two per-frame fully
  connected layers (FC1–FC4, 512 -> 512), a bidirectional GRU (hidden 128) whose output is
  concatenated with its input (512 + 256 = 768) and FC5 (768 -> 512). Every convolution and FC
  layer is followed by Leaky-ReLU and the normalisation (instance norm, or batch norm for the
  Table 4 rows without IN); dropout 0.5 follows Conv2 and each of the five residual blocks
  (Dropout1–6). No pooling (Sec. III-B): the strided blocks' shortcuts take every second frame.
- **Decoder** (Table 2, Fig. 4): three residual up-sampling blocks (Conv1/3/5 512 -> 1024,
  kernel 3, the 1024 channels re-read as 512 channels at twice the frame rate; Conv2/4/6
  512 -> 512; the shortcut repeats each frame twice: 16 -> 128 frames), two residual blocks of
  per-frame FC layers (FC1–FC4), a bidirectional GRU (hidden 256), FC5 (1536 -> 512) on
  [input, GRU output, embedding] and FC6 (512 -> 513). With emotion embedding (EE) the
  label ``y`` enters through five embedding tables Emb1–5 (``K x 512``): Emb1–3 are added to
  the input of the three up-sampling blocks, Emb4 to the input of the FC blocks, Emb5 to the
  GRU input and concatenated before FC5. Without EE the decoder never sees the label and FC5
  reads [input, GRU output] (1024 -> 512). ``x' = decoder(encoder(x), y)`` (eq. 1).
- **Classifier** (Sec. III-C, Table 3, Fig. 5): one-head scaled dot-product self-attention
  [48] over the encoder's 16 latent frames, averaged over frames (512), concatenated with the
  standardised IS10 vector (1582), FC 1024 -> 512 -> 128 -> K with Leaky-ReLU and dropout 0.5
  after FC1 and FC2 (Dropout1–2). Without openSMILE (AE−OS rows) FC1 reads the 512 alone.

Loss (eq. 2–4): ``L = MAE(x', x) + λ · NLL(y | x)`` on each training crop, the MAE averaged over
frames and bins and the NLL over the batch (the paper's sums over the data set, divided by a
constant). Adam, lr 1e-4, β = (0.9, 0.999), 40 epochs (Sec. IV-C), batch 16, early stopping on
one held-out training speaker (:mod:`serkit.training.trainer`).

Training crops (Sec. IV-A, Fig. 2): every epoch, each utterance gives one crop
``[t, t + 128)`` with ``t`` uniform in ``[0, T - 128)`` (``t = 0`` when ``T = 128``), so a crop
never runs past the end (:func:`crop_starts`). An utterance shorter than 128 frames is
repeated end to end until it fills 128 frames (:func:`fill_frames`): the network sees only real
speech frames and the instance-norm statistics are those of the utterance.

Test time (not in the paper): the label is unknown, and the classifier reads only the encoder
output (Fig. 5), so the **decoder is skipped** at prediction. A whole utterance of any length is
cut into 128-frame windows every 64 frames, the last one ending on the last frame
(:func:`serkit.features.spectral.segment_starts`); each window is classified with the utterance's IS10 vector and the
**class probabilities are averaged over windows**: windows are the very inputs the network was
trained on (a whole utterance at once would give instance norm and the GRU statistics they never
saw), and averaging posteriors is the usual soft vote over segments.

Choices where the paper is silent (configurable): Leaky-ReLU slope 0.01, instance norm without
affine parameters (as in [39]), zero padding "same" for convolutions (kernel ``k``: ``(k-1)//2``
frames before, ``k//2`` after), ``λ = 1``, batch 16, one crop per utterance per epoch.

Table 3 gives FC1 as 2478 -> 1024, i.e. a 896-d attention output beside the 1582 IS10
functionals; the encoder's frames are 512-d (Table 1) and the paper does not say how 896 arises,
so FC1 here reads 512 + 1582 = 2094 values.

Table 4 rows are configurations of one class (``recipes/emotion_ae*.yaml``):
``emotion_embedding`` (EE), ``norm: instance`` (IN) or ``batch``, and ``functionals_key: null``
(−OS).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from serkit.blocks.emotion_ae import EmotionAENet
from serkit.errors import ConfigError
from serkit.features.data import Inputs
from serkit.features.spectral import segment_starts
from serkit.features.layout import Layout
from serkit.models.base import register
from serkit.models.network import TorchSERModel
from serkit.training.trainer import TrainConfig

# --------------------------------------------------------------------------- crops and windows


def crop_starts(lengths: np.ndarray, crop: int, rng: np.random.Generator) -> np.ndarray:
    """Random crop starts ``t`` (emotion-embedding-ae Sec. IV-A, Fig. 2).

    ``t`` is uniform over the integers in ``[0, T - crop)`` for an utterance of ``T > crop``
    frames and 0 otherwise, so ``[t, t + crop)`` never runs past the last frame.

    Args:
        lengths: ``(n,)`` int frame counts ``T``.
        crop: crop length in frames (128 in the paper), ``>= 1``.
        rng: NumPy generator (the trainer's seeded one).

    Returns:
        ``(n,)`` int64 starts.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    return rng.integers(0, np.maximum(lengths - crop, 1)).astype(np.int64)


def fill_frames(x: np.ndarray, frames: int) -> np.ndarray:
    """``x`` ``(T, d)`` repeated end to end and cut to ``frames`` rows when ``T < frames``.

    Returns ``x`` itself when ``T >= frames``. Used for utterances shorter than one crop
    (module docstring).

    Raises:
        ConfigError: ``x`` has no frame.
    """
    if len(x) == 0:
        raise ConfigError("an utterance with no spectrogram frame cannot be classified")
    if len(x) >= frames:
        return x
    return np.tile(x, (-(-frames // len(x)), 1))[:frames]


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class EmotionAEConfig(TrainConfig):
    """Options of the emotion-embedding autoencoder (module docstring for the paper's values).

    Attributes:
        spectrogram_key: frame-level 513-bin log-magnitude spectrogram feature.
        functionals_key: utterance-level IS10 functionals; ``None`` for the AE−OS rows.
        emotion_embedding: the five label embeddings of the decoder (EE).
        norm: ``"instance"`` (IN) or ``"batch"`` (Table 4 rows without IN).
        reconstruction: train the decoder with the MAE term (eq. 2); ``False`` trains the
            encoder and classifier on the NLL alone (not a paper row; for comparison).
        nll_weight: λ of eq. 4.
        crop_frames: training crop and test window length in frames (128).
        window_hop: frames between test windows.
        bank_kernels, bank_channels: conv bank kernels 1..n and channels per kernel (8, 128).
        channels: width of the encoder / decoder convolutions and FC layers (512).
        encoder_gru, decoder_gru: GRU hidden units per direction (128, 256).
        attention_heads: self-attention heads (1: Table 3's best).
        classifier: hidden FC widths (1024, 512, 128).
        dropout: dropout probability (0.5).
        leaky_slope: Leaky-ReLU negative slope.
    """

    learning_rate: float = 1e-4
    batch_size: int = 16
    max_epochs: int = 40
    patience: int = 10
    spectrogram_key: str = "spectrogram"
    functionals_key: str | None = "functionals"
    emotion_embedding: bool = True
    norm: Literal["instance", "batch"] = "instance"
    reconstruction: bool = True
    nll_weight: float = 1.0
    crop_frames: int = 128
    window_hop: int = 64
    bank_kernels: int = 8
    bank_channels: int = 128
    channels: int = 512
    encoder_gru: int = 128
    decoder_gru: int = 256
    attention_heads: int = 1
    classifier: tuple[int, ...] = (1024, 512, 128)
    dropout: float = 0.5
    leaky_slope: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.norm not in ("instance", "batch"):
            raise ConfigError(
                f"emotion_ae: norm must be 'instance' or 'batch', got {self.norm!r}"
            )
        if self.crop_frames < 8 or self.crop_frames % 8:
            raise ConfigError(
                f"emotion_ae: crop_frames must be a multiple of 8 (three stride-2 blocks), got {self.crop_frames}"
            )
        sizes = (
            self.window_hop,
            self.bank_kernels,
            self.bank_channels,
            self.channels,
            self.encoder_gru,
            self.decoder_gru,
        )
        if min(sizes) < 1 or not self.classifier or min(self.classifier) < 1:
            raise ConfigError(
                "emotion_ae: window_hop, bank, channel, GRU and classifier sizes must be >= 1"
            )
        if self.window_hop > self.crop_frames:
            raise ConfigError(
                f"emotion_ae: window_hop ({self.window_hop}) > crop_frames ({self.crop_frames}) would leave frames unclassified"
            )
        if self.channels % self.attention_heads or self.attention_heads < 1:
            raise ConfigError(
                f"emotion_ae: channels={self.channels} must be a multiple of attention_heads={self.attention_heads}"
            )
        if not 0 <= self.dropout < 1 or self.nll_weight <= 0:
            raise ConfigError(
                "emotion_ae: dropout must be in [0, 1) and nll_weight > 0"
            )


@register
class EmotionAE(TorchSERModel):
    """The emotion-embedding autoencoder and its Table 4 variants on serkit's trainer.

    Inputs: ``spectrogram_key`` -> list of ``(frames_i, 513)`` float32 log-magnitude spectrograms
    (12.5 ms hop), standardised per bin by the experiment; ``functionals_key`` -> ``(n, 1582)``
    float32 standardised IS10 functionals. ``predict_proba`` returns ``(n, K)`` float64 window-
    averaged probabilities (module docstring). Fitted state as
    :class:`~serkit.models.network.TorchSERModel`.
    """

    name = "emotion_ae"
    Config = EmotionAEConfig

    def build(self, layouts: Mapping[str, Layout], n_classes: int) -> EmotionAENet:
        """The untrained :class:`EmotionAENet` for inputs of these layouts (their widths).

        Raises:
            ConfigError: a configured feature key is missing from the inputs.
        """
        cfg = self.config
        keys = [cfg.spectrogram_key] + ([cfg.functionals_key] if cfg.functionals_key else [])
        missing = [k for k in keys if k not in layouts]
        if missing:
            raise ConfigError(f"emotion_ae: features {missing} are missing; inputs have {sorted(layouts)}")
        n_functionals = layouts[cfg.functionals_key].dim if cfg.functionals_key else 0
        return EmotionAENet(cfg, layouts[cfg.spectrogram_key].dim, n_functionals, n_classes)

    def make_batch(
        self, X: Inputs, index: np.ndarray, *, train: bool, rng: np.random.Generator
    ) -> dict[str, torch.Tensor]:
        """Training: one random crop per utterance, ``spec`` ``(B, crop, bins)``. Otherwise every
        window of every utterance, ``spec`` ``(W, crop, bins)`` with ``owner`` ``(W,)``. Plus
        ``functionals`` ``(B, d)`` when configured.

        Raises:
            ConfigError: the spectrogram is utterance level, or the functionals frame level.
        """
        cfg = self.config
        spectra = X[cfg.spectrogram_key]
        if isinstance(spectra, np.ndarray):
            raise ConfigError(
                f"emotion_ae: {cfg.spectrogram_key!r} must be a frame-level spectrogram"
            )
        items = [spectra[i] for i in index]
        crop = cfg.crop_frames
        if train:
            starts = crop_starts(np.array([len(x) for x in items]), crop, rng)
            windows = [
                fill_frames(x, crop)[t : t + crop]
                for x, t in zip(items, starts, strict=True)
            ]
            owner = None
        else:
            windows, owner = [], []
            for row, x in enumerate(items):
                full = fill_frames(x, crop)
                for t in segment_starts(len(full), crop, cfg.window_hop):
                    windows.append(full[t : t + crop])
                    owner.append(row)
        batch = {"spec": torch.from_numpy(np.stack(windows).astype(np.float32))}
        if owner is not None:
            batch["owner"] = torch.tensor(owner, dtype=torch.int64)
            batch["n_utterances"] = torch.tensor(len(items))
        if cfg.functionals_key:
            values = X[cfg.functionals_key]
            if not isinstance(values, np.ndarray):
                raise ConfigError(
                    f"emotion_ae: {cfg.functionals_key!r} must be utterance-level functionals"
                )
            batch["functionals"] = torch.from_numpy(
                np.asarray(values[index], dtype=np.float32)
            )
        return batch

    def training_loss(
        self,
        module: nn.Module,
        batch: dict[str, torch.Tensor],
        y: torch.Tensor,
        class_counts: torch.Tensor,
    ) -> torch.Tensor:
        """``MAE(x', x) + λ · NLL`` on the batch's crops (eq. 2–4)."""
        z = module.encode(batch["spec"])
        nll = nn.functional.cross_entropy(module.window_logits(batch, z), y)
        if not self.config.reconstruction:
            return self.config.nll_weight * nll
        rebuilt = module.decoder(z, y).transpose(1, 2)
        return (
            nn.functional.l1_loss(rebuilt, batch["spec"]) + self.config.nll_weight * nll
        )

    @torch.no_grad()
    def representations(self, X: Inputs) -> np.ndarray:
        """Utterance representations ``(n, channels)`` float32 (Fig. 7's points)."""
        module = self.module_.eval()
        n = len(X[self.config.spectrogram_key])
        device = next(module.parameters()).device
        out = []
        for start in range(0, n, self.config.batch_size):
            index = np.arange(start, min(start + self.config.batch_size, n))
            batch = self.make_batch(X, index, train=False, rng=np.random.default_rng(0))
            out.append(
                module.representation({k: v.to(device) for k, v in batch.items()})
                .cpu()
                .numpy()
            )
        return np.concatenate(out).astype(np.float32)

    def embeddings(self) -> np.ndarray | None:
        """The five emotion-embedding tables as ``(5, K, channels)`` float32 (Fig. 6), or ``None`` without EE."""
        tables = self.module_.decoder.embeddings
        if tables is None:
            return None
        return np.stack([t.weight.detach().cpu().numpy() for t in tables]).astype(
            np.float32
        )
