"""Metrics against scikit-learn and hand-computed values."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    recall_score,
)

from serkit.errors import ConfigError
from serkit.evaluation import compute_metrics, detection_metrics, summarise_folds

LABELS = ["anger", "boredom", "disgust", "fear", "happiness", "neutral", "sadness"]


def random_case(seed: int, n: int = 400):
    rng = np.random.default_rng(seed)
    true = rng.choice(LABELS, n, p=[0.3, 0.2, 0.05, 0.1, 0.1, 0.15, 0.1])
    # a classifier that is right ~60 % of the time, otherwise uniform
    pred = np.where(rng.random(n) < 0.6, true, rng.choice(LABELS, n))
    return list(true), list(pred)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sklearn_on_random_predictions(seed):
    true, pred = random_case(seed)
    m = compute_metrics(true, pred, LABELS)
    assert m["ua"] == pytest.approx(recall_score(true, pred, labels=LABELS, average="macro"))
    assert m["ua"] == pytest.approx(balanced_accuracy_score(true, pred))
    assert m["wa"] == pytest.approx(accuracy_score(true, pred))
    assert m["macro_f1"] == pytest.approx(f1_score(true, pred, labels=LABELS, average="macro"))
    p, r, f, s = precision_recall_fscore_support(true, pred, labels=LABELS, zero_division=0)
    for i, lab in enumerate(LABELS):
        pc = m["per_class"][lab]
        assert pc["precision"] == pytest.approx(p[i])
        assert pc["recall"] == pytest.approx(r[i]) and pc["sensitivity"] == pc["recall"]
        assert pc["f1"] == pytest.approx(f[i])
        assert pc["support"] == s[i]
    cm = confusion_matrix(true, pred, labels=LABELS)
    assert m["confusion"]["counts"] == cm.tolist()
    np.testing.assert_allclose(m["confusion"]["normalised"], cm / cm.sum(axis=1, keepdims=True))
    assert m["n"] == len(true) and m["labels"] == LABELS


def test_hand_computed_three_class_confusion():
    # rows true, columns predicted:   a  b  c
    counts = np.array([[5, 2, 1],  # a: support 8
                       [1, 6, 3],  # b: support 10
                       [0, 1, 2]])  # c: support 3
    labels = ["a", "b", "c"]
    true, pred = [], []
    for i, t in enumerate(labels):
        for j, p in enumerate(labels):
            true += [t] * counts[i, j]
            pred += [p] * counts[i, j]
    m = compute_metrics(true, pred, labels)
    assert m["confusion"]["counts"] == counts.tolist()
    # specificity = TN / (TN + FP), N = 21
    # a: TP 5, FN 3, FP 1 -> TN 12 -> 12/13
    # b: TP 6, FN 4, FP 3 -> TN 8  -> 8/11
    # c: TP 2, FN 1, FP 4 -> TN 14 -> 14/18
    assert m["per_class"]["a"]["specificity"] == pytest.approx(12 / 13)
    assert m["per_class"]["b"]["specificity"] == pytest.approx(8 / 11)
    assert m["per_class"]["c"]["specificity"] == pytest.approx(14 / 18)
    assert m["per_class"]["b"]["precision"] == pytest.approx(6 / 9)
    assert m["ua"] == pytest.approx((5 / 8 + 6 / 10 + 2 / 3) / 3)
    assert m["wa"] == pytest.approx(13 / 21)
    assert m["confusion"]["normalised"][2] == pytest.approx([0.0, 1 / 3, 2 / 3])

    det = detection_metrics(true, pred, labels)
    assert det["a"]["confusion"] == [[12, 1], [3, 5]]
    assert det["c"]["confusion"] == [[14, 4], [1, 2]]
    assert det["b"]["sensitivity"] == pytest.approx(0.6)
    assert det["b"]["specificity"] == pytest.approx(8 / 11)
    assert det["b"]["ua"] == pytest.approx((0.6 + 8 / 11) / 2)
    for lab in labels:  # the SED view agrees with the one-vs-rest per-class view
        assert det[lab]["specificity"] == pytest.approx(m["per_class"][lab]["specificity"])


def test_absent_classes_give_zero_not_nan_and_no_warning():
    labels = ["anger", "fear", "neutral", "sadness"]
    true = ["anger", "anger", "neutral", "neutral", "neutral", "fear"]
    pred = ["anger", "neutral", "neutral", "neutral", "anger", "neutral"]  # fear never predicted
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = compute_metrics(true, pred, labels)
        det = detection_metrics(true, pred, labels)
    fear, sadness = m["per_class"]["fear"], m["per_class"]["sadness"]
    assert fear["precision"] == 0.0 and fear["recall"] == 0.0 and fear["f1"] == 0.0
    assert sadness["support"] == 0 and sadness["recall"] == 0.0 and sadness["specificity"] == 1.0
    # ua and macro-F1 run over the classes with support (sadness has none)
    assert m["ua_labels"] == ["anger", "fear", "neutral"]
    present = ["anger", "fear", "neutral"]
    assert m["ua"] == pytest.approx(recall_score(true, pred, labels=present, average="macro", zero_division=0))
    assert m["macro_f1"] == pytest.approx(f1_score(true, pred, labels=present, average="macro", zero_division=0))
    assert m["confusion"]["normalised"][3] == [0.0, 0.0, 0.0, 0.0]
    assert det["sadness"]["ua"] == 1.0  # no positives: binary UA is the specificity alone
    assert not np.isnan(np.array(m["confusion"]["normalised"])).any()


def test_bad_inputs_raise():
    with pytest.raises(ConfigError, match="not in labels"):
        compute_metrics(["a", "b"], ["a", "z"], ["a", "b"])
    with pytest.raises(ConfigError, match="items"):
        compute_metrics(["a", "b"], ["a"], ["a", "b"])
    with pytest.raises(ConfigError, match="no predictions"):
        compute_metrics([], [], ["a"])
    with pytest.raises(ConfigError, match="duplicates"):
        compute_metrics(["a"], ["a"], ["a", "a"])


def test_summarise_folds_mean_and_sample_std():
    folds = [
        {"ua": 0.5, "wa": 0.6, "macro_f1": 0.4},
        {"ua": 0.7, "wa": 0.8, "macro_f1": 0.6},
        {"ua": 0.9, "wa": 0.7, "macro_f1": 0.5},
    ]
    s = summarise_folds(folds)
    assert s["n_folds"] == 3
    assert s["mean"]["ua"] == pytest.approx(0.7)
    assert s["std"]["ua"] == pytest.approx(0.2)  # sample std of 0.5, 0.7, 0.9
    assert s["std"]["wa"] == pytest.approx(np.std([0.6, 0.8, 0.7], ddof=1))
    assert summarise_folds(folds[:1])["std"]["ua"] is None
    with pytest.raises(ConfigError):
        summarise_folds([])


def test_expected_calibration_error_by_hand():
    from serkit.evaluation.metrics import calibration_metrics

    # confidences 0.9, 0.9 (one right, one wrong) in bin (0.8667, 0.9333]; 0.6 (right) in (0.5333, 0.6]
    proba = np.array([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4]])
    y = np.array([0, 0, 0])
    cal = calibration_metrics(proba, y, n_bins=15)
    assert cal["ece"] == pytest.approx(2 / 3 * abs(0.5 - 0.9) + 1 / 3 * abs(1.0 - 0.6))
    assert cal["nll"] == pytest.approx(-(np.log(0.9) + np.log(0.1) + np.log(0.6)) / 3)
    perfect = calibration_metrics(np.eye(3), np.arange(3))
    assert perfect["ece"] == 0.0
    with pytest.raises(ConfigError):
        calibration_metrics(np.array([[np.nan, 1.0]]), np.array([0]))
