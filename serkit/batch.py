"""Labelling a batch of recordings (``serkit predict``): the inputs, their output names, the loop.

Output names (:func:`output_names`) keep each file's path relative to the folder the inputs
share, so two ``x.wav`` in different folders get ``a/x.*`` and ``b/x.*`` instead of one
overwriting the other; a folder given alone is that shared folder (``serkit predict calls/``
writes ``p/x.*`` for ``calls/p/x.wav``). The suffix is dropped unless two files would then clash
(``x.wav`` and ``x.flac`` become ``x.wav.*`` and ``x.flac.*``).

Each file's CSV, JSON and PNG are written as one set (:meth:`Timeline.write`): a failure leaves
none of them. A file that cannot be used is recorded and the batch goes on; an output that cannot
be written stops the batch (a full disk fails every later file too).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from serkit.audio import Audio
from serkit.errors import ConfigError, SerkitError
from serkit.inference import Recognizer, Timeline
from serkit.io import output_error, remove_stale_temp_files

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".au", ".w64", ".caf"}


def audio_files(paths: Sequence[str | Path]) -> tuple[list[tuple[Path, Path]], dict[Path, str]]:
    """The files to label: each ``(file, base)`` where ``base`` is the argument that named it.

    Files are taken as given (whatever their suffix: a bad one is reported when read); folders
    are expanded to the audio files below them (suffixes in :data:`AUDIO_SUFFIXES`, sorted,
    recursive). A file named twice is labelled once.

    Returns:
        ``(files, problems)``: ``problems`` maps a folder that cannot be listed to the reason.
    """
    found: list[tuple[Path, Path]] = []
    problems: dict[Path, str] = {}
    seen: set[str] = set()
    for arg in map(Path, paths):
        try:
            below = sorted(p for p in arg.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES) if arg.is_dir() else [arg]
        except OSError as exc:
            problems[arg] = f"cannot list folder ({exc.strerror or exc})"
            continue
        for path in below:
            if (key := os.path.abspath(path)) not in seen:
                seen.add(key)
                found.append((path, arg))
    return found, problems


def model_argument(args: Sequence[Path], model: Path | None) -> tuple[Path | None, list[Path]]:
    """The model bundle and the recordings among ``serkit predict``'s arguments.

    The model is ``model`` (``--model``) when given. Otherwise the first argument is the model
    only when it is unmistakably a bundle: a folder holding ``bundle.json`` and no audio file at
    any depth (:data:`AUDIO_SUFFIXES`). A folder holding both is never guessed to be either, so
    labelling a downloaded folder of recordings never loads a model from it.

    Returns:
        ``(model or None for the shipped one, the recordings' arguments)``.

    Raises:
        ConfigError: the first argument holds ``bundle.json`` and audio files, or is a bundle
            with no recordings after it.
    """
    args = [Path(a) for a in args]
    first = args[0]
    if model is not None or not (first / "bundle.json").is_file():
        return model, args
    if audio_files([first])[0]:
        raise ConfigError(f"{first} holds a model bundle (bundle.json) and audio files; name the model with "
                          "--model DIR, or name the recordings themselves")  # fmt: skip
    if len(args) < 2:
        raise ConfigError(f"{first} is a model bundle; name the recordings to label after it")
    return first, args[1:]


def output_names(files: Sequence[tuple[Path, Path]]) -> dict[Path, str]:
    """Output name (no extension, ``/``-separated) of each file: see the module docstring.

    Args:
        files: ``(file, base)`` pairs from :func:`audio_files`; a folder base counts as itself,
            a file base as its folder.

    Returns:
        file -> name, distinct for distinct files.
    """
    if not files:
        return {}
    absolute = {path: Path(os.path.abspath(path)) for path, _ in files}
    bases = [Path(os.path.abspath(base)) if base.is_dir() else absolute[path].parent for path, base in files]
    root = Path(os.path.commonpath(bases))
    relative = {path: absolute[path].relative_to(root) for path, _ in files}
    stems = {path: rel.with_name(rel.stem).as_posix() for path, rel in relative.items()}
    clashes = Counter(stems.values())
    return {path: stems[path] if clashes[stems[path]] == 1 else relative[path].as_posix() for path in stems}


def prepare_output(out_dir: Path) -> None:
    """Create ``out_dir`` for timelines and remove temporary files killed runs left in it.

    Raises:
        ConfigError: ``out_dir`` exists and is not a folder.
        OutputError: it cannot be created.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"output path {out_dir} exists and is not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(out_dir, exc) from exc
    remove_stale_temp_files(out_dir, recursive=True)


def label_files(
    recognizer: Recognizer,
    files: Sequence[tuple[Path, Path]],
    out_dir: Path | None = None,
    *,
    speakers: dict[Path, str] | None = None,
    advance: Callable[[], Any] = lambda: None,
) -> tuple[list[dict[str, Any]], dict[Path, str], list[str]]:
    """Timelines of ``files`` (from :func:`audio_files`), written to ``out_dir`` when given.

    Each file is decoded for the model (:meth:`Recognizer.load`) and recognised with the
    recognizer's config; ``advance`` is called after each. With adaptation (``config.adapt``
    other than ``none``) the files are one call: all are decoded first and labelled together
    (:meth:`Recognizer.recognize_many`, grouped by ``speakers`` when given).

    Returns:
        ``(results, errors, notes)``: one :meth:`Timeline.to_dict` per labelled file with
        ``"file"`` set to the path as given, file -> problem for files that could not be used,
        and the adaptation's notes.

    Raises:
        ConfigError, OutputError: ``out_dir`` is not a folder or cannot be written (the files
            written before stay; the failing file's set is not written).
    """
    names = output_names(files) if out_dir is not None else {}
    if out_dir is not None:
        prepare_output(out_dir)
    results: list[dict[str, Any]] = []
    errors: dict[Path, str] = {}
    together: list[Path] = []

    def keep(path: Path, timeline: Timeline, audio: Audio | None) -> None:
        if out_dir is not None:
            timeline.write(out_dir, names[path], audio)
        results.append({**timeline.to_dict(), "file": str(path)})

    adapting = recognizer.config.adapt != "none"
    for path, _ in files:
        try:
            audio = recognizer.load(path)
            timeline = None if adapting else recognizer.recognize(audio)
        except SerkitError as exc:  # this file is unusable: note it, go on
            errors[path] = getattr(exc, "problem", str(exc))
            advance()
            continue
        if timeline is None:
            together.append(path)  # decoded again below: the samples of a whole folder are never held
        else:
            keep(path, timeline, audio)  # an OutputError here stops the batch
        advance()
    if not together:
        return results, errors, []
    group = None if speakers is None else [speakers[path] for path in together]
    try:
        timelines = recognizer.recognize_many((recognizer.load(path) for path in together), speakers=group)
    except SerkitError as exc:  # labelled together, they fail together: each file reports it
        for path in together:
            errors[path] = getattr(exc, "problem", str(exc))
        return results, errors, []
    for path, timeline in zip(together, timelines, strict=True):
        keep(path, timeline, recognizer.load(path) if out_dir is not None else None)
    return results, errors, list(timelines[0].adaptation)
