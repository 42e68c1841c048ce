"""The base class of serkit's neural models: a :class:`~serkit.models.base.SERModel` around a
``torch.nn.Module``.

A subclass builds its module from the inputs' layouts (:meth:`TorchSERModel.build`); this class
does the rest the same way for every network:

- **validation from training speakers only**: when the experiment passes no validation split,
  ``valid_speakers`` of the training speakers (chosen with the seed) are held out for early
  stopping; the test speaker is never seen;
- **mini-batches** of variable-length sequences padded to the longest in the batch, with a
  ``<key>_lengths`` tensor so modules mask the padding
  (:func:`~serkit.blocks.sequences.pad_sequences`);
- **training** by serkit's loop (:func:`serkit.training.trainer.train`: Adam, early stopping,
  the best epoch's weights restored), seeded (``torch.manual_seed`` and a NumPy generator for
  shuffling), on the CPU by default and the GPU when ``device="auto"`` finds one.

A module's ``forward(batch)`` takes the dict :meth:`TorchSERModel.make_batch` builds and returns
logits ``(B, K)``. Models whose training loss is not a classification loss on the logits alone
(focal loss, reconstruction terms) override :meth:`TorchSERModel.training_loss`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score
from torch import nn

from serkit.blocks.sequences import pad_sequences
from serkit.errors import BundleError, ConfigError, FeatureError
from serkit.features.data import Inputs, n_rows, take_rows
from serkit.features.layout import Layout
from serkit.models.base import Layouts, SERModel, default_layouts
from serkit.state_files import (
    is_labels,
    is_object,
    read_arrays,
    read_json,
    take,
    write_arrays,
    write_json,
)
from serkit.training.trainer import TrainConfig, choose_device, speaker_holdout, train


class TorchSERModel(SERModel):
    """A :class:`SERModel` trained by serkit's loop (module docstring).

    Subclasses set ``name`` and ``Config`` (a frozen dataclass extending
    :class:`~serkit.training.trainer.TrainConfig`) and implement :meth:`build`. Fitted state:
    ``module_`` (in eval mode), ``labels_``, ``layouts_`` (feature key -> layout), ``history_``
    (per-epoch training loss and validation score), ``best_epoch_``.
    """

    Config = TrainConfig

    # ------------------------------------------------------------------ hooks for subclasses

    def build(self, layouts: Mapping[str, Layout], n_classes: int) -> nn.Module:
        """The untrained module for inputs with these column layouts (feature key -> layout)."""
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

    @property
    def dims_(self) -> dict[str, int]:
        """Feature key -> width of the fitted inputs."""
        return {key: layout.dim for key, layout in self.layouts_.items()}

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
            layouts: the inputs' column layouts (flat when not given).

        Raises:
            ConfigError: no validation split can be made (no ``groups``, too few speakers).
        """
        cfg = self.config
        torch.manual_seed(seed)
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
        self.layouts_ = default_layouts(X, layouts)
        device = choose_device(cfg.device)
        module = self.build(self.layouts_, len(self.labels_)).to(device)
        class_counts = torch.bincount(torch.from_numpy(y), minlength=len(self.labels_)).to(device)

        def batch_loss(rows: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
            batch = _to(self.make_batch(X, rows, train=True, rng=rng), device)
            return self.training_loss(module, batch, torch.from_numpy(y[rows]).to(device), class_counts)

        validate = None
        if valid is not None:
            x_valid, y_valid = valid

            def validate() -> dict[str, float]:
                proba = self._predict(module, x_valid, device)
                return {
                    "valid_ua": float(balanced_accuracy_score(y_valid, proba.argmax(axis=1))),
                    "valid_loss": float(-np.mean(np.log(proba[np.arange(len(y_valid)), y_valid] + 1e-12))),
                }

        result = train(
            module,
            len(y),
            batch_loss,
            cfg,
            seed=seed,
            validate=validate,
            after_epoch=lambda: self.before_evaluation(module, X, device),
        )
        self.module_, self.history_, self.best_epoch_ = module, result.history, result.best_epoch
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
        out = np.zeros((n_rows(X), len(self.labels_)))
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

    def input_widths(self) -> dict[str, int]:
        return self.dims_

    def save(self, directory: Path) -> None:
        """``module.safetensors`` (the module's tensors) and ``module.json`` (labels, input layouts)."""
        save_module(self.module_, directory / "module.safetensors")
        layouts = {key: layout.to_list() for key, layout in self.layouts_.items()}
        write_json(directory / "module.json", {"labels": self.labels_, "layouts": layouts})

    @classmethod
    def load(cls, directory: Path, config: Mapping[str, Any]) -> TorchSERModel:
        """Rebuild a network saved by :meth:`save` (arrays and JSON only).

        Raises:
            BundleError: a missing or malformed file or field, or tensors that do not fit the
                network the config, labels and layouts describe (the message names the file).
        """
        model = cls(dict(config))
        where = directory / "module.json"
        state = read_json(where)
        model.labels_ = take(state, "labels", is_labels, "a list of at least two distinct class names", where)
        saved = take(state, "layouts", lambda v: is_object(v) and len(v) > 0, "an object of feature layouts", where)
        try:
            model.layouts_ = {key: Layout.from_list(axes) for key, axes in saved.items()}
        except FeatureError as exc:
            raise BundleError(f"{where}: field 'layouts': {exc}") from exc
        module = load_module(lambda: model.build(model.layouts_, len(model.labels_)), directory / "module.safetensors")
        model.module_ = module.to(choose_device(model.config.device)).eval()
        model.history_, model.best_epoch_ = [], 0
        return model


def save_module(module: nn.Module, path: Path) -> None:
    """Write a module's parameters and buffers (its ``state_dict``) to a safetensors file."""
    write_arrays(path, {name: value.detach().cpu().numpy() for name, value in module.state_dict().items()})


def load_module(build: Callable[[], nn.Module], path: Path) -> nn.Module:
    """The module ``build()`` makes, with the tensors of ``path`` (written by :func:`save_module`).

    The module is first built on PyTorch's ``meta`` device (shapes only, no memory), and the
    file must hold exactly its tensors, of the same kinds and shapes, before the real module is
    built and filled: a file or a description that does not fit never allocates a network of
    the wrong size.

    Raises:
        BundleError: the description cannot be built (``ConfigError``/``FeatureError`` from
            ``build``, naming ``path``), or the file does not hold exactly the module's tensors.
    """
    try:
        with torch.device("meta"):
            skeleton = build().state_dict()
    except (ConfigError, FeatureError, ValueError, RuntimeError) as exc:
        raise BundleError(f"{path}: the saved description does not give a network ({exc})") from exc
    expected = {name: ("f" if t.is_floating_point() else "b" if t.dtype == torch.bool else "i", t.dim())
                for name, t in skeleton.items()}  # fmt: skip
    arrays = read_arrays(path, expected)
    for name, tensor in skeleton.items():
        if tuple(arrays[name].shape) != tuple(tensor.shape):
            raise BundleError(f"{path}: tensor {name!r} has shape {arrays[name].shape}, the network needs {tuple(tensor.shape)}")
    module = build()
    module.load_state_dict({name: torch.from_numpy(value.copy()).to(skeleton[name].dtype) for name, value in arrays.items()})
    return module


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}
