"""Builders of tiny corpora in the documented layouts, written into a test's tmp folder.

Every audio file is the same short synthetic WAV (a 440 Hz tone, :data:`TINY_FRAMES` samples
at :data:`TINY_RATE` Hz, 16-bit PCM), so a complete corpus of thousands of files takes well
under a second to write. The ``*_files`` functions return the documented complete file lists
(relative paths); tests drop, add or rename entries to build broken variants.
"""

from __future__ import annotations

import io
import itertools
import string
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import soundfile as sf

TINY_RATE = 16000
TINY_FRAMES = 400  # 25 ms


def tiny_wav(frames: int = TINY_FRAMES, rate: int = TINY_RATE, channels: int = 1, container: str = "WAV") -> bytes:
    """Bytes of a 16-bit PCM file (``container`` WAV or AIFF) holding a 440 Hz tone of ``frames``
    samples per channel."""
    t = np.arange(frames) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, np.repeat(tone[:, None], channels, axis=1), rate, format=container, subtype="PCM_16")
    return buf.getvalue()


def populate(root: Path, files: Iterable[str], data: bytes | None = None) -> Path:
    """Write ``data`` (default :func:`tiny_wav`) at each relative path under ``root``; return ``root``."""
    data = tiny_wav() if data is None else data
    for rel in files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


# ---- EMOVO: <speaker>/<emo>-<speaker>-<sentence>.wav, 6 x 7 x 14 = 588 ---------------------------
EMOVO_SENTENCES = ("b1", "b2", "b3", "d1", "d2", "l1", "l2", "l3", "l4", "n1", "n2", "n3", "n4", "n5")


def emovo_files(suffix: str = ".wav") -> list[str]:
    """The 588 EMOVO paths."""
    return [
        f"{s}/{e}-{s}-{t}{suffix}"
        for s in ("f1", "f2", "f3", "m1", "m2", "m3")
        for e in ("rab", "dis", "pau", "gio", "neu", "tri", "sor")
        for t in EMOVO_SENTENCES
    ]


# ---- RAVDESS speech: Actor_XX/03-01-EE-II-SS-RR-AA.wav, 24 x 60 = 1440 ------------------------------
def ravdess_files() -> list[str]:
    """The 1440 RAVDESS audio-only speech paths (neutral has normal intensity only)."""
    out = []
    for actor in range(1, 25):
        for emo in range(1, 9):
            for intensity in (1,) if emo == 1 else (1, 2):
                for stmt, rep in itertools.product((1, 2), (1, 2)):
                    out.append(f"Actor_{actor:02d}/03-01-{emo:02d}-{intensity:02d}-{stmt:02d}-{rep:02d}-{actor:02d}.wav")
    return out


# ---- SAVEE: AudioData/<spk>/<code><nn>.wav or <spk>_<code><nn>.wav, 4 x 120 = 480 --------------------
SAVEE_SENTENCES = {"a": 15, "d": 15, "f": 15, "h": 15, "n": 30, "sa": 15, "su": 15}


def savee_files(layout: str = "nested") -> list[str]:
    """The 480 SAVEE paths in the ``"nested"`` (AudioData/DC/a01.wav) or ``"flat"`` (DC_a01.wav) layout."""
    out = []
    for spk in ("DC", "JE", "JK", "KL"):
        for code, n in SAVEE_SENTENCES.items():
            for i in range(1, n + 1):
                out.append(f"AudioData/{spk}/{code}{i:02d}.wav" if layout == "nested" else f"{spk}_{code}{i:02d}.wav")
    return out


# ---- TESS: <SPK>_<emotion>/<SPK>_<word>_<emo>.wav, 2 x 7 x 200 = 2800 ---------------------------------
TESS_WORDS = tuple("w" + a + b for a, b in itertools.islice(itertools.product(string.ascii_lowercase, repeat=2), 200))
#: Folder names as spelled in the distributed copy (mixed case, two spellings of pleasant surprise).
TESS_FOLDERS = {
    "OAF": {"angry": "OAF_angry", "disgust": "OAF_disgust", "fear": "OAF_Fear", "happy": "OAF_happy",
            "neutral": "OAF_neutral", "ps": "OAF_Pleasant_surprise", "sad": "OAF_Sad"},
    "YAF": {"angry": "YAF_angry", "disgust": "YAF_disgust", "fear": "YAF_fear", "happy": "YAF_happy",
            "neutral": "YAF_neutral", "ps": "YAF_pleasant_surprised", "sad": "YAF_sad"},
}


def tess_files(layout: str = "nested") -> list[str]:
    """The 2800 TESS paths, ``"nested"`` in emotion folders or ``"flat"``."""
    out = []
    for spk, folders in TESS_FOLDERS.items():
        for emo, folder in folders.items():
            for word in TESS_WORDS:
                name = f"{spk}_{word}_{emo}.wav"
                out.append(f"{folder}/{name}" if layout == "nested" else name)
    return out


#: The real release's quirks (``../shared/corpora/fetchable/README.md``), rebuilt on fixture words:
#: the OAF neutral file whose name lacks the F, the 96 kHz fear file, the two AIFF files named .wav.
TESS_OA_FILE = f"OAF_neutral/OA_{TESS_WORDS[0]}_neutral.wav"
TESS_96K_FILE = f"OAF_Fear/OAF_{TESS_WORDS[1]}_fear.wav"
TESS_AIFF_FILES = (f"YAF_angry/YAF_{TESS_WORDS[2]}_angry.wav", f"YAF_fear/YAF_{TESS_WORDS[3]}_fear.wav")


