"""Atomic file and folder writing, and one run per output folder.

A run interrupted at any moment (exception, Ctrl-C, kill) must never leave something that looks
like a finished result. Files are written to a temporary sibling ``.<name>.<random>.tmp`` and
moved into place with :func:`os.replace` (atomic on POSIX within one file system); a set of files
that belong together (:func:`atomic_write_set`) is either all in place or none of it; folders are
built as a sibling ``<name>.partial-<random>`` and renamed into place at the end
(:func:`atomic_directory`).

A run writing a folder holds ``<folder>.lock`` (:func:`output_lock`, an ``flock`` the kernel
drops when the process dies): a second run into the same folder is refused at once, and what a
killed run left beside the folder (``.partial-*``, ``.old-*``, temporary files in
``<folder>.folds/``) is removed by the next run that gets the lock. Temporary files elsewhere (the
feature cache, ``serkit predict --out``) are removed when older than :data:`STALE_TEMP_S`.

Writing errors (no permission, not a folder, disk full) raise :class:`~serkit.errors.OutputError`
naming the output.
"""

from __future__ import annotations

import errno
import fcntl
import glob
import hashlib
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from serkit.errors import ConfigError, OutputError, OutputExistsError

#: Seconds after which a temporary file of an atomic write is taken as left by a killed run
#: (a live write renames its file within moments of creating it).
STALE_TEMP_S = 600.0
_TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")
_LOCKS_HELD: set[str] = set()  # lock files this process holds (re-entry from the same run)


def output_error(path: str | Path, exc: OSError) -> OutputError:
    """:class:`OutputError` ``cannot write PATH: <reason>`` for an OSError while writing ``path``."""
    return OutputError(f"cannot write {path}: {exc.strerror or exc}")


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")


def _write_file(path: Path, data: bytes) -> None:
    """Create ``path`` (must not exist) holding ``data``, flushed to disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the kernel applies the umask
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: the file is either absent/old or complete.

    The bytes go to a hidden temporary file in the same folder, are flushed and fsync'ed, then
    moved over ``path``. The parent folder must exist. The temporary file is created with mode
    ``0o666`` less the umask, so the result has the permissions a plain ``open(path, "w")`` gives.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: the folder is missing or not writable, or the disk is full (the temporary
            file is removed).
    """
    return atomic_write_set({path: data})[0]


def atomic_write_set(files: Mapping[str | Path, bytes]) -> list[Path]:
    """Write several files that belong together: afterwards all of them are new, or none is.

    Every file is first written to a temporary sibling (flushed, fsync'ed); only when all are
    written are they renamed into place. A failure while writing removes the temporaries, so
    no file of the set changes; a failure between the renames removes the files already
    renamed, so none of the set is left (a rename allocates nothing: this is for the odd case).
    Parent folders must exist.

    Returns:
        The paths, in the order given.

    Raises:
        OutputError: a folder is missing or not writable, or the disk is full.
    """
    paths = [Path(path) for path in files]
    temps: dict[Path, Path] = {}
    done: list[Path] = []
    try:
        for path, data in zip(paths, files.values(), strict=True):
            temps[path] = _temp_name(path)
            _write_file(temps[path], data)
        for path in paths:
            os.replace(temps.pop(path), path)
            done.append(path)
    except BaseException as exc:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
        for path in done:
            path.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise output_error(path, exc) from exc
        raise
    return paths


