"""Counts and durations of a corpus table, as plain JSON-ready data."""

from __future__ import annotations

from typing import Any

import pandas as pd

from serkit.corpora.base import check_table


def corpus_summary(table: pd.DataFrame, corpus: str | None = None) -> dict[str, Any]:
    """Summarise a corpus table (the output of :meth:`~serkit.corpora.base.Corpus.load`).

    Args:
        table: corpus table with the columns of :data:`~serkit.corpora.base.COLUMNS`.
        corpus: name to report; default ``table.attrs["corpus"]`` (set by ``Corpus.load``),
            else ``""``.

    Returns:
        ``{"corpus": str, "utterances": int, "speakers": int, "duration_s": float (seconds),
        "per_speaker": {speaker: int}, "per_label": {label: int},
        "per_speaker_label": {speaker: {label: int}}}`` with plain Python ints, floats and
        strings (``json.dumps`` accepts it). Speakers and labels are sorted; labels absent for a
        speaker are left out of its inner dict.

    Raises:
        CorpusError: the table lacks a column, is empty, or repeats an utterance id.
    """
    table = check_table(table, corpus or table.attrs.get("corpus", "corpus table"))
    name = corpus if corpus is not None else str(table.attrs.get("corpus", ""))
    per_pair = table.groupby(["speaker", "label"]).size()
    per_speaker_label: dict[str, dict[str, int]] = {}
    for (speaker, label), n in sorted(per_pair.items()):
        per_speaker_label.setdefault(str(speaker), {})[str(label)] = int(n)
    return {
        "corpus": name,
        "utterances": int(len(table)),
        "speakers": int(table["speaker"].nunique()),
        "duration_s": float(table["duration"].sum()),
        "per_speaker": {str(k): int(v) for k, v in sorted(table["speaker"].value_counts().items())},
        "per_label": {str(k): int(v) for k, v in sorted(table["label"].value_counts().items())},
        "per_speaker_label": per_speaker_label,
    }