def build_tess_release(root: Path) -> Path:
    """A complete TESS fixture in the distributed layout with every quirk of the real release."""
    files = [TESS_OA_FILE if f == f"OAF_neutral/OAF_{TESS_WORDS[0]}_neutral.wav" else f for f in tess_files("nested")]
    populate(root, files)
    (root / TESS_96K_FILE).write_bytes(tiny_wav(frames=9600, rate=96000))  # 0.1 s
    for rel in TESS_AIFF_FILES:
        (root / rel).write_bytes(tiny_wav(frames=2 * TINY_FRAMES, container="AIFF"))
    return root


# ---- CREMA-D: AudioWAV/<actor>_<sentence>_<emo>_<level>.wav, 7442 -----------------------------------
CREMAD_SENTENCES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")
CREMAD_EMOTIONS = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")


def cremad_files() -> list[str]:
    """7442 CREMA-D paths: 91 actors x 82 recordings (IEO at LO/MD/HI, NEU and the other sentences XX),
    minus the last 20 (the public release also lacks a few recordings)."""
    out = []
    for actor in range(1001, 1092):
        for sentence in CREMAD_SENTENCES:
            for emo in CREMAD_EMOTIONS:
                levels = ("LO", "MD", "HI") if sentence == "IEO" and emo != "NEU" else ("XX",)
                out += [f"AudioWAV/{actor}_{sentence}_{emo}_{level}.wav" for level in levels]
    return out[:-20]


def cremad_demographics(root: Path) -> dict[str, str]:
    """Write ``VideoDemographics.csv`` (odd actors Male, even Female); return actor -> ``"m"``/``"f"``."""
    sexes = {str(a): "m" if a % 2 else "f" for a in range(1001, 1092)}
    lines = ["ActorID,Age,Sex,Race,Ethnicity"]
    lines += [f"{a},30,{'Male' if s == 'm' else 'Female'},Caucasian,Not Hispanic" for a, s in sexes.items()]
    (root / "VideoDemographics.csv").write_text("\n".join(lines) + "\n")
    return sexes


# ---- IEMOCAP: SessionN/dialog/EmoEvaluation/<dialog>.txt + SessionN/sentences/wav/<dialog>/<utt>.wav ----
IEMOCAP_HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"


def iemocap_utterances(n_four_class: int = 5531, extra_per_dialog: int = 2) -> dict[str, list[tuple[str, str]]]:
    """``dialog -> [(utterance_id, category)]`` over 5 sessions x 4 dialogs (2 improvised, 2 scripted).

    ``n_four_class`` utterances carry ``neu ang sad hap exc`` in turn; each dialog also gets
    ``extra_per_dialog`` utterances labelled ``fru`` / ``xxx`` that the 4-class protocol drops.
    Talker gender alternates F/M independently of the dialog's letter.
    """
    dialogs = [
        f"Ses0{s}{'F' if d % 2 else 'M'}_{kind}"
        for s in range(1, 6)
        for d, kind in enumerate(("impro01", "impro02", "script01_1", "script02_2"))
    ]
    out: dict[str, list[tuple[str, str]]] = {d: [] for d in dialogs}
    counters = {(d, g): 0 for d in dialogs for g in "FM"}

    def add(dialog: str, gender: str, code: str) -> None:
        out[dialog].append((f"{dialog}_{gender}{counters[dialog, gender]:03d}", code))
        counters[dialog, gender] += 1

    codes = ("neu", "ang", "sad", "hap", "exc")
    for i in range(n_four_class):
        add(dialogs[i % len(dialogs)], "FM"[(i // len(dialogs)) % 2], codes[(i // 7) % len(codes)])
    for dialog in dialogs:
        for j in range(extra_per_dialog):
            add(dialog, "FM"[j % 2], ("fru", "xxx")[j % 2])
    return out


def build_iemocap(root: Path, utterances: dict[str, list[tuple[str, str]]], skip_wavs: Iterable[str] = ()) -> Path:
    """Write evaluation files (with annotator lines, as released) and utterance wavs; return ``root``."""
    skip = set(skip_wavs)
    data = tiny_wav()
    for dialog, utts in utterances.items():
        session = root / f"Session{int(dialog[3:5])}"
        lines = [IEMOCAP_HEADER]
        for k, (utt, code) in enumerate(utts):
            lines.append(f"[{k * 3.0 + 0.5:.4f} - {k * 3.0 + 2.5:.4f}]\t{utt}\t{code}\t[2.5000, 3.0000, 3.5000]\n")
            lines.append("C-E1:\tNeutral;\t()\nA-E1:\tval 3; act 2; dom  2;\t()\n\n")
        evaluation = session / "dialog" / "EmoEvaluation"
        evaluation.mkdir(parents=True, exist_ok=True)
        (evaluation / f"{dialog}.txt").write_text("".join(lines))
        wavs = session / "sentences" / "wav" / dialog
        wavs.mkdir(parents=True, exist_ok=True)
        for utt, _ in utts:
            if utt not in skip:
                (wavs / f"{utt}.wav").write_bytes(data)
    return root
