"""openSMILE functionals (statistics of LLD contours over the whole utterance), utterance level.

The baselines of every reference paper: eGeMAPSv02 (88), ComParE_2016 (6373), IS09 emotion
challenge (384) and IS10 paralinguistic challenge (1582; emotion-embedding-ae Sec. III-A.2 feeds
it next to the autoencoder). opensmile-python 2.6 ships the configs of all four
(``opensmile/core/config/{egemaps/v02,compare,is09-13}``); ``opensmile.FeatureSet`` names them,
IS10 being ``IS10_paraling_compat.conf`` (numerically compatible with the 2010 challenge set
except jitter / shimmer, which openSMILE fixed).

openSMILE receives 16-bit PCM; see :func:`serkit.features.lld.smile_input` for the clip that
keeps +1.0 from wrapping around.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from serkit.audio import Audio
from serkit.errors import FeatureError
from serkit.features.base import Extractor, register
from serkit.features.lld import smile_input
from serkit.features.spectral import check_choice, check_input, check_int

#: Functional sets: output dimension and the shortest input in seconds that gives finite values
#: (measured with opensmile 2.6 at 16 kHz: 960, 960, 400 and 1120 samples).
FUNCTIONAL_SETS: dict[str, tuple[int, float]] = {
    "eGeMAPSv02": (88, 0.060),
    "ComParE_2016": (6373, 0.060),
    "IS09": (384, 0.025),
    "IS10": (1582, 0.070),
}


@register
class OpenSmileFunctionals(Extractor):
    """openSMILE functionals of one utterance.

    Config:
        feature_set: ``"eGeMAPSv02"`` (88), ``"ComParE_2016"`` (6373), ``"IS09"`` (384) or
            ``"IS10"`` (1582 dimensions).
        sample_rate: Hz the input must have.

    Output: float32 ``(dim,)``; :attr:`names` gives openSMILE's feature names in order.
    The ``opensmile.Smile`` object is made on first use and is not pickled.
    """

    name = "opensmile_functionals"
    level = "utterance"

    @dataclass(frozen=True)
    class Config:
        feature_set: Literal["eGeMAPSv02", "ComParE_2016", "IS09", "IS10"] = "eGeMAPSv02"
        sample_rate: int = 16000

    def __init__(self, config: Any = None, **overrides: Any):
        self._smile: Any = None
        super().__init__(config, **overrides)

    def check_config(self) -> None:
        c, who = self.config, self.name
        check_choice(who, "feature_set", c.feature_set, tuple(FUNCTIONAL_SETS))
        check_int(who, "sample_rate", c.sample_rate, 1)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_smile"] = None
        return state

    @property
    def sample_rate(self) -> int:
        return int(self.config.sample_rate)

    @property
    def dim(self) -> int:
        return FUNCTIONAL_SETS[self.config.feature_set][0]

    @property
    def min_samples(self) -> int:
        """Fewest input samples that give finite functionals for this set."""
        return int(np.ceil(FUNCTIONAL_SETS[self.config.feature_set][1] * self.sample_rate))

    @property
    def smile(self) -> Any:
        """The ``opensmile.Smile`` computing the functionals, built once."""
        if self._smile is None:
            import opensmile

            self._smile = opensmile.Smile(
                feature_set=opensmile.FeatureSet[self.config.feature_set],
                feature_level=opensmile.FeatureLevel.Functionals,
            )
        return self._smile

    @property
    def names(self) -> list[str]:
        """openSMILE's feature names, ``dim`` of them, in output order."""
        return list(self.smile.feature_names)

    def extract(self, audio: Audio) -> np.ndarray:
        """Functionals of mono ``audio`` at :attr:`sample_rate`.

        Returns:
            float32 ``(dim,)``.

        Raises:
            SampleRateError, AudioError, TooShortAudioError: see
                :func:`~serkit.features.spectral.check_input` (minimum 25–70 ms by set).
            FeatureError: openSMILE returned non-finite values or a wrong number of them.
        """
        x = check_input(audio, self.sample_rate, self.min_samples, self.name)
        values = self.smile.process_signal(smile_input(x), self.sample_rate).to_numpy(dtype=np.float64)
        if values.shape != (1, self.dim):
            raise FeatureError(f"{self.name}: openSMILE returned shape {values.shape}, expected (1, {self.dim})")
        if not np.all(np.isfinite(values)):
            bad = int(np.sum(~np.isfinite(values)))
            raise FeatureError(f"{self.name}: openSMILE returned {bad} non-finite values")
        return values[0].astype(np.float32)
