"""serkit's emotion vocabulary and the table mapping every corpus's own codes into it.

Every adapter labels its rows with names from :data:`EMOTIONS`, read from :data:`LABEL_TABLE`
through :func:`codes`, so tables from different corpora pool without a second mapping anywhere.
A code whose meaning has no name in the vocabulary (IEMOCAP's frustration, "other" and
no-agreement) maps to ``None``: an adapter drops it or refuses it, never renames it.

==========  ==========================================  ===========================================
corpus      code: meaning in the corpus                 serkit label
==========  ==========================================  ===========================================
emodb       W Wut, L Langeweile, E Ekel, A Angst,        anger, boredom, disgust, fear, happiness,
            F Freude, T Trauer, N neutral                sadness, neutral
emovo       rab rabbia, dis disgusto, pau paura,         anger, disgust, fear, happiness, neutral,
            gio gioia (joy), neu, tri tristezza,         sadness, surprise
            sor sorpresa
ravdess     01 neutral, 02 calm, 03 happy, 04 sad,       neutral, calm, happiness, sadness, anger,
            05 angry, 06 fearful, 07 disgust,            fear, disgust, surprise
            08 surprised
tess        angry, disgust, fear, happy, neutral,        anger, disgust, fear, happiness, neutral,
            ps (pleasant surprise), sad                  surprise, sadness
cremad      ANG, DIS, FEA, HAP, NEU, SAD                 anger, disgust, fear, happiness, neutral,
                                                         sadness
savee       a, d, f, h, n, sa, su                        anger, disgust, fear, happiness, neutral,
                                                         sadness, surprise
iemocap     neu, ang, sad, hap, exc (excited), sur,      neutral, anger, sadness, happiness,
            fea, dis; fru, oth, xxx                      happiness, surprise, fear, disgust; none
==========  ==========================================  ===========================================

Which classes serkit's default model uses across EmoDB, EMOVO, RAVDESS and TESS, and why calm,
boredom and surprise are left out, is argued from the counts per corpus in
``docs/corpora.md``.

A recipe restricts or merges labels with :func:`select_labels` (the recipe key ``labels``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import pandas as pd

from serkit.errors import ConfigError

#: serkit's emotion vocabulary, in the order reports use.
EMOTIONS = ("anger", "boredom", "calm", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")


class Code(NamedTuple):
    """One row of :data:`LABEL_TABLE`: a corpus's code, what the corpus documentation calls it,
    and its serkit label (``None``: no name in the vocabulary)."""

    code: str
    meaning: str
    label: str | None


def _rows(*rows: tuple[str, str, str | None]) -> tuple[Code, ...]:
    return tuple(Code(*r) for r in rows)


#: Corpus adapter name -> its codes, as the corpus documentation spells them.
LABEL_TABLE: dict[str, tuple[Code, ...]] = {
    "emodb": _rows(
        ("W", "Wut (anger)", "anger"), ("L", "Langeweile (boredom)", "boredom"), ("E", "Ekel (disgust)", "disgust"),
        ("A", "Angst (fear)", "fear"), ("F", "Freude (joy)", "happiness"), ("T", "Trauer (sadness)", "sadness"),
        ("N", "neutral", "neutral"),
    ),
    "emovo": _rows(
        ("rab", "rabbia (anger)", "anger"), ("dis", "disgusto (disgust)", "disgust"), ("pau", "paura (fear)", "fear"),
        ("gio", "gioia (joy)", "happiness"), ("neu", "neutrale", "neutral"), ("tri", "tristezza (sadness)", "sadness"),
        ("sor", "sorpresa (surprise)", "surprise"),
    ),
    "ravdess": _rows(
        ("01", "neutral", "neutral"), ("02", "calm", "calm"), ("03", "happy", "happiness"), ("04", "sad", "sadness"),
        ("05", "angry", "anger"), ("06", "fearful", "fear"), ("07", "disgust", "disgust"),
        ("08", "surprised", "surprise"),
    ),
    "tess": _rows(
        ("angry", "angry", "anger"), ("disgust", "disgust", "disgust"), ("fear", "fear", "fear"),
        ("happy", "happy", "happiness"), ("neutral", "neutral", "neutral"),
        ("ps", "pleasant surprise", "surprise"), ("sad", "sad", "sadness"),
    ),
    "cremad": _rows(
        ("ANG", "anger", "anger"), ("DIS", "disgust", "disgust"), ("FEA", "fear", "fear"),
        ("HAP", "happy", "happiness"), ("NEU", "neutral", "neutral"), ("SAD", "sad", "sadness"),
    ),
    "savee": _rows(
        ("a", "anger", "anger"), ("d", "disgust", "disgust"), ("f", "fear", "fear"), ("h", "happiness", "happiness"),
        ("n", "neutral", "neutral"), ("sa", "sadness", "sadness"), ("su", "surprise", "surprise"),
    ),
    "iemocap": _rows(
        ("neu", "neutral", "neutral"), ("ang", "anger", "anger"), ("sad", "sadness", "sadness"),
        ("hap", "happiness", "happiness"), ("exc", "excited", "happiness"), ("sur", "surprise", "surprise"),
        ("fea", "fear", "fear"), ("dis", "disgust", "disgust"), ("fru", "frustration", None),
        ("oth", "other", None), ("xxx", "no majority among the annotators", None),
    ),
}  # fmt: skip


def codes(corpus: str) -> dict[str, str]:
    """``{code: serkit label}`` of ``corpus``'s codes that have a name in :data:`EMOTIONS`.

    Raises:
        ConfigError: ``corpus`` has no entry in :data:`LABEL_TABLE`.
    """
    if corpus not in LABEL_TABLE:
        raise ConfigError(f"label table: no codes for corpus {corpus!r}; known: {', '.join(LABEL_TABLE)}")
    return {row.code: row.label for row in LABEL_TABLE[corpus] if row.label is not None}


def in_vocabulary_order(labels: Sequence[str] | set[str]) -> tuple[str, ...]:
    """The distinct ``labels`` in the order of :data:`EMOTIONS`.

    Raises:
        ConfigError: a label outside the vocabulary.
    """
    unknown = sorted(set(labels) - set(EMOTIONS))
    if unknown:
        raise ConfigError(f"labels {unknown} are not in serkit's vocabulary {EMOTIONS}")
    return tuple(lab for lab in EMOTIONS if lab in set(labels))


def label_mapping(labels: Any, where: str = "labels") -> dict[str, list[str]]:
    """The recipe key ``labels`` as ``{class: [labels it takes]}``, checked.

    Args:
        labels: a list of label names (each keeps itself), or a mapping ``{class: label or
            [labels]}`` that merges labels into one class (``{neutral: [neutral, calm]}``).
        where: what error messages call the value.

    Raises:
        ConfigError: not a non-empty list or mapping of non-empty strings, a class or a label
            given twice.
    """
    mapping: dict[Any, Any] = {}
    if isinstance(labels, (list, tuple)) and len(set(map(str, labels))) == len(labels):
        mapping = {name: [name] for name in labels}
    elif isinstance(labels, Mapping):
        mapping = {k: ([v] if isinstance(v, str) else v) for k, v in labels.items()}
    if not mapping or not all(
        isinstance(k, str) and k and isinstance(v, (list, tuple)) and v and all(isinstance(s, str) and s for s in v)
        for k, v in mapping.items()
    ):
        raise ConfigError(
            f"{where} must be a list of distinct label names or a mapping {{class: label or [labels]}}, got {labels!r}"
        )
    sources = [s for v in mapping.values() for s in v]
    twice = sorted({s for s in sources if sources.count(s) > 1})
    if twice:
        raise ConfigError(f"{where}: labels {twice} are given to more than one class")
    return {k: list(v) for k, v in mapping.items()}


def select_labels(table: pd.DataFrame, labels: Any) -> tuple[pd.DataFrame, list[str]]:
    """Keep the rows whose label the recipe key ``labels`` names, relabelled to its classes.

    Args:
        table: a corpus table (column ``label``), one corpus or pooled.
        labels: as in :func:`label_mapping`.

    Returns:
        The kept rows (index reset) and the class order (as ``labels`` lists them).

    Raises:
        ConfigError: a malformed ``labels``; a label it names that no row carries; a class
            outside :data:`EMOTIONS` while every row's label is in it (a class name of your
            own belongs with your own labels, from a manifest).
    """
    mapping = label_mapping(labels)
    present = set(table["label"].astype(str))
    absent = sorted({s for v in mapping.values() for s in v} - present)
    if absent:
        raise ConfigError(f"labels: {absent} occur in no utterance of the corpus; its labels are {sorted(present)}")
    if present <= set(EMOTIONS):
        in_vocabulary_order(mapping)
    to_class = {s: cls for cls, sources in mapping.items() for s in sources}
    kept = table[table["label"].isin(to_class)].copy()
    kept["label"] = kept["label"].map(to_class)
    return kept.reset_index(drop=True), list(mapping)
