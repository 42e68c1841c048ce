"""SAVEE, Surrey Audio-Visual Expressed Emotion (Haq & Jackson, 2009/2010), audio part.

Two layouts are accepted (both documented in circulation):

- as released: ``<root>/AudioData/<speaker>/<code><nn>.wav``, e.g. ``AudioData/DC/a01.wav``;
- flat, as redistributed: ``<root>/<speaker>_<code><nn>.wav``, e.g. ``DC_a01.wav``.

Speakers ``DC JE JK KL``, all male; session = speaker. Emotion codes: ``a`` anger, ``d``
disgust, ``f`` fear, ``h`` happiness, ``n`` neutral, ``sa`` sadness, ``su`` surprise (note the two
two-letter codes). Each speaker has 15 sentences per emotion (``01``-``15``) and 30 neutral
(``n01``-``n30``): 120 per speaker, 480 in all, 44.1 kHz. The utterance id is always
``<speaker>_<code><nn>`` so both layouts give the same ids.
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

CODES = codes("savee")
#: Sentences per emotion code and speaker (numbered 01..n).
SENTENCES = {"a": 15, "d": 15, "f": 15, "h": 15, "n": 30, "sa": 15, "su": 15}
SPEAKERS = ("DC", "JE", "JK", "KL")
N_FILES = 480
PER_SPEAKER = 120

_FLAT = re.compile(r"^(?P<speaker>[A-Za-z]{2})_(?P<emo>[a-z]+)(?P<num>\d{2})$")
_NESTED = re.compile(r"^(?P<emo>[a-z]+)(?P<num>\d{2})$")


@register
class SAVEE(Corpus):
    """SAVEE adapter: 4 male speakers, 7 emotions, 480 utterances.

    Options:
        strict (bool, default True): require 480 files, 120 per speaker.

    Raises (from :meth:`~serkit.corpora.base.Corpus.load`):
        CorpusError: no audio in either layout; both layouts at once; audio in ``AudioData/``
            outside a speaker folder or in an unknown speaker's folder; a badly formed name;
            an unknown speaker; a sentence number outside the documented range; wrong counts
            in strict mode.
        UnknownLabelError: an emotion code outside ``a d f h n sa su``.
        ConfigError: unknown option.
    """

    name = "savee"
    labels = in_vocabulary_order(CODES.values())
    citation = (
        "Haq & Jackson: Speaker-Dependent Audio-Visual Emotion Recognition, AVSP 2009 "
        "(Surrey Audio-Visual Expressed Emotion database). Free for research; cite the paper."
    )

    def scan(self, root: Path, **options: Any) -> pd.DataFrame:
        opts = parse_options("SAVEE", options, {"strict": True})
        flat = audio_files(root)
        nested_root = root / "AudioData"
        if flat and nested_root.is_dir():
            raise CorpusError(f"SAVEE: {root} holds both flat <speaker>_<code><nn>.wav files and AudioData/; keep one layout")
        if nested_root.is_dir():
            stray = audio_files(nested_root) + [
                p for f in subfolders(nested_root) if f.name not in SPEAKERS for p in audio_files(f)
            ]
            if stray:
                raise CorpusError(f"SAVEE: audio in AudioData/ outside the speaker folders {SPEAKERS}: {show(stray, root)}")
            rows = [_nested_row(p) for spk in SPEAKERS for p in audio_files(nested_root / spk)]
        else:
            rows = [_flat_row(p) for p in flat]
        if opts["strict"] or not rows:
            require_count(
                "SAVEE", f"files AudioData/<speaker>/<code><nn>.wav or <speaker>_<code><nn>.wav under {root}", len(rows), N_FILES
            )
        if opts["strict"]:
            require_groups("SAVEE", "files per speaker", [r["speaker"] for r in rows], dict.fromkeys(SPEAKERS, PER_SPEAKER))
        return table(rows)


def _flat_row(path: Path) -> dict[str, Any]:
    m = _FLAT.match(path.stem)
    if not m:
        raise CorpusError(f"SAVEE: {path}: expected a name <speaker>_<code><nn>, e.g. DC_a01.wav")
    return _make_row(path, m["speaker"], m["emo"], m["num"])


def _nested_row(path: Path) -> dict[str, Any]:
    m = _NESTED.match(path.stem)
    if not m:
        raise CorpusError(f"SAVEE: {path}: expected a name <code><nn>, e.g. a01.wav")
    return _make_row(path, path.parent.name, m["emo"], m["num"])


def _make_row(path: Path, speaker: str, code: str, num: str) -> dict[str, Any]:
    if speaker not in SPEAKERS:
        raise CorpusError(f"SAVEE: {path}: speaker {speaker!r} is not one of {SPEAKERS}")
    if code not in CODES:
        raise UnknownLabelError(f"SAVEE: {path}: unknown emotion code {code!r}; known: {', '.join(CODES)}")
    if not 1 <= int(num) <= SENTENCES[code]:
        raise CorpusError(f"SAVEE: {path}: sentence number {num} outside 01-{SENTENCES[code]:02d} for code {code!r}")
    return row(f"{speaker}_{code}{num}", path, speaker, speaker, "m", CODES[code])
