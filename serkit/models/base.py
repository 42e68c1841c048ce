"""The model protocol shared by every SER model, and the model registry.

A model follows scikit-learn's estimator rules: no work in ``__init__`` beyond storing a typed
config, fitted state in attributes ending in ``_``, ``fit`` returns ``self``. Models never read
files: they get features.

Inputs (``X``) are a mapping from a feature key (the key under ``features:`` in a recipe) to
per-utterance data: an ``(n, dims)`` float32 matrix for utterance-level features, or a list of
``n`` arrays of shape ``(frames_i, dims)`` for frame-level ones. Labels ``y`` are integer class
indices into ``labels``.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Union

import numpy as np

from serkit.errors import ConfigError
from serkit.features.base import config_from_dict

FeatureData = Union[np.ndarray, list[np.ndarray]]
Inputs = Mapping[str, FeatureData]

_REGISTRY: dict[str, type[SERModel]] = {}


class SERModel(ABC):
    """Base class of serkit's models (see module docstring for ``X`` and ``y``)."""

    name: ClassVar[str]
    Config: ClassVar[type]

    def __init__(self, config: Any = None):
        if config is None:
            config = self.Config()
        elif isinstance(config, Mapping):
            config = config_from_dict(self.Config, dict(config))
        if not isinstance(config, self.Config):
            raise ConfigError(f"{self.name}: config must be a {self.Config.__name__}")
        self.config = config

    @abstractmethod
    def fit(
        self,
        X: Inputs,
        y: np.ndarray,
        *,
        labels: Sequence[str],
        groups: np.ndarray | None = None,
        seed: int = 0,
        valid: tuple[Inputs, np.ndarray] | None = None,
    ) -> SERModel:
        """Train on ``X`` with integer targets ``y`` (``(n,)`` int) over ``labels``.

        ``groups`` are the speakers of the training utterances; any hyper-parameter choice or
        validation split inside ``fit`` must be speaker-independent over them. ``valid`` is a
        validation split the protocol carved from training speakers (inputs, targets), for
        models that stop early.
        """

    @abstractmethod
    def predict_proba(self, X: Inputs) -> np.ndarray:
        """Class probabilities, ``(n, len(labels))`` float64, rows summing to one."""

    def predict(self, X: Inputs) -> np.ndarray:
        """Most probable class index per utterance, ``(n,)`` int."""
        return np.argmax(self.predict_proba(X), axis=1)

    def fit_info(self) -> dict[str, Any]:
        """What ``fit`` chose (hyper-parameters, epochs, …) as plain data, for the report."""
        return {}

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write the fitted state into an existing, empty ``directory``."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path, config: Mapping[str, Any]) -> SERModel:
        """Rebuild a fitted model saved by :meth:`save` with the same ``config``."""

    def describe(self) -> dict[str, Any]:
        """Name and resolved config as plain data (round-trips through :func:`get_model`)."""
        return {"name": self.name, "config": _plain(dataclasses.asdict(self.config))}


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def take_rows(data: FeatureData, index: np.ndarray) -> FeatureData:
    """Rows ``index`` (int positions) of an utterance-level matrix or a frame-level list."""
    if isinstance(data, np.ndarray):
        return data[index]
    return [data[i] for i in index]


def single_matrix(X: Inputs, who: str) -> np.ndarray:
    """The one utterance-level ``(n, dims)`` matrix in ``X``.

    Raises:
        ConfigError: ``X`` holds more than one feature, or a frame-level one.
    """
    if len(X) != 1:
        raise ConfigError(f"{who} takes exactly one utterance-level feature, got {sorted(X)}")
    (data,) = X.values()
    if not isinstance(data, np.ndarray) or data.ndim != 2:
        raise ConfigError(f"{who} needs an utterance-level (n, dims) feature matrix, got frame-level input")
    return data


def register(cls: type[SERModel]) -> type[SERModel]:
    """Class decorator adding a model to the registry under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def model_class(name: str) -> type[SERModel]:
    """The registered model class ``name``.

    Raises:
        ConfigError: unknown model name.
    """
    _load_builtin()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _REGISTRY[name]


def get_model(name: str, config: Mapping[str, Any] | None = None) -> SERModel:
    """A new, unfitted instance of model ``name`` with ``config``."""
    return model_class(name)(dict(config or {}))


def list_models() -> list[str]:
    """Sorted names of all registered models."""
    _load_builtin()
    return sorted(_REGISTRY)


def _load_builtin() -> None:
    from serkit.models import blstm_fcn, deep_spectrum, svm  # noqa: F401
    from serkit.models import msir  # noqa: F401
    from serkit.models import emotion_ae  # noqa: F401
    from serkit.models import binaural  # noqa: F401
