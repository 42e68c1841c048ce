"""Several corpora as one table, for cross-corpus evaluation and for training on all of them.

:func:`load_pooled` loads each corpus with its adapter and stacks the tables. Identifiers are
made unique across corpora by prefixing them with the corpus name: ``utterance_id``, ``speaker``
and ``session`` ``"03"`` of EmoDB become ``"emodb-03"``, so leave-one-speaker-out over the pooled
table holds out one real person, and a speaker id that two corpora share (``"01"``) never joins
two people. A column ``corpus`` (the adapter name) is added; it is what the protocol
``leave_one_corpus_out`` (:mod:`serkit.evaluation.protocols`) groups on. Labels need no mapping:
every adapter already speaks serkit's vocabulary (:mod:`serkit.corpora.vocabulary`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from serkit.corpora.base import COLUMNS, check_table, get_corpus
from serkit.corpora.vocabulary import EMOTIONS
from serkit.errors import ConfigError

#: Columns of a pooled table: :data:`~serkit.corpora.base.COLUMNS` and the corpus name.
POOLED_COLUMNS = (*COLUMNS, "corpus")
#: The identifier columns that get the ``<corpus>-`` prefix.
PREFIXED = ("utterance_id", "speaker", "session")


def load_pooled(specs: Sequence[Mapping[str, Any]]) -> tuple[pd.DataFrame, list[str]]:
    """Load and stack corpora ``[{name, root, options}, ...]`` (module docstring).

    Args:
        specs: one mapping per corpus: ``name`` (adapter), ``root`` (folder), optional
            ``options`` (the adapter's options). Names must be distinct.

    Returns:
        The pooled table (columns :data:`POOLED_COLUMNS`, corpora in the order given, each sorted
        by its own utterance id) and its class order: the labels present, in the order of
        :data:`~serkit.corpora.vocabulary.EMOTIONS`, then any labels of user manifests outside
        the vocabulary, sorted.

    Raises:
        ConfigError: no corpus, a corpus named twice, an unknown adapter or option.
        CorpusError, UnknownLabelError: a corpus folder its adapter refuses (the message names it).
    """
    names = [spec["name"] for spec in specs]
    if not names:
        raise ConfigError("pooled corpora: the list is empty")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"pooled corpora: {twice} named more than once")
    parts = []
    for spec in specs:
        table = get_corpus(spec["name"]).load(spec["root"], **(spec.get("options") or {}))
        parts.append(prefix_ids(table, spec["name"]))
    pooled = pd.concat(parts, ignore_index=True)
    check_table(pooled, "pooled corpora")  # ids unique across corpora
    present = set(pooled["label"])
    labels = [lab for lab in EMOTIONS if lab in present] + sorted(present - set(EMOTIONS))
    return pooled, labels


def prefix_ids(table: pd.DataFrame, corpus: str) -> pd.DataFrame:
    """A copy of one corpus's table with ``<corpus>-`` before every id of :data:`PREFIXED` and a
    ``corpus`` column.

    Raises:
        CorpusError: the table lacks a column of :data:`~serkit.corpora.base.COLUMNS`.
    """
    out = check_table(table, corpus)
    for column in PREFIXED:
        out[column] = f"{corpus}-" + out[column]
    out["corpus"] = corpus
    return out

