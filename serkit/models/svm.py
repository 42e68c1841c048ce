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
- with ``select: AXIS``, which block of the input to use is chosen on the same inner folds,
  jointly with ``C``: every run of ``w`` consecutive indices along that axis of the input's layout,
  for each width ``w`` in ``windows`` (for pooled speech-encoder statistics, ``select: layer``
  with ``windows: [1, 3]`` tries every encoder layer and every three adjacent layers together),
  is a candidate, and the pair with the highest inner UA wins. The choice differs between corpora and languages, so it is never fixed
  by hand, and never made on a test speaker;
- class probabilities from the one-vs-rest decision values ``f(x)`` by temperature scaling,
  ``p = softmax(f(x) / T)``, with ``T`` fitted by minimum negative log-likelihood on the inner
  folds' out-of-fold decision values. Scaling by a positive ``T`` keeps the SVM's own decision:
  ``argmax p = argmax f(x)``.

Several utterance-level inputs are concatenated in the order of their keys (feature-level
fusion; each was standardised on its own by the experiment). A row that is entirely NaN in one
input is a missing observation of it (a silent binaural channel, :mod:`serkit.derived`): after
standardisation the training mean is 0, so its block is filled with 0, the mean imputation of
the binaural paper's feature fusion. An input missing in every training row (Side of a mono
corpus) is then all zeros and adds nothing to the linear kernel, as if left out; ``fit_info``
names it.
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

from serkit.config import check_option, is_integer
from serkit.errors import ConfigError, FeatureError
from serkit.features.data import Inputs
from serkit.features.normalise import fit_normaliser
from serkit.models.base import Layouts, SERModel, default_layouts, register


