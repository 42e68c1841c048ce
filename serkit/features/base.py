"""The feature-extractor protocol and its name registry.

Every extractor is a class with a typed, frozen ``Config`` dataclass, registered under a name.
It declares the sample rate it needs, whether it returns frame-level ``(frames, dims)`` or
utterance-level ``(dims,)`` float32 arrays, its frame shift in seconds and its output dimension.
``extract`` takes an :class:`~serkit.audio.Audio` that is already at ``sample_rate`` and mono
(the pipeline in :mod:`serkit.features.extract` resamples and selects the channel, visibly).

Adding a feature is one new module under ``serkit/features/`` with a class decorated by
:func:`register`.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

import numpy as np

from serkit.audio import Audio, require_rate
from serkit.errors import AudioError, ConfigError, TooShortAudioError

Level = Literal["frame", "utterance"]

_REGISTRY: dict[str, type[Extractor]] = {}


class Extractor(ABC):
    """Base class of all feature extractors.

    Subclasses set ``name``, ``level`` and a frozen dataclass ``Config``; they implement
    ``sample_rate``, ``dim`` and ``extract``. ``frame_shift`` is the hop in seconds for frame-level
    extractors and ``None`` for utterance-level ones.
    """

    name: ClassVar[str]
    level: ClassVar[Level]
    Config: ClassVar[type]
    #: Bumped when the extractor's numbers change; part of the cache key.
    version: ClassVar[int] = 1

    def __init__(self, config: Any = None, **overrides: Any):
        if config is None:
            config = self.Config()
        elif isinstance(config, dict):
            config = config_from_dict(self.Config, config)
        if overrides:
            config = dataclasses.replace(config, **overrides)
        if not isinstance(config, self.Config):
            raise ConfigError(f"{self.name}: config must be a {self.Config.__name__}, got {type(config).__name__}")
        self.config = config
        self.check_config()

    def check_config(self) -> None:
        """Raise :class:`ConfigError` for an impossible configuration (hook for subclasses)."""

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

    def describe(self) -> dict[str, Any]:
        """Name, version and resolved config as plain data (round-trips through :func:`get_extractor`)."""
        return {"name": self.name, "version": self.version, "config": dataclasses.asdict(self.config)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


def config_from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Build dataclass ``cls`` from ``values``, refusing unknown keys with a :class:`ConfigError`.

    Lists become tuples so that configs stay hashable and round-trip through YAML.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{cls.__qualname__}: unknown option(s) {unknown}; known: {sorted(names)}")
    clean = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    try:
        return cls(**clean)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{cls.__qualname__}: {exc}") from exc


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


def check_option(condition: bool, who: str, message: str) -> None:
    """Raise :class:`ConfigError` ``"<who>: <message>"`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(f"{who}: {message}")


def check_int(who: str, name: str, value: object, minimum: int) -> None:
    """Raise :class:`ConfigError` unless ``value`` is an integer ``>= minimum``."""
    check_option(is_integer(value) and value >= minimum, who, f"{name} must be an integer >= {minimum}, got {value!r}")


def check_positive(who: str, name: str, value: object) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a real number ``> 0``."""
    check_option(is_number(value) and value > 0, who, f"{name} must be a number > 0, got {value!r}")


def check_choice(who: str, name: str, value: object, choices: tuple) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``choices`` (same type: ``True`` is not ``1``)."""
    valid = any(value == choice and type(value) is type(choice) for choice in choices)
    check_option(valid, who, f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def is_integer(value: object) -> bool:
    """True for Python / numpy integers, False for bools and everything else."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """True for real Python / numpy numbers, False for bools and everything else."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)



def register(cls: type[Extractor]) -> type[Extractor]:
    """Class decorator adding an extractor to the registry under ``cls.name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ConfigError(f"extractor name {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def get_extractor(name: str, config: dict[str, Any] | None = None) -> Extractor:
    """Instantiate the registered extractor ``name`` with ``config`` (a dict of its options).

    Raises:
        ConfigError: unknown name or invalid config.
    """
    _load_builtin()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown feature extractor {name!r}; available: {', '.join(list_extractors())}")
    return _REGISTRY[name](dict(config or {}))


def list_extractors() -> list[str]:
    """Sorted names of all registered extractors."""
    _load_builtin()
    return sorted(_REGISTRY)


def _load_builtin() -> None:
    # Importing the modules runs their @register decorators.
    from serkit.features import encoders, functionals, lld, spectral  # noqa: F401
