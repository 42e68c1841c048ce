"""Class-balanced multinomial logistic regression on utterance-level features.

The other linear classifier of the frozen-encoder recipes: EmoBox (Ma et al., Interspeech 2024,
Sec. 3) and SUPERB's emotion task read frozen speech-encoder representations with a linear
layer trained by cross-entropy, which is multinomial logistic regression. It shares everything
but the classifier with :class:`~serkit.models.svm.LinearSVM`: several inputs fused by
concatenation, missing blocks filled with 0, ``C`` and (with ``select``) a block of encoder
layers chosen jointly on inner leave-one-speaker-out folds of the training speakers by UA, and a
softmax temperature fitted on those folds' out-of-fold scores.

The classifier is scikit-learn's ``LogisticRegression`` (L2 penalty, L-BFGS): it minimises
``1/2 ||W||^2 + C sum_i w_{y_i} CE(softmax(W x_i + b), y_i)`` with class weights
``w_k = N / (K N_k)`` when ``class_weight`` is ``"balanced"``. Its decision values are the
logits ``W x + b``; with ``calibrate`` the probabilities are ``softmax((W x + b) / T)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from serkit.errors import BundleError
from serkit.features.normalise import fit_normaliser
from serkit.models.base import register
from serkit.models.svm import LinearSVM, LinearSVMConfig


@dataclass(frozen=True)
class LogisticConfig(LinearSVMConfig):
    """Options of :class:`LinearLogistic`: those of :class:`~serkit.models.svm.LinearSVMConfig`
    (``C`` is the inverse L2 strength of the summed, class-weighted cross-entropy), plus:

    Attributes:
        max_iter: L-BFGS iterations per fit.
    """

    C: float | tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0)
    max_iter: int = 1000


@register
class LinearLogistic(LinearSVM):
    """Multinomial logistic regression with inner speaker-independent choice of C (and block)."""

    name = "logistic_regression"
    Config = LogisticConfig

    def _svm(self, C: float, seed: int, kernel: str = "linear") -> LogisticRegression:
        return LogisticRegression(
            C=C, class_weight=self.config.class_weight, max_iter=self.config.max_iter, random_state=seed
        )

    def _out_of_fold_scores(
        self, data: np.ndarray, y: np.ndarray, groups: np.ndarray, grid: tuple[float, ...], seed: int
    ) -> dict[float, np.ndarray]:
        """``{C: (n, K) logits}`` of each training utterance from a model trained without its speaker."""
        scores = {C: np.zeros((len(y), len(self.labels_))) for C in grid}
        for held in self._inner_splits(groups):
            train, test = data[~held], data[held]
            if self.config.inner_standardise:
                scaler = fit_normaliser("global", train)
                train, test = scaler.transform(train), scaler.transform(test)
            for C in grid:
                model = self._svm(C, seed).fit(train, y[~held])
                scores[C][held] = self._full_scores(model, test)
        return scores

    def save(self, directory: Path) -> None:
        """Write ``weights.npz`` (``coef``, ``intercept``, ``classes``) and ``state.json``; no pickle."""
        np.savez(directory / "weights.npz", coef=self.svm_.coef_, intercept=self.svm_.intercept_,
                 classes=self.svm_.classes_)  # fmt: skip
        state = {
            "labels": self.labels_,
            "inputs": self.inputs_,
            "C": self.C_,
            "block": self.block_,
            "columns": None if self.columns_ is None else self.columns_.tolist(),
            "temperature": self.temperature_,
        }
        (directory / "state.json").write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, directory: Path, config: Mapping[str, Any]) -> LinearLogistic:
        """Rebuild from :meth:`save`'s files, read with pickling off.

        Raises:
            BundleError: a file is missing or unreadable, or its arrays disagree in shape.
        """
        model = cls(dict(config))
        try:
            state = json.loads((directory / "state.json").read_text())
            with np.load(directory / "weights.npz", allow_pickle=False) as arrays:
                coef, intercept, classes = arrays["coef"], arrays["intercept"], arrays["classes"]
        except (OSError, ValueError, KeyError) as exc:
            raise BundleError(f"{directory}: cannot read the logistic regression's state ({exc})") from None
        if coef.ndim != 2 or intercept.shape != (coef.shape[0],) or classes.ndim != 1:
            raise BundleError(f"{directory / 'weights.npz'}: coef {coef.shape}, intercept {intercept.shape} disagree")
        lr = model._svm(float(state["C"]), 0)
        lr.coef_, lr.intercept_, lr.classes_ = coef, intercept, classes
        model.svm_ = lr
        model.labels_ = state["labels"]
        model.C_ = state["C"]
        model.temperature_ = state["temperature"]
        model.block_ = state.get("block")
        model.columns_ = None if state.get("columns") is None else np.asarray(state["columns"], dtype=np.int64)
        model.inputs_ = state.get("inputs")
        model.inner_ua_, model.missing_inputs_ = {}, []
        model.oof_scores_ = None
        return model
