"""``pca``: principal components of an utterance-level feature, learnt on the training speakers.

A fitted derived feature (:class:`~serkit.derived.base.FittedFeature`): each fold standardises
the input with its training rows' mean and standard deviation (``standardise``), finds the
principal axes of those rows (scikit-learn's ``PCA``, exact SVD) and projects every utterance on
the first ``components`` of them. Nothing about a test speaker enters the statistics or the axes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serkit.config import check_int, check_option
from serkit.derived.base import FittedFeature, register
from serkit.errors import BundleError, ConfigError, FeatureError
from serkit.features.data import FeatureSpec, Inputs
from serkit.features.layout import Layout
from serkit.state_files import read_arrays, write_arrays


@register
class PCA(FittedFeature):
    """Projection on the training rows' principal axes (module docstring).

    Config:
        components: number of components kept (at most the input width, and at most the
            number of training rows at fit time).
        standardise: z-score each column with the training rows' statistics first (columns of
            very different scales otherwise decide the axes).
        whiten: divide each component by its standard deviation on the training rows.

    Input: one utterance-level feature ``(n, d)``. Output: ``(n, components)`` float32, layout
    one axis ``component``. Fitted state: ``mean_``, ``scale_`` (``(d,)``), ``axes_``
    (``(components, d)``), ``spread_`` (``(components,)``, ones without ``whiten``),
    ``explained_`` (fraction of variance per component).
    """

    name = "pca"

    @dataclass(frozen=True)
    class Config:
        components: int = 32
        standardise: bool = True
        whiten: bool = False

    def check_config(self) -> None:
        check_int(self.name, "components", self.config.components, 1)
        for option in ("standardise", "whiten"):
            value = getattr(self.config, option)
            check_option(isinstance(value, bool), self.name, f"{option} must be true or false, got {value!r}")

    def output(self, inputs: Mapping[str, FeatureSpec]) -> FeatureSpec:
        self.check_inputs(inputs, level="utterance")
        (spec,) = inputs.values()
        if self.config.components > spec.dim:
            raise ConfigError(f"{self.name}: {self.config.components} components of a {spec.dim}-column feature")
        return FeatureSpec("utterance", Layout.of(("component", self.config.components)))

    def fit(
        self, X: Inputs, y: np.ndarray, *, labels: Sequence[str], groups: np.ndarray, seed: int, valid=None
    ) -> PCA:
        """Learn the standardisation and the axes from the training rows ``X`` (``y`` and ``valid`` unused).

        Raises:
            FeatureError: fewer training rows than components, or non-finite values.
        """
        from sklearn.decomposition import PCA as SklearnPCA

        (data,) = X.values()
        data = np.asarray(data, dtype=np.float64)
        if not np.all(np.isfinite(data)):
            raise FeatureError(f"{self.name}: the training rows hold NaN or infinite values")
        if len(data) < self.config.components:
            raise FeatureError(f"{self.name}: {self.config.components} components need as many training rows, got {len(data)}")
        self.mean_ = data.mean(axis=0)
        std = data.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0) if self.config.standardise else np.ones_like(std)
        pca = SklearnPCA(n_components=self.config.components, svd_solver="full", random_state=seed)
        pca.fit((data - self.mean_) / self.scale_)  # centred already; sklearn's own mean is ~0
        self.axes_ = pca.components_
        self.offset_ = pca.mean_
        self.spread_ = np.sqrt(pca.explained_variance_) if self.config.whiten else np.ones(self.config.components)
        self.explained_ = pca.explained_variance_ratio_
        return self

    def transform(self, X: Inputs) -> np.ndarray:
        """``(n, components)`` float32 projections of every row."""
        (data,) = X.values()
        z = (np.asarray(data, dtype=np.float64) - self.mean_) / self.scale_ - self.offset_
        return ((z @ self.axes_.T) / self.spread_).astype(np.float32)

    def fit_info(self) -> dict[str, Any]:
        return {"explained_variance": float(self.explained_.sum())}

    def save(self, directory: Path) -> None:
        """``pca.safetensors``: the arrays of the fitted state (class docstring)."""
        write_arrays(directory / "pca.safetensors", {"mean": self.mean_, "scale": self.scale_, "axes": self.axes_,
                     "offset": self.offset_, "spread": self.spread_, "explained": self.explained_})  # fmt: skip

    @classmethod
    def load(cls, directory: Path, config: Mapping[str, Any], inputs: Mapping[str, FeatureSpec]) -> PCA:
        """Rebuild the PCA saved by :meth:`save`, bound to ``inputs``.

        Raises:
            BundleError: a missing or malformed file, arrays of other shapes than ``components``
                and the input's width ask for, or scales and spreads that are not > 0.
        """
        feature = cls(dict(config))
        feature.bind(inputs)
        path = directory / "pca.safetensors"
        saved = read_arrays(path, {"mean": ("f", 1), "scale": ("f", 1), "axes": ("f", 2), "offset": ("f", 1),
                                   "spread": ("f", 1), "explained": ("f", 1)})  # fmt: skip
        k, d = feature.config.components, next(iter(inputs.values())).dim
        shapes = {"mean": (d,), "scale": (d,), "axes": (k, d), "offset": (d,), "spread": (k,), "explained": (k,)}
        for name, shape in shapes.items():
            if saved[name].shape != shape:
                raise BundleError(f"{path}: array {name!r} has shape {saved[name].shape}, {k} components of a {d}-column input need {shape}")
        if np.any(saved["scale"] <= 0) or np.any(saved["spread"] <= 0):
            raise BundleError(f"{path}: arrays 'scale' and 'spread' must be > 0")
        feature.mean_, feature.scale_, feature.axes_ = saved["mean"], saved["scale"], saved["axes"]
        feature.offset_, feature.spread_, feature.explained_ = saved["offset"], saved["spread"], saved["explained"]
        return feature
