"""Audio: samples and sample rate travelling together.

Layout everywhere in serkit: ``samples`` is a ``(channels, n)`` float32 array in [-1, 1], the
sample rate is in Hz, durations are in seconds. Reading goes through soundfile (WAV with any RIFF
chunks, 16/24/32-bit PCM or float, FLAC, OGG); resampling goes through soxr and only happens when
:meth:`Audio.resample` is called.

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
    if not np.all(np.isfinite(samples)):
        bad = int(np.count_nonzero(~np.isfinite(samples)))
        raise NonFiniteAudioError(f"{bad} samples are NaN or infinite", path)
    peak = float(np.max(np.abs(samples)))
    if peak > 1.0:
        raise OutOfRangeAudioError(f"samples reach {peak:.3g}, outside [-1, 1]", path)
    check_duration(samples.shape[1] / sample_rate, min_duration, path)


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


def load_audio(
    source: str | Path | BinaryIO | bytes,
    *,
    min_duration: float = MIN_DURATION,
    name: str | None = None,
) -> Audio:
    """Read a recording into an :class:`Audio` at its native rate, all channels kept.

    Args:
        source: a path, an open binary file, or the file's bytes (any format soundfile reads:
            WAV with any RIFF chunks, 16/24/32-bit integer or float PCM, FLAC, OGG/Vorbis).
        min_duration: shortest accepted duration in seconds (default one 25 ms window).
        name: what error messages call the source when it is not a path.

    Returns:
        Audio with ``samples`` ``(channels, n)`` float32 in [-1, 1] and the file's rate in Hz.

    Raises:
        UnreadableAudioError: missing file, directory, not audio, header truncated or
            undecodable.
        EmptyAudioError, TooShortAudioError, NonFiniteAudioError, OutOfRangeAudioError: see the
            module docstring.

    A file cut off inside its data chunk (header promises more frames than the file holds) is
    not an error: like libsndfile, this returns the whole frames that are present.
    """
    if isinstance(source, (str, Path)):
        label = str(source)
        if not Path(source).is_file():
            problem = "not a regular file" if Path(source).exists() else "no such file"
            raise UnreadableAudioError(problem, label)
        handle: str | BinaryIO = str(source)
    else:
        label = name or "<audio bytes>"
        handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    try:
        data, rate = sf.read(handle, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, EOFError) as exc:
        # libsndfile's own text without "Error opening <_io.BytesIO object at 0x…>": the label names
        # the file, and a message must not change from one process to the next
        detail = getattr(exc, "error_string", None) or exc
        raise UnreadableAudioError(f"cannot decode audio ({detail})", label) from exc
    validate_samples(data.T, rate, min_duration=min_duration, path=label)
    return Audio(np.ascontiguousarray(data.T), int(rate), label if isinstance(source, (str, Path)) else name)


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