@dataclass(frozen=True)
class LinearSVMConfig:
    """Options of :class:`LinearSVM`.

    Attributes:
        C: one value, or a grid searched on inner leave-one-speaker-out folds of the training set.
        class_weight: ``"balanced"`` (weights N / (K N_k)) or ``None``.
        calibrate: fit the softmax temperature on inner folds (``False``: T = 1).
        select: an axis of the input's layout (``"layer"``); a run of consecutive indices along
            it is chosen on the inner folds, jointly with ``C``. ``None`` uses every column.
        windows: the run lengths tried with ``select`` (default: single indices).
        inner_standardise: standardise each inner fold with its own training rows' statistics
            (the outer fold's procedure repeated inside; the data arrive standardised with all
            training speakers, the inner held-out one included). Off by default, as the
            published baselines were run.
        inner_folds: ``None`` (default): the inner folds are leave-one-speaker-out; ``k``: the
            training speakers are split into ``k`` speaker-disjoint folds (scikit-learn's
            ``GroupKFold``, sizes balanced), for pooled corpora of many speakers.
    """

    C: float | tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    class_weight: str | None = "balanced"
    calibrate: bool = True
    select: str | None = None
    windows: tuple[int, ...] = (1,)
    inner_standardise: bool = False
    inner_folds: int | None = None


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

    def check_config(self) -> None:
        windows = self.config.windows
        check_option(
            isinstance(windows, tuple) and len(windows) > 0 and all(is_integer(w) and w >= 1 for w in windows),
            self.name, f"windows must be a list of integers >= 1, got {windows!r}",
        )  # fmt: skip
        k = self.config.inner_folds
        check_option(k is None or (is_integer(k) and k >= 2), self.name, f"inner_folds must be null or an integer >= 2, got {k!r}")

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
        layouts: Layouts | None = None,
    ) -> LinearSVM:
        """Fit on utterance-level features; ``groups`` (speakers) enable the inner search and calibration.

        ``valid`` is not used: C (and the block, with ``select``) are chosen on inner
        leave-one-speaker-out folds instead.

        Raises:
            ConfigError: a grid (of C or of blocks) but fewer than two training speakers; a
                frame-level input; ``select`` with several inputs or an input whose layout has
                no such axis.
            FeatureError: a row partly NaN, or every input NaN in every row.
        """
        self.inputs_ = list(X)
        data, self.missing_inputs_ = self._matrix(X)
        y = np.asarray(y, dtype=int)
        grid = tuple(np.atleast_1d(self.config.C).astype(float))
        blocks = self._blocks(X, layouts)
        n_groups = 0 if groups is None else len(np.unique(groups))
        if (len(grid) > 1 or len(blocks) > 1) and n_groups < 2:
            raise ConfigError(f"{self.name}: choosing C or a block on inner folds needs at least two training speakers")
        self.labels_ = list(labels)
        self.inner_ua_: dict[tuple[int | None, float], float] = {}
        scores: dict[tuple[int | None, float], np.ndarray] = {}
        if n_groups >= 2 and (len(grid) > 1 or len(blocks) > 1 or self.config.calibrate):
            for block, columns in blocks.items():
                part = data if columns is None else data[:, columns]
                for C, found in self._out_of_fold_scores(part, y, np.asarray(groups), grid, seed).items():
                    scores[block, C] = found
                    self.inner_ua_[block, C] = float(balanced_accuracy_score(y, found.argmax(axis=1)))
            # Ties go to the smaller C (the more regularised model), then to the earlier block.
            order = {key: i for i, key in enumerate(self.inner_ua_)}
            best = max(self.inner_ua_, key=lambda key: (round(self.inner_ua_[key], 12), -key[1], -order[key]))
        else:
            best = (next(iter(blocks)), grid[0])
        self.block_, self.C_ = best
        self.columns_ = blocks[self.block_]
        self.oof_scores_ = scores.get(best)
        self.svm_ = self._svm(self.C_, seed).fit(self._chosen(data), y)
        self.temperature_ = fit_temperature(scores[best], y) if self.config.calibrate and scores else 1.0
        return self

    def _matrix(self, X: Inputs) -> tuple[np.ndarray, list[str]]:
        """The inputs side by side, ``(n, sum of dims)``, missing (all-NaN) blocks filled with 0,
        and the keys missing in every row.

        Raises:
            ConfigError: an input is frame level, or the keys differ from those fitted (bundles
                saved before several inputs existed take any one key).
            FeatureError: a row partly NaN, or every input NaN in every row.
        """
        if self.inputs_ is not None and list(X) != self.inputs_:
            raise ConfigError(f"{self.name}: fitted on features {self.inputs_}, got {list(X)}")
        blocks, absent = [], []
        for key, block in X.items():
            if not isinstance(block, np.ndarray) or block.ndim != 2:
                raise ConfigError(f"{self.name} needs utterance-level (n, dims) features, {key!r} is frame level")
            nan = np.isnan(block)
            if nan.any():
                missing = nan.all(axis=1)
                if (nan.any(axis=1) & ~missing).any():
                    raise FeatureError(f"{self.name}: feature {key!r} has rows that are partly NaN")
                if missing.all():
                    absent.append(key)
                block = np.where(missing[:, None], 0.0, block).astype(block.dtype)
            blocks.append(block)
        if len(absent) == len(blocks) and len(blocks[0]):
            raise FeatureError(f"{self.name}: every input ({', '.join(absent)}) is missing (NaN) in every utterance")
        return (blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)), absent

    def _blocks(self, X: Inputs, layouts: Layouts | None) -> dict[str | None, np.ndarray | None]:
        """Candidate column sets: ``{None: None}`` (every column), or one per run of consecutive
        indices along ``select`` (label ``"3"`` or ``"2-4"``), widths in ``windows``."""
        axis = self.config.select
        if axis is None:
            return {None: None}
        if len(X) != 1:
            raise ConfigError(f"{self.name}: select={axis!r} needs exactly one input feature, got {list(X)}")
        ((key, layout),) = default_layouts(X, layouts).items()
        if not layout.has(axis):
            raise ConfigError(f"{self.name}: select={axis!r}, but feature {key!r} is laid out as {layout}")
        size, out = layout.size(axis), {}
        for width in self.config.windows:
            for start in range(size - width + 1):
                label = str(start) if width == 1 else f"{start}-{start + width - 1}"
                out[label] = layout.columns(axis, list(range(start, start + width)))
        if not out:
            raise ConfigError(f"{self.name}: no window of {self.config.windows} fits the {size} entries of {axis!r}")
        return out

    def _chosen(self, data: np.ndarray) -> np.ndarray:
        return data if self.columns_ is None else data[:, self.columns_]

    def _out_of_fold_scores(
        self, data: np.ndarray, y: np.ndarray, groups: np.ndarray, grid: tuple[float, ...], seed: int
    ) -> dict[float, np.ndarray]:
        """``{C: (n, K) decision values}`` of each training utterance from an SVM trained without its speaker.

        The SVMs are the same linear SVMs as the final one, on precomputed linear kernels
        ``x_i . x_j``: one Gram matrix sliced for every inner fold, or with ``inner_standardise``
        one per inner fold of the data standardised with that fold's training rows.
        """
        scores = {C: np.zeros((len(y), len(self.labels_))) for C in grid}
        data = data.astype(np.float64)
        gram = None if self.config.inner_standardise else data @ data.T
        for held in self._inner_splits(groups):
            if gram is None:
                scaler = fit_normaliser("global", data[~held])
                train, test = scaler.transform(data[~held]), scaler.transform(data[held])
                k_train, k_test = train @ train.T, test @ train.T
            else:
                k_train, k_test = gram[np.ix_(~held, ~held)], gram[np.ix_(held, ~held)]
            for C in grid:
                svm = self._svm(C, seed, kernel="precomputed").fit(k_train, y[~held])
                scores[C][held] = self._full_scores(svm, k_test)
        return scores

    def _inner_splits(self, groups: np.ndarray) -> list[np.ndarray]:
        """Boolean masks of the held-out rows of each inner fold (``inner_folds``)."""
        speakers = np.unique(groups)
        k = self.config.inner_folds
        if k is None or k >= len(speakers):
            return [groups == s for s in speakers]
        from sklearn.model_selection import GroupKFold

        return [np.isin(np.arange(len(groups)), test) for _, test in GroupKFold(n_splits=k).split(groups, groups=groups)]

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
        return self._full_scores(self.svm_, self._chosen(self._matrix(X)[0]))

    def predict_proba(self, X: Inputs) -> np.ndarray:
        """``softmax(f(x) / T)``, ``(n, K)``; its argmax is the SVM's decision."""
        return softmax(self.decision_function(X) / self.temperature_, axis=1)

    def fit_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"C": self.C_, "temperature": self.temperature_}
        if self.missing_inputs_:
            info["missing_inputs"] = self.missing_inputs_
        if self.config.select is None:
            info["inner_ua"] = {str(c): ua for (_, c), ua in self.inner_ua_.items()}
        else:
            info[self.config.select] = self.block_
            info["inner_ua"] = {f"{self.config.select} {b}, C {c}": ua for (b, c), ua in self.inner_ua_.items()}
        return info

    def save(self, directory: Path) -> None:
        joblib.dump(self.svm_, directory / "svm.joblib")
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
    def load(cls, directory: Path, config: Mapping[str, Any]) -> LinearSVM:
        model = cls(dict(config))
        state = json.loads((directory / "state.json").read_text())
        model.svm_ = joblib.load(directory / "svm.joblib")
        model.labels_ = state["labels"]
        model.C_ = state["C"]
        model.temperature_ = state["temperature"]
        # bundles written before several inputs and block choice existed: one input, every column
        model.block_ = state.get("block")
        model.columns_ = None if state.get("columns") is None else np.asarray(state["columns"], dtype=np.int64)
        model.inputs_ = state.get("inputs")
        model.inner_ua_, model.missing_inputs_ = {}, []
        model.oof_scores_ = None
        return model
