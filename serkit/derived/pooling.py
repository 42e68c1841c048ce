"""Fixed derived features on frame-level input: statistics pooling and block selection.

``pooled_stats`` turns frames into one vector per utterance: statistics of every column over the
utterance's frames (statistics pooling, as in x-vector embeddings, Snyder et al., ICASSP 2018;
mean pooling of frozen encoder layers is EmoBox's protocol, Ma et al., Interspeech 2024). The
output keeps the input's layout behind a new outermost ``stat`` axis, so pooled per-layer encoder
statistics are laid out ``stat × layer × unit`` and a model can still choose a layer.

``select`` keeps some entries along one axis of the layout: one encoder layer of ``layer: all``
frames, the static block of log-Mels with deltas.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from serkit.config import check_option, is_integer
from serkit.derived.base import FixedFeature, register
from serkit.errors import FeatureError
from serkit.features.data import FeatureSpec
from serkit.features.layout import STAT, Layout

#: The statistics ``pooled_stats`` knows, each a function of ``(frames, dim)`` float64 -> ``(dim,)``.
STATISTICS = {
    "mean": lambda x: x.mean(axis=0),
    "std": lambda x: x.std(axis=0),  # population standard deviation (ddof 0)
    "min": lambda x: x.min(axis=0),
    "max": lambda x: x.max(axis=0),
}


def _only(inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    (x,) = inputs.values()
    return x


@register
class PooledStats(FixedFeature):
    """Statistics of each column over an utterance's frames (module docstring).

    Config:
        stats: names from :data:`STATISTICS`, in output order (default mean and standard
            deviation).

    Input: one frame-level feature ``(frames, d)`` laid out as ``L``. Output: utterance level,
    float32 ``(len(stats) * d,)`` laid out ``stat × L`` (column ``s * d + j``: statistic ``s``
    of input column ``j``), computed in float64 over the real frames only (an extractor's
    frames never include padding).
    """

    name = "pooled_stats"

    @dataclass(frozen=True)
    class Config:
        stats: tuple[str, ...] = ("mean", "std")

    def check_config(self) -> None:
        stats = self.config.stats
        check_option(
            isinstance(stats, tuple) and len(stats) > 0 and len(set(stats)) == len(stats) and set(stats) <= set(STATISTICS),
            self.name,
            f"stats must be distinct names from {sorted(STATISTICS)}, got {stats!r}",
        )

    def output(self, inputs: Mapping[str, FeatureSpec]) -> FeatureSpec:
        self.check_inputs(inputs, level="frame")
        (spec,) = inputs.values()
        return FeatureSpec("utterance", Layout(((STAT, len(self.config.stats)), *spec.layout.axes)))

    def compute(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """``(len(stats) * d,)`` float32 statistics of ``(frames, d)`` frames.

        Raises:
            FeatureError: no frames.
        """
        frames = np.asarray(_only(inputs), dtype=np.float64)
        if frames.ndim != 2 or frames.shape[0] == 0:
            raise FeatureError(f"{self.name}: needs at least one (frames, dim) frame, got shape {frames.shape}")
        return np.concatenate([STATISTICS[s](frames) for s in self.config.stats]).astype(np.float32)


@register
class Select(FixedFeature):
    """Keep some entries along one axis of the input's layout (module docstring).

    Config:
        axis: the axis name (``"layer"``, ``"delta"``, …).
        index: one index or a list of them, in ascending order; negative indices count from
            the end (``-1``: the last layer, the encoder output).

    Input: any one feature; output: the same level, the kept columns in their original order,
    laid out as the input with ``axis`` shrunk to the entries kept.
    """

    name = "select"

    @dataclass(frozen=True)
    class Config:
        axis: str = "layer"
        index: int | tuple[int, ...] = -1

    def check_config(self) -> None:
        index = self.config.index
        values = index if isinstance(index, tuple) else (index,)
        check_option(
            len(values) > 0 and all(is_integer(i) for i in values),
            self.name,
            f"index must be an integer or a list of them, got {index!r}",
        )

    def _indices(self, layout: Layout) -> list[int]:
        size = layout.size(self.config.axis)
        index = self.config.index
        wanted = [i % size if -size <= i < size else i for i in (index if isinstance(index, tuple) else (index,))]
        if any(not 0 <= i < size for i in wanted) or wanted != sorted(set(wanted)):
            raise FeatureError(f"{self.name}: {self.config.axis} index {index!r} is not ascending within [0, {size})")
        return wanted

    def output(self, inputs: Mapping[str, FeatureSpec]) -> FeatureSpec:
        self.check_inputs(inputs)
        (spec,) = inputs.values()
        layout = spec.layout.take(self.config.axis, self._indices(spec.layout))
        return FeatureSpec(spec.level, layout, spec.frame_shift)

    @cached_property
    def _columns(self) -> np.ndarray:
        (spec,) = self.input_specs.values()
        return spec.layout.columns(self.config.axis, self._indices(spec.layout))

    def compute(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The kept columns of one utterance's input (the feature must be bound first)."""
        return np.ascontiguousarray(_only(inputs)[..., self._columns])
