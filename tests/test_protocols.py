"""Evaluation protocols and per-fold normalisation, on the real EmoDB table where it matters."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures_corpora import populate, ravdess_files

from serkit.corpora import load_corpus
from serkit.errors import BundleError, ConfigError, FeatureError
from serkit.evaluation import Fold, inner_folds, make_folds
from serkit.features.normalise import Normaliser, fit_normaliser

# Speaker -> utterance count, from the corpus README.
EMODB_COUNTS = {"03": 49, "08": 58, "09": 43, "10": 38, "11": 55, "12": 35, "13": 61, "14": 69, "15": 56, "16": 71}
EMODB_CODES = {
    "W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happiness", "T": "sadness", "N": "neutral"
}


@pytest.fixture(scope="module")
def emodb_table(emodb_root: Path) -> pd.DataFrame:
    """The EmoDB corpus table built from file names alone (independent of the corpus adapter)."""
    rows = []
    for path in sorted((emodb_root / "wav").glob("*.wav")):
        stem = path.stem
        rows.append(
            {
                "utterance_id": stem,
                "path": str(path),
                "speaker": stem[:2],
                "session": stem[:2],
                "gender": "",
                "label": EMODB_CODES[stem[5]],
                "duration": 0.0,
            }
        )
    return pd.DataFrame(rows)


def iemocap_like(per_speaker: int = 12) -> pd.DataFrame:
    """A small IEMOCAP-shaped table: 5 sessions x (F, M) speakers, 4 classes."""
    rows = []
    labels = ["anger", "happiness", "neutral", "sadness"]
    for s in range(1, 6):
        for g in ("F", "M"):
            for i in range(per_speaker):
                rows.append(
                    {
                        "utterance_id": f"Ses0{s}{g}_{i:03d}",
                        "path": "",
                        "speaker": f"Ses0{s}{g}",
                        "session": f"Ses0{s}",
                        "gender": g.lower(),
                        "label": labels[i % 4],
                        "duration": 1.0,
                    }
                )
    return pd.DataFrame(rows)


def assert_partition(fold: Fold, n: int) -> None:
    parts = [fold.train, fold.test] + ([fold.valid] if fold.valid is not None else [])
    joined = np.concatenate(parts)
    assert np.array_equal(np.sort(joined), np.arange(n)), "train/valid/test must partition the rows"


def speakers_of(table: pd.DataFrame, rows: np.ndarray) -> set[str]:
    return set(table["speaker"].to_numpy()[rows])


# --------------------------------------------------------------------------- LOSO on EmoDB


def test_emodb_table_matches_readme(emodb_table):
    assert len(emodb_table) == 535
    assert emodb_table["speaker"].value_counts().to_dict() == EMODB_COUNTS


def test_loso_emodb_ten_single_speaker_folds(emodb_table):
    protocol = make_folds(emodb_table, {"name": "loso"})
    assert protocol.speaker_independent is True
    assert len(protocol.folds) == 10
    seen = []
    for fold in protocol.folds:
        test_spk = speakers_of(emodb_table, fold.test)
        assert len(test_spk) == 1
        (spk,) = test_spk
        seen.append(spk)
        assert fold.test.size == EMODB_COUNTS[spk]
        assert np.intersect1d(fold.train, fold.test).size == 0
        assert fold.valid is None
        assert_partition(fold, len(emodb_table))
        assert spk not in speakers_of(emodb_table, fold.train)
    assert sorted(seen) == sorted(EMODB_COUNTS)
    description = protocol.describe()
    json.dumps(description)  # JSON-serialisable
    assert description["speaker_independent"] is True
    assert [f["n_test"] for f in description["folds"]] == [EMODB_COUNTS[s] for s in sorted(EMODB_COUNTS)]
    assert "warning" not in description


def test_fold_arrays_are_read_only(emodb_table):
    fold = make_folds(emodb_table, "loso").folds[0]
    with pytest.raises(ValueError):
        fold.test[0] = 0


@pytest.mark.parametrize("valid", [{"speakers": 2, "seed": 3}, {"fraction": 0.25}])
def test_loso_validation_speakers_come_from_training_speakers(emodb_table, valid):
    protocol = make_folds(emodb_table, {"name": "loso", "valid": valid})
    plain = make_folds(emodb_table, "loso")
    expected = valid.get("speakers", round(0.25 * 9))
    assert protocol.speaker_independent
    for fold, base in zip(protocol.folds, plain.folds):
        v_spk = speakers_of(emodb_table, fold.valid)
        assert len(v_spk) == expected
        assert v_spk <= speakers_of(emodb_table, base.train)
        assert not v_spk & speakers_of(emodb_table, fold.test)
        assert not v_spk & speakers_of(emodb_table, fold.train)
        assert np.array_equal(fold.test, base.test)
        assert_partition(fold, len(emodb_table))
    # deterministic given the seed; another seed draws differently somewhere
    again = make_folds(emodb_table, {"name": "loso", "valid": valid})
    assert all(np.array_equal(a.valid, b.valid) for a, b in zip(protocol.folds, again.folds))
    other = make_folds(emodb_table, {"name": "loso", "valid": {**valid, "seed": 99}})
    assert any(not np.array_equal(a.valid, b.valid) for a, b in zip(protocol.folds, other.folds))


def test_lkgo_partitions_speakers(emodb_table):
    protocol = make_folds(emodb_table, {"name": "lkgo", "k": 3, "seed": 7})
    assert protocol.speaker_independent and len(protocol.folds) == 3
    groups = [speakers_of(emodb_table, f.test) for f in protocol.folds]
    assert sorted(len(g) for g in groups) == [3, 3, 4]
    assert set().union(*groups) == set(EMODB_COUNTS)
    assert sum(len(g) for g in groups) == 10  # pairwise disjoint
    for fold in protocol.folds:
        assert_partition(fold, len(emodb_table))
        assert not speakers_of(emodb_table, fold.train) & speakers_of(emodb_table, fold.test)
    again = make_folds(emodb_table, {"name": "lkgo", "k": 3, "seed": 7})
    assert [f.name for f in again.folds] == [f.name for f in protocol.folds]
    assert all(np.array_equal(a.test, b.test) for a, b in zip(protocol.folds, again.folds))


def test_kfold_is_stratified_and_flagged_speaker_dependent(emodb_table):
    protocol = make_folds(emodb_table, {"name": "kfold", "k": 5, "seed": 0})
    assert protocol.speaker_independent is False
    description = protocol.describe()
    assert description["speaker_independent"] is False
    assert "SPEAKER-DEPENDENT" in description["warning"]
    overall = emodb_table["label"].value_counts()
    for fold in protocol.folds:
        assert_partition(fold, len(emodb_table))
        counts = emodb_table["label"].iloc[fold.test].value_counts()
        # stratified: every class's test count is its share of the fold, within one utterance
        expected = overall * fold.test.size / len(emodb_table)
        assert np.all(np.abs(counts.reindex(overall.index) - expected) <= 1.0)
    sizes = sorted(f.test.size for f in protocol.folds)
    assert sizes[-1] - sizes[0] <= 1


def test_kfold_validation_is_a_fraction_of_training_rows(emodb_table):
    protocol = make_folds(emodb_table, {"name": "kfold", "k": 5, "valid": {"fraction": 0.2}})
    for fold in protocol.folds:
        assert_partition(fold, len(emodb_table))
        assert abs(fold.valid.size - 0.2 * (fold.valid.size + fold.train.size)) <= 1
    with pytest.raises(ConfigError, match="fraction"):
        make_folds(emodb_table, {"name": "kfold", "valid": {"speakers": 1}})


# --------------------------------------------------------------------------- sessions (IEMOCAP-like)


def test_loso_session_holds_out_whole_sessions():
    table = iemocap_like()
    protocol = make_folds(table, {"name": "loso_session"})
    assert len(protocol.folds) == 5 and protocol.speaker_independent
    for fold in protocol.folds:
        assert len(set(table["session"].iloc[fold.test])) == 1
        assert len(speakers_of(table, fold.test)) == 2
        assert_partition(fold, len(table))


def test_loso_session_split_test_halves_by_speaker():
    table = iemocap_like()
    protocol = make_folds(table, {"name": "loso_session", "split_test": True})
    assert len(protocol.folds) == 10 and protocol.speaker_independent
    tested = []
    for fold in protocol.folds:
        test_spk, valid_spk = speakers_of(table, fold.test), speakers_of(table, fold.valid)
        assert len(test_spk) == 1 and len(valid_spk) == 1 and test_spk != valid_spk
        session = set(table["session"].iloc[np.concatenate([fold.test, fold.valid])])
        assert len(session) == 1  # both halves come from the one held-out session
        assert len(set(table["session"].iloc[fold.train])) == 4  # 8 speakers of 4 sessions
        assert len(speakers_of(table, fold.train)) == 8
        assert_partition(fold, len(table))
        tested.extend(table["utterance_id"].iloc[fold.test])
    assert sorted(tested) == sorted(table["utterance_id"])  # every utterance tested exactly once
    with pytest.raises(ConfigError, match="split_test"):
        make_folds(table, {"name": "loso_session", "split_test": True, "valid": {"speakers": 1}})


# --------------------------------------------------------------------------- predefined


def test_predefined_lists_and_files(tmp_path):
    table = iemocap_like(per_speaker=4)
    ids = table["utterance_id"]
    train_ids = ids[~ids.str.startswith("Ses05")].tolist()
    test_ids = ids[ids.str.startswith("Ses05")].tolist()
    protocol = make_folds(table, {"name": "predefined", "train": train_ids, "test": test_ids})
    (fold,) = protocol.folds
    assert protocol.speaker_independent
    assert list(table["utterance_id"].iloc[fold.test]) == sorted(test_ids)
    assert_partition(fold, len(table))

    (tmp_path / "train.txt").write_text("# training ids\n" + "\n".join(train_ids) + "\n\n")
    (tmp_path / "test.txt").write_text("\n".join(test_ids))
    spec = {"name": "predefined", "train": str(tmp_path / "train.txt"), "test": tmp_path / "test.txt"}
    from_files = make_folds(table, spec)
    assert np.array_equal(from_files.folds[0].train, fold.train)
    assert np.array_equal(from_files.folds[0].test, fold.test)


def test_predefined_rejects_overlap_and_unknown_ids_and_flags_shared_speakers():
    table = iemocap_like(per_speaker=4)
    ids = table["utterance_id"].tolist()
    with pytest.raises(ConfigError, match="both train and test"):
        make_folds(table, {"name": "predefined", "train": ids[:30], "test": ids[29:]})
    with pytest.raises(ConfigError, match="not in the table"):
        make_folds(table, {"name": "predefined", "train": ids[:30] + ["nope"], "test": ids[30:]})
    with pytest.raises(ConfigError, match="needs both"):
        make_folds(table, {"name": "predefined", "train": ids})
    # an utterance-level split through a speaker is honestly flagged as speaker-dependent
    mixed = make_folds(table, {"name": "predefined", "train": ids[::2], "test": ids[1::2]})
    assert mixed.speaker_independent is False
    assert "warning" in mixed.describe()


# --------------------------------------------------------------------------- EmoBox fold lists

#: Tiny fold lists written in EmoBox's format and layout (data/<dataset>/fold_<k>/…), real ids.
EMOBOX = Path(__file__).resolve().parent / "data" / "emobox"


def emobox_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def emobox_list(folder: Path, fold: str, side: str) -> Path:
    (path,) = (folder / fold).glob(f"*_{side}_{fold}.jsonl")
    return path


def emobox_copy(tmp_path: Path, dataset: str = "emovo") -> Path:
    return Path(shutil.copytree(EMOBOX / dataset, tmp_path / dataset))


def rewrite(path: Path, edit) -> None:
    path.write_text("\n".join(edit(path.read_text(encoding="utf-8").splitlines())) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def emovo_table(emovo_root: Path) -> pd.DataFrame:
    return load_corpus("emovo", emovo_root)


def assert_lists_read(table: pd.DataFrame, protocol, folder: Path) -> None:
    """Every fold holds exactly the utterances its files list: EmoBox's audio file stem is the
    serkit utterance id for these corpora, a derivation independent of the protocol's key mapping."""
    ids = table["utterance_id"].to_numpy()
    for fold in protocol.folds:
        for side, rows in (("train", fold.train), ("test", fold.test)):
            stems = [Path(r["wav"]).stem for r in emobox_records(emobox_list(folder, fold.name, side))]
            assert sorted(ids[rows]) == sorted(stems)


