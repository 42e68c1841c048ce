"""Generic CSV manifest for the user's own recordings.

The root is a folder holding ``manifest.csv``, or the CSV is named with the option ``csv``
(a relative ``csv`` path is taken relative to the root). Columns (header row, any order, extra
columns ignored):

==============  =========  =================================================================
path            required   audio file, relative to the CSV's folder or absolute
label           required   any non-empty string: the user's own label set
speaker         required   non-empty speaker id (evaluation folds group on it)
utterance_id    optional   default: the file name without suffix
session         optional   default: the speaker
gender          optional   ``f``/``female``, ``m``/``male`` (any case) or empty; default ``""``
==============  =========  =================================================================

Labels here are not serkit's emotion vocabulary, so the adapter sets
:attr:`~serkit.corpora.base.Corpus.open_labels` and :meth:`~serkit.corpora.base.Corpus.load`
accepts any label; its ``labels`` class attribute is empty. To pin the label set, pass
``labels=[...]``: any other label is then an :class:`~serkit.errors.UnknownLabelError`.
Cells are read as text with surrounding spaces stripped; empty cells count as missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from serkit.corpora._files import parse_options, row, show, table
from serkit.corpora.base import Corpus, register
from serkit.errors import ConfigError, CorpusError, UnknownLabelError

DEFAULT_CSV = "manifest.csv"
REQUIRED = ("path", "label", "speaker")
_GENDER = {"": "", "f": "f", "female": "f", "m": "m", "male": "m"}


@register
class Manifest(Corpus):
    """Adapter for a user CSV manifest (module docstring); any label strings.

    Options:
        csv (str or Path, default ``<root>/manifest.csv``): the manifest file.
        labels (list or tuple of str, default None): the allowed labels; None accepts any.

    Raises (from :meth:`~serkit.corpora.base.Corpus.load`):
        CorpusError: no manifest file; a required column missing; empty required cells; an
            unreadable or empty CSV; an unknown gender value; audio files that do not exist
            (all named, up to five) or whose header cannot be read; duplicated utterance ids.
        UnknownLabelError: a label outside ``labels`` when that option is given.
        ConfigError: unknown option or an option of the wrong type.
    """

    name = "manifest"
    labels = ()
    open_labels = True
    citation = "User-supplied recordings listed in a CSV manifest."

    def scan(self, root: Path, **options: Any) -> pd.DataFrame:
        opts = parse_options("manifest", options, {"csv": None, "labels": None})
        allowed = _allowed_labels(opts["labels"])
        csv = _csv_path(root, opts["csv"])
        try:
            frame = pd.read_csv(csv, dtype=str, keep_default_na=False, skipinitialspace=True)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise CorpusError(f"manifest: {csv}: cannot read CSV ({exc})") from exc
        frame.columns = [str(c).strip() for c in frame.columns]
        missing = [c for c in REQUIRED if c not in frame.columns]
        if missing:
            raise CorpusError(f"manifest: {csv}: required columns {missing} missing; found {list(frame.columns)}")
        if frame.empty:
            raise CorpusError(f"manifest: {csv}: no rows")
        frame = frame.apply(lambda col: col.str.strip())
        for col in REQUIRED:
            empty = frame.index[frame[col] == ""]
            if len(empty):
                raise CorpusError(f"manifest: {csv}: empty {col!r} on data rows {[int(i) + 1 for i in empty[:5]]}")
        paths = [p if p.is_absolute() else csv.parent / p for p in map(Path, frame["path"])]
        absent = [p for p in paths if not p.is_file()]
        if absent:
            raise CorpusError(f"manifest: {csv}: {len(absent)} audio files do not exist: {show(absent, csv.parent)}")
        rows = []
        for i, path in enumerate(paths):
            rec = frame.iloc[i]
            label = rec["label"]
            if allowed is not None and label not in allowed:
                raise UnknownLabelError(f"manifest: {csv}: data row {i + 1} ({path}): label {label!r} not in {sorted(allowed)}")
            gender = rec.get("gender", "").lower()
            if gender not in _GENDER:
                raise CorpusError(f"manifest: {csv}: data row {i + 1}: gender {rec['gender']!r} is not f/female, m/male or empty")
            speaker = rec["speaker"]
            utterance_id = rec.get("utterance_id", "") or path.stem
            session = rec.get("session", "") or speaker
            rows.append(row(utterance_id, path, speaker, session, _GENDER[gender], label))
        return table(rows)


def _csv_path(root: Path, csv: Any) -> Path:
    if csv is None:
        csv = root / DEFAULT_CSV
    elif isinstance(csv, (str, Path)):
        csv = Path(csv).expanduser()
        csv = csv if csv.is_absolute() else root / csv
    else:
        raise ConfigError(f"manifest: option csv must be a path, got {type(csv).__name__}")
    if not csv.is_file():
        raise CorpusError(f"manifest: expected a CSV manifest at {csv} (columns path,label,speaker[,utterance_id,session,gender])")
    return csv.resolve()


def _allowed_labels(labels: Any) -> frozenset[str] | None:
    if labels is None:
        return None
    if not isinstance(labels, (list, tuple)) or not labels or not all(isinstance(x, str) and x for x in labels):
        raise ConfigError(f"manifest: option labels must be a non-empty list of strings, got {labels!r}")
    return frozenset(labels)
