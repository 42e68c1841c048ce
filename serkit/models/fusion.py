"""Score-level fusion of several inputs, each classified by its own member model: ``score_fusion``.

The binaural paper's two-stage score fusion (Zhang et al., IEEE Access 2020, Sec. II-D,
eq. 8–10), written for any inputs: the inputs come in at most two *groups* of at most two; each
input has its own member model (default :class:`~serkit.models.svm.LinearSVM`); the scores of a
group's two inputs are fused with a weight ``w`` (eq. 8–9: ``w · s_a + (1 − w) · s_b``), and
two groups' fusions with a second weight (eq. 10). A single group of two is plain weighted
fusion of two inputs (e.g. encoder statistics and openSMILE functionals); a group of one is
its member alone. The binaural recipes use ``groups: [[left, right], [mid, side]]``.

**Weights.** Each weight is searched over ``[0, 1]`` in steps of 0.1 (the paper's "exhaustive
search … with an interval of 0.1"), maximising UA — first each group's weight, then the weight
between the groups with the first stage fixed. The paper searched on its test data; here the
scores searched are the *training speakers' out-of-fold scores*
(:meth:`~serkit.models.svm.LinearSVM.out_of_fold_proba`: every training utterance scored by the
member trained without its speaker, at the chosen C). No test utterance takes part.

**Missing inputs.** An utterance-level row that is entirely NaN is a missing observation (the
silent Side of a mono recording, :mod:`serkit.derived.binaural`). Each member is trained on the
rows where its input is present; where one input of a group is missing, its partner's scores take
its place (the weight moves to the partner), and likewise between groups; where every input is
missing the scores are uniform. An input missing in every training row is left out (reported in
``fit_info`` as ``absent_inputs``), as if missing everywhere.

The functions :func:`fuse_pair`, :func:`search_weight`, :func:`search_fusion` and
:func:`apply_fusion` are the maths, free of models (``scripts/binaural_study.py`` also uses them
for the paper's test-set choice, labelled an oracle there).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import balanced_accuracy_score

from serkit.config import check_option
from serkit.errors import BundleError, ConfigError
from serkit.features.data import Inputs
from serkit.models.base import Layouts, SERModel, get_model, model_class, register
from serkit.state_files import (
    is_finite,
    is_labels,
    is_object,
    is_str_list,
    read_json,
    take,
    write_json,
)

log = logging.getLogger(__name__)

#: Fusion weights searched (eq. 8–10: "[0, 1] with an interval of 0.1").
WEIGHT_GRID: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))

Groups = Sequence[Sequence[str]]


# --------------------------------------------------------------------------- the maths (eq. 8-10)


def fuse_pair(
    a: np.ndarray, b: np.ndarray, weight: float, present_a: np.ndarray | None = None, present_b: np.ndarray | None = None
) -> np.ndarray:
    """``weight · a + (1 − weight) · b`` row by row (eq. 8, 9 and 10).

    A row where one input is missing (``present_* == False``) takes the other's scores unchanged:
    the missing input's weight moves to its partner. Rows where both are missing are NaN.

    Args:
        a, b: ``(n, K)`` scores.
        weight: weight of ``a`` in [0, 1].
        present_a, present_b: ``(n,)`` bool; ``None``: present in every row.

    Returns:
        float64 ``(n, K)``.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    pa = np.ones(len(a), bool) if present_a is None else np.asarray(present_a, bool)
    pb = np.ones(len(b), bool) if present_b is None else np.asarray(present_b, bool)
    out = np.full(a.shape, np.nan)
    both = pa & pb
    out[both] = weight * a[both] + (1.0 - weight) * b[both]
    out[pa & ~pb] = a[pa & ~pb]
    out[~pa & pb] = b[~pa & pb]
    return out


def unweighted_recall(y: np.ndarray, scores: np.ndarray) -> float:
    """UA (mean recall over the classes present in ``y``) of the argmax of ``(n, K)`` scores; NaN rows count as wrong."""
    scores = np.asarray(scores, dtype=np.float64)
    predicted = np.where(np.isnan(scores).any(axis=1), -1, np.nan_to_num(scores, nan=-np.inf).argmax(axis=1))
    return float(balanced_accuracy_score(np.asarray(y), predicted))


