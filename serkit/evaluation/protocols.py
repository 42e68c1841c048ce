"""Evaluation protocols: folds that are speaker-independent by construction.

A protocol turns a corpus table (see :mod:`serkit.corpora.base`) into a list of :class:`Fold`
objects holding integer row *positions* (``0 … len(table) - 1``, not index labels) of the
training, optional validation and test rows. Every protocol serkit builds itself except ``kfold``
groups rows by speaker (or session) so that no speaker is ever in both the training and the test
side of a fold; ``kfold`` exists for comparison with speaker-dependent papers and says so loudly.
Folds read from lists (``predefined``, ``emobox``) are checked, not trusted: where a test speaker
is also in training, :attr:`Protocol.speaker_independent` is false and :meth:`Protocol.describe`
carries the same warning as ``kfold``.

Spec dictionaries (``make_folds(table, spec)``), ``name`` plus options:

========================  =====================================================================
``{name: loso}``          leave one speaker out: one fold per speaker (sorted ids)
``{name: loso_session}``  leave one session out (IEMOCAP ``Ses01``…); option ``split_test``
``{name: lkgo, k, seed}`` leave k speaker groups out: speakers shuffled with ``seed`` (default 0)
                          and cut into ``k`` groups of near-equal speaker count, each held out once
``{name: predefined,      fixed lists of utterance ids, or paths of text files with one id per
train, test[, valid]}``   line (blank lines and ``#`` comments ignored)
``{name: kfold, k, seed}`` stratified k-fold over utterances: SPEAKER-DEPENDENT
``{name: emobox,          EmoBox's own folds (Ma et al., Interspeech 2024): ``folder`` is EmoBox's
folder}``                 ``data/<dataset>`` with ``fold_<k>/`` lists, read by
                          :mod:`serkit.evaluation.fold_lists`; speaker-dependent where its lists are
``{name:                  cross-corpus: one fold per corpus of a pooled table (recipe key
leave_one_corpus_out}``   ``corpora``, :mod:`serkit.corpora.pool`), trained on the other corpora
========================  =====================================================================

``leave_one_corpus_out`` needs the ``corpus`` column of a pooled table and at least two corpora;
it refuses a fold whose held-out corpus has a class no other corpus has (nothing could learn it:
restrict the classes with the recipe key ``labels``). Over a pooled table, ``loso`` is
leave-one-speaker-out over the speakers of every corpus (speaker ids carry their corpus name).

Every protocol takes ``valid``: ``{speakers: n}`` or ``{fraction: f}`` (share of the fold's
training speakers, rounded, at least one) with an optional ``seed`` (default 0). The validation
rows are the rows of speakers drawn, per fold, from that fold's *training* speakers only, so they
never touch the test speakers; the draw is deterministic given ``seed`` and the fold's position.
For ``kfold`` (where every speaker is also a test speaker) only ``{fraction: f}`` is accepted and
the validation rows are a stratified random share of the training utterances. For ``predefined``,
``valid`` may instead be a list or file of utterance ids; ``emobox`` takes EmoBox's validation
lists when its folders have them (and then refuses ``valid``).

``loso_session`` with ``split_test: true`` is the IEMOCAP protocol of Zhao et al. 2019
(attention-BLSTM-FCN, Sec. IV-A): train on the speakers of four sessions, split the held-out
session by speaker into a validation half and a test half. serkit makes two folds per session,
one for each way round, so every utterance is tested exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, LeaveOneGroupOut, StratifiedKFold, train_test_split

from serkit.errors import ConfigError
from serkit.evaluation.fold_lists import read_emobox_folds

PROTOCOLS = ("loso", "loso_session", "lkgo", "predefined", "kfold", "emobox", "leave_one_corpus_out")

SPEAKER_DEPENDENT_WARNING = (
    "SPEAKER-DEPENDENT: test speakers also appear in training; results are not comparable "
    "with speaker-independent (LOSO/LOSGO) numbers and are typically much higher."
)

_OPTIONS = {
    "loso": {"valid"},
    "loso_session": {"valid", "split_test"},
    "lkgo": {"valid", "k", "seed"},
    "predefined": {"valid", "train", "test"},
    "kfold": {"valid", "k", "seed"},
    "emobox": {"valid", "folder"},
    "leave_one_corpus_out": {"valid"},
}


@dataclass(frozen=True, eq=False)
class Fold:
    """One train/test split of a corpus table.

    Attributes:
        name: human-readable fold name, e.g. ``"speaker-03"``.
        train: sorted int64 row positions of the training rows (read-only array).
        test: sorted int64 row positions of the test rows.
        valid: sorted int64 row positions of the validation rows, or ``None``.
    """

    name: str
    train: np.ndarray
    test: np.ndarray
    valid: np.ndarray | None = None

    def __post_init__(self) -> None:
        for attr in ("train", "test", "valid"):
            value = getattr(self, attr)
            if value is None:
                continue
            arr = np.sort(np.asarray(value, dtype=np.int64).ravel())
            arr.setflags(write=False)
            object.__setattr__(self, attr, arr)


@dataclass(frozen=True, eq=False)
class Protocol:
    """The folds of one evaluation protocol on one table.

    Attributes:
        name: protocol name (one of :data:`PROTOCOLS`).
        folds: the folds, in a fixed order.
        speaker_independent: ``True`` when no fold shares a speaker between its training or
            validation rows and its test rows.
        options: the resolved spec (defaults filled in), JSON-serialisable.
        speakers: speaker id of every table row (used by :meth:`describe`).
    """

    name: str
    folds: list[Fold]
    speaker_independent: bool
    options: dict[str, Any] = field(default_factory=dict)
    speakers: np.ndarray = field(default_factory=lambda: np.array([], dtype=object), repr=False)

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable summary: name, options, ``speaker_independent``, fold sizes and
        the test/validation speakers of every fold; a ``warning`` entry when speaker-dependent."""
        folds = []
        for fold in self.folds:
            entry: dict[str, Any] = {
                "name": fold.name,
                "n_train": int(fold.train.size),
                "n_valid": 0 if fold.valid is None else int(fold.valid.size),
                "n_test": int(fold.test.size),
                "test_speakers": _speaker_list(self.speakers, fold.test),
            }
            if fold.valid is not None:
                entry["valid_speakers"] = _speaker_list(self.speakers, fold.valid)
            folds.append(entry)
        out: dict[str, Any] = {
            "name": self.name,
            "speaker_independent": self.speaker_independent,
            "n_folds": len(self.folds),
            "n_utterances": int(self.speakers.size),
            "n_speakers": int(np.unique(self.speakers).size) if self.speakers.size else 0,
            "options": self.options,
            "folds": folds,
        }
        if not self.speaker_independent:
            out["warning"] = SPEAKER_DEPENDENT_WARNING
        return out


