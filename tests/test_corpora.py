"""Corpus adapters: real EmoDB/EMOVO counts, the shipped FLAC copy, and fixture corpora.

Corpora not available here (RAVDESS, SAVEE, TESS, CREMA-D, IEMOCAP) are rebuilt in their
documented layouts in tmp folders by :mod:`fixtures_corpora`, complete where the adapter checks
exact counts, and then broken on purpose.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from fixtures_corpora import (
    TESS_96K_FILE,
    TESS_AIFF_FILES,
    TESS_OA_FILE,
    TINY_FRAMES,
    TINY_RATE,
    build_iemocap,
    build_tess_release,
    cremad_demographics,
    cremad_files,
    emovo_files,
    iemocap_utterances,
    populate,
    ravdess_files,
    savee_files,
    tess_files,
    tiny_wav,
)
from serkit.audio import load_audio
from serkit.corpora import COLUMNS, EMOTIONS, corpus_summary, get_corpus, list_corpora, load_corpus
from serkit.errors import ConfigError, CorpusError, UnknownLabelError

REPO = Path(__file__).resolve().parents[1]
SHIPPED_EMODB = REPO / "data" / "emodb"
TINY_S = TINY_FRAMES / TINY_RATE
ALL = ("cremad", "emodb", "emovo", "iemocap", "manifest", "ravdess", "savee", "tess")

# EmoDB README: counts per emotion code and per speaker, speaker sex.
EMODB_LABELS = {"anger": 127, "boredom": 81, "disgust": 46, "fear": 69, "happiness": 71, "sadness": 62, "neutral": 79}
EMODB_SPEAKERS = {"03": 49, "08": 58, "09": 43, "10": 38, "11": 55, "12": 35, "13": 61, "14": 69, "15": 56, "16": 71}
EMODB_SEX = {"03": "m", "08": "f", "09": "f", "10": "m", "11": "m", "12": "m", "13": "f", "14": "f", "15": "m", "16": "f"}
PAD_FILES = ("14a07Aa", "14a07Fd", "14a07Na", "14a07Wc")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_sums(path: Path) -> dict[str, str]:
    return {name: digest for digest, name in (line.split(maxsplit=1) for line in path.read_text().splitlines())}


def riff_chunks(path: Path) -> dict[bytes, int]:
    """Reference RIFF walker: chunk id -> payload size (independent of libsndfile)."""
    data = path.read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(path)
    chunks, pos = {}, 12
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        chunks[cid] = size
        pos += 8 + size + (size & 1)
    return chunks


# ---------------------------------------------------------------------------------------------
# Registry and options
# ---------------------------------------------------------------------------------------------


def test_registry_lists_every_adapter_and_refuses_unknown_names():
    assert list_corpora() == list(ALL)
    with pytest.raises(ConfigError, match="unknown corpus 'nope'"):
        get_corpus("nope")


@pytest.mark.parametrize("name", ALL)
def test_label_sets_are_in_the_vocabulary(name):
    corpus = get_corpus(name)
    assert set(corpus.labels) <= set(EMOTIONS)
    assert corpus.open_labels == (name == "manifest")
    assert corpus.citation


@pytest.mark.parametrize("name", ALL)
def test_unknown_option_is_a_config_error(name, tmp_path):
    with pytest.raises(ConfigError, match="unknown option"):
        load_corpus(name, tmp_path, colour="blue")


@pytest.mark.parametrize("name", [n for n in ALL if n != "manifest"])
def test_strict_option_must_be_a_bool(name, tmp_path):
    with pytest.raises(ConfigError, match="strict"):
        load_corpus(name, tmp_path, strict="no")


@pytest.mark.parametrize("name", ALL)
def test_missing_root_is_a_corpus_error(name, tmp_path):
    with pytest.raises(CorpusError, match="is not a folder"):
        load_corpus(name, tmp_path / "absent")


@pytest.mark.parametrize("name", ALL)
def test_empty_root_says_what_was_expected(name, tmp_path):
    with pytest.raises(CorpusError, match="expected"):
        load_corpus(name, tmp_path)


# ---------------------------------------------------------------------------------------------
# EmoDB: the real corpus and the shipped FLAC copy
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emodb(emodb_root) -> pd.DataFrame:
    return load_corpus("emodb", emodb_root)


@pytest.fixture(scope="module")
def emodb_shipped() -> pd.DataFrame:
    return load_corpus("emodb", SHIPPED_EMODB)


def test_emodb_matches_the_readme_counts(emodb):
    assert list(emodb.columns) == list(COLUMNS)
    assert len(emodb) == 535
    assert emodb["label"].value_counts().to_dict() == EMODB_LABELS
    assert emodb["speaker"].value_counts().to_dict() == EMODB_SPEAKERS
    assert round(emodb["duration"].sum() / 60, 1) == 24.8
    assert emodb["duration"].min() == pytest.approx(1.23, abs=0.005)
    assert emodb["duration"].max() == pytest.approx(8.98, abs=0.005)


def test_emodb_rows_follow_the_file_names(emodb):
    assert (emodb["session"] == emodb["speaker"]).all()
    assert (emodb["gender"] == emodb["speaker"].map(EMODB_SEX)).all()
    assert emodb["gender"].value_counts().to_dict() == {"f": 302, "m": 233}
    assert emodb["utterance_id"].is_monotonic_increasing and emodb["utterance_id"].is_unique
    row = emodb.set_index("utterance_id").loc["03a01Fa"]
    assert (row["speaker"], row["label"], row["gender"]) == ("03", "happiness", "m")
    assert all(Path(p).is_absolute() and Path(p).stem == u for p, u in zip(emodb["path"], emodb["utterance_id"]))


def test_emodb_pad_chunk_files_load_with_the_right_duration(emodb, emodb_root):
    table = emodb.set_index("utterance_id")
    for stem in PAD_FILES:
        path = emodb_root / "wav" / f"{stem}.wav"
        chunks = riff_chunks(path)
        assert b"PAD " in chunks, stem  # the reason for this test
        n = chunks[b"data"] // 2  # 16-bit mono
        samples, rate = sf.read(path, dtype="int16")
        assert rate == 16000 and samples.shape == (n,)
        assert table.loc[stem, "duration"] == pytest.approx(n / 16000, abs=1e-12)


def test_emodb_summary_is_plain_json(emodb):
    summary = corpus_summary(emodb)
    assert json.loads(json.dumps(summary)) == summary
    assert summary["corpus"] == "emodb"
    assert (summary["utterances"], summary["speakers"]) == (535, 10)
    assert summary["per_label"] == dict(sorted(EMODB_LABELS.items()))
    assert summary["per_speaker"] == EMODB_SPEAKERS
    assert summary["duration_s"] == pytest.approx(emodb["duration"].sum())
    assert {s: sum(d.values()) for s, d in summary["per_speaker_label"].items()} == EMODB_SPEAKERS
    assert summary["per_speaker_label"]["03"]["happiness"] == len(emodb.query("speaker == '03' and label == 'happiness'"))


def test_shipped_emodb_loads_exactly_like_the_wav_copy(emodb, emodb_shipped):
    assert len(emodb_shipped) == 535
    assert all(p.endswith(".flac") for p in emodb_shipped["path"])
    same = ["utterance_id", "speaker", "session", "gender", "label", "duration"]
    pd.testing.assert_frame_equal(emodb_shipped[same], emodb[same])


def test_shipped_emodb_checksums_match(emodb_root):
    sums = read_sums(SHIPPED_EMODB / "SHA256SUMS")
    flacs = sorted(p.relative_to(SHIPPED_EMODB).as_posix() for p in (SHIPPED_EMODB / "wav").iterdir())
    assert sorted(sums) == flacs and len(flacs) == 535
    for name, digest in sums.items():
        assert sha256(SHIPPED_EMODB / name) == digest, name
    assert read_sums(SHIPPED_EMODB / "SOURCE_SHA256SUMS") == read_sums(emodb_root / "SHA256SUMS")
    readme = (SHIPPED_EMODB / "README.md").read_text()
    assert "Burkhardt" in readme and "Interspeech 2005" in readme


def test_shipped_emodb_samples_equal_the_original_wavs(emodb_root):
    for wav in sorted((emodb_root / "wav").glob("*.wav")):
        original, rate = sf.read(wav, dtype="int16", always_2d=True)
        shipped, shipped_rate = sf.read(SHIPPED_EMODB / "wav" / f"{wav.stem}.flac", dtype="int16", always_2d=True)
        assert shipped_rate == rate == 16000
        assert np.array_equal(shipped, original), wav.stem


def emodb_subset(tmp_path: Path, emodb_root: Path, stems=("03a01Fa", "08a02La", "16b10Td")) -> Path:
    root = tmp_path / "emodb"
    (root / "wav").mkdir(parents=True)
    for stem in stems:
        shutil.copy(emodb_root / "wav" / f"{stem}.wav", root / "wav")
    return root


def test_emodb_subset_needs_strict_false(tmp_path, emodb_root):
    root = emodb_subset(tmp_path, emodb_root)
    with pytest.raises(CorpusError, match=r"EmoDB: expected 535 files wav/SSTTTEV\.wav .*found 3"):
        load_corpus("emodb", root)
    table = load_corpus("emodb", root, strict=False)
    assert table["label"].tolist() == ["happiness", "boredom", "sadness"]
    assert table["gender"].tolist() == ["m", "f", "f"]


def test_emodb_one_file_short_is_refused(tmp_path, emodb_root):
    root = tmp_path / "emodb"
    shutil.copytree(SHIPPED_EMODB / "wav", root / "wav")
    (root / "wav" / "03a01Fa.flac").unlink()
    with pytest.raises(CorpusError, match="expected 535 files .* found 534"):
        load_corpus("emodb", root)


@pytest.mark.parametrize(
    ("name", "error", "match"),
    [
        ("03a01Xa.wav", UnknownLabelError, r"03a01Xa\.wav: unknown emotion code 'X'"),
        ("04a01Fa.wav", CorpusError, r"speaker id '04' is not one of"),
        ("03a03Fa.wav", CorpusError, r"text id 'a03'"),
        ("notes.wav", CorpusError, r"not named SSTTTEV.*wav/notes\.wav"),
    ],
)
def test_emodb_bad_names_are_refused(tmp_path, emodb_root, name, error, match):
    root = emodb_subset(tmp_path, emodb_root)
    (root / "wav" / name).write_bytes(tiny_wav())
    with pytest.raises(error, match=match):
        load_corpus("emodb", root, strict=False)


def test_emodb_ignores_non_audio_and_rejects_wav_flac_duplicates(tmp_path, emodb_root):
    root = emodb_subset(tmp_path, emodb_root)
    (root / "wav" / "README.txt").write_text("notes")
    assert len(load_corpus("emodb", root, strict=False)) == 3
    shutil.copy(SHIPPED_EMODB / "wav" / "03a01Fa.flac", root / "wav")
    with pytest.raises(CorpusError, match="duplicated utterance ids.*03a01Fa"):
        load_corpus("emodb", root, strict=False)


def test_emodb_unreadable_audio_stays_in_the_table_with_nan_duration(tmp_path, emodb_root):
    # One bad file must not make the corpus unusable: extraction reports it later by name.
    root = emodb_subset(tmp_path, emodb_root)
    (root / "wav" / "03a02Wb.wav").write_bytes(b"not a wav file at all")
    table = load_corpus("emodb", root, strict=False).set_index("utterance_id")
    assert np.isnan(table.loc["03a02Wb", "duration"])
    assert table.drop(index="03a02Wb")["duration"].gt(1.0).all()


# ---------------------------------------------------------------------------------------------
# EMOVO: the real corpus, then broken synthetic copies
# ---------------------------------------------------------------------------------------------


def test_emovo_matches_the_readme_counts(emovo_root):
    table = load_corpus("emovo", emovo_root)
    assert len(table) == 588
    assert set(table["label"].value_counts()) == {84} and table["label"].nunique() == 7
    assert table["speaker"].value_counts().to_dict() == dict.fromkeys(["f1", "f2", "f3", "m1", "m2", "m3"], 98)
    assert (table["gender"] == table["speaker"].str[0]).all()
    assert round(table["duration"].sum() / 60, 1) == 30.6
    row = table.set_index("utterance_id").loc["gio-m2-n3"]
    assert (row["label"], row["speaker"], row["session"]) == ("happiness", "m2", "m2")  # joy -> happiness


def test_emovo_complete_synthetic_copy_passes_and_one_missing_fails(tmp_path):
    root = populate(tmp_path / "emovo", emovo_files())
    table = load_corpus("emovo", root)
    assert len(table) == 588 and table["duration"].tolist() == [TINY_S] * 588
    (root / "m3" / "sor-m3-n5.wav").unlink()
    with pytest.raises(CorpusError, match="EMOVO: expected 588 files .* found 587"):
        load_corpus("emovo", root)
    assert len(load_corpus("emovo", root, strict=False)) == 587


@pytest.mark.parametrize(
    ("rel", "error", "match"),
    [
        ("f1/xyz-f1-b1.wav", UnknownLabelError, r"xyz-f1-b1\.wav: unknown emotion code 'xyz'"),
        ("f1/rab-m1-b1.wav", CorpusError, r"speaker 'm1' in the name but in folder 'f1'"),
        ("f1/rab-f1-x9.wav", CorpusError, r"sentence code 'x9'"),
        ("f1/rab_f1_b1.wav", CorpusError, r"expected a name <emo>-<speaker>-<sentence>"),
        ("rab-f1-b1.wav", CorpusError, r"audio outside the speaker folders"),
        ("f4/rab-f4-b1.wav", CorpusError, r"audio outside the speaker folders.*f4/rab-f4-b1\.wav"),
    ],
)
def test_emovo_bad_files_are_refused(tmp_path, rel, error, match):
    root = populate(tmp_path / "emovo", ["f1/neu-f1-b1.wav", rel])
    with pytest.raises(error, match=match):
        load_corpus("emovo", root, strict=False)


# ---------------------------------------------------------------------------------------------
# RAVDESS
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ravdess_root(tmp_path_factory) -> Path:
    return populate(tmp_path_factory.mktemp("ravdess"), ravdess_files())


def test_ravdess_complete_fixture(ravdess_root):
    table = load_corpus("ravdess", ravdess_root)
    assert len(table) == 1440 and table["speaker"].nunique() == 24
    assert table["label"].value_counts().to_dict() == {"neutral": 96, **{k: 192 for k in get_corpus("ravdess").labels if k != "neutral"}}
    by_id = table.set_index("utterance_id")
    assert by_id.loc["03-01-05-02-01-02-07", ["speaker", "gender", "label"]].tolist() == ["Actor_07", "m", "anger"]
    assert by_id.loc["03-01-02-01-01-01-24", ["speaker", "gender", "label"]].tolist() == ["Actor_24", "f", "calm"]
    assert table.groupby("speaker")["gender"].first().value_counts().to_dict() == {"f": 12, "m": 12}


def test_ravdess_subset_is_refused_in_strict_mode(tmp_path):
    root = populate(tmp_path, ravdess_files()[:60])
    with pytest.raises(CorpusError, match=r"RAVDESS: expected 1440 speech files Actor_XX/03-01-EE-II-SS-RR-AA\.wav .*found 60"):
        load_corpus("ravdess", root)
    assert load_corpus("ravdess", root, strict=False)["speaker"].unique().tolist() == ["Actor_01"]


def test_ravdess_song_and_video_files_are_refused_unless_skipped(tmp_path):
    root = populate(tmp_path, ravdess_files()[:60] + ["Actor_01/03-02-03-01-01-01-01.wav"])
    (root / "Actor_01" / "01-01-03-01-01-01-01.mp4").write_bytes(b"\0" * 16)
    with pytest.raises(CorpusError, match=r"song file \(vocal channel 02\).*skip_song=True"):
        load_corpus("ravdess", root, strict=False, skip_video=True)
    with pytest.raises(CorpusError, match=r"video file \(modality 01\).*skip_video=True"):
        load_corpus("ravdess", root, strict=False, skip_song=True)
    table = load_corpus("ravdess", root, strict=False, skip_song=True, skip_video=True)
    assert len(table) == 60 and not table["utterance_id"].str.startswith("03-02").any()


@pytest.mark.parametrize(
    ("rel", "error", "match"),
    [
        ("Actor_01/03-01-09-01-01-01-01.wav", UnknownLabelError, r"03-01-09-01-01-01-01\.wav: unknown emotion code '09'"),
        ("Actor_01/03-01-03-01-01-01-02.wav", CorpusError, r"actor '02' in the name does not match folder 'Actor_01'"),
        ("Actor_01/03-01-03-03-01-01-01.wav", CorpusError, r"intensity '03'"),
        ("Actor_01/take1.wav", CorpusError, r"expected a name MM-VV-EE-II-SS-RR-AA"),
        ("extra/03-01-03-01-01-01-01.wav", CorpusError, r"audio outside the Actor_XX folders"),
    ],
)
def test_ravdess_bad_files_are_refused(tmp_path, rel, error, match):
    root = populate(tmp_path, ["Actor_01/03-01-01-01-01-01-01.wav", rel])
    with pytest.raises(error, match=match):
        load_corpus("ravdess", root, strict=False)


def test_ravdess_real_release_counts(ravdess_release):
    """The fetched release (skipped where absent): its README's counts, durations and channels."""
    table = load_corpus("ravdess", ravdess_release)
    assert len(table) == 1440 and set(table["speaker"].value_counts()) == {60} and table["speaker"].nunique() == 24
    others = set(get_corpus("ravdess").labels) - {"neutral"}
    assert table["label"].value_counts().to_dict() == {"neutral": 96, **dict.fromkeys(others, 192)}
    assert table.groupby("gender")["speaker"].nunique().to_dict() == {"f": 12, "m": 12}
    assert table["duration"].sum() / 60 == pytest.approx(88.8, abs=0.05)
    assert table["duration"].between(2.9, 5.3).all()
    headers = [sf.info(p) for p in table["path"]]
    assert Counter((h.samplerate, h.channels) for h in headers) == {(48000, 1): 1435, (48000, 2): 5}


