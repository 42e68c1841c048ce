"""Audio: samples and sample rate travelling together.

Layout everywhere in serkit: ``samples`` is a ``(channels, n)`` float32 array in [-1, 1], the
sample rate is in Hz, durations are in seconds. Reading goes through soundfile (WAV with any RIFF
chunks, 16/24/32-bit PCM or float, FLAC — also without a total length in its header —, OGG),
block by block (:func:`decode_audio`): a recording is never held whole at a rate or channel
count it is not kept at. Resampling goes through soxr and only happens when asked for:
:meth:`Audio.resample`, or ``decode_audio(..., sample_rate=...)`` (a soxr stream over the
blocks, the same samples as resampling the whole).

Validation rule (one rule for every entry point, :func:`validate_samples`):

- no samples at all -> :class:`~serkit.errors.EmptyAudioError`;
- any NaN or +-Inf -> :class:`~serkit.errors.NonFiniteAudioError`;
- any sample with ``|x| > 1`` -> :class:`~serkit.errors.OutOfRangeAudioError` (integer PCM decodes
  into [-1, 1], 32-bit PCM's top code rounding to 1.0 in float32, and always passes; full-scale,
  clipped recordings are content and pass too);
- shorter than ``min_duration`` seconds -> :class:`~serkit.errors.TooShortAudioError`.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import soundfile as sf
import soxr

from serkit.errors import (
    AudioError,
    EmptyAudioError,
    NonFiniteAudioError,
    OutOfRangeAudioError,
    SampleRateError,
    TooLongAudioError,
    TooShortAudioError,
    UnreadableAudioError,
)

StereoView = Literal["left", "right", "mid", "side"]
STEREO_VIEWS: tuple[StereoView, ...] = ("left", "right", "mid", "side")

#: Default minimum duration in seconds accepted by :func:`load_audio`: one 25 ms analysis window.
MIN_DURATION = 0.025


def _is_rate(value: object) -> bool:
    """True for a positive integer rate in Hz (``bool`` is not a rate, though Python calls it an int)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0


def validate_samples(
    samples: np.ndarray,
    sample_rate: int,
    *,
    min_duration: float = 0.0,
    path: str | Path | None = None,
) -> None:
    """Check a ``(channels, n)`` float array against serkit's audio rule (module docstring).

    Args:
        samples: ``(channels, n)`` floating-point array.
        sample_rate: rate in Hz, a positive integer.
        min_duration: shortest accepted duration in seconds.
        path: file the samples came from, named in the error message.

    Raises:
        AudioError: wrong layout, dtype or sample rate.
        EmptyAudioError, NonFiniteAudioError, OutOfRangeAudioError, TooShortAudioError: as in
            the module docstring.
    """
    if not _is_rate(sample_rate):
        raise SampleRateError(f"sample rate must be a positive integer in Hz, got {sample_rate!r}", path)
    if not isinstance(samples, np.ndarray) or samples.ndim != 2:
        shape = getattr(samples, "shape", None)
        raise AudioError(f"samples must be a 2-D (channels, n) array, got shape {shape}", path)
    if not np.issubdtype(samples.dtype, np.floating):
        raise AudioError(f"samples must be floating point in [-1, 1], got dtype {samples.dtype}", path)
    if samples.shape[0] == 0 or samples.shape[1] == 0:
        raise EmptyAudioError("recording holds no samples", path)
    bad, peak = 0, 0.0
    for start in range(0, samples.shape[1], _CHECK_FRAMES):  # in pieces: no full-size temporaries
        bad_piece, peak_piece = _scan(samples[:, start : start + _CHECK_FRAMES].T)
        bad, peak = bad + bad_piece, max(peak, peak_piece)
    _check_scan(bad, peak, path)
    check_duration(samples.shape[1] / sample_rate, min_duration, path)


_CHECK_FRAMES = 1 << 16


def _scan(frames: np.ndarray) -> tuple[int, float]:
    """(count of non-finite values, peak |x| of the finite ones) of a ``(n, channels)`` block."""
    finite = np.isfinite(frames)
    if finite.all():
        return 0, float(np.max(np.abs(frames))) if frames.size else 0.0
    return int(frames.size - np.count_nonzero(finite)), 0.0


