"""Tests for :mod:`serkit.audio`: real recordings, exact decoding, and malformed input that must raise.

Three groups:

- real corpora: the EMOVO stereo file and the EmoDB mono file decode with the documented layout,
  the stereo views are exact, and the four EmoDB files with a RIFF ``PAD `` chunk decode to the
  samples their ``data`` chunk holds (the chunks are parsed here, independently of soundfile);
- files written in the test with known sample values (seeded random signals, hand-built RIFF);
- malformed input (in the manner of librosa's ``test_valid_audio`` file): each case raises the
  documented :mod:`serkit.errors` type, naming the file.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from serkit.audio import MIN_DURATION, STEREO_VIEWS, Audio, load_audio, require_rate, validate_samples
from serkit.errors import (
    AudioError,
    EmptyAudioError,
    NonFiniteAudioError,
    OutOfRangeAudioError,
    SampleRateError,
    SerkitError,
    TooShortAudioError,
    UnreadableAudioError,
)

PAD_CHUNK_FILES = ("14a07Aa", "14a07Fd", "14a07Na", "14a07Wc")
AUDIO_ERRORS = (
    AudioError,
    UnreadableAudioError,
    EmptyAudioError,
    TooShortAudioError,
    NonFiniteAudioError,
    OutOfRangeAudioError,
    SampleRateError,
)


# --------------------------------------------------------------------------------------------
# helpers


def riff_chunks(blob: bytes) -> list[tuple[bytes, int, int]]:
    """``(chunk id, payload offset, payload size)`` for every chunk of a RIFF/WAVE file."""
    riff, _, wave = struct.unpack("<4sI4s", blob[:12])
    if riff != b"RIFF" or wave != b"WAVE":
        raise ValueError("not a RIFF/WAVE file")
    chunks, pos = [], 12
    while pos + 8 <= len(blob):
        cid, size = struct.unpack("<4sI", blob[pos : pos + 8])
        chunks.append((cid, pos + 8, size))
        pos += 8 + size + (size & 1)  # payloads are padded to an even length
    return chunks


def chunk(cid: bytes, payload: bytes) -> bytes:
    """One RIFF chunk, with the pad byte an odd-sized payload needs."""
    return struct.pack("<4sI", cid, len(payload)) + payload + (b"\0" if len(payload) % 2 else b"")


def riff_wave(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def pcm16_fmt(channels: int, rate: int) -> bytes:
    return chunk(b"fmt ", struct.pack("<HHIIHH", 1, channels, rate, rate * channels * 2, channels * 2, 16))


def write_bytes(path: Path, samples: np.ndarray, rate: int, subtype: str, fmt: str = "WAV") -> bytes:
    """Write ``(n, channels)`` samples with soundfile and return the file's bytes."""
    sf.write(path, samples, rate, format=fmt, subtype=subtype)
    return path.read_bytes()


def seeded_signal(n: int, channels: int, seed: int, peak: float = 0.95) -> np.ndarray:
    """``(n, channels)`` float64 uniform noise in [-peak, peak]."""
    return np.random.default_rng(seed).uniform(-peak, peak, size=(n, channels))


def raises_naming(exc_type: type[AudioError], path: str | Path, call) -> AudioError:
    """Run ``call``; it must raise ``exc_type`` whose ``path`` and message name ``path``."""
    with pytest.raises(exc_type) as info:
        call()
    err = info.value
    assert err.path == str(path)
    assert str(path) in str(err)
    assert isinstance(err, SerkitError) and isinstance(err, ValueError)
    return err


# --------------------------------------------------------------------------------------------
# real recordings


@pytest.fixture(scope="module")
def emovo(emovo_file: Path) -> Audio:
    return load_audio(emovo_file)


@pytest.fixture(scope="module")
def emodb(emodb_file: Path) -> Audio:
    return load_audio(emodb_file)


