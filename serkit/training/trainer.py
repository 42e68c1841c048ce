"""The shared trainer of serkit's neural models.

:class:`TorchSERModel` is a :class:`~serkit.models.base.SERModel` around a ``torch.nn.Module``
that subclasses build with :meth:`TorchSERModel.build`. The trainer does the rest, the same way
for every model:

- **validation from training speakers only**: when the experiment passes no validation split,
  ``valid_speakers`` of the training speakers (chosen with the seed) are held out for early
  stopping; the test speaker is never seen;
- **mini-batches** of variable-length sequences padded to the longest in the batch, with a
  ``<key>_lengths`` tensor so modules mask the padding (:func:`pad_sequences`);
- **Adam**, up to ``max_epochs``, early stopping when the validation score has not improved for
  ``patience`` epochs, the best epoch's weights restored;
- seeded (``torch.manual_seed`` and a NumPy generator for shuffling), CPU by default, the GPU
  when ``device="auto"`` finds one.

A module's ``forward(batch)`` takes the dict :meth:`TorchSERModel.make_batch` builds and returns
logits ``(B, K)``. Models whose training loss is not a classification loss on the logits alone
(focal loss, reconstruction terms) override :meth:`TorchSERModel.training_loss`.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score
from torch import nn

from serkit.errors import BundleError, ConfigError
from serkit.models.base import Inputs, SERModel, take_rows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Training options shared by every neural model (their configs extend this class).

    Attributes:
        learning_rate: Adam's initial learning rate.
        weight_decay: Adam's L2 weight decay.
        batch_size: utterances per mini-batch.
        max_epochs: upper bound on passes over the training data.
        patience: epochs without a better validation score before stopping.
        monitor: ``"ua"`` (validation unweighted average recall, higher is better) or
            ``"loss"`` (validation loss, lower is better).
        valid_speakers: training speakers held out for early stopping when the experiment gives
            no validation split; 0 trains for ``max_epochs`` without early stopping.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    """

    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 64
    max_epochs: int = 100
    patience: int = 10
    monitor: Literal["ua", "loss"] = "ua"
    valid_speakers: int = 1
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.learning_rate <= 0 or self.batch_size < 1 or self.max_epochs < 1 or self.patience < 1:
            raise ConfigError("learning_rate must be > 0; batch_size, max_epochs and patience >= 1")
        if self.monitor not in ("ua", "loss"):
            raise ConfigError(f"monitor must be 'ua' or 'loss', got {self.monitor!r}")
        if self.valid_speakers < 0:
            raise ConfigError("valid_speakers must be >= 0")


