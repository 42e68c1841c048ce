"""Classification metrics of the SER literature, computed from one confusion matrix.

Definitions (``labels`` fixes the class order; ``support`` = number of true samples of a class):

- ``wa`` — weighted accuracy, i.e. plain accuracy: correct / all.
- ``ua`` — unweighted average recall (UAR): the mean per-class recall over the classes of
  ``labels`` with support > 0. A class absent from ``y_true`` (e.g. a test speaker who never
  recorded it) has no recall and is left out rather than counted as 0; its wrong predictions
  still lower the recall of the classes they were taken from. Equals
  :func:`sklearn.metrics.balanced_accuracy_score`.
- ``macro_f1`` — mean per-class F1 over the same classes (support > 0).
- ``per_class`` — one-vs-rest precision, recall, F1, sensitivity (= recall, true positive rate)
  and specificity (true negative rate, TN / (TN + FP)) per class, as in MSIR (Tables 3–4).
  A ratio with a zero denominator is defined as 0.0 (no NaN, no warning).
- ``confusion`` — ``counts`` (K×K ints) and ``normalised`` (each row divided by its sum; all-zero
  rows stay 0), rows = true class, columns = predicted class.

:func:`detection_metrics` gives MSIR's speech-emotion-*detection* view (Fig. 4): each emotion
against the rest as a binary task. :func:`calibration_metrics` says how far the probabilities
can be trusted: expected calibration error (ECE) and negative log-likelihood.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from serkit.errors import ConfigError

HEADLINE = ("ua", "wa", "macro_f1")


def confusion_counts(y_true: Sequence, y_pred: Sequence, labels: Sequence) -> np.ndarray:
    """K×K int64 confusion counts, rows = true, columns = predicted, in ``labels`` order.

    Raises:
        ConfigError: empty input, length mismatch, duplicated labels, or a value not in ``labels``.
    """
    labels = list(labels)
    if not labels or len(set(labels)) != len(labels):
        raise ConfigError(f"labels must be a non-empty list without duplicates, got {labels!r}")
    true = np.asarray(list(y_true), dtype=object)
    pred = np.asarray(list(y_pred), dtype=object)
    if true.size == 0:
        raise ConfigError("no predictions to score")
    if true.shape != pred.shape:
        raise ConfigError(f"y_true has {true.size} items, y_pred {pred.size}")
    position = {lab: i for i, lab in enumerate(labels)}
    for name, values in (("y_true", true), ("y_pred", pred)):
        unknown = sorted({str(v) for v in values if v not in position})
        if unknown:
            raise ConfigError(f"{name} holds values not in labels: {unknown[:5]}")
    t = np.fromiter((position[v] for v in true), dtype=np.int64, count=true.size)
    p = np.fromiter((position[v] for v in pred), dtype=np.int64, count=pred.size)
    counts = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(counts, (t, p), 1)
    return counts


def metrics_from_confusion(counts: np.ndarray, labels: Sequence) -> dict[str, Any]:
    """All metrics of :func:`compute_metrics` from a K×K confusion-count matrix.

    Raises:
        ConfigError: ``counts`` is not a square K×K matrix of non-negative counts with a
            positive total.
    """
    counts = np.asarray(counts)
    labels = list(labels)
    k = len(labels)
    if counts.shape != (k, k) or np.any(counts < 0) or counts.sum() <= 0:
        raise ConfigError(f"confusion counts must be a non-negative {k}x{k} matrix with a positive total")
    counts = counts.astype(np.int64)
    n = int(counts.sum())
    tp = np.diag(counts).astype(np.float64)
    support = counts.sum(axis=1).astype(np.float64)
    predicted = counts.sum(axis=0).astype(np.float64)
    fp = predicted - tp
    fn = support - tp
    tn = n - tp - fp - fn

    precision = _ratio(tp, predicted)
    recall = _ratio(tp, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    specificity = _ratio(tn, tn + fp)
    present = support > 0

    per_class = {
        str(lab): {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "sensitivity": float(recall[i]),
            "specificity": float(specificity[i]),
            "support": int(support[i]),
        }
        for i, lab in enumerate(labels)
    }
    return {
        "ua": float(recall[present].mean()),
        "wa": float(tp.sum() / n),
        "macro_f1": float(f1[present].mean()),
        "n": n,
        "labels": [str(lab) for lab in labels],
        "ua_labels": [str(lab) for lab, ok in zip(labels, present) if ok],
        "per_class": per_class,
        "confusion": {
            "counts": counts.tolist(),
            "normalised": _ratio(counts.astype(np.float64), support[:, None]).tolist(),
        },
    }


def compute_metrics(y_true: Sequence, y_pred: Sequence, labels: Sequence) -> dict[str, Any]:
    """UA, WA, macro-F1, per-class scores and the confusion matrix (module docstring).

    Args:
        y_true: true labels, length n.
        y_pred: predicted labels, length n, values from ``labels``.
        labels: the K classes, in report order.

    Returns:
        ``{"ua", "wa", "macro_f1", "n", "labels", "ua_labels", "per_class", "confusion"}``;
        ``ua_labels`` are the classes the averages run over (support > 0).

    Raises:
        ConfigError: see :func:`confusion_counts`.
    """
    return metrics_from_confusion(confusion_counts(y_true, y_pred, labels), labels)


def detection_metrics(y_true: Sequence, y_pred: Sequence, labels: Sequence) -> dict[str, dict[str, Any]]:
    """Each emotion against the rest as a binary detection task (MSIR, Fig. 4).

    Returns:
        ``{label: {"confusion": [[TN, FP], [FN, TP]], "sensitivity", "specificity", "ua",
        "support"}}`` where ``ua`` is the binary task's unweighted average recall: the mean of
        sensitivity and specificity over the sides (positive, negative) that have samples.

    Raises:
        ConfigError: see :func:`confusion_counts`.
    """
    counts = confusion_counts(y_true, y_pred, labels)
    n = int(counts.sum())
    out = {}
    for i, lab in enumerate(labels):
        tp = int(counts[i, i])
        fn = int(counts[i].sum()) - tp
        fp = int(counts[:, i].sum()) - tp
        tn = n - tp - fn - fp
        sens = tp / (tp + fn) if tp + fn else 0.0
        spec = tn / (tn + fp) if tn + fp else 0.0
        sides = [r for r, has in ((sens, tp + fn > 0), (spec, tn + fp > 0)) if has]
        out[str(lab)] = {
            "confusion": [[tn, fp], [fn, tp]],
            "sensitivity": float(sens),
            "specificity": float(spec),
            "ua": float(np.mean(sides)),
            "support": tp + fn,
        }
    return out


def summarise_folds(fold_metrics: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof=1) of ua, wa and macro_f1 over folds.

    Returns:
        ``{"mean": {ua, wa, macro_f1}, "std": {ua, wa, macro_f1}, "n_folds": int}``; ``std`` values
        are ``None`` for a single fold (undefined).

    Raises:
        ConfigError: empty list or a fold dict lacking one of the three keys.
    """
    if not fold_metrics:
        raise ConfigError("summarise_folds: no folds")
    mean, std = {}, {}
    for key in HEADLINE:
        try:
            values = np.array([float(m[key]) for m in fold_metrics])
        except KeyError as exc:
            raise ConfigError(f"summarise_folds: a fold lacks {key!r}") from exc
        mean[key] = float(values.mean())
        std[key] = float(values.std(ddof=1)) if values.size > 1 else None
    return {"mean": mean, "std": std, "n_folds": len(fold_metrics)}


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` elementwise with 0.0 where ``den == 0``."""
    num, den = np.broadcast_arrays(np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64))
    out = np.zeros(num.shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def calibration_metrics(proba: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> dict[str, Any]:
    """Expected calibration error and negative log-likelihood of class probabilities.

    ECE (Guo et al., "On calibration of modern neural networks", ICML 2017, Sec. 2, eq. 3; Naeini
    et al., AAAI 2015): the predictions are binned by their confidence ``max_k p_k`` into
    ``n_bins`` equal-width bins of (0, 1]; ``ECE = sum_b |B_b| / n * |acc(B_b) - conf(B_b)|``,
    where ``acc`` is the fraction of correct predictions in the bin and ``conf`` its mean
    confidence. 0 is perfectly calibrated.

    Args:
        proba: ``(n, K)`` probabilities (rows sum to one).
        y_true: ``(n,)`` integer class indices into the columns of ``proba``.
        n_bins: number of confidence bins.

    Returns:
        ``{"ece", "nll", "mean_confidence", "n_bins"}`` (``nll``: mean ``-log p_true``, with
        ``p`` clipped at 1e-12).

    Raises:
        ConfigError: shapes disagree, no rows, or a probability outside [0, 1] or NaN.
    """
    proba = np.asarray(proba, dtype=np.float64)
    y_true = np.asarray(y_true)
    if proba.ndim != 2 or len(proba) == 0 or y_true.shape != (len(proba),):
        raise ConfigError(f"calibration_metrics: need (n, K) probabilities and (n,) targets, got {proba.shape}, {y_true.shape}")
    if not np.all((proba >= 0) & (proba <= 1)):
        raise ConfigError("calibration_metrics: probabilities must lie in [0, 1] (no NaN)")
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_true
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in np.unique(bins):
        members = bins == b
        ece += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    nll = -np.mean(np.log(np.clip(proba[np.arange(len(y_true)), y_true], 1e-12, None)))
    return {"ece": float(ece), "nll": float(nll), "mean_confidence": float(confidence.mean()), "n_bins": n_bins}
