"""``finetuned_segment_cnn``: the segment CNN's last stages fine-tuned inside each fold (fitted).

Zhang et al., IEEE Access 2020, Sec. II-B, eq. 1–2: the ImageNet CNN is fine-tuned on the target
corpus's segments, "the emotion category of each Mel-spectrogram segment [being] the
utterance-level emotion category", with a new emotion layer in place of ImageNet's classifier;
its penultimate activations are then the segment features. Here the frozen stages have already
run once per utterance (:class:`~serkit.derived.binaural.SegmentCNN` with ``finetune_stages``
other than 0, cached by the pipeline); this fitted feature trains the remaining stages and a new
linear layer on the *training speakers'* segments of one fold, by serkit's trainer (Adam, early
stopping on ``valid_speakers`` training speakers held out from the training segments, or on the
protocol's validation split; the test speaker is never seen), and gives every utterance's segment
features. Which network and which stages it trains it reads from the ``segment_cnn`` that made
its input (the input spec's ``source``), so the recipe states them once::

    cut_mid: {derive: segment_cnn, from: logmel_mid, config: {cnn: efficientnet_lite0, image_size: 112, finetune_stages: 1}}
    cnn_mid: {derive: finetuned_segment_cnn, from: cut_mid, config: {max_epochs: 10}}
    mid:     {derive: temporal_pool, from: cnn_mid}

Utterances without segments (a silent channel) take no part in training and keep zero rows.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from serkit.blocks.segment_cnn import Backbone, SegmentNet
from serkit.config import check_option, config_from_dict, is_number
from serkit.derived.base import FittedFeature, register
from serkit.derived.binaural import SegmentCNN, backbone_of
from serkit.errors import ConfigError, FeatureError
from serkit.features.data import FeatureData, FeatureSpec, Inputs
from serkit.features.layout import UNIT, Layout
from serkit.models.network import TorchSERModel, load_module, save_module
from serkit.state_files import is_int, is_object, read_json, take, write_json
from serkit.training.trainer import TrainConfig, speaker_holdout

#: Segments passed through the fine-tuned stages at once when transforming.
FEATURE_BATCH = 256


class _SegmentClassifier(TorchSERModel):
    """Trains a :class:`SegmentNet` on flattened cut activations with serkit's trainer (not registered)."""

    name = "segment_classifier"
    Config = TrainConfig

    def __init__(self, config: TrainConfig, backbone: Backbone, cut_shape: Sequence[int], dropout: float):
        super().__init__(config)
        self._parts = (backbone, tuple(cut_shape), dropout)

    def build(self, layouts: Mapping[str, Layout], n_classes: int) -> SegmentNet:
        backbone, cut_shape, dropout = self._parts
        return SegmentNet(backbone.trainable, cut_shape, backbone.feature_dim, n_classes, dropout)


