"""Corpus adapters: each turns a corpus folder into one table (see :mod:`serkit.corpora.base`)."""

from serkit.corpora.base import COLUMNS, EMOTIONS, Corpus, get_corpus, list_corpora, load_corpus
from serkit.corpora.summary import corpus_summary

__all__ = ["COLUMNS", "EMOTIONS", "Corpus", "corpus_summary", "get_corpus", "list_corpora", "load_corpus"]
