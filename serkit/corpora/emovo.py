"""EMOVO, Italian emotional speech (Costantini, Iaderola, Paoloni, Todisco; LREC 2014).

Documented layout: ``<root>/<speaker>/<emotion>-<speaker>-<sentence>.wav`` with speakers
``f1 f2 f3 m1 m2 m3`` (98 files each, 588 in all), 48 kHz 16-bit, mostly stereo. A lossless
FLAC copy with the same names (``.flac``) loads the same way.

Emotion codes (Italian): ``rab`` rabbia (anger), ``dis`` disgusto (disgust), ``pau`` paura
(fear), ``gio`` gioia (joy; serkit's vocabulary has no "joy": it maps to ``happiness``), ``neu``
neutral, ``tri`` tristezza (sadness), ``sor`` sorpresa (surprise). Sentence codes ``b1-b3``
(short), ``d1-d2`` (questions), ``l1-l4`` (long), ``n1-n5`` (nonsense); 7 x 14 = 98 per speaker.
Gender is the speaker id's first letter; session = speaker.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from serkit.corpora._files import (
    audio_files,
    parse_options,
    require_count,
    require_groups,
    row,
    show,
    subfolders,
    table,
)
from serkit.corpora.base import Corpus, register
from serkit.corpora.vocabulary import codes, in_vocabulary_order
from serkit.errors import CorpusError, UnknownLabelError

CODES = codes("emovo")
SPEAKERS = ("f1", "f2", "f3", "m1", "m2", "m3")
SENTENCES = ("b1", "b2", "b3", "d1", "d2", "l1", "l2", "l3", "l4", "n1", "n2", "n3", "n4", "n5")
N_FILES = 588
PER_SPEAKER = 98

_NAME = re.compile(r"^(?P<emotion>[a-z]+)-(?P<speaker>[a-z]\d)-(?P<sentence>[a-z]\d)$")


@register
class EMOVO(Corpus):
    """EMOVO adapter: 6 speakers (3 f, 3 m), 7 emotions, 588 utterances.

    Options:
        strict (bool, default True): require 588 files, 98 per speaker. ``False`` accepts any
            non-empty subset; names, codes and folders are still checked.

    Raises (from :meth:`~serkit.corpora.base.Corpus.load`):
        CorpusError: no audio under the speaker folders; audio files at the root or in a folder
            that is not a speaker; a file not named ``<emo>-<speaker>-<sentence>``; a file whose
            speaker differs from its folder; an unknown sentence code; wrong counts in strict mode.
        UnknownLabelError: an emotion code outside ``rab dis pau gio neu tri sor``.
        ConfigError: unknown option.
    """

    name = "emovo"
    labels = in_vocabulary_order(CODES.values())
    citation = (
        "Costantini, Iaderola, Paoloni, Todisco: EMOVO Corpus: an Italian Emotional Speech Database, "
        "LREC 2014. Released by Fondazione Ugo Bordoni for research; cite the paper."
    )

    def scan(self, root: Path, **options: Any) -> pd.DataFrame:
        opts = parse_options("EMOVO", options, {"strict": True})
        stray = audio_files(root) + [
            p for folder in subfolders(root) if folder.name not in SPEAKERS for p in audio_files(folder)
        ]
        if stray:
            raise CorpusError(f"EMOVO: audio outside the speaker folders {SPEAKERS}: {show(stray, root)}")
        rows = [_row(path) for spk in SPEAKERS for path in audio_files(root / spk)]
        if opts["strict"] or not rows:
            require_count("EMOVO", f"files <speaker>/<emo>-<speaker>-<sentence>.wav under {root}", len(rows), N_FILES)
        if opts["strict"]:
            require_groups("EMOVO", "files per speaker", [r["speaker"] for r in rows], dict.fromkeys(SPEAKERS, PER_SPEAKER))
        return table(rows)


def _row(path: Path) -> dict[str, Any]:
    m = _NAME.match(path.stem)
    if not m:
        raise CorpusError(f"EMOVO: {path}: expected a name <emo>-<speaker>-<sentence>, e.g. rab-f1-b1.wav")
    if m["speaker"] != path.parent.name:
        raise CorpusError(f"EMOVO: {path}: speaker {m['speaker']!r} in the name but in folder {path.parent.name!r}")
    if m["sentence"] not in SENTENCES:
        raise CorpusError(f"EMOVO: {path}: sentence code {m['sentence']!r} is not one of {list(SENTENCES)}")
    if m["emotion"] not in CODES:
        raise UnknownLabelError(f"EMOVO: {path}: unknown emotion code {m['emotion']!r}; known: {', '.join(CODES)}")
    speaker = m["speaker"]
    return row(path.stem, path, speaker, speaker, speaker[0], CODES[m["emotion"]])