def test_emobox_lists_match_the_real_emovo_table(emovo_table):
    folder = EMOBOX / "emovo"
    protocol = make_folds(emovo_table, {"name": "emobox", "folder": str(folder)})
    assert [f.name for f in protocol.folds] == sorted(p.name for p in folder.iterdir())
    assert_lists_read(emovo_table, protocol, folder)
    labels = emovo_table["label"].to_numpy()
    for fold in protocol.folds:
        assert fold.valid is None and np.intersect1d(fold.train, fold.test).size == 0
        assert len(speakers_of(emovo_table, fold.test)) == 1  # EmoBox's EMOVO folds hold out one speaker
        assert not speakers_of(emovo_table, fold.train) & speakers_of(emovo_table, fold.test)
        assert set(labels[fold.test]) < set(emovo_table["label"])
    assert protocol.speaker_independent is True
    description = protocol.describe()
    json.dumps(description)
    assert "warning" not in description
    used = set(np.concatenate([np.concatenate([f.train, f.test]) for f in protocol.folds]))
    assert description["options"]["dataset"] == "emovo"
    assert description["options"]["n_unlisted"] == len(emovo_table) - len(used) > 0


def test_emobox_lists_digest_follows_their_content(emovo_table, tmp_path):
    first = make_folds(emovo_table, {"name": "emobox", "folder": EMOBOX / "emovo"}).options["sha256"]
    folder = emobox_copy(tmp_path)
    assert make_folds(emovo_table, {"name": "emobox", "folder": folder}).options["sha256"] == first
    rewrite(emobox_list(folder, "fold_2", "train"), lambda lines: lines[:-1])
    changed = make_folds(emovo_table, {"name": "emobox", "folder": folder})
    assert changed.options["sha256"] != first
    assert changed.folds[1].train.size == 3


