"""What the openSMILE extractors share: the lazily built ``opensmile.Smile`` and the PCM clip.

opensmile-python hands openSMILE 16-bit PCM made with ``int16(x * 32768)``; without a clip a
sample of +1.0 would wrap around to -32768 (:func:`smile_input`). The ``Smile`` object wraps a
native library handle: it is built on first use in each process and left out of pickles, so an
extractor can be sent to worker processes.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np

from serkit.audio import Audio
from serkit.errors import FeatureError
from serkit.features.base import Extractor, check_input


def smile_input(x: np.ndarray) -> np.ndarray:
    """Mono float samples as openSMILE should get them: float32, clipped to ``[-1, 32767/32768]``."""
    return np.clip(x, -1.0, 32767.0 / 32768.0).astype(np.float32)


class SmileExtractor(Extractor):
    """Base of the openSMILE extractors. Subclasses implement :meth:`make_smile` and set
    :attr:`min_duration`; their ``Config`` has a ``sample_rate`` field."""

    #: Shortest input in seconds that gives finite values (measured per feature set).
    min_duration: float

    def __init__(self, config: Any = None, **overrides: Any):
        self._smile: Any = None
        super().__init__(config, **overrides)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_smile"] = None
        return state

    @abstractmethod
    def make_smile(self) -> Any:
        """A new ``opensmile.Smile`` for this configuration."""

    @property
    def smile(self) -> Any:
        """The ``opensmile.Smile`` of this process, built once."""
        if self._smile is None:
            self._smile = self.make_smile()
        return self._smile

    @property
    def sample_rate(self) -> int:
        return int(self.config.sample_rate)

    @property
    def min_samples(self) -> int:
        """Fewest input samples that give finite values, at :attr:`sample_rate`."""
        return int(np.ceil(self.min_duration * self.sample_rate))

    def run_smile(self, audio: Audio) -> np.ndarray:
        """openSMILE's output for mono ``audio`` as float64 ``(rows, columns)``.

        Raises:
            SampleRateError, AudioError, TooShortAudioError: see :func:`~serkit.features.base.check_input`.
            FeatureError: openSMILE returned no rows or non-finite values.
        """
        x = check_input(audio, self.sample_rate, self.min_samples, self.name)
        values = self.smile.process_signal(smile_input(x), self.sample_rate).to_numpy(dtype=np.float64)
        if values.ndim != 2 or values.shape[0] == 0:
            raise FeatureError(f"{self.name}: openSMILE returned shape {values.shape}", audio.path)
        if not np.all(np.isfinite(values)):
            bad = int(np.sum(~np.isfinite(values)))
            raise FeatureError(f"{self.name}: openSMILE returned {bad} non-finite values", audio.path)
        return values
