"""Linear SVM on utterance-level features: the papers' classical baseline.

openSMILE functionals (eGeMAPS, ComParE, IS10) + linear SVM is the baseline of MSIR (Table 1),
the attention-BLSTM-FCN paper (Table 7) and the emotion-embedding autoencoder (Table 4, IS10+SVM);
the binaural paper and the deep-spectrum row feed their learned features to the same classifier.

The SVM itself is scikit-learn's ``SVC(kernel="linear")`` (libsvm, one-vs-one training, votes
aggregated to one-vs-rest decision values). On EmoDB leave-one-speaker-out it reproduces the
independent anchors in ``DESIGN.md`` exactly; liblinear's one-vs-rest ``LinearSVC`` scored lower
(ComParE, speaker-normalised: 0.805 vs 0.858 UA) and ran 30 times slower. What serkit adds:

- ``C`` is chosen from a grid on inner folds that are leave-one-speaker-out over the *training*
  speakers (the test speaker is never seen), maximising unweighted average recall (UA, which is
  scikit-learn's balanced accuracy: mean recall over the classes present);
- class probabilities from the one-vs-rest decision values ``f(x)`` by temperature scaling,
  ``p = softmax(f(x) / T)``, with ``T`` fitted by minimum negative log-likelihood on the inner
  folds' out-of-fold decision values. Scaling by a positive ``T`` keeps the SVM's own decision:
  ``argmax p = argmax f(x)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.metrics import balanced_accuracy_score
from sklearn.svm import SVC

from serkit.errors import ConfigError
from serkit.models.base import Inputs, SERModel, register, single_matrix


@dataclass(frozen=True)
class LinearSVMConfig:
    """Options of :class:`LinearSVM`.

    Attributes:
        C: one value, or a grid searched on inner leave-one-speaker-out folds of the training set.
        class_weight: ``"balanced"`` (weights N / (K N_k)) or ``None``.
        calibrate: fit the softmax temperature on inner folds (``False``: T = 1).
    """

    C: float | tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    class_weight: str | None = "balanced"
    calibrate: bool = True


def fit_temperature(scores: np.ndarray, y: np.ndarray) -> float:
    """Temperature ``T > 0`` minimising the mean NLL of ``softmax(scores / T)`` for targets ``y``.

    Args:
        scores: ``(n, K)`` decision values.
        y: ``(n,)`` integer targets.

    Returns:
        T, searched over [1e-3, 1e3] on a log scale.
    """

    def nll(log_t: float) -> float:
        logp = log_softmax(scores / np.exp(log_t), axis=1)
        return float(-np.mean(logp[np.arange(len(y)), y]))

    result = minimize_scalar(nll, bounds=(np.log(1e-3), np.log(1e3)), method="bounded")
    return float(np.exp(result.x))


@register
class LinearSVM(SERModel):
    """Linear-kernel SVM (libsvm, one-vs-one, one-vs-rest decision values) with inner speaker-independent C search."""

    name = "linear_svm"
    Config = LinearSVMConfig

    def _svm(self, C: float, seed: int, kernel: str = "linear") -> SVC:
        # break_ties makes predict() the argmax of the one-vs-rest decision values we calibrate.
        return SVC(
            kernel=kernel,
            C=C,
            class_weight=self.config.class_weight,
            decision_function_shape="ovr",
            break_ties=True,
            random_state=seed,
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
    ) -> LinearSVM:
        """Fit on ``(n, dims)`` features; ``groups`` (speakers) enable the inner C search and calibration.

        ``valid`` is not used: C is chosen on inner leave-one-speaker-out folds instead.

        Raises:
            ConfigError: a C grid is given but fewer than two training speakers are.
        """
        data = single_matrix(X, self.name)
        y = np.asarray(y, dtype=int)
        grid = tuple(np.atleast_1d(self.config.C).astype(float))
        n_groups = 0 if groups is None else len(np.unique(groups))
        if len(grid) > 1 and n_groups < 2:
            raise ConfigError(f"{self.name}: choosing C from {grid} needs the speakers of at least two training speakers")
        self.labels_ = list(labels)
        self.inner_ua_: dict[float, float] = {}
        scores_by_c: dict[float, np.ndarray] = {}
        if n_groups >= 2 and (len(grid) > 1 or self.config.calibrate):
            # One Gram matrix serves every inner fit: the linear kernel is x_i . x_j.
            gram = data.astype(np.float64) @ data.T.astype(np.float64)
            for C in grid:
                scores = self._out_of_fold_scores(gram, y, np.asarray(groups), C, seed)
                scores_by_c[C] = scores
                self.inner_ua_[C] = float(balanced_accuracy_score(y, scores.argmax(axis=1)))
            # Ties go to the smaller C (the more regularised model).
            self.C_ = max(grid, key=lambda c: (round(self.inner_ua_[c], 12), -c))
        else:
            self.C_ = grid[0]
        self.oof_scores_ = scores_by_c.get(self.C_)
        self.svm_ = self._svm(self.C_, seed).fit(data, y)
        self.temperature_ = fit_temperature(scores_by_c[self.C_], y) if self.config.calibrate and scores_by_c else 1.0
        return self

    def _out_of_fold_scores(self, gram: np.ndarray, y: np.ndarray, groups: np.ndarray, C: float, seed: int) -> np.ndarray:
        """Decision values of each training utterance from an SVM trained without its speaker.

        ``gram`` is the ``(n, n)`` linear kernel of the training data; the SVMs here are the
        same linear SVMs as the final one, fitted on slices of it.
        """
        scores = np.zeros((len(y), len(self.labels_)))
        for speaker in np.unique(groups):
            held = groups == speaker
            svm = self._svm(C, seed, kernel="precomputed").fit(gram[np.ix_(~held, ~held)], y[~held])
            scores[held] = self._full_scores(svm, gram[np.ix_(held, ~held)])
        return scores

    def out_of_fold_proba(self) -> np.ndarray:
        """``softmax(f(x) / T)`` ``(n, K)`` of each training utterance of :meth:`fit`, from the
        inner SVM with the chosen C that was trained without its speaker: honest training scores
        for a later stage such as score-fusion weights. They are the scores the C search and the
        temperature were fitted on, kept from :meth:`fit`, not recomputed.

        Raises:
            ConfigError: ``fit`` computed no inner folds (fewer than two training speakers, or
                one C with ``calibrate=False``).
        """
        if self.oof_scores_ is None:
            raise ConfigError(f"{self.name}: out-of-fold scores need inner folds over at least two training speakers")
        return softmax(self.oof_scores_ / self.temperature_, axis=1)

    def _full_scores(self, svm: SVC, data: np.ndarray) -> np.ndarray:
        """``(n, K)`` decision values of features (or kernel rows, for a precomputed-kernel SVM);
        classes absent from an inner training fold get -inf."""
        raw = svm.decision_function(data)
        if raw.ndim == 1:  # two classes: libsvm returns the positive class's margin
            raw = np.stack([-raw, raw], axis=1)
        out = np.full((len(data), len(self.labels_)), -np.inf)
        out[:, svm.classes_] = raw
        return out

    def decision_function(self, X: Inputs) -> np.ndarray:
        """One-vs-rest decision values ``(n, K)``."""
        return self._full_scores(self.svm_, single_matrix(X, self.name))

    def predict_proba(self, X: Inputs) -> np.ndarray:
        """``softmax(f(x) / T)``, ``(n, K)``; its argmax is the SVM's decision."""
        return softmax(self.decision_function(X) / self.temperature_, axis=1)

    def fit_info(self) -> dict[str, Any]:
        return {
            "C": self.C_,
            "temperature": self.temperature_,
            "inner_ua": {str(c): ua for c, ua in self.inner_ua_.items()},
        }

    def save(self, directory: Path) -> None:
        joblib.dump(self.svm_, directory / "svm.joblib")
        state = {"labels": self.labels_, "C": self.C_, "temperature": self.temperature_}
        (directory / "state.json").write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, directory: Path, config: Mapping[str, Any]) -> LinearSVM:
        model = cls(dict(config))
        state = json.loads((directory / "state.json").read_text())
        model.svm_ = joblib.load(directory / "svm.joblib")
        model.labels_ = state["labels"]
        model.C_ = state["C"]
        model.temperature_ = state["temperature"]
        model.inner_ua_ = {}
        model.oof_scores_ = None
        return model