# ---------------------------------------------------------------------------------------------
# SAVEE
# ---------------------------------------------------------------------------------------------


def test_savee_both_layouts_give_the_same_table(tmp_path):
    nested = load_corpus("savee", populate(tmp_path / "nested", savee_files("nested")))
    flat = load_corpus("savee", populate(tmp_path / "flat", savee_files("flat")))
    cols = ["utterance_id", "speaker", "session", "gender", "label", "duration"]
    pd.testing.assert_frame_equal(nested[cols], flat[cols])
    assert len(flat) == 480 and set(flat["gender"]) == {"m"}
    assert flat["speaker"].value_counts().to_dict() == dict.fromkeys(["DC", "JE", "JK", "KL"], 120)
    assert flat["label"].value_counts().to_dict() == {
        "neutral": 120, "anger": 60, "disgust": 60, "fear": 60, "happiness": 60, "sadness": 60, "surprise": 60
    }
    by_id = flat.set_index("utterance_id")
    assert by_id.loc["JK_sa07", "label"] == "sadness" and by_id.loc["JK_su07", "label"] == "surprise"


def test_savee_counts_are_checked(tmp_path):
    files = savee_files("flat")
    root = populate(tmp_path, [f for f in files if f != "KL_n30.wav"])
    with pytest.raises(CorpusError, match=r"SAVEE: expected 480 files .* found 479"):
        load_corpus("savee", root)
    assert len(load_corpus("savee", root, strict=False)) == 479