def _check_scan(bad: int, peak: float, path: str | Path | None) -> None:
    if bad:
        raise NonFiniteAudioError(f"{bad} samples are NaN or infinite", path)
    if peak > 1.0:
        raise OutOfRangeAudioError(f"samples reach {peak:.3g}, outside [-1, 1]", path)


def check_duration(duration: float, min_duration: float, path: str | Path | None = None) -> None:
    """Raise :class:`TooShortAudioError` when ``duration`` (seconds) is below ``min_duration``."""
    if duration < min_duration:
        raise TooShortAudioError(
            f"recording is {duration * 1000:.1f} ms long, shorter than the minimum "
            f"{min_duration * 1000:.1f} ms",
            path,
        )


@dataclass(frozen=True, eq=False)
class Audio:
    """A recording: ``samples`` of shape ``(channels, n)``, float32 in [-1, 1], at ``sample_rate`` Hz.

    Construction validates with :func:`validate_samples` (``min_duration`` 0) and stores a
    float32 C-contiguous copy when the input is not already one.

    Attributes:
        samples: ``(channels, n)`` float32.
        sample_rate: Hz.
        path: the source file, or ``None``.
    """

    samples: np.ndarray
    sample_rate: int
    path: str | None = None

    def __post_init__(self) -> None:
        validate_samples(self.samples, self.sample_rate, path=self.path)
        if self.samples.dtype != np.float32 or not self.samples.flags.c_contiguous:
            object.__setattr__(self, "samples", np.ascontiguousarray(self.samples, dtype=np.float32))
        object.__setattr__(self, "sample_rate", int(self.sample_rate))
        if self.path is not None:
            object.__setattr__(self, "path", str(self.path))

    @property
    def channels(self) -> int:
        """Number of channels."""
        return int(self.samples.shape[0])

    @property
    def n_samples(self) -> int:
        """Samples per channel."""
        return int(self.samples.shape[1])

    @property
    def duration(self) -> float:
        """Duration in seconds."""
        return self.n_samples / self.sample_rate

    def _replace(self, samples: np.ndarray, sample_rate: int | None = None) -> Audio:
        return Audio(samples, self.sample_rate if sample_rate is None else sample_rate, self.path)

    def resample(self, sample_rate: int) -> Audio:
        """Resample every channel to ``sample_rate`` Hz with soxr (VHQ). Returns ``self`` if equal.

        The output has ``round(n * sample_rate / self.sample_rate)`` samples per channel. soxr's
        anti-aliasing filter can overshoot a full-scale input slightly; the result is clipped to
        [-1, 1] so it stays valid audio.

        Raises:
            SampleRateError: ``sample_rate`` is not a positive integer.
        """
        if not _is_rate(sample_rate):
            raise SampleRateError(f"target sample rate must be a positive integer in Hz, got {sample_rate!r}", self.path)
        if sample_rate == self.sample_rate:
            return self
        out = soxr.resample(self.samples.T, self.sample_rate, int(sample_rate), quality="VHQ").T
        return self._replace(np.clip(out, -1.0, 1.0), int(sample_rate))

    def downmix(self) -> Audio:
        """Mono ``(1, n)`` mean of all channels; returns ``self`` if already mono."""
        if self.channels == 1:
            return self
        return self._replace(self.samples.mean(axis=0, keepdims=True))

    def view(self, name: StereoView) -> Audio:
        """One stereo view as a mono ``(1, n)`` recording.

        ``left`` = L, ``right`` = R, ``mid`` = (L + R) / 2, ``side`` = (L − R) / 2, so that
        L = mid + side and R = mid − side exactly (up to float32 rounding). The 1/2 scale keeps
        mid and side in [-1, 1]. The binaural paper (Zhang et al. 2020, Sec. II) writes
        M = L + R and S = L − R; the scale is a constant gain of 2 that log-Mel features turn
        into a constant offset.

        A mono recording is the degenerate case L = R: ``left``, ``right`` and ``mid`` are the
        one channel and ``side`` is all zeros.

        Raises:
            AudioError: unknown view name, or more than two channels.
        """
        if name not in STEREO_VIEWS:
            raise AudioError(f"unknown stereo view {name!r}; choose one of {', '.join(STEREO_VIEWS)}", self.path)
        if self.channels > 2:
            raise AudioError(f"stereo views need 1 or 2 channels, recording has {self.channels}", self.path)
        left = self.samples[0]
        right = self.samples[1] if self.channels == 2 else self.samples[0]
        if name == "left":
            out = left
        elif name == "right":
            out = right
        elif name == "mid":
            out = 0.5 * (left + right)
        else:
            out = 0.5 * (left - right)
        return self._replace(out[np.newaxis, :])

    def slice(self, start: float, end: float) -> Audio:
        """The part between ``start`` and ``end`` seconds (clamped to the recording).

        Raises:
            EmptyAudioError: the slice holds no samples.
        """
        a = max(0, int(round(start * self.sample_rate)))
        b = min(self.n_samples, int(round(end * self.sample_rate)))
        return self._replace(self.samples[:, a:max(a, b)])


