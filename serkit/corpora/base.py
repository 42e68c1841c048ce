"""The corpus table and the adapter registry.

An adapter turns a corpus root folder into a :class:`pandas.DataFrame` with one row per
utterance and exactly the columns of :data:`COLUMNS`:

==============  ======  ==========================================================
utterance_id    str     unique within the corpus (index-like, also a column)
path            str     absolute path of the audio file
speaker         str     speaker id, corpus-prefixed where ids are bare numbers
session         str     recording session (IEMOCAP ``Ses01``…); the speaker where a
                        corpus has no sessions
gender          str     ``"f"``, ``"m"`` or ``""`` when unknown
label           str     emotion in serkit's vocabulary (:data:`EMOTIONS`), mapped from the
                        corpus's codes by :mod:`serkit.corpora.vocabulary`
duration        float   seconds, read from the file header (NaN if unreadable)
==============  ======  ==========================================================

Adapters refuse folders that do not match the documented layout with a
:class:`~serkit.errors.CorpusError` that says what was expected.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import soundfile as sf

from serkit.corpora.vocabulary import EMOTIONS
from serkit.errors import CorpusError
from serkit.registry import Registry

COLUMNS = ("utterance_id", "path", "speaker", "session", "gender", "label", "duration")


log = logging.getLogger(__name__)


class Corpus(ABC):
    """A corpus adapter. Subclasses set ``name``, ``labels`` and implement :meth:`scan`."""

    name: ClassVar[str]
    #: The label set in a fixed order (the order reports use): :data:`EMOTIONS` order.
    labels: ClassVar[tuple[str, ...]]
    #: One line on where the corpus comes from and its licence, for ``serkit corpus info``.
    citation: ClassVar[str] = ""
    #: True for adapters whose label set comes from the data (user manifests): :meth:`load` then
    #: skips the check that every label is in ``labels``.
    open_labels: ClassVar[bool] = False

    @abstractmethod
    def scan(self, root: Path, **options: Any) -> pd.DataFrame:
        """Rows for every utterance under ``root``; :meth:`load` validates and sorts them."""

    def load(self, root: str | Path, **options: Any) -> pd.DataFrame:
        """The corpus table (see module docstring), sorted by ``utterance_id``.

        ``table.attrs["corpus"]`` holds the adapter name.

        Raises:
            CorpusError: ``root`` is missing or does not match the documented layout.
            UnknownLabelError: a file name carries an unknown emotion code.
            ConfigError: unknown option.
        """
        root = Path(root).expanduser()
        if not root.is_dir():
            raise CorpusError(f"{self.name}: corpus root {root} is not a folder")
        table = self.scan(root.resolve(), **options)
        table = check_table(table, self.name)
        labels = set(table["label"])
        if not self.open_labels and not labels <= set(self.labels):
            raise CorpusError(f"{self.name}: labels {sorted(labels - set(self.labels))} not in {self.labels}")
        table = table.sort_values("utterance_id", kind="stable").reset_index(drop=True)
        table.attrs["corpus"] = self.name
        return table


def check_table(table: pd.DataFrame, who: str) -> pd.DataFrame:
    """Check a corpus table's columns, emptiness and id uniqueness; return it with column order fixed.

    Raises:
        CorpusError: missing columns, no rows, or duplicated ``utterance_id``.
    """
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise CorpusError(f"{who}: table lacks columns {missing}")
    if table.empty:
        raise CorpusError(f"{who}: no utterances found")
    dup = table["utterance_id"][table["utterance_id"].duplicated()]
    if len(dup):
        raise CorpusError(f"{who}: duplicated utterance ids, e.g. {list(dup[:3])}")
    table = table.loc[:, list(COLUMNS)].copy()
    for col in ("utterance_id", "path", "speaker", "session", "gender", "label"):
        table[col] = table[col].astype(str)
    table["duration"] = table["duration"].astype(float)
    return table


def audio_duration(path: Path) -> float:
    """Duration in seconds from the file header (no decoding); NaN when the header is unreadable.

    An unreadable file does not make the whole corpus unusable: it stays in the table with a NaN
    duration, and feature extraction reports it by name and goes on without it.
    """
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError):
        log.warning("%s: cannot read audio header; it will be reported when features are extracted", path)
        return float("nan")
    return info.frames / info.samplerate if info.samplerate else float("nan")


CORPORA: Registry[type[Corpus]] = Registry("corpus", "serkit.corpora")
#: Class decorator adding a corpus adapter to :data:`CORPORA` under its ``name``.
register = CORPORA.register


def get_corpus(name: str) -> Corpus:
    """The registered adapter ``name``.

    Raises:
        ConfigError: unknown corpus name.
    """
    return CORPORA.get(name)()


def list_corpora() -> list[str]:
    """Sorted names of all registered corpus adapters (built-in and from installed packages)."""
    return CORPORA.names()


def load_corpus(name: str, root: str | Path, **options: Any) -> pd.DataFrame:
    """Shortcut for ``get_corpus(name).load(root, **options)``."""
    return get_corpus(name).load(root, **options)