@pytest.mark.parametrize(
    ("files", "error", "match"),
    [
        (["DC_x01.wav"], UnknownLabelError, r"DC_x01\.wav: unknown emotion code 'x'"),
        (["DC_a16.wav"], CorpusError, r"sentence number 16 outside 01-15"),
        (["XY_a01.wav"], CorpusError, r"speaker 'XY'"),
        (["AudioData/DC/sa16.wav"], CorpusError, r"sentence number 16 outside 01-15 for code 'sa'"),
        (["AudioData/ZZ/a01.wav"], CorpusError, r"outside the speaker folders"),
        (["DC_a01.wav", "AudioData/DC/a01.wav"], CorpusError, r"both flat .* and AudioData"),
    ],
)
def test_savee_bad_files_are_refused(tmp_path, files, error, match):
    populate(tmp_path, files)
    with pytest.raises(error, match=match):
        load_corpus("savee", tmp_path, strict=False)


# ---------------------------------------------------------------------------------------------
# TESS
# ---------------------------------------------------------------------------------------------


def test_tess_complete_fixture_with_distribution_folder_spellings(tmp_path):
    table = load_corpus("tess", populate(tmp_path / "nested", tess_files("nested")))
    assert len(table) == 2800 and set(table["label"].value_counts()) == {400}
    assert table["speaker"].value_counts().to_dict() == {"OAF": 1400, "YAF": 1400} and set(table["gender"]) == {"f"}
    assert table.set_index("utterance_id").loc["YAF_wab_ps", "label"] == "surprise"
    flat = load_corpus("tess", populate(tmp_path / "flat", tess_files("flat")))
    assert flat["utterance_id"].tolist() == table["utterance_id"].tolist()
    assert flat["label"].tolist() == table["label"].tolist()


