"""Score-level fusion (serkit.models.fusion): the weight search of eq. 8-10 against known answers
and a brute force, missing inputs, and the score_fusion model with one input.

The binaural use (four channels, out-of-fold scores of the training speakers in an experiment on
real EMOVO recordings, a bundle) is tested in tests/test_binaural.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from serkit.errors import ConfigError
from serkit.models.base import get_model
from serkit.models.fusion import (
    WEIGHT_GRID,
    FusionWeights,
    apply_fusion,
    check_groups,
    fuse_pair,
    search_fusion,
    search_weight,
)


def _table(first: list[float]) -> np.ndarray:
    """Two-class scores whose class 1 wins when the fused column 1 exceeds 0.5."""
    return np.stack([np.full(4, 0.5), np.array(first)], axis=1)


# y = [0, 0, 1, 1]. A alone gets 2 of 4 right, B alone 2 of 4; w A + (1 - w) B is right on
# utterance 0 iff w < 0.75, on 1 iff w > 0.652, on 2 iff w > 0.11, on 3 iff w < 0.75: only w = 0.7.
Y = np.array([0, 0, 1, 1])
A = _table([0.6, 0.1, 0.9, 0.4])
B = _table([0.2, 1.25, 0.45, 0.8])
LRMS = [["left", "right"], ["mid", "side"]]


def test_fusion_weight_search_on_a_known_score_table():
    assert search_weight(A, B, Y) == (0.7, 1.0)
    assert search_weight(B, A, Y) == pytest.approx((0.3, 1.0))
    # Stage 1 (eq. 8, 9): the pair weights are found independently; stage 2 ties: equal weights win.
    weights = search_fusion({"left": A, "right": B, "mid": B, "side": A}, Y, LRMS)
    assert (weights.pairs, weights.groups) == ((0.7, 0.3), 0.5)
    # Stage 2 (eq. 10): L = R = A and M = S = B, so both pairs tie at 0.5 and the groups' weight is 0.7.
    weights = search_fusion({"left": A, "right": A, "mid": B, "side": B}, Y, LRMS)
    assert (weights.pairs, weights.groups) == ((0.5, 0.5), 0.7)
    np.testing.assert_allclose(apply_fusion({"left": A, "right": A, "mid": B, "side": B}, weights, LRMS), 0.7 * A + 0.3 * B)
    # One group of two inputs of any names: one weight, no second stage.
    single = search_fusion({"encoder": A, "functionals": B}, Y, [["encoder", "functionals"]])
    assert (single.pairs, single.groups) == ((0.7,), None)
    for bad in ([["a", "b", "c"]], [["a"], ["b"], ["c"]], [["a", "a"]], [], [["a", ""]]):
        with pytest.raises(ConfigError):
            check_groups(bad)
    with pytest.raises(ConfigError, match="no scores"):
        search_fusion({"left": A}, Y, [["left", "right"]])


def _brute_force_ua(y: np.ndarray, scores: np.ndarray) -> float:
    """UA by counting: mean over the classes of y of the share of their rows whose argmax is right."""
    recalls = []
    for k in np.unique(y):
        rows = np.flatnonzero(y == k)
        recalls.append(sum(int(np.argmax(scores[i]) == k) for i in rows) / len(rows))
    return float(np.mean(recalls))


def test_two_stage_search_equals_a_brute_force_search():
    """On score tables with real structure (noisy class evidence of unequal quality), every weight
    equals an exhaustive search written independently: loops over the grid, UA counted by hand,
    ties to the weight nearest 0.5, then the smaller."""
    rng = np.random.default_rng(7)

    def best(candidates: dict[float, float]) -> float:
        top = max(round(v, 12) for v in candidates.values())
        tied = [w for w, v in candidates.items() if round(v, 12) == top]
        return min(tied, key=lambda w: (abs(w - 0.5), w))

    for trial in range(4):
        y = rng.integers(0, 4, 60)
        scores = {}
        for name, quality in zip(("left", "right", "mid", "side"), rng.uniform(0.3, 1.5, 4)):
            logits = rng.normal(size=(60, 4)) + quality * np.eye(4)[y]
            scores[name] = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        weights = search_fusion(scores, y, LRMS)
        alpha = best({w: _brute_force_ua(y, w * scores["left"] + (1 - w) * scores["right"]) for w in WEIGHT_GRID})
        beta = best({w: _brute_force_ua(y, w * scores["mid"] + (1 - w) * scores["side"]) for w in WEIGHT_GRID})
        first = alpha * scores["left"] + (1 - alpha) * scores["right"]
        second = beta * scores["mid"] + (1 - beta) * scores["side"]
        lam = best({w: _brute_force_ua(y, w * first + (1 - w) * second) for w in WEIGHT_GRID})
        assert weights.pairs == (alpha, beta) and weights.groups == lam, trial
        assert weights.inner_ua["groups"] == pytest.approx(_brute_force_ua(y, lam * first + (1 - lam) * second))


def test_a_missing_input_gives_its_weight_to_its_partner():
    present = np.array([True, False, True, False])
    fused = fuse_pair(A, B, 0.3, None, present)
    np.testing.assert_allclose(fused[~present], A[~present])
    np.testing.assert_allclose(fused[present], 0.3 * A[present] + 0.7 * B[present])
    assert np.isnan(fuse_pair(A, B, 0.5, np.zeros(4, bool), np.zeros(4, bool))).all()
    # Side missing in rows 1 and 3: eq. 9 is Mid alone there; eq. 10 as usual.
    side = np.where(present[:, None], A, np.nan)
    weights = FusionWeights((0.5, 0.4), 0.6)
    fused = apply_fusion({"left": A, "right": B, "mid": B, "side": side}, weights, LRMS)
    stage1 = 0.5 * A + 0.5 * B
    stage2 = np.where(present[:, None], 0.4 * B + 0.6 * A, B)
    np.testing.assert_allclose(fused, 0.6 * stage1 + 0.4 * stage2)


def test_score_fusion_of_one_input_is_its_member_and_uniform_where_missing():
    rng = np.random.default_rng(0)
    y, groups = np.tile([0, 0, 1, 1], 3), np.repeat(["s1", "s2", "s3"], 4)
    X = rng.normal(size=(12, 6)) + np.eye(2)[y] @ rng.normal(size=(2, 6))
    svm_config = {"C": [0.01, 1.0]}
    alone = get_model("linear_svm", svm_config).fit({"x": X}, y, labels=["a", "b"], groups=groups)
    fused = get_model("score_fusion", {"member": {"name": "linear_svm", "config": svm_config}})
    fused.fit({"x": X}, y, labels=["a", "b"], groups=groups)
    np.testing.assert_allclose(fused.predict_proba({"x": X}), alone.predict_proba({"x": X}))
    gaps = X.copy()
    gaps[[0, 5]] = np.nan
    proba = fused.predict_proba({"x": gaps})
    np.testing.assert_allclose(proba[[0, 5]], 0.5)
    np.testing.assert_allclose(np.delete(proba, [0, 5], 0), np.delete(alone.predict_proba({"x": X}), [0, 5], 0))
    with pytest.raises(ConfigError, match="groups name"):
        get_model("score_fusion", {"groups": [["x", "z"]]}).fit({"x": X, "y": X}, y, labels=["a", "b"], groups=groups)
    with pytest.raises(ConfigError, match="unknown model"):
        get_model("score_fusion", {"member": {"name": "no_such_model"}})


def test_an_input_missing_in_every_training_row_is_left_out_and_its_partner_speaks():
    rng = np.random.default_rng(1)
    y, groups = np.tile([0, 0, 1, 1], 3), np.repeat(["s1", "s2", "s3"], 4)
    X = rng.normal(size=(12, 6)) + np.eye(2)[y] @ rng.normal(size=(2, 6))
    side = np.full((12, 6), np.nan)  # Side of a mono corpus
    svm_config = {"C": [0.01, 1.0]}
    alone = get_model("linear_svm", svm_config).fit({"mid": X}, y, labels=["a", "b"], groups=groups)
    fused = get_model("score_fusion", {"groups": [["mid", "side"]], "member": {"name": "linear_svm", "config": svm_config}})
    fused.fit({"mid": X, "side": side}, y, labels=["a", "b"], groups=groups)
    assert fused.absent_ == ["side"] and fused.fit_info()["absent_inputs"] == ["side"]
    np.testing.assert_allclose(fused.predict_proba({"mid": X, "side": side}), alone.predict_proba({"mid": X}))


def test_each_input_may_have_its_own_member_model(tmp_path):
    from serkit.features.layout import Layout

    rng = np.random.default_rng(2)
    y, groups = np.tile([0, 0, 1, 1], 4), np.repeat(["s1", "s2", "s3", "s4"], 4)
    enc = rng.normal(size=(16, 8))  # two "layers" of 4 units; the second carries the classes
    enc[:, 4:] += np.eye(2)[y] @ rng.normal(size=(2, 4)) * 3
    func = rng.normal(size=(16, 5)) + np.eye(2)[y] @ rng.normal(size=(2, 5))
    config = {"member": {"name": "linear_svm", "config": {"C": 0.1}},
              "members": {"enc": {"name": "linear_svm", "config": {"C": 0.1, "select": "layer"}}}}  # fmt: skip
    fused = get_model("score_fusion", config)
    fused.fit({"enc": enc, "func": func}, y, labels=["a", "b"], groups=groups,
              layouts={"enc": Layout.of(("layer", 2), ("unit", 4)), "func": Layout.flat(5)})  # fmt: skip
    assert fused.members_["enc"].block_ == "1" and fused.members_["func"].config.select is None
    fused.save(tmp_path)
    again = type(fused).load(tmp_path, fused.describe()["config"])
    X = {"enc": enc, "func": func}
    np.testing.assert_allclose(again.predict_proba(X), fused.predict_proba(X))
    with pytest.raises(ConfigError, match="not inputs"):
        get_model("score_fusion", {"members": {"other": {"name": "linear_svm"}}}).fit(X, y, labels=["a", "b"], groups=groups)
