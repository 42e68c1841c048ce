"""Atomic file and folder writing.

A run interrupted at any moment (exception, Ctrl-C, kill) must never leave something that looks
like a finished result. Files are written to a temporary sibling and moved into place with
:func:`os.replace` (atomic on POSIX within one file system); folders are built as a sibling
``<name>.partial-<random>`` and renamed into place at the end (:func:`atomic_directory`).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from serkit.errors import ConfigError


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: the file is either absent/old or complete.

    The bytes go to a hidden temporary file in the same folder, are flushed and fsync'ed, then
    moved over ``path``. The parent folder must exist. The temporary file is created with mode
    ``0o666`` less the umask, so the result has the permissions a plain ``open(path, "w")`` gives.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OSError: the folder is missing or not writable (the temporary file is removed).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the kernel applies the umask
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode(encoding))


@contextmanager
def atomic_directory(out_dir: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Build a folder in a temporary sibling and move it to ``out_dir`` only on success.

    Usage::

        with atomic_directory("results/run1") as tmp:
            (tmp / "metrics.json").write_text(...)
        # results/run1 now exists, complete

    The body writes into ``<out_dir>.partial-<random>``. On normal exit that folder is renamed to
    ``out_dir``; if ``out_dir`` already exists and is non-empty, ``overwrite=True`` renames the old
    folder away, renames the new one in and deletes the old one (the result path is never left
    without a complete folder for longer than between two renames). On any exception the
    temporary folder is deleted and the exception propagates, so no partial folder remains.

    Raises:
        ConfigError: ``out_dir`` exists and is non-empty while ``overwrite`` is false (checked
            before the body runs and again before the final rename), or is a file.
    """
    out_dir = Path(out_dir)
    check_output_dir(out_dir, overwrite=overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f"{out_dir.name}.partial-{secrets.token_hex(4)}")
    tmp.mkdir()
    try:
        yield tmp
        check_output_dir(out_dir, overwrite=overwrite)
        if out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        if out_dir.exists():
            old = out_dir.with_name(f"{out_dir.name}.old-{secrets.token_hex(4)}")
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_output_dir(out_dir: str | Path, *, overwrite: bool = False) -> None:
    """Check that ``out_dir`` may be created (absent or empty) or replaced (``overwrite``).

    Call it before long work whose result goes to ``out_dir``, so the run fails at once rather
    than at the end; :func:`atomic_directory` checks again before it renames.

    Raises:
        ConfigError: ``out_dir`` is a file, or a non-empty folder while ``overwrite`` is false.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"output path {out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise ConfigError(f"output folder {out_dir} already exists and is not empty; pass overwrite=True to replace it")


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """SHA-256 hex digest of a file's bytes, read in ``chunk``-byte blocks.

    Raises:
        OSError: the file cannot be read.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