def test_emobox_emodb_lists_are_flagged_speaker_dependent(emodb_table, tmp_path):
    folder = emobox_copy(tmp_path, "emodb")
    # the older un-underscored lists EmoBox also ships are not read, whatever they hold
    rewrite(folder / "fold_1" / "emodb_train_fold1.jsonl", lambda lines: lines + ['{"key": "emodb-99z99Zz"}'])
    protocol = make_folds(emodb_table, {"name": "emobox", "folder": folder})
    assert_lists_read(emodb_table, protocol, folder)
    assert protocol.speaker_independent is False
    for fold in protocol.folds:
        assert speakers_of(emodb_table, fold.test) <= speakers_of(emodb_table, fold.train)
    description = protocol.describe()
    assert description["speaker_independent"] is False
    assert "SPEAKER-DEPENDENT" in description["warning"]


def test_emobox_ravdess_and_tess_ids_reach_the_adapters_tables(tmp_path):
    actors = ("Actor_01/", "Actor_02/", "Actor_03/", "Actor_04/")
    ravdess = load_corpus(
        "ravdess", populate(tmp_path / "ravdess", [f for f in ravdess_files() if f.startswith(actors)]), strict=False
    )
    protocol = make_folds(ravdess, {"name": "emobox", "folder": EMOBOX / "ravdess"})
    assert_lists_read(ravdess, protocol, EMOBOX / "ravdess")
    assert protocol.speaker_independent is True
    assert [len(speakers_of(ravdess, f.test)) for f in protocol.folds] == [2, 2]

    tess_names = [Path(r["wav"]).stem for side in ("train", "test")
                  for r in emobox_records(emobox_list(EMOBOX / "tess", "fold_1", side))]  # fmt: skip
    folders = {"angry": "angry", "ps": "pleasant_surprised", "sad": "Sad"}
    files = [f"{n[:3]}_{folders[n.split('_')[2]]}/{n}.wav" for n in tess_names]
    tess = load_corpus("tess", populate(tmp_path / "tess", files), strict=False)
    protocol = make_folds(tess, {"name": "emobox", "folder": EMOBOX / "tess"})
    assert_lists_read(tess, protocol, EMOBOX / "tess")
    assert protocol.speaker_independent is False  # one stratified split over both speakers
    assert len(protocol.folds) == 1 and protocol.folds[0].test.size == 2