def check_protocol(spec: dict[str, Any] | str) -> tuple[str, dict[str, Any]]:
    """The protocol's name and options, checked without a corpus table: a known name, known options.

    Raises:
        ConfigError: not a name or a mapping with a ``name``, an unknown protocol or option.
    """
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or "name" not in spec:
        raise ConfigError(f"protocol spec must be a dict with a 'name' (one of {', '.join(PROTOCOLS)}), got {spec!r}")
    name = spec["name"]
    if not isinstance(name, str) or name not in _OPTIONS:
        raise ConfigError(f"unknown protocol {name!r}; available: {', '.join(PROTOCOLS)}")
    options = {k: v for k, v in spec.items() if k != "name"}
    unknown = sorted(set(options) - _OPTIONS[name], key=str)
    if unknown:
        raise ConfigError(f"protocol {name}: unknown option(s) {unknown}; allowed: {sorted(_OPTIONS[name])}")
    return name, options


def make_folds(table: pd.DataFrame, spec: dict[str, Any] | str) -> Protocol:
    """Build the folds of protocol ``spec`` on a corpus table.

    Args:
        table: corpus table with at least columns ``utterance_id``, ``speaker``, ``session``,
            ``label``; fold arrays index its rows by position.
        spec: ``{"name": …, **options}`` as in the module docstring, or a bare protocol name.

    Returns:
        A :class:`Protocol`.

    Raises:
        ConfigError: unknown protocol or option, bad option value, fewer than 2 speakers
            (sessions, groups, corpora) to split, unknown or overlapping ids in ``predefined``,
            fold lists ``emobox`` cannot match to the table
            (:func:`~serkit.evaluation.fold_lists.read_emobox_folds`), or for
            ``leave_one_corpus_out`` a table without a ``corpus`` column or a held-out corpus
            with a class the others lack.
    """
    name, options = check_protocol(spec)
    _check_table(table)
    speakers = table["speaker"].astype(str).to_numpy(dtype=object)

    builders = {
        "loso": _loso,
        "loso_session": _loso_session,
        "lkgo": _lkgo,
        "predefined": _predefined,
        "kfold": _kfold,
        "emobox": _emobox,
        "leave_one_corpus_out": _leave_one_corpus_out,
    }
    folds, resolved = builders[name](table, speakers, options)

    valid = options.get("valid")
    if valid is not None and not (name == "predefined" and not isinstance(valid, dict)):
        if name == "loso_session" and resolved.get("split_test"):
            raise ConfigError(
                "protocol loso_session: 'valid' cannot be combined with split_test "
                "(the held-out session already gives the validation half)"
            )
        folds, resolved["valid"] = _carve_valid(table, speakers, folds, valid, speaker_level=name != "kfold")

    independent = name != "kfold" and all(_disjoint_speakers(speakers, f) for f in folds)
    return Protocol(name=name, folds=folds, speaker_independent=independent, options=resolved, speakers=speakers)


