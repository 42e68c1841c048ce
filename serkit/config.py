"""Typed configurations: the one way serkit turns a recipe's plain mapping into options.

Every component a recipe names (corpus adapters aside) — feature extractors, derived features,
models — holds a frozen dataclass ``Config`` built by :func:`config_from_dict`, which refuses
unknown keys, so a misspelt option is an error rather than a silently ignored default.
:class:`Configurable` is the shared constructor; the ``check_*`` helpers raise
:class:`~serkit.errors.ConfigError` with the component's name for impossible values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from serkit.errors import ConfigError


def config_from_dict(cls: type, values: Mapping[str, Any]) -> Any:
    """Build dataclass ``cls`` from ``values``, refusing unknown keys with a :class:`ConfigError`.

    Lists become tuples so that configs stay hashable and round-trip through YAML.

    Raises:
        ConfigError: an unknown key, or the dataclass rejects a value (``TypeError`` /
            ``ValueError`` from its ``__post_init__``).
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


def plain(value: Any) -> Any:
    """Tuples as lists, recursively: a config as it reads in YAML or JSON."""
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


class Configurable:
    """A component with a frozen dataclass ``Config``, registered under ``name``.

    ``Component(config)`` takes ``None`` (defaults), a mapping of options, or a ``Config``
    instance; keyword ``overrides`` replace single options. :meth:`check_config` is the hook for
    checks that need more than one option. No other work happens in ``__init__``.

    Raises:
        ConfigError: unknown option, a value the dataclass rejects, or a failed check.
    """

    name: ClassVar[str]
    Config: ClassVar[type]

    def __init__(self, config: Any = None, **overrides: Any):
        if config is None:
            config = self.Config()
        elif isinstance(config, Mapping):
            config = config_from_dict(self.Config, config)
        if overrides:
            config = dataclasses.replace(config, **overrides)
        if not isinstance(config, self.Config):
            raise ConfigError(f"{self.name}: config must be a {self.Config.__name__}, got {type(config).__name__}")
        self.config = config
        self.check_config()

    def check_config(self) -> None:
        """Raise :class:`ConfigError` for an impossible configuration (hook for subclasses)."""

    def describe(self) -> dict[str, Any]:
        """Name and resolved config as plain data (round-trips through the component's registry)."""
        return {"name": self.name, "config": plain(dataclasses.asdict(self.config))}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


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