def test_tess_counts_are_checked(tmp_path):
    root = populate(tmp_path, tess_files("nested")[:-1])
    with pytest.raises(CorpusError, match=r"TESS: expected 2800 files .* found 2799"):
        load_corpus("tess", root)


@pytest.mark.parametrize(
    ("rel", "error", "match"),
    [
        ("OAF_angry/OAF_back_bored.wav", UnknownLabelError, r"OAF_back_bored\.wav: unknown emotion 'bored'"),
        ("OAF_angry/OAF_back_sad.wav", CorpusError, r"file of OAF/sad is in folder 'OAF_angry'"),
        ("OAF_angry/YAF_back_angry.wav", CorpusError, r"file of YAF/angry is in folder 'OAF_angry'"),
        ("OAF_angry/MAF_back_angry.wav", CorpusError, r"speaker 'MAF'"),
        ("OAF_angry/back.wav", CorpusError, r"expected a name <SPK>_<word>_<emotion>"),
        ("OAF_back_angry.wav", CorpusError, r"both at the top .* and in sub-folders"),
        # the release's OA_ spelling is taken in file names only, for OAF only
        ("OA_neutral/OAF_back_neutral.wav", CorpusError, r"folder 'OA_neutral' is not named <SPK>_<emotion>"),
        ("YAF_angry/YA_back_angry.wav", CorpusError, r"speaker 'YA' is not one of"),
        ("YAF_angry/OA_back_angry.wav", CorpusError, r"file of OAF/angry is in folder 'YAF_angry'"),
        ("OAF_angry/OA_dog_angry.wav", CorpusError, r"duplicated utterance ids, e.g. \['OAF_dog_angry'\]"),
    ],
)
def test_tess_bad_files_are_refused(tmp_path, rel, error, match):
    populate(tmp_path, ["OAF_angry/OAF_dog_angry.wav", rel])
    with pytest.raises(error, match=match):
        load_corpus("tess", tmp_path, strict=False)