def test_emobox_validation_lists_and_carved_validation(emovo_table, tmp_path):
    carved = make_folds(emovo_table, {"name": "emobox", "folder": EMOBOX / "emovo", "valid": {"speakers": 1}})
    plain = make_folds(emovo_table, {"name": "emobox", "folder": EMOBOX / "emovo"})
    for fold, base in zip(carved.folds, plain.folds):
        assert len(speakers_of(emovo_table, fold.valid)) == 1
        assert speakers_of(emovo_table, fold.valid) < speakers_of(emovo_table, base.train)
        assert np.array_equal(np.sort(np.concatenate([fold.train, fold.valid])), base.train)
    folder = emobox_copy(tmp_path)
    for k in (1, 2, 3):  # EmoBox's own validation list: the first training line of each fold
        train = emobox_list(folder, f"fold_{k}", "train")
        lines = train.read_text(encoding="utf-8").splitlines()
        (folder / f"fold_{k}" / f"emovo_valid_fold_{k}.jsonl").write_text(lines[0] + "\n", encoding="utf-8")
        train.write_text("\n".join(lines[1:]) + "\n", encoding="utf-8")
    listed = make_folds(emovo_table, {"name": "emobox", "folder": folder})
    for fold, base in zip(listed.folds, plain.folds):
        assert fold.valid.size == 1 and fold.train.size == base.train.size - 1
        assert np.array_equal(np.sort(np.concatenate([fold.train, fold.valid])), base.train)
    with pytest.raises(ConfigError, match="own valid list"):
        make_folds(emovo_table, {"name": "emobox", "folder": folder, "valid": {"speakers": 1}})


