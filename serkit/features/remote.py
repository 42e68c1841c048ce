"""Feature extraction as the tasks of a runner (a Dask cluster; :mod:`serkit.cluster`).

:func:`extract_remote` is what :func:`~serkit.features.extract.extract_features` does when it is
given a ``runner``: the files are cut into chunks (a few per worker thread, at least one batch
each), one task per chunk, and every task runs the per-file code a local worker process runs
(:func:`~serkit.features.extract._process_chunk`: read, select the channel, resample, extract, in
batches for a batching extractor). Bad files come back as failures with their message, as locally.

Where the cache lives decides what travels:

- the workers see the cache folder (``runner.sees(folder)``: a shared file system mounted at the
  same path): they read and write its entries themselves, as local worker processes do, and read
  the audio by path (the corpus must be on the shared file system too);
- they do not, or there is no cache: this process reads every file, serves the cache hits itself,
  sends the other files' bytes with their tasks, and writes the entries of the arrays that come
  back.

Either way an entry has the key and the atomic write of the local path
(:func:`~serkit.features.extract.cache_key`, :func:`~serkit.io.atomic_write_bytes`), so a cache
filled on a cluster serves a local run and the other way round.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from serkit.errors import AudioError
from serkit.features.base import Extractor
from serkit.features.extract import (
    Channel,
    _cache_hit,
    _chunks,
    _Job,
    _Outcome,
    _process_chunk,
    _read_bytes,
    _save_array,
    cache_key,
)

log = logging.getLogger(__name__)


def extract_remote(
    runner: Any, jobs: list[_Job], extractor: Extractor, channel: Channel, folder: Path | None, min_duration: float
) -> Iterator[list[_Outcome]]:
    """Outcomes of ``jobs``, a chunk at a time in the order the tasks finish (module docstring).

    Args:
        runner: :class:`serkit.cluster.DaskRunner` (``map``, ``threads``, ``sees``).
        jobs: the files (utterance id and path).
        extractor, channel, min_duration: as in :func:`~serkit.features.extract.extract_features`.
        folder: the extractor's cache folder, or ``None`` (no cache).

    Raises:
        ClusterError: the cluster lost the work (see :meth:`serkit.cluster.DaskRunner.map`).
        Whatever the extractor raises that is not an AudioError or FeatureError.
    """
    jobs = [_Job(job.utterance_id, os.path.abspath(job.path)) for job in jobs]  # workers have other working folders
    folder = None if folder is None else folder.resolve()
    shared = folder is not None and runner.sees(folder)
    entries: dict[str, Path] = {}
    if not shared:
        served, jobs = _read_here(jobs, extractor, channel, folder, min_duration, entries)
        if served:
            yield served
    if not jobs:
        return
    chunks = _chunks(jobs, runner.threads(), max(1, int(extractor.batch_size)))
    args = (extractor, channel, folder if shared else None, min_duration)
    for _, outcomes in runner.map(_process_chunk, chunks, *args, name=f"extract-{extractor.name}"):
        for outcome in outcomes:
            entry = entries.get(outcome.utterance_id)
            if entry is not None and outcome.error is None:
                _save_array(entry, outcome.values)
        yield outcomes


def _read_here(
    jobs: list[_Job], extractor: Extractor, channel: Channel, folder: Path | None, min_duration: float,
    entries: dict[str, Path],
) -> tuple[list[_Outcome], list[_Job]]:
    """Cache hits and unreadable files served in this process; the rest as jobs carrying their bytes.

    ``entries`` receives the cache entry each remaining job's features go to.
    """
    served: list[_Outcome] = []
    todo: list[_Job] = []
    for job in jobs:
        try:
            data = _read_bytes(job.path)
            if folder is not None:
                entry = folder / f"{cache_key(data, extractor, channel)}.npy"
                hit = _cache_hit(job, data, entry, extractor, min_duration)
                if hit is not None:
                    served.append(hit)
                    continue
                entries[job.utterance_id] = entry
        except AudioError as exc:
            served.append(_Outcome(job.utterance_id, None, None, str(exc)))
            continue
        todo.append(_Job(job.utterance_id, job.path, data))
    log.info("%s: %d files from the cache here, %d sent to the cluster", extractor.name, len(jobs) - len(todo), len(todo))
    return served, todo