#: Frames :func:`decode_audio` reads at a time.
BLOCK_FRAMES = 1 << 16
# libsndfile reports SF_COUNT_MAX frames when a header gives no total length (a streamed FLAC).
_UNKNOWN_LENGTH = 1 << 62
_OBJECT_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")

Source = str | Path | BinaryIO | bytes


@dataclass(frozen=True)
class AudioHeader:
    """What a file's header declares, read without decoding any audio.

    Attributes:
        sample_rate: Hz.
        channels: channel count.
        frames: samples per channel, or ``None`` when the header gives no total length (FLAC
            written by a streaming encoder).
        format: soundfile's format name (``WAV``, ``FLAC``, …).
    """

    sample_rate: int
    channels: int
    frames: int | None
    format: str

    @property
    def duration(self) -> float | None:
        """Declared seconds, or ``None`` when the length is unknown."""
        return None if self.frames is None else self.frames / self.sample_rate


def _label(source: Source, name: str | None) -> str:
    return str(source) if isinstance(source, (str, Path)) else (name or "<audio bytes>")


def _problem(exc: BaseException) -> str:
    """A decoder's complaint without Python object reprs (``<_io.BytesIO object at 0x…>``)."""
    text = getattr(exc, "error_string", None) or str(exc)
    return _OBJECT_REPR.sub("the file", text).strip() or type(exc).__name__


class _FrontToBack(sf.SoundFile):
    """soundfile's reader, read front to back: soundfile seeks after every read to track its
    position, which a FLAC without a total length in its header cannot do."""

    def seekable(self) -> bool:
        return False


@contextmanager
def _open(source: Source, label: str) -> Iterator[sf.SoundFile]:
    """soundfile's reader on a path, bytes or binary file; every failure an UnreadableAudioError."""
    if isinstance(source, (str, Path)):
        if not Path(source).is_file():
            problem = "not a regular file" if Path(source).exists() else "no such file"
            raise UnreadableAudioError(problem, label)
        if not os.access(source, os.R_OK):
            raise UnreadableAudioError("permission denied", label)
        handle: str | BinaryIO = str(source)
    else:
        handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    try:
        reader = _FrontToBack(handle)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, EOFError, OSError) as exc:
        raise UnreadableAudioError(f"cannot decode audio ({_problem(exc)})", label) from exc
    with reader:
        try:
            yield reader
        except (sf.LibsndfileError, RuntimeError, TypeError, EOFError, OSError) as exc:
            raise UnreadableAudioError(f"cannot decode audio ({_problem(exc)})", label) from exc


def _header(reader: sf.SoundFile) -> AudioHeader:
    frames = int(reader.frames)
    return AudioHeader(int(reader.samplerate), int(reader.channels), None if frames >= _UNKNOWN_LENGTH else frames,
                       str(reader.format))


def audio_header(source: Source, *, name: str | None = None) -> AudioHeader:
    """The header of a recording (:class:`AudioHeader`), nothing decoded.

    Args:
        source: a path, the file's bytes, or a seekable binary file (its position is restored).
        name: what error messages call a source that is not a path.

    Raises:
        UnreadableAudioError: missing file, no permission, not audio, header truncated.
    """
    position = source.tell() if hasattr(source, "tell") else None
    try:
        with _open(source, _label(source, name)) as reader:
            return _header(reader)
    finally:
        if position is not None:
            source.seek(position)  # type: ignore[union-attr]