def search_weight(
    a: np.ndarray,
    b: np.ndarray,
    y: np.ndarray,
    present_a: np.ndarray | None = None,
    present_b: np.ndarray | None = None,
    grid: Sequence[float] = WEIGHT_GRID,
) -> tuple[float, float]:
    """The weight of ``a`` in ``grid`` whose fusion (:func:`fuse_pair`) has the best UA on ``y``.

    The paper's exhaustive search (eq. 8–10). Ties go to the weight closest to 0.5 (equal
    weights), then to the smaller weight.

    Args:
        a, b: ``(n, K)`` scores of the same utterances.
        y: ``(n,)`` int true classes.
        present_a, present_b: ``(n,)`` bool presence (see :func:`fuse_pair`).
        grid: candidate weights.

    Returns:
        ``(weight, UA)``.
    """
    results = [(unweighted_recall(y, fuse_pair(a, b, w, present_a, present_b)), w) for w in grid]
    best_ua, best_w = max(results, key=lambda r: (round(r[0], 12), -abs(r[1] - 0.5), -r[1]))
    return float(best_w), best_ua


@dataclass(frozen=True)
class FusionWeights:
    """Weights of :func:`apply_fusion`.

    Attributes:
        pairs: per group, the weight of its first input (``None`` for a group of one).
        groups: the weight of the first group's fused scores against the second's (``None``
            for one group).
        inner_ua: the UA each weight reached where it was searched (plain data, for reports).
    """

    pairs: tuple[float | None, ...]
    groups: float | None = None
    inner_ua: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON); :meth:`ScoreFusion.load` reads it back."""
        return {"pairs": list(self.pairs), "groups": self.groups, "inner_ua": dict(self.inner_ua)}


def check_groups(groups: Groups) -> tuple[tuple[str, ...], ...]:
    """``groups`` as tuples, checked: one or two groups of one or two distinct input names.

    Raises:
        ConfigError: otherwise.
    """
    try:
        out = tuple(tuple(g) for g in groups)
    except TypeError as exc:
        raise ConfigError(f"score fusion: groups must be a list of lists of input names, got {groups!r}") from exc
    names = [n for g in out for n in g]
    if (
        not 1 <= len(out) <= 2
        or any(not 1 <= len(g) <= 2 for g in out)
        or not all(isinstance(n, str) and n for n in names)
        or len(set(names)) != len(names)
    ):
        raise ConfigError(f"score fusion: needs one or two groups of one or two distinct input names, got {groups!r}")
    return out


def _group_scores(
    scores: Mapping[str, np.ndarray], present: Mapping[str, np.ndarray], group: tuple[str, ...], weight: float | None
) -> np.ndarray:
    if len(group) == 1:
        (name,) = group
        return np.where(present[name][:, None], np.asarray(scores[name], dtype=np.float64), np.nan)
    a, b = group
    return fuse_pair(scores[a], scores[b], weight, present[a], present[b])


def _presence(scores: Mapping[str, np.ndarray], present: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    given = dict(present or {})
    return {name: np.asarray(given[name], bool) if name in given else ~np.isnan(np.asarray(s)).any(axis=1)
            for name, s in scores.items()}  # fmt: skip


def search_fusion(
    scores: Mapping[str, np.ndarray], y: np.ndarray, groups: Groups, present: Mapping[str, np.ndarray] | None = None
) -> FusionWeights:
    """The weights of two-stage score fusion (eq. 8–10) searched on one table of scores.

    Stage 1 searches each group's weight on its own (eq. 8 and 9); stage 2 searches the weight
    between the two groups' fused scores (eq. 10), stage 1 fixed. Which scores are given decides
    what the weights are worth: out-of-fold scores of the training speakers give an honest
    choice (:class:`ScoreFusion`); test predictions give the paper's choice, an oracle.

    Args:
        scores: input name -> ``(n, K)`` scores of the same utterances (NaN rows: missing).
        y: ``(n,)`` int true classes.
        groups: see :func:`check_groups`.
        present: input name -> ``(n,)`` bool; default: the rows without NaN.

    Returns:
        The weights and the UA each reached.

    Raises:
        ConfigError: bad groups, or a name without scores.
    """
    groups = check_groups(groups)
    _check_names(groups, scores)
    present = _presence(scores, present)
    pairs: list[float | None] = []
    inner: dict[str, float] = {}
    stages = []
    for group in groups:
        weight = None
        if len(group) == 2:
            weight, inner["+".join(group)] = search_weight(scores[group[0]], scores[group[1]], y, present[group[0]], present[group[1]])
        pairs.append(weight)
        stages.append(_group_scores(scores, present, group, weight))
    between = None
    if len(stages) == 2:
        s1, s2 = stages
        between, inner["groups"] = search_weight(s1, s2, y, ~np.isnan(s1).any(axis=1), ~np.isnan(s2).any(axis=1))
    return FusionWeights(tuple(pairs), between, inner)


def apply_fusion(
    scores: Mapping[str, np.ndarray], weights: FusionWeights, groups: Groups, present: Mapping[str, np.ndarray] | None = None
) -> np.ndarray:
    """Fused scores ``(n, K)`` of eq. 8–10 with ``weights`` (from :func:`search_fusion`); NaN
    rows where every input is missing.

    Raises:
        ConfigError: bad groups, a name without scores, or weights of other groups.
    """
    groups = check_groups(groups)
    _check_names(groups, scores)
    if len(weights.pairs) != len(groups) or (len(groups) == 2) != (weights.groups is not None):
        raise ConfigError(f"score fusion: weights {weights.to_dict()} do not fit the groups {groups}")
    present = _presence(scores, present)
    stages = [_group_scores(scores, present, g, w) for g, w in zip(groups, weights.pairs)]
    if len(stages) == 1:
        return stages[0]
    s1, s2 = stages
    return fuse_pair(s1, s2, weights.groups, ~np.isnan(s1).any(axis=1), ~np.isnan(s2).any(axis=1))


def _check_names(groups: tuple[tuple[str, ...], ...], scores: Mapping[str, Any]) -> None:
    missing = [n for g in groups for n in g if n not in scores]
    if missing:
        raise ConfigError(f"score fusion: no scores for {missing}; have {sorted(scores)}")


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class ScoreFusionConfig:
    """Options of :class:`ScoreFusion`.

    Attributes:
        groups: the input keys in one or two groups of one or two (``[[left, right], [mid,
            side]]``); ``None``: all inputs as one group (one or two inputs).
        member: the model of every input, ``{name: NAME, config: {...}}``; it must offer
            ``out_of_fold_proba()`` when weights are searched (``linear_svm`` does).
        members: input key -> its own ``{name, config}``, in place of ``member`` for that input
            (encoder statistics that choose a layer beside functionals that have none).
    """

    groups: tuple | None = None
    member: Mapping[str, Any] = field(default_factory=lambda: {"name": "linear_svm", "config": {}})
    members: Mapping[str, Any] = field(default_factory=dict)


@register
class ScoreFusion(SERModel):
    """One member model per input, scores fused with weights searched on out-of-fold scores (module docstring).

    Inputs: utterance-level ``(n, d)`` features, one per key of ``groups``; a row entirely NaN is
    missing. Fitted state: ``labels_``, ``groups_``, ``members_`` (key -> fitted member; absent
    inputs left out), ``absent_`` (keys missing in every training row), ``weights_``
    (:class:`FusionWeights`).
    """

    name = "score_fusion"
    Config = ScoreFusionConfig

    def check_config(self) -> None:
        c = self.config
        if c.groups is not None:
            check_groups(c.groups)
        check_option(isinstance(c.members, Mapping), self.name, f"members must map input keys to models, got {c.members!r}")
        for member in (c.member, *c.members.values()):
            check_option(
                isinstance(member, Mapping) and isinstance(member.get("name"), str) and set(member) <= {"name", "config"},
                self.name, f"a member must be {{name: MODEL, config: {{...}}}}, got {member!r}",
            )  # fmt: skip
        for key in (None, *c.members):
            self._member(key)  # an unknown model or a bad member config fails here, before any work

    def _spec(self, key: str | None) -> Mapping[str, Any]:
        return self.config.members.get(key, self.config.member)

    def _member(self, key: str | None) -> SERModel:
        spec = self._spec(key)
        return get_model(spec["name"], spec.get("config") or {})

    def _groups(self, keys: Sequence[str]) -> tuple[tuple[str, ...], ...]:
        groups = check_groups(self.config.groups) if self.config.groups is not None else None
        if groups is None:
            if not 1 <= len(keys) <= 2:
                raise ConfigError(f"{self.name}: {len(keys)} inputs {list(keys)}; say how they pair up with groups")
            groups = (tuple(keys),)
        named = {n for g in groups for n in g}
        if named != set(keys):
            raise ConfigError(f"{self.name}: groups name {sorted(named)}, the inputs are {sorted(keys)}")
        return groups

    def _present(self, X: Inputs) -> dict[str, np.ndarray]:
        out = {}
        for key, data in X.items():
            if not isinstance(data, np.ndarray) or data.ndim != 2:
                raise ConfigError(f"{self.name} needs utterance-level (n, dims) features, {key!r} is frame level")
            out[key] = ~np.isnan(data).all(axis=1)
        return out

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
    ) -> ScoreFusion:
        """Fit every member on the rows where its input is present, then search the weights on
        the members' out-of-fold scores of the training speakers. ``valid`` is not used.

        Raises:
            ConfigError: groups that do not name the inputs; a frame-level input; every input
                missing in every row; weights to search but a member without out-of-fold scores
                (or too few training speakers for them).
        """
        self.groups_ = self._groups(list(X))
        unknown = sorted(set(self.config.members) - set(X))
        if unknown:
            raise ConfigError(f"{self.name}: members name {unknown}, which are not inputs {sorted(X)}")
        present = self._present(X)
        y = np.asarray(y, dtype=int)
        groups = None if groups is None else np.asarray(groups)
        self.labels_ = list(labels)
        self.members_: dict[str, SERModel] = {}
        self.absent_: list[str] = []
        oof: dict[str, np.ndarray] = {}
        search = sum(len(g) for g in self.groups_) > 1
        for key, data in X.items():
            rows = present[key]
            if not rows.any():
                self.absent_.append(key)
                log.warning("%s: input %s is missing in every training utterance; left out", self.name, key)
                continue
            member = self._member(key)
            member.fit(
                {key: data[rows]}, y[rows], labels=labels, groups=None if groups is None else groups[rows], seed=seed,
                layouts=None if layouts is None or key not in layouts else {key: layouts[key]},
            )  # fmt: skip
            self.members_[key] = member
            if search:
                if not hasattr(member, "out_of_fold_proba"):
                    raise ConfigError(f"{self.name}: member {member.name} gives no out-of-fold scores to search weights on")
                oof[key] = np.full((len(y), len(labels)), np.nan)
                oof[key][rows] = member.out_of_fold_proba()
        if not self.members_:
            raise ConfigError(f"{self.name}: every input is missing in every training utterance")
        for key in self.absent_:
            oof[key] = np.full((len(y), len(labels)), np.nan)
            present[key] = np.zeros(len(y), bool)
        if search:
            self.weights_ = search_fusion(oof, y, self.groups_, present)
        else:
            self.weights_ = FusionWeights((None,))
        return self

    def input_scores(self, X: Inputs) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Each input's member scores ``(n, K)`` (NaN where missing) and presence ``(n,)`` bool.

        An input left out at fit time (missing in every training row) is missing in every row.
        """
        present = self._present(X)
        n = len(next(iter(X.values())))
        scores = {}
        for key in X:
            scores[key] = np.full((n, len(self.labels_)), np.nan)
            if key not in self.members_:
                present[key] = np.zeros(n, bool)
            elif present[key].any():
                scores[key][present[key]] = self.members_[key].predict_proba({key: X[key][present[key]]})
        return scores, present

    def predict_proba(self, X: Inputs) -> np.ndarray:
        """Fused scores ``(n, K)`` float64, rows summing to one; uniform where every input is missing.

        Raises:
            ConfigError: inputs other than those fitted.
        """
        if set(X) != {n for g in self.groups_ for n in g}:
            raise ConfigError(f"{self.name}: fitted on {self.groups_}, got inputs {sorted(X)}")
        scores, present = self.input_scores(X)
        fused = apply_fusion(scores, self.weights_, self.groups_, present)
        fused = np.where(np.isnan(fused).any(axis=1, keepdims=True), 1.0 / len(self.labels_), fused)
        return fused / fused.sum(axis=1, keepdims=True)

    def fit_info(self) -> dict[str, Any]:
        weights = {"+".join(g): w for g, w in zip(self.groups_, self.weights_.pairs) if w is not None}
        if self.weights_.groups is not None:
            weights["groups"] = self.weights_.groups
        return {
            "groups": [list(g) for g in self.groups_],
            "weights": weights,
            "inner_ua": dict(self.weights_.inner_ua),
            "absent_inputs": list(self.absent_),
            "members": {key: member.fit_info() for key, member in self.members_.items()},
        }

    # ------------------------------------------------------------------ persistence

    def input_widths(self) -> dict[str, int]:
        return {key: width for member in self.members_.values() for key, width in member.input_widths().items()}

    def save(self, directory: Path) -> None:
        """``fusion.json`` (labels, groups, weights, absent inputs) and ``member-<i>/`` per fitted member."""
        keys = list(self.members_)
        for i, key in enumerate(keys):
            (directory / f"member-{i}").mkdir()
            self.members_[key].save(directory / f"member-{i}")
        state = {
            "labels": self.labels_,
            "groups": [list(g) for g in self.groups_],
            "members": keys,
            "absent": self.absent_,
            "weights": self.weights_.to_dict(),
        }
        write_json(directory / "fusion.json", state)

    @classmethod
    def load(cls, directory: Path, config: Mapping[str, Any]) -> ScoreFusion:
        """Rebuild a model saved by :meth:`save` (members through their own ``load``).

        Raises:
            BundleError: a missing or malformed ``fusion.json`` (naming the field), weights that
                do not fit the groups, members and absent inputs that do not cover the groups'
                inputs, or a member whose labels differ.
        """
        model = cls(dict(config))
        where = directory / "fusion.json"
        state = read_json(where)
        model.labels_ = take(state, "labels", is_labels, "a list of at least two distinct class names", where)
        try:
            model.groups_ = check_groups(take(state, "groups", lambda v: isinstance(v, list), "a list of groups", where))
        except ConfigError as exc:
            raise BundleError(f"{where}: field 'groups': {exc}") from exc
        names = [n for g in model.groups_ for n in g]
        keys = take(state, "members", lambda v: is_str_list(v) and len(set(v)) == len(v) and set(v) <= set(names),
                    f"distinct input names of the groups {names}", where)  # fmt: skip
        model.absent_ = take(state, "absent", lambda v: is_str_list(v) and sorted(v + keys) == sorted(names),
                             f"the inputs of {names} that have no member", where)  # fmt: skip
        weights = take(state, "weights", is_object, "an object", where)
        pairs = take(weights, "pairs", lambda v: isinstance(v, list) and len(v) == len(model.groups_) and all(
            (w is None) if len(g) == 1 else (is_finite(w) and 0 <= w <= 1) for w, g in zip(v, model.groups_)),
            "one weight in [0, 1] per group of two (null for a group of one)", f"{where}: weights")  # fmt: skip
        between = take(weights, "groups", lambda v: (v is None) if len(model.groups_) == 1 else (is_finite(v) and 0 <= v <= 1),
                       "a weight in [0, 1] between two groups (null for one group)", f"{where}: weights")  # fmt: skip
        inner = take(weights, "inner_ua", is_object, "an object", f"{where}: weights", default={})
        model.weights_ = FusionWeights(tuple(pairs), between, dict(inner))
        model.members_ = {}
        for i, key in enumerate(keys):
            spec = model._spec(key)
            member = model_class(spec["name"]).load(directory / f"member-{i}", spec.get("config") or {})
            if list(member.labels_) != model.labels_:
                raise BundleError(f"{directory / f'member-{i}'}: member for {key!r} has labels {member.labels_}, {where} has {model.labels_}")
            model.members_[key] = member
        return model


__all__ = [
    "WEIGHT_GRID",
    "FusionWeights",
    "ScoreFusion",
    "apply_fusion",
    "check_groups",
    "fuse_pair",
    "search_fusion",
    "search_weight",
    "unweighted_recall",
]
