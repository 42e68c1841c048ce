"""The training loop every neural model of serkit shares.

:func:`train` runs mini-batch training of any ``torch.nn.Module`` the same way for every model:

- **Adam**, up to ``max_epochs`` passes over the training rows in a seeded random order;
- after every epoch an optional hook (batch-norm recalibration, for example), then the
  **validation score** when a validation split exists;
- **early stopping** when that score has not improved for ``patience`` epochs, the best epoch's
  weights restored.

It knows nothing of features, labels or models: the caller (:class:`serkit.models.network.
NetworkModel`) supplies how to build a batch of rows, the loss of a batch and how to score the
validation split. Validation speakers are chosen with :func:`speaker_holdout` from the
*training* speakers, so a test speaker is never seen.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from serkit.errors import ConfigError

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
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not isinstance(self.device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")


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


@dataclass
class TrainResult:
    """What :func:`train` did.

    Attributes:
        history: one record per epoch: ``epoch``, ``train_loss`` and, with validation,
            ``valid_ua`` and ``valid_loss``.
        best_epoch: the epoch whose weights the module holds (the last one without validation).
    """

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0


#: ``batch_loss(rows, rng) -> scalar tensor``: the loss of the training rows ``rows`` (int array).
BatchLoss = Callable[[np.ndarray, np.random.Generator], torch.Tensor]
#: ``validate() -> {"valid_ua": …, "valid_loss": …}`` of the module in its current state.
Validate = Callable[[], dict[str, float]]


def train(
    module: nn.Module,
    n_rows: int,
    batch_loss: BatchLoss,
    config: TrainConfig,
    *,
    seed: int,
    validate: Validate | None = None,
    after_epoch: Callable[[], Any] | None = None,
) -> TrainResult:
    """Train ``module`` in place (module docstring) and leave it in eval mode.

    Args:
        module: the network, already on its device.
        n_rows: number of training rows; epochs shuffle ``range(n_rows)`` into batches of
            ``config.batch_size``.
        batch_loss: loss of a batch of rows (the module in training mode).
        config: optimiser and stopping options.
        seed: seeds the shuffling (the caller seeds the module's initialisation).
        validate: scores the module after each epoch; ``None`` trains ``max_epochs`` epochs.
        after_epoch: called after every epoch's updates, before validation.

    Returns:
        The per-epoch history and the epoch whose weights the module now holds.
    """
    rng = np.random.default_rng(seed)
    optimiser = torch.optim.Adam(module.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    result = TrainResult()
    best_score, best_state, stale = None, None, 0
    for epoch in range(1, config.max_epochs + 1):
        module.train()
        total = 0.0
        order = rng.permutation(n_rows)
        for start in range(0, n_rows, config.batch_size):
            rows = order[start : start + config.batch_size]
            loss = batch_loss(rows, rng)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(rows)
        if after_epoch is not None:
            after_epoch()
        record = {"epoch": epoch, "train_loss": total / n_rows}
        if validate is not None:
            record.update(validate())
            score = record["valid_ua"] if config.monitor == "ua" else -record["valid_loss"]
            if best_score is None or score > best_score:
                best_score, best_state, result.best_epoch, stale = score, copy.deepcopy(module.state_dict()), epoch, 0
            else:
                stale += 1
        result.history.append(record)
        log.debug("epoch %d: %s", epoch, record)
        if validate is not None and stale >= config.patience:
            break
    if best_state is not None:
        module.load_state_dict(best_state)
    else:
        result.best_epoch = len(result.history)
    module.eval()
    return result
