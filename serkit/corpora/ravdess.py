"""RAVDESS speech (Livingstone & Russo, PLoS ONE 2018), audio-only speech files.

Documented layout of the "Audio_Speech_Actors_01-24" release: ``<root>/Actor_XX/MM-VV-EE-II-SS-RR-AA.wav``
with seven two-digit fields: modality ``MM`` (01 audio-video, 02 video-only, 03 audio-only),
vocal channel ``VV`` (01 speech, 02 song), emotion ``EE`` (01 neutral, 02 calm, 03 happy,
04 sad, 05 angry, 06 fearful, 07 disgust, 08 surprised), intensity ``II`` (01 normal,
02 strong), statement ``SS`` (01, 02), repetition ``RR`` (01, 02), actor ``AA`` (01-24; odd
male, even female). 60 speech files per actor, 1440 in all, 48 kHz.

Only audio-only speech is read. Song files (channel 02, a separate release with the same
``Actor_XX`` folders) and video files (modality 01/02, ``.mp4``) are refused unless skipped with
an option, so a merged folder is never read silently. The speaker id is the folder name
(``"Actor_01"``: the bare number would collide with other corpora); session = speaker.
Labels map happy -> happiness, sad -> sadness, angry -> anger, fearful -> fear,
surprised -> surprise.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from serkit.corpora._files import (
    audio_files,
    is_audio,
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

CODES = codes("ravdess")
ACTORS = tuple(f"{i:02d}" for i in range(1, 25))
N_FILES = 1440
PER_ACTOR = 60

_NAME = re.compile(
    r"^(?P<mod>\d{2})-(?P<chan>\d{2})-(?P<emo>\d{2})-(?P<int>\d{2})-(?P<stmt>\d{2})-(?P<rep>\d{2})-(?P<actor>\d{2})$"
)
_FOLDER = re.compile(r"^Actor_(\d{2})$")


@register
class RAVDESS(Corpus):
    """RAVDESS speech adapter: 24 actors (12 f, 12 m), 8 emotions, 1440 utterances.

    Options:
        strict (bool, default True): require 1440 speech files, 60 per actor, 24 actors.
        skip_song (bool, default False): ignore song files (vocal channel 02) instead of refusing.
        skip_video (bool, default False): ignore video files (modality 01 or 02) instead of refusing.

    Raises (from :meth:`~serkit.corpora.base.Corpus.load`):
        CorpusError: no ``Actor_XX`` folder with speech audio; audio at the root or outside
            ``Actor_XX`` folders; an audio file not named ``MM-VV-EE-II-SS-RR-AA``; a song or video
            file not skipped; a field value outside the documented codes; an actor number that
            differs from its folder; wrong counts in strict mode.
        UnknownLabelError: an emotion field outside 01-08.
        ConfigError: unknown option.
    """

    name = "ravdess"
    labels = in_vocabulary_order(CODES.values())
    citation = (
        "Livingstone & Russo: The Ryerson Audio-Visual Database of Emotional Speech and Song (RAVDESS), "
        "PLoS ONE 13(5), 2018. Licence CC BY-NC-SA 4.0; cite the paper."
    )

    def scan(self, root: Path, **options: Any) -> pd.DataFrame:
        opts = parse_options("RAVDESS", options, {"strict": True, "skip_song": False, "skip_video": False})
        folders = [f for f in subfolders(root) if _FOLDER.match(f.name)]
        stray = audio_files(root) + [p for f in subfolders(root) if not _FOLDER.match(f.name) for p in audio_files(f)]
        if stray:
            raise CorpusError(f"RAVDESS: audio outside the Actor_XX folders: {show(stray, root)}")
        rows = []
        for folder in folders:
            for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
                parsed = _row(path, opts)
                if parsed is not None:
                    rows.append(parsed)
        if opts["strict"] or not rows:
            require_count("RAVDESS", f"speech files Actor_XX/03-01-EE-II-SS-RR-AA.wav under {root}", len(rows), N_FILES)
        if opts["strict"]:
            require_groups(
                "RAVDESS", "speech files per actor", [r["speaker"] for r in rows], {f"Actor_{a}": PER_ACTOR for a in ACTORS}
            )
        return table(rows)


def _row(path: Path, opts: dict[str, Any]) -> dict[str, Any] | None:
    """The row for ``path``; ``None`` for a skipped song/video file or a non-audio side file."""
    m = _NAME.match(path.stem)
    if not m:
        if is_audio(path):
            raise CorpusError(f"RAVDESS: {path}: expected a name MM-VV-EE-II-SS-RR-AA, e.g. 03-01-05-01-02-01-12.wav")
        return None
    if m["mod"] in ("01", "02"):
        if opts["skip_video"]:
            return None
        raise CorpusError(
            f"RAVDESS: {path}: video file (modality {m['mod']}); only audio-only (03) is read; pass skip_video=True to ignore"
        )
    if m["mod"] != "03":
        raise CorpusError(f"RAVDESS: {path}: modality {m['mod']!r} is not 01, 02 or 03")
    if m["chan"] == "02":
        if opts["skip_song"]:
            return None
        raise CorpusError(
            f"RAVDESS: {path}: song file (vocal channel 02); only speech (01) is read; pass skip_song=True to ignore"
        )
    if m["chan"] != "01":
        raise CorpusError(f"RAVDESS: {path}: vocal channel {m['chan']!r} is not 01 (speech) or 02 (song)")
    if not is_audio(path):
        raise CorpusError(f"RAVDESS: {path}: audio-only speech must be .wav or .flac")
    if m["emo"] not in CODES:
        raise UnknownLabelError(f"RAVDESS: {path}: unknown emotion code {m['emo']!r}; known: 01-08")
    for field, what in (("int", "intensity"), ("stmt", "statement"), ("rep", "repetition")):
        if m[field] not in ("01", "02"):
            raise CorpusError(f"RAVDESS: {path}: {what} {m[field]!r} is not 01 or 02")
    actor = m["actor"]
    if actor not in ACTORS or path.parent.name != f"Actor_{actor}":
        raise CorpusError(f"RAVDESS: {path}: actor {actor!r} in the name does not match folder {path.parent.name!r}")
    speaker = f"Actor_{actor}"
    return row(path.stem, path, speaker, speaker, "m" if int(actor) % 2 else "f", CODES[m["emo"]])