def pad_sequences(items: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``(frames_i, dims)`` arrays into a zero-padded ``(B, max_frames, dims)`` float32 tensor.

    Returns:
        The padded batch and the int64 lengths ``(B,)``.
    """
    lengths = torch.tensor([len(x) for x in items], dtype=torch.int64)
    out = torch.zeros((len(items), int(lengths.max()), items[0].shape[1]), dtype=torch.float32)
    for i, x in enumerate(items):
        out[i, : len(x)] = torch.from_numpy(np.asarray(x, dtype=np.float32))
    return out, lengths


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """Boolean ``(B, max_len)`` mask, True on real frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse the real frames of each padded sequence in place of time, padding left at the end.

    Args:
        x: ``(B, T, D)`` padded sequences.
        lengths: ``(B,)`` int64 real frame counts.

    Returns:
        ``(B, T, D)`` with ``out[b, t] = x[b, lengths[b] - 1 - t]`` for ``t < lengths[b]`` and
        ``x[b, t]`` otherwise; applying it twice gives ``x`` back.
    """
    steps = torch.arange(x.shape[1], device=x.device)[None, :]
    last = lengths.to(x.device)[:, None] - 1
    index = torch.where(steps <= last, last - steps, steps)
    return x.gather(1, index[:, :, None].expand(-1, -1, x.shape[2]))


def choose_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available else CPU; otherwise the named device.

    Raises:
        ConfigError: CUDA asked for but not available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for, but no CUDA device is available")
    return torch.device(name)


def speaker_holdout(groups: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Boolean mask of the rows of ``n`` training speakers chosen with ``seed`` (validation rows)."""
    speakers = np.unique(groups)
    if n == 0 or len(speakers) <= n:
        return np.zeros(len(groups), dtype=bool)
    chosen = np.random.default_rng(seed).choice(speakers, size=n, replace=False)
    return np.isin(groups, chosen)


class TorchSERModel(SERModel):
    """A :class:`SERModel` trained by serkit's trainer (module docstring).

    Subclasses set ``name`` and ``Config`` (a frozen dataclass extending :class:`TrainConfig`) and
    implement :meth:`build`. Fitted state: ``module_`` (in eval mode), ``labels_``, ``dims_``,
    ``history_`` (per-epoch training loss and validation score), ``best_epoch_``.
    """

    Config = TrainConfig

    # ------------------------------------------------------------------ hooks for subclasses

    def build(self, dims: Mapping[str, int], n_classes: int) -> nn.Module:
        """The untrained module for inputs of ``dims`` (feature key -> last-axis size)."""
        raise NotImplementedError

    def make_batch(self, X: Inputs, index: np.ndarray, *, train: bool, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """Tensors of rows ``index``: ``(B, dims)`` for utterance-level keys, ``(B, T, dims)`` plus
        ``<key>_lengths`` ``(B,)`` for frame-level keys. ``train`` and ``rng`` let a subclass
        augment or crop during training."""
        batch: dict[str, torch.Tensor] = {}
        for key, data in X.items():
            if isinstance(data, np.ndarray):
                batch[key] = torch.from_numpy(np.asarray(data[index], dtype=np.float32))
            else:
                batch[key], batch[f"{key}_lengths"] = pad_sequences([data[i] for i in index])
        return batch

    def training_loss(
        self, module: nn.Module, batch: dict[str, torch.Tensor], y: torch.Tensor, class_counts: torch.Tensor
    ) -> torch.Tensor:
        """The loss minimised on a training batch (default: cross-entropy on ``module(batch)``)."""
        return nn.functional.cross_entropy(module(batch), y)

    def before_evaluation(self, module: nn.Module, X: Inputs, device: torch.device) -> None:
        """Called after every training epoch, before validation and before the state is kept.

        ``X`` are the epoch's training inputs. The default does nothing; a model whose
        evaluation-mode statistics must be re-estimated from the training data (batch-norm
        recalibration) overrides it.
        """

    # ------------------------------------------------------------------ training

    def fit(
        self,
        X: Inputs,
        y: np.ndarray,
        *,
        labels: Sequence[str],
        groups: np.ndarray | None = None,
        seed: int = 0,
        valid: tuple[Inputs, np.ndarray] | None = None,
    ) -> TorchSERModel:
        """Train with early stopping (module docstring).

        Args:
            X: inputs (see :mod:`serkit.models.base`).
            y: ``(n,)`` int targets.
            labels: class names, ``K`` of them.
            groups: ``(n,)`` speakers; needed to hold out validation speakers when ``valid`` is
                ``None`` and ``valid_speakers > 0``.
            seed: seeds weights, shuffling and the validation speakers.
            valid: an explicit validation split (from training speakers, made by the protocol).

        Raises:
            ConfigError: no validation split can be made (no ``groups``, too few speakers).
        """
        cfg = self.config
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        y = np.asarray(y, dtype=np.int64)
        if valid is None and cfg.valid_speakers > 0:
            if groups is None:
                raise ConfigError(f"{self.name}: early stopping needs the training speakers (groups) or a validation split")
            held = speaker_holdout(np.asarray(groups), cfg.valid_speakers, seed)
            if not held.any():
                raise ConfigError(
                    f"{self.name}: cannot hold out {cfg.valid_speakers} validation speaker(s) from "
                    f"{len(np.unique(groups))} training speakers; set valid_speakers=0"
                )
            keep = np.flatnonzero(~held)
            valid = ({k: take_rows(v, np.flatnonzero(held)) for k, v in X.items()}, y[held])
            X, y = {k: take_rows(v, keep) for k, v in X.items()}, y[keep]
        self.labels_ = list(labels)
        self.dims_ = {key: int((data[0] if isinstance(data, list) else data).shape[-1]) for key, data in X.items()}
        device = choose_device(cfg.device)
        module = self.build(self.dims_, len(self.labels_)).to(device)
        optimiser = torch.optim.Adam(module.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        class_counts = torch.bincount(torch.from_numpy(y), minlength=len(self.labels_)).to(device)
        self.history_: list[dict[str, float]] = []
        best_score, best_state, self.best_epoch_, stale = None, None, 0, 0
        for epoch in range(1, cfg.max_epochs + 1):
            module.train()
            order = rng.permutation(len(y))
            total = 0.0
            for start in range(0, len(order), cfg.batch_size):
                index = order[start : start + cfg.batch_size]
                batch = _to(self.make_batch(X, index, train=True, rng=rng), device)
                loss = self.training_loss(module, batch, torch.from_numpy(y[index]).to(device), class_counts)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(index)
            self.before_evaluation(module, X, device)
            record = {"epoch": epoch, "train_loss": total / len(y)}
            if valid is not None:
                proba = self._predict(module, valid[0], device)
                record["valid_ua"] = float(balanced_accuracy_score(valid[1], proba.argmax(axis=1)))
                record["valid_loss"] = float(-np.mean(np.log(proba[np.arange(len(valid[1])), valid[1]] + 1e-12)))
                score = record["valid_ua"] if cfg.monitor == "ua" else -record["valid_loss"]
                if best_score is None or score > best_score:
                    best_score, best_state, self.best_epoch_, stale = score, copy.deepcopy(module.state_dict()), epoch, 0
                else:
                    stale += 1
            self.history_.append(record)
            log.debug("%s epoch %d: %s", self.name, epoch, record)
            if valid is not None and stale >= cfg.patience:
                break
        if best_state is not None:
            module.load_state_dict(best_state)
        else:
            self.best_epoch_ = len(self.history_)
        self.module_ = module.eval()
        return self

    # ------------------------------------------------------------------ inference

    def eval_batches(self, X: Inputs, device: torch.device) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor]]]:
        """Evaluation batches of ``X`` on ``device``: ``(row indices, batch)`` pairs covering every row once.

        Utterances of similar length (of the first input, when frame-level) share a batch: less
        padding, same results.
        """
        first = next(iter(X.values()))
        order = np.argsort([len(x) for x in first], kind="stable") if isinstance(first, list) else np.arange(len(first))
        rng = np.random.default_rng(0)
        for start in range(0, len(order), self.config.batch_size):
            index = order[start : start + self.config.batch_size]
            yield index, _to(self.make_batch(X, index, train=False, rng=rng), device)

    @torch.no_grad()
    def _predict(self, module: nn.Module, X: Inputs, device: torch.device) -> np.ndarray:
        was_training = module.training
        module.eval()
        out = np.zeros((len(next(iter(X.values()))), len(self.labels_)))
        for index, batch in self.eval_batches(X, device):
            out[index] = torch.softmax(module(batch).double(), dim=1).cpu().numpy()
        module.train(was_training)
        return out

    def predict_proba(self, X: Inputs) -> np.ndarray:
        """Softmax of the module's logits, ``(n, K)`` float64."""
        return self._predict(self.module_, X, next(self.module_.parameters()).device)

    def fit_info(self) -> dict[str, Any]:
        return {"best_epoch": self.best_epoch_, "epochs_run": len(self.history_), "history": self.history_}

    # ------------------------------------------------------------------ persistence

    def save(self, directory: Path) -> None:
        state = {k: v.cpu() for k, v in self.module_.state_dict().items()}
        torch.save({"state": state, "labels": self.labels_, "dims": self.dims_}, directory / "module.pt")

    @classmethod
    def load(cls, directory: Path, config: Mapping[str, Any]) -> TorchSERModel:
        model = cls(dict(config))
        try:
            saved = torch.load(directory / "module.pt", map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as exc:
            raise BundleError(f"{directory / 'module.pt'}: cannot load ({exc})") from exc
        model.labels_, model.dims_ = list(saved["labels"]), dict(saved["dims"])
        module = model.build(model.dims_, len(model.labels_))
        module.load_state_dict(saved["state"])
        model.module_ = module.to(choose_device(model.config.device)).eval()
        model.history_, model.best_epoch_ = [], 0
        return model


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}
