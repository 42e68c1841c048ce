"""The linear SVM baseline: inner speaker-independent C search, calibration, save/load."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score
from sklearn.svm import SVC

from serkit.errors import ConfigError, FeatureError
from serkit.models.base import get_model, list_models
from serkit.models.svm import LinearSVM, fit_temperature, softmax


def _blobs(seed: int = 0, n_speakers: int = 4, per_class: int = 10, K: int = 3, dim: int = 6, spread: float = 1.0):
    """Gaussian class blobs, each speaker with its own offset."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, size=(K, dim))
    X, y, groups = [], [], []
    for s in range(n_speakers):
        offset = rng.normal(0, 0.3, size=dim)
        for k in range(K):
            X.append(centres[k] + offset + rng.normal(0, spread, size=(per_class, dim)))
            y += [k] * per_class
            groups += [f"s{s}"] * per_class
    return np.vstack(X).astype(np.float32), np.array(y), np.array(groups)


def test_registered():
    assert "linear_svm" in list_models()
    assert isinstance(get_model("linear_svm", {"C": 0.1}), LinearSVM)


def test_single_c_equals_sklearn_svc():
    X, y, groups = _blobs(spread=2.5)
    ours = LinearSVM({"C": 0.01, "calibrate": False}).fit({"f": X}, y, labels=["a", "b", "c"], groups=groups)
    ref = SVC(kernel="linear", C=0.01, class_weight="balanced", break_ties=True).fit(X, y)
    assert np.array_equal(ours.predict({"f": X}), ref.predict(X))


def test_c_search_picks_best_inner_ua_and_is_speaker_independent():
    X, y, groups = _blobs(spread=2.5, n_speakers=5)
    grid = (1e-5, 1e-2, 1.0)
    model = LinearSVM({"C": grid}).fit({"f": X}, y, labels=["a", "b", "c"], groups=groups)
    # Recompute inner leave-one-speaker-out UA by hand for each C.
    expected = {}
    for C in grid:
        pred = np.empty_like(y)
        for s in np.unique(groups):
            held = groups == s
            svm = SVC(kernel="linear", C=C, class_weight="balanced", break_ties=True).fit(X[~held], y[~held])
            pred[held] = svm.predict(X[held])
        expected[C] = balanced_accuracy_score(y, pred)
    for C in grid:
        assert model.inner_ua_[None, C] == pytest.approx(expected[C], abs=1e-12)
    assert model.C_ == max(grid, key=lambda c: (round(expected[c], 12), -c))


def test_probabilities_keep_the_svm_decision():
    X, y, groups = _blobs(spread=3.0)
    model = LinearSVM({"C": (0.001, 0.1)}).fit({"f": X}, y, labels=["a", "b", "c"], groups=groups)
    proba = model.predict_proba({"f": X})
    assert proba.shape == (len(y), 3)
    assert np.allclose(proba.sum(axis=1), 1.0)
    ref = SVC(kernel="linear", C=model.C_, class_weight="balanced", break_ties=True).fit(X, y)
    assert np.array_equal(proba.argmax(axis=1), ref.predict(X))
    assert model.temperature_ > 0


def test_temperature_recovers_a_known_scale():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, size=(4000, 4))
    # Sample labels from softmax(logits); scores handed over are logits * 3, so T should be ~3.
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    y = np.array([rng.choice(4, p=row) for row in p])
    assert fit_temperature(logits * 3.0, y) == pytest.approx(3.0, rel=0.1)


def test_grid_without_speakers_is_refused():
    X, y, _ = _blobs()
    with pytest.raises(ConfigError, match="two training speakers"):
        LinearSVM({"C": (0.1, 1.0)}).fit({"f": X}, y, labels=["a", "b", "c"])


def test_rejects_frame_level_input():
    X, y, groups = _blobs()
    with pytest.raises(ConfigError, match="frame level"):
        LinearSVM().fit({"f": [x[None, :] for x in X]}, y, labels=["a", "b", "c"], groups=groups)


def test_unknown_option_is_refused():
    with pytest.raises(ConfigError, match="unknown option"):
        LinearSVM({"gamma": 1})


def test_save_load_round_trip(tmp_path):
    X, y, groups = _blobs(spread=2.0)
    model = LinearSVM({"C": (0.01, 1.0)}).fit({"f": X}, y, labels=["a", "b", "c"], groups=groups)
    model.save(tmp_path)
    again = LinearSVM.load(tmp_path, model.describe()["config"])
    assert np.allclose(again.predict_proba({"f": X}), model.predict_proba({"f": X}))
    assert again.labels_ == ["a", "b", "c"]