def test_tess_takes_every_quirk_of_the_real_release(tmp_path):
    table = load_corpus("tess", build_tess_release(tmp_path))
    assert len(table) == 2800 and table["speaker"].value_counts().to_dict() == {"OAF": 1400, "YAF": 1400}
    assert set(table.groupby(["speaker", "label"]).size()) == {200}
    by_file = table.set_index(np.array([str(Path(p).relative_to(tmp_path.resolve())) for p in table["path"]]))
    oa = by_file.loc[TESS_OA_FILE]
    assert (oa["utterance_id"], oa["speaker"], oa["label"]) == (f"OAF_{Path(TESS_OA_FILE).stem[3:]}", "OAF", "neutral")
    assert by_file.loc[TESS_96K_FILE, "duration"] == pytest.approx(0.1)
    assert load_audio(tmp_path / TESS_96K_FILE).sample_rate == 96000
    for rel in TESS_AIFF_FILES:
        assert (tmp_path / rel).read_bytes()[:4] == b"FORM" and sf.info(str(tmp_path / rel)).format == "AIFF"
        assert by_file.loc[rel, "duration"] == pytest.approx(2 * TINY_S)
        assert load_audio(tmp_path / rel).samples.shape == (1, 2 * TINY_FRAMES)
    others = by_file.drop(index=[TESS_96K_FILE, *TESS_AIFF_FILES])
    assert np.allclose(others["duration"], TINY_S)


