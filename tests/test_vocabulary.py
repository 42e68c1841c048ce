"""One label vocabulary: every adapter's codes map through serkit.corpora.vocabulary's table, and
the recipe key ``labels`` restricts or merges classes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from fixtures_corpora import build_iemocap, populate
from serkit.corpora import EMOTIONS, get_corpus, list_corpora, load_corpus
from serkit.corpora.vocabulary import LABEL_TABLE, codes, in_vocabulary_order, label_mapping, select_labels
from serkit.errors import ConfigError

CLOSED = [name for name in list_corpora() if name != "manifest"]


def one_file_per_code(name: str, root: Path) -> dict[str, str]:
    """Write one utterance per code of ``name`` in its documented layout; return utterance id -> code."""
    table = {row.code: row for row in LABEL_TABLE[name]}
    if name == "iemocap":
        dialog = "Ses01F_impro01"
        utts = [(f"{dialog}_F{i:03d}", code) for i, code in enumerate(table)]
        build_iemocap(root, {dialog: utts})
        return dict(utts)
    layout = {
        "emodb": lambda c: f"wav/03a01{c}a.wav",
        "emovo": lambda c: f"f1/{c}-f1-b1.wav",
        "ravdess": lambda c: f"Actor_01/03-01-{c}-01-01-01-01.wav",
        "tess": lambda c: f"OAF_dog_{c}.wav",
        "cremad": lambda c: f"AudioWAV/1001_DFA_{c}_XX.wav",
        "savee": lambda c: f"DC_{c}01.wav",
    }[name]
    files = {layout(code): code for code in table}
    populate(root, files)
    return {Path(rel).stem: code for rel, code in files.items()}


@pytest.mark.parametrize("name", CLOSED)
def test_every_adapter_labels_its_codes_through_the_table(name, tmp_path):
    written = one_file_per_code(name, tmp_path)
    loaded = load_corpus(name, tmp_path, strict=False)
    adapter = get_corpus(name)
    assert set(loaded["label"]) <= set(EMOTIONS) and set(adapter.labels) <= set(EMOTIONS)
    assert adapter.labels == in_vocabulary_order(adapter.labels)  # reports' class order
    by_code = codes(name)
    for stem, code in written.items():
        rows = loaded[loaded["utterance_id"] == stem]
        if code in by_code and by_code[code] in adapter.labels:
            assert rows["label"].tolist() == [by_code[code]], (name, code)
        else:  # IEMOCAP's 4-class protocol drops the other categories
            assert rows.empty, (name, code)
    assert set(loaded["label"]) == set(adapter.labels)


def test_the_table_covers_every_adapter_and_names_only_vocabulary_labels():
    assert set(LABEL_TABLE) == set(CLOSED)
    for name, rows in LABEL_TABLE.items():
        assert len({r.code for r in rows}) == len(rows), name
        assert {r.label for r in rows} - {None} <= set(EMOTIONS), name
    assert codes("emovo")["gio"] == "happiness" and codes("tess")["ps"] == "surprise"
    assert codes("iemocap")["exc"] == "happiness" and "fru" not in codes("iemocap")
    with pytest.raises(ConfigError, match="no codes for corpus 'nope'"):
        codes("nope")


@pytest.fixture
def pooled() -> pd.DataFrame:
    labels = ["anger", "calm", "neutral", "neutral", "boredom", "surprise", "calm"]
    return pd.DataFrame({"utterance_id": [f"u{i}" for i in range(len(labels))], "label": labels})


def test_a_label_list_keeps_those_labels_in_its_order(pooled):
    kept, order = select_labels(pooled, ["neutral", "anger"])
    assert order == ["neutral", "anger"]
    assert kept["utterance_id"].tolist() == ["u0", "u2", "u3"] and kept["label"].tolist() == ["anger", "neutral", "neutral"]


def test_a_label_mapping_merges_classes(pooled):
    kept, order = select_labels(pooled, {"neutral": ["neutral", "calm"], "anger": "anger"})
    assert order == ["neutral", "anger"]
    assert dict(zip(kept["utterance_id"], kept["label"])) == {
        "u0": "anger", "u1": "neutral", "u2": "neutral", "u3": "neutral", "u6": "neutral"
    }  # fmt: skip
    assert len(pooled) == 7  # the input table is left alone


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (["fear"], r"\['fear'\] occur in no utterance"),
        (["anger", "anger"], "list of distinct label names"),
        ([], "list of distinct label names"),
        ("anger", "list of distinct label names"),
        ({"anger": []}, "list of distinct label names"),
        ({"neutral": ["neutral", "calm"], "calm": "calm"}, r"\['calm'\] are given to more than one class"),
        ({"low_arousal": ["neutral", "calm"]}, r"\['low_arousal'\] are not in serkit's vocabulary"),
    ],
)
def test_bad_label_selections_are_refused(pooled, labels, match):
    with pytest.raises(ConfigError, match=match):
        select_labels(pooled, labels)


def test_own_class_names_are_accepted_for_own_labels():
    table = pd.DataFrame({"utterance_id": ["a", "b", "c"], "label": ["cheerful", "grumpy", "neutral"]})
    kept, order = select_labels(table, {"positive": "cheerful", "other": ["grumpy", "neutral"]})
    assert order == ["positive", "other"] and kept["label"].tolist() == ["positive", "other", "other"]
    assert label_mapping(["x", "y"]) == {"x": ["x"], "y": ["y"]}