def test_inner_standardise_repeats_the_outer_procedure_inside():
    X, y, groups = _blobs(spread=2.5, n_speakers=5)
    X = X * np.arange(1, 7) + 3.0  # columns on different scales, not centred
    grid = (1e-3, 1e-1)
    model = LinearSVM({"C": grid, "inner_standardise": True}).fit({"f": X}, y, labels=["a", "b", "c"], groups=groups)
    for C in grid:
        pred = np.empty_like(y)
        for s in np.unique(groups):
            held = groups == s
            mean, std = X[~held].mean(0), X[~held].std(0)
            svm = SVC(kernel="linear", C=C, class_weight="balanced", break_ties=True)
            svm.fit((X[~held] - mean) / std, y[~held])
            pred[held] = svm.predict((X[held] - mean) / std)
        assert model.inner_ua_[None, C] == pytest.approx(balanced_accuracy_score(y, pred), abs=1e-12)


def test_select_chooses_the_block_that_carries_the_classes():
    from serkit.features.layout import Layout

    X, y, groups = _blobs(spread=1.0, n_speakers=4, dim=6)
    noise = np.random.default_rng(3).normal(size=X.shape).astype(np.float32)
    # Three "layers" of 6 units: noise, the class blobs, noise again (layer-major columns).
    stacked = np.concatenate([noise, X, noise[::-1]], axis=1)
    layouts = {"f": Layout.of(("layer", 3), ("unit", 6))}
    model = LinearSVM({"C": (0.01, 1.0), "select": "layer"}).fit(
        {"f": stacked}, y, labels=["a", "b", "c"], groups=groups, layouts=layouts
    )
    assert model.block_ == "1"
    assert model.fit_info()["layer"] == "1" and len(model.inner_ua_) == 6
    np.testing.assert_array_equal(model.columns_, np.arange(6, 12))
    ref = SVC(kernel="linear", C=model.C_, class_weight="balanced", break_ties=True).fit(X, y)
    np.testing.assert_allclose(model.decision_function({"f": stacked}), ref.decision_function(X), atol=1e-9)
    with pytest.raises(ConfigError, match="laid out as"):
        LinearSVM({"select": "layer"}).fit({"f": X}, y, labels=["a", "b", "c"], groups=groups)


def test_several_inputs_are_fused_and_a_missing_block_is_the_training_mean():
    X, y, groups = _blobs(spread=2.0)
    left, right = X[:, :3].copy(), X[:, 3:].copy()
    right[:5] = np.nan  # five utterances without the second feature
    model = LinearSVM({"C": 0.1, "calibrate": False}).fit({"l": left, "r": right}, y, labels=["a", "b", "c"], groups=groups)
    filled = np.concatenate([left, np.where(np.isnan(right), 0.0, right)], axis=1)
    ref = SVC(kernel="linear", C=0.1, class_weight="balanced", break_ties=True).fit(filled, y)
    assert np.array_equal(model.predict({"l": left, "r": right}), ref.predict(filled))
    partly = right.copy()
    partly[7, 0] = np.nan
    with pytest.raises(FeatureError, match="partly NaN"):
        model.predict({"l": left, "r": partly})
    with pytest.raises(ConfigError, match="fitted on features"):
        model.predict({"r": right, "l": left})


def test_an_input_missing_in_every_row_adds_nothing():
    X, y, groups = _blobs(spread=2.0)
    absent = np.full((len(y), 4), np.nan, dtype=np.float32)  # Side of a mono corpus
    alone = LinearSVM({"C": 0.1}).fit({"f": X}, y, labels=["a", "b", "c"], groups=groups)
    both = LinearSVM({"C": 0.1}).fit({"f": X, "side": absent}, y, labels=["a", "b", "c"], groups=groups)
    np.testing.assert_allclose(both.predict_proba({"f": X, "side": absent}), alone.predict_proba({"f": X}), atol=1e-9)
    assert both.fit_info()["missing_inputs"] == ["side"]
    with pytest.raises(FeatureError, match="every input"):
        LinearSVM({"C": 0.1}).fit({"side": absent}, y, labels=["a", "b", "c"], groups=groups)


