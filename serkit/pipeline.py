"""A recipe's features as one graph: extractors, derived features, and what the model reads.

A recipe's ``features:`` maps keys to either an extractor or a derived feature::

    features:
      encoder: {extractor: speech_encoder, config: {layer: all}, channel: downmix}
      pooled:  {derive: pooled_stats, from: encoder}

:class:`FeaturePlan` checks the graph (every ``from`` exists, no cycle, each derived feature
accepts its inputs' :class:`~serkit.features.data.FeatureSpec`) before any audio is read. The
model reads the **outputs**: the keys no derived feature reads. Normalisation applies to those.

The work splits in two, so that nothing learnt ever sees a test speaker:

- :meth:`FeaturePlan.materialise` computes, for every utterance of a corpus table, the features
  that do not depend on a fitted derived feature. Extractors run through
  :func:`~serkit.features.extract.extract_features` (parallel, cached). Fixed derived features are
  computed from their inputs and cached in ``cache_dir/derived/<name>-<digest>/<key>.npy``, the
  key being the SHA-256 of the feature's description, serkit's version and the exact bytes,
  dtype and shape of every input array: any change upstream (an extractor's option, the audio, a
  derived feature's config) changes the input values or the description and misses the cache,
  while identical inputs (Left and Mid of a mono file) share an entry. Utterances are processed
  in chunks, so the frames of a large encoder never all sit in memory at once. An utterance any
  step cannot use is reported by key and message and left out.
- :meth:`FeaturePlan.fit_fold` fits the fitted derived features on the training rows of one fold
  (and computes what depends on them) and returns the outputs for every row.

:meth:`FeaturePlan.compute_one` runs the same graph on one recording at inference time.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import serkit
from serkit.audio import Audio
from serkit.derived.base import DerivedFeature, FittedFeature, FixedFeature, get_derived
from serkit.errors import ConfigError, FeatureError
from serkit.features import extract_features, get_extractor
from serkit.features.base import Extractor
from serkit.features.data import FeatureData, FeatureSpec, n_rows, take_rows
from serkit.features.extract import Channel, check_channel, progress_bar, select_channel
from serkit.features.layout import Layout
from serkit.io import atomic_write_bytes

log = logging.getLogger(__name__)

#: Utterances computed together by :meth:`FeaturePlan.materialise` (bounds the memory of intermediates).
CHUNK = 256


@dataclass
class Node:
    """One feature of the graph: an extractor (with its channel) or a derived feature (with its inputs)."""

    key: str
    spec: FeatureSpec
    extractor: Extractor | None = None
    channel: Channel = "downmix"
    derived: DerivedFeature | None = None
    inputs: tuple[str, ...] = ()


@dataclass
class Materialised:
    """What :meth:`FeaturePlan.materialise` computed.

    Attributes:
        ids: utterance ids every step could use, in table order.
        features: key -> data of those ids (``(n, dim)`` float32 or ``n`` arrays ``(frames, dim)``).
        failures: ``{"utterance_id", "feature", "error"}`` records of utterances left out.
    """

    ids: list[str]
    features: dict[str, FeatureData]
    failures: list[dict[str, str]] = field(default_factory=list)


class FeaturePlan:
    """The features of a recipe as a checked graph (module docstring).

    Args:
        features: the recipe's ``features`` mapping: key -> ``{extractor, config, channel}`` or
            ``{derive, from, config}``.

    Raises:
        ConfigError: an entry that is neither, a ``from`` naming no feature, a cycle, an unknown
            extractor or derived feature, an invalid config, or inputs a derived feature refuses.
    """

    def __init__(self, features: Mapping[str, Mapping[str, Any]]):
        self.recipe = {key: dict(spec) for key, spec in features.items()}
        self.nodes: dict[str, Node] = {}
        for key in _topological(self.recipe):
            try:
                self.nodes[key] = self._node(key, self.recipe[key])
            except (ConfigError, FeatureError) as exc:
                raise ConfigError(f"features.{key}: {exc}") from exc
        read = {name for node in self.nodes.values() for name in node.inputs}
        #: Keys the model reads, in recipe order.
        self.outputs = [key for key in self.recipe if key not in read]
        fold = set()
        for key, node in self.nodes.items():  # topological: inputs come first
            if (node.derived is not None and node.derived.fitted) or any(name in fold for name in node.inputs):
                fold.add(key)
        #: Keys computed inside each fold (fitted, or reading something fitted), in order.
        self.per_fold = [key for key in self.nodes if key in fold]
        #: Keys :meth:`materialise` keeps for the folds: outputs and the inputs of per-fold keys.
        self.stored = [
            key
            for key in self.nodes
            if key not in fold and (key in self.outputs or any(key in self.nodes[f].inputs for f in fold))
        ]

    def _node(self, key: str, spec: Mapping[str, Any]) -> Node:
        if "derive" in spec:
            derived = get_derived(spec["derive"], spec.get("config"))
            inputs = _sources(key, spec)
            out = derived.bind({name: self.nodes[name].spec for name in inputs})
            return Node(key, out, derived=derived, inputs=inputs)
        extractor = get_extractor(spec["extractor"], spec.get("config"))
        check_channel(spec.get("channel", "downmix"))
        out = FeatureSpec(extractor.level, extractor.layout, extractor.frame_shift, source=extractor.describe())
        return Node(key, out, extractor=extractor, channel=spec.get("channel", "downmix"))

    # ------------------------------------------------------------------ description

    @property
    def specs(self) -> dict[str, FeatureSpec]:
        """Output key -> spec."""
        return {key: self.nodes[key].spec for key in self.outputs}

    @property
    def layouts(self) -> dict[str, Layout]:
        """Output key -> column layout (what a model's ``fit`` gets)."""
        return {key: spec.layout for key, spec in self.specs.items()}

    @property
    def extractors(self) -> dict[str, tuple[Extractor, Channel]]:
        """Extractor key -> (extractor, channel)."""
        return {key: (n.extractor, n.channel) for key, n in self.nodes.items() if n.extractor is not None}

    # ------------------------------------------------------------------ the corpus

    def materialise(
        self,
        table: pd.DataFrame,
        *,
        cache_dir: str | Path | None = None,
        n_jobs: int = 1,
        progress: bool = True,
        runner: Any = None,
    ) -> Materialised:
        """Compute :attr:`stored` for every utterance of ``table`` (module docstring).

        Args:
            table: corpus table with ``utterance_id`` and ``path``.
            cache_dir: feature cache folder (extractors and fixed derived features); ``None``: off.
            n_jobs: extraction processes (-1: all cores).
            progress: show a progress bar over the utterances.
            runner: a task runner (:class:`serkit.cluster.DaskRunner`): extractors and fixed
                derived features run as its tasks (cache entries written as without it);
                ``None``: in this process and ``n_jobs`` extraction processes.

        Returns:
            The ids every step could use, their stored features, the failures.

        Raises:
            FeatureError: no utterance could be processed.
            Whatever an extractor raises that is not an :class:`~serkit.errors.AudioError`.
        """
        needed = self._ancestors(self.stored)
        order = [key for key in self.nodes if key in needed]
        values: dict[str, dict[str, np.ndarray]] = {key: {} for key in self.stored}
        failed: dict[str, tuple[str, str]] = {}
        with progress_bar(progress, "features", len(table)) as advance:
            for start in range(0, len(table), CHUNK):
                chunk = table.iloc[start : start + CHUNK]
                local: dict[str, dict[str, np.ndarray]] = {}
                for key in order:
                    alive = chunk[~chunk["utterance_id"].isin(list(failed))]
                    node = self.nodes[key]
                    if node.extractor is not None:
                        local[key] = self._extract(node, alive, cache_dir, n_jobs, failed, runner)
                    else:
                        ids = alive["utterance_id"].tolist()
                        items = [{name: local[name][uid] for name in node.inputs} for uid in ids]
                        local[key] = self._derive(node, ids, items, cache_dir, failed, runner)
                for key in self.stored:
                    values[key].update(local[key])
                advance(len(chunk))
        ids = [uid for uid in table["utterance_id"].astype(str) if uid not in failed]
        failures = [{"utterance_id": uid, "feature": key, "error": msg} for uid, (key, msg) in failed.items()]
        if not ids:
            what = table.attrs.get("corpus", "the table")
            raise FeatureError(f"no utterance of {what} could be processed; first error: {failures[0] if failures else None}")
        features = {key: self._stack(key, [values[key][uid] for uid in ids]) for key in self.stored}
        return Materialised(ids, features, failures)

    def _ancestors(self, keys: Sequence[str]) -> set[str]:
        found, todo = set(), list(keys)
        while todo:
            key = todo.pop()
            if key not in found:
                found.add(key)
                todo.extend(self.nodes[key].inputs)
        return found

    def _extract(self, node: Node, rows: pd.DataFrame, cache_dir, n_jobs, failed, runner) -> dict[str, np.ndarray]:
        fs = extract_features(
            rows, node.extractor, channel=node.channel, cache_dir=cache_dir, n_jobs=n_jobs, progress=False, runner=runner
        )
        for uid, message in fs.failures.items():
            failed[uid] = (node.key, message)
            log.warning("skipping %s (%s): %s", uid, node.key, message)
        return dict(zip(fs.ids, fs.values))

    def _derive(
        self, node: Node, ids: list[str], items: list[dict[str, np.ndarray]], cache_dir, failed, runner=None
    ) -> dict[str, np.ndarray]:
        """The fixed derived feature of ``items``, from the cache where it holds them (the rest
        computed here, or as a runner's tasks; this process writes the cache entries)."""
        feature: FixedFeature = node.derived  # type: ignore[assignment]
        folder = None if cache_dir is None else derived_cache_folder(cache_dir, feature)
        paths = [None if folder is None else folder / f"{derived_cache_key(feature, item)}.npy" for item in items]
        out: dict[str, np.ndarray] = {}
        todo = []
        for uid, item, path in zip(ids, items, paths):
            cached = _read_entry(path, node.spec)
            if cached is None:
                todo.append((uid, item, path))
            else:
                out[uid] = cached
        if todo:
            computed = _compute_on(runner, feature, [item for _, item, _ in todo])
            for (uid, _, path), result in zip(todo, computed):
                if isinstance(result, FeatureError):
                    failed[uid] = (node.key, str(result))
                    log.warning("skipping %s (%s): %s", uid, node.key, result)
                    continue
                _check_shape(node, result)
                out[uid] = result
                if path is not None:
                    _write_entry(path, result)
        return out

    def _stack(self, key: str, arrays: list[np.ndarray]) -> FeatureData:
        if self.nodes[key].spec.level == "utterance":
            return np.stack(arrays).astype(np.float32, copy=False)
        return arrays

    # ------------------------------------------------------------------ one fold

    def fit_fold(
        self,
        stored: Mapping[str, FeatureData],
        train: np.ndarray,
        y: np.ndarray,
        *,
        labels: Sequence[str],
        groups: np.ndarray,
        seed: int,
        valid: np.ndarray | None = None,
    ) -> tuple[dict[str, FeatureData], dict[str, FittedFeature]]:
        """Fit the fitted derived features on rows ``train`` and return the outputs of every row.

        Args:
            stored: :attr:`Materialised.features` (all rows).
            train: int positions of the fold's training rows (training speakers only).
            y: ``(n,)`` int class of every row; only ``y[train]`` is used.
            labels: class names.
            groups: ``(n,)`` speaker of every row; only ``groups[train]`` is used.
            seed: seeds the fitted features.
            valid: int positions of the fold's validation rows (training speakers held out by the
                protocol), passed to fitted features for early stopping; ``None`` when there are none.

        Returns:
            Output key -> data of every row, and key -> fitted feature (for a bundle).
        """
        values = dict(stored)
        fitted: dict[str, FittedFeature] = {}
        for key in self.per_fold:
            node = self.nodes[key]
            X = {name: values[name] for name in node.inputs}
            if node.derived.fitted:
                feature = type(node.derived)(node.derived.config)
                feature.bind({name: self.nodes[name].spec for name in node.inputs})
                train_x = {name: take_rows(data, train) for name, data in X.items()}
                split = None if valid is None else ({name: take_rows(data, valid) for name, data in X.items()}, np.asarray(y)[valid])
                feature.fit(train_x, np.asarray(y)[train], labels=labels, groups=np.asarray(groups)[train], seed=seed, valid=split)
                values[key] = feature.transform(X)
                fitted[key] = feature
            else:
                rows = [{name: data[i] for name, data in X.items()} for i in range(n_rows(X))]
                values[key] = self._stack(key, _raise_failures(node, _compute(node.derived, rows)))
        return {key: values[key] for key in self.outputs}, fitted

    # ------------------------------------------------------------------ one recording

    def compute_one(self, audio: Audio, fitted: Mapping[str, FittedFeature] | None = None) -> dict[str, np.ndarray]:
        """Output key -> the features of one recording (inference), fitted features from ``fitted``.

        Raises:
            AudioError: the recording is unusable for an extractor.
            FeatureError: a derived feature cannot use it.
            ConfigError: a fitted feature is missing from ``fitted``.
        """
        return self.compute_many([audio], fitted)[0]

    def compute_many(
        self, audios: Sequence[Audio], fitted: Mapping[str, FittedFeature] | None = None
    ) -> list[dict[str, np.ndarray]]:
        """:meth:`compute_one` of several recordings (the windows of a timeline): each extractor
        gets them in batches of its :attr:`~serkit.features.base.Extractor.batch_size` (Whisper
        packs a batch into one pass), which changes float rounding only.

        Raises:
            As :meth:`compute_one`, for the first recording that fails.
        """
        values: list[dict[str, np.ndarray]] = [{} for _ in audios]
        for key, node in self.nodes.items():
            if node.extractor is not None:
                ex = node.extractor
                monos = [select_channel(a, node.channel).resample(ex.sample_rate) for a in audios]
                step = max(1, ex.batch_size)
                for start in range(0, len(monos), step):
                    batch = ex.extract_batch(monos[start : start + step])
                    for v, array in zip(values[start : start + step], batch):
                        v[key] = np.asarray(array, dtype=np.float32)
            elif not node.derived.fitted:
                for v in values:
                    v[key] = node.derived.compute({name: v[name] for name in node.inputs})
            else:
                if fitted is None or key not in fitted:
                    raise ConfigError(f"fitted derived feature {key!r} has no fitted state")
                for v in values:
                    X = {name: _one_row(v[name], self.nodes[name].spec) for name in node.inputs}
                    v[key] = np.asarray(fitted[key].transform(X)[0])
        return [{key: v[key] for key in self.outputs} for v in values]


# --------------------------------------------------------------------------- the graph


def _sources(key: str, spec: Mapping[str, Any]) -> tuple[str, ...]:
    source = spec.get("from")
    names = (source,) if isinstance(source, str) else tuple(source or ())
    if not names or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"features.{key}: a derived feature needs 'from: KEY' or a list of keys, got {source!r}")
    return names


