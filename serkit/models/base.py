"""The model protocol shared by every SER model, and the model registry.

A model follows scikit-learn's estimator rules: no work in ``__init__`` beyond storing a typed
config, fitted state in attributes ending in ``_``, ``fit`` returns ``self``. Models never read
files except their own in :meth:`SERModel.load`: they get features.

Inputs (``X``, :data:`~serkit.features.data.Inputs`) map a feature key (a recipe's name for a
feature the model reads) to per-utterance data: an ``(n, dims)`` float matrix for
utterance-level features, or a list of ``n`` arrays of shape ``(frames_i, dims)`` for
frame-level ones. ``layouts`` say what each feature's columns are
(:class:`~serkit.features.layout.Layout`): a model reads band counts or encoder layers there
instead of from its own config. Labels ``y`` are integer class indices into ``labels``.

This module holds the protocol only; registered estimators are the other modules of
:mod:`serkit.models`, network layers and losses are in :mod:`serkit.blocks`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from serkit.config import Configurable
from serkit.features.data import FeatureData, Inputs
from serkit.features.layout import Layout
from serkit.registry import Registry

Layouts = Mapping[str, Layout]


class SERModel(Configurable, ABC):
    """Base class of serkit's models (see module docstring for ``X``, ``y`` and ``layouts``)."""

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
        layouts: Layouts | None = None,
    ) -> SERModel:
        """Train on ``X`` with integer targets ``y`` (``(n,)`` int) over ``labels``.

        ``groups`` are the speakers of the training utterances; any hyper-parameter choice or
        validation split inside ``fit`` must be speaker-independent over them. ``valid`` is a
        validation split the protocol carved from training speakers (inputs, targets), for
        models that stop early. ``layouts`` maps each key of ``X`` to its column layout; a
        model that needs one and gets ``None`` takes :func:`default_layouts`.
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

    def input_widths(self) -> dict[str, int]:
        """Feature key -> number of columns the fitted model reads (``{}``: the model does not say).

        A bundle checks these against the widths its features have when it is loaded.
        """
        return {}

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write the fitted state into an existing, empty ``directory``.

        Arrays and JSON only (:mod:`serkit.state_files`): a bundle must never hold anything
        that runs code when read (no pickle, joblib or ``torch.save``).
        """

    @classmethod
    @abstractmethod
    def load(cls, directory: Path, config: Mapping[str, Any]) -> SERModel:
        """Rebuild a fitted model saved by :meth:`save` with the same ``config``.

        Raises:
            BundleError: a missing or malformed file, naming the file (and field or array).
        """


def default_layouts(X: Inputs, layouts: Layouts | None) -> dict[str, Layout]:
    """``layouts`` completed for every key of ``X``: a key without one gets a flat layout of its width."""
    given = dict(layouts or {})
    return {key: given.get(key) or Layout.flat(_width(data)) for key, data in X.items()}


def _width(data: FeatureData) -> int:
    return int((data[0] if isinstance(data, list) else data).shape[-1])


MODELS: Registry[type[SERModel]] = Registry("model", "serkit.models")
#: Class decorator adding a model to :data:`MODELS` under its ``name``.
register = MODELS.register


def model_class(name: str) -> type[SERModel]:
    """The registered model class ``name``.

    Raises:
        ConfigError: unknown model name.
    """
    return MODELS.get(name)


def get_model(name: str, config: Mapping[str, Any] | None = None) -> SERModel:
    """A new, unfitted instance of model ``name`` with ``config``."""
    return model_class(name)(dict(config or {}))


def list_models() -> list[str]:
    """Sorted names of all registered models (built-in and from installed packages)."""
    return MODELS.names()
