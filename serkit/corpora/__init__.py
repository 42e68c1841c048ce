"""Corpus adapters: each turns a corpus folder into one table (see :mod:`serkit.corpora.base`),
labelled in one vocabulary (:mod:`serkit.corpora.vocabulary`); several pool into one table
(:mod:`serkit.corpora.pool`)."""

from serkit.corpora.base import COLUMNS, EMOTIONS, Corpus, get_corpus, list_corpora, load_corpus
from serkit.corpora.pool import load_pooled
from serkit.corpora.summary import corpus_summary
from serkit.corpora.vocabulary import LABEL_TABLE, select_labels

__all__ = [
    "COLUMNS",
    "EMOTIONS",
    "LABEL_TABLE",
    "Corpus",
    "corpus_summary",
    "get_corpus",
    "list_corpora",
    "load_corpus",
    "load_pooled",
    "select_labels",
]
