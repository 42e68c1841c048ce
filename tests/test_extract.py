"""The extraction pipeline: cache, parallel workers, failures, channels and resampling."""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

import serkit
from serkit.audio import Audio, load_audio, require_rate
from serkit.errors import AudioError, ConfigError, CorpusError, FeatureError, TooShortAudioError
from serkit.features import FeatureSet, extract_audio, extract_features, get_extractor, select_channel
from serkit.features.base import Extractor, register
from serkit.features.extract import cache_folder, cache_key


@register
class CountingStats(Extractor):
    """Test extractor: ``[scale * mean, scale * std]`` of the samples; counts its calls."""

    name = "test_counting_stats"
    level = "utterance"

    @dataclass(frozen=True)
    class Config:
        scale: float = 1.0

    def __init__(self, config=None, **overrides):
        self.calls = 0
        super().__init__(config, **overrides)

    @property
    def sample_rate(self) -> int:
        return 16000

    @property
    def dim(self) -> int:
        return 2

    def extract(self, audio: Audio) -> np.ndarray:
        require_rate(audio, 16000, self.name)
        self.calls += 1
        x = audio.samples[0]
        return (self.config.scale * np.array([x.mean(), x.std()])).astype(np.float32)


def table_of(paths: list[Path]) -> pd.DataFrame:
    return pd.DataFrame({"utterance_id": [p.stem for p in paths], "path": [str(p) for p in paths]})


@pytest.fixture(scope="module")
def emodb_files(emodb_root) -> list[Path]:
    return sorted((emodb_root / "wav").glob("*.wav"))[:6]


@pytest.fixture()
def local_copies(tmp_path, emodb_files) -> list[Path]:
    """Copies of four EmoDB files in a temporary folder (so tests can overwrite them)."""
    out = []
    for src in emodb_files[:4]:
        dst = tmp_path / "audio" / src.name
        dst.parent.mkdir(exist_ok=True)
        shutil.copyfile(src, dst)
        out.append(dst)
    return out


# --------------------------------------------------------------------------- cache


def test_cache_hit_returns_identical_arrays_without_extracting(tmp_path, local_copies):
    table = table_of(local_copies)
    extractor = CountingStats()
    cold = extract_features(table, extractor, cache_dir=tmp_path / "cache", progress=False)
    assert extractor.calls == 4
    warm = extract_features(table, extractor, cache_dir=tmp_path / "cache", progress=False)
    assert extractor.calls == 4  # nothing extracted the second time
    assert warm.ids == cold.ids
    for a, b in zip(cold.values, warm.values, strict=True):
        np.testing.assert_array_equal(a, b)
        assert b.dtype == np.float32
    folder = cache_folder(tmp_path / "cache", extractor)
    assert len(list(folder.glob("*.npy"))) == 4
    assert (folder / "extractor.json").is_file()
    assert not list(folder.glob(".tmp-*"))  # atomic writes leave no temporary files
    # without a cache the same numbers come out
    plain = extract_features(table, CountingStats(), progress=False)
    for a, b in zip(plain.values, warm.values, strict=True):
        np.testing.assert_array_equal(a, b)


def test_cache_misses_when_config_changes(tmp_path, local_copies):
    table = table_of(local_copies)
    extract_features(table, CountingStats(), cache_dir=tmp_path / "cache", progress=False)
    scaled = CountingStats(scale=2.0)
    out = extract_features(table, scaled, cache_dir=tmp_path / "cache", progress=False)
    assert scaled.calls == 4
    assert cache_folder(tmp_path / "cache", scaled) != cache_folder(tmp_path / "cache", CountingStats())
    plain = extract_features(table, CountingStats(), progress=False)
    np.testing.assert_allclose(out.values[0], 2.0 * plain.values[0], rtol=1e-6)


def test_cache_misses_when_file_content_changes_under_the_same_name(tmp_path, local_copies, emodb_files):
    table = table_of(local_copies)
    extractor = CountingStats()
    before = extract_features(table, extractor, cache_dir=tmp_path / "cache", progress=False)
    shutil.copyfile(emodb_files[5], local_copies[0])  # other recording, same file name
    after = extract_features(table, extractor, cache_dir=tmp_path / "cache", progress=False)
    assert extractor.calls == 5  # only the changed file was recomputed
    assert not np.array_equal(before.values[0], after.values[0])
    np.testing.assert_array_equal(before.values[1], after.values[1])


