"""TESS, the Toronto Emotional Speech Set (Dupuis & Pichora-Fuller, University of Toronto, 2010).

Two actresses, ``OAF`` (older, aged 64) and ``YAF`` (younger, aged 26), say "Say the word ___"
with 200 target words (NU-6) in 7 emotions: 2 x 200 x 7 = 2800 files, 24 414 Hz 16-bit mono.

Accepted layouts:

- as distributed: ``<root>/<SPK>_<emotion>/<SPK>_<word>_<emo>.wav``, e.g.
  ``OAF_angry/OAF_back_angry.wav``; folder spellings vary in the distribution
  (``OAF_Fear``, ``OAF_Pleasant_surprise``, ``YAF_pleasant_surprised``), so folder names are
  compared case-insensitively and any of ``ps``, ``pleasant_surprise``, ``pleasant_surprised``
  means pleasant surprise;
- flat: ``<root>/<SPK>_<word>_<emo>.wav``.

Quirks of the real release (``../shared/corpora/fetchable/README.md``), all taken as they are:

- ``OAF_neutral/OA_bite_neutral.wav`` lacks the F of its speaker: a file-name speaker ``OA`` is
  read as ``OAF`` (utterance id ``OAF_bite_neutral``; a second file of that id is refused as a
  duplicate). Folder names must still spell ``OAF`` or ``YAF``.
- ``OAF_Fear/OAF_food_fear.wav`` is recorded at 96 kHz: the table keeps each file's own rate
  (durations come from the header); extractors resample on purpose, as for every corpus.
- ``YAF_angry/YAF_germ_angry.wav`` and ``YAF_fear/YAF_neat_fear.wav`` are AIFF files named
  ``.wav``: soundfile reads a file by its content, not its suffix, so they load like the rest.
- folder capitalisation varies (above).

Emotion codes in file names (:data:`~serkit.corpora.vocabulary.LABEL_TABLE`): ``angry`` anger,
``disgust``, ``fear``, ``happy`` happiness, ``neutral``, ``ps`` pleasant surprise (serkit's
vocabulary: ``surprise``), ``sad`` sadness. Both speakers are female; session = speaker. The
utterance id is ``<SPK>_<word>_<emo>`` with the word in lower case and ``ps`` for pleasant
surprise, the same in both layouts.
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

CODES = codes("tess")
_ALIASES = {"pleasant_surprise": "ps", "pleasant_surprised": "ps"}
SPEAKERS = ("OAF", "YAF")
#: Speaker spellings in file names: the two speakers, and ``OA`` of ``OAF_neutral/OA_bite_neutral.wav``.
FILE_SPEAKERS = {"OAF": "OAF", "YAF": "YAF", "OA": "OAF"}
N_FILES = 2800
PER_SPEAKER_EMOTION = 200

_NAME = re.compile(r"^(?P<speaker>[A-Za-z]{2,3})_(?P<word>[A-Za-z]+)_(?P<emo>[A-Za-z_]+)$")
_FOLDER = re.compile(r"^(?P<speaker>[A-Za-z]{3})_(?P<emo>[A-Za-z_]+)$")


def _code(text: str) -> str:
    text = text.lower()
    return _ALIASES.get(text, text)


@register
class TESS(Corpus):
    """TESS adapter: 2 female speakers, 7 emotions, 2800 utterances.

    Options:
        strict (bool, default True): require 2800 files, 200 per speaker and emotion.

    Raises (from :meth:`~serkit.corpora.base.Corpus.load`):
        CorpusError: no audio in either layout; both layouts at once; a sub-folder with audio not
            named ``<SPK>_<emotion>``; a file not named ``<SPK>_<word>_<emo>``; a speaker other
            than OAF/YAF (``OA`` in a file name reads as OAF); a file whose speaker or emotion
            differs from its folder's; two files of one utterance id; wrong counts in strict
            mode.
        UnknownLabelError: an emotion (in a file or folder name) outside the seven.
        ConfigError: unknown option.
    """

    name = "tess"
    labels = in_vocabulary_order(CODES.values())
    citation = (
        "Dupuis & Pichora-Fuller: Toronto Emotional Speech Set (TESS), University of Toronto, 2010. "
        "Licence CC BY-NC-ND 4.0; cite the data set."
    )

    def scan(self, root: Path, **options: Any) -> pd.DataFrame:
        opts = parse_options("TESS", options, {"strict": True})
        flat = audio_files(root)
        folders = [f for f in subfolders(root) if audio_files(f)]
        if flat and folders:
            raise CorpusError(
                f"TESS: {root} holds audio both at the top ({show(flat, root, 2)}) and in sub-folders; keep one layout"
            )
        rows = [_row(p, None) for p in flat]
        for folder in folders:
            rows += [_row(p, folder.name) for p in audio_files(folder)]
        if opts["strict"] or not rows:
            require_count("TESS", f"files <SPK>_<emotion>/<SPK>_<word>_<emo>.wav under {root}", len(rows), N_FILES)
        if opts["strict"]:
            expected = {f"{s}/{CODES[c]}": PER_SPEAKER_EMOTION for s in SPEAKERS for c in CODES}
            require_groups("TESS", "files per speaker/emotion", [f"{r['speaker']}/{r['label']}" for r in rows], expected)
        return table(rows)


def _row(path: Path, folder: str | None) -> dict[str, Any]:
    m = _NAME.match(path.stem)
    if not m:
        raise CorpusError(f"TESS: {path}: expected a name <SPK>_<word>_<emotion>, e.g. OAF_back_angry.wav")
    speaker, code = FILE_SPEAKERS.get(m["speaker"].upper()), _code(m["emo"])
    if speaker is None:
        raise CorpusError(f"TESS: {path}: speaker {m['speaker']!r} is not one of {SPEAKERS}")
    if code not in CODES:
        raise UnknownLabelError(f"TESS: {path}: unknown emotion {m['emo']!r}; known: {', '.join(CODES)}")
    if folder is not None:
        f = _FOLDER.match(folder)
        if not f:
            raise CorpusError(f"TESS: {path}: folder {folder!r} is not named <SPK>_<emotion>, e.g. OAF_angry")
        if f["speaker"].upper() != speaker or _code(f["emo"]) != code:
            raise CorpusError(f"TESS: {path}: file of {speaker}/{m['emo']} is in folder {folder!r}")
    return row(f"{speaker}_{m['word'].lower()}_{code}", path, speaker, speaker, "f", CODES[code])