def test_emovo_stereo_layout(emovo: Audio, emovo_file: Path) -> None:
    info = sf.info(str(emovo_file))
    assert emovo.samples.shape == (2, info.frames)
    assert emovo.samples.dtype == np.float32 and emovo.samples.flags.c_contiguous
    assert emovo.sample_rate == 48000 and isinstance(emovo.sample_rate, int)
    assert emovo.path == str(emovo_file)
    assert emovo.duration == pytest.approx(info.frames / 48000)
    # 16-bit FLAC decodes onto the grid k / 32768
    codes = emovo.samples * 32768
    np.testing.assert_array_equal(codes, np.round(codes))


def test_emovo_channels_are_genuinely_different(emovo: Audio) -> None:
    left, right = emovo.samples
    diff_rms = np.sqrt(np.mean((left - right) ** 2))
    sum_rms = np.sqrt(np.mean((left + right) ** 2))
    # spaced microphones: the difference is a real signal, not rounding noise
    assert diff_rms > 0.05 * sum_rms
    assert np.count_nonzero(left != right) > 0.5 * emovo.n_samples


def test_emovo_stereo_views_reconstruct_left_and_right(emovo: Audio) -> None:
    views = {name: emovo.view(name) for name in STEREO_VIEWS}
    for name, view in views.items():
        assert view.samples.shape == (1, emovo.n_samples), name
        assert view.samples.dtype == np.float32
        assert view.sample_rate == emovo.sample_rate and view.path == emovo.path
    left, right = emovo.samples
    mid, side = views["mid"].samples[0], views["side"].samples[0]
    np.testing.assert_array_equal(views["left"].samples[0], left)
    np.testing.assert_array_equal(views["right"].samples[0], right)
    np.testing.assert_allclose(mid + side, left, rtol=0, atol=1e-6)
    np.testing.assert_allclose(mid - side, right, rtol=0, atol=1e-6)
    np.testing.assert_allclose(mid, (left.astype(np.float64) + right) / 2, rtol=0, atol=1e-7)
    assert not np.allclose(side, 0.0, atol=1e-3)


def test_emodb_mono_is_the_degenerate_stereo_case(emodb: Audio, emodb_file: Path) -> None:
    assert emodb.samples.shape == (1, sf.info(str(emodb_file)).frames)
    assert emodb.sample_rate == 16000
    mono = emodb.samples[0]
    for name in ("left", "right", "mid"):
        np.testing.assert_array_equal(emodb.view(name).samples[0], mono)
    side = emodb.view("side").samples
    assert side.shape == (1, emodb.n_samples)
    assert not np.any(side)
    assert emodb.downmix() is emodb


