"""EmoDB, the Berlin Database of Emotional Speech (Burkhardt et al., Interspeech 2005).

Layout as distributed (and as documented in the corpus README): ``<root>/wav/SSTTTEV.wav``,
535 files, 16 kHz mono 16-bit PCM. The shipped copy in ``data/emodb`` holds the same samples as
``wav/SSTTTEV.flac``; both load identically. Only ``wav/`` is read; other folders of the full
download (``lablaut``, ``silb`` ...) are ignored.

File name ``SSTTTEV``: ``SS`` speaker id (kept as is, e.g. ``"03"``), ``TTT`` text id (one of
the ten texts ``a01 a02 a04 a05 a07 b01 b02 b03 b09 b10``), ``E`` emotion code (German initial),
``V`` version letter. Four files (``14a07Aa``, ``14a07Fd``, ``14a07Na``, ``14a07Wc``) carry an
extra RIFF ``PAD `` chunk; soundfile reads them like any other.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from serkit.corpora._files import audio_files, parse_options, require_count, row, show, table
from serkit.corpora.base import Corpus, register
from serkit.corpora.vocabulary import codes, in_vocabulary_order
from serkit.errors import CorpusError, UnknownLabelError

#: Emotion code -> serkit label (W Wut, L Langeweile, E Ekel, A Angst, F Freude, T Trauer, N neutral).
CODES = codes("emodb")
#: Speaker id -> sex, from the corpus documentation's speaker table.
SPEAKERS = {"03": "m", "08": "f", "09": "f", "10": "m", "11": "m", "12": "m", "13": "f", "14": "f", "15": "m", "16": "f"}
TEXTS = ("a01", "a02", "a04", "a05", "a07", "b01", "b02", "b03", "b09", "b10")
N_FILES = 535

_NAME = re.compile(r"^(?P<speaker>\d{2})(?P<text>[ab]\d{2})(?P<emotion>[A-Za-z])(?P<version>[a-z])$")


@register
class EmoDB(Corpus):
    """EmoDB adapter: 10 speakers (5 f, 5 m), 7 emotions, 535 utterances, session = speaker.

    Options:
        strict (bool, default True): require exactly 535 files. ``False`` accepts any non-empty
            subset (fixtures, partial copies); names, codes and speakers are still checked.

    Raises (from :meth:`~serkit.corpora.base.Corpus.load`):
        CorpusError: no ``wav/`` folder or no audio in it; a file count other than 535 in
            strict mode; an audio file in ``wav/`` not named ``SSTTTEV``; a speaker id outside
            the ten known or a text id outside the ten known.
        UnknownLabelError: an emotion code outside ``W L E A F T N``.
        ConfigError: unknown option.
    """

    name = "emodb"
    labels = in_vocabulary_order(CODES.values())
    citation = (
        "Burkhardt, Paeschke, Rolfes, Sendlmeier, Weiss: A Database of German Emotional Speech, "
        "Interspeech 2005. Free for research use; cite the paper."
    )

    def scan(self, root: Path, **options: Any) -> pd.DataFrame:
        opts = parse_options("EmoDB", options, {"strict": True})
        files = audio_files(root / "wav")
        bad = [p for p in files if not _NAME.match(p.stem)]
        if bad:
            raise CorpusError(f"EmoDB: files in wav/ not named SSTTTEV.wav (or .flac): {show(bad, root)}")
        rows = [_row(path) for path in files]
        if opts["strict"] or not rows:
            require_count("EmoDB", f"files wav/SSTTTEV.wav (or .flac) under {root}", len(rows), N_FILES)
        return table(rows)


def _row(path: Path) -> dict[str, Any]:
    m = _NAME.match(path.stem)
    speaker, text, code = m["speaker"], m["text"], m["emotion"]
    if speaker not in SPEAKERS:
        raise CorpusError(f"EmoDB: {path}: speaker id {speaker!r} is not one of {sorted(SPEAKERS)}")
    if text not in TEXTS:
        raise CorpusError(f"EmoDB: {path}: text id {text!r} is not one of {list(TEXTS)}")
    if code not in CODES:
        raise UnknownLabelError(f"EmoDB: {path}: unknown emotion code {code!r}; known: {', '.join(CODES)}")
    return row(path.stem, path, speaker, speaker, SPEAKERS[speaker], CODES[code])
