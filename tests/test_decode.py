"""Decoding in blocks: the same samples as decoding whole, a bounded peak, streamed FLAC, clean errors."""

from __future__ import annotations

import io
import os
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from serkit.audio import (
    Audio,
    audio_header,
    decode_audio,
    decode_peak_samples,
    load_audio,
    resampled_length,
)
from serkit.errors import (
    NonFiniteAudioError,
    OutOfRangeAudioError,
    TooLongAudioError,
    UnreadableAudioError,
)


def _flac(x: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def _without_total_length(flac: bytes) -> bytes:
    """The FLAC with STREAMINFO's 36-bit total-samples field zeroed, as a streaming encoder writes it."""
    assert flac[:4] == b"fLaC" and flac[4] & 0x7F == 0  # the first metadata block is STREAMINFO
    data = bytearray(flac)
    field = 8 + 13  # STREAMINFO starts at byte 8; total samples: low 4 bits of byte 13, then bytes 14-17
    data[field] &= 0xF0
    data[field + 1 : field + 5] = b"\0\0\0\0"
    return bytes(data)


def test_blocks_give_the_samples_of_a_whole_read_on_a_real_stereo_recording(emovo_file):
    whole = Audio(sf.read(emovo_file, dtype="float32", always_2d=True)[0].T.copy(), 48000)
    assert whole.channels == 2
    kept = decode_audio(emovo_file, block_frames=4096)
    assert np.array_equal(kept.samples, whole.samples)
    # down-mix and resampling per block equal the same steps on the whole recording
    mixed = decode_audio(emovo_file, sample_rate=16000, mono=True, block_frames=4096)
    reference = whole.downmix().resample(16000)
    assert mixed.samples.shape == reference.samples.shape
    assert mixed.n_samples <= resampled_length(whole.n_samples, 48000, 16000)
    np.testing.assert_allclose(mixed.samples, reference.samples, atol=2e-6)
    both = decode_audio(emovo_file, sample_rate=16000, block_frames=1000)  # trimmed in place, rows contiguous
    assert both.samples.flags.c_contiguous
    np.testing.assert_allclose(both.samples, whole.resample(16000).samples, atol=2e-6)


def test_the_worst_accepted_upload_is_decoded_within_its_bound():
    # 150 s at 192 kHz in 8 channels (a 7 MB FLAC: a tone in one channel): 879 MiB as float32 if decoded whole.
    rate, channels, seconds = 192_000, 8, 150
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", rate, channels, "PCM_16", format="FLAC") as f:
        tone = (0.1 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.float32)
        block = np.zeros((rate, channels), np.float32)
        block[:, 3] = tone
        for _ in range(seconds):
            f.write(block)
    data = buf.getvalue()
    assert len(data) < 20 * 1024 * 1024  # inside the service's default upload limit
    whole_bytes = rate * seconds * channels * 4
    for mono in (True, False):
        bound = decode_peak_samples(rate * seconds, rate, channels, sample_rate=16000, mono=mono)
        tracemalloc.start()
        try:
            audio = decode_audio(data, sample_rate=16000, mono=mono)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert audio.samples.shape == (1 if mono else channels, 16000 * seconds)
        assert peak <= 4 * bound, (mono, peak, 4 * bound)
        assert 4 * bound < (0.02 if mono else 0.1) * whole_bytes  # 16 MiB mono, 86 MiB for 8 channels
        kept = audio.samples[0 if mono else 3]
        assert np.max(np.abs(kept[16000:-16000])) == pytest.approx(0.1 / (channels if mono else 1), rel=0.02)


def test_a_flac_without_total_length_is_read(emodb_file):
    x, rate = sf.read(emodb_file, dtype="float32")
    streamed = _without_total_length(_flac(x, rate))
    assert audio_header(streamed).frames is None
    with pytest.raises(ValueError):  # a whole-file read sizes its array from the header: it cannot
        sf.read(io.BytesIO(streamed), dtype="float32")
    audio = load_audio(streamed, name="streamed.flac")
    np.testing.assert_array_equal(audio.samples[0], x)
    assert decode_audio(streamed, sample_rate=8000, max_frames=len(x)).n_samples == round(len(x) / 2)
    with pytest.raises(TooLongAudioError, match="streamed.flac"):  # no length to refuse from: stopped while reading
        decode_audio(streamed, max_frames=len(x) // 2, name="streamed.flac")


def test_a_file_longer_than_max_frames_is_refused_from_its_header(emodb_file):
    frames = sf.info(emodb_file).frames
    with pytest.raises(TooLongAudioError, match="header declares"):
        decode_audio(emodb_file, max_frames=frames - 1)
    assert decode_audio(emodb_file, max_frames=frames).n_samples == frames


def test_bad_samples_are_judged_on_the_file_before_resampling():
    x = np.zeros(48000, np.float32)
    x[30000] = np.nan
    buf = io.BytesIO()
    sf.write(buf, x, 48000, format="WAV", subtype="FLOAT")
    with pytest.raises(NonFiniteAudioError, match="1 samples"):
        decode_audio(buf.getvalue(), sample_rate=16000, mono=True, block_frames=1024)
    x[30000] = 1.5
    buf = io.BytesIO()
    sf.write(buf, x, 48000, format="WAV", subtype="FLOAT")
    with pytest.raises(OutOfRangeAudioError, match="1.5"):
        decode_audio(buf.getvalue(), sample_rate=16000, block_frames=1024)


def test_errors_name_the_upload_and_hold_no_python_object_reprs():
    with pytest.raises(UnreadableAudioError) as err:
        decode_audio(b"not audio at all" * 10, name="notes.wav")
    message = str(err.value)
    assert message.startswith("notes.wav: cannot decode audio") and " at 0x" not in message and "<_io" not in message
    with pytest.raises(UnreadableAudioError) as err:
        audio_header(io.BytesIO(b"RIFF\x10\x00\x00\x00WAVEjunk"), name="cut.wav")
    assert " at 0x" not in str(err.value)


def test_a_file_the_system_will_not_let_us_read_is_reported(tmp_path, emodb_file, monkeypatch):
    path = tmp_path / "locked.wav"
    path.write_bytes(emodb_file.read_bytes())
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(path) else real_access(p, mode, **kw))
    with pytest.raises(UnreadableAudioError, match="permission denied"):
        load_audio(path)
