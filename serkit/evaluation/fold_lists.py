"""Fold lists in EmoBox's format: the benchmark's own splits, matched to a serkit corpus table.

EmoBox (Ma et al., "EmoBox: Multilingual Multi-corpus Speech Emotion Recognition Toolkit and
Benchmark", Interspeech 2024; https://github.com/emo-box/EmoBox, folder ``data/``) ships the
intra-corpus splits of its leaderboard as one folder per corpus, ``data/<dataset>/``::

    fold_<k>/<dataset>_train_fold_<k>.jsonl
    fold_<k>/<dataset>_test_fold_<k>.jsonl
    fold_<k>/<dataset>_valid_fold_<k>.jsonl     optional (EmoBox's loader uses it when present)

for ``k = 1 … K``. Each non-blank line of a ``.jsonl`` file is one JSON object describing one
utterance; serkit reads its ``key`` (EmoBox's utterance id, ``<dataset>-<name>``) and, when
present, ``emo`` (EmoBox's emotion code); other fields (``wav``, ``length``, ``sample_rate`` …)
are ignored. Other files in the folders (the ``.json`` twins of the lists, EmoDB's older
``emodb_train_fold1.jsonl`` …) are not read, as EmoBox's own loader does not read them.

EmoBox ids are translated into serkit ``utterance_id`` s per dataset (:data:`DATASETS`):

=========  =============  ================================  ==========================
dataset    serkit corpus  EmoBox ``key``                    serkit ``utterance_id``
=========  =============  ================================  ==========================
emodb      emodb          ``emodb-03a01Fa``                 ``03a01Fa``
emovo      emovo          ``emovo-rab-f1-b1``               ``rab-f1-b1``
ravdess    ravdess        ``ravdess-03-01-05-01-02-01-12``  ``03-01-05-01-02-01-12``
tess       tess           ``tess-OAF-back-angry``           ``OAF_back_angry``
=========  =============  ================================  ==========================

(EmoBox's TESS script names an utterance after its file with ``_`` turned into ``-``.) Every
listed id must be in the table, and where a record has ``emo`` its emotion must equal the table's
label: a mismatch means the id translation or the corpus copy is not what EmoBox used, and is an
error, never a silent drop. Nothing read here executes code: the files are parsed as JSON only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from serkit.corpora.vocabulary import codes
from serkit.errors import ConfigError

log = logging.getLogger(__name__)

SIDES = ("train", "valid", "test")


@dataclass(frozen=True)
class EmoBoxDataset:
    """How one EmoBox dataset's lists map onto a serkit corpus.

    Attributes:
        corpus: the serkit corpus adapter whose table the lists describe.
        to_id: EmoBox key without its ``<dataset>-`` prefix -> serkit ``utterance_id``.
        labels: EmoBox ``emo`` code -> serkit label.
    """

    corpus: str
    to_id: Callable[[str], str]
    labels: dict[str, str]


def _same(name: str) -> str:
    return name


def _hyphens_to_underscores(name: str) -> str:
    return name.replace("-", "_")


#: EmoBox dataset name -> its mapping onto serkit. Checked against the real corpora (EmoDB,
#: EMOVO, RAVDESS) and the TESS release's file list, for EmoBox commit 08280f2.
DATASETS: dict[str, EmoBoxDataset] = {
    "emodb": EmoBoxDataset(
        "emodb",
        _same,
        {"anger": "anger", "boredem": "boredom", "disgust": "disgust", "fear": "fear",
         "happy": "happiness", "neutral": "neutral", "sad": "sadness"},
    ),
    "emovo": EmoBoxDataset("emovo", _same, codes("emovo")),
    "ravdess": EmoBoxDataset(
        "ravdess",
        _same,
        {"Neutral": "neutral", "Calm": "calm", "Happy": "happiness", "Sad": "sadness", "Angry": "anger",
         "Fearful": "fear", "Disgust": "disgust", "Surprised": "surprise"},
    ),
    "tess": EmoBoxDataset("tess", _hyphens_to_underscores, codes("tess")),
}  # fmt: skip

_FOLD_DIR = re.compile(r"^fold_(\d+)$")


@dataclass(frozen=True)
class ListedFold:
    """One EmoBox fold as row positions of a corpus table.

    Attributes:
        name: the fold folder's name, e.g. ``"fold_1"``.
        rows: ``{"train" | "test" [| "valid"]: (n,) int64 row positions}`` in file order.
        files: the list file each side was read from.
    """

    name: str
    rows: dict[str, np.ndarray]
    files: dict[str, Path]


@dataclass(frozen=True)
class FoldLists:
    """EmoBox fold lists read against one corpus table (see :func:`read_emobox_folds`).

    Attributes:
        dataset: EmoBox's dataset name, e.g. ``"emovo"``.
        folds: the folds in order ``fold_1 … fold_K``.
        sha256: SHA-256 (hex) over the names and bytes of every list read, so a run records
            exactly which lists it used.
        n_unlisted: table rows in no list of any fold (not used by any fold).
    """

    dataset: str
    folds: list[ListedFold]
    sha256: str
    n_unlisted: int


def read_emobox_folds(folder: str | Path, table: pd.DataFrame) -> FoldLists:
    """Read EmoBox's fold lists for one corpus and match them to ``table``.

    Args:
        folder: EmoBox's ``data/<dataset>`` folder (holding ``fold_1`` … ``fold_K``), or a copy.
        table: the corpus table (columns ``utterance_id`` and ``label`` at least); when
            ``table.attrs["corpus"]`` is set it must be the dataset's serkit corpus.

    Returns:
        A :class:`FoldLists` whose row positions index ``table``.

    Raises:
        ConfigError: ``folder`` is not a path of a folder holding ``fold_<k>`` folders; fold numbers
            not ``1 … K``; a fold without exactly one train and one test list (or with two valid
            lists); lists of different datasets, or of a dataset serkit has no id mapping for;
            a table of another corpus; a line that is not a JSON object with a string ``key``
            starting ``<dataset>-``; an id not in the table (the message names the file, the
            line, the EmoBox id and the serkit id looked for); an id listed twice in one file;
            an unknown ``emo`` code or one that disagrees with the table's label; a fold whose
            train, valid and test lists share an utterance; an empty train or test list.
    """
    if not isinstance(folder, (str, Path)):
        raise ConfigError(f"protocol emobox: 'folder' must be a path, got {type(folder).__name__}")
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ConfigError(f"protocol emobox: fold folder {root} is not a folder (expected EmoBox's data/<dataset>)")
    numbered = {}
    for child in root.iterdir():
        m = _FOLD_DIR.match(child.name)
        if m and child.is_dir():
            numbered[int(m.group(1))] = child
    if not numbered:
        raise ConfigError(f"protocol emobox: no fold_<k> folders in {root} (expected EmoBox's data/<dataset>)")
    if sorted(numbered) != list(range(1, len(numbered) + 1)):
        missing = sorted(set(range(1, max(numbered) + 1)) - set(numbered))
        raise ConfigError(f"protocol emobox: {root} has folds {sorted(numbered)}; fold_{missing[0]} is missing")

    files = [_fold_files(numbered[k], k) for k in sorted(numbered)]
    names = {_dataset_of(path) for fold in files for path in fold.values()}
    if len(names) != 1:
        raise ConfigError(f"protocol emobox: {root} mixes lists of datasets {sorted(names)}")
    (dataset,) = names
    if dataset not in DATASETS:
        raise ConfigError(
            f"protocol emobox: no id mapping for EmoBox dataset {dataset!r}; serkit maps {', '.join(DATASETS)}"
        )
    spec = DATASETS[dataset]
    corpus = table.attrs.get("corpus")
    if corpus and corpus != spec.corpus:
        raise ConfigError(
            f"protocol emobox: {root} lists EmoBox dataset {dataset!r} (serkit corpus {spec.corpus!r}) "
            f"but the table is corpus {corpus!r}"
        )

    ids = table["utterance_id"].astype(str).to_numpy(dtype=object)
    labels = table["label"].astype(str).to_numpy(dtype=object)
    position = {u: i for i, u in enumerate(ids)}
    digest = hashlib.sha256()
    folds, listed = [], np.zeros(len(ids), dtype=bool)
    for k, fold_files in zip(sorted(numbered), files):
        rows = {}
        for side, path in fold_files.items():
            raw = path.read_bytes()
            digest.update(f"{path.parent.name}/{path.name}\n".encode())
            digest.update(raw)
            rows[side] = _rows(path, raw, dataset, spec, position, labels)
        _refuse_shared(rows, fold_files, ids)
        for side_rows in rows.values():
            listed[side_rows] = True
        folds.append(ListedFold(name=f"fold_{k}", rows=rows, files=fold_files))
    n_unlisted = int((~listed).sum())
    if n_unlisted:
        log.warning("protocol emobox: %d of %d table rows are in no list of %s; no fold uses them",
                    n_unlisted, len(ids), root)  # fmt: skip
    return FoldLists(dataset=dataset, folds=folds, sha256=digest.hexdigest(), n_unlisted=n_unlisted)


def _fold_files(folder: Path, k: int) -> dict[str, Path]:
    """``{side: list file}`` of fold ``k``: exactly one train and one test list, at most one valid."""
    out = {}
    for side in SIDES:
        found = sorted(p for p in folder.glob(f"*_{side}_fold_{k}.jsonl") if p.is_file())
        if len(found) > 1:
            raise ConfigError(f"protocol emobox: {folder} holds several {side} lists: {[p.name for p in found]}")
        if not found:
            if side == "valid":
                continue
            raise ConfigError(f"protocol emobox: {folder} has no {side} list <dataset>_{side}_fold_{k}.jsonl")
        out[side] = found[0]
    return out


def _dataset_of(path: Path) -> str:
    return re.sub(r"_(train|valid|test)_fold_\d+\.jsonl$", "", path.name)


def _rows(
    path: Path, raw: bytes, dataset: str, spec: EmoBoxDataset, position: dict[str, int], labels: np.ndarray
) -> np.ndarray:
    """Table row positions of the utterances listed in one ``.jsonl`` file, in file order."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"protocol emobox: {path} is not UTF-8 text ({exc})") from exc
    prefix = f"{dataset}-"
    out: list[int] = []
    seen: dict[int, int] = {}
    unknown: list[tuple[int, str, str]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        record = _record(path, lineno, line)
        key = record.get("key")
        if not isinstance(key, str) or not key.startswith(prefix):
            raise ConfigError(
                f"protocol emobox: {path}:{lineno}: expected a string 'key' starting {prefix!r}, got {key!r}"
            )
        uid = spec.to_id(key[len(prefix):])
        row = position.get(uid)
        if row is None:
            unknown.append((lineno, key, uid))
            continue
        if row in seen:
            raise ConfigError(f"protocol emobox: {path}:{lineno}: {key!r} is listed twice (first on line {seen[row]})")
        seen[row] = lineno
        if "emo" in record:
            _check_label(path, lineno, key, record["emo"], spec, labels[row])
        out.append(row)
    if unknown:
        lineno, key, uid = unknown[0]
        raise ConfigError(
            f"protocol emobox: {path}: {len(unknown)} listed id(s) not in the {spec.corpus} corpus table; "
            f"first on line {lineno}: EmoBox id {key!r} (serkit utterance_id {uid!r}). Is the corpus loaded whole? "
            "(an utterance whose features failed leaves the table before the folds are made)"
        )
    if not out:
        raise ConfigError(f"protocol emobox: {path} lists no utterance")
    return np.asarray(out, dtype=np.int64)


def _record(path: Path, lineno: int, line: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"protocol emobox: {path}:{lineno}: not valid JSON ({exc.msg})") from exc
    if not isinstance(record, dict):
        raise ConfigError(f"protocol emobox: {path}:{lineno}: expected a JSON object, got {type(record).__name__}")
    return record


def _check_label(path: Path, lineno: int, key: str, emo: Any, spec: EmoBoxDataset, label: str) -> None:
    if not isinstance(emo, str) or emo not in spec.labels:
        raise ConfigError(
            f"protocol emobox: {path}:{lineno}: {key!r} has emotion {emo!r}, not one of EmoBox's "
            f"{spec.corpus} codes {sorted(spec.labels)}"
        )
    if spec.labels[emo] != label:
        raise ConfigError(
            f"protocol emobox: {path}:{lineno}: EmoBox labels {key!r} {emo!r} ({spec.labels[emo]}) "
            f"but the corpus table says {label!r}"
        )


def _refuse_shared(rows: dict[str, np.ndarray], files: dict[str, Path], ids: np.ndarray) -> None:
    for a, b in (("train", "test"), ("train", "valid"), ("valid", "test")):
        if a in rows and b in rows:
            both = np.intersect1d(rows[a], rows[b])
            if both.size:
                raise ConfigError(
                    f"protocol emobox: {both.size} utterance(s) in both {files[a]} and {files[b]}, "
                    f"e.g. {list(ids[both[:3]])}"
                )
