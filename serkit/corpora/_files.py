"""Small helpers shared by the corpus adapters: options, folder listings, counts, rows.

Private to :mod:`serkit.corpora`; the adapters hold all corpus-specific knowledge.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from serkit.corpora.base import COLUMNS, audio_duration
from serkit.errors import ConfigError, CorpusError

#: File suffixes an adapter reads (lower case). FLAC is accepted wherever a corpus ships WAV so a
#: losslessly converted copy (such as the EmoDB copy in ``data/emodb``) loads the same way.
AUDIO_SUFFIXES = (".wav", ".flac")


def parse_options(who: str, options: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``defaults`` updated with ``options``, each value of the same type as its default.

    Raises:
        ConfigError: an option name not in ``defaults``, or a value of the wrong type.
    """
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ConfigError(f"{who}: unknown option(s) {unknown}; accepted: {sorted(defaults)}")
    out = dict(defaults)
    for key, value in options.items():
        kind = type(defaults[key])
        if defaults[key] is not None and not (type(value) is kind or (kind is float and type(value) is int)):
            raise ConfigError(f"{who}: option {key}={value!r} must be {kind.__name__}")
        out[key] = value
    return out


def is_audio(path: Path) -> bool:
    """True for a visible regular file whose suffix is in :data:`AUDIO_SUFFIXES`."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in AUDIO_SUFFIXES


def audio_files(folder: Path) -> list[Path]:
    """Audio files directly inside ``folder`` (not recursive), sorted by name; [] if no folder."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if is_audio(p))


def subfolders(folder: Path) -> list[Path]:
    """Visible sub-folders of ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def show(paths: Iterable[Path], root: Path, limit: int = 5) -> str:
    """Up to ``limit`` paths relative to ``root`` for an error message, with the total count."""
    paths = list(paths)
    names = [str(p.relative_to(root)) if p.is_relative_to(root) else str(p) for p in paths[:limit]]
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return ", ".join(names) + more


def require_count(who: str, what: str, found: int, expected: int) -> None:
    """Raise unless ``found == expected``; the message reads ``"<who>: expected <n> <what>, found <m>"``.

    Raises:
        CorpusError: the counts differ.
    """
    if found != expected:
        raise CorpusError(f"{who}: expected {expected} {what}, found {found} (pass strict=False to accept a subset)")


def require_groups(who: str, what: str, keys: Iterable[str], expected: Mapping[str, int] | int) -> None:
    """Raise unless every group has its expected count (an int: the same for every group seen).

    Raises:
        CorpusError: a group's count differs, naming the first few offending groups.
    """
    counts = Counter(keys)
    if isinstance(expected, int):
        expected = {key: expected for key in counts}
    bad = {key: counts.get(key, 0) for key, n in expected.items() if counts.get(key, 0) != n}
    if bad:
        shown = ", ".join(f"{key}: {n} (expected {expected[key]})" for key, n in sorted(bad.items())[:6])
        raise CorpusError(f"{who}: wrong number of {what}: {shown} (pass strict=False to accept a subset)")


def row(utterance_id: str, path: Path, speaker: str, session: str, gender: str, label: str) -> dict[str, Any]:
    """One table row without its duration (:func:`table` reads that from the file header)."""
    return {
        "utterance_id": utterance_id,
        "path": str(path.resolve()),
        "speaker": speaker,
        "session": session,
        "gender": gender,
        "label": label,
    }


def table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A DataFrame with the columns of :data:`~serkit.corpora.base.COLUMNS`, ``duration`` in seconds.

    Durations come from each file's header, so call this after the cheap name and count checks.

    Raises:
        CorpusError: a header cannot be read.
    """
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["duration"] = [audio_duration(Path(p)) for p in frame["path"]]
    return frame
