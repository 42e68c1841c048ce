"""serkit: speech emotion recognition on one speaker-independent pipeline."""

from serkit.audio import Audio, load_audio
from serkit.errors import SerkitError

__version__ = "0.1.0"

__all__ = ["Audio", "SerkitError", "__version__", "load_audio"]
