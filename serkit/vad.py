"""Voice activity: Silero VAD's weights from the installed ``silero-vad`` package, run with onnxruntime.

The model gives a speech probability every 32 ms of a channel at 16 kHz; a hysteresis turns
them into speech segments (:func:`speech_segments_from_probabilities`, thresholds from an
:class:`~serkit.inference.InferenceConfig`). Nothing is downloaded; the weight file's SHA-256 is
checked; onnxruntime's telemetry is off (:mod:`serkit.onnx_runtime`).

Neither ``silero_vad``'s Python code nor torch is imported: the package's ``__init__`` imports
torch (about 3 s on a 2-core machine, the whole cold-start budget of ``serkit predict``), so
serkit reads only its data file and runs the batched "sequence" export of the model itself: the
frames of a recording go through the network a block at a time, each 512-sample frame with the
64 samples before it as context and the recurrent state carried between blocks
(:meth:`SileroVAD.speech_probabilities`; equal to silero's own loop, tested).
"""

from __future__ import annotations

import hashlib
import os
import threading
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np

from serkit.audio import Audio
from serkit.errors import BundleError, ConfigError

#: Silero VAD weights inside the ``silero-vad`` package (pinned 6.2.3) and their SHA-256.
VAD_PACKAGE = "silero_vad"
VAD_FILE = "data/silero_vad_16k_sequence.onnx"
VAD_SHA256 = "9ccdacc4719d8aa7e45a77536bfabec45a03ba1f2fad5e241ab4060b24238a85"
VAD_RATE = 16000
#: Samples per frame (32 ms at 16 kHz), samples of context before each, frames per network call,
#: and the shape of each recurrent state (hidden, cell) of the model.
FRAME, CONTEXT, BLOCK_FRAMES, STATE_SHAPE = 512, 64, 512, (1, 1, 128)
#: Silero's hysteresis: speech ends where the probability falls below ``threshold - NEG_OFFSET``.
NEG_OFFSET = 0.15


