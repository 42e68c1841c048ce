"""Multinomial logistic regression: inner speaker-independent C search against scikit-learn, no-pickle save/load."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from test_svm import _blobs

from serkit.errors import BundleError
from serkit.models.base import get_model
from serkit.models.logistic import LinearLogistic


def test_single_c_equals_sklearn_and_probabilities_keep_its_decision():
    X, y, groups = _blobs(spread=2.5)
    ours = get_model("logistic_regression", {"C": 0.05}).fit({"f": X}, y, labels=["a", "b", "c"], groups=groups)
    ref = LogisticRegression(C=0.05, class_weight="balanced", max_iter=1000).fit(X, y)
    np.testing.assert_allclose(ours.decision_function({"f": X}), ref.decision_function(X), rtol=1e-5, atol=1e-5)
    assert ours.temperature_ != 1.0
    assert np.array_equal(ours.predict({"f": X}), ref.predict(X))


def test_c_search_is_leave_one_training_speaker_out():
    X, y, groups = _blobs(spread=2.5, n_speakers=4)
    X = X * np.arange(1, 7) + 3.0
    grid = (1e-4, 1e-1)
    model = LinearLogistic({"C": grid, "inner_standardise": True}).fit({"f": X}, y, labels=["a", "b", "c"], groups=groups)
    for C in grid:
        pred = np.empty_like(y)
        for s in np.unique(groups):
            held = groups == s
            mean, std = X[~held].mean(0), X[~held].std(0)
            lr = LogisticRegression(C=C, class_weight="balanced", max_iter=1000).fit((X[~held] - mean) / std, y[~held])
            pred[held] = lr.predict((X[held] - mean) / std)
        assert model.inner_ua_[None, C] == pytest.approx(balanced_accuracy_score(y, pred), abs=1e-12)


def test_two_classes(tmp_path):
    X, y, groups = _blobs(spread=2.0, K=2)
    model = LinearLogistic({"C": 0.1}).fit({"f": X}, y, labels=["a", "b"], groups=groups)
    ref = LogisticRegression(C=0.1, class_weight="balanced", max_iter=1000).fit(X, y)
    assert np.array_equal(model.predict({"f": X}), ref.predict(X))


def test_save_load_round_trip_without_pickle(tmp_path):
    X, y, groups = _blobs(spread=2.0)
    model = LinearLogistic({"C": (0.01, 1.0)}).fit({"f": X}, y, labels=["a", "b", "c"], groups=groups)
    model.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", "weights.safetensors"]
    again = LinearLogistic.load(tmp_path, model.describe()["config"])
    assert np.array_equal(again.predict_proba({"f": X}), model.predict_proba({"f": X}))
    # an object array needs pickle to load: not an array file serkit reads, never executed
    with open(tmp_path / "weights.safetensors", "wb") as handle:
        np.savez(handle, coef=np.array([object()], dtype=object), intercept=np.zeros(1), classes=np.arange(3))
    with pytest.raises(BundleError, match="weights.safetensors: not a safetensors array file"):
        LinearLogistic.load(tmp_path, model.describe()["config"])
