"""IEMOCAP (Busso et al., Language Resources and Evaluation 42(4), 2008), the 4-class protocol.

Documented layout of ``IEMOCAP_full_release`` (pass that folder as the root)::

    Session<N>/dialog/EmoEvaluation/<dialog>.txt       one per dialog, N = 1..5
    Session<N>/sentences/wav/<dialog>/<utterance>.wav

Each evaluation file has one summary line per utterance, tab separated::

    [6.2901 - 8.2357]	Ses01F_impro01_F000	neu	[2.5000, 2.5000, 2.5000]

(start and end in seconds, utterance id, majority category, valence/activation/dominance),
followed by lines of the individual annotators, which are ignored. Categories: ``neu ang sad hap
exc fru sur fea dis oth xxx``. The widely used 4-class protocol keeps ``neu`` neutral, ``ang``
anger, ``sad`` sadness and ``hap`` + ``exc`` merged into happiness, and drops the rest: 5531
utterances over the 5 sessions (1708 neutral, 1103 anger, 1084 sadness, 1636 happiness).

The utterance id ``Ses01F_impro01_M003`` reads: session ``Ses01``, dialog ``Ses01F_impro01``
(the ``F`` is who wore the markers, not the talker), talker gender from the last letter group
``M003`` -> ``m``. speaker = session + talker gender (``"Ses01M"``; each session has one female
and one male actor), session = ``"Ses01"``. Durations come from the wav headers, not the time
stamps.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from serkit.corpora._files import parse_options, require_count, row, show, table
from serkit.corpora.base import Corpus, register
from serkit.corpora.vocabulary import LABEL_TABLE, codes, in_vocabulary_order
from serkit.errors import ConfigError, CorpusError, UnknownLabelError

#: Every category the evaluation files use.
CATEGORIES = tuple(row.code for row in LABEL_TABLE["iemocap"])
#: The 4-class protocol: category -> serkit label (the others are dropped).
FOUR_CLASS = {code: codes("iemocap")[code] for code in ("neu", "ang", "sad", "hap", "exc")}
SESSIONS = tuple(f"Session{i}" for i in range(1, 6))
N_FOUR_CLASS = 5531

_LINE = re.compile(r"^\[\s*(?P<start>[\d.]+)\s*-\s*(?P<end>[\d.]+)\s*\]\s+(?P<utt>\S+)\s+(?P<emo>\S+)\s+\[")
_UTT = re.compile(r"^(?P<session>Ses0(?P<n>[1-5]))[FM]_.+_(?P<gender>[FM])\d{3}$")


@register
class IEMOCAP(Corpus):
    """IEMOCAP adapter (4-class protocol): 10 speakers in 5 sessions, 5531 utterances.

    Options:
        strict (bool, default True): require all five ``SessionN`` folders and exactly 5531
            4-class utterances (checked before ``improvised_only`` filters).
        improvised_only (bool, default False): keep only improvised dialogs (``*_impro*``).
        classes (int, default 4): the class protocol; only 4 is implemented.

    Raises (from :meth:`~serkit.corpora.base.Corpus.load`):
        CorpusError: no ``SessionN/dialog/EmoEvaluation/*.txt``; a missing session in strict
            mode; a malformed utterance id, or one whose session or dialog differs from the file
            it is listed in; utterance wavs missing under ``sentences/wav``; the wrong 4-class
            count in strict mode.
        UnknownLabelError: a category outside :data:`CATEGORIES`, naming the evaluation file.
        ConfigError: unknown option, or ``classes`` other than 4.
    """

    name = "iemocap"
    labels = in_vocabulary_order(FOUR_CLASS.values())
    citation = (
        "Busso et al.: IEMOCAP: Interactive emotional dyadic motion capture database, Language Resources "
        "and Evaluation 42(4), 2008. Licensed by USC SAIL on request; not redistributable."
    )

    def scan(self, root: Path, **options: Any) -> pd.DataFrame:
        opts = parse_options("IEMOCAP", options, {"strict": True, "improvised_only": False, "classes": 4})
        if opts["classes"] != 4:
            raise ConfigError(f"IEMOCAP: classes={opts['classes']} is not supported; only the 4-class protocol (classes=4)")
        sessions = [s for s in SESSIONS if (root / s / "dialog" / "EmoEvaluation").is_dir()]
        if not sessions or (opts["strict"] and len(sessions) != len(SESSIONS)):
            raise CorpusError(
                f"IEMOCAP: expected {', '.join(SESSIONS)} each with dialog/EmoEvaluation/ under {root}, "
                f"found {sessions or 'none'} (pass the IEMOCAP_full_release folder; strict=False accepts a subset)"
            )
        rows, missing = [], []
        for session in sessions:
            for txt in sorted((root / session / "dialog" / "EmoEvaluation").glob("*.txt")):
                if txt.name.startswith("."):
                    continue
                for utt, code in read_evaluation(txt):
                    if code not in FOUR_CLASS:
                        continue
                    m = _UTT.match(utt)
                    if f"Session{m['n']}" != session or not utt.startswith(txt.stem + "_"):
                        raise CorpusError(f"IEMOCAP: {txt}: utterance {utt} does not belong to {session}/{txt.stem}")
                    wav = root / session / "sentences" / "wav" / txt.stem / f"{utt}.wav"
                    if not wav.is_file():
                        missing.append(wav)
                        continue
                    gender = m["gender"]
                    rows.append(row(utt, wav, f"{m['session']}{gender}", m["session"], gender.lower(), FOUR_CLASS[code]))
        if missing:
            raise CorpusError(f"IEMOCAP: {len(missing)} utterance wavs listed in EmoEvaluation are missing: {show(missing, root)}")
        if opts["strict"] or not rows:
            require_count("IEMOCAP", f"4-class utterances (neu, ang, sad, hap+exc) in {root}", len(rows), N_FOUR_CLASS)
        if opts["improvised_only"]:
            rows = [r for r in rows if "_impro" in r["utterance_id"]]
            if not rows:
                raise CorpusError(f"IEMOCAP: no improvised (*_impro*) 4-class utterances under {root}")
        return table(rows)


def read_evaluation(path: Path) -> list[tuple[str, str]]:
    """``(utterance_id, category)`` for every summary line of one ``EmoEvaluation/<dialog>.txt``.

    Raises:
        CorpusError: an utterance id not shaped like ``Ses01F_impro01_F000``.
        UnknownLabelError: a category outside :data:`CATEGORIES` (the message names ``path``).
    """
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        m = _LINE.match(line)
        if not m:
            continue
        utt, code = m["utt"], m["emo"]
        if not _UTT.match(utt):
            raise CorpusError(f"IEMOCAP: {path}:{number}: utterance id {utt!r} is not shaped like Ses01F_impro01_F000")
        if code not in CATEGORIES:
            raise UnknownLabelError(f"IEMOCAP: {path}:{number}: unknown category {code!r} for {utt}; known: {', '.join(CATEGORIES)}")
        out.append((utt, code))
    return out
