"""Deep binaural representations with segment CNNs (Zhang et al., IEEE Access 2020): the ``binaural_dcnn`` model.

Per channel (Left, Right, Mid, Side: the recipe's feature keys, each a 64-band log-Mel of one
:meth:`~serkit.audio.Audio.view`):

1. 64-frame static / Δ / Δ² segment images (Sec. II-A; :func:`~serkit.blocks.binaural_ops.segment_planes`);
2. a segment CNN (Sec. II-B, eq. 1–2; :mod:`serkit.blocks.segment_cnn`), ImageNet-pretrained,
   either frozen (``finetune_stages: 0``, clearly a reduction of the paper) or with its last
   stages fine-tuned on the training segments, each segment labelled with its utterance's
   emotion, by serkit's trainer (:class:`~serkit.models.network.TorchSERModel`: Adam, early
   stopping on a held-out training speaker, GPU when present). Segment features = the
   penultimate activations;
3. block-based temporal pooling of ``X`` and ``ΔX`` (Sec. II-C, eq. 3–7) or global pooling;
4. training-fold standardisation and a linear SVM (:class:`~serkit.models.svm.LinearSVM`: C from
   inner leave-one-speaker-out folds, probability-like scores by temperature-scaled softmax).

Channels are combined by two-stage score fusion (Sec. II-D, eq. 8–10) or by concatenating the
pooled vectors before one SVM (feature-level fusion, Table 7). The fusion weights α, β, λ are
searched over [0, 1] in steps of 0.1 on the *training speakers' out-of-fold scores*: for every
training speaker, the channel's SVM trained without that speaker (at the chosen C) scores its
utterances. No test utterance takes part in the choice. (With fine-tuning, the CNN that made
those training features has seen every training speaker, so the inner scores are optimistic;
the test fold is not affected.) The paper chose the weights on the test data; that oracle is
computed from the single-channel predictions in ``scripts/binaural_study.py`` and labelled so.

**Mono input** (L = R, S = 0). A channel whose log-Mel is exactly constant is digital silence
(:func:`~serkit.blocks.binaural_ops.is_silent`): the Side of a mono file or of a stereo file
with identical channels. Such an utterance-channel is *absent*: it is left out of that channel's
CNN fine-tuning and SVM training; in score fusion its partner's scores take its place
(:func:`~serkit.blocks.binaural_ops.fuse_pair`); in feature fusion its block is zero (the
training mean after standardisation); a single-channel model gives it uniform scores. A channel
absent from every training utterance (EmoDB's Side) is skipped altogether and reported in
``fit_info``. Left, Right and Mid of a mono file are the same signal; the activation cache
(keyed on the log-Mel's bytes) computes them once.

**Caches** (``cache_dir``, off when ``None``). The frozen part of the CNN is the expensive step:
its output for every segment of an utterance-channel is stored as float16 ``.npy``, keyed on the
SHA-256 of the log-Mel array and everything that changes the output (network, weights hash,
input size, cut, segment length and hop, this module's version). A fine-tuned head is stored
keyed on the training utterances' keys, their labels, the seed and the training options, so the
pooling and fusion variants of the paper's tables re-use one fine-tuning per fold and channel.
Files are written atomically (:mod:`serkit.io`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from serkit.errors import BundleError, ConfigError
from serkit.features.normalise import Normaliser, fit_normaliser
from serkit.io import atomic_write_bytes, atomic_write_text
from serkit.features.data import Inputs
from serkit.models.base import Layouts, SERModel, register
from serkit.blocks.binaural_ops import (
    apply_two_stage,
    block_pool,
    fusion_pairs,
    global_pool,
    is_silent,
    search_two_stage,
    segment_planes,
)
from serkit.blocks.segment_cnn import (
    ARCHITECTURES,
    Backbone,
    SegmentNet,
    build_backbone,
)
from serkit.models.svm import LinearSVM, LinearSVMConfig
from serkit.models.network import TorchSERModel
from serkit.training.trainer import TrainConfig, choose_device

log = logging.getLogger(__name__)

CHANNELS = ("left", "right", "mid", "side")
#: Bumped when cached activations would change; part of every cache key.
CACHE_VERSION = 1
#: Feature-cache key of the pretrained (not fine-tuned) network.
PRETRAINED = "pretrained"


@dataclass(frozen=True)
class BinauralConfig(TrainConfig):
    """Options of :class:`BinauralDCNN` (the trainer's options apply to CNN fine-tuning).

    Attributes:
        channels: feature keys to use, a subset of left / right / mid / side. Score fusion needs
            (left, right), (mid, side) or all four; feature fusion takes any set.
        fusion: ``"score"`` (eq. 8–10) or ``"feature"`` (concatenation, Table 7); ignored for
            one channel.
        pooling: ``"block"`` (eq. 3–7) or ``"global"`` (Tables 2–5).
        pool: ``"max"`` or ``"avg"``.
        blocks: sub-blocks ``l`` (the paper: 2).
        pyramid: concatenate levels ``1 … blocks`` instead of level ``blocks`` alone.
        segment_frames: frames per segment (the paper: 64).
        segment_hop: frames between segment starts (32: half-overlapping segments).
        cnn: ``"efficientnet_lite0"`` or ``"alexnet"``.
        image_size: CNN input side; ``None``: 224 (EfficientNet) / 227 (AlexNet).
        pretrained: ImageNet weights for EfficientNet-Lite0 (``False`` only for tests).
        weights, weights_sha256: a local weight file and its SHA-256 (required for AlexNet weights).
        finetune_stages: CNN stages fine-tuned: 0 none (frozen ImageNet features), k the last k,
            -1 all (AlexNet without weights must use -1).
        dropout: dropout before the new classification layer.
        cnn_batch_size: segments per forward pass when computing activations.
        svm_C, svm_class_weight: the SVM's C grid and class weights.
        cache_dir: folder of the activation and fine-tuned-head caches; ``None`` disables them.
    """

    channels: tuple[str, ...] = CHANNELS
    fusion: Literal["score", "feature"] = "score"
    pooling: Literal["block", "global"] = "block"
    pool: Literal["max", "avg"] = "max"
    blocks: int = 2
    pyramid: bool = False
    segment_frames: int = 64
    segment_hop: int = 32
    cnn: str = "efficientnet_lite0"
    image_size: int | None = None
    pretrained: bool = True
    weights: str | None = None
    weights_sha256: str | None = None
    finetune_stages: int = 0
    dropout: float = 0.2
    cnn_batch_size: int = 64
    svm_C: float | tuple[float, ...] = LinearSVMConfig.C
    svm_class_weight: str | None = "balanced"
    cache_dir: str | None = None
    learning_rate: float = 1e-4
    batch_size: int = 30
    max_epochs: int = 20
    patience: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        channels = tuple(self.channels)
        if (
            not channels
            or len(set(channels)) != len(channels)
            or not set(channels) <= set(CHANNELS)
        ):
            raise ConfigError(
                f"binaural_dcnn: channels must be distinct names from {CHANNELS}, got {channels!r}"
            )
        if self.fusion not in ("score", "feature"):
            raise ConfigError(
                f"binaural_dcnn: fusion must be 'score' or 'feature', got {self.fusion!r}"
            )
        if self.fusion == "score" and len(channels) > 1:
            fusion_pairs(channels)
        if self.pooling not in ("block", "global") or self.pool not in ("max", "avg"):
            raise ConfigError(
                "binaural_dcnn: pooling must be 'block' or 'global', pool 'max' or 'avg'"
            )
        if (
            self.blocks < 1
            or self.segment_frames < 1
            or not 1 <= self.segment_hop <= self.segment_frames
        ):
            raise ConfigError(
                "binaural_dcnn: need blocks >= 1 and 1 <= segment_hop <= segment_frames"
            )
        if self.cnn not in ARCHITECTURES:
            raise ConfigError(
                f"binaural_dcnn: cnn must be one of {ARCHITECTURES}, got {self.cnn!r}"
            )
        if (
            self.cnn == "alexnet"
            and self.weights is None
            and self.finetune_stages != -1
        ):
            raise ConfigError(
                "binaural_dcnn: AlexNet has no ImageNet weights here; train it from scratch (finetune_stages: -1) "
                "or give weights and weights_sha256"
            )
        if self.cnn_batch_size < 1:
            raise ConfigError("binaural_dcnn: cnn_batch_size must be >= 1")


def _train_config(config: BinauralConfig) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(
        **{k: v for k, v in dataclasses.asdict(config).items() if k in names}
    )


def _digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(
            part
            if isinstance(part, bytes)
            else json.dumps(part, sort_keys=True, default=str).encode()
        )
        h.update(b"\0")
    return h.hexdigest()


def logmel_key(logmel: np.ndarray) -> str:
    """SHA-256 of a log-Mel array's float32 bytes and shape (the activation cache's content key)."""
    arr = np.ascontiguousarray(logmel, dtype=np.float32)
    return _digest(arr.tobytes(), list(arr.shape))


def _read_npy(path: Path | None) -> np.ndarray | None:
    """A cache entry, or ``None`` when there is no cache, no entry or an unreadable one."""
    if path is None or not path.is_file():
        return None
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        log.warning("cache entry %s is unreadable; recomputing", path)
        return None


def _write_npy(path: Path | None, array: np.ndarray) -> None:
    if path is not None:
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        atomic_write_bytes(path, buffer.getvalue())


class _SegmentClassifier(TorchSERModel):
    """Fine-tunes a :class:`SegmentNet` on flattened cut activations with serkit's trainer."""

    name = "binaural_segment_cnn"
    Config = TrainConfig

    def __init__(
        self,
        config: TrainConfig,
        trainable: torch.nn.Module,
        cut_shape: Sequence[int],
        feature_dim: int,
        dropout: float,
    ):
        super().__init__(config)
        self._init = (trainable, tuple(cut_shape), feature_dim, dropout)

    def build(self, layouts: Mapping[str, Any], n_classes: int) -> SegmentNet:
        trainable, cut_shape, feature_dim, dropout = self._init
        return SegmentNet(trainable, cut_shape, feature_dim, n_classes, dropout)