@pytest.mark.parametrize("stem", PAD_CHUNK_FILES)
def test_emodb_files_with_pad_chunk_decode_their_data_chunk(emodb_root: Path, stem: str) -> None:
    path = emodb_root / "wav" / f"{stem}.wav"
    blob = path.read_bytes()
    chunks = {cid: (offset, size) for cid, offset, size in riff_chunks(blob)}
    assert b"PAD " in chunks, "fixture file lost its PAD chunk"
    fmt_offset, _ = chunks[b"fmt "]
    fmt_tag, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", blob[fmt_offset : fmt_offset + 16])
    assert (fmt_tag, channels, rate, bits) == (1, 1, 16000, 16)
    data_offset, data_size = chunks[b"data"]

    audio = load_audio(path)

    assert audio.samples.shape == (1, data_size // block_align)
    assert audio.sample_rate == rate
    # the samples are the data chunk's, not the PAD chunk's bytes read as audio
    expected = np.frombuffer(blob[data_offset : data_offset + data_size], dtype="<i2") / 32768.0
    np.testing.assert_array_equal(audio.samples[0], expected.astype(np.float32))


# --------------------------------------------------------------------------------------------
# written-in-test files with known values


@pytest.mark.parametrize(
    ("fmt", "subtype", "bits"),
    [
        ("WAV", "PCM_16", 16),
        ("WAV", "PCM_24", 24),
        ("WAV", "PCM_32", 32),
        ("FLAC", "PCM_16", 16),
        ("FLAC", "PCM_24", 24),
    ],
)
def test_integer_pcm_decodes_exactly_to_code_over_full_scale(tmp_path: Path, fmt: str, subtype: str, bits: int) -> None:
    full = 2 ** (bits - 1)
    rng = np.random.default_rng(bits)
    codes = rng.integers(-full, full, size=(3000, 2), dtype=np.int64)
    codes[:2, 0] = (-full, full - 1)  # both extremes of the code range
    path = tmp_path / f"codes.{fmt.lower()}"
    sf.write(path, (codes << (32 - bits)).astype(np.int32), 22050, format=fmt, subtype=subtype)

    audio = load_audio(path)

    assert audio.sample_rate == 22050 and audio.samples.shape == (2, 3000)
    expected = codes.T / float(full)
    # 16- and 24-bit codes are exact in float32; 32-bit ones are rounded to float32's 24-bit mantissa
    atol = 0.0 if bits < 32 else 2.0**-24
    np.testing.assert_allclose(audio.samples, expected, rtol=0, atol=atol)
    assert audio.samples.min() == -1.0
    # the top code is 1 - 2**-(bits-1): below 1 for 16/24 bits, rounded up to exactly 1.0 for 32
    assert audio.samples.max() == np.float32(1 - 2.0 ** -(bits - 1))


@pytest.mark.parametrize(
    ("fmt", "subtype", "step"),
    [
        ("WAV", "PCM_16", 2.0**-15),
        ("WAV", "PCM_24", 2.0**-23),
        ("WAV", "PCM_32", 2.0**-24),  # below float32 resolution: the float32 rounding dominates
        ("WAV", "FLOAT", 2.0**-24),
        ("WAV", "DOUBLE", 2.0**-24),
        ("FLAC", "PCM_16", 2.0**-15),
        ("FLAC", "PCM_24", 2.0**-23),
    ],
)
def test_float_signal_round_trips_within_quantisation_step(tmp_path: Path, fmt: str, subtype: str, step: float) -> None:
    signal = seeded_signal(4800, 1, seed=7, peak=1.0)
    signal[:2, 0] = (1.0, -1.0)  # full scale both ways
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, signal, 16000, format=fmt, subtype=subtype)

    audio = load_audio(path)

    assert audio.samples.dtype == np.float32 and audio.samples.shape == (1, 4800)
    err = np.abs(audio.samples[0].astype(np.float64) - signal[:, 0])
    assert err.max() <= step * (1 + 1e-9)
    assert np.all(np.abs(audio.samples) <= 1.0)


@pytest.mark.parametrize("where", ["before_fmt", "between_fmt_and_data", "after_data"])
def test_wav_with_unknown_odd_sized_chunk_loads(where: str) -> None:
    codes = (np.arange(-800, 800) * 37).astype("<i2")
    fmt, data = pcm16_fmt(1, 16000), chunk(b"data", codes.tobytes())
    unknown = chunk(b"zzzz", b"hello")  # odd size: a pad byte follows
    order = {
        "before_fmt": (unknown, fmt, data),
        "between_fmt_and_data": (fmt, unknown, data),
        "after_data": (fmt, data, unknown),
    }[where]
    audio = load_audio(riff_wave(*order))
    assert audio.sample_rate == 16000
    np.testing.assert_array_equal(audio.samples, (codes / 32768.0)[np.newaxis, :])