def inner_folds(
    table: pd.DataFrame, train_idx: Sequence[int] | np.ndarray, by: str = "speaker", n: int | None = None
) -> list[Fold]:
    """Speaker-independent inner splits of one training fold, for hyper-parameter choice.

    Args:
        table: the corpus table.
        train_idx: row positions of the outer fold's training rows.
        by: grouping column, ``"speaker"`` or ``"session"``.
        n: ``None`` for leave-one-group-out among the training groups, otherwise
            ``GroupKFold(n)`` (2 <= n <= number of groups).

    Returns:
        Folds whose ``train``/``test`` are row positions into ``table`` (subsets of
        ``train_idx``), ``valid=None``.

    Raises:
        ConfigError: bad ``by`` or ``n``, empty ``train_idx``, or fewer than 2 groups.
    """
    if by not in ("speaker", "session"):
        raise ConfigError(f"inner_folds: by must be 'speaker' or 'session', got {by!r}")
    _check_table(table)
    idx = np.asarray(train_idx, dtype=np.int64).ravel()
    if idx.size == 0:
        raise ConfigError("inner_folds: train_idx is empty")
    if idx.min() < 0 or idx.max() >= len(table):
        raise ConfigError(f"inner_folds: train_idx outside 0..{len(table) - 1}")
    groups = table[by].astype(str).to_numpy(dtype=object)[idx]
    n_groups = np.unique(groups).size
    if n_groups < 2:
        raise ConfigError(f"inner_folds: need at least 2 {by}s in the training fold, got {n_groups}")
    if n is None:
        splitter: Any = LeaveOneGroupOut()
    else:
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or not 2 <= n <= n_groups:
            raise ConfigError(f"inner_folds: n must be an integer in 2..{n_groups}, got {n!r}")
        splitter = GroupKFold(n_splits=int(n))
    folds = []
    for i, (tr, te) in enumerate(splitter.split(idx, groups=groups)):
        held = ",".join(sorted(set(groups[te])))
        folds.append(Fold(name=f"inner-{i + 1}:{by}={held}", train=idx[tr], test=idx[te]))
    return folds