def _in_list(fold: str, side: str, edit):
    """An edit of one list file of a copied EmoBox folder: ``edit(lines) -> lines``."""
    return lambda folder: rewrite(emobox_list(folder, fold, side), edit)


def _replace_key(old: str, new: str):
    return lambda lines: [line.replace(f'"{old}"', f'"{new}"') for line in lines]


def _first_emo(emo: str):  # fold_1's first test line is emovo-gio-f2-b2, emo "gio"
    return lambda lines: [lines[0].replace('"emo": "gio"', f'"emo": "{emo}"')] + lines[1:]


def _add_first_test_line_to_train(folder: Path) -> None:
    first = emobox_list(folder, "fold_1", "test").read_text(encoding="utf-8").splitlines()[0]
    rewrite(emobox_list(folder, "fold_1", "train"), lambda lines: lines + [first])


def _rename_dataset(folder: Path) -> None:
    for path in folder.glob("fold_*/*.jsonl"):
        path.rename(path.with_name(path.name.replace("emovo_", "italian_")))


@pytest.mark.parametrize(
    "edit, message",
    [
        # an EmoBox id with no utterance in the table: the message names the file, the id and the serkit id
        (_in_list("fold_2", "test", _replace_key("emovo-neu-m3-l2", "emovo-neu-m3-l9")),
         (r"emovo_test_fold_2\.jsonl: 1 listed id.*line 2: EmoBox id 'emovo-neu-m3-l9' "
          r"\(serkit utterance_id 'neu-m3-l9'\)")),
        (_add_first_test_line_to_train,
         r"1 utterance\(s\) in both .*emovo_train_fold_1\.jsonl and .*emovo_test_fold_1\.jsonl"),
        (_in_list("fold_3", "test", lambda lines: lines + lines[:1]), "listed twice"),
        (_in_list("fold_1", "test", _first_emo("rab")),
         "EmoBox labels 'emovo-gio-f2-b2' 'rab' .anger. but the corpus table says 'happiness'"),
        (_in_list("fold_1", "test", _first_emo("joy")), "emotion 'joy', not one of"),
        (_in_list("fold_1", "train", lambda lines: lines[:2] + ["{not json"] + lines[2:]),
         r"emovo_train_fold_1\.jsonl:3: not valid JSON"),
        (_in_list("fold_1", "train", _replace_key("emovo-rab-m1-b1", "rab-m1-b1")),
         "expected a string 'key' starting 'emovo-'"),
        (_in_list("fold_1", "train", lambda lines: ["[1, 2]"] + lines), "expected a JSON object"),
        (_in_list("fold_2", "test", lambda lines: []), "lists no utterance"),
        (lambda folder: (folder / "fold_2").rename(folder / "fold_4"), "fold_2 is missing"),
        (lambda folder: emobox_list(folder, "fold_3", "test").unlink(), "no test list"),
        (lambda folder: shutil.copy(emobox_list(folder, "fold_1", "train"), folder / "fold_1" / "x_train_fold_1.jsonl"),
         "several train lists"),
        (_rename_dataset, "no id mapping for EmoBox dataset 'italian'"),
        (lambda folder: emobox_list(folder, "fold_2", "train").rename(folder / "fold_2" / "emodb_train_fold_2.jsonl"),
         r"mixes lists of datasets \['emodb', 'emovo'\]"),
        (lambda folder: [shutil.rmtree(d) for d in folder.glob("fold_*")], "no fold_<k> folders"),
    ],
)
def test_emobox_lists_that_do_not_fit_raise_config_error(emovo_table, tmp_path, edit, message):
    folder = emobox_copy(tmp_path)
    edit(folder)
    with pytest.raises(ConfigError, match=message):
        make_folds(emovo_table, {"name": "emobox", "folder": folder})