@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
def test_four_channels_keep_their_order(tmp_path: Path, fmt: str) -> None:
    n = 2000
    ramp = np.arange(n) % 500
    # channel c holds codes c * 5000 + ramp: every channel distinct, every order detectable
    codes = np.stack([c * 5000 - 10000 + ramp for c in range(4)], axis=1).astype(np.int16)
    path = tmp_path / f"quad.{fmt.lower()}"
    sf.write(path, codes, 16000, format=fmt, subtype="PCM_16")

    audio = load_audio(path)

    assert audio.samples.shape == (4, n)
    np.testing.assert_array_equal(audio.samples, codes.T / 32768.0)
    with pytest.raises(AudioError, match="4"):
        audio.view("mid")
    np.testing.assert_allclose(audio.downmix().samples[0], codes.mean(axis=1) / 32768.0, atol=1e-7)


@pytest.mark.parametrize("which", ["emovo", "written_wav"])
def test_bytes_and_open_file_read_the_same_as_path(tmp_path: Path, emovo_file: Path, which: str) -> None:
    if which == "emovo":
        path = emovo_file
    else:
        path = tmp_path / "x.wav"
        sf.write(path, seeded_signal(3000, 2, seed=3), 8000, subtype="PCM_24")
    from_path = load_audio(path)
    from_bytes = load_audio(path.read_bytes())
    with path.open("rb") as handle:
        from_handle = load_audio(handle, name="handle")
    for other in (from_bytes, from_handle):
        assert other.sample_rate == from_path.sample_rate
        np.testing.assert_array_equal(other.samples, from_path.samples)
    assert from_bytes.path is None and from_handle.path == "handle"


# --------------------------------------------------------------------------------------------
# malformed files: each raises the documented type and names the file


@pytest.fixture
def good_wav(tmp_path: Path) -> bytes:
    """A valid 1 s, 16 kHz, stereo 16-bit WAV with a plain 44-byte header."""
    blob = write_bytes(tmp_path / "good.wav", seeded_signal(16000, 2, seed=1), 16000, "PCM_16")
    assert [c[0] for c in riff_chunks(blob)] == [b"fmt ", b"data"] and riff_chunks(blob)[1][1] == 44
    return blob


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.wav"
    raises_naming(UnreadableAudioError, path, lambda: load_audio(path))