# --------------------------------------------------------------------------- builders


def _loso(table: pd.DataFrame, speakers: np.ndarray, options: dict) -> tuple[list[Fold], dict]:
    return _leave_one_group_out(speakers, "speaker"), {}


def _loso_session(table: pd.DataFrame, speakers: np.ndarray, options: dict) -> tuple[list[Fold], dict]:
    split_test = options.get("split_test", False)
    if not isinstance(split_test, bool):
        raise ConfigError(f"protocol loso_session: split_test must be true or false, got {split_test!r}")
    sessions = table["session"].astype(str).to_numpy(dtype=object)
    folds = _leave_one_group_out(sessions, "session")
    if not split_test:
        return folds, {"split_test": False}
    split = []
    for fold in folds:
        session = sessions[fold.test[0]]
        held = np.unique(speakers[fold.test])
        if held.size < 2:
            raise ConfigError(
                f"protocol loso_session split_test: session {session} has {held.size} speaker, need 2 or more"
            )
        halves = np.array_split(held, 2)
        for test_half, valid_half in ((halves[0], halves[1]), (halves[1], halves[0])):
            in_test = np.isin(speakers[fold.test], test_half)
            split.append(
                Fold(
                    name=f"session-{session}:test={','.join(test_half)}",
                    train=fold.train,
                    test=fold.test[in_test],
                    valid=fold.test[~in_test],
                )
            )
    return split, {"split_test": True}


def _lkgo(table: pd.DataFrame, speakers: np.ndarray, options: dict) -> tuple[list[Fold], dict]:
    unique = np.unique(speakers)
    if unique.size < 2:
        raise ConfigError(f"protocol lkgo: need at least 2 speakers, got {unique.size}")
    k = _int_option("lkgo", options, "k", None, low=2)
    seed = _int_option("lkgo", options, "seed", 0, low=0)
    if k > unique.size:
        raise ConfigError(f"protocol lkgo: k={k} exceeds the number of speakers ({unique.size})")
    order = np.random.default_rng(seed).permutation(unique)
    folds = []
    for i, group in enumerate(np.array_split(order, k)):
        in_test = np.isin(speakers, group)
        folds.append(
            Fold(
                name=f"group-{i + 1}of{k}:{','.join(sorted(group))}",
                train=np.flatnonzero(~in_test),
                test=np.flatnonzero(in_test),
            )
        )
    return folds, {"k": k, "seed": seed}


def _predefined(table: pd.DataFrame, speakers: np.ndarray, options: dict) -> tuple[list[Fold], dict]:
    if "train" not in options or "test" not in options:
        raise ConfigError("protocol predefined: needs both 'train' and 'test' (lists of utterance ids or files of ids)")
    ids = table["utterance_id"].astype(str).to_numpy(dtype=object)
    position = {u: i for i, u in enumerate(ids)}
    sides: dict[str, np.ndarray] = {}
    resolved: dict[str, Any] = {}
    names = ["train", "test"]
    if "valid" in options and not isinstance(options["valid"], dict):
        names.append("valid")
    for side in names:
        wanted, source = _read_ids(options[side], side)
        unknown = [u for u in wanted if u not in position]
        if unknown:
            raise ConfigError(f"protocol predefined: {len(unknown)} {side} id(s) not in the table, e.g. {unknown[:3]}")
        if len(set(wanted)) != len(wanted):
            raise ConfigError(f"protocol predefined: duplicated ids in {side}")
        if not wanted:
            raise ConfigError(f"protocol predefined: {side} list is empty")
        sides[side] = np.array([position[u] for u in wanted], dtype=np.int64)
        resolved[side] = source
    for a, b in (("train", "test"), ("train", "valid"), ("valid", "test")):
        if a in sides and b in sides:
            both = np.intersect1d(sides[a], sides[b])
            if both.size:
                example = list(ids[both[:3]])
                raise ConfigError(f"protocol predefined: {both.size} id(s) in both {a} and {b}, e.g. {example}")
    fold = Fold(name="predefined", train=sides["train"], test=sides["test"], valid=sides.get("valid"))
    return [fold], resolved