@pytest.mark.parametrize("entry", [np.zeros(7, np.float32), np.zeros((3, 2), np.float32), np.zeros(2, np.float64),
                                   np.array(["a", "b"]), b"not a numpy file"])  # fmt: skip
def test_a_damaged_cache_entry_is_a_miss_that_names_the_file(entry, tmp_path, local_copies, caplog):
    table = table_of(local_copies)
    fresh = extract_features(table, CountingStats(), cache_dir=tmp_path / "cache", progress=False)
    path = min(cache_folder(tmp_path / "cache", CountingStats()).glob("*.npy"))
    if isinstance(entry, bytes):
        path.write_bytes(entry)
    else:
        np.save(path, entry)
    extractor = CountingStats()
    with caplog.at_level("WARNING", logger="serkit.features.extract"):
        again = extract_features(table, extractor, cache_dir=tmp_path / "cache", progress=False)
    assert extractor.calls == 1 and str(path) in caplog.text and "recomputing" in caplog.text
    for a, b in zip(fresh.values, again.values, strict=True):
        np.testing.assert_array_equal(a, b)
    replaced = np.load(path)  # the recomputed entry took its place
    assert replaced.shape == (2,) and replaced.dtype == np.float32 and any(np.array_equal(replaced, v) for v in fresh.values)


def test_cache_key_depends_on_bytes_config_channel_and_version(monkeypatch):
    data = b"RIFF....WAVE"
    base = cache_key(data, CountingStats(), "downmix")
    assert base == cache_key(data, CountingStats(), "downmix")
    assert base != cache_key(data + b"\0", CountingStats(), "downmix")
    assert base != cache_key(data, CountingStats(scale=3.0), "downmix")
    assert base != cache_key(data, CountingStats(), "left")
    monkeypatch.setattr(serkit, "__version__", "999.0")
    assert base != cache_key(data, CountingStats(), "downmix")


# --------------------------------------------------------------------------- parallel, failures


def test_parallel_equals_serial_and_bad_files_are_recorded(tmp_path, emodb_files):
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(np.random.default_rng(0).bytes(5000))
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000, subtype="PCM_16")
    missing = tmp_path / "missing.wav"
    paths = [emodb_files[0], garbage, emodb_files[1], empty, emodb_files[2], missing, emodb_files[3]]
    table = table_of(paths)
    extractor = get_extractor("logmel", {"deltas": 1})

    serial = extract_features(table, extractor, n_jobs=1, progress=False)
    parallel = extract_features(table, extractor, n_jobs=2, progress=False)

    good = [p.stem for p in emodb_files[:4]]
    assert serial.ids == parallel.ids == good
    for a, b in zip(serial.values, parallel.values, strict=True):
        np.testing.assert_array_equal(a, b)
    for result in (serial, parallel):
        assert set(result.failures) == {"garbage", "empty", "missing"}
        assert "cannot decode" in result.failures["garbage"] and str(garbage) in result.failures["garbage"]
        assert "no samples" in result.failures["empty"]
        assert "no such file" in result.failures["missing"]


def test_feature_errors_are_per_file_failures_and_other_errors_propagate(emodb_files):
    class Unusable(CountingStats):
        def extract(self, audio):
            if audio.path.endswith(emodb_files[0].name):
                raise FeatureError("openSMILE returned 3 non-finite values")
            return super().extract(audio)

    result = extract_features(table_of(emodb_files[:2]), Unusable(), progress=False)
    assert result.ids == [emodb_files[1].stem]
    assert "non-finite" in result.failures[emodb_files[0].stem]

    class Broken(CountingStats):
        def extract(self, audio):
            raise RuntimeError("model exploded")

    with pytest.raises(RuntimeError, match="exploded"):
        extract_features(table_of(emodb_files[:2]), Broken(), progress=False)