@pytest.mark.parametrize(
    "files",
    [emovo_files()[:20], ravdess_files()[:20], [f"wav/03a01{e}a.wav" for e in "WLEAFTN"], savee_files("flat")[:20]],
    ids=["emovo", "ravdess", "emodb", "savee"],
)
def test_tess_refuses_other_corpora(tmp_path, files):
    populate(tmp_path, files)
    with pytest.raises(CorpusError, match="TESS: .*expected"):
        load_corpus("tess", tmp_path, strict=False)


def test_tess_real_release_counts(tess_release):
    """The fetched release (skipped where absent): every quirk, the README's counts and durations."""
    table = load_corpus("tess", tess_release)
    assert len(table) == 2800 and set(table["gender"]) == {"f"}
    assert table["speaker"].value_counts().to_dict() == {"OAF": 1400, "YAF": 1400}
    pairs = {(s, lab): 200 for s in ("OAF", "YAF") for lab in get_corpus("tess").labels}
    assert table.groupby(["speaker", "label"]).size().to_dict() == pairs
    assert table["utterance_id"].str.fullmatch(r"(OAF|YAF)_[a-z]+_(angry|disgust|fear|happy|neutral|ps|sad)").all()
    assert table["duration"].sum() / 60 == pytest.approx(95.9, abs=0.05)
    assert table["duration"].between(1.25, 3.0).all()
    path = table.set_index("utterance_id")["path"]
    assert Path(path["OAF_bite_neutral"]).relative_to(tess_release.resolve()) == Path("OAF_neutral/OA_bite_neutral.wav")
    headers = {u: sf.info(p) for u, p in path.items()}
    assert Counter(h.samplerate for h in headers.values()) == {24414: 2799, 96000: 1}
    assert headers["OAF_food_fear"].samplerate == 96000
    assert sorted(u for u, h in headers.items() if h.format == "AIFF") == ["YAF_germ_angry", "YAF_neat_fear"]


# ---------------------------------------------------------------------------------------------
# CREMA-D
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cremad_root(tmp_path_factory) -> Path:
    return populate(tmp_path_factory.mktemp("cremad"), cremad_files())


def test_cremad_complete_fixture_without_and_with_demographics(cremad_root):
    table = load_corpus("cremad", cremad_root)
    assert len(table) == 7442 and table["speaker"].nunique() == 91
    assert set(table["gender"]) == {""}
    assert table["session"].equals(table["speaker"])
    expected = Counter(Path(f).stem.split("_")[2] for f in cremad_files())
    codes = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happiness", "NEU": "neutral", "SAD": "sadness"}
    assert table["label"].value_counts().to_dict() == {codes[c]: n for c, n in expected.items()}
    sexes = cremad_demographics(cremad_root)
    try:
        with_sex = load_corpus("cremad", cremad_root)
    finally:
        (cremad_root / "VideoDemographics.csv").unlink()
    assert (with_sex["gender"] == with_sex["speaker"].map(sexes)).all()
    assert with_sex.set_index("utterance_id").loc["1002_IEO_HAP_HI", "gender"] == "f"


def test_cremad_counts_are_checked(tmp_path):
    root = populate(tmp_path, cremad_files()[:-1])
    with pytest.raises(CorpusError, match=r"CREMA-D: expected 7442 files AudioWAV/.* found 7441"):
        load_corpus("cremad", root)


@pytest.mark.parametrize(
    ("name", "error", "match"),
    [
        ("1001_DFA_CAL_XX.wav", UnknownLabelError, r"1001_DFA_CAL_XX\.wav: unknown emotion code 'CAL'"),
        ("1092_DFA_ANG_XX.wav", CorpusError, r"actor 1092 outside 1001-1091"),
        ("1001_ABC_ANG_XX.wav", CorpusError, r"sentence code 'ABC'"),
        ("1001_DFA_ANG_ZZ.wav", CorpusError, r"level 'ZZ'"),
        ("1001-DFA-ANG-XX.wav", CorpusError, r"expected a name <actor>_<sentence>_<emotion>_<level>"),
    ],
)
def test_cremad_bad_files_are_refused(tmp_path, name, error, match):
    populate(tmp_path, ["AudioWAV/1001_DFA_NEU_XX.wav", f"AudioWAV/{name}"])
    with pytest.raises(error, match=match):
        load_corpus("cremad", tmp_path, strict=False)