def resampled_length(frames: int, rate: int, out_rate: int) -> int:
    """Upper bound on the samples per channel :func:`decode_audio` keeps of ``frames`` input frames.

    soxr's stream gives ``round(frames * out_rate / rate)``; one sample of slack covers rounding.
    """
    return frames if out_rate == rate else -(-frames * out_rate // rate) + 1


def decode_peak_samples(frames: int, rate: int, channels: int, *, sample_rate: int | None = None, mono: bool = False,
                        block_frames: int = BLOCK_FRAMES) -> int:
    """Most float32 samples (4 bytes each) :func:`decode_audio` holds at once for a file of known length.

    The result (``(1 if mono else channels) x resampled_length(frames)``) plus one block's
    working arrays: the decoded block, its NaN/range scan (a boolean and an absolute copy), its
    down-mix, the resampled block and its clipped copy (each with soxr's latency of a few
    thousand samples), and the validation pieces of :class:`Audio`. Counted generously: a bound,
    not an estimate. soxr's and libsndfile's own buffers (a few hundred KiB) are not included.
    """
    out_channels = 1 if mono else channels
    out_rate = sample_rate or rate
    per_block = resampled_length(block_frames, rate, out_rate) + 8192
    working = (3 * block_frames * channels + block_frames * out_channels + 2 * per_block * out_channels
               + 2 * _CHECK_FRAMES * out_channels)
    return out_channels * resampled_length(frames, rate, out_rate) + working


class _Rows:
    """The decoded ``(channels, n)`` result, filled block by block.

    With a known ``capacity`` it is allocated once and trimmed in place at the end; without one
    the blocks are kept and joined at the end (a moment of twice the result's size).
    """

    def __init__(self, channels: int, capacity: int | None):
        self.buf = None if capacity is None else np.empty((channels, capacity), np.float32)
        self.parts: list[np.ndarray] = []
        self.n = 0

    def append(self, block: np.ndarray) -> None:
        """Append ``(k, channels)`` frames (copied)."""
        k = len(block)
        if self.buf is not None and self.n + k > self.buf.shape[1]:  # more than declared: keep the rest as parts
            self.parts, self.buf = [self.buf[:, : self.n]], None
        if self.buf is not None:
            self.buf[:, self.n : self.n + k] = block.T
        elif k:
            self.parts.append(np.array(block.T, dtype=np.float32, order="C"))
        self.n += k

    def result(self) -> np.ndarray:
        if self.buf is None:
            return np.concatenate(self.parts, axis=1) if self.parts else np.zeros((1, 0), np.float32)
        channels, capacity = self.buf.shape
        if self.n == capacity or channels == 1:
            return self.buf[:, : self.n]
        flat = self.buf.reshape(-1)  # move each row down, front to back, to a contiguous (channels, n) in place
        for c in range(1, channels):
            for a in range(0, self.n, _CHECK_FRAMES):  # pieces: numpy copies an overlapping source first
                b = min(self.n, a + _CHECK_FRAMES)
                flat[c * self.n + a : c * self.n + b] = self.buf[c, a:b]
        return flat[: channels * self.n].reshape(channels, self.n)


def decode_audio(
    source: Source,
    *,
    sample_rate: int | None = None,
    mono: bool = False,
    max_frames: int | None = None,
    min_duration: float = MIN_DURATION,
    name: str | None = None,
    block_frames: int = BLOCK_FRAMES,
) -> Audio:
    """Read a recording block by block, down-mixing and resampling each block as it arrives.

    The file is read ``block_frames`` frames at a time with soundfile; each block is checked
    (NaN/Inf, range), averaged over channels when ``mono``, and resampled with a soxr stream
    (VHQ, output clipped to [-1, 1] like :meth:`Audio.resample`) when ``sample_rate`` differs
    from the file's. So the whole file at its native rate and channel count is never in memory.

    Memory: the result, ``(1 if mono else channels) x resampled_length(frames)`` float32,
    allocated once when the length is known (from the header, else ``max_frames``), plus one
    block (``block_frames x channels`` float32) and its down-mix and resampled copies. A file
    whose header gives no length, read without ``max_frames``, is kept in blocks that are joined
    at the end: twice the result for a moment.

    Args:
        source: a path, the file's bytes, or an open binary file (WAV, FLAC — also without a
            total length in its header —, OGG, any format soundfile reads).
        sample_rate: rate of the result in Hz; ``None`` keeps the file's rate.
        mono: average all channels into one.
        max_frames: most input frames accepted; a longer file is refused from its header, or
            as soon as decoding passes the limit when the header gives no length.
        min_duration: shortest accepted duration in seconds.
        name: what error messages call a source that is not a path.
        block_frames: frames read at a time.

    Returns:
        Audio ``(1 or channels, n)`` float32 in [-1, 1] at ``sample_rate`` (or the file's rate).

    Raises:
        UnreadableAudioError: missing file, no permission, not audio, header truncated or
            undecodable.
        TooLongAudioError: more than ``max_frames`` frames.
        EmptyAudioError, TooShortAudioError, NonFiniteAudioError, OutOfRangeAudioError: see the
            module docstring (judged on the file's own samples).
        SampleRateError: ``sample_rate`` is not a positive integer.
    """
    if sample_rate is not None and not _is_rate(sample_rate):
        raise SampleRateError(f"target sample rate must be a positive integer in Hz, got {sample_rate!r}", name)
    label = _label(source, name)
    with _open(source, label) as reader:
        header = _header(reader)
        if max_frames is not None and header.frames is not None and header.frames > max_frames:
            raise TooLongAudioError(f"header declares {header.duration:.1f} s, longer than the limit of "
                                    f"{max_frames / header.sample_rate:.1f} s", label)
        rate, out_rate = header.sample_rate, int(sample_rate or header.sample_rate)
        channels = 1 if mono else header.channels
        stream = None if out_rate == rate else soxr.ResampleStream(rate, out_rate, channels, dtype="float32", quality="VHQ")
        known = header.frames if header.frames is not None else max_frames
        rows = _Rows(channels, None if known is None else resampled_length(known, rate, out_rate))
        block = np.empty((block_frames, header.channels), np.float32)
        frames_in, bad, peak = 0, 0, 0.0
        while len(got := reader.read(block_frames, dtype="float32", always_2d=True, out=block)):
            frames_in += len(got)
            if max_frames is not None and frames_in > max_frames:
                raise TooLongAudioError(f"longer than the limit of {max_frames / rate:.1f} s", label)
            bad_block, peak_block = _scan(got)
            bad, peak = bad + bad_block, max(peak, peak_block)
            if bad or peak > 1.0:
                continue  # refused below; keep counting
            x = got.mean(axis=1, keepdims=True, dtype=np.float32) if mono and header.channels > 1 else got
            rows.append(x if stream is None else np.clip(stream.resample_chunk(x), -1.0, 1.0))
    if frames_in == 0:
        raise EmptyAudioError("recording holds no samples", label)
    _check_scan(bad, peak, label)
    check_duration(frames_in / rate, min_duration, label)
    if stream is not None:
        rows.append(np.clip(stream.resample_chunk(np.zeros((0, channels), np.float32), last=True), -1.0, 1.0))
    return Audio(rows.result(), out_rate, label if isinstance(source, (str, Path)) else name)


def load_audio(
    source: Source,
    *,
    min_duration: float = MIN_DURATION,
    name: str | None = None,
) -> Audio:
    """Read a recording into an :class:`Audio` at its native rate, all channels kept.

    :func:`decode_audio` without down-mix or resampling: the result is allocated once and
    filled block by block.

    Args:
        source: a path, an open binary file, or the file's bytes (any format soundfile reads:
            WAV with any RIFF chunks, 16/24/32-bit integer or float PCM, FLAC — also without a
            total length in its header —, OGG/Vorbis).
        min_duration: shortest accepted duration in seconds (default one 25 ms window).
        name: what error messages call the source when it is not a path.

    Returns:
        Audio with ``samples`` ``(channels, n)`` float32 in [-1, 1] and the file's rate in Hz.

    Raises:
        UnreadableAudioError: missing file, no permission, directory, not audio, header
            truncated or undecodable.
        EmptyAudioError, TooShortAudioError, NonFiniteAudioError, OutOfRangeAudioError: see the
            module docstring.

    A file cut off inside its data chunk (header promises more frames than the file holds) is
    not an error: like libsndfile, this returns the whole frames that are present.
    """
    return decode_audio(source, min_duration=min_duration, name=name)


def require_rate(audio: Audio, sample_rate: int, who: str) -> None:
    """Raise :class:`SampleRateError` unless ``audio`` is at ``sample_rate`` Hz.

    ``who`` names the step that needs the rate, e.g. an extractor, for the message.
    """
    if audio.sample_rate != sample_rate:
        raise SampleRateError(
            f"{who} needs {sample_rate} Hz audio, got {audio.sample_rate} Hz; "
            f"call Audio.resample({sample_rate}) first",
            audio.path,
        )