@register
class FinetunedSegmentCNN(FittedFeature):
    """The last ``finetune_stages`` CNN stages fine-tuned on a fold's training segments (module docstring).

    Config: ``dropout`` before the new emotion layer and the trainer's options
    (:class:`~serkit.training.trainer.TrainConfig`; defaults here: Adam lr 1e-4, batch 30
    segments, at most 20 epochs, patience 3, one validation speaker). The network, its weights and
    the stages to train are those of the ``segment_cnn`` that made the input.

    Input: one frame-level feature, the cut activations of a ``segment_cnn`` with
    ``finetune_stages`` other than 0 — float16 or float32 ``(n_segments, prod(cut_shape))`` per
    utterance. Output: frame level, float32
    ``(n_segments, feature_dim)`` segment features, layout ``unit`` (``(0, feature_dim)`` for an
    utterance without segments).

    Fitted state: ``net_`` (the trained stages and emotion layer, in evaluation mode),
    ``cut_shape_``, ``n_classes_``, ``info_`` (epochs, segments, validation speakers, seconds).
    """

    name = "finetuned_segment_cnn"

    @dataclass(frozen=True)
    class Config(TrainConfig):
        dropout: float = 0.2
        learning_rate: float = 1e-4
        batch_size: int = 30
        max_epochs: int = 20
        patience: int = 3

    def check_config(self) -> None:
        c = self.config
        check_option(is_number(c.dropout) and 0 <= c.dropout < 1, self.name, f"dropout must be in [0, 1), got {c.dropout!r}")

    def _train_config(self) -> TrainConfig:
        names = {f.name for f in fields(TrainConfig)}
        return TrainConfig(**{k: v for k, v in asdict(self.config).items() if k in names})

    def output(self, inputs: Mapping[str, FeatureSpec]) -> FeatureSpec:
        """Segment features of the network of the ``segment_cnn`` that made the input.

        Raises:
            ConfigError: not one frame-level input, or one not made by a ``segment_cnn`` that
                stops before stages to fine-tune (``finetune_stages`` other than 0).
        """
        self.check_inputs(inputs, level="frame")
        ((key, spec),) = inputs.items()
        source = spec.source or {}
        if source.get("name") != SegmentCNN.name or source["config"].get("finetune_stages", 0) == 0:
            raise ConfigError(
                f"{self.name}: reads the cut activations of a segment_cnn with finetune_stages other than 0; "
                f"{key!r} comes from {source.get('name', 'an unknown feature')} {source.get('config', '')}"
            )
        self._cnn = config_from_dict(SegmentCNN.Config, source["config"])
        self._backbone = backbone_of(self._cnn)
        self._cut_shape = tuple(size for _, size in spec.layout.axes)
        return FeatureSpec("frame", Layout.of((UNIT, self._backbone.feature_dim)))

    # ------------------------------------------------------------------ fit / transform

    def fit(
        self,
        X: Inputs,
        y: np.ndarray,
        *,
        labels: Sequence[str],
        groups: np.ndarray,
        seed: int,
        valid: tuple[Inputs, np.ndarray] | None = None,
    ) -> FinetunedSegmentCNN:
        """Fine-tune on the segments of the training utterances ``X`` (utterance label per segment).

        Early stopping watches the protocol's validation utterances ``valid`` when given, else
        ``valid_speakers`` of the speakers in ``groups`` held out from training (chosen with
        ``seed``); utterances without segments are left out.

        Raises:
            FeatureError: no training utterance has a segment.
            ConfigError: the validation speakers cannot be held out (too few speakers).
        """
        (acts,) = X.values()
        flat, seg_y, seg_groups = _segments(acts, y, groups)
        if not len(seg_y):
            raise FeatureError(f"{self.name}: no training utterance has a segment (every channel silent)")
        config = self._train_config()
        if valid is not None:
            (valid_acts,) = valid[0].values()
            valid_flat, valid_y, _ = _segments(valid_acts, valid[1], np.zeros(len(valid_acts)))
            held = np.zeros(len(seg_y), dtype=bool)
            valid = ({"segments": valid_flat}, valid_y) if len(valid_y) else None
        else:
            held = speaker_holdout(seg_groups, config.valid_speakers, seed)
            if config.valid_speakers > 0 and not held.any():
                raise ConfigError(
                    f"{self.name}: cannot hold out {config.valid_speakers} validation speaker(s) from "
                    f"{len(np.unique(seg_groups))} training speakers; set valid_speakers: 0"
                )
            valid = ({"segments": flat[held]}, seg_y[held]) if held.any() else None
        started = time.perf_counter()
        trainer = _SegmentClassifier(config, self._backbone, self._cut_shape, self.config.dropout)
        trainer.fit({"segments": flat[~held]}, seg_y[~held], labels=labels, seed=seed, valid=valid)
        self.net_ = trainer.module_.eval()
        self.cut_shape_, self.n_classes_ = self._cut_shape, len(labels)
        best = trainer.history_[trainer.best_epoch_ - 1] if trainer.history_ else {}
        self.info_ = {
            "best_epoch": trainer.best_epoch_,
            "epochs_run": len(trainer.history_),
            "segments": int((~held).sum()),
            "valid_segments": 0 if valid is None else len(valid[1]),
            "valid_speakers": sorted(set(seg_groups[held].tolist())),
            "valid_ua": best.get("valid_ua"),
            "seconds": round(time.perf_counter() - started, 1),
        }
        return self

    @torch.no_grad()
    def transform(self, X: Inputs) -> FeatureData:
        """Segment features of every utterance: ``n`` float32 arrays ``(n_segments, feature_dim)``.

        Each utterance is forwarded on its own (its features do not depend on the others).
        """
        (acts,) = X.values()
        device = next(self.net_.parameters()).device
        dim = self.spec.dim if hasattr(self, "spec") else self._backbone.feature_dim
        out = []
        for a in acts:
            x = torch.from_numpy(np.asarray(a, dtype=np.float32).reshape(len(a), -1))
            if len(x) == 0:
                out.append(np.zeros((0, dim), dtype=np.float32))
                continue
            parts = [self.net_.features(x[j : j + FEATURE_BATCH].to(device)).cpu() for j in range(0, len(x), FEATURE_BATCH)]
            out.append(torch.cat(parts).numpy().astype(np.float32))
        return out

    def fit_info(self) -> dict[str, Any]:
        return dict(self.info_)

    # ------------------------------------------------------------------ persistence

    def save(self, directory: Path) -> None:
        """``head.safetensors`` (the trained stages' tensors) and ``head.json`` (cut shape, classes, fit info)."""
        save_module(self.net_, directory / "head.safetensors")
        write_json(directory / "head.json", {"cut_shape": list(self.cut_shape_), "n_classes": self.n_classes_, "info": self.info_})

    @classmethod
    def load(cls, directory: Path, config: Mapping[str, Any], inputs: Mapping[str, FeatureSpec]) -> FinetunedSegmentCNN:
        """Rebuild the fine-tuned stages saved by :meth:`save` (arrays and JSON only), bound to
        ``inputs`` (the cut activations' spec, whose ``source`` names the network).

        Raises:
            BundleError: a missing or malformed file or field, a cut shape other than the
                input's, or tensors that do not fit the network.
        """
        feature = cls(dict(config))
        feature.bind(inputs)
        where = directory / "head.json"
        meta = read_json(where)
        cut = list(feature._cut_shape)
        feature.cut_shape_ = tuple(take(meta, "cut_shape", lambda v: v == cut, f"the input's cut shape {cut}", where))
        feature.n_classes_ = take(meta, "n_classes", lambda v: is_int(v) and v >= 2, "an integer >= 2", where)
        feature.info_ = dict(take(meta, "info", is_object, "an object", where, default={}))
        backbone = feature._backbone
        feature.net_ = load_module(
            lambda: SegmentNet(backbone.trainable, feature.cut_shape_, backbone.feature_dim, feature.n_classes_, feature.config.dropout),
            directory / "head.safetensors",
        ).eval()
        return feature


__all__ = ["FinetunedSegmentCNN"]


def _segments(acts: Sequence[np.ndarray], y: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every segment of the utterances that have one, flattened ``(n_segments, cut size)``, with
    its utterance's class and speaker."""
    keep = [i for i, a in enumerate(acts) if len(a)]
    if not keep:
        return np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=str)
    y, groups = np.asarray(y, dtype=np.int64), np.asarray(groups, dtype=str)
    flat = np.concatenate([np.asarray(acts[i]).reshape(len(acts[i]), -1) for i in keep])
    return (
        flat,
        np.concatenate([np.full(len(acts[i]), y[i]) for i in keep]),
        np.concatenate([np.full(len(acts[i]), groups[i]) for i in keep]),
    )
