"""Spectral frame-level features: log-Mel filterbank energies and the log-magnitude STFT.

Both extractors take mono audio at their configured rate and return float32 ``(frames, dims)``.
The maths lives in the pure functions of this module (framing, filterbanks, spectra); the
extractor classes only hold a config and the filterbank / window computed once from it.

Framing used by ``logmel`` (python_speech_features 0.6 ``sigproc.framesig``): a window of
``L = round_half_up(win_length * sr)`` samples moves by ``H = round_half_up(hop_length * sr)``
samples; frame ``t`` covers samples ``[t H, t H + L)`` and the last frame is zero-padded, so a
recording of ``n >= L`` samples gives

    frames = 1 + ceil((n - L) / H)

(e.g. 16 kHz, 25 ms / 10 ms, n = 30372 -> L = 400, H = 160, 189 frames). Shorter recordings
are refused with :class:`~serkit.errors.TooShortAudioError` rather than padded into a frame.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np

from serkit.audio import Audio
from serkit.errors import ConfigError, FeatureError, TooShortAudioError
from serkit.config import check_choice, check_int, check_option, check_positive, is_number
from serkit.features.base import Extractor, check_input, register
from serkit.features.deltas import stack_deltas
from serkit.features.layout import BIN, DELTA, MEL, Layout

WINDOWS = ("hamming", "hann", "rectangular")


# --------------------------------------------------------------------------- framing


def round_half_up(value: float) -> int:
    """Round a non-negative number to the nearest integer, halves upwards (0.5 -> 1, 2.5 -> 3).

    This is python_speech_features' rule for turning window and hop durations into samples
    (computed exactly on the float's decimal value, unlike ``int(x + 0.5)``).
    """
    return int(decimal.Decimal(value).quantize(decimal.Decimal(1), rounding=decimal.ROUND_HALF_UP))


def frame_count(n_samples: int, frame_length: int, hop: int) -> int:
    """Frames of the zero-padded framing in the module docstring: ``1 + ceil((n - L) / H)``.

    Args:
        n_samples: signal length ``n`` in samples, ``>= frame_length``.
        frame_length: window length ``L`` in samples.
        hop: hop ``H`` in samples.

    Raises:
        TooShortAudioError: ``n_samples < frame_length``.
    """
    if n_samples < frame_length:
        raise TooShortAudioError(f"{n_samples} samples are fewer than one {frame_length}-sample window")
    return 1 + -(-(n_samples - frame_length) // hop)


def frame_signal(x: np.ndarray, frame_length: int, hop: int) -> np.ndarray:
    """Cut ``x`` into overlapping frames, the last one zero-padded (module docstring).

    Args:
        x: ``(n,)`` signal with ``n >= frame_length``.
        frame_length: ``L`` samples per frame.
        hop: ``H`` samples between frame starts.

    Returns:
        ``(frames, L)`` array of ``x``'s dtype (a copy; ``frames`` from :func:`frame_count`).

    Raises:
        TooShortAudioError: ``x`` is shorter than one frame.
    """
    n_frames = frame_count(len(x), frame_length, hop)
    padded = np.zeros((n_frames - 1) * hop + frame_length, dtype=x.dtype)
    padded[: len(x)] = x
    return np.lib.stride_tricks.sliding_window_view(padded, frame_length)[::hop].copy()


def preemphasize(x: np.ndarray, coefficient: float) -> np.ndarray:
    """First-order pre-emphasis ``y[0] = x[0]``, ``y[i] = x[i] - a x[i-1]`` (python_speech_features' rule)."""
    if coefficient == 0:
        return x
    return np.concatenate([x[:1], x[1:] - coefficient * x[:-1]])


def analysis_window(name: str, length: int, *, periodic: bool) -> np.ndarray:
    """A float64 window of ``length`` samples.

    ``periodic=False`` gives numpy's symmetric windows (``np.hamming``, ``np.hanning``: what
    python_speech_features users pass as ``winfunc``); ``periodic=True`` gives the DFT-even
    windows (the symmetric window of ``length + 1`` samples without its last sample), as
    ``scipy.signal.get_window(..., fftbins=True)`` makes them for ``librosa.stft``.

    Raises:
        ConfigError: unknown window name (see :data:`WINDOWS`).
    """
    if name == "rectangular":
        return np.ones(length)
    if name not in WINDOWS:
        raise ConfigError(f"unknown window {name!r}; choose one of {', '.join(WINDOWS)}")
    symmetric = np.hamming if name == "hamming" else np.hanning
    return symmetric(length + 1)[:-1] if periodic else symmetric(length)


# --------------------------------------------------------------------------- filterbanks


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """O'Shaughnessy mel scale ``m = 2595 log10(1 + f / 700)`` (attention-BLSTM-FCN paper, eq. 2)."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`: ``f = 700 (10^(m / 2595) - 1)`` in Hz."""
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def pss_mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular mel filters on integer FFT bins, as python_speech_features 0.6 builds them.

    ``n_mels + 2`` points equally spaced in mel between ``fmin`` and ``fmax`` are mapped to FFT
    bins ``b = floor((n_fft + 1) f / sample_rate)``; filter ``j`` rises linearly from 0 at bin
    ``b_j`` to 1 at ``b_{j+1}`` and falls back to 0 at ``b_{j+2}`` (end bins excluded, peak
    weight 1, no area normalisation). Filters whose edges fall on the same bin stay empty.

    Returns:
        ``(n_mels, n_fft // 2 + 1)`` float64 weights for a power spectrum.
    """
    edges = np.floor((n_fft + 1) * mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2)) / sample_rate)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    bins = np.arange(n_fft // 2 + 1, dtype=np.float64)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        rising = np.where((bins >= left) & (bins < centre), (bins - left) / (centre - left), 0.0)
        falling = np.where((bins >= centre) & (bins < right), (right - bins) / (right - centre), 0.0)
    return rising + falling


def librosa_mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, fmin: float, fmax: float) -> np.ndarray:
    """librosa's default mel filters (Slaney mel scale, area-normalised "slaney" weights).

    Returns:
        ``(n_mels, n_fft // 2 + 1)`` float64 weights for a power spectrum.
    """
    import librosa

    return librosa.filters.mel(
        sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=False, norm="slaney", dtype=np.float64
    )


# --------------------------------------------------------------------------- log-Mel


class _FramedExtractor(Extractor):
    """Window and hop in samples from a config's ``win_length`` / ``hop_length`` (seconds) and
    ``sample_rate`` (Hz), rounded half up as python_speech_features does."""

    @property
    def frame_length(self) -> int:
        """Window length ``L`` in samples."""
        return round_half_up(self.config.win_length * self.config.sample_rate)

    @property
    def hop(self) -> int:
        """Hop ``H`` in samples."""
        return round_half_up(self.config.hop_length * self.config.sample_rate)

    @property
    def frame_shift(self) -> float:
        return self.hop / self.sample_rate


@register
class LogMel(_FramedExtractor):
    """Log-Mel filterbank energies (+ optional Δ, Δ²), frame level.

    Config:
        n_mels: number of mel bands (MSIR and attention-BLSTM-FCN: 40).
        sample_rate: Hz the input must have.
        win_length, hop_length: window and hop in seconds (25 ms / 10 ms in both papers),
            turned into samples with :func:`round_half_up`.
        n_fft: FFT size, ``>=`` the window in samples (frames are zero-padded to it).
        window: ``"hamming"``, ``"hann"`` or ``"rectangular"``.
        preemphasis: pre-emphasis coefficient ``a`` in [0, 1) (0 = off).
        fmin, fmax: band edges in Hz (``fmax=None``: sample_rate / 2).
        filterbank: ``"pss"`` or ``"librosa"`` (below).
        deltas: 0, 1 or 2: output blocks ``[static, Δ, Δ²]`` (regression width 2).
        log_floor: energies are floored at this value before the natural log; ``None`` uses
            the mode's own floor (pss: float64 eps, as python_speech_features replaces zeros
            by it; librosa: 1e-10, librosa's ``amin``).

    Modes (same framing in both, module docstring):

    - ``"pss"`` reproduces python_speech_features 0.6 ``fbank`` + ``numpy.log`` (MSIR,
      msir-2024 Sec. 4.1: log-Mels from python-speech-features 0.6; Sec. 3.1: Hamming windows):
      symmetric window, power spectrum ``|rfft|² / n_fft``, :func:`pss_mel_filterbank`.
      With ``window="rectangular"`` it equals ``python_speech_features.logfbank`` (which
      takes no window argument in 0.6); with ``window="hamming"`` it equals
      ``log(fbank(..., winfunc=numpy.hamming)[0])``.
    - ``"librosa"`` follows the attention-BLSTM-FCN paper (Sec. III-A, eq. 1–2): power
      ``|STFT|²`` with a periodic window (as ``librosa.stft``), librosa's Slaney mel filters,
      ``log(max(x, 1e-10))``. That paper applies no pre-emphasis: set ``preemphasis=0``.

    Output: float32 ``(frames, n_mels * (deltas + 1))``; frame ``t`` starts at ``t * H`` samples.
    """

    name = "logmel"
    level = "frame"

    @dataclass(frozen=True)
    class Config:
        n_mels: int = 40
        sample_rate: int = 16000
        win_length: float = 0.025
        hop_length: float = 0.010
        n_fft: int = 512
        window: Literal["hamming", "hann", "rectangular"] = "hamming"
        preemphasis: float = 0.97
        fmin: float = 0.0
        fmax: float | None = None
        filterbank: Literal["pss", "librosa"] = "pss"
        deltas: int = 0
        log_floor: float | None = None

    def check_config(self) -> None:
        c, who = self.config, self.name
        check_int(who, "n_mels", c.n_mels, 1)
        check_int(who, "sample_rate", c.sample_rate, 1)
        check_positive(who, "win_length", c.win_length)
        check_positive(who, "hop_length", c.hop_length)
        check_int(who, "n_fft", c.n_fft, 2)
        check_choice(who, "window", c.window, WINDOWS)
        check_choice(who, "filterbank", c.filterbank, ("pss", "librosa"))
        check_choice(who, "deltas", c.deltas, (0, 1, 2))
        pre = c.preemphasis
        check_option(is_number(pre) and 0 <= pre < 1, who, f"preemphasis must be in [0, 1), got {pre!r}")
        if c.log_floor is not None:
            check_positive(who, "log_floor", c.log_floor)
        check_option(self.frame_length >= 1 and self.hop >= 1, who, "window and hop must be at least one sample")
        check_option(self.frame_length <= c.n_fft, who, f"{self.frame_length}-sample window exceeds n_fft={c.n_fft}")
        check_option(is_number(c.fmin) and c.fmin >= 0, who, f"fmin must be >= 0 Hz, got {c.fmin!r}")
        check_option(c.fmax is None or is_number(c.fmax), who, f"fmax must be a number (Hz) or None, got {c.fmax!r}")
        check_option(
            c.fmin < self.fmax <= c.sample_rate / 2,
            who,
            f"need 0 <= fmin < fmax <= sample_rate / 2, got fmin={c.fmin}, fmax={self.fmax}",
        )

    @property
    def sample_rate(self) -> int:
        return int(self.config.sample_rate)

    @property
    def dim(self) -> int:
        return self.config.n_mels * (self.config.deltas + 1)

    @property
    def layout(self) -> Layout:
        """``delta`` (static, Δ, Δ²: ``deltas + 1``) × ``mel`` (``n_mels``)."""
        return Layout.of((DELTA, self.config.deltas + 1), (MEL, self.config.n_mels))

    @property
    def fmax(self) -> float:
        """Upper band edge in Hz (``sample_rate / 2`` when the config says ``None``)."""
        return self.config.sample_rate / 2 if self.config.fmax is None else float(self.config.fmax)

    @property
    def names(self) -> list[str]:
        """Column names: ``logmel_<band>``, then ``_d`` and ``_dd`` suffixes for Δ and Δ²."""
        base = [f"logmel_{i}" for i in range(self.config.n_mels)]
        return [n + suffix for suffix in ("", "_d", "_dd")[: self.config.deltas + 1] for n in base]

    @cached_property
    def _window(self) -> np.ndarray:
        return analysis_window(self.config.window, self.frame_length, periodic=self.config.filterbank == "librosa")

    @cached_property
    def _filterbank(self) -> np.ndarray:
        c = self.config
        build = pss_mel_filterbank if c.filterbank == "pss" else librosa_mel_filterbank
        return build(c.n_mels, c.n_fft, c.sample_rate, float(c.fmin), self.fmax)

    def extract(self, audio: Audio) -> np.ndarray:
        """Log-Mel features of mono ``audio`` at :attr:`sample_rate`.

        Returns:
            float32 ``(1 + ceil((n - L) / H), dim)``.

        Raises:
            SampleRateError, AudioError, TooShortAudioError: see :func:`check_input`
                (at least one window of ``L`` samples is needed).
        """
        c = self.config
        x = check_input(audio, self.sample_rate, self.frame_length, self.name)
        frames = frame_signal(preemphasize(x, c.preemphasis), self.frame_length, self.hop) * self._window
        power = np.abs(np.fft.rfft(frames, n=c.n_fft, axis=1)) ** 2
        if c.filterbank == "pss":
            power /= c.n_fft
        floor = c.log_floor
        if floor is None:
            floor = np.finfo(np.float64).eps if c.filterbank == "pss" else 1e-10
        logmel = np.log(np.maximum(power @ self._filterbank.T, floor))
        return stack_deltas(logmel, c.deltas).astype(np.float32)


# --------------------------------------------------------------------------- log-magnitude STFT


@register
class LogSTFT(_FramedExtractor):
    """Log-magnitude STFT ``log(|X| + eps)``, frame level (emotion-embedding-ae Sec. III-A.1).

    The paper feeds a 513-bin log-magnitude spectrogram to its autoencoder (Table 1: 513 input
    channels, so ``n_fft = 1024``) but states no window or hop. The defaults are those of the
    voice-conversion autoencoder its architecture descends from (Chou et al. 2018, conv bank
    + instance norm + GRU on 513-bin log spectra; their preprocessing: 16 kHz, ``n_fft`` 1024,
    50 ms Hann window, 12.5 ms hop, ``librosa.stft`` framing).

    Config:
        sample_rate: Hz the input must have.
        n_fft: FFT size; the output has ``n_fft // 2 + 1`` bins.
        win_length, hop_length: seconds (rounded half-up to samples); window <= ``n_fft``.
        window: ``"hann"``, ``"hamming"`` or ``"rectangular"`` (periodic, as ``librosa.stft``).
        center: pad ``n_fft // 2`` zeros on both sides so frame ``t`` is centred on sample
            ``t * H`` (``librosa.stft(center=True, pad_mode="constant")``); then a signal of
            ``n`` samples gives ``1 + n // H`` frames, otherwise ``1 + (n - n_fft) // H`` and
            ``n >= n_fft`` is required.
        eps: added to the magnitude before the natural log.

    The window (``L`` samples) sits in the middle of each ``n_fft``-sample frame, as in
    librosa. Output: float32 ``(frames, n_fft // 2 + 1)``.
    """

    name = "stft"
    level = "frame"

    @dataclass(frozen=True)
    class Config:
        sample_rate: int = 16000
        n_fft: int = 1024
        win_length: float = 0.050
        hop_length: float = 0.0125
        window: Literal["hann", "hamming", "rectangular"] = "hann"
        center: bool = True
        eps: float = 1e-6

    def check_config(self) -> None:
        c, who = self.config, self.name
        check_int(who, "sample_rate", c.sample_rate, 1)
        check_int(who, "n_fft", c.n_fft, 2)
        check_positive(who, "win_length", c.win_length)
        check_positive(who, "hop_length", c.hop_length)
        check_choice(who, "window", c.window, WINDOWS)
        check_choice(who, "center", c.center, (True, False))
        check_positive(who, "eps", c.eps)
        check_option(self.frame_length >= 1 and self.hop >= 1, who, "window and hop must be at least one sample")
        check_option(self.frame_length <= c.n_fft, who, f"{self.frame_length}-sample window exceeds n_fft={c.n_fft}")

    @property
    def sample_rate(self) -> int:
        return int(self.config.sample_rate)

    @property
    def dim(self) -> int:
        return self.config.n_fft // 2 + 1

    @property
    def layout(self) -> Layout:
        """One axis ``bin`` of ``n_fft // 2 + 1`` frequency bins."""
        return Layout.of((BIN, self.dim))

    @property
    def names(self) -> list[str]:
        """Column names ``stft_<bin>``; bin ``k`` is ``k * sample_rate / n_fft`` Hz."""
        return [f"stft_{k}" for k in range(self.dim)]

    @cached_property
    def _window(self) -> np.ndarray:
        n_fft, length = self.config.n_fft, self.frame_length
        window = np.zeros(n_fft)
        start = (n_fft - length) // 2
        window[start : start + length] = analysis_window(self.config.window, length, periodic=True)
        return window

    def extract(self, audio: Audio) -> np.ndarray:
        """Log-magnitude spectrogram of mono ``audio`` at :attr:`sample_rate`.

        Returns:
            float32 ``(frames, n_fft // 2 + 1)`` (frame count: see the class docstring).

        Raises:
            SampleRateError, AudioError, TooShortAudioError: see :func:`check_input`; at least
                one window (``L`` samples; ``n_fft`` samples when ``center=False``) is needed.
        """
        c = self.config
        min_samples = self.frame_length if c.center else c.n_fft
        x = check_input(audio, self.sample_rate, min_samples, self.name)
        if c.center:
            x = np.pad(x, c.n_fft // 2)
        frames = np.lib.stride_tricks.sliding_window_view(x, c.n_fft)[:: self.hop] * self._window
        magnitude = np.abs(np.fft.rfft(frames, axis=1))
        return np.log(magnitude + c.eps).astype(np.float32)


__all__ = [
    "LogMel",
    "LogSTFT",
    "analysis_window",
    "frame_count",
    "frame_signal",
    "librosa_mel_filterbank",
    "hz_to_mel",
    "mel_to_hz",
    "preemphasize",
    "pss_mel_filterbank",
    "round_half_up",
    "segment_starts",
]


def segment_starts(n_frames: int, length: int = 64, hop: int = 32) -> np.ndarray:
    """First frame of every fixed-length segment of a ``n_frames``-frame spectrogram.

    Shared by the binaural segments (binaural-dcnn-2020 Sec. II-A: 64-frame context windows) and
    the emotion-embedding autoencoder's test windows (128 frames; ``serkit.models.emotion_ae``).

    Segments start at ``0, hop, 2 hop, …`` while they fit; when frames remain after the last
    one, a final segment ending at the last frame is added, so the whole utterance is covered
    (the tail overlaps its neighbour more than ``length - hop`` frames). An utterance shorter than
    one segment gives the single start 0 (the caller pads or fills it).

    Args:
        n_frames: frames of the utterance, ``>= 1``.
        length: frames per segment (the paper's context window: 64).
        hop: frames between segment starts, ``1 <= hop <= length`` (``length - hop`` frames overlap).

    Returns:
        int64 ``(n_segments,)``, increasing.

    Raises:
        ConfigError: ``length``/``hop`` out of range.
        FeatureError: ``n_frames < 1``.
    """
    if not (
        isinstance(length, (int, np.integer))
        and isinstance(hop, (int, np.integer))
        and 1 <= hop <= length
    ):
        raise ConfigError(
            f"segments need integers 1 <= hop <= length, got length={length!r}, hop={hop!r}"
        )
    if n_frames < 1:
        raise FeatureError("cannot segment a spectrogram without frames")
    if n_frames <= length:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, n_frames - length + 1, hop, dtype=np.int64)
    if starts[-1] + length < n_frames:
        starts = np.append(starts, n_frames - length)
    return starts
