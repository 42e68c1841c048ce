"""Typed configurations: the one way serkit turns a recipe's plain mapping into options.

Every component a recipe names (corpus adapters aside) — feature extractors, derived features,
models — holds a frozen dataclass ``Config`` built by :func:`config_from_dict`, which refuses
unknown keys, so a misspelt option is an error rather than a silently ignored default, and
values that do not fit a field's annotation (:func:`check_type`).
:class:`Configurable` is the shared constructor; the ``check_*`` helpers raise
:class:`~serkit.errors.ConfigError` with the component's name for impossible values.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from serkit.errors import ConfigError


def config_from_dict(cls: type, values: Mapping[str, Any], who: str | None = None) -> Any:
    """Build dataclass ``cls`` from ``values``, refusing unknown keys and values of the wrong type.

    Lists become tuples so that configs stay hashable and round-trip through YAML. Each value is
    checked against its field's annotation (:func:`check_type`) before the dataclass is built,
    so ``C: "high"`` is an error that names the option, not a ``TypeError`` from a comparison
    deep inside; ranges and relations between options are the component's own checks.

    Args:
        cls: the config dataclass.
        values: option -> value, as a recipe states them.
        who: the component's name for messages (default: the dataclass's name).

    Raises:
        ConfigError: an unknown key, a value of the wrong type, or the dataclass rejects a
            value (``TypeError`` / ``ValueError`` from its ``__post_init__``).
    """
    who = who or cls.__qualname__
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{who}: unknown option(s) {unknown}; known: {sorted(names)}")
    clean = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    hints = _field_types(cls)
    for key, value in clean.items():
        if key in hints:
            check_type(who, key, value, hints[key])
    try:
        return cls(**clean)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{who}: {exc}") from exc


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError, AttributeError):  # an annotation that cannot be resolved is not checked
        return {}


def check_type(who: str, name: str, value: object, annotation: Any) -> None:
    """Raise :class:`ConfigError` ``"<who>: <name> must be <what>, got <value>"`` unless ``value``
    fits ``annotation``.

    Understood: ``int`` (not bool), ``float`` (any finite real number, not bool), ``bool``,
    ``str``, ``None``, ``Literal[...]``, unions (``X | None``), ``tuple[X, ...]``, ``tuple[X, Y]``,
    bare ``tuple``, ``Mapping[K, V]`` / ``dict[K, V]`` and ``Any``; other annotations accept
    any instance of the class named (or anything, if it is not a class).
    """
    if not _fits(value, annotation):
        shown = repr(plain(value))
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise ConfigError(f"{who}: {name} must be {_describe(annotation)}, got {shown}")


def _fits(value: object, tp: Any) -> bool:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True
    if tp is type(None) or tp is None:
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if tp is bool:
        return isinstance(value, (bool, np.bool_))
    if tp is int:
        return is_integer(value)
    if tp is float:
        return is_number(value) and _finite(value)
    if tp is str:
        return isinstance(value, str)
    if tp is tuple or origin is tuple:
        if not isinstance(value, tuple):
            return False
        if not args:
            return True
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        return len(value) == len(args) and all(_fits(v, a) for v, a in zip(value, args))
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            return False
        key_type, value_type = args if len(args) == 2 else (Any, Any)
        return all(_fits(k, key_type) and _fits(v, value_type) for k, v in value.items())
    return isinstance(value, tp) if isinstance(tp, type) else True


def _finite(value: object) -> bool:
    try:
        return math.isfinite(value)  # type: ignore[arg-type]
    except OverflowError:
        return False


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None) or tp is None:
        return "null"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, args))
    named = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string", tuple: "a list"}
    if tp in named:
        return named[tp]
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list (each item {_describe(args[0])})"
        return f"a list of {len(args)} items ({', '.join(_describe(a) for a in args)})"
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


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
            config = config_from_dict(self.Config, config, who=getattr(self, "name", None))
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
