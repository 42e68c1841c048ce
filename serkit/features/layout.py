"""What the columns of a feature are: named axes of its last dimension.

A feature's last dimension is often several things laid side by side: log-Mel bands with their
Δ and Δ² (``delta × mel``), the hidden states of every encoder layer (``layer × unit``), pooled
statistics of those (``stat × layer × unit``). A :class:`Layout` says so once, where the feature
is made, and travels with the data: a model that needs the band count or the number of layers
reads it from the layout instead of a recipe stating it a second time.

Columns are in row-major (C) order over the axes, outermost first: in ``(("delta", 2),
("mel", 40))`` column ``j`` is Δ-order ``j // 40`` of band ``j % 40``, exactly how
:func:`~serkit.features.deltas.stack_deltas` lays out ``[static, Δ]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from serkit.errors import FeatureError

#: Axis names serkit's extractors and derived features use.
DELTA, MEL, BIN, LLD, LAYER, UNIT, STAT, DIM = "delta", "mel", "bin", "lld", "layer", "unit", "stat", "dim"


@dataclass(frozen=True)
class Layout:
    """Named axes of a feature's last dimension, outermost first (module docstring).

    Attributes:
        axes: ``((name, size), ...)``; names are distinct, sizes >= 1.

    Raises:
        FeatureError: repeated names or a size below 1.
    """

    axes: tuple[tuple[str, int], ...]

    def __post_init__(self) -> None:
        axes = tuple((str(name), int(size)) for name, size in self.axes)
        names = [name for name, _ in axes]
        if not axes or len(set(names)) != len(names) or any(size < 1 for _, size in axes):
            raise FeatureError(f"a layout needs distinct axis names and sizes >= 1, got {self.axes!r}")
        object.__setattr__(self, "axes", axes)

    @classmethod
    def flat(cls, dim: int) -> Layout:
        """One axis ``dim`` of ``dim`` columns: a feature with no structure to tell."""
        return cls(((DIM, dim),))

    @classmethod
    def of(cls, *axes: tuple[str, int]) -> Layout:
        """``Layout.of(("delta", 2), ("mel", 40))``."""
        return cls(tuple(axes))

    @property
    def dim(self) -> int:
        """Number of columns (the product of the axis sizes)."""
        return int(np.prod([size for _, size in self.axes]))

    @property
    def names(self) -> tuple[str, ...]:
        """Axis names, outermost first."""
        return tuple(name for name, _ in self.axes)

    def has(self, axis: str) -> bool:
        """Whether ``axis`` is one of the axes."""
        return axis in self.names

    def size(self, axis: str) -> int:
        """Size of ``axis``.

        Raises:
            FeatureError: the layout has no such axis.
        """
        for name, size in self.axes:
            if name == axis:
                return size
        raise FeatureError(f"feature layout {self} has no axis {axis!r}")

    def columns(self, axis: str, index: int | Sequence[int]) -> np.ndarray:
        """Column positions ``(k,)`` int64 of the entries at ``index`` (one or several) along ``axis``, ascending.

        Raises:
            FeatureError: no such axis, or an index outside ``[0, size)``.
        """
        size = self.size(axis)
        wanted = np.atleast_1d(np.asarray(index, dtype=np.int64))
        if wanted.size == 0 or wanted.min() < 0 or wanted.max() >= size:
            raise FeatureError(f"{axis} index {index!r} outside [0, {size}) of layout {self}")
        grid = np.arange(self.dim).reshape([s for _, s in self.axes])
        return np.sort(np.take(grid, wanted, axis=self.names.index(axis)).ravel())

    def take(self, axis: str, index: int | Sequence[int]) -> Layout:
        """The layout of :meth:`columns` ``(axis, index)``: ``axis`` shrinks to the entries taken."""
        count = len(np.atleast_1d(index))
        return Layout(tuple((name, count if name == axis else size) for name, size in self.axes))

    def to_list(self) -> list[list[Any]]:
        """``[[name, size], ...]``: plain data for JSON; :meth:`from_list` reads it back."""
        return [[name, size] for name, size in self.axes]

    @classmethod
    def from_list(cls, data: Sequence[Sequence[Any]]) -> Layout:
        """Inverse of :meth:`to_list`.

        Raises:
            FeatureError: not a list of ``[name, size]`` pairs.
        """
        try:
            return cls(tuple((str(name), int(size)) for name, size in data))
        except (TypeError, ValueError) as exc:
            raise FeatureError(f"not a feature layout: {data!r}") from exc

    def __str__(self) -> str:
        return " × ".join(f"{name} {size}" for name, size in self.axes)
