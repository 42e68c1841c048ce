"""The pipeline step corpus table -> features, with an opt-in on-disk cache and worker processes.

For every row of a corpus table (columns ``utterance_id`` and ``path``; see
:mod:`serkit.corpora.base`) the file is read with :func:`~serkit.audio.load_audio`, one channel
is selected (:func:`select_channel`), the audio is resampled to the extractor's rate when it
differs (soxr, :meth:`Audio.resample`; the file's own rate is kept in
``FeatureSet.source_rates``) and the extractor runs.

Cache (``cache_dir`` given): one ``.npy`` per file under ``cache_dir/<name>-<config digest>/``,
named by the SHA-256 of the file's bytes, the extractor's :meth:`~Extractor.describe` as JSON,
the channel and ``serkit.__version__``. Changing any of them (a config option, the file content
under the same name, the channel, the package version) misses the cache. Writes go to a
temporary file in the same folder and are renamed into place (``os.replace``), so a crashed or
concurrent run never leaves a half-written entry; temporary files a killed run left are removed
by the next run once older than :data:`serkit.io.STALE_TEMP_S`. The folder also holds
``extractor.json``. An entry that cannot be read, or is not float32 of the extractor's level
and width (a damaged or foreign file), counts as a miss: a warning names the file, and it is
recomputed and replaced.

Batches: an extractor whose :attr:`~Extractor.batch_size` exceeds 1 (a network) gets its files
in groups: the table's files are ordered by duration (read from their headers), cut into chunks
(one per worker task), and each chunk's files are handed to :meth:`~Extractor.extract_batch` up
to ``batch_size`` at a time (and at most :data:`BATCH_SECONDS` of audio), so a batch holds
recordings of similar length. Results come back in table order, and cache entries stay one per
file, the same whether a file was computed alone or in a batch (equal up to float rounding).

Failures: a file that raises :class:`~serkit.errors.AudioError` (unreadable, empty, too short,
NaN, out of range, unusable channel) or whose features come out unusable
(:class:`~serkit.errors.FeatureError`, e.g. openSMILE returning NaN) is skipped, its message is
recorded in ``FeatureSet.failures`` and logged; any other exception stops the run.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf

import serkit
from serkit.audio import MIN_DURATION, STEREO_VIEWS, Audio, check_duration, load_audio
from serkit.errors import (
    AudioError,
    ConfigError,
    CorpusError,
    FeatureError,
    UnreadableAudioError,
)
from serkit.features.base import Extractor, Level
from serkit.io import atomic_write_bytes, atomic_write_text, remove_stale_temp_files

log = logging.getLogger(__name__)

Channel = str | int
CHANNELS = ("downmix", *STEREO_VIEWS)
#: Most seconds of audio in one :meth:`~Extractor.extract_batch` call (a longer file goes alone).
BATCH_SECONDS = 300.0


# --------------------------------------------------------------------------- results


@dataclass
class FeatureSet:
    """Features of a corpus table, in table order, with what made them.

    Attributes:
        ids: utterance ids that succeeded, in table order.
        values: one float32 array per id: ``(frames, dim)`` at frame level, ``(dim,)`` at
            utterance level.
        extractor: the extractor's :meth:`~Extractor.describe` (name, version, config).
        channel: the channel selection used (see :func:`select_channel`).
        level: ``"frame"`` or ``"utterance"``.
        failures: ``{utterance_id: message}`` for files that could not be used.
        names: ``dim`` feature names (:func:`extract_features` fills them from the extractor's
            ``names``, or ``<name>_<i>``); ``None`` means ``<name>_<i>``.
        sample_rate: Hz the features were computed at (the extractor's rate).
        frame_shift: seconds between frames (frame level), else ``None``.
        source_rates: each id's native file rate in Hz; ids whose rate differs from
            ``sample_rate`` were resampled.
    """

    ids: list[str]
    values: list[np.ndarray]
    extractor: dict[str, Any]
    channel: Channel
    level: Level
    failures: dict[str, str] = field(default_factory=dict)
    names: list[str] | None = None
    sample_rate: int | None = None
    frame_shift: float | None = None
    source_rates: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        """Feature dimension (the last axis of every array; 0 for an empty set without names)."""
        if self.names is not None:
            return len(self.names)
        return int(self.values[0].shape[-1]) if self.values else 0

    @property
    def columns(self) -> list[str]:
        """:attr:`names`, or ``<extractor name>_<i>`` when there are none."""
        if self.names is not None:
            return list(self.names)
        return [f"{self.extractor.get('name', 'feature')}_{i}" for i in range(self.dim)]

    def matrix(self) -> np.ndarray:
        """Utterance-level features stacked as float32 ``(len(self), dim)``, rows in :attr:`ids` order.

        Raises:
            FeatureError: the features are frame level (pool them first).
        """
        if self.level != "utterance":
            raise FeatureError(f"{self.extractor.get('name')} features are frame level; matrix() needs utterance level")
        if not self.values:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack(self.values).astype(np.float32, copy=False)

    def frame(self) -> pd.DataFrame:
        """Utterance-level features as a DataFrame indexed by ``utterance_id``, columns :attr:`columns`.

        Raises:
            FeatureError: the features are frame level.
        """
        return pd.DataFrame(self.matrix(), index=pd.Index(self.ids, name="utterance_id"), columns=self.columns)

    def select(self, ids: Sequence[str]) -> FeatureSet:
        """A FeatureSet holding ``ids`` in the given order (arrays shared, not copied).

        Raises:
            FeatureError: an id is not in this set (failed or never extracted).
        """
        position = {uid: i for i, uid in enumerate(self.ids)}
        missing = [uid for uid in ids if uid not in position]
        if missing:
            raise FeatureError(f"{len(missing)} ids have no features, e.g. {missing[:3]}")
        ids = list(ids)
        return FeatureSet(
            ids=ids,
            values=[self.values[position[uid]] for uid in ids],
            extractor=self.extractor,
            channel=self.channel,
            level=self.level,
            failures={},
            names=self.names,
            sample_rate=self.sample_rate,
            frame_shift=self.frame_shift,
            source_rates={uid: self.source_rates[uid] for uid in ids if uid in self.source_rates},
        )


# --------------------------------------------------------------------------- one recording


def check_channel(channel: Channel) -> None:
    """Raise :class:`ConfigError` unless ``channel`` is ``"downmix"``, a stereo view name or an int >= 0."""
    if isinstance(channel, bool) or not (
        channel in CHANNELS or (isinstance(channel, (int, np.integer)) and channel >= 0)
    ):
        raise ConfigError(f"channel must be one of {', '.join(CHANNELS)} or a channel index >= 0, got {channel!r}")


def select_channel(audio: Audio, channel: Channel) -> Audio:
    """One mono channel of ``audio``.

    Args:
        audio: any recording.
        channel: ``"downmix"`` (mean of all channels), ``"left"``, ``"right"``, ``"mid"``,
            ``"side"`` (see :meth:`Audio.view`) or a 0-based channel index.

    Returns:
        Mono ``(1, n)`` Audio at ``audio``'s rate.

    Raises:
        ConfigError: ``channel`` is none of the above.
        AudioError: the index is beyond the recording's channels, or a stereo view of a
            recording with more than two channels.
    """
    check_channel(channel)
    if channel == "downmix":
        return audio.downmix()
    if isinstance(channel, str):
        return audio.view(channel)  # type: ignore[arg-type]
    if channel >= audio.channels:
        raise AudioError(f"channel {channel} asked for, recording has {audio.channels}", audio.path)
    return Audio(audio.samples[channel : channel + 1], audio.sample_rate, audio.path)


def extract_audio(audio: Audio, extractor: Extractor, channel: Channel = "downmix") -> np.ndarray:
    """Features of one in-memory recording: select ``channel``, resample to the extractor's rate, extract.

    Returns:
        float32 ``(frames, dim)`` or ``(dim,)`` as the extractor defines.

    Raises:
        ConfigError: invalid ``channel``.
        AudioError: the channel does not exist or the audio is unusable for the extractor
            (e.g. :class:`~serkit.errors.TooShortAudioError`).
    """
    mono = select_channel(audio, channel).resample(extractor.sample_rate)
    return np.asarray(extractor.extract(mono), dtype=np.float32)


# --------------------------------------------------------------------------- cache


def cache_folder(cache_dir: str | Path, extractor: Extractor) -> Path:
    """``cache_dir/<name>-<digest>``: the folder of one extractor configuration and package version."""
    digest = hashlib.sha256(_describe_json(extractor).encode() + serkit.__version__.encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{extractor.name}-{digest}"


def cache_key(audio_bytes: bytes, extractor: Extractor, channel: Channel) -> str:
    """SHA-256 hex digest of the file's bytes, ``describe()`` JSON, channel and ``serkit.__version__``."""
    h = hashlib.sha256(audio_bytes)
    for part in (_describe_json(extractor), json.dumps(channel), serkit.__version__):
        h.update(b"\0" + part.encode())
    return h.hexdigest()


def _describe_json(extractor: Extractor) -> str:
    return json.dumps(extractor.describe(), sort_keys=True, default=str)


def _save_array(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())


def _read_cached(entry: Path, extractor: Extractor) -> np.ndarray | None:
    """The features in cache file ``entry``, or ``None`` (a miss: recompute and overwrite it, with a
    warning naming the file) when it is unreadable or not float32 of the extractor's level and width."""
    try:
        value = np.load(entry, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        log.warning("cache entry %s is unreadable (%s); recomputing", entry, exc)
        return None
    ndim = 2 if extractor.level == "frame" else 1
    if value.dtype != np.float32 or value.ndim != ndim or value.shape[-1] != extractor.dim:
        log.warning("cache entry %s holds %s %s, not %s-level float32 with %d columns; recomputing",
                    entry, value.dtype, value.shape, extractor.level, extractor.dim)  # fmt: skip
        return None
    return value


# --------------------------------------------------------------------------- one file (runs in workers)


@dataclass(frozen=True)
class _Job:
    utterance_id: str
    path: str
    data: bytes | None = None  # the file's bytes when the process extracting cannot read ``path``


@dataclass(frozen=True)
class _Outcome:
    utterance_id: str
    values: np.ndarray | None
    source_rate: int | None
    error: str | None


def _read_bytes(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise UnreadableAudioError("no such file", path) from exc
    except OSError as exc:
        raise UnreadableAudioError(f"cannot read file ({exc})", path) from exc


def _cached_file_rate(data: bytes, path: str, min_duration: float) -> int:
    """Native rate of a file served from the cache, applying the same duration rule as a fresh load."""
    try:
        info = sf.info(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise UnreadableAudioError(f"cannot read audio header ({exc})", path) from exc
    check_duration(info.frames / info.samplerate, min_duration, path)
    return int(info.samplerate)


def _process_chunk(
    jobs: list[_Job], extractor: Extractor, channel: Channel, folder: Path | None, min_duration: float
) -> list[_Outcome]:
    """Outcomes of ``jobs`` in order: cache hits read, the other files extracted in batches.

    Files are loaded as they come and handed to :meth:`~Extractor.extract_batch` whenever
    ``batch_size`` of them (or :data:`BATCH_SECONDS` of audio) are waiting.
    """
    done: dict[str, _Outcome] = {}
    waiting: list[_Loaded] = []
    for job in jobs:
        try:
            loaded = _load(job, extractor, channel, folder, min_duration)
        except (AudioError, FeatureError) as exc:
            done[job.utterance_id] = _Outcome(job.utterance_id, None, None, str(exc))
            continue
        if isinstance(loaded, _Outcome):
            done[job.utterance_id] = loaded
            continue
        waiting.append(loaded)
        if len(waiting) >= extractor.batch_size or sum(w.audio.duration for w in waiting) >= BATCH_SECONDS:
            done.update(_extract_batch(waiting, extractor))
            waiting = []
    if waiting:
        done.update(_extract_batch(waiting, extractor))
    return [done[job.utterance_id] for job in jobs]


@dataclass(frozen=True)
class _Loaded:
    job: _Job
    audio: Audio  # mono, at the extractor's rate
    source_rate: int
    entry: Path | None  # where the cache entry goes


def _load(
    job: _Job, extractor: Extractor, channel: Channel, folder: Path | None, min_duration: float
) -> _Loaded | _Outcome:
    """The cached features of one file (an outcome), or its audio ready for the extractor.

    Raises:
        AudioError: the file is unusable or lacks the channel.
    """
    if folder is None:
        audio = load_audio(job.path if job.data is None else job.data, min_duration=min_duration, name=job.path)
        entry = None
    else:
        data = _read_bytes(job.path)
        entry = folder / f"{cache_key(data, extractor, channel)}.npy"
        hit = _cache_hit(job, data, entry, extractor, min_duration)
        if hit is not None:
            return hit
        audio = load_audio(data, min_duration=min_duration, name=job.path)
    mono = select_channel(audio, channel).resample(extractor.sample_rate)
    return _Loaded(job, mono, audio.sample_rate, entry)


def _cache_hit(job: _Job, data: bytes, entry: Path, extractor: Extractor, min_duration: float) -> _Outcome | None:
    """The features cached in ``entry`` for the file of bytes ``data``, None when absent or unusable
    (:func:`_read_cached`). Raises AudioError when the file's header is unreadable or it is too short."""
    if not entry.is_file():
        return None
    rate = _cached_file_rate(data, job.path, min_duration)
    cached = _read_cached(entry, extractor)
    return None if cached is None else _Outcome(job.utterance_id, cached, rate, None)


def _extract_batch(batch: list[_Loaded], extractor: Extractor) -> dict[str, _Outcome]:
    """Features of loaded files in one :meth:`~Extractor.extract_batch` call, written to the cache.

    When the batch raises an AudioError or FeatureError, its files are retried one at a time,
    so only the culprits fail.

    Raises:
        FeatureError: the extractor returned a different number of results than it got files
            (a broken extractor: the run stops).
    """
    try:
        values = extractor.extract_batch([item.audio for item in batch])
    except (AudioError, FeatureError) as exc:
        if len(batch) == 1:
            uid = batch[0].job.utterance_id
            return {uid: _Outcome(uid, None, None, str(exc))}
        out: dict[str, _Outcome] = {}
        for item in batch:
            out.update(_extract_batch([item], extractor))
        return out
    if len(values) != len(batch):
        raise FeatureError(f"{extractor.name}: extract_batch returned {len(values)} results for {len(batch)} recordings")
    out = {}
    for item, value in zip(batch, values, strict=True):
        value = np.asarray(value, dtype=np.float32)
        if item.entry is not None:
            _save_array(item.entry, value)
        out[item.job.utterance_id] = _Outcome(item.job.utterance_id, value, item.source_rate, None)
    return out


# --------------------------------------------------------------------------- the table


def extract_features(
    table: pd.DataFrame,
    extractor: Extractor,
    *,
    channel: Channel = "downmix",
    cache_dir: str | Path | None = None,
    n_jobs: int = 1,
    progress: bool = True,
    min_duration: float = MIN_DURATION,
    runner: Any = None,
) -> FeatureSet:
    """Features for every file of a corpus table (module docstring for the steps, cache and failures).

    Args:
        table: DataFrame with columns ``utterance_id`` (unique) and ``path``; other columns
            are ignored.
        extractor: a registered extractor instance.
        channel: ``"downmix"``, ``"left"``, ``"right"``, ``"mid"``, ``"side"`` or a channel index.
        cache_dir: folder of the on-disk cache; ``None`` (default) turns caching off.
        n_jobs: worker processes (joblib, loky backend); 1 runs in this process, -1 uses all
            cores.
        progress: show a rich progress bar.
        min_duration: shortest accepted recording in seconds (files below it fail with
            :class:`~serkit.errors.TooShortAudioError`).
        runner: a :class:`serkit.cluster.DaskRunner`: the files are extracted as its tasks instead
            (:mod:`serkit.features.remote`; ``n_jobs`` unused), same results and cache entries.

    Returns:
        FeatureSet with the successful ids in table order and the failures.

    Raises:
        CorpusError: missing columns or duplicated utterance ids.
        ConfigError: invalid ``channel`` or ``n_jobs``.
        Any exception other than AudioError / FeatureError raised by the extractor.
    """
    for column in ("utterance_id", "path"):
        if column not in table.columns:
            raise CorpusError(f"feature extraction needs a column {column!r}; table has {list(table.columns)}")
    ids = table["utterance_id"].astype(str)
    if ids.duplicated().any():
        raise CorpusError(f"duplicated utterance ids, e.g. {list(ids[ids.duplicated()][:3])}")
    check_channel(channel)
    if isinstance(channel, np.integer):
        channel = int(channel)
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0 or n_jobs < -1:
        raise ConfigError(f"n_jobs must be a positive integer or -1 (all cores), got {n_jobs!r}")

    jobs = [_Job(uid, str(path)) for uid, path in zip(ids, table["path"].astype(str), strict=True)]
    folder = None
    if cache_dir is not None:
        folder = cache_folder(cache_dir, extractor)
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(folder)  # left by killed runs; a live run's are moments old
        if not (folder / "extractor.json").is_file():
            info = {"extractor": extractor.describe(), "serkit_version": serkit.__version__}
            text = json.dumps(info, indent=2, sort_keys=True, default=str)
            atomic_write_text(folder / "extractor.json", text)

    order = sorted(jobs, key=lambda job: _duration(job.path)) if extractor.batch_size > 1 else jobs
    found: dict[str, _Outcome] = {}
    with progress_bar(progress, f"{extractor.name} features", len(jobs)) as advance:
        for chunk in _run(order, extractor, channel, folder, min_duration, n_jobs, runner):
            found.update((o.utterance_id, o) for o in chunk)
            advance(len(chunk))
    outcomes = [found[job.utterance_id] for job in jobs]

    result = FeatureSet(
        ids=[o.utterance_id for o in outcomes if o.error is None],
        values=[o.values for o in outcomes if o.error is None],  # type: ignore[misc]
        extractor=extractor.describe(),
        channel=channel,
        level=extractor.level,
        failures={o.utterance_id: o.error for o in outcomes if o.error is not None},  # type: ignore[misc]
        names=_names(extractor),
        sample_rate=extractor.sample_rate,
        frame_shift=extractor.frame_shift,
        source_rates={o.utterance_id: o.source_rate for o in outcomes if o.error is None},  # type: ignore[misc]
    )
    if result.failures:
        shown = "; ".join(f"{k}: {v}" for k, v in list(result.failures.items())[:5])
        log.warning("%d of %d files failed feature extraction: %s", len(result.failures), len(jobs), shown)
    return result


def _names(extractor: Extractor) -> list[str]:
    names = getattr(extractor, "names", None)
    if names is None or len(names) != extractor.dim:
        return [f"{extractor.name}_{i}" for i in range(extractor.dim)]
    return list(names)


def _duration(path: str) -> float:
    """Seconds of audio from the file's header (0 when unreadable: the file fails later, with its reason)."""
    try:
        return float(sf.info(path).duration)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError):
        return 0.0


def _run(
    jobs: list[_Job], extractor: Extractor, channel: Channel, folder: Path | None, min_duration: float, n_jobs: int,
    runner: Any = None,
) -> Iterator[list[_Outcome]]:
    """Outcomes chunk by chunk (in-process: one batch of files per chunk, in job order)."""
    if runner is not None:
        from serkit.features.remote import extract_remote

        yield from extract_remote(runner, jobs, extractor, channel, folder, min_duration)
        return
    workers = (os.cpu_count() or 1) if n_jobs == -1 else int(n_jobs)
    batch = max(1, int(extractor.batch_size))
    if workers == 1 or len(jobs) <= 1:
        for i in range(0, len(jobs), batch):
            yield _process_chunk(jobs[i : i + batch], extractor, channel, folder, min_duration)
        return
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=workers, backend="loky", return_as="generator")
    task = delayed(_process_chunk)
    yield from parallel(task(chunk, extractor, channel, folder, min_duration) for chunk in _chunks(jobs, workers, batch))


def _chunks(jobs: list[_Job], workers: int, batch: int) -> list[list[_Job]]:
    """A few chunks per worker: the extractor is pickled once per chunk, not once per file,
    and progress still moves several times per worker; a chunk holds at least one batch."""
    size = max(batch, min(32, math.ceil(len(jobs) / (4 * workers))))
    return [jobs[i : i + size] for i in range(0, len(jobs), size)]


@contextmanager
def progress_bar(enabled: bool, description: str, total: int) -> Iterator[Callable[[int], None]]:
    """Context manager yielding ``advance(n)``: a rich progress bar of ``total`` steps when ``enabled``, else a no-op."""
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
