"""serkit's exception types.

Every error raised at a public boundary is a :class:`SerkitError`; those about one file carry
its path and name it in the message, so a long run can report the file and go on.
"""

from __future__ import annotations

from pathlib import Path


class SerkitError(Exception):
    """Base class of every error serkit raises on purpose."""


class AudioError(SerkitError, ValueError):
    """A recording cannot be used. ``path`` is the file (or ``None`` for in-memory audio)."""

    def __init__(self, problem: str, path: str | Path | None = None):
        self.path = None if path is None else str(path)
        self.problem = problem
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{problem}")


class UnreadableAudioError(AudioError):
    """The file is missing, not audio, truncated or in a format soundfile cannot decode."""


class EmptyAudioError(AudioError):
    """The recording holds no samples."""


class TooShortAudioError(AudioError):
    """The recording is shorter than the minimum duration asked for."""


class TooLongAudioError(AudioError):
    """The recording is longer than a limit (a service's, or a decoder's ``max_frames``)."""


class NonFiniteAudioError(AudioError):
    """The samples contain NaN or ±Inf."""


class OutOfRangeAudioError(AudioError):
    """Floating-point samples lie outside [-1, 1] (a float file that was never normalised)."""


class SampleRateError(AudioError):
    """The sample rate is not the one a step requires; resample explicitly first."""


class CorpusError(SerkitError, ValueError):
    """A corpus folder does not match the documented layout, counts or label codes."""


class UnknownLabelError(CorpusError):
    """A label (or label code in a file name) is not in the corpus's label set."""


class ConfigError(SerkitError, ValueError):
    """A recipe, extractor or model configuration is invalid."""


class OutputExistsError(ConfigError):
    """An output folder already holds results and replacing them was not asked for.

    ``cli_message`` says the same in the command line's words (``--overwrite``).
    """

    def __init__(self, path: str | Path):
        self.path = str(path)
        text = f"output folder {self.path} already exists and is not empty"
        self.cli_message = f"{text}; add --overwrite to replace it"
        super().__init__(f"{text}; pass overwrite=True to replace it")


class OutputError(SerkitError, OSError):
    """An output cannot be written: no permission, not a folder, disk full, or another run holds it."""


class FeatureError(SerkitError, ValueError):
    """Feature extraction failed for a reason other than bad audio."""


class BundleError(SerkitError, ValueError):
    """A saved model bundle is missing, incomplete or from an incompatible version."""


class ClusterError(SerkitError, RuntimeError):
    """A Dask cluster cannot be used: not installed, unreachable, without workers, or it lost the work."""
