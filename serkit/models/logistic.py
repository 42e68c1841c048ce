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

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from serkit.features.normalise import fit_normaliser
from serkit.models.base import register
from serkit.models.svm import LinearArrays, LinearSVM, LinearSVMConfig

if TYPE_CHECKING:
    from sklearn.linear_model import LogisticRegression


@dataclass(frozen=True)
class LogisticConfig(LinearSVMConfig):
    """Options of :class:`LinearLogistic`: those of :class:`~serkit.models.svm.LinearSVMConfig`
    (``C`` is the inverse L2 strength of the summed, class-weighted cross-entropy), plus:

    Attributes:
        max_iter: L-BFGS iterations per fit.
    """

    C: float | tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0)
    max_iter: int = 1000


class ClassLinear(LinearArrays):
    """Logistic regression's arrays: one row of logits per class (one row, the second class's
    logit against the first, for two classes, whose scores are then ``(-m, m)`` as for the SVM)."""

    @staticmethod
    def n_rows(k: int) -> int:
        return 1 if k == 2 else k

    def scores(self, margins: np.ndarray) -> np.ndarray:
        return np.concatenate([-margins, margins], axis=1) if len(self.classes) == 2 else margins


@register
class LinearLogistic(LinearSVM):
    """Multinomial logistic regression with inner speaker-independent choice of C (and block).

    Fitted state and files as :class:`~serkit.models.svm.LinearSVM` (``weights.safetensors``
    and ``state.json``), the weights a :class:`ClassLinear`.
    """

    name = "logistic_regression"
    Config = LogisticConfig
    Linear = ClassLinear

    def _svm(self, C: float, seed: int, kernel: str = "linear") -> LogisticRegression:
        from sklearn.linear_model import LogisticRegression

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
