"""CREMA-D, Crowd-sourced Emotional Multimodal Actors Dataset (Cao et al., IEEE TAC 2014), audio.

Documented layout of the public release: ``<root>/AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav``,
e.g. ``AudioWAV/1001_DFA_ANG_XX.wav``; 7442 files from 91 actors ``1001``-``1091``, 16 kHz.
Only ``AudioWAV/`` is read (``AudioMP3/`` and the video folders are ignored).

- sentence: ``IEO TIE IOM IWW TAI MTI IWL ITH DFA ITS TSI WSI`` (twelve sentences);
- emotion: ``ANG`` anger, ``DIS`` disgust, ``FEA`` fear, ``HAP`` happiness, ``NEU`` neutral,
  ``SAD`` sadness;
- level: ``LO MD HI`` (only sentence IEO) or ``XX`` unspecified.

The speaker id is the four-digit ``ActorID`` as documented (``"1001"``); session = speaker. Gender
comes from ``VideoDemographics.csv`` (columns ``ActorID``, ``Sex`` with ``Male``/``Female``) when
that file sits at the root; otherwise, or for an actor the file does not list, it is ``""``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from serkit.corpora._files import audio_files, parse_options, require_count, row, table
from serkit.corpora.base import Corpus, register
from serkit.corpora.vocabulary import codes, in_vocabulary_order
from serkit.errors import CorpusError, UnknownLabelError

CODES = codes("cremad")
SENTENCES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")
LEVELS = ("LO", "MD", "HI", "XX")
ACTORS = tuple(str(i) for i in range(1001, 1092))
N_FILES = 7442
DEMOGRAPHICS = "VideoDemographics.csv"

_NAME = re.compile(r"^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emo>[A-Z]{3})_(?P<level>[A-Z]{2})$")
_SEX = {"male": "m", "female": "f"}


@register
class CremaD(Corpus):
    """CREMA-D adapter: 91 actors, 6 emotions, 7442 utterances.

    Options:
        strict (bool, default True): require 7442 files from all 91 actors.

    Raises (from :meth:`~serkit.corpora.base.Corpus.load`):
        CorpusError: no audio in ``AudioWAV/``; a file not named
            ``<actor>_<sentence>_<emotion>_<level>``; an actor outside 1001-1091, an unknown
            sentence or level code; a ``VideoDemographics.csv`` without ``ActorID``/``Sex``
            columns or with a sex other than Male/Female; wrong counts in strict mode.
        UnknownLabelError: an emotion code outside ``ANG DIS FEA HAP NEU SAD``.
        ConfigError: unknown option.
    """

    name = "cremad"
    labels = in_vocabulary_order(CODES.values())
    citation = (
        "Cao, Cooper, Keutmann, Gur, Nenkova, Verma: CREMA-D: Crowd-sourced Emotional Multimodal Actors "
        "Dataset, IEEE Trans. Affective Computing 5(4), 2014. Open Database License; cite the paper."
    )

    def scan(self, root: Path, **options: Any) -> pd.DataFrame:
        opts = parse_options("CREMA-D", options, {"strict": True})
        sexes = read_demographics(root / DEMOGRAPHICS)
        rows = [_row(p, sexes) for p in audio_files(root / "AudioWAV")]
        if opts["strict"] or not rows:
            require_count("CREMA-D", f"files AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav under {root}", len(rows), N_FILES)
        if opts["strict"]:
            require_count("CREMA-D", "actors (1001-1091)", len({r["speaker"] for r in rows}), len(ACTORS))
        return table(rows)


def read_demographics(path: Path) -> dict[str, str]:
    """ActorID -> ``"f"``/``"m"`` from CREMA-D's ``VideoDemographics.csv``; ``{}`` if the file is absent.

    Raises:
        CorpusError: the file lacks the ``ActorID`` or ``Sex`` column, or a sex is not Male/Female.
    """
    if not path.is_file():
        return {}
    frame = pd.read_csv(path, dtype=str)
    if not {"ActorID", "Sex"} <= set(frame.columns):
        raise CorpusError(f"CREMA-D: {path}: expected columns ActorID and Sex, found {list(frame.columns)}")
    sexes = {}
    for actor, sex in zip(frame["ActorID"].str.strip(), frame["Sex"].fillna("").str.strip().str.lower()):
        if sex not in _SEX:
            raise CorpusError(f"CREMA-D: {path}: actor {actor}: sex {sex!r} is not Male or Female")
        sexes[actor] = _SEX[sex]
    return sexes


def _row(path: Path, sexes: dict[str, str]) -> dict[str, Any]:
    m = _NAME.match(path.stem)
    if not m:
        raise CorpusError(f"CREMA-D: {path}: expected a name <actor>_<sentence>_<emotion>_<level>, e.g. 1001_DFA_ANG_XX.wav")
    if m["actor"] not in ACTORS:
        raise CorpusError(f"CREMA-D: {path}: actor {m['actor']} outside 1001-1091")
    if m["sentence"] not in SENTENCES:
        raise CorpusError(f"CREMA-D: {path}: sentence code {m['sentence']!r} is not one of {list(SENTENCES)}")
    if m["level"] not in LEVELS:
        raise CorpusError(f"CREMA-D: {path}: level {m['level']!r} is not one of {list(LEVELS)}")
    if m["emo"] not in CODES:
        raise UnknownLabelError(f"CREMA-D: {path}: unknown emotion code {m['emo']!r}; known: {', '.join(CODES)}")
    actor = m["actor"]
    return row(path.stem, path, actor, actor, sexes.get(actor, ""), CODES[m["emo"]])