def test_directory(tmp_path: Path) -> None:
    path = tmp_path / "folder.wav"
    path.mkdir()
    raises_naming(UnreadableAudioError, path, lambda: load_audio(path))


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    raises_naming(UnreadableAudioError, path, lambda: load_audio(path))


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes_named_wav(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "noise.wav"
    path.write_bytes(np.random.default_rng(seed).bytes(4000))
    raises_naming(UnreadableAudioError, path, lambda: load_audio(path))


def test_text_file_named_flac(tmp_path: Path) -> None:
    path = tmp_path / "notes.flac"
    path.write_text("this is not audio\n" * 100)
    raises_naming(UnreadableAudioError, path, lambda: load_audio(path))


def test_wav_truncated_at_every_point_of_its_header(tmp_path: Path, good_wav: bytes) -> None:
    path = tmp_path / "cut.wav"
    for cut in range(1, 44):
        path.write_bytes(good_wav[:cut])
        # cut before the data chunk's id is complete: the header is unreadable
        expected = UnreadableAudioError if cut <= 40 else (UnreadableAudioError, EmptyAudioError)
        with pytest.raises(expected) as info:
            load_audio(path)
        assert info.value.path == str(path), cut


def test_wav_with_header_but_no_frames_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "noframes.wav"
    sf.write(path, np.zeros((0, 1), dtype=np.float32), 16000, subtype="PCM_16")
    assert path.stat().st_size == 44  # a complete header and an empty data chunk
    raises_naming(EmptyAudioError, path, lambda: load_audio(path))
    raises_naming(EmptyAudioError, path, lambda: load_audio(path, min_duration=0))


def test_wav_truncated_mid_data_returns_the_frames_present(tmp_path: Path, good_wav: bytes) -> None:
    """Documented behaviour (load_audio docstring): not an error; the whole frames present are read.

    The header promises 16000 frames; the file holds 1000 stereo frames and half of the next.
    """
    path = tmp_path / "cut.wav"
    path.write_bytes(good_wav[: 44 + 1000 * 4 + 2])
    audio = load_audio(path)
    full = load_audio(good_wav)
    assert audio.samples.shape == (2, 1000)
    np.testing.assert_array_equal(audio.samples, full.samples[:, :1000])
    validate_samples(audio.samples, audio.sample_rate)  # still valid audio


def test_shorter_than_min_duration(tmp_path: Path) -> None:
    rate = 16000
    shortest = round(MIN_DURATION * rate)  # 400 frames = 25 ms exactly
    path = tmp_path / "short.wav"
    sf.write(path, seeded_signal(shortest - 1, 1, seed=2), rate, subtype="PCM_16")
    raises_naming(TooShortAudioError, path, lambda: load_audio(path))
    assert load_audio(path, min_duration=0).n_samples == shortest - 1
    raises_naming(TooShortAudioError, path, lambda: load_audio(path, min_duration=1.0))
    sf.write(path, seeded_signal(shortest, 1, seed=2), rate, subtype="PCM_16")
    assert load_audio(path).n_samples == shortest  # the boundary itself is accepted


@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_wav_with_non_finite_samples(tmp_path: Path, subtype: str, bad: float) -> None:
    samples = seeded_signal(1600, 2, seed=4)
    samples[800, 1] = bad
    path = tmp_path / "nonfinite.wav"
    sf.write(path, samples, 16000, subtype=subtype)
    raises_naming(NonFiniteAudioError, path, lambda: load_audio(path))


@pytest.mark.parametrize("bad", [1.5, -1.5, 1.0001])
def test_float_wav_outside_unit_range(tmp_path: Path, bad: float) -> None:
    samples = seeded_signal(1600, 1, seed=5)
    samples[100, 0] = bad
    path = tmp_path / "loud.wav"
    sf.write(path, samples, 16000, subtype="FLOAT")
    err = raises_naming(OutOfRangeAudioError, path, lambda: load_audio(path))
    assert f"{abs(bad):.3g}" in str(err)


def test_errors_from_bytes_use_the_given_name() -> None:
    with pytest.raises(UnreadableAudioError) as info:
        load_audio(b"RIFF\x00\x00", name="upload-17")
    assert info.value.path == "upload-17" and "upload-17" in str(info.value)
    # the same bytes give the same message in any process: no "<_io.BytesIO object at 0x…>" in it
    messages = set()
    for _ in range(2):
        with pytest.raises(UnreadableAudioError) as info:
            load_audio(bytearray(b"RIFF\x00\x00\x00\x00WAVEgarbage"), name="upload-17")
        messages.add(str(info.value))
    [message] = messages
    assert " object at 0x" not in message and "data" in message


# --------------------------------------------------------------------------------------------
# in-memory Audio(...)


def test_audio_accepts_valid_input_and_stores_float32() -> None:
    samples = seeded_signal(100, 2, seed=6).T  # float64, (2, 100)
    audio = Audio(samples, np.int64(8000))
    assert audio.samples.dtype == np.float32 and audio.samples.flags.c_contiguous
    assert type(audio.sample_rate) is int and audio.sample_rate == 8000
    np.testing.assert_allclose(audio.samples, samples, atol=1e-7)
    full_scale = np.array([[1.0, -1.0, 0.0]], dtype=np.float32)
    np.testing.assert_array_equal(Audio(full_scale, 16000).samples, full_scale)  # clipped content passes


@pytest.mark.parametrize(
    ("samples", "error"),
    [
        (np.zeros(100, dtype=np.float32), AudioError),  # 1-D
        (np.zeros((1, 2, 100), dtype=np.float32), AudioError),  # 3-D
        ([[0.0, 0.1]], AudioError),  # not an array
        (np.zeros((1, 100), dtype=np.int16), AudioError),  # integer PCM must be decoded first
        (np.zeros((1, 0), dtype=np.float32), EmptyAudioError),
        (np.zeros((0, 100), dtype=np.float32), EmptyAudioError),
        (np.array([[0.0, np.nan]], dtype=np.float32), NonFiniteAudioError),
        (np.array([[0.0], [np.inf]], dtype=np.float32), NonFiniteAudioError),
        (np.array([[0.5, -1.25]], dtype=np.float32), OutOfRangeAudioError),
    ],
)
def test_audio_rejects_bad_samples(samples, error: type[AudioError]) -> None:
    with pytest.raises(error) as info:
        Audio(samples, 16000)
    assert info.value.path is None
    with pytest.raises(error) as info:
        Audio(samples, 16000, path="mem.wav")
    assert info.value.path == "mem.wav" and "mem.wav" in str(info.value)


@pytest.mark.parametrize("rate", [0, -16000, 16000.0, np.float32(16000), "16000", None, True])
def test_audio_rejects_bad_sample_rate(rate) -> None:
    with pytest.raises(SampleRateError, match="positive integer"):
        Audio(np.zeros((1, 10), dtype=np.float32), rate)


# --------------------------------------------------------------------------------------------
# resample, downmix, slice, require_rate


def test_resample_real_48k_to_16k_has_a_third_of_the_samples(emovo: Audio) -> None:
    out = emovo.resample(16000)
    assert out.sample_rate == 16000 and out.channels == 2
    assert out.n_samples == round(emovo.n_samples / 3)
    assert out.samples.dtype == np.float32 and out.path == emovo.path
    assert out.duration == pytest.approx(emovo.duration, abs=1 / 16000)


@pytest.mark.parametrize("n", [48000, 48001, 48002, 4801, 100])
def test_resample_length_rule(n: int) -> None:
    audio = Audio(np.zeros((1, n), dtype=np.float32), 48000)
    assert audio.resample(16000).n_samples == round(n / 3)
    assert audio.resample(44100).n_samples == round(n * 44100 / 48000)


def test_resample_keeps_sine_frequency_and_amplitude() -> None:
    rate, freq, amp = 48000, 1000.0, 0.5
    t = np.arange(rate) / rate
    out = Audio((amp * np.sin(2 * np.pi * freq * t))[np.newaxis, :], rate).resample(16000)
    y = out.samples[0].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(y))
    peak_hz = np.argmax(spectrum) * 16000 / y.size
    assert peak_hz == pytest.approx(freq, abs=16000 / y.size)
    core = y[400:-400]  # away from the filter's edge transients
    assert np.sqrt(2 * np.mean(core**2)) == pytest.approx(amp, rel=0.01)
    # against the sine sampled directly at 16 kHz: no delay, no distortion
    t16 = np.arange(y.size) / 16000
    np.testing.assert_allclose(core, (amp * np.sin(2 * np.pi * freq * t16))[400:-400], atol=1e-4)