def _kfold(table: pd.DataFrame, speakers: np.ndarray, options: dict) -> tuple[list[Fold], dict]:
    k = _int_option("kfold", options, "k", 5, low=2)
    seed = _int_option("kfold", options, "seed", 0, low=0)
    labels = table["label"].astype(str).to_numpy()
    smallest = int(pd.Series(labels).value_counts().min())
    if k > smallest:
        raise ConfigError(
            f"protocol kfold: k={k} exceeds the smallest class count ({smallest}); stratification impossible"
        )
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = [
        Fold(name=f"fold-{i + 1}of{k}", train=tr, test=te)
        for i, (tr, te) in enumerate(splitter.split(np.zeros(len(labels)), labels))
    ]
    return folds, {"k": k, "seed": seed, "speaker_dependent": True}


def _emobox(table: pd.DataFrame, speakers: np.ndarray, options: dict) -> tuple[list[Fold], dict]:
    if "folder" not in options:
        raise ConfigError("protocol emobox: needs 'folder', EmoBox's data/<dataset> folder of fold_<k> lists")
    lists = read_emobox_folds(options["folder"], table)
    has_valid = [f.name for f in lists.folds if "valid" in f.rows]
    if has_valid and "valid" in options:
        raise ConfigError(f"protocol emobox: {has_valid[0]} has EmoBox's own valid list; drop the 'valid' option")
    folds = [
        Fold(name=f.name, train=f.rows["train"], test=f.rows["test"], valid=f.rows.get("valid")) for f in lists.folds
    ]
    resolved = {"folder": str(Path(options["folder"]).expanduser()), "dataset": lists.dataset,
                "sha256": lists.sha256, "n_unlisted": lists.n_unlisted}  # fmt: skip
    return folds, resolved


def _leave_one_corpus_out(table: pd.DataFrame, speakers: np.ndarray, options: dict) -> tuple[list[Fold], dict]:
    if "corpus" not in table.columns:
        raise ConfigError(
            "protocol leave_one_corpus_out: the table has no 'corpus' column; pool several corpora (recipe key corpora)"
        )
    folds = _leave_one_group_out(table["corpus"].astype(str).to_numpy(dtype=object), "corpus")
    labels = table["label"].astype(str).to_numpy()
    for fold in folds:
        unseen = sorted(set(labels[fold.test]) - set(labels[fold.train]))
        if unseen:
            raise ConfigError(
                f"protocol leave_one_corpus_out: fold {fold.name} tests {unseen}, which no other corpus has; "
                "keep the classes the corpora share (recipe key labels)"
            )
    return folds, {}


# --------------------------------------------------------------------------- helpers


def _leave_one_group_out(groups: np.ndarray, what: str) -> list[Fold]:
    unique = np.unique(groups)
    if unique.size < 2:
        raise ConfigError(f"leave-one-{what}-out needs at least 2 {what}s, got {unique.size}")
    return [
        Fold(name=f"{what}-{g}", train=np.flatnonzero(groups != g), test=np.flatnonzero(groups == g))
        for g in unique
    ]


