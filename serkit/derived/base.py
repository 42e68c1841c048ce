"""Derived features: features computed from other features, a pipeline stage of their own.

A derived feature reads one or more features of a recipe (``from:``) and makes another::

    features:
      encoder: {extractor: speech_encoder, config: {model: whisper-base, layer: all}}
      pooled:  {derive: pooled_stats, from: encoder, config: {stats: [mean, std]}}

It is registered, typed and described like an extractor, and it says from its inputs'
:class:`~serkit.features.data.FeatureSpec` what it makes (:meth:`DerivedFeature.output`: level,
column layout), so a wrong input is an error before any work. There are two kinds:

- **fixed** (:class:`FixedFeature`): a function of one utterance's inputs, the same in every
  fold — pooling statistics over frames, selecting an encoder layer, segment images through a
  frozen CNN, block pooling. Computed once per utterance and cached on disk like an extractor's
  output, the cache key covering the feature's description, serkit's version and the exact
  input values (:mod:`serkit.pipeline`).
- **fitted** (:class:`FittedFeature`): learnt from data — a fine-tuned CNN, PCA. It is fitted
  inside each fold on the training speakers' utterances only (never a test speaker), then
  transforms every utterance; a model bundle stores its fitted state.

Nothing here reads or writes files except a fitted feature's own ``save``/``load``.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from serkit.config import Configurable
from serkit.errors import ConfigError
from serkit.features.data import FeatureData, FeatureSpec, Inputs
from serkit.registry import Registry


class DerivedFeature(Configurable, ABC):
    """Base class of derived features (module docstring).

    Subclasses set ``name``, a frozen dataclass ``Config`` and, when they read more than one
    input, ``n_inputs`` (``None``: any number >= 1); they implement :meth:`output`.
    """

    #: Bumped when the feature's numbers change; part of the cache key.
    version: ClassVar[int] = 1
    #: Whether the feature is learnt inside each fold (:class:`FittedFeature`).
    fitted: ClassVar[bool] = False
    #: How many inputs it reads; ``None`` for any number >= 1.
    n_inputs: ClassVar[int | None] = 1

    @abstractmethod
    def output(self, inputs: Mapping[str, FeatureSpec]) -> FeatureSpec:
        """What the feature makes from inputs described by ``inputs`` (key -> spec, recipe order).

        Raises:
            ConfigError: the inputs do not suit the feature (wrong level, a layout without the
                axis it needs, the wrong number of inputs).
        """

    def bind(self, inputs: Mapping[str, FeatureSpec]) -> FeatureSpec:
        """Fix the inputs' specs (``input_specs``) and return :meth:`output`'s spec (``spec``),
        its ``source`` this feature's :meth:`describe`.

        The pipeline binds every derived feature once, before computing or fitting it, so
        ``compute``, ``fit`` and ``transform`` may read ``input_specs`` (an input's layout).

        Raises:
            ConfigError: as :meth:`output`.
        """
        self.input_specs = dict(inputs)
        self.spec = dataclasses.replace(self.output(self.input_specs), source=self.describe())
        return self.spec

    def check_inputs(self, inputs: Mapping[str, FeatureSpec], level: str | None = None) -> None:
        """Raise :class:`ConfigError` unless there are ``n_inputs`` inputs, all of ``level`` when given."""
        if self.n_inputs is not None and len(inputs) != self.n_inputs:
            raise ConfigError(f"{self.name}: reads {self.n_inputs} feature(s), got {list(inputs)}")
        for key, spec in inputs.items():
            if level is not None and spec.level != level:
                raise ConfigError(f"{self.name}: needs {level}-level input, {key!r} is {spec.level} level")

    def describe(self) -> dict[str, Any]:
        """Name, version, kind and resolved config as plain data."""
        return {**super().describe(), "version": self.version, "fitted": self.fitted}


class FixedFeature(DerivedFeature):
    """A derived feature that is a function of one utterance's inputs (module docstring)."""

    @abstractmethod
    def compute(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The feature of one utterance.

        Args:
            inputs: key -> that utterance's array of each input (``(frames, dim)`` or ``(dim,)``).

        Returns:
            ``(frames, dim)`` or ``(dim,)`` as :meth:`output` says, float32 (float16 where the
            feature says so, e.g. large CNN activations).

        Raises:
            FeatureError: this utterance's inputs cannot give the feature (too few frames, …);
                the pipeline reports the utterance and goes on without it.
        """

    def compute_batch(self, items: Sequence[Mapping[str, np.ndarray]]) -> list[np.ndarray]:
        """:meth:`compute` of several utterances; a feature that runs a network batches them here.

        A :class:`~serkit.errors.FeatureError` fails the whole batch; the pipeline then
        computes its utterances one at a time to find and report the one at fault.
        """
        return [self.compute(item) for item in items]


class FittedFeature(DerivedFeature):
    """A derived feature learnt from the training utterances of a fold (module docstring).

    Fitted state ends in ``_``; ``fit`` returns ``self``.
    """

    fitted = True

    @abstractmethod
    def fit(
        self,
        X: Inputs,
        y: np.ndarray,
        *,
        labels: Sequence[str],
        groups: np.ndarray,
        seed: int,
        valid: tuple[Inputs, np.ndarray] | None = None,
    ) -> FittedFeature:
        """Learn from training utterances only.

        Args:
            X: key -> the training utterances' input data.
            y: ``(n,)`` int class indices into ``labels``.
            labels: the class names.
            groups: ``(n,)`` speakers of the rows (for speaker-independent inner choices).
            seed: seeds anything random.
            valid: a validation split the protocol carved from the training speakers (inputs,
                classes), for a feature that trains a network with early stopping; ``None``
                lets such a feature hold out training speakers itself.
        """

    @abstractmethod
    def transform(self, X: Inputs) -> FeatureData:
        """The feature of every row of ``X``: ``(n, dim)`` (utterance level) or ``n`` arrays ``(frames, dim)``."""

    def fit_info(self) -> dict[str, Any]:
        """What ``fit`` chose, as plain data for the report."""
        return {}

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write the fitted state into an existing, empty ``directory`` (arrays and JSON, no pickle)."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path, config: Mapping[str, Any], inputs: Mapping[str, FeatureSpec]) -> FittedFeature:
        """Rebuild the feature saved by :meth:`save` with the same ``config``, bound to ``inputs``
        (the specs of its inputs, as when it was fitted).

        Raises:
            BundleError: a missing or malformed file.
        """


DERIVED: Registry[type[DerivedFeature]] = Registry("derived feature", "serkit.derived")
#: Class decorator adding a derived feature to :data:`DERIVED` under its ``name``.
register = DERIVED.register


def get_derived(name: str, config: Mapping[str, Any] | None = None) -> DerivedFeature:
    """A new derived feature ``name`` with ``config``.

    Raises:
        ConfigError: unknown name or invalid config.
    """
    return DERIVED.get(name)(dict(config or {}))


def list_derived() -> list[str]:
    """Sorted names of all registered derived features (built-in and from installed packages)."""
    return DERIVED.names()