def test_cremad_bad_demographics_is_refused(tmp_path):
    populate(tmp_path, ["AudioWAV/1001_DFA_NEU_XX.wav"])
    (tmp_path / "VideoDemographics.csv").write_text("ActorID,Sex\n1001,Unknown\n")
    with pytest.raises(CorpusError, match="sex 'unknown' is not Male or Female"):
        load_corpus("cremad", tmp_path, strict=False)


# ---------------------------------------------------------------------------------------------
# IEMOCAP
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def iemocap_full(tmp_path_factory):
    utterances = iemocap_utterances()
    return build_iemocap(tmp_path_factory.mktemp("iemocap"), utterances), utterances


def test_iemocap_four_class_protocol_on_a_complete_fixture(iemocap_full):
    root, utterances = iemocap_full
    table = load_corpus("iemocap", root)
    merged = {"neu": "neutral", "ang": "anger", "sad": "sadness", "hap": "happiness", "exc": "happiness"}
    expected = Counter(merged[c] for utts in utterances.values() for _, c in utts if c in merged)
    assert len(table) == 5531 and table["label"].value_counts().to_dict() == dict(expected)
    assert sorted(table["speaker"].unique()) == [f"Ses0{s}{g}" for s in range(1, 6) for g in "FM"]
    assert sorted(table["session"].unique()) == [f"Ses0{s}" for s in range(1, 6)]
    assert (table["gender"] == table["speaker"].str[-1].str.lower()).all()
    # The dialog letter (markers) is not the talker: Ses01F_impro01 holds male turns too.
    row = table.set_index("utterance_id").loc["Ses01M_impro01_F000"]
    assert (row["speaker"], row["gender"], row["session"]) == ("Ses01F", "f", "Ses01")
    assert Path(row["path"]) == root / "Session1" / "sentences" / "wav" / "Ses01M_impro01" / "Ses01M_impro01_F000.wav"


def test_iemocap_improvised_only(iemocap_full):
    root, utterances = iemocap_full
    table = load_corpus("iemocap", root, improvised_only=True)
    expected = sum(1 for d, utts in utterances.items() if "_impro" in d for _, c in utts if c in ("neu", "ang", "sad", "hap", "exc"))
    assert len(table) == expected and table["utterance_id"].str.contains("_impro").all()


def test_iemocap_only_four_classes_are_supported(iemocap_full):
    with pytest.raises(ConfigError, match="classes=6 is not supported"):
        load_corpus("iemocap", iemocap_full[0], classes=6)


def test_iemocap_counts_and_sessions_are_checked(tmp_path):
    root = build_iemocap(tmp_path, iemocap_utterances(n_four_class=40))
    with pytest.raises(CorpusError, match=r"IEMOCAP: expected 5531 4-class utterances .* found 40"):
        load_corpus("iemocap", root)
    assert len(load_corpus("iemocap", root, strict=False)) == 40
    shutil.rmtree(root / "Session5")
    with pytest.raises(CorpusError, match=r"expected Session1, .*Session5 .*found \['Session1', 'Session2', 'Session3', 'Session4'\]"):
        load_corpus("iemocap", root)
    assert set(load_corpus("iemocap", root, strict=False)["session"]) == {"Ses01", "Ses02", "Ses03", "Ses04"}


def test_iemocap_missing_wav_and_unknown_category_are_refused(tmp_path):
    utterances = iemocap_utterances(n_four_class=40, extra_per_dialog=0)
    dialog = "Ses02M_impro01"
    utt = utterances[dialog][0][0]
    build_iemocap(tmp_path / "a", utterances, skip_wavs=[utt])
    with pytest.raises(CorpusError, match=rf"1 utterance wavs .* missing: Session2/sentences/wav/{dialog}/{utt}\.wav"):
        load_corpus("iemocap", tmp_path / "a", strict=False)
    utterances[dialog][0] = (utt, "bor")
    build_iemocap(tmp_path / "b", utterances)
    with pytest.raises(UnknownLabelError, match=rf"{dialog}\.txt:\d+: unknown category 'bor'"):
        load_corpus("iemocap", tmp_path / "b", strict=False)


def test_iemocap_utterance_in_the_wrong_dialog_file_is_refused(tmp_path):
    build_iemocap(tmp_path, {"Ses01F_impro01": [("Ses01F_impro01_F000", "neu"), ("Ses01F_impro02_M000", "ang")]})
    with pytest.raises(CorpusError, match="Ses01F_impro02_M000 does not belong to Session1/Ses01F_impro01"):
        load_corpus("iemocap", tmp_path, strict=False)


