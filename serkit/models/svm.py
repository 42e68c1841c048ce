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
- the fitted SVM is kept as arrays, not as a scikit-learn object (:class:`PairwiseLinear`): the
  weight vector and bias of each one-vs-one pair (libsvm's linear-kernel decision is
  ``w·x + b`` with ``w`` the dual-weighted sum of support vectors) and the classes seen, turned
  into one-vs-rest decision values the way scikit-learn's ``SVC(decision_function_shape="ovr")``
  does (votes plus confidences squashed into (-1/3, 1/3)). The same arrays predict in the
  experiment and in a saved bundle (``weights.safetensors`` + ``state.json``: nothing pickled);
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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from serkit.config import check_choice, check_option, is_integer, is_number, plain
from serkit.errors import BundleError, ConfigError, FeatureError
from serkit.features.data import Inputs
from serkit.features.normalise import fit_normaliser
from serkit.models.base import Layouts, SERModel, default_layouts, register
from serkit.state_files import (
    is_int_list,
    is_labels,
    is_positive,
    is_str_list,
    read_arrays,
    read_json,
    take,
    write_arrays,
    write_json,
)

if TYPE_CHECKING:
    from sklearn.svm import SVC


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


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(n, K)`` scores, float64; ``-inf`` scores get probability 0.

    Written out rather than taken from scipy so that labelling recordings imports neither scipy
    nor scikit-learn (about 3 s of a cold start on 2 cores); fitting still uses both.
    """
    shifted = np.asarray(scores, dtype=np.float64) - np.max(scores, axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(scores: np.ndarray, y: np.ndarray) -> float:
    """Temperature ``T > 0`` minimising the mean NLL of ``softmax(scores / T)`` for targets ``y``.

    Args:
        scores: ``(n, K)`` decision values.
        y: ``(n,)`` integer targets.

    Returns:
        T, searched over [1e-3, 1e3] on a log scale.
    """

    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    def nll(log_t: float) -> float:
        logp = log_softmax(scores / np.exp(log_t), axis=1)
        return float(-np.mean(logp[np.arange(len(y)), y]))

    result = minimize_scalar(nll, bounds=(np.log(1e-3), np.log(1e3)), method="bounded")
    return float(np.exp(result.x))


@dataclass(frozen=True)
class LinearArrays:
    """A fitted linear classifier as arrays: what :class:`LinearSVM` (and models built on it)
    keep, predict with and save, instead of a scikit-learn object.

    Subclasses say how the rows of ``coef`` become class scores (:meth:`scores`) and how many
    rows ``k`` classes need (:meth:`n_rows`).

    Attributes:
        coef: ``(R, d)`` float64 weights, one row per decision.
        intercept: ``(R,)`` float64 biases; the margins are ``x · coef.T + intercept``.
        classes: ``(k,)`` int64 ascending class indices (into the model's labels) seen in training.
    """

    coef: np.ndarray
    intercept: np.ndarray
    classes: np.ndarray

    @classmethod
    def from_estimator(cls, estimator: Any) -> LinearArrays:
        """The arrays of a fitted scikit-learn linear estimator (``coef_``, ``intercept_``, ``classes_``)."""
        return cls(np.asarray(estimator.coef_, dtype=np.float64).copy(), np.asarray(estimator.intercept_, dtype=np.float64).copy(),
                   np.asarray(estimator.classes_, dtype=np.int64).copy())  # fmt: skip

    @staticmethod
    def n_rows(k: int) -> int:
        """Rows of ``coef`` for ``k`` classes."""
        raise NotImplementedError

    def scores(self, margins: np.ndarray) -> np.ndarray:
        """``(n, k)`` class scores of ``(n, R)`` margins."""
        raise NotImplementedError

    def check(self, n_labels: int, width: int, where: str) -> None:
        """Raise :class:`BundleError` (naming ``where``) unless the arrays fit ``n_labels`` classes and ``width`` columns."""
        k, rows = len(self.classes), self.coef.shape[0]
        if k < 2 or rows != self.n_rows(k) or self.intercept.shape != (rows,):
            raise BundleError(f"{where}: {k} classes need {self.n_rows(max(k, 2))} rows; coef has {rows}, intercept shape {self.intercept.shape}")
        if np.any(np.diff(self.classes) <= 0) or self.classes[0] < 0 or self.classes[-1] >= n_labels:
            raise BundleError(f"{where}: classes {self.classes.tolist()} are not ascending indices of the {n_labels} labels")
        if self.coef.shape[1] != width:
            raise BundleError(f"{where}: coef has {self.coef.shape[1]} columns, the model reads {width}")

    def decision_function(self, data: np.ndarray, n_labels: int) -> np.ndarray:
        """Decision values ``(n, n_labels)`` float64 of ``(n, d)`` rows; classes not seen in training get -inf."""
        margins = np.asarray(data, dtype=np.float64) @ self.coef.T + self.intercept
        out = np.full((len(margins), n_labels), -np.inf)
        out[:, self.classes] = self.scores(margins)
        return out


class PairwiseLinear(LinearArrays):
    """libsvm's linear one-vs-one SVM: one row per class pair ``(i, j)``, ``i < j``, in the order
    ``(0, 1), (0, 2), …, (1, 2), …`` over the classes seen, and scikit-learn's one-vs-rest values.

    Two classes: the margin ``m`` (positive for the second class: scikit-learn flips the sign of
    a binary SVC's arrays) gives ``(-m, m)``. More classes: pair ``(i, j)`` votes for ``i`` where
    its margin is ``>= 0`` and for ``j`` otherwise, and each class's summed margins ``s`` are
    added as ``s / (3 (|s| + 1))``, which breaks ties without overturning a vote (scikit-learn's
    ``decision_function_shape="ovr"``, in closed form over one-hot pair matrices).
    """

    @staticmethod
    def n_rows(k: int) -> int:
        return k * (k - 1) // 2

    def scores(self, margins: np.ndarray) -> np.ndarray:
        k = len(self.classes)
        if k == 2:
            return np.concatenate([-margins, margins], axis=1)
        first, second = (np.eye(k)[index] for index in np.triu_indices(k, 1))  # (P, k) one-hot each
        win_first = (margins >= 0).astype(np.float64)
        votes = win_first @ first + (1.0 - win_first) @ second
        confidence = margins @ (first - second)
        return votes + confidence / (3 * (np.abs(confidence) + 1))


@register
class LinearSVM(SERModel):
    """Linear-kernel SVM (libsvm, one-vs-one, one-vs-rest decision values) with inner speaker-independent C search.

    Fitted state: ``svm_`` (:attr:`Linear`: :class:`PairwiseLinear`), ``labels_``, ``inputs_`` (keys, in column
    order) and ``widths_`` (their column counts), ``C_``, ``block_`` and ``columns_`` (the chosen
    block's columns, ``None`` for all), ``temperature_``, ``inner_ua_``, ``oof_scores_``.
    """

    name = "linear_svm"
    Config = LinearSVMConfig
    #: How the fitted estimator is kept and saved (:class:`LinearArrays`).
    Linear: ClassVar[type[LinearArrays]] = PairwiseLinear

    def check_config(self) -> None:
        c = self.config
        grid = c.C if isinstance(c.C, tuple) else (c.C,)
        check_option(
            len(grid) > 0 and all(is_number(v) and np.isfinite(v) and v > 0 for v in grid),
            self.name, f"C must be a number > 0 or a non-empty list of them, got {plain(c.C)!r}",
        )  # fmt: skip
        check_choice(self.name, "class_weight", c.class_weight, ("balanced", None))
        check_option(c.select is None or (isinstance(c.select, str) and c.select != ""), self.name,
                     f"select must be an axis name or null, got {c.select!r}")  # fmt: skip
        check_option(
            isinstance(c.windows, tuple) and len(c.windows) > 0 and all(is_integer(w) and w >= 1 for w in c.windows),
            self.name, f"windows must be a list of integers >= 1, got {plain(c.windows)!r}",
        )  # fmt: skip
        k = self.config.inner_folds
        check_option(k is None or (is_integer(k) and k >= 2), self.name, f"inner_folds must be null or an integer >= 2, got {k!r}")

    def _svm(self, C: float, seed: int, kernel: str = "linear") -> SVC:
        from sklearn.svm import SVC

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
        from sklearn.metrics import balanced_accuracy_score

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
        self.svm_ = self.Linear.from_estimator(self._svm(self.C_, seed).fit(self._chosen(data), y))
        self.widths_ = [int(block.shape[1]) for block in X.values()]
        self.temperature_ = fit_temperature(scores[best], y) if self.config.calibrate and scores else 1.0
        return self

    def _matrix(self, X: Inputs) -> tuple[np.ndarray, list[str]]:
        """The inputs side by side, ``(n, sum of dims)``, missing (all-NaN) blocks filled with 0,
        and the keys missing in every row.

        Raises:
            ConfigError: an input is frame level, or the keys differ from those fitted.
            FeatureError: a row partly NaN, or every input NaN in every row.
        """
        if list(X) != self.inputs_:
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
        return softmax(self.oof_scores_ / self.temperature_)

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
        """One-vs-rest decision values ``(n, K)`` float64 (-inf for a class absent from training).

        Raises:
            ConfigError, FeatureError: as :meth:`_matrix`; an input of another width than fitted.
        """
        data = self._matrix(X)[0]
        if data.shape[1] != sum(self.widths_):
            raise ConfigError(f"{self.name}: fitted on {sum(self.widths_)} columns, got {data.shape[1]}")
        return self.svm_.decision_function(self._chosen(data), len(self.labels_))

    def predict_proba(self, X: Inputs) -> np.ndarray:
        """``softmax(f(x) / T)``, ``(n, K)``; its argmax is the SVM's decision."""
        return softmax(self.decision_function(X) / self.temperature_)

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

    def input_widths(self) -> dict[str, int]:
        return dict(zip(self.inputs_, self.widths_))

    def save(self, directory: Path) -> None:
        """``weights.safetensors`` (the :class:`LinearArrays`) and ``state.json`` (labels, inputs
        and their widths, chosen C, block and columns, temperature)."""
        write_arrays(directory / "weights.safetensors",
                     {"coef": self.svm_.coef, "intercept": self.svm_.intercept, "classes": self.svm_.classes})  # fmt: skip
        state = {
            "labels": self.labels_,
            "inputs": self.inputs_,
            "widths": self.widths_,
            "C": self.C_,
            "block": self.block_,
            "columns": None if self.columns_ is None else self.columns_.tolist(),
            "temperature": self.temperature_,
        }
        write_json(directory / "state.json", state)

    @classmethod
    def load(cls, directory: Path, config: Mapping[str, Any]) -> LinearSVM:
        """Rebuild a model written by :meth:`save` (arrays and JSON only).

        Raises:
            BundleError: a missing or malformed file or field (the message names both), or arrays
                that do not fit the labels, the inputs' widths or the chosen columns.
        """
        model = cls(dict(config))
        where = directory / "state.json"
        state = read_json(where)
        model.labels_ = take(state, "labels", is_labels, "a list of at least two distinct class names", where)
        model.inputs_ = take(state, "inputs", lambda v: is_str_list(v) and v and len(set(v)) == len(v),
                             "a non-empty list of distinct feature keys", where)  # fmt: skip
        model.widths_ = take(state, "widths", lambda v: is_int_list(v) and len(v) == len(model.inputs_) and min(v) >= 1,
                             f"{len(model.inputs_)} column counts >= 1, one per input", where)  # fmt: skip
        model.C_ = take(state, "C", is_positive, "a number > 0", where)
        model.temperature_ = take(state, "temperature", is_positive, "a number > 0", where)
        model.block_ = take(state, "block", lambda v: v is None or isinstance(v, str), "a block label or null", where)
        total = sum(model.widths_)
        columns = take(state, "columns", lambda v: v is None or (is_int_list(v) and v == sorted(set(v)) and v and 0 <= v[0] and v[-1] < total),
                       f"null or ascending column indices in [0, {total})", where)  # fmt: skip
        model.columns_ = None if columns is None else np.asarray(columns, dtype=np.int64)
        path = directory / "weights.safetensors"
        arrays = read_arrays(path, {"coef": ("f", 2), "intercept": ("f", 1), "classes": ("i", 1)})
        model.svm_ = cls.Linear(arrays["coef"].astype(np.float64), arrays["intercept"].astype(np.float64),
                                arrays["classes"].astype(np.int64))  # fmt: skip
        model.svm_.check(len(model.labels_), total if columns is None else len(columns), str(path))
        model.inner_ua_, model.missing_inputs_ = {}, []
        model.oof_scores_ = None
        return model
