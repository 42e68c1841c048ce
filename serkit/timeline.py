"""From overlapping windows to a timeline: step 5 of :mod:`serkit.inference`, on plain rows.

A window row is a dict with ``channel``, ``segment`` (speech segment index), ``start``, ``end``
(seconds), ``label`` and ``p_<label>`` for every class; a timeline row has the same keys. Plain
dicts and small arrays rather than pandas: a service request has a window or two, for which
building and reading DataFrames cost more than the arithmetic (about a third of a request's
Python time under load, measured); :func:`timeline_segments` keeps the DataFrame interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

#: The label of a window, piece or recording whose highest probability is below ``min_confidence``.
UNCERTAIN = "uncertain"
#: Columns of a timeline's window and segment tables before the ``p_<label>`` columns.
WINDOW_COLUMNS = ("channel", "segment", "start", "end", "label")


def decide(p: np.ndarray, labels: Sequence[str], min_confidence: float = 0.0) -> str:
    """The label of probabilities ``p`` ``(K,)``: the most probable class, or :data:`UNCERTAIN`
    when its probability is below ``min_confidence`` (abstention, as in selective
    classification: Geifman & El-Yaniv, NeurIPS 2017, the softmax-response rule)."""
    k = int(np.argmax(p))
    return str(labels[k]) if p[k] >= min_confidence else UNCERTAIN


def timeline_segments(
    windows: pd.DataFrame, labels: Sequence[str], *, merge: bool = True, min_confidence: float = 0.0
) -> pd.DataFrame:
    """Turn overlapping windows into a non-overlapping, optionally merged timeline.

    Args:
        windows: one row per window, columns ``channel``, ``segment`` (speech segment index),
            ``start``, ``end`` (seconds) and ``p_<label>`` for every label, windows of a speech
            segment in time order.
        labels: the class order.
        merge: merge adjacent pieces of the same speech segment that share their label.
        min_confidence: pieces less confident than this are labelled :data:`UNCERTAIN` (and
            merge with each other).

    Returns:
        Columns ``channel``, ``segment``, ``start``, ``end``, ``label``, ``p_<label>``...; pieces
        of one channel do not overlap. A merged row's probabilities are the duration-weighted
        mean of its pieces'.
    """
    import pandas as pd

    rows = segment_rows(windows.to_dict("records"), labels, merge=merge, min_confidence=min_confidence)
    return pd.DataFrame(rows, columns=[*WINDOW_COLUMNS, *(f"p_{lab}" for lab in labels)])


def segment_rows(
    windows: Sequence[dict[str, Any]], labels: Sequence[str], *, merge: bool = True, min_confidence: float = 0.0
) -> list[dict[str, Any]]:
    """:func:`timeline_segments` on rows (dicts with the same keys as its columns)."""
    prob_cols = [f"p_{lab}" for lab in labels]
    members: dict[tuple[Any, int], list[dict[str, Any]]] = {}
    for row in windows:
        members.setdefault((row["channel"], int(row["segment"])), []).append(row)
    rows: list[dict[str, Any]] = []
    for (channel, segment), group in members.items():
        starts = np.array([r["start"] for r in group], dtype=float)
        ends = np.array([r["end"] for r in group], dtype=float)
        probs = np.array([[r[c] for c in prob_cols] for r in group], dtype=float)
        # Piece i runs from the middle of its overlap with window i-1 to the middle of its overlap with i+1.
        cuts = [starts[0], *((starts[1:] + ends[:-1]) / 2), ends[-1]]
        pieces: list[dict[str, Any]] = []
        for i in range(len(group)):
            k = decide(probs[i], labels, min_confidence)
            piece = {"start": float(cuts[i]), "end": float(cuts[i + 1]), "k": k, "p": probs[i]}
            last = pieces[-1] if pieces else None
            if merge and last is not None and last["k"] == k:
                a, b = last["end"] - last["start"], piece["end"] - piece["start"]
                last["p"] = (last["p"] * a + piece["p"] * b) / (a + b)
                last["end"] = piece["end"]
            else:
                pieces.append(piece)
        for piece in pieces:
            row = {"channel": channel, "segment": segment, "start": piece["start"], "end": piece["end"],
                   "label": decide(piece["p"], labels, min_confidence)}  # fmt: skip
            row.update(zip(prob_cols, piece["p"].tolist()))
            rows.append(row)
    return rows
