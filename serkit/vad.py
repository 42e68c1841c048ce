"""Voice activity: Silero VAD from the installed ``silero-vad`` package, run with onnxruntime.

The model gives a speech probability every 32 ms of a channel at 16 kHz; silero's own hysteresis
turns them into speech segments (:meth:`SileroVAD.speech_segments`, thresholds from an
:class:`~serkit.inference.InferenceConfig`). Nothing is downloaded; the weight file's SHA-256 is
checked; onnxruntime's telemetry is off (:mod:`serkit.onnx_runtime`).
"""

from __future__ import annotations

import hashlib
import threading
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from serkit.audio import Audio
from serkit.errors import BundleError, ConfigError

#: Silero VAD weights inside the ``silero-vad`` package (pinned 6.2.3) and their SHA-256.
VAD_PACKAGE = "silero_vad.data"
VAD_FILE = "silero_vad_16k_sequence.onnx"
VAD_SHA256 = "9ccdacc4719d8aa7e45a77536bfabec45a03ba1f2fad5e241ab4060b24238a85"
VAD_RATE = 16000


class SileroVAD:
    """Silero VAD from the installed ``silero-vad`` package, run with onnxruntime.

    The ONNX session is created once and shared: :meth:`speech_segments` keeps its recurrent
    state in local variables, so concurrent calls from several threads are safe. Nothing is
    downloaded; the weight file's SHA-256 is checked against :data:`VAD_SHA256`; onnxruntime's
    telemetry is off (:mod:`serkit.onnx_runtime`).

    Raises:
        BundleError: the package is missing or its weight file differs from the pinned one.
    """

    def __init__(self) -> None:
        try:
            from serkit.onnx_runtime import import_onnxruntime

            import_onnxruntime()  # telemetry off before the VAD's session starts
            import torch

            threads = torch.get_num_threads()
            from silero_vad.sequence_vad import SileroVADSequence

            # silero_vad's package import calls torch.set_num_threads(1) for the whole process,
            # which would run every later encoder pass on one core: put the count back.
            torch.set_num_threads(threads)
        except ImportError as exc:
            raise BundleError("voice activity detection needs the silero-vad package (pip install silero-vad==6.2.3)") from exc
        path = Path(str(resources.files(VAD_PACKAGE).joinpath(VAD_FILE)))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != VAD_SHA256:
            raise BundleError(f"{path}: SHA-256 {digest} is not the pinned silero-vad 6.2.3 model {VAD_SHA256}")
        self.path = path
        self._model = SileroVADSequence(str(path), sampling_rate=VAD_RATE)

    def speech_probabilities(self, mono: Audio) -> np.ndarray:
        """Speech probability of every 32 ms frame (512 samples at 16 kHz), float32 ``(frames,)``.

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
        return self._model.audio_forward(mono.samples[0], sampling_rate=VAD_RATE)

    def speech_segments(self, mono: Audio, config: Any) -> list[tuple[float, float]]:
        """Speech ``(start, end)`` pairs in seconds, in order, of a mono recording at any rate.

        The recording is resampled to 16 kHz for the model (the times refer to the original).
        ``config`` is a :class:`serkit.inference.InferenceConfig` (its ``vad_threshold``,
        ``min_speech``, ``min_silence`` and ``speech_pad``; not imported here: inference imports
        this module).
        """
        from silero_vad import get_speech_timestamps_from_probs

        mono16 = mono.resample(VAD_RATE)
        probs = self.speech_probabilities(mono16)
        stamps = get_speech_timestamps_from_probs(
            probs.tolist(),
            sampling_rate=VAD_RATE,
            threshold=config.vad_threshold,
            min_speech_duration_ms=config.min_speech * 1000,
            min_silence_duration_ms=config.min_silence * 1000,
            speech_pad_ms=config.speech_pad * 1000,
            audio_length_samples=mono16.n_samples,
        )
        return [(s["start"] / VAD_RATE, s["end"] / VAD_RATE) for s in stamps]


_VAD: SileroVAD | None = None
_VAD_LOCK = threading.Lock()


def shared_vad() -> SileroVAD:
    """The process-wide :class:`SileroVAD`, loaded on first use."""
    global _VAD
    with _VAD_LOCK:
        if _VAD is None:
            _VAD = SileroVAD()
        return _VAD