def vad_model_path() -> Path:
    """The Silero VAD weight file inside the installed ``silero-vad`` package (its code is not run).

    Raises:
        BundleError: the package is not installed, or has no such file.
    """
    spec = find_spec(VAD_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / VAD_FILE
        if path.is_file():
            return path
    raise BundleError(f"voice activity detection needs the silero-vad package with {VAD_FILE} (pip install silero-vad==6.2.3)")


class SileroVAD:
    """Silero VAD from the installed ``silero-vad`` package, run with onnxruntime.

    The ONNX session is created once and shared: :meth:`speech_segments` keeps the recurrent
    state in local variables, so concurrent calls from several threads are safe. Nothing is
    downloaded; the weight file's SHA-256 is checked against :data:`VAD_SHA256`; onnxruntime's
    telemetry is off (:mod:`serkit.onnx_runtime`).

    Args:
        threads: onnxruntime's threads per call (``None``: the machine's cores). The network is
            recurrent, but its convolutions spread: 60 s took 152 ms on 2 threads and 195 ms on
            one (measured, 2 cores); a service running several recognitions at once gives each 1.

    Raises:
        BundleError: the package or onnxruntime is missing, or the weight file differs from the
            pinned one.
    """

    def __init__(self, threads: int | None = None) -> None:
        try:
            from serkit.onnx_runtime import import_onnxruntime

            ort = import_onnxruntime()
        except ImportError as exc:
            raise BundleError("voice activity detection needs onnxruntime (pip install onnxruntime==1.31.1)") from exc
        path = vad_model_path()
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != VAD_SHA256:
            raise BundleError(f"{path}: SHA-256 {digest} is not the pinned silero-vad 6.2.3 model {VAD_SHA256}")
        options = ort.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        # idle pool threads sleep at once rather than spin on the cores the encoder runs on next
        # (with spinning, VAD + encoder of a 3-s clip took 108 ms instead of 64; measured, 2 cores)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = path
        self._session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])

    def speech_probabilities(self, mono: Audio) -> np.ndarray:
        """Speech probability of every 32 ms frame (512 samples at 16 kHz), float32 ``(frames,)``.

        ``ceil(n / 512)`` frames for ``n`` samples, the last zero-padded; frame ``i`` sees the
        64 samples before it (zeros before the first).

        Args:
            mono: ``(1, n)`` recording at 16 kHz.

        Raises:
            SampleRateError: not 16 kHz (resample first).
            ConfigError: more than one channel.
        """
        from serkit.audio import require_rate

        require_rate(mono, VAD_RATE, "Silero VAD")
        if mono.channels != 1:
            raise ConfigError(f"Silero VAD takes one channel, got {mono.channels}")
        x = np.asarray(mono.samples[0], dtype=np.float32)
        n_frames = -(-len(x) // FRAME)
        padded = np.zeros(CONTEXT + n_frames * FRAME, dtype=np.float32)
        padded[CONTEXT : CONTEXT + len(x)] = x
        # frame i with its context: padded[i * FRAME : i * FRAME + CONTEXT + FRAME]
        framed = np.lib.stride_tricks.sliding_window_view(padded, CONTEXT + FRAME)[::FRAME]
        hidden = cell = np.zeros(STATE_SHAPE, dtype=np.float32)
        probs = [np.zeros(0, dtype=np.float32)]
        for first in range(0, n_frames, BLOCK_FRAMES):
            block = np.ascontiguousarray(framed[first : first + BLOCK_FRAMES])
            p, hidden, cell = self._session.run(["speech_probs", "hn", "cn"], {"input": block, "h": hidden, "c": cell})
            probs.append(np.asarray(p, dtype=np.float32).reshape(-1))
        return np.concatenate(probs)

    def speech_segments(self, mono: Audio, config: Any) -> list[tuple[float, float]]:
        """Speech ``(start, end)`` pairs in seconds, in order, of a mono recording at any rate.

        The recording is resampled to 16 kHz for the model (the times refer to the original).
        ``config`` is a :class:`serkit.inference.InferenceConfig` (its ``vad_threshold``,
        ``min_speech``, ``min_silence`` and ``speech_pad``; not imported here: inference imports
        this module).
        """
        mono16 = mono.resample(VAD_RATE)
        return speech_segments_from_probabilities(
            self.speech_probabilities(mono16),
            mono16.n_samples,
            threshold=config.vad_threshold,
            min_speech=config.min_speech,
            min_silence=config.min_silence,
            speech_pad=config.speech_pad,
        )


def speech_segments_from_probabilities(
    probs: np.ndarray, n_samples: int, *, threshold: float, min_speech: float, min_silence: float, speech_pad: float
) -> list[tuple[float, float]]:
    """Speech ``(start, end)`` in seconds from per-frame speech probabilities (16 kHz, 512-sample
    frames): Silero VAD's hysteresis (silero-vad 6.2, ``get_speech_timestamps`` without a
    maximum segment length; tested equal to it).

    Speech starts at the first frame whose probability reaches ``threshold`` and ends at the first
    frame of a run below ``max(threshold - 0.15, 0.01)`` lasting at least ``min_silence`` seconds
    (a rise back to ``threshold`` within it forgets the run); a segment must be longer than
    ``min_speech`` seconds; one still open at the end ends with the recording. Each segment then
    grows by ``speech_pad`` seconds on both sides, except that two segments closer than twice the
    pad split the silence between them; times stay within the recording.

    Args:
        probs: float ``(frames,)``, frame ``i`` starting at sample ``512 i``.
        n_samples: length of the 16 kHz recording.
        threshold, min_speech, min_silence, speech_pad: as in ``InferenceConfig`` (seconds).
    """
    min_speech_n, min_silence_n, pad = VAD_RATE * min_speech, VAD_RATE * min_silence, VAD_RATE * speech_pad
    low = max(threshold - NEG_OFFSET, 0.01)
    segments: list[list[float]] = []
    start: int | None = None
    silence_from = 0  # first sample of the current run below ``low`` (0: none)
    for i, p in enumerate(np.asarray(probs, dtype=np.float64).tolist()):
        at = FRAME * i
        if p >= threshold:
            silence_from = 0
            if start is None:
                start = at
                continue
        if start is not None and p < low:
            silence_from = silence_from or at
            if at - silence_from >= min_silence_n:
                if silence_from - start > min_speech_n:
                    segments.append([start, silence_from])
                start, silence_from = None, 0
    if start is not None and n_samples - start > min_speech_n:
        segments.append([start, n_samples])
    for i, seg in enumerate(segments):
        if i == 0:
            seg[0] = int(max(0, seg[0] - pad))
        if i + 1 < len(segments):
            nxt = segments[i + 1]
            gap = nxt[0] - seg[1]
            if gap < 2 * pad:
                seg[1] += int(gap // 2)
                nxt[0] = int(max(0, nxt[0] - gap // 2))
            else:
                seg[1] = int(min(n_samples, seg[1] + pad))
                nxt[0] = int(max(0, nxt[0] - pad))
        else:
            seg[1] = int(min(n_samples, seg[1] + pad))
    return [(a / VAD_RATE, b / VAD_RATE) for a, b in segments]


_VADS: dict[int | None, SileroVAD] = {}
_VAD_LOCK = threading.Lock()


def shared_vad(threads: int | None = None) -> SileroVAD:
    """The process-wide :class:`SileroVAD` with ``threads``, loaded on first use."""
    with _VAD_LOCK:
        if threads not in _VADS:
            _VADS[threads] = SileroVAD(threads)
        return _VADS[threads]