@dataclass
class _Channel:
    """Fitted state of one channel: the segment network (the pretrained last stage when not
    fine-tuned), its standardisation and SVM (``None`` in feature fusion), and the fine-tuning
    record (``None`` when not fine-tuned); ``key`` names the network's cached segment features
    (``None``: not cached)."""

    net: SegmentNet
    scaler: Normaliser | None = None
    svm: LinearSVM | None = None
    finetune: dict[str, Any] | None = None
    key: str | None = None


@register
class BinauralDCNN(SERModel):
    """Left/Right/Mid/Side segment CNNs, temporal pooling, linear SVMs, two-stage fusion (module docstring).

    Inputs: one frame-level feature per channel in ``config.channels``, keyed by the channel
    name: a list of ``(frames, n_mels)`` float32 log-Mel arrays (the recipes: 64 bands,
    20–8000 Hz, 25 ms Hamming window, 10 ms hop, 16 kHz). Use ``normalisation: none`` in the
    recipe: images are standardised per utterance (:func:`segment_planes`).

    Fitted state: ``labels_``, ``channels_`` (name -> state, absent channels left out),
    ``absent_`` (channels absent from every training utterance), ``weights_`` (score fusion),
    ``scalers_`` / ``svm_`` (feature fusion).
    """

    name = "binaural_dcnn"
    Config = BinauralConfig

    # ------------------------------------------------------------------ CNN activations

    def _backbone(self) -> Backbone:
        if getattr(self, "backbone_", None) is None:
            c = self.config
            self.backbone_ = build_backbone(
                c.cnn,
                c.finetune_stages,
                c.image_size,
                pretrained=c.pretrained,
                weights=c.weights,
                weights_sha256=c.weights_sha256,
            )
        return self.backbone_

    def _cnn_identity(self) -> dict[str, Any]:
        c = self.config
        if c.weights is not None:
            weights = c.weights_sha256
        elif c.cnn == "efficientnet_lite0" and c.pretrained:
            from serkit.blocks.imagenet_cnn import WEIGHTS_SHA256 as weights
        else:
            weights = "random-init"  # never cached: see _cache_folder
        return {
            "cnn": c.cnn,
            "weights": weights,
            "image_size": c.image_size,
            "cut": self._backbone().cut,
            "segment_frames": c.segment_frames,
            "segment_hop": c.segment_hop,
            "version": CACHE_VERSION,
        }

    def _cache_folder(self, kind: str) -> Path | None:
        c = self.config
        if c.cache_dir is None or (
            c.weights is None and not (c.cnn == "efficientnet_lite0" and c.pretrained)
        ):
            return None  # random weights differ from run to run: nothing to share
        folder = Path(c.cache_dir) / f"{kind}-{_digest(self._cnn_identity())[:16]}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    @torch.no_grad()
    def activations(self, logmels: Sequence[np.ndarray]) -> list[np.ndarray | None]:
        """Cut activations of every segment of every utterance (``None`` for a silent channel).

        Args:
            logmels: ``(frames, n_mels)`` log-Mel arrays of one channel.

        Returns:
            Per utterance float16 ``(n_segments, *cut_shape)``, or ``None`` when
            :func:`is_silent`. Read from / written to the cache when ``cache_dir`` is set.
        """
        c, backbone = self.config, self._backbone()
        folder = self._cache_folder("activations")
        device = choose_device(c.device)
        frozen = backbone.frozen.to(device)
        out: list[np.ndarray | None] = [None] * len(logmels)
        todo: list[tuple[int, np.ndarray, Path | None]] = []
        for i, logmel in enumerate(logmels):
            if is_silent(logmel):
                continue
            path = None if folder is None else folder / f"{logmel_key(logmel)}.npy"
            out[i] = _read_npy(path)
            if out[i] is not None:
                continue
            todo.append(
                (i, segment_planes(logmel, c.segment_frames, c.segment_hop), path)
            )
        started, done = time.perf_counter(), 0
        for start in range(0, len(todo), 16):
            chunk = todo[start : start + 16]
            planes = torch.from_numpy(np.concatenate([p for _, p, _ in chunk]))
            acts = torch.cat(
                [
                    frozen(planes[j : j + c.cnn_batch_size].to(device)).cpu()
                    for j in range(0, len(planes), c.cnn_batch_size)
                ]
            )
            acts = acts.to(torch.float16).numpy()
            offset = 0
            for i, p, path in chunk:
                out[i] = acts[offset : offset + len(p)]
                offset += len(p)
                _write_npy(path, out[i])
            done += offset
            log.info(
                "binaural_dcnn: %d/%d utterances, %.1f segments/s",
                start + len(chunk),
                len(todo),
                done / (time.perf_counter() - started),
            )
        return out

    # ------------------------------------------------------------------ per channel

    def _segment_net(self, n_classes: int) -> SegmentNet:
        """The pretrained head without fine-tuning (``finetune_stages = 0``)."""
        b = self._backbone()
        return SegmentNet(b.trainable, (1,), b.feature_dim, n_classes, 0.0).eval()

    @torch.no_grad()
    def _segment_features(
        self, net: SegmentNet, acts: Sequence[np.ndarray | None]
    ) -> list[np.ndarray | None]:
        device = next(net.parameters()).device
        out: list[np.ndarray | None] = []
        for a in acts:
            if a is None:
                out.append(None)
                continue
            x = torch.from_numpy(a.astype(np.float32))
            feats = [
                net.trainable(x[j : j + 256].to(device)).cpu()
                for j in range(0, len(x), 256)
            ]
            out.append(torch.cat(feats).double().numpy())
        return out

    def _pooled(
        self, features: Sequence[np.ndarray | None]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Utterance vectors ``(n, D)`` (zeros where absent) and the ``(n,)`` presence mask."""
        c = self.config
        present = np.array([f is not None for f in features])
        vectors = []
        for f in features:
            if f is None:
                vectors.append(None)
            elif c.pooling == "block":
                vectors.append(block_pool(f, c.blocks, c.pool, pyramid=c.pyramid))
            else:
                vectors.append(global_pool(f, c.pool))
        dim = next(len(v) for v in vectors if v is not None) if present.any() else 0
        return np.stack([np.zeros(dim) if v is None else v for v in vectors]).astype(
            np.float32
        ), present

    def _finetune(
        self, channel: str, logmels: Sequence[np.ndarray], y, groups, seed
    ) -> tuple[SegmentNet, dict[str, Any], str]:
        """Fine-tune the trainable stages on the training segments (utterance label per segment).

        Returns the network, its training record and its cache key (the key also names its
        cached segment features).
        """
        c, backbone = self.config, self._backbone()
        keep = [i for i, m in enumerate(logmels) if not is_silent(m)]
        train_cfg = _train_config(c)
        key = _digest(
            self._cnn_identity(),
            dataclasses.asdict(train_cfg),
            c.dropout,
            channel,
            seed,
            [logmel_key(logmels[i]) for i in keep],
            y[keep].tolist(),
            self.labels_,
        )
        folder = self._cache_folder("heads")
        path = None if folder is None else folder / f"{key}.pt"
        if path is not None and path.is_file():
            saved = torch.load(path, map_location="cpu", weights_only=True)
            cut_shape = (
                saved.get("cut_shape")
                or self.activations([logmels[keep[0]]])[0].shape[1:]
            )
            net = SegmentNet(
                backbone.trainable,
                cut_shape,
                backbone.feature_dim,
                len(self.labels_),
                c.dropout,
            )
            net.load_state_dict(saved["state"])
            info = {**saved["info"], "cached": True}
            return net.to(choose_device(c.device)).eval(), info, key
        acts = self.activations([logmels[i] for i in keep])
        cut_shape = list(acts[0].shape[1:])
        flat = np.concatenate([a.reshape(len(a), -1) for a in acts])
        seg_y = np.concatenate([np.full(len(a), y[i]) for i, a in zip(keep, acts)])
        seg_groups = np.concatenate(
            [np.full(len(a), groups[i]) for i, a in zip(keep, acts)]
        )
        started = time.perf_counter()
        trainer = _SegmentClassifier(
            train_cfg, backbone.trainable, cut_shape, backbone.feature_dim, c.dropout
        )
        trainer.fit(
            {"segments": flat}, seg_y, labels=self.labels_, groups=seg_groups, seed=seed
        )
        info = {
            "best_epoch": trainer.best_epoch_,
            "epochs_run": len(trainer.history_),
            "segments": len(seg_y),
            "seconds": round(time.perf_counter() - started, 1),
            "history": trainer.history_,
        }
        if path is not None:
            state = {k: v.cpu() for k, v in trainer.module_.state_dict().items()}
            buffer = io.BytesIO()
            torch.save({"state": state, "info": info, "cut_shape": cut_shape}, buffer)
            atomic_write_bytes(path, buffer.getvalue())
        return trainer.module_.eval(), info, key

    def _channel_vectors(
        self, channel: str, logmels: Sequence[np.ndarray], fit: tuple | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pooled vectors and presence of one channel; with ``fit = (y, groups, seed)`` the
        channel's segment network is fitted (or taken pretrained) first."""
        if fit is not None:
            if self.config.finetune_stages == 0:
                net = self._segment_net(len(self.labels_))
                self.channels_[channel] = _Channel(net, key=PRETRAINED)
            else:
                net, info, key = self._finetune(channel, logmels, *fit)
                self.channels_[channel] = _Channel(net, finetune=info, key=key)
        return self._pooled(self._features(self.channels_[channel], logmels))

    def _features(
        self, state: _Channel, logmels: Sequence[np.ndarray]
    ) -> list[np.ndarray | None]:
        """Segment features ``(n_segments, feature_dim)`` of each utterance (``None`` if silent).

        Cached per utterance as float32 under the channel network's key (the pretrained network,
        or a fine-tuned head's cache key), so that every row and fold of a study computes them
        once; a network without a key (loaded from a bundle) is not cached.
        """
        folder = self._cache_folder("features") if state.key is not None else None
        if folder is not None:
            folder = folder / state.key[:32]
            folder.mkdir(exist_ok=True)
        paths = [
            None if folder is None else folder / f"{logmel_key(m)}.npy" for m in logmels
        ]
        out = [None if is_silent(m) else _read_npy(p) for m, p in zip(logmels, paths)]
        todo = [
            i
            for i, (m, f) in enumerate(zip(logmels, out))
            if f is None and not is_silent(m)
        ]
        if todo:
            feats = self._segment_features(
                state.net, self.activations([logmels[i] for i in todo])
            )
            for i, f in zip(todo, feats):
                out[i] = f.astype(np.float32)
                _write_npy(paths[i], out[i])
        return [None if f is None else f.astype(np.float64) for f in out]

    # ------------------------------------------------------------------ fit / predict

    def _svm(self) -> LinearSVM:
        return LinearSVM(
            LinearSVMConfig(
                C=self.config.svm_C, class_weight=self.config.svm_class_weight
            )
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
    ) -> BinauralDCNN:
        """Fit every channel's CNN (when fine-tuning), SVM and the fusion on the training utterances.

        ``valid`` is not used: fine-tuning holds out ``valid_speakers`` training speakers itself.

        Raises:
            ConfigError: a channel's feature is missing or not frame level; a C grid, score
                fusion or fine-tuning without at least two training speakers; every channel silent.
        """
        c = self.config
        y = np.asarray(y, dtype=int)
        groups = np.asarray(
            groups if groups is not None else np.zeros(len(y)), dtype=str
        )
        self.labels_ = list(labels)
        self.svm_: LinearSVM | None = None
        self.channels_: dict[str, _Channel] = {}
        self.absent_: list[str] = []
        self.weights_: dict[str, float] = {}
        vectors, present, oof = {}, {}, {}
        for channel in c.channels:
            logmels = self._logmels(X, channel)
            if all(is_silent(m) for m in logmels):
                self.absent_.append(channel)
                log.warning(
                    "binaural_dcnn: channel %s is silent in every training utterance (mono input); skipped",
                    channel,
                )
                continue
            vectors[channel], present[channel] = self._channel_vectors(
                channel, logmels, (y, groups, seed)
            )
        if not vectors:
            raise ConfigError(
                "binaural_dcnn: every channel is silent in every training utterance"
            )
        if c.fusion == "feature" and len(c.channels) > 1:
            self.scalers_ = {
                ch: fit_normaliser("global", v[present[ch]])
                for ch, v in vectors.items()
            }
            joined = self._joined(vectors, present)
            self.svm_ = self._svm().fit(
                {"binaural": joined}, y, labels=labels, groups=groups, seed=seed
            )
            return self
        for channel, v in vectors.items():
            state, rows = self.channels_[channel], present[channel]
            state.scaler = fit_normaliser("global", v[rows])
            data = state.scaler.transform(v[rows])
            state.svm = self._svm().fit(
                {channel: data}, y[rows], labels=labels, groups=groups[rows], seed=seed
            )
            if len(c.channels) > 1:
                oof[channel] = np.full((len(y), len(labels)), np.nan)
                oof[channel][rows] = state.svm.out_of_fold_proba()
        if len(c.channels) > 1:
            scores = {
                ch: oof.get(ch, np.full((len(y), len(labels)), np.nan))
                for ch in c.channels
            }
            mask = {ch: present.get(ch, np.zeros(len(y), bool)) for ch in c.channels}
            self.weights_ = search_two_stage(scores, y, mask)
        return self

    def _joined(
        self, vectors: Mapping[str, np.ndarray], present: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        """Feature fusion: standardised channel vectors side by side, absent blocks zero."""
        blocks = []
        for ch, scaler in self.scalers_.items():
            block = scaler.transform(vectors[ch])
            block[~present[ch]] = 0.0
            blocks.append(block)
        return np.concatenate(blocks, axis=1).astype(np.float32)

    def _logmels(self, X: Inputs, channel: str) -> list[np.ndarray]:
        data = X.get(channel)
        if not isinstance(data, list):
            raise ConfigError(
                f"binaural_dcnn: needs a frame-level log-Mel feature keyed {channel!r} (a list of (frames, n_mels) arrays); "
                f"got keys {sorted(X)}"
            )
        return data

    def channel_scores(
        self, X: Inputs
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Per-channel SVM scores ``(n, K)`` (NaN where absent) and presence masks ``(n,)``.

        Channels skipped at fit time (silent in all training data) are all-absent.
        """
        n = len(next(iter(X.values())))
        scores, present = {}, {}
        for channel in self.config.channels:
            scores[channel] = np.full((n, len(self.labels_)), np.nan)
            present[channel] = np.zeros(n, bool)
            if channel not in self.channels_:
                continue
            vectors, rows = self._channel_vectors(channel, self._logmels(X, channel))
            state = self.channels_[channel]
            if rows.any():
                scores[channel][rows] = state.svm.predict_proba(
                    {channel: state.scaler.transform(vectors[rows])}
                )
            present[channel] = rows
        return scores, present

    def predict_proba(self, X: Inputs) -> np.ndarray:
        """Fused class scores ``(n, K)`` (rows sum to one); uniform where every channel is absent."""
        if self.config.fusion == "feature" and len(self.config.channels) > 1:
            pooled = {
                ch: self._channel_vectors(ch, self._logmels(X, ch))
                for ch in self.scalers_
            }
            joined = self._joined(
                {ch: v for ch, (v, _) in pooled.items()},
                {ch: p for ch, (_, p) in pooled.items()},
            )
            return self.svm_.predict_proba({"binaural": joined})
        scores, present = self.channel_scores(X)
        fused = (
            next(iter(scores.values()))
            if len(scores) == 1
            else apply_two_stage(scores, self.weights_, present)
        )
        fused = np.where(
            np.isnan(fused).any(axis=1, keepdims=True), 1.0 / len(self.labels_), fused
        )
        return fused / fused.sum(axis=1, keepdims=True)

    def fit_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "absent_channels": self.absent_,
            "weights": self.weights_,
        }
        for ch, state in self.channels_.items():
            entry: dict[str, Any] = {}
            if state.svm is not None:
                entry["svm"] = state.svm.fit_info()
            if state.finetune is not None:
                entry["finetune"] = {
                    k: v for k, v in state.finetune.items() if k != "history"
                }
            info[ch] = entry
        if getattr(self, "svm_", None) is not None:
            info["svm"] = self.svm_.fit_info()
        return info

    # ------------------------------------------------------------------ persistence

    def save(self, directory: Path) -> None:
        state: dict[str, Any] = {
            "labels": self.labels_,
            "absent": self.absent_,
            "weights": self.weights_,
            "channels": {},
        }
        for ch, st in self.channels_.items():
            (directory / ch).mkdir()
            entry: dict[str, Any] = {"finetuned": st.finetune is not None}
            if st.finetune is not None:
                torch.save(
                    {k: v.cpu() for k, v in st.net.state_dict().items()},
                    directory / ch / "net.pt",
                )
                entry["cut_shape"] = list(st.net.cut_shape)
            if st.svm is not None:
                (directory / ch / "svm").mkdir()
                st.svm.save(directory / ch / "svm")
                entry["scaler"] = st.scaler.to_dict()
            state["channels"][ch] = entry
        if getattr(self, "svm_", None) is not None:
            (directory / "svm").mkdir()
            self.svm_.save(directory / "svm")
            state["scalers"] = {ch: s.to_dict() for ch, s in self.scalers_.items()}
        atomic_write_text(directory / "binaural.json", json.dumps(state, indent=2))

    @classmethod
    def load(cls, directory: Path, config: Mapping[str, Any]) -> BinauralDCNN:
        model = cls(dict(config))
        try:
            state = json.loads((directory / "binaural.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise BundleError(f"{directory}: unreadable binaural.json ({exc})") from exc
        model.labels_, model.absent_, model.weights_ = (
            state["labels"],
            state["absent"],
            state["weights"],
        )
        svm_config = dataclasses.asdict(model._svm().config)
        model.channels_ = {}
        for ch, entry in state["channels"].items():
            if entry["finetuned"]:
                b = model._backbone()
                net = SegmentNet(
                    b.trainable,
                    entry["cut_shape"],
                    b.feature_dim,
                    len(model.labels_),
                    model.config.dropout,
                )
                net.load_state_dict(
                    torch.load(
                        directory / ch / "net.pt", map_location="cpu", weights_only=True
                    )
                )
                net = net.eval()
            else:
                net = model._segment_net(len(model.labels_))
            finetune, key = ({}, None) if entry["finetuned"] else (None, PRETRAINED)
            st = _Channel(net, finetune=finetune, key=key)
            if "scaler" in entry:
                st.scaler = Normaliser.from_dict(entry["scaler"])
                st.svm = LinearSVM.load(directory / ch / "svm", svm_config)
            model.channels_[ch] = st
        if "scalers" in state:
            model.scalers_ = {
                ch: Normaliser.from_dict(d) for ch, d in state["scalers"].items()
            }
            model.svm_ = LinearSVM.load(directory / "svm", svm_config)
        return model