def test_emobox_refuses_another_corpus_and_a_missing_folder(emovo_table, tmp_path):
    as_emodb = emovo_table.copy()
    as_emodb.attrs["corpus"] = "emodb"
    with pytest.raises(ConfigError, match="dataset 'emovo' .serkit corpus 'emovo'. but the table is corpus 'emodb'"):
        make_folds(as_emodb, {"name": "emobox", "folder": EMOBOX / "emovo"})
    with pytest.raises(ConfigError, match="is not a folder"):
        make_folds(emovo_table, {"name": "emobox", "folder": tmp_path / "absent"})
    with pytest.raises(ConfigError, match="needs 'folder'"):
        make_folds(emovo_table, {"name": "emobox"})
    with pytest.raises(ConfigError, match="'folder' must be a path"):
        make_folds(emovo_table, {"name": "emobox", "folder": 3})


# --------------------------------------------------------------------------- inner folds and errors


def test_inner_folds_stay_inside_the_training_fold(emodb_table):
    outer = make_folds(emodb_table, "loso").folds[0]
    inner = inner_folds(emodb_table, outer.train)
    assert len(inner) == 9
    for fold in inner:
        assert set(fold.train) | set(fold.test) == set(outer.train)
        assert len(speakers_of(emodb_table, fold.test)) == 1
        assert not speakers_of(emodb_table, fold.train) & speakers_of(emodb_table, fold.test)
    grouped = inner_folds(emodb_table, outer.train, n=3)
    assert len(grouped) == 3
    assert sorted(np.concatenate([f.test for f in grouped])) == sorted(outer.train)
    with pytest.raises(ConfigError, match="2 speakers"):
        inner_folds(emodb_table, outer.test)
    with pytest.raises(ConfigError, match="n must be"):
        inner_folds(emodb_table, outer.train, n=20)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"name": "leave_some_out"}, "unknown protocol"),
        ({"name": "loso", "k": 3}, "unknown option"),
        ({"name": "lkgo"}, "'k' is required"),
        ({"name": "lkgo", "k": 11}, "exceeds"),
        ({"name": "kfold", "k": 1}, "integer >= 2"),
        ({"name": "loso", "valid": {"speakers": 9}}, "cannot take 9"),
        ({"name": "loso", "valid": {"fraction": 1.5}}, "fraction"),
        ({"name": "loso", "valid": {"speakers": 1, "fraction": 0.1}}, "valid must be"),
        ({"name": "loso_session", "split_test": "yes"}, "split_test"),
        ({"k": 3}, "must be a dict with a 'name'"),
    ],
)
def test_bad_specs_raise_config_error(emodb_table, spec, message):
    with pytest.raises(ConfigError, match=message):
        make_folds(emodb_table, spec)