# ---------------------------------------------------------------------------------------------
# Manifest
# ---------------------------------------------------------------------------------------------


def test_manifest_reads_user_labels_and_fills_defaults(tmp_path):
    populate(tmp_path, ["audio/a.wav", "audio/b.wav"])
    elsewhere = populate(tmp_path / "other", ["c.wav"]) / "c.wav"
    (tmp_path / "manifest.csv").write_text(
        "path,label,speaker,gender,session,utterance_id\n"
        "audio/a.wav,calm-ish,alice,Female,,\n"
        f"{elsewhere},very angry, bob ,m,day2,clip-7\n"
        "audio/b.wav,calm-ish,alice,,,\n"
    )
    table = load_corpus("manifest", tmp_path)
    assert table["utterance_id"].tolist() == ["a", "b", "clip-7"]
    assert table["label"].tolist() == ["calm-ish", "calm-ish", "very angry"]
    assert table["speaker"].tolist() == ["alice", "alice", "bob"]
    assert table["session"].tolist() == ["alice", "alice", "day2"]
    assert table["gender"].tolist() == ["f", "", "m"]
    assert table["path"].tolist() == [str(tmp_path / "audio" / "a.wav"), str(tmp_path / "audio" / "b.wav"), str(elsewhere)]
    assert table["duration"].tolist() == [TINY_S] * 3
    assert corpus_summary(table)["per_label"] == {"calm-ish": 2, "very angry": 1}
    with pytest.raises(UnknownLabelError, match=r"label 'very angry' not in \['calm-ish'\]"):
        load_corpus("manifest", tmp_path, labels=["calm-ish"])


def test_manifest_csv_option_paths_are_relative_to_the_csv(tmp_path):
    populate(tmp_path / "lists", ["x.wav"])
    (tmp_path / "lists" / "train.csv").write_text("speaker,label,path\ns1,happy,x.wav\n")
    table = load_corpus("manifest", tmp_path, csv="lists/train.csv")
    assert table["path"].tolist() == [str(tmp_path / "lists" / "x.wav")]
    with pytest.raises(CorpusError, match=r"expected a CSV manifest at .*manifest\.csv"):
        load_corpus("manifest", tmp_path)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("path,label\na.wav,x\n", r"required columns \['speaker'\] missing"),
        ("path,label,speaker\na.wav,x,s\nmissing.wav,x,s\ngone.wav,y,s\n", r"2 audio files do not exist: missing\.wav, gone\.wav"),
        ("path,label,speaker\na.wav,,s\n", r"empty 'label' on data rows \[1\]"),
        ("path,label,speaker,gender\na.wav,x,s,other\n", r"gender 'other'"),
        ("path,label,speaker\n", r"no rows"),
        ("path,label,speaker,utterance_id\na.wav,x,s,u\na.wav,y,s,u\n", r"duplicated utterance ids"),
    ],
)
def test_manifest_bad_input_is_refused(tmp_path, text, match):
    populate(tmp_path, ["a.wav"])
    (tmp_path / "manifest.csv").write_text(text)
    with pytest.raises(CorpusError, match=match):
        load_corpus("manifest", tmp_path)


def test_manifest_option_types_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="labels must be a non-empty list"):
        load_corpus("manifest", tmp_path, labels="calm")
    with pytest.raises(ConfigError, match="csv must be a path"):
        load_corpus("manifest", tmp_path, csv=3)


# ---------------------------------------------------------------------------------------------
# corpus_summary
# ---------------------------------------------------------------------------------------------


def test_summary_of_a_hand_built_table():
    table = pd.DataFrame(
        {
            "utterance_id": ["u1", "u2", "u3", "u4"],
            "path": ["/a", "/b", "/c", "/d"],
            "speaker": ["s2", "s1", "s2", "s2"],
            "session": ["s2", "s1", "s2", "s2"],
            "gender": ["f", "m", "f", "f"],
            "label": ["anger", "anger", "neutral", "anger"],
            "duration": [1.5, 2.0, 0.25, 1.0],
        }
    )
    summary = corpus_summary(table, corpus="toy")
    assert summary == {
        "corpus": "toy",
        "utterances": 4,
        "speakers": 2,
        "duration_s": 4.75,
        "per_speaker": {"s1": 1, "s2": 3},
        "per_label": {"anger": 3, "neutral": 1},
        "per_speaker_label": {"s1": {"anger": 1}, "s2": {"anger": 2, "neutral": 1}},
    }
    assert all(type(v) is int for v in summary["per_speaker"].values())
    assert corpus_summary(table)["corpus"] == ""
    with pytest.raises(CorpusError, match="lacks columns"):
        corpus_summary(table.drop(columns="label"))
