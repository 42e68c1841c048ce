"""The in-memory form of a feature over utterances, as derived features and models receive it.

``FeatureData`` is an utterance-level ``(n, dims)`` matrix or a frame-level list of ``n`` arrays
``(frames_i, dims)``; ``Inputs`` maps feature keys (a recipe's names) to such data, all with the
same ``n`` rows in the same utterance order. A :class:`FeatureSpec` describes a feature without
its values (level, column layout, frame shift).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from serkit.errors import FeatureError
from serkit.features.layout import Layout


FeatureData = Union[np.ndarray, list[np.ndarray]]
Inputs = Mapping[str, FeatureData]


def take_rows(data: FeatureData, index: np.ndarray) -> FeatureData:
    """Rows ``index`` (int positions) of an utterance-level matrix or a frame-level list."""
    if isinstance(data, np.ndarray):
        return data[index]
    return [data[i] for i in index]


def concat_rows(parts: list[FeatureData]) -> FeatureData:
    """Rows of several matrices (or frame-level lists) of one feature, one after the other."""
    if all(isinstance(part, np.ndarray) for part in parts):
        return np.concatenate(parts)
    return [row for part in parts for row in part]


def n_rows(X: Inputs) -> int:
    """Number of utterances in ``X`` (every feature has the same number)."""
    return len(next(iter(X.values())))


@dataclass(frozen=True)
class FeatureSpec:
    """What a feature is, without its values: what a model or a derived feature can check.

    Attributes:
        level: ``"frame"`` (per utterance ``(frames, dim)``) or ``"utterance"`` (``(dim,)``).
        layout: the named axes of the ``dim`` columns.
        frame_shift: seconds between frames (frame level; ``None`` when unknown or utterance level).
        source: ``describe()`` of the extractor or derived feature that made it (``name``,
            ``config``, …), so a reader can take a fact from there instead of restating it;
            ``None`` when unknown. Not part of equality.
    """

    level: str
    layout: Layout
    frame_shift: float | None = None
    source: Mapping[str, Any] | None = field(default=None, compare=False)

    @property
    def dim(self) -> int:
        """Number of columns."""
        return self.layout.dim

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for a bundle's JSON); :meth:`from_dict` reads it back."""
        return {"level": self.level, "layout": self.layout.to_list(), "frame_shift": self.frame_shift}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        """Inverse of :meth:`to_dict`.

        Raises:
            FeatureError: a malformed entry.
        """
        try:
            return cls(str(data["level"]), Layout.from_list(data["layout"]), data.get("frame_shift"))
        except (KeyError, TypeError) as exc:
            raise FeatureError(f"not a feature description: {data!r}") from exc