def test_fewer_than_two_groups_raise(emodb_table):
    one = emodb_table[emodb_table["speaker"] == "03"].reset_index(drop=True)
    for spec in ("loso", "loso_session", {"name": "lkgo", "k": 2}):
        with pytest.raises(ConfigError, match="at least 2"):
            make_folds(one, spec)


# --------------------------------------------------------------------------- normalisation


def speaker_features(seed: int = 0, n_per: int = 30, dim: int = 6):
    rng = np.random.default_rng(seed)
    speakers = np.repeat(["a", "b", "c"], n_per)
    offset = {"a": 0.0, "b": 5.0, "c": -3.0}
    scale = {"a": 1.0, "b": 3.0, "c": 0.5}
    x = np.stack([rng.normal(offset[s], scale[s], dim) for s in speakers]).astype(np.float32)
    x[:, 2] = 7.0  # a constant dimension
    return x, speakers


def test_global_normaliser_standardises_training_data_and_ignores_test():
    x, spk = speaker_features()
    norm = fit_normaliser("global", x, spk)
    z = norm.transform(x)
    assert z.dtype == np.float32 and z.shape == x.shape
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.delete(z.std(axis=0), 2), 1.0, atol=1e-5)
    assert norm.std_[2] == 1.0 and np.all(z[:, 2] == 0.0)  # constant dim: centred, std -> 1
    # no leakage: a test row is transformed with training statistics only
    test = np.full((3, x.shape[1]), 2.0, dtype=np.float32)
    first = norm.transform(test)[0]
    test[1:] = 1000.0
    np.testing.assert_array_equal(norm.transform(test)[0], first)
    np.testing.assert_allclose(first, (2.0 - norm.mean_) / norm.std_, rtol=1e-6)