def test_resample_removes_content_above_the_new_nyquist() -> None:
    """A 10 kHz tone has no place at 16 kHz (Nyquist 8 kHz); without anti-aliasing it folds to 6 kHz."""
    rate = 48000
    t = np.arange(rate) / rate
    out = Audio((0.5 * np.sin(2 * np.pi * 10000 * t))[np.newaxis, :], rate).resample(16000)
    residual_rms = np.sqrt(np.mean(out.samples[0, 400:-400].astype(np.float64) ** 2))
    assert residual_rms < 0.5 / np.sqrt(2) * 1e-4  # at least 80 dB down


def test_resample_channels_independently() -> None:
    rng = np.random.default_rng(8)
    stereo = Audio(rng.uniform(-0.5, 0.5, (2, 9600)), 48000)
    both = stereo.resample(16000)
    for c, name in enumerate(("left", "right")):
        np.testing.assert_allclose(both.samples[c], stereo.view(name).resample(16000).samples[0], atol=1e-6)


def test_resample_same_rate_returns_same_object(emodb: Audio) -> None:
    assert emodb.resample(16000) is emodb
    assert emodb.resample(np.int32(16000)) is emodb


def test_resampled_full_scale_square_wave_stays_in_range() -> None:
    rate = 48000
    t = np.arange(rate) / rate
    square = np.where(np.sin(2 * np.pi * 100 * t) >= 0, 1.0, -1.0).astype(np.float32)
    # precondition: the anti-aliasing filter does overshoot, so the clip is exercised
    assert np.abs(soxr.resample(square, rate, 16000, quality="VHQ")).max() > 1.05
    out = Audio(square[np.newaxis, :], rate).resample(16000)
    assert np.abs(out.samples).max() <= 1.0
    assert out.samples.max() == 1.0 and out.samples.min() == -1.0