def _carve_valid(
    table: pd.DataFrame, speakers: np.ndarray, folds: list[Fold], valid: Any, *, speaker_level: bool
) -> tuple[list[Fold], dict]:
    if not isinstance(valid, dict) or len(valid.keys() & {"speakers", "fraction"}) != 1:
        raise ConfigError(
            f"option valid must be {{speakers: n}} or {{fraction: f}} (plus optional seed), got {valid!r}"
        )
    extra = set(valid) - {"speakers", "fraction", "seed"}
    if extra:
        raise ConfigError(f"option valid: unknown key(s) {sorted(extra)}")
    seed = _int_option("valid", valid, "seed", 0, low=0)
    resolved: dict[str, Any] = {"seed": seed}
    if "fraction" in valid:
        fraction = valid["fraction"]
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
            raise ConfigError(f"option valid: fraction must be a number in (0, 1), got {fraction!r}")
        resolved["fraction"] = float(fraction)
    else:
        if not speaker_level:
            raise ConfigError(
                "protocol kfold: valid must be {fraction: f}; every speaker is a test speaker in some fold"
            )
        resolved["speakers"] = _int_option("valid", valid, "speakers", None, low=1)

    labels = table["label"].astype(str).to_numpy()
    out = []
    for i, fold in enumerate(folds):
        if not speaker_level:
            tr, va = train_test_split(
                fold.train, test_size=resolved["fraction"], random_state=seed + i, stratify=labels[fold.train]
            )
            out.append(Fold(name=fold.name, train=tr, test=fold.test, valid=va))
            continue
        pool = np.unique(speakers[fold.train])
        if "fraction" in resolved:
            count = max(1, int(round(resolved["fraction"] * pool.size)))
        else:
            count = resolved["speakers"]
        if count >= pool.size:
            raise ConfigError(
                f"fold {fold.name}: cannot take {count} validation speaker(s) from {pool.size} training speaker(s)"
            )
        chosen = np.random.default_rng([seed, i]).choice(pool, size=count, replace=False)
        in_valid = np.isin(speakers[fold.train], chosen)
        out.append(Fold(name=fold.name, train=fold.train[~in_valid], test=fold.test, valid=fold.train[in_valid]))
    return out, resolved


def _disjoint_speakers(speakers: np.ndarray, fold: Fold) -> bool:
    test = set(speakers[fold.test])
    seen = set(speakers[fold.train])
    if fold.valid is not None:
        seen |= set(speakers[fold.valid])
    return not (test & seen)


def _read_ids(value: Any, side: str) -> tuple[list[str], Any]:
    """Ids from a list or a text file; also the JSON-serialisable form to record."""
    if isinstance(value, (str, Path)):
        path = Path(value).expanduser()
        if not path.is_file():
            raise ConfigError(f"protocol predefined: {side} id file {path} does not exist")
        lines = path.read_text(encoding="utf-8").splitlines()
        ids = [s for s in (line.split("#", 1)[0].strip() for line in lines) if s]
        return ids, str(path)
    if isinstance(value, (list, tuple, np.ndarray, pd.Series)):
        ids = [str(u) for u in value]
        return ids, f"{len(ids)} ids given inline"
    raise ConfigError(
        f"protocol predefined: {side} must be a list of utterance ids or a file path, got {type(value).__name__}"
    )


def _int_option(who: str, options: dict, key: str, default: int | None, *, low: int) -> int:
    value = options.get(key, default)
    if value is None:
        raise ConfigError(f"{who}: option {key!r} is required")
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(f"{who}: option {key!r} must be an integer >= {low}, got {value!r}")
    return int(value)


def _check_table(table: pd.DataFrame) -> None:
    if not isinstance(table, pd.DataFrame):
        raise ConfigError(f"expected a corpus table (pandas DataFrame), got {type(table).__name__}")
    missing = [c for c in ("utterance_id", "speaker", "session", "label") if c not in table.columns]
    if missing:
        raise ConfigError(f"corpus table lacks columns {missing}")
    if table.empty:
        raise ConfigError("corpus table is empty")


def _speaker_list(speakers: np.ndarray, rows: np.ndarray) -> list[str]:
    return sorted({str(s) for s in speakers[rows]}) if speakers.size else []