def test_too_short_files_fail_with_the_minimum_duration(tmp_path, emodb_files):
    short = tmp_path / "short.wav"
    sf.write(short, np.full(160, 0.1, dtype=np.float32), 16000)  # 10 ms
    result = extract_features(table_of([short, emodb_files[0]]), get_extractor("logmel"), progress=False)
    assert result.ids == [emodb_files[0].stem]
    assert "10.0 ms" in result.failures["short"]
    strict = extract_features(table_of([emodb_files[0]]), get_extractor("logmel"), progress=False, min_duration=5.0)
    assert list(strict.failures) == [emodb_files[0].stem]


# --------------------------------------------------------------------------- batches


@register
class BatchingStats(CountingStats):
    """Test extractor that batches: frame-level RMS over 10-ms frames; records each batch's lengths."""

    name = "test_batching_stats"
    level = "frame"

    def __init__(self, config=None, **overrides):
        self.batches: list[list[int]] = []
        super().__init__(config, **overrides)

    @property
    def batch_size(self) -> int:
        return 3

    @property
    def dim(self) -> int:
        return 1

    def extract(self, audio: Audio) -> np.ndarray:
        require_rate(audio, 16000, self.name)
        if audio.n_samples < 160:
            raise TooShortAudioError(f"{self.name} needs 160 samples", audio.path)
        x = audio.samples[0, : audio.n_samples // 160 * 160].reshape(-1, 160)
        return (self.config.scale * np.sqrt((x.astype(np.float64) ** 2).mean(axis=1)))[:, None].astype(np.float32)

    def extract_batch(self, audios):
        self.batches.append([a.n_samples for a in audios])
        return [self.extract(a) for a in audios]


def test_batches_group_similar_lengths_and_results_keep_table_order(tmp_path, emodb_files):
    table = table_of(emodb_files)
    extractor = BatchingStats()
    batched = extract_features(table, extractor, cache_dir=tmp_path, progress=False)
    assert batched.ids == [p.stem for p in emodb_files]  # table order, not length order
    lengths = sorted(sf.info(p).frames for p in emodb_files)
    assert extractor.batches == [lengths[:3], lengths[3:]]  # shortest three, then the rest
    for path, values in zip(emodb_files, batched.values, strict=True):
        np.testing.assert_array_equal(values, extractor.extract(load_audio(path)))
    # One cache entry per file, each equal to the file's own features; a second run reads them.
    assert len(list(cache_folder(tmp_path, extractor).glob("*.npy"))) == len(emodb_files)
    again = BatchingStats()
    cached = extract_features(table, again, cache_dir=tmp_path, progress=False)
    assert again.batches == [] and all(np.array_equal(a, b) for a, b in zip(batched.values, cached.values, strict=True))
    parallel = extract_features(table, BatchingStats(), n_jobs=2, progress=False)
    assert parallel.ids == batched.ids
    assert all(np.array_equal(a, b) for a, b in zip(batched.values, parallel.values, strict=True))


def test_a_failing_file_in_a_batch_fails_alone(tmp_path, emodb_files):
    short = tmp_path / "short.wav"
    sf.write(short, np.full(100, 0.1, dtype=np.float32), 16000)  # too short for the extractor only
    table = table_of([emodb_files[0], short, emodb_files[1], emodb_files[2]])
    extractor = BatchingStats()
    result = extract_features(table, extractor, progress=False, min_duration=0.0)
    assert result.ids == [p.stem for p in emodb_files[:3]]
    assert list(result.failures) == ["short"] and "160 samples" in result.failures["short"]
    assert extractor.batches[0][0] == 100 and len(extractor.batches[0]) == 3  # it was batched, then retried


def test_a_batch_with_the_wrong_number_of_results_stops_the_run(emodb_files):
    class Lossy(BatchingStats):
        def extract_batch(self, audios):
            return super().extract_batch(audios)[:-1]

    with pytest.raises(FeatureError, match="2 results for 3"):
        extract_features(table_of(emodb_files[:3]), Lossy(), progress=False)


@pytest.mark.parametrize(
    ("table", "kwargs", "error"),
    [
        (pd.DataFrame({"utterance_id": ["a"]}), {}, CorpusError),
        (pd.DataFrame({"utterance_id": ["a", "a"], "path": ["x", "y"]}), {}, CorpusError),
        (pd.DataFrame({"utterance_id": ["a"], "path": ["x"]}), {"channel": "centre"}, ConfigError),
        (pd.DataFrame({"utterance_id": ["a"], "path": ["x"]}), {"n_jobs": 0}, ConfigError),
    ],
)
def test_bad_arguments(table, kwargs, error):
    with pytest.raises(error):
        extract_features(table, CountingStats(), progress=False, **kwargs)


# --------------------------------------------------------------------------- channels and rates


def test_emovo_is_resampled_from_48_khz(emovo_file):
    extractor = get_extractor("logmel")
    result = extract_features(table_of([emovo_file]), extractor, progress=False)
    info = sf.info(str(emovo_file))
    assert info.samplerate == 48000 and result.source_rates == {emovo_file.stem: 48000}
    assert result.sample_rate == 16000 and result.frame_shift == pytest.approx(0.010)
    n16 = round(info.frames * 16000 / 48000)
    frames = result.values[0].shape[0]
    assert frames == 1 + math.ceil((n16 - 400) / 160)
    assert frames * 0.010 == pytest.approx(info.frames / 48000, abs=0.02)


def test_channel_selection_on_real_stereo(emovo_file):
    audio = load_audio(emovo_file)
    assert audio.channels == 2
    extractor = get_extractor("logmel")
    left = extract_audio(audio, extractor, "left")
    right = extract_audio(audio, extractor, "right")
    assert not np.allclose(left, right, atol=0.1)  # two spaced microphones
    np.testing.assert_array_equal(extract_audio(audio, extractor, 1), right)
    np.testing.assert_array_equal(extract_audio(audio, extractor, 0), left)
    # mid = (L + R) / 2 = downmix for two channels
    mid = extract_audio(audio, extractor, "mid")
    np.testing.assert_allclose(mid, extract_audio(audio, extractor, "downmix"), atol=1e-4)
    with pytest.raises(AudioError, match="channel 2"):
        select_channel(audio, 2)
    result = extract_features(table_of([emovo_file]), extractor, channel=2, progress=False)
    assert len(result) == 0 and "channel 2" in result.failures[emovo_file.stem]


def test_extract_audio_refuses_too_short_input():
    with pytest.raises(TooShortAudioError):
        extract_audio(Audio(np.full((2, 480), 0.1, dtype=np.float32), 48000), get_extractor("logmel"))  # 10 ms stereo


# --------------------------------------------------------------------------- FeatureSet


def test_featureset_tables(emodb_files):
    table = table_of(emodb_files[:3])
    stats = extract_features(table, CountingStats(), progress=False)
    assert len(stats) == 3 and stats.matrix().shape == (3, 2) and stats.matrix().dtype == np.float32
    frame = stats.frame()
    assert list(frame.index) == [p.stem for p in emodb_files[:3]] and frame.index.name == "utterance_id"
    assert list(frame.columns) == ["test_counting_stats_0", "test_counting_stats_1"]
    picked = stats.select([emodb_files[2].stem, emodb_files[0].stem])
    np.testing.assert_array_equal(picked.matrix(), stats.matrix()[[2, 0]])
    with pytest.raises(FeatureError):
        stats.select(["nope"])

    frames = extract_features(table, get_extractor("logmel"), progress=False)
    assert isinstance(frames, FeatureSet) and frames.level == "frame"
    with pytest.raises(FeatureError):
        frames.matrix()
    assert frames.names[:2] == ["logmel_0", "logmel_1"]
    assert frames.extractor == get_extractor("logmel").describe() and frames.channel == "downmix"


def test_featureset_built_by_hand_without_names():
    fs = FeatureSet(
        ids=["a", "b"],
        values=[np.array([1, 2, 3], np.float32), np.array([4, 5, 6], np.float32)],
        extractor={"name": "x", "version": 1, "config": {}},
        channel="downmix",
        level="utterance",
    )
    assert fs.dim == 3 and fs.columns == ["x_0", "x_1", "x_2"] and fs.failures == {}
    np.testing.assert_array_equal(fs.frame().loc["b"].to_numpy(), [4, 5, 6])
