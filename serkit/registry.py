"""One registration mechanism for everything a recipe names: corpora, extractors, derived
features and models.

A :class:`Registry` maps names to classes. A class gets in through :meth:`Registry.add`, either

- by the :meth:`Registry.register` class decorator, when its module is imported, or
- as an *entry point* of an installed distribution (``importlib.metadata``) in the registry's
  group, ``serkit.corpora``, ``serkit.extractors``, ``serkit.derived`` or ``serkit.models``.
  serkit declares its own classes there (``pyproject.toml``), and another package adds its own
  the same way, without serkit knowing of it::

      [project.entry-points."serkit.models"]
      my_model = "my_package.models:MyModel"

Entry points are loaded when a name is first looked up, so ``serkit list`` and a recipe that
names one model import only what they use. A name bound to two different classes (two
packages, or two decorated classes) is refused with a :class:`~serkit.errors.ConfigError` that
names both; so is an entry point whose name differs from its class's ``name``.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import metadata
from typing import Generic, TypeVar

from serkit.errors import ConfigError

T = TypeVar("T", bound=type)


def _origin(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class Registry(Generic[T]):
    """Classes of one kind by name (module docstring).

    Args:
        kind: what the classes are, for messages (``"model"``).
        group: the entry-point group (``"serkit.models"``).
    """

    def __init__(self, kind: str, group: str):
        self.kind, self.group = kind, group
        self._classes: dict[str, T] = {}
        self._sources: dict[str, str] = {}
        self._points: dict[str, list[metadata.EntryPoint]] | None = None
        self._loaded: set[str] = set()

    # ------------------------------------------------------------------ adding

    def add(self, name: str, cls: T, source: str | None = None) -> T:
        """Bind ``name`` to ``cls``; binding the same class again (or a reloaded copy of it) is a no-op.

        Raises:
            ConfigError: ``name`` is bound to another class, or is not a non-empty string.
        """
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{self.kind} name must be a non-empty string, got {name!r}")
        held = self._classes.get(name)
        if held is not None and _origin(held) != _origin(cls):
            raise ConfigError(
                f"{self.kind} name {name!r} is registered twice: by {self._sources[name]} and by {source or _origin(cls)}"
            )
        self._classes[name] = cls
        self._sources[name] = source or _origin(cls)
        return cls

    def register(self, cls: T) -> T:
        """Class decorator: add ``cls`` under its ``name`` attribute."""
        return self.add(cls.name, cls)

    # ------------------------------------------------------------------ lookup

    def refresh(self) -> None:
        """Scan the installed distributions' entry points again (after installing a plug-in)."""
        self._points = None

    def _entry_points(self) -> dict[str, list[metadata.EntryPoint]]:
        if self._points is None:
            found: dict[str, list[metadata.EntryPoint]] = {}
            for point in metadata.entry_points(group=self.group):
                same = found.setdefault(point.name, [])
                if all(p.value != point.value for p in same):  # an editable install may list a point twice
                    same.append(point)
            self._points = found
        return self._points

    def _load(self, name: str, points: Iterable[metadata.EntryPoint]) -> None:
        for point in points:
            if point.value in self._loaded:
                continue
            try:
                cls = point.load()
            except Exception as exc:  # a broken plug-in names itself instead of a bare ImportError
                dist = point.dist.name if point.dist else "?"
                raise ConfigError(f"{self.kind} {name!r} from {dist} ({point.value}) cannot be loaded: {exc}") from exc
            if getattr(cls, "name", name) != name:
                raise ConfigError(f"entry point {name!r} ({point.value}) is a {self.kind} named {cls.name!r}")
            dist = f" (package {point.dist.name})" if point.dist else ""
            self.add(name, cls, source=f"{point.value}{dist}")
            self._loaded.add(point.value)

    def get(self, name: str) -> T:
        """The class registered as ``name``, loading its entry point on first use.

        Raises:
            ConfigError: unknown name (the message lists the known ones), a duplicate, or an
                entry point that cannot be loaded.
        """
        self._load(name, self._entry_points().get(name, []))
        if name not in self._classes:
            raise ConfigError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}")
        return self._classes[name]

    def names(self) -> list[str]:
        """Sorted names, registered or available through entry points (nothing is imported)."""
        return sorted(set(self._classes) | set(self._entry_points()))

    def load_all(self) -> dict[str, T]:
        """Every class, entry points loaded: ``{name: class}`` sorted by name."""
        return {name: self.get(name) for name in self.names()}

    def source(self, name: str) -> str:
        """Where ``name`` was registered from (``module.Class``, plus the package for entry points)."""
        self.get(name)
        return self._sources[name]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()