def remove_stale_temp_files(folder: str | Path, older_than: float = STALE_TEMP_S, *, recursive: bool = False) -> int:
    """Remove temporary files of atomic writes (``.<name>.<12 hex>.tmp``) older than ``older_than`` s.

    Returns:
        How many were removed (files that vanish meanwhile or cannot be removed are skipped).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    cutoff, removed = time.time() - older_than, 0
    for path in folder.rglob(".*.tmp") if recursive else folder.glob(".*.tmp"):
        try:
            if _TEMP_NAME.match(path.name) and path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except OSError:
            continue
    return removed


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode(encoding))


@contextmanager
def output_lock(out_dir: str | Path) -> Iterator[None]:
    """Hold ``<out_dir>.lock`` while this run writes ``out_dir`` (module docstring).

    The lock is an exclusive ``flock`` on the file, which holds this process's id; it is
    released (and the file removed) on exit, and by the kernel when the process dies. Entering
    again in a process that holds it is a no-op. On getting the lock, what killed runs left
    beside ``out_dir`` is removed: ``<out_dir>.partial-*`` and ``<out_dir>.old-*`` folders and the
    temporary files in ``<out_dir>.folds/``. The parent folder is created.

    Raises:
        OutputError: another process holds the lock (its id in the message), or the lock
            file cannot be created.
    """
    out_dir = Path(out_dir)
    lock = out_dir.with_name(f"{out_dir.name}.lock")
    key = os.path.abspath(lock)
    if key in _LOCKS_HELD:
        yield
        return
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(out_dir, exc) from exc
    fd = _take_lock(lock, out_dir)
    _LOCKS_HELD.add(key)
    try:
        pattern = glob.escape(out_dir.name)
        for leftover in [*out_dir.parent.glob(f"{pattern}.partial-*"), *out_dir.parent.glob(f"{pattern}.old-*")]:
            shutil.rmtree(leftover, ignore_errors=True)
        remove_stale_temp_files(out_dir.with_name(f"{out_dir.name}.folds"), older_than=0.0)
        yield
    finally:
        _LOCKS_HELD.discard(key)
        lock.unlink(missing_ok=True)  # while still holding it: a waiter re-checks the inode
        os.close(fd)


def _take_lock(lock: Path, out_dir: Path) -> int:
    """An fd holding an exclusive flock on ``lock`` (the file at that path, not a removed one)."""
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise output_error(lock, exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.read(fd, 32).decode("ascii", "replace").strip()
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise output_error(lock, exc) from exc
            who = f"another serkit run (process {holder})" if holder.isdigit() else "another serkit run"
            raise OutputError(f"{who} is writing {out_dir} (it holds {lock}); wait for it to finish or "
                              "choose another output folder") from exc
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)  # the previous holder removed the file after we opened it: take the new one


@contextmanager
def atomic_directory(out_dir: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Build a folder in a temporary sibling and move it to ``out_dir`` only on success.

    Usage::

        with atomic_directory("results/run1") as tmp:
            (tmp / "metrics.json").write_text(...)
        # results/run1 now exists, complete

    The body writes into ``<out_dir>.partial-<random>``, under :func:`output_lock`. On normal
    exit that folder is renamed to ``out_dir``; if ``out_dir`` already exists and is non-empty,
    ``overwrite=True`` renames the old folder away, renames the new one in and deletes the old
    one (the result path is never left without a complete folder for longer than between two
    renames). On any exception the temporary folder is deleted and the exception propagates, so
    no partial folder remains.

    Raises:
        ConfigError: ``out_dir`` is a file. OutputExistsError: it exists and is non-empty while
            ``overwrite`` is false (checked before the body runs and again before the final
            rename).
        OutputError: another run writes ``out_dir``, or writing fails (no permission, disk
            full; also an OSError raised by the body).
    """
    out_dir = Path(out_dir)
    check_output_dir(out_dir, overwrite=overwrite)
    with output_lock(out_dir):
        tmp = out_dir.with_name(f"{out_dir.name}.partial-{secrets.token_hex(4)}")
        try:
            tmp.mkdir()
        except OSError as exc:
            raise output_error(out_dir, exc) from exc
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
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, OSError) and not isinstance(exc, OutputError):
                raise output_error(out_dir, exc) from exc
            raise


def check_output_dir(out_dir: str | Path, *, overwrite: bool = False) -> None:
    """Check that ``out_dir`` may be created (absent or empty) or replaced (``overwrite``).

    Call it before long work whose result goes to ``out_dir``, so the run fails at once rather
    than at the end; :func:`atomic_directory` checks again before it renames.

    Raises:
        ConfigError: ``out_dir`` is a file.
        OutputExistsError: ``out_dir`` is a non-empty folder while ``overwrite`` is false.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"output path {out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise OutputExistsError(out_dir)


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
