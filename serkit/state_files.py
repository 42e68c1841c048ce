"""Fitted state on disk without code: arrays in safetensors files, everything else in JSON.

Nothing serkit reads from a model bundle may run code, and pickle (so joblib, and ``torch.load``
of an arbitrary file) can. Every model and fitted derived feature therefore writes its state as

- **arrays**: one safetensors file (:func:`write_arrays`, :func:`read_arrays`). The format is an
  8-byte header length, a JSON header giving each array's name, dtype, shape and byte range, then
  the raw bytes; reading parses the header and copies bytes, nothing else. The whole file is read
  into memory first (no memory map that a later change of the file could pull from under it).
- **everything else**: one JSON object per file (:func:`write_json`, :func:`read_json`), strict:
  ``NaN`` and ``Infinity`` are neither written nor accepted.

Readers check what they get (:func:`read_arrays` names, dtypes, dimensions, finite values;
:func:`take` a JSON field's type), and every problem is a :class:`~serkit.errors.BundleError`
whose message names the file and the array or field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from serkit.errors import BundleError

#: Largest JSON state file read (bytes): far above any real one, small enough to bound memory.
MAX_JSON_BYTES = 64 * 1024 * 1024

_MISSING = object()


def write_arrays(path: str | Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write named numeric arrays to a safetensors file (C order; dtypes as given).

    Raises:
        OSError: the file cannot be written.
    """
    from safetensors.numpy import save

    Path(path).write_bytes(save({name: np.asarray(value, order="C") for name, value in arrays.items()}))


def read_arrays(path: str | Path, expected: Mapping[str, tuple[str, int]]) -> dict[str, np.ndarray]:
    """Read a file written by :func:`write_arrays` and check it holds exactly ``expected``.

    Args:
        path: the safetensors file.
        expected: array name -> (dtype kind, number of dimensions); kinds are numpy's ``"f"``
            (floating, must be finite), ``"i"`` (signed integer) and ``"b"`` (bool).

    Returns:
        name -> array, in memory (not mapped).

    Raises:
        BundleError: the file is missing, unreadable or not a safetensors file, or an array is
            missing, extra, of another kind or dimension, or holds NaN or infinite values.
    """
    from safetensors.numpy import load

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BundleError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        arrays = load(data)
    except Exception as exc:  # the parser's own error type; nothing else runs
        raise BundleError(f"{path}: not a safetensors array file ({exc})") from exc
    missing, extra = sorted(set(expected) - set(arrays)), sorted(set(arrays) - set(expected))
    if missing or extra:
        raise BundleError(f"{path}: arrays {sorted(arrays)}, expected {sorted(expected)}")
    for name, (kind, ndim) in expected.items():
        value = arrays[name]
        if value.dtype.kind != kind or value.ndim != ndim:
            raise BundleError(f"{path}: array {name!r} is {value.dtype} of shape {value.shape}, expected kind {kind!r} with {ndim} dimension(s)")
        if kind == "f" and not np.all(np.isfinite(value)):
            raise BundleError(f"{path}: array {name!r} holds NaN or infinite values")
    return arrays


def write_json(path: str | Path, data: Mapping[str, Any]) -> None:
    """Write a JSON object (indented, no NaN or infinity).

    Raises:
        ValueError: ``data`` holds NaN or infinity, or something JSON cannot hold.
        OSError: the file cannot be written.
    """
    Path(path).write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def read_json(path: str | Path) -> dict[str, Any]:
    """The JSON object in ``path`` (UTF-8, at most :data:`MAX_JSON_BYTES`, no NaN or infinity).

    Raises:
        BundleError: the file is missing, unreadable, too large, not UTF-8, not JSON, holds
            ``NaN``/``Infinity``, or holds something other than an object.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_JSON_BYTES + 1)
    except OSError as exc:
        raise BundleError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if len(raw) > MAX_JSON_BYTES:
        raise BundleError(f"{path}: larger than {MAX_JSON_BYTES} bytes; not a serkit state file")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise BundleError(f"{path}: must hold a JSON object, got {type(data).__name__}")
    return data


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def take(data: Mapping[str, Any], key: str, check: Callable[[Any], bool], what: str, where: str | Path,
         default: Any = _MISSING) -> Any:  # fmt: skip
    """``data[key]`` if ``check`` accepts it.

    Args:
        data: a parsed JSON object.
        key: the field.
        check: a predicate such as :func:`is_str_list`.
        what: what the field must be, for the message (``"a list of strings"``).
        where: the file (and the path to ``data`` inside it), for the message.
        default: returned when the field is absent; without it an absent field is an error.

    Raises:
        BundleError: the field is absent (and has no default) or ``check`` refuses it; the
            message names ``where``, the field and the value found.
    """
    if key not in data:
        if default is not _MISSING:
            return default
        raise BundleError(f"{where}: field {key!r} is missing")
    value = data[key]
    if not check(value):
        raise BundleError(f"{where}: field {key!r} must be {what}, got {_short(value)}")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def is_int(value: Any) -> bool:
    """An integer (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite(value: Any) -> bool:
    """A finite real number (not a bool; an integer too large for a float is not finite)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def is_positive(value: Any) -> bool:
    """A finite real number > 0."""
    return is_finite(value) and value > 0


def is_str_list(value: Any) -> bool:
    """A list of non-empty strings."""
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


def is_labels(value: Any) -> bool:
    """A list of at least two distinct non-empty strings (class names)."""
    return is_str_list(value) and len(value) >= 2 and len(set(value)) == len(value)


def is_int_list(value: Any) -> bool:
    """A list of integers."""
    return isinstance(value, list) and all(is_int(v) for v in value)


def is_object(value: Any) -> bool:
    """A JSON object (dict)."""
    return isinstance(value, dict)


__all__ = [
    "MAX_JSON_BYTES",
    "is_finite",
    "is_int",
    "is_int_list",
    "is_labels",
    "is_object",
    "is_positive",
    "is_str_list",
    "read_arrays",
    "read_json",
    "take",
    "write_arrays",
    "write_json",
]