def test_speaker_normaliser_standardises_each_speaker():
    x, spk = speaker_features()
    norm = fit_normaliser("speaker", x, spk)
    z = norm.transform(x, spk)
    for s in "abc":
        rows = z[spk == s]
        np.testing.assert_allclose(rows.mean(axis=0), 0.0, atol=1e-5)
        np.testing.assert_allclose(np.delete(rows.std(axis=0), 2), 1.0, atol=1e-5)
    # an unseen test speaker is standardised with its own (unlabelled) batch statistics
    rng = np.random.default_rng(1)
    test = rng.normal(10.0, 4.0, (20, x.shape[1]))
    zt = norm.transform(test, ["new"] * 20)
    np.testing.assert_allclose(zt.mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(zt.std(axis=0), 1.0, atol=1e-9)
    assert "new" not in norm.speaker_stats_  # transform does not change the fitted state
    with pytest.raises(ConfigError, match="min_utterances"):
        norm.transform(test[:1], ["lonely"])
    with pytest.raises(ConfigError, match="speaker id"):
        norm.transform(x)


def test_frame_level_lists_pool_all_frames():
    rng = np.random.default_rng(2)
    items = [rng.normal(3.0, 2.0, (int(rng.integers(5, 40)), 4)) for _ in range(8)]
    spk = ["a"] * 4 + ["b"] * 4
    for mode in ("global", "speaker"):
        norm = fit_normaliser(mode, items, spk)
        out = norm.transform(items, spk)
        assert isinstance(out, list) and [o.shape for o in out] == [i.shape for i in items]
        groups = [range(8)] if mode == "global" else [range(4), range(4, 8)]
        for g in groups:
            frames = np.concatenate([out[i] for i in g])
            np.testing.assert_allclose(frames.mean(axis=0), 0.0, atol=1e-9)
            np.testing.assert_allclose(frames.std(axis=0), 1.0, atol=1e-9)


def test_normaliser_round_trips_through_json():
    x, spk = speaker_features()
    for mode in ("global", "speaker", "none"):
        norm = fit_normaliser(mode, x, spk)
        data = json.loads(json.dumps(norm.to_dict()))
        again = Normaliser.from_dict(data)
        np.testing.assert_array_equal(again.transform(x, spk), norm.transform(x, spk))
    with pytest.raises(BundleError):
        Normaliser.from_dict({"mode": "global", "dim": 6, "mean": [0.0] * 5, "std": [1.0] * 6})


def test_normaliser_rejects_bad_input():
    x, spk = speaker_features()
    with pytest.raises(ConfigError, match="unknown normalisation"):
        fit_normaliser("minmax", x, spk)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(FeatureError, match="NaN"):
        fit_normaliser("global", bad)
    norm = fit_normaliser("global", x)
    with pytest.raises(FeatureError, match="6-dimensional"):
        norm.transform(x[:, :4])
    with pytest.raises(ConfigError, match="fewer than min_utterances"):
        fit_normaliser("speaker", x, spk, min_utterances=31)


def test_missing_rows_are_left_out_of_the_statistics_and_stay_missing():
    rng = np.random.default_rng(4)
    x = rng.normal(3.0, 2.0, size=(20, 5))
    with_missing = x.copy()
    with_missing[[2, 7]] = np.nan  # two utterances without the feature (a silent binaural channel)
    norm = fit_normaliser("global", with_missing)
    observed = np.delete(x, [2, 7], axis=0)
    np.testing.assert_allclose(norm.mean_, observed.mean(0))
    np.testing.assert_allclose(norm.std_, observed.std(0))
    out = norm.transform(with_missing)
    assert np.isnan(out[[2, 7]]).all() and np.isfinite(np.delete(out, [2, 7], axis=0)).all()
    partly = x.copy()
    partly[3, 1] = np.nan
    with pytest.raises(FeatureError, match="NaN"):
        fit_normaliser("global", partly)


def test_a_feature_missing_everywhere_stays_missing_and_saves_as_json():
    absent = np.full((6, 3), np.nan)
    norm = fit_normaliser("global", absent)
    assert np.isnan(norm.transform(absent)).all()
    text = json.dumps(norm.to_dict(), allow_nan=False)  # a bundle's JSON has no NaN
    again = Normaliser.from_dict(json.loads(text))
    assert np.isnan(again.mean_).all() and np.isnan(again.transform(absent)).all()
    speakers = np.array(["a", "a", "a", "b", "b", "b"])
    assert np.isnan(fit_normaliser("speaker", absent, speakers).transform(absent, speakers)).all()
