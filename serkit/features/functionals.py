"""openSMILE functionals (statistics of LLD contours over the whole utterance), utterance level.

The baselines of every reference paper: eGeMAPSv02 (88), ComParE_2016 (6373), IS09 emotion
challenge (384) and IS10 paralinguistic challenge (1582; emotion-embedding-ae Sec. III-A.2 feeds
it next to the autoencoder). opensmile-python 2.6 ships the configs of all four
(``opensmile/core/config/{egemaps/v02,compare,is09-13}``); ``opensmile.FeatureSet`` names them,
IS10 being ``IS10_paraling_compat.conf`` (numerically compatible with the 2010 challenge set
except jitter / shimmer, which openSMILE fixed).

openSMILE receives 16-bit PCM; see :func:`serkit.features.smile.smile_input` for the clip that
keeps +1.0 from wrapping around.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from serkit.audio import Audio
from serkit.errors import FeatureError
from serkit.config import check_choice, check_int
from serkit.features.base import register
from serkit.features.smile import SmileExtractor

#: Functional sets: output dimension and the shortest input in seconds that gives finite values
#: (measured with opensmile 2.6 at 16 kHz: 960, 960, 400 and 1120 samples).
FUNCTIONAL_SETS: dict[str, tuple[int, float]] = {
    "eGeMAPSv02": (88, 0.060),
    "ComParE_2016": (6373, 0.060),
    "IS09": (384, 0.025),
    "IS10": (1582, 0.070),
}


@register
class OpenSmileFunctionals(SmileExtractor):
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

    def check_config(self) -> None:
        c, who = self.config, self.name
        check_choice(who, "feature_set", c.feature_set, tuple(FUNCTIONAL_SETS))
        check_int(who, "sample_rate", c.sample_rate, 1)

    @property
    def dim(self) -> int:
        return FUNCTIONAL_SETS[self.config.feature_set][0]

    @property
    def min_duration(self) -> float:
        return FUNCTIONAL_SETS[self.config.feature_set][1]

    def make_smile(self) -> Any:
        import opensmile

        return opensmile.Smile(
            feature_set=opensmile.FeatureSet[self.config.feature_set],
            feature_level=opensmile.FeatureLevel.Functionals,
        )

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
                :func:`~serkit.features.base.check_input` (minimum 25–70 ms by set).
            FeatureError: openSMILE returned non-finite values or a wrong number of them.
        """
        values = self.run_smile(audio)
        if values.shape != (1, self.dim):
            raise FeatureError(f"{self.name}: openSMILE returned shape {values.shape}, expected (1, {self.dim})")
        return values[0].astype(np.float32)