@pytest.mark.parametrize("rate", [0, -8000, 16000.0, "16000", None, True])
def test_resample_rejects_bad_target_rate(emodb: Audio, rate) -> None:
    with pytest.raises(SampleRateError) as info:
        emodb.resample(rate)
    assert info.value.path == emodb.path


def test_downmix_is_the_channel_mean(emovo: Audio) -> None:
    mono = emovo.downmix()
    assert mono.samples.shape == (1, emovo.n_samples) and mono.sample_rate == emovo.sample_rate
    np.testing.assert_allclose(mono.samples[0], emovo.samples.astype(np.float64).mean(axis=0), atol=1e-7)
    np.testing.assert_array_equal(mono.samples, emovo.view("mid").samples)


def test_slice_times_are_seconds(emodb: Audio) -> None:
    part = emodb.slice(0.5, 1.25)
    assert part.sample_rate == 16000 and part.n_samples == 12000
    np.testing.assert_array_equal(part.samples, emodb.samples[:, 8000:20000])
    tail = emodb.slice(emodb.duration - 0.1, emodb.duration + 5.0)  # clamped at the end
    np.testing.assert_array_equal(tail.samples, emodb.samples[:, -1600:])
    head = emodb.slice(-3.0, 0.01)  # clamped at the start
    np.testing.assert_array_equal(head.samples, emodb.samples[:, :160])


@pytest.mark.parametrize(("start", "end"), [(1.0, 0.5), (0.7, 0.7), (100.0, 101.0)])
def test_empty_slice_raises(emodb: Audio, start: float, end: float) -> None:
    with pytest.raises(EmptyAudioError) as info:
        emodb.slice(start, end)
    assert info.value.path == emodb.path


def test_unknown_view_raises(emovo: Audio) -> None:
    with pytest.raises(AudioError, match="centre"):
        emovo.view("centre")  # type: ignore[arg-type]


def test_require_rate(emovo: Audio, emodb: Audio) -> None:
    assert require_rate(emodb, 16000, "logmel") is None
    with pytest.raises(SampleRateError) as info:
        require_rate(emovo, 16000, "logmel")
    message = str(info.value)
    assert "16000 Hz" in message and "48000 Hz" in message and "logmel" in message
    assert info.value.path == emovo.path and emovo.path in message
    require_rate(emovo.resample(16000), 16000, "logmel")


# --------------------------------------------------------------------------------------------
# exception hierarchy


@pytest.mark.parametrize("error", AUDIO_ERRORS)
def test_audio_errors_are_serkit_and_value_errors_with_a_path(error: type[AudioError]) -> None:
    assert issubclass(error, SerkitError) and issubclass(error, ValueError) and issubclass(error, AudioError)
    err = error("something is wrong", Path("/data/x.wav"))
    assert err.path == "/data/x.wav" and err.problem == "something is wrong"
    assert str(err) == "/data/x.wav: something is wrong"
    anonymous = error("something is wrong")
    assert anonymous.path is None and str(anonymous) == "something is wrong"
    with pytest.raises(ValueError):  # callers catching ValueError catch every audio error
        raise err
