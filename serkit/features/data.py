"""The in-memory form of a feature over utterances, as derived features and models receive it.

``FeatureData`` is an utterance-level ``(n, dims)`` matrix or a frame-level list of ``n`` arrays
``(frames_i, dims)``; ``Inputs`` maps feature keys (a recipe's names) to such data, all with the
same ``n`` rows in the same utterance order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Union

import numpy as np


FeatureData = Union[np.ndarray, list[np.ndarray]]
Inputs = Mapping[str, FeatureData]


def take_rows(data: FeatureData, index: np.ndarray) -> FeatureData:
    """Rows ``index`` (int positions) of an utterance-level matrix or a frame-level list."""
    if isinstance(data, np.ndarray):
        return data[index]
    return [data[i] for i in index]


def n_rows(X: Inputs) -> int:
    """Number of utterances in ``X`` (every feature has the same number)."""
    return len(next(iter(X.values())))
