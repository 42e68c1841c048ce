"""The feature-extractor protocol and its name registry.

Every extractor is a class with a typed, frozen ``Config`` dataclass, registered under a name.
It declares the sample rate it needs, whether it returns frame-level ``(frames, dims)`` or
utterance-level ``(dims,)`` float32 arrays, its frame shift in seconds and its output dimension.
``extract`` takes an :class:`~serkit.audio.Audio` that is already at ``sample_rate`` and mono
(the pipeline in :mod:`serkit.features.extract` resamples and selects the channel, visibly).
An extractor that runs faster on several recordings at once (a network) overrides
``extract_batch`` and says how many it wants in ``batch_size``; the pipeline then hands it
recordings of similar length together.

Adding a feature is one class decorated by :func:`register` and, for ``serkit list`` and recipes
to find it without an import, an entry point in the ``serkit.extractors`` group
(:mod:`serkit.registry`; ``docs/extending.md``).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np

from serkit.audio import Audio, require_rate
from serkit.config import Configurable
from serkit.errors import AudioError, TooShortAudioError
from serkit.features.layout import Layout
from serkit.registry import Registry

Level = Literal["frame", "utterance"]


class Extractor(Configurable, ABC):
    """Base class of all feature extractors.

    Subclasses set ``name``, ``level`` and a frozen dataclass ``Config``; they implement
    ``sample_rate``, ``dim`` and ``extract``. ``frame_shift`` is the hop in seconds for frame-level
    extractors and ``None`` for utterance-level ones; :attr:`layout` names the axes of the
    feature dimension (one axis ``dim`` unless the extractor says more).
    """

    level: ClassVar[Level]
    #: Bumped when the extractor's numbers change; part of the cache key.
    version: ClassVar[int] = 1

    @property
    @abstractmethod
    def sample_rate(self) -> int:
        """Sample rate in Hz the input must have."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Number of output dimensions (the last axis of ``extract``'s result)."""

    @property
    def frame_shift(self) -> float | None:
        """Hop between frames in seconds (frame level), ``None`` for utterance-level features."""
        return None

    @abstractmethod
    def extract(self, audio: Audio) -> np.ndarray:
        """Features of a mono recording at :attr:`sample_rate`.

        Returns:
            float32 ``(frames, dim)`` for frame-level extractors, ``(dim,)`` for utterance-level.

        Raises:
            SampleRateError: ``audio`` is not at :attr:`sample_rate`.
            AudioError: ``audio`` has more than one channel, or is too short for one frame.
        """

    @property
    def batch_size(self) -> int:
        """Most recordings :meth:`extract_batch` should get at once (1: batching gains nothing).

        :func:`~serkit.features.extract.extract_features` hands the extractor groups of up to
        this many recordings of similar length. Not part of the config or the cache key:
        batching may change float rounding, never the features.
        """
        return 1

    def extract_batch(self, audios: Sequence[Audio]) -> list[np.ndarray]:
        """:meth:`extract` of several recordings (each as :meth:`extract` requires).

        Returns:
            One array per recording, in order, each equal to :meth:`extract` of it up to float
            rounding. This default calls :meth:`extract` one recording at a time; an extractor
            that gains from batching overrides it and raises :attr:`batch_size`.

        Raises:
            What :meth:`extract` raises, for the first recording that fails.
        """
        return [self.extract(audio) for audio in audios]

    @property
    def layout(self) -> Layout:
        """The axes of the output dimension (:class:`~serkit.features.layout.Layout`)."""
        return Layout.flat(self.dim)

    def describe(self) -> dict[str, Any]:
        """Name, version and resolved config as plain data (round-trips through :func:`get_extractor`)."""
        return {"name": self.name, "version": self.version, "config": dataclasses.asdict(self.config)}


# --------------------------------------------------------------------------- shared checks


def check_input(audio: Audio, sample_rate: int, min_samples: int, who: str) -> np.ndarray:
    """Validate an extractor's input and return its one channel as a float64 ``(n,)`` array.

    Args:
        audio: the recording handed to ``extract``.
        sample_rate: rate in Hz the extractor needs.
        min_samples: fewest samples the extractor can turn into one frame / one result.
        who: extractor name for messages.

    Raises:
        SampleRateError: ``audio.sample_rate != sample_rate``.
        AudioError: more than one channel (select or downmix first).
        TooShortAudioError: fewer than ``min_samples`` samples.
    """
    require_rate(audio, sample_rate, who)
    if audio.channels != 1:
        raise AudioError(
            f"{who} needs mono audio, got {audio.channels} channels; select a channel or downmix first",
            audio.path,
        )
    if audio.n_samples < min_samples:
        raise TooShortAudioError(
            f"{who} needs at least {min_samples} samples ({min_samples / sample_rate * 1000:.1f} ms) "
            f"at {sample_rate} Hz, got {audio.n_samples}",
            audio.path,
        )
    return audio.samples[0].astype(np.float64)


EXTRACTORS: Registry[type[Extractor]] = Registry("feature extractor", "serkit.extractors")
#: Class decorator adding an extractor to :data:`EXTRACTORS` under its ``name``.
register = EXTRACTORS.register


def get_extractor(name: str, config: dict[str, Any] | None = None) -> Extractor:
    """Instantiate the registered extractor ``name`` with ``config`` (a dict of its options).

    Raises:
        ConfigError: unknown name or invalid config.
    """
    return EXTRACTORS.get(name)(dict(config or {}))


def list_extractors() -> list[str]:
    """Sorted names of all registered extractors (built-in and from installed packages)."""
    return EXTRACTORS.names()