def _topological(features: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Keys with every ``from`` before its reader (recipe order otherwise).

    Raises:
        ConfigError: an entry neither extractor nor derived, an unknown ``from``, or a cycle.
    """
    for key, spec in features.items():
        if ("extractor" in spec) == ("derive" in spec):
            raise ConfigError(f"features.{key}: give either 'extractor: NAME' or 'derive: NAME' with 'from'")
        if "derive" in spec:
            missing = [n for n in _sources(key, spec) if n not in features]
            if missing:
                raise ConfigError(f"features.{key}: reads {missing}, which no entry of features defines")
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(key: str, path: tuple[str, ...]) -> None:
        if state.get(key) == "done":
            return
        if state.get(key) == "open":
            raise ConfigError(f"features: a cycle {' -> '.join((*path, key))}")
        state[key] = "open"
        if "derive" in features[key]:
            for name in _sources(key, features[key]):
                visit(name, (*path, key))
        state[key] = "done"
        order.append(key)

    for key in features:
        visit(key, ())
    return order


def _compute(feature: FixedFeature, items: list[dict[str, np.ndarray]]) -> list[np.ndarray | FeatureError]:
    """Batched :meth:`FixedFeature.compute_batch`; on a FeatureError, one at a time to find the culprits."""
    if not items:
        return []
    try:
        return [np.asarray(x) for x in feature.compute_batch(items)]
    except FeatureError:
        out: list[np.ndarray | FeatureError] = []
        for item in items:
            try:
                out.append(np.asarray(feature.compute(item)))
            except FeatureError as exc:
                out.append(exc)
        return out


def _compute_on(runner: Any, feature: FixedFeature, items: list[dict[str, np.ndarray]]) -> list[np.ndarray | FeatureError]:
    """:func:`_compute` here, or in parts as the tasks of ``runner`` (a few per worker thread); results in order."""
    if runner is None or len(items) < 2:
        return _compute(feature, items)
    size = -(-len(items) // (4 * runner.threads()))
    parts = [items[i : i + size] for i in range(0, len(items), size)]
    done = dict(runner.map(_compute_part, parts, feature, name=f"derive-{feature.name}"))
    return [result for i in range(len(parts)) for result in done[i]]


def _compute_part(items: list[dict[str, np.ndarray]], feature: FixedFeature) -> list[np.ndarray | FeatureError]:
    return _compute(feature, items)


def _raise_failures(node: Node, results: list[np.ndarray | FeatureError]) -> list[np.ndarray]:
    for result in results:
        if isinstance(result, FeatureError):
            raise FeatureError(f"{node.key}: {result}")
    return results  # type: ignore[return-value]


def _one_row(value: np.ndarray, spec: FeatureSpec) -> FeatureData:
    return value[None, :] if spec.level == "utterance" else [value]


# --------------------------------------------------------------------------- the derived cache


def derived_cache_folder(cache_dir: str | Path, feature: DerivedFeature) -> Path:
    """``cache_dir/derived/<name>-<digest>``: the entries of one derived configuration and serkit version."""
    digest = hashlib.sha256(_describe_json(feature).encode() + serkit.__version__.encode()).hexdigest()[:16]
    folder = Path(cache_dir) / "derived" / f"{feature.name}-{digest}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def derived_cache_key(feature: DerivedFeature, inputs: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of the feature's description, serkit's version and each input's dtype, shape and bytes (in order)."""
    h = hashlib.sha256(_describe_json(feature).encode())
    h.update(b"\0" + serkit.__version__.encode())
    for value in inputs.values():
        array = np.ascontiguousarray(value)
        h.update(b"\0" + json.dumps([array.dtype.str, list(array.shape)]).encode() + b"\0")
        h.update(array.tobytes())
    return h.hexdigest()


def _describe_json(feature: DerivedFeature) -> str:
    return json.dumps(feature.describe(), sort_keys=True, default=str)


def _read_entry(path: Path | None, spec: FeatureSpec) -> np.ndarray | None:
    """A cache entry, or ``None`` (recompute) when absent, unreadable or of the wrong shape."""
    if path is None or not path.is_file():
        return None
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        log.warning("cache entry %s is unreadable; recomputing", path)
        return None
    if array.ndim != (1 if spec.level == "utterance" else 2) or array.shape[-1] != spec.dim:
        log.warning("cache entry %s has shape %s, not %s-level with %d columns; recomputing", path, array.shape, spec.level, spec.dim)
        return None
    return array


def _check_shape(node: Node, array: np.ndarray) -> None:
    ndim = 1 if node.spec.level == "utterance" else 2
    if array.ndim != ndim or array.shape[-1] != node.spec.dim:
        raise FeatureError(
            f"{node.key}: {node.derived.name} returned shape {array.shape}, "
            f"its spec says {node.spec.level} level with {node.spec.dim} columns"
        )


def _write_entry(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())
