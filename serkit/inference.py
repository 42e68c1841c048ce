"""Emotion timelines of real recordings of any length.

The path from a recording to a timeline, each step a function:

1. **channels** — the down-mix of all channels (``"mix"``) or, with ``per_channel``, each channel on
   its own (``"left"``/``"right"`` for stereo, ``"ch1"``, ``"ch2"``, … otherwise): two speakers on
   two channels is the common call-centre layout;
2. **voice activity** (:class:`SileroVAD`) — the Silero VAD model shipped inside the ``silero-vad``
   PyPI package (its ONNX "sequence" export, run with onnxruntime, SHA-256 checked) gives a speech
   probability every 32 ms of the channel resampled to 16 kHz; silero's own hysteresis turns them
   into speech segments (``vad_threshold``; pauses shorter than ``min_silence`` seconds stay
   inside a segment, segments shorter than ``min_speech`` are dropped, ``speech_pad`` seconds
   are added on each side);
3. **windows** (:func:`window_spans`) — a speech segment up to ``window`` seconds long is one
   window; a longer one is covered by ``window``-second windows every ``hop`` seconds, the last
   window ending at the segment's end;
4. **probabilities** — each window's features (:meth:`Bundle.features`, at the recording's native
   rate: the bundle resamples per extractor) go through :meth:`Bundle.predict`; the windows of a
   channel are predicted together as one speaker (what a speaker-normalised bundle needs);
5. **timeline** (:func:`timeline_segments`) — overlapping windows become non-overlapping pieces
   (the boundary between two consecutive windows is the middle of their overlap), and adjacent
   pieces *within one speech segment* with the same most probable label are merged, their
   probabilities averaged weighted by duration (the argmax of such an average is the shared
   label). Pieces are never merged across a pause, so every timeline segment lies inside one
   stretch of speech.

Times are seconds from the start of the recording. :class:`Timeline` holds the tables and writes
CSV, JSON and a PNG plot (matplotlib, Agg backend).
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from serkit.adaptation import MIN_WINDOWS, check_adapt
from serkit.audio import Audio, AudioHeader, Source, audio_header, decode_audio
from serkit.bundle import Bundle, load_bundle
from serkit.errors import ConfigError
from serkit.features.encoders import SpeechEncoder
from serkit.io import atomic_write_set, output_error
from serkit.timeline import (  # noqa: F401 - API
    UNCERTAIN,
    WINDOW_COLUMNS,
    decide,
    segment_rows,
    timeline_segments,
)
from serkit.vad import VAD_RATE, SileroVAD, shared_vad  # noqa: F401 - SileroVAD is part of this module's API

if TYPE_CHECKING:
    import pandas as pd

#: The bundle shipped inside the package (built by ``scripts/build_default_model.py``).
DEFAULT_MODEL = Path(__file__).resolve().parent / "default_model"

#: Windows whose audio is held at once before their features are computed (in batches).
WINDOW_CHUNK = 64


@dataclass(frozen=True)
class InferenceConfig:
    """How a recording becomes a timeline (module docstring). Times in seconds.

    Attributes:
        window: longest stretch of speech labelled at once; longer speech is windowed.
        hop: step between window starts; ``hop <= window``.
        vad: find speech with Silero VAD; ``False`` treats the whole recording as speech.
        vad_threshold: speech probability that starts a segment (silero's ``threshold``; the
            segment ends below ``threshold - 0.15``).
        min_speech: shortest speech segment kept.
        min_silence: shortest pause that ends a segment.
        speech_pad: padding added on both sides of a segment.
        per_channel: analyse each channel on its own instead of the down-mix.
        merge: merge adjacent same-label pieces of one speech segment.
        min_confidence: a window, timeline piece or overall result whose highest probability
            is below this is labelled :data:`UNCERTAIN` instead of a class (0: always a class).
        adapt: standardisation of the windows (:mod:`serkit.adaptation`): ``"none"`` (training
            statistics), ``"batch"`` (statistics of all windows of one call) or ``"speaker"``
            (per channel, or per speaker group given to :meth:`Recognizer.recognize_many`).
        min_batch: fewest windows a batch or group needs to adapt on.
    """

    window: float = 3.0
    hop: float = 1.5
    vad: bool = True
    vad_threshold: float = 0.5
    min_speech: float = 0.25
    min_silence: float = 0.4
    speech_pad: float = 0.1
    per_channel: bool = False
    merge: bool = True
    min_confidence: float = 0.0
    adapt: str = "none"
    min_batch: int = MIN_WINDOWS

    def __post_init__(self) -> None:
        for name in ("window", "hop", "vad_threshold", "min_speech", "min_silence", "speech_pad"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
                raise ConfigError(f"inference: {name} must be a finite number, got {value!r}")
        if self.window <= 0 or self.hop <= 0 or self.hop > self.window:
            raise ConfigError(f"inference: need 0 < hop <= window, got window={self.window}, hop={self.hop}")
        if not 0 < self.vad_threshold < 1:
            raise ConfigError(f"inference: vad_threshold must lie in (0, 1), got {self.vad_threshold}")
        if min(self.min_speech, self.min_silence, self.speech_pad) < 0:
            raise ConfigError("inference: min_speech, min_silence and speech_pad must be >= 0")
        value = self.min_confidence
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ConfigError(f"inference: min_confidence must lie in [0, 1), got {value!r}")
        check_adapt(self.adapt, self.min_batch)


# --------------------------------------------------------------------------- windows and timeline


def window_spans(start: float, end: float, window: float, hop: float) -> list[tuple[float, float]]:
    """Windows covering the speech segment ``[start, end]`` (seconds).

    A segment no longer than ``window`` is one window. Otherwise windows of length ``window``
    start every ``hop`` seconds while they fit, and one more window ends exactly at ``end`` if
    the last one did not reach it. Consecutive windows therefore overlap by at least
    ``window - hop`` seconds and together cover ``[start, end]``.

    Raises:
        ConfigError: ``end <= start`` or not ``0 < hop <= window``.
    """
    if not end > start:
        raise ConfigError(f"window_spans: empty segment [{start}, {end}]")
    if not 0 < hop <= window:
        raise ConfigError(f"window_spans: need 0 < hop <= window, got {hop}, {window}")
    if end - start <= window:
        return [(start, end)]
    spans = []
    t = start
    while t + window <= end + 1e-9:
        spans.append((t, t + window))
        t += hop
    if spans[-1][1] < end - 1e-9:
        spans.append((end - window, end))
    return spans


@dataclass
class Timeline:
    """The emotion timeline of one recording.

    The tables are kept as rows (dicts) and turned into pandas DataFrames on first access of
    :attr:`speech`, :attr:`windows` or :attr:`segments`; :meth:`to_dict` and :meth:`overall`
    read the rows.

    Attributes:
        labels: class order of the ``p_<label>`` columns.
        duration: recording length in seconds.
        sample_rate: rate of the analysed audio in Hz (a file decoded for a model
            (:meth:`Recognizer.load`) is at the model's rate when the file's is higher).
        channels: analysed channel names (``["mix"]``, ``["left", "right"]``, …).
        speech_rows: voice activity, keys ``channel``, ``segment``, ``start``, ``end`` (seconds).
        window_rows: per-window probabilities, keys ``channel``, ``segment``, ``start``, ``end``,
            ``label``, ``p_<label>``...
        segment_rows: the timeline (:func:`timeline_segments`), same keys as ``window_rows``.
        config: the :class:`InferenceConfig` used.
        source: the file name, if known.
        adaptation: notes on the adaptation of the call (groups too small or too uniform).
    """

    labels: list[str]
    duration: float
    sample_rate: int
    channels: list[str]
    speech_rows: list[dict[str, Any]]
    window_rows: list[dict[str, Any]]
    segment_rows: list[dict[str, Any]]
    config: InferenceConfig
    source: str | None = None
    adaptation: list[str] = dataclasses.field(default_factory=list)

    @cached_property
    def speech(self) -> pd.DataFrame:
        """Voice activity: columns ``channel``, ``segment``, ``start``, ``end``."""
        import pandas as pd

        return pd.DataFrame(self.speech_rows, columns=["channel", "segment", "start", "end"])

    @cached_property
    def windows(self) -> pd.DataFrame:
        """Per-window probabilities: columns ``channel``, ``segment``, ``start``, ``end``,
        ``label``, ``p_<label>``..."""
        return self._table(self.window_rows)

    @cached_property
    def segments(self) -> pd.DataFrame:
        """The timeline (:func:`timeline_segments`), same columns as :attr:`windows`."""
        return self._table(self.segment_rows)

    def _table(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(rows, columns=[*WINDOW_COLUMNS, *(f"p_{lab}" for lab in self.labels)])

    def overall(self, channel: str | None = None) -> dict[str, Any] | None:
        """Duration-weighted mean probabilities over the timeline (one channel or all).

        Returns:
            ``{"label", "probabilities": {label: p}, "speech_s"}``, or ``None`` when no speech
            was found.
        """
        rows = [r for r in self.segment_rows if channel is None or r["channel"] == channel]
        weights = np.array([r["end"] - r["start"] for r in rows], dtype=float)
        if weights.sum() <= 0:
            return None
        probs = np.array([[r[f"p_{lab}"] for lab in self.labels] for r in rows], dtype=float)
        mean = weights @ probs / weights.sum()
        return {"label": decide(mean, self.labels, self.config.min_confidence),
                "probabilities": {lab: float(p) for lab, p in zip(self.labels, mean)},
                "speech_s": float(weights.sum())}

    def _records(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"channel": r["channel"], "segment": int(r["segment"]), "start": round(float(r["start"]), 3),
                 "end": round(float(r["end"]), 3), "label": r["label"],
                 "probabilities": {lab: round(float(r[f"p_{lab}"]), 4) for lab in self.labels}}
                for r in rows]  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: file facts, overall result, per-channel results, segments, windows, speech."""
        overall = self.overall()
        return {
            "file": self.source,
            "duration": round(self.duration, 3),
            "sample_rate": self.sample_rate,
            "labels": self.labels,
            "channels": self.channels,
            "label": overall["label"] if overall else None,
            "probabilities": overall["probabilities"] if overall else None,
            "per_channel": {ch: self.overall(ch) for ch in self.channels},
            "segments": self._records(self.segment_rows),
            "windows": self._records(self.window_rows),
            "speech": [{"channel": r["channel"], "start": round(float(r["start"]), 3), "end": round(float(r["end"]), 3)}
                       for r in self.speech_rows],
            "config": dataclasses.asdict(self.config),
            "adaptation": list(self.adaptation),
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def to_csv(self) -> str:
        """The timeline table (``segments``) as CSV text, times in seconds."""
        return self.segments.to_csv(index=False, float_format="%.4f")

    def write(self, out_dir: str | Path, stem: str, audio: Audio | None = None) -> dict[str, Path]:
        """Write ``<stem>.csv``, ``<stem>.json`` and ``<stem>.png`` into ``out_dir`` as one set.

        ``stem`` may hold sub-folders (``calls/a/x``); folders are created. The three files are
        written with :func:`~serkit.io.atomic_write_set`: afterwards all three are new or none is.

        Raises:
            OutputError: the folder cannot be created or written, or the disk is full.
        """
        target = Path(out_dir) / stem
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise output_error(target.parent, exc) from exc
        files = {
            target.with_name(f"{target.name}.csv"): self.to_csv().encode(),
            target.with_name(f"{target.name}.json"): (self.to_json() + "\n").encode(),
            target.with_name(f"{target.name}.png"): plot_timeline(self, audio),
        }
        return dict(zip(("csv", "json", "png"), atomic_write_set(files), strict=True))


# --------------------------------------------------------------------------- recognition


def split_channels(audio: Audio, per_channel: bool) -> list[tuple[str, Audio]]:
    """The analysed parts of ``audio``: ``[("mix", audio)]`` (all channels, for the bundle to
    down-mix or select), or with ``per_channel`` one mono part per channel named ``left``/``right``
    (stereo) or ``ch1``, ``ch2``, … (more channels). A mono recording is always ``"mix"``."""
    if not per_channel or audio.channels == 1:
        return [("mix", audio)]
    names = ["left", "right"] if audio.channels == 2 else [f"ch{i + 1}" for i in range(audio.channels)]
    return [(name, Audio(audio.samples[i : i + 1], audio.sample_rate, audio.path)) for i, name in enumerate(names)]


class Recognizer:
    """A model bundle plus voice activity detection, loaded once, safe to share between threads.

    Args:
        bundle: a loaded :class:`Bundle`, a bundle folder, or ``None`` for the default model
            shipped in the package (:data:`DEFAULT_MODEL`).
        config: the :class:`InferenceConfig` (defaults if ``None``).
        threads: threads of each Whisper encoder run and VAD call (onnxruntime; ``None``: all
            cores). With several recognitions at once (the service's workers), ``cores //
            workers`` each.

    Raises:
        BundleError: the bundle cannot be loaded, or the VAD model is missing or altered.
    """

    def __init__(
        self, bundle: Bundle | str | Path | None = None, config: InferenceConfig | None = None, threads: int | None = None
    ):
        if bundle is None:
            bundle = DEFAULT_MODEL
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        for extractor, _ in self.bundle.extractors.values():
            if isinstance(extractor, SpeechEncoder):  # Whisper through onnxruntime: no torch import
                extractor.runtime, extractor.runtime_threads = "onnxruntime", threads
        self.config = config or InferenceConfig()
        self.threads = threads
        self.vad = shared_vad(threads) if self.config.vad else None

    @property
    def labels(self) -> list[str]:
        """The bundle's class order."""
        return self.bundle.labels

    def recognize(self, audio: Audio, config: InferenceConfig | None = None) -> Timeline:
        """The emotion timeline of ``audio`` (any rate, any number of channels, any length).

        Args:
            audio: the recording; the ``"mix"`` analysis gives the bundle all channels (it
                selects or down-mixes them as in training), ``per_channel`` gives it one.
            config: overrides the recognizer's config for this call. With ``adapt="batch"``
                the recording's windows are the batch; with ``"speaker"`` each channel's.

        Returns:
            A :class:`Timeline`; a channel without detected speech has no rows.

        Raises:
            AudioError: a window cannot be used by the bundle's extractors.
            ConfigError: a speaker-normalised bundle gets fewer windows than it needs.
            BundleError: ``config.vad`` is on and the VAD model (loaded on first use) is missing
                or altered.
        """
        return self.recognize_many([audio], config)[0]

    def recognize_many(
        self, audios: Iterable[Audio], config: InferenceConfig | None = None, speakers: Sequence[str] | None = None
    ) -> list[Timeline]:
        """:meth:`recognize` of several recordings, labelled together so that adaptation
        (``config.adapt``) can use all their windows: ``"batch"`` standardises every window of
        every recording with their joint statistics, ``"speaker"`` per speaker (``speakers``,
        one per recording, e.g. a manifest column; default: each recording's channel names).
        What adaptation did is in each timeline's ``adaptation``. ``audios`` may be a generator:
        each recording is read once and only its windows' features are kept, so memory does
        not grow with the recordings' length.

        Raises:
            As :meth:`recognize`; ConfigError: ``speakers`` of the wrong length.
        """
        cfg = config or self.config
        if cfg.vad and self.vad is None:
            self.vad = shared_vad(self.threads)
        collected, windows, feats, groups = [], [], [], []
        for i, audio in enumerate(audios):
            if speakers is not None and i >= len(speakers):
                raise ConfigError(f"recognize_many: {len(speakers)} speakers for more recordings")
            parts = split_channels(audio, cfg.per_channel)
            speech_rows, rows = [], []
            for name, part in parts:
                mono = part.downmix()
                spans = self.vad.speech_segments(mono, cfg) if cfg.vad else [(0.0, part.duration)]
                for seg, (start, end) in enumerate(spans):
                    speech_rows.append({"channel": name, "segment": seg, "start": start, "end": end})
                    for a, b in window_spans(start, end, cfg.window, cfg.hop):
                        rows.append({"channel": name, "segment": seg, "start": a, "end": b})
                        windows.append(part.slice(a, b))
                        if len(windows) == WINDOW_CHUNK:  # bounded memory: features, not audio, are kept
                            feats += self.bundle.features_many(windows)
                            windows = []
                        # a speaker-normalised bundle standardises each channel of a recording on its own
                        groups.append(speakers[i] if speakers is not None else f"{i}:{name}")
            # what the timeline needs of the recording, not its samples (memory stays bounded)
            collected.append(((audio.duration, audio.sample_rate, audio.path, [name for name, _ in parts]), speech_rows, rows))
        if speakers is not None and len(speakers) != len(collected):
            raise ConfigError(f"recognize_many: {len(speakers)} speakers for {len(collected)} recordings")
        proba, adapted = np.zeros((0, len(self.labels))), None
        feats += self.bundle.features_many(windows) if windows else []
        if feats:
            proba, adapted = self.bundle.predict_adapted(feats, groups, cfg.adapt, cfg.min_batch)
        prob_cols = [f"p_{lab}" for lab in self.labels]
        timelines, at = [], 0
        for (duration, sample_rate, path, channels), speech_rows, rows in collected:
            for row, p in zip(rows, proba[at : at + len(rows)]):
                row["label"] = decide(p, self.labels, cfg.min_confidence)
                row.update(zip(prob_cols, p.tolist()))
            at += len(rows)
            timelines.append(Timeline(
                labels=list(self.labels),
                duration=duration,
                sample_rate=sample_rate,
                channels=channels,
                speech_rows=speech_rows,
                window_rows=rows,
                segment_rows=segment_rows(rows, self.labels, merge=cfg.merge, min_confidence=cfg.min_confidence),
                config=cfg,
                source=path,
                adaptation=[] if adapted is None else list(adapted.notes),
            ))  # fmt: skip
        return timelines

    def analysis_format(self, header: AudioHeader, config: InferenceConfig | None = None) -> tuple[int, bool]:
        """``(sample_rate, mono)`` a recording is decoded to for this model and ``config``.

        The rate is the highest any extractor (or the VAD, 16 kHz) reads, or the file's own when
        that is lower: nothing above it reaches the model, and each extractor still resamples to
        its own rate. ``mono`` (decode the down-mix) holds when every extractor reads the
        down-mix and the channels are not analysed one by one.
        """
        cfg = config or self.config
        extractors = list(self.bundle.extractors.values())
        needed = max([int(extractor.sample_rate) for extractor, _ in extractors] + ([VAD_RATE] if cfg.vad else []))
        mono = not cfg.per_channel and all(channel == "downmix" for _, channel in extractors)
        return min(header.sample_rate, needed), mono

    def load(self, source: Source, config: InferenceConfig | None = None, *, name: str | None = None,
             max_frames: int | None = None) -> Audio:
        """Decode a recording for this model (:meth:`analysis_format`) block by block.

        Args:
            source: a path or the file's bytes.
            config: overrides the recognizer's config (``per_channel``, ``vad``).
            name: what error messages call bytes.
            max_frames: most input frames accepted (see :func:`~serkit.audio.decode_audio`).

        Raises:
            UnreadableAudioError, EmptyAudioError, TooShortAudioError, TooLongAudioError,
            NonFiniteAudioError, OutOfRangeAudioError: as :func:`~serkit.audio.decode_audio`.
        """
        rate, mono = self.analysis_format(audio_header(source, name=name), config)
        return decode_audio(source, sample_rate=rate, mono=mono, max_frames=max_frames, name=name)

    def recognize_file(self, path: str | Path, config: InferenceConfig | None = None) -> Timeline:
        """:meth:`recognize` of a file read with :meth:`load`.

        Raises:
            UnreadableAudioError, EmptyAudioError, TooShortAudioError, NonFiniteAudioError,
            OutOfRangeAudioError: as :func:`~serkit.audio.decode_audio`; otherwise as :meth:`recognize`.
        """
        return self.recognize(self.load(path, config), config)


# --------------------------------------------------------------------------- plot


def plot_timeline(timeline: Timeline, audio: Audio | None = None) -> bytes:
    """A PNG picture of the timeline: one panel per channel.

    Each panel shows the per-class probabilities of the timeline segments as steps, the labelled
    segments as coloured bars along the top, and, when ``audio`` is given, the waveform envelope
    in grey behind them. Uses matplotlib's Agg backend (no display needed).

    Returns:
        The PNG file's bytes.
    """
    from matplotlib.figure import Figure

    colours = {lab: f"C{i}" for i, lab in enumerate(timeline.labels)}
    n = len(timeline.channels)
    fig = Figure(figsize=(10, 1.2 + 2.2 * n), dpi=100, layout="constrained")
    axes = fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0]
    sources = dict(split_channels(audio, timeline.config.per_channel)) if audio is not None else {}
    for ax, channel in zip(axes, timeline.channels):
        if channel in sources:
            mono = sources[channel].downmix().samples[0]
            step = max(1, len(mono) // 4000)
            frames = mono[: len(mono) // step * step].reshape(-1, step)
            env = np.maximum(frames.max(axis=1), -frames.min(axis=1))  # |x| peaks without a full-size copy
            t = (np.arange(len(env)) * step) / sources[channel].sample_rate
            ax.fill_between(t, 0, env / max(float(env.max()), 1e-9), color="0.85", lw=0, label="_wave")
        seg = timeline.segments[timeline.segments["channel"] == channel]
        for lab in timeline.labels:
            xs, ys = [], []
            for row in seg.itertuples(index=False):
                xs += [row.start, row.end, np.nan]
                ys += [getattr(row, f"p_{lab}")] * 2 + [np.nan]
            ax.plot(xs, ys, color=colours[lab], lw=1.5)
        for row in seg.itertuples(index=False):
            ax.axvspan(row.start, row.end, ymin=1.0, ymax=1.08, color=colours[row.label], clip_on=False)
            ax.text((row.start + row.end) / 2, 1.12, row.label, ha="center", va="bottom", fontsize=7, clip_on=False)
        ax.set_ylim(0, 1)
        ax.set_xlim(0, timeline.duration)
        ax.set_ylabel(f"{channel}\nprobability")
    axes[-1].set_xlabel("time (s)")
    handles = [axes[0].plot([], [], color=colours[lab], lw=3)[0] for lab in timeline.labels]
    fig.legend(handles, timeline.labels, loc="outside lower center", ncols=min(len(timeline.labels), 7), fontsize=8)
    title = Path(timeline.source).name if timeline.source else "recording"
    fig.suptitle(f"{title}: emotion timeline", fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