def test_select_windows_try_runs_of_adjacent_blocks():
    from serkit.features.layout import Layout

    rng = np.random.default_rng(5)
    y = np.tile(np.arange(3), 40)
    groups = np.repeat([f"s{i}" for i in range(4)], 30)
    # Layer 1 tells class 0 from the rest, layer 2 class 1 from the rest: only together all three.
    layer1 = (y == 0)[:, None] * 3.0 + rng.normal(size=(len(y), 3))
    layer2 = (y == 1)[:, None] * 3.0 + rng.normal(size=(len(y), 3))
    noise = [rng.normal(size=(len(y), 3)) for _ in range(2)]
    stacked = np.concatenate([noise[0], layer1, layer2, noise[1]], axis=1).astype(np.float32)
    layouts = {"f": Layout.of(("layer", 4), ("unit", 3))}
    model = LinearSVM({"C": 0.1, "select": "layer", "windows": [1, 2]}).fit(
        {"f": stacked}, y, labels=["a", "b", "c"], groups=groups, layouts=layouts
    )
    assert {b for b, _ in model.inner_ua_} == {"0", "1", "2", "3", "0-1", "1-2", "2-3"}
    assert model.block_ == "1-2" and model.inner_ua_["1-2", 0.1] > max(model.inner_ua_[b, 0.1] for b in "12")
    np.testing.assert_array_equal(model.columns_, np.arange(3, 9))
    with pytest.raises(ConfigError, match="windows"):
        LinearSVM({"windows": [0]})


def test_inner_folds_group_speakers_into_k_disjoint_folds():
    from sklearn.model_selection import GroupKFold

    X, y, groups = _blobs(spread=2.5, n_speakers=6)
    model = LinearSVM({"C": (1e-3, 1.0), "inner_folds": 3}).fit({"f": X}, y, labels=["a", "b", "c"], groups=groups)
    for C in (1e-3, 1.0):
        pred = np.empty_like(y)
        for train, test in GroupKFold(n_splits=3).split(X, groups=groups):
            assert not set(groups[train]) & set(groups[test])
            pred[test] = SVC(kernel="linear", C=C, class_weight="balanced", break_ties=True).fit(X[train], y[train]).predict(X[test])
        assert model.inner_ua_[None, C] == pytest.approx(balanced_accuracy_score(y, pred), abs=1e-12)
    with pytest.raises(ConfigError, match="inner_folds"):
        LinearSVM({"inner_folds": 1})


def test_a_reloaded_svm_predicts_exactly_as_the_fitted_one_on_real_emodb_features(emodb_root, tmp_path):
    from serkit.audio import load_audio
    from serkit.features import get_extractor
    from serkit.features.extract import extract_audio
    from serkit.features.normalise import fit_normaliser
    from serkit.models.svm import PairwiseLinear

    files = sorted((emodb_root / "wav").glob("*.wav"))[::3]  # 179 utterances, all 10 speakers, 7 emotions
    extractor = get_extractor("opensmile_functionals", {"feature_set": "eGeMAPSv02"})
    raw = np.stack([extract_audio(load_audio(f), extractor) for f in files])
    groups = np.array([f.name[:2] for f in files])
    codes = sorted({f.name[5] for f in files})
    y = np.array([codes.index(f.name[5]) for f in files])
    X = {"functionals": fit_normaliser("global", raw).transform(raw)}
    model = LinearSVM({"C": (0.001, 0.01, 0.1)}).fit(X, y, labels=codes, groups=groups)
    # The stored arrays are libsvm's decision: scikit-learn's one-vs-rest values and decisions.
    ref = SVC(kernel="linear", C=model.C_, class_weight="balanced", break_ties=True).fit(X["functionals"], y)
    np.testing.assert_allclose(model.decision_function(X), ref.decision_function(X["functionals"]), rtol=0, atol=1e-9)
    assert np.array_equal(model.predict(X), ref.predict(X["functionals"]))
    model.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", "weights.safetensors"]
    again = LinearSVM.load(tmp_path, model.describe()["config"])
    assert isinstance(again.svm_, PairwiseLinear) and again.input_widths() == {"functionals": 88}
    assert np.array_equal(again.predict_proba(X), model.predict_proba(X))  # bit for bit
    assert again.labels_ == codes and again.C_ == model.C_ and again.temperature_ == model.temperature_


def test_softmax_equals_scipy_with_absent_classes():
    """serkit's own row softmax (predicting imports no scipy) is scipy's, -inf scores included."""
    from scipy.special import softmax as scipy_softmax

    rng = np.random.default_rng(0)
    scores = rng.normal(scale=30.0, size=(50, 6))
    scores[::7, 2] = -np.inf
    np.testing.assert_allclose(softmax(scores), scipy_softmax(scores, axis=1), rtol=1e-12, atol=1e-300)
    assert (softmax(scores)[::7, 2] == 0).all()
