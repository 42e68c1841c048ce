"""openSMILE low-level descriptors (LLD) with Δ and Δ², frame level (msir-2024 Sec. 3.2, 4.1, Table 2).

MSIR's LLD branch reads the 65 ComParE_2016 LLDs with their first (Δ) and second (Δ²) order
deltas: ``(frames, 195)``. opensmile-python 2.6 returns the LLDs and openSMILE's own Δ stream but
no Δ². How the three blocks are made and aligned:

- **Alignment.** Run separately, the ``LowLevelDescriptors`` and ``LowLevelDescriptors_Deltas``
  levels return ``n`` and ``n + 2`` frames (all 535 EmoDB files), and openSMILE's time stamps of the
  last few frames repeat, so they cannot be matched by time alone. Both levels share the 10 ms
  frame grid from the same start: frame ``i`` of either starts at ``i * 10 ms``. The extractor
  therefore reads the two levels in *one* openSMILE run with the sink level ``"lld;lld_de"``:
  openSMILE's data-memory reader pairs the levels frame index by frame index and delivers only
  frames that exist in both, i.e. the ``n`` LLD frames with their Δ. The two trailing Δ frames
  (deltas of frames beyond the LLD output, emitted at end of input) are dropped.
  ``tests/test_features.py`` checks that this equals pairing the two separate runs by index.
- **Δ from openSMILE** (``delta_source="opensmile"``, MSIR's setting): openSMILE's
  ``cDeltaRegression`` with window 2. For 59 of the 65 ComParE LLDs this is exactly
  :func:`~serkit.features.deltas.regression_delta` of the LLD stream (except the last two
  frames, where openSMILE sees frames that are not in the output). The 6 voicing LLDs
  (``F0final``, ``voicingFinalUnclipped``, ``jitterLocal``, ``jitterDDP``, ``shimmerLocal``,
  ``logHNR``) use ``onlyInSegments=1``, and in that mode openSMILE 2.x/3.x adds to its
  normaliser on every frame instead of resetting it (the local ``_norm`` in
  ``cDeltaRegression::processBuffer`` is unused), so their Δ shrinks roughly like ``1 / t``
  along the file. This is what openSMILE gives (MSIR took its Δ from openSMILE 2.4.1, Sec. 4.1,
  whose source has the same loop); it is kept, not repaired. Use ``"regression"`` to avoid it.
- **Δ by regression** (``delta_source="regression"``): Δ = ``regression_delta(LLD, 2)`` on every
  column, the textbook HTK delta. eGeMAPSv02 has no openSMILE Δ level, so it needs this source.
- **Δ²** is ``regression_delta(Δ, 2)`` in both cases: openSMILE's width 2, and the first / last
  frame repeated at the edges, which is also what openSMILE's Δ does at the start of a file
  (its first frames equal :func:`~serkit.features.deltas.regression_delta` exactly).

openSMILE receives the signal as 16-bit PCM (opensmile-python scales by 32768 and casts to
int16); the samples are clipped to ``[-1, 32767/32768]`` first so that a full-scale +1.0 does not
wrap around to -32768.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from serkit.audio import Audio
from serkit.errors import FeatureError
from serkit.config import check_choice, check_int, check_option
from serkit.features.base import register
from serkit.features.deltas import regression_delta
from serkit.features.layout import DELTA, LLD, Layout
from serkit.features.smile import SmileExtractor

#: LLD sets: number of LLDs, whether openSMILE has a Δ level, shortest input in seconds that
#: yields finite LLDs (measured with opensmile 2.6 at 16 kHz: 960 samples; the longest window
#: of both sets is 60 ms).
LLD_SETS: dict[str, tuple[int, bool, float]] = {
    "ComParE_2016": (65, True, 0.060),
    "eGeMAPSv02": (25, False, 0.060),
}


@register
class OpenSmileLLD(SmileExtractor):
    """openSMILE LLDs with Δ and Δ² (module docstring for the rules), frame level, 10 ms hop.

    Config:
        feature_set: ``"ComParE_2016"`` (65 LLDs) or ``"eGeMAPSv02"`` (25 LLDs).
        deltas: 0, 1 or 2 delta blocks after the LLDs.
        delta_source: ``"opensmile"`` (openSMILE's Δ level, ComParE only) or ``"regression"``.
        sample_rate: Hz the input must have (16000 in MSIR).

    Output: float32 ``(frames, n_lld * (deltas + 1))``, blocks ``[LLD, Δ, Δ²]``; 195 columns
    for ComParE_2016 with ``deltas=2``. Frame ``i`` covers ``[i * 10 ms, i * 10 ms + 60 ms)``
    for the pitch-based LLDs (shorter windows for the spectral ones).

    The ``opensmile.Smile`` object is made on first use and is not pickled, so an extractor can
    be sent to worker processes; each worker builds its own.
    """

    name = "opensmile_lld"
    level = "frame"

    @dataclass(frozen=True)
    class Config:
        feature_set: Literal["ComParE_2016", "eGeMAPSv02"] = "ComParE_2016"
        deltas: int = 2
        delta_source: Literal["opensmile", "regression"] = "opensmile"
        sample_rate: int = 16000

    def check_config(self) -> None:
        c, who = self.config, self.name
        check_choice(who, "feature_set", c.feature_set, tuple(LLD_SETS))
        check_choice(who, "deltas", c.deltas, (0, 1, 2))
        check_choice(who, "delta_source", c.delta_source, ("opensmile", "regression"))
        check_int(who, "sample_rate", c.sample_rate, 1)
        has_delta_level = LLD_SETS[c.feature_set][1]
        check_option(
            has_delta_level or c.delta_source != "opensmile" or c.deltas == 0,
            who,
            f"openSMILE has no Δ level for {c.feature_set}; set delta_source='regression' (or deltas=0)",
        )

    @property
    def n_lld(self) -> int:
        """Number of LLDs in the feature set (65 ComParE_2016, 25 eGeMAPSv02)."""
        return LLD_SETS[self.config.feature_set][0]

    @property
    def dim(self) -> int:
        return self.n_lld * (self.config.deltas + 1)

    @property
    def layout(self) -> Layout:
        """``delta`` (LLD, Δ, Δ²: ``deltas + 1``) × ``lld`` (the feature set's LLD count)."""
        return Layout.of((DELTA, self.config.deltas + 1), (LLD, self.n_lld))

    @property
    def frame_shift(self) -> float:
        return 0.010

    @property
    def min_duration(self) -> float:
        return LLD_SETS[self.config.feature_set][2]

    @property
    def uses_smile_deltas(self) -> bool:
        """Whether Δ comes from openSMILE's own Δ level."""
        return self.config.deltas >= 1 and self.config.delta_source == "opensmile"

    def make_smile(self) -> Any:
        """openSMILE reading the LLD level, and the Δ level too when it is used."""
        import opensmile

        level = "lld;lld_de" if self.uses_smile_deltas else opensmile.FeatureLevel.LowLevelDescriptors
        return opensmile.Smile(feature_set=opensmile.FeatureSet[self.config.feature_set], feature_level=level)

    @property
    def names(self) -> list[str]:
        """Column names: openSMILE's LLD names, then ``_de`` (Δ) and ``_de_de`` (Δ²) suffixed."""
        lld = list(self.smile.feature_names[: self.n_lld])
        return [n + suffix for suffix in ("", "_de", "_de_de")[: self.config.deltas + 1] for n in lld]

    def extract(self, audio: Audio) -> np.ndarray:
        """LLD (+ Δ, Δ²) of mono ``audio`` at :attr:`sample_rate`.

        Returns:
            float32 ``(frames, dim)``.

        Raises:
            SampleRateError, AudioError, TooShortAudioError: see
                :func:`~serkit.features.base.check_input` (at least 60 ms are needed).
            FeatureError: openSMILE returned non-finite values or an unexpected shape.
        """
        values = self.run_smile(audio)
        expected = self.n_lld * (2 if self.uses_smile_deltas else 1)
        if values.shape[1] != expected:
            raise FeatureError(f"{self.name}: openSMILE returned shape {values.shape}, expected (frames, {expected})")
        lld = values[:, : self.n_lld]
        blocks = [lld]
        if self.config.deltas >= 1:
            blocks.append(values[:, self.n_lld :] if self.uses_smile_deltas else regression_delta(lld, 2))
        if self.config.deltas == 2:
            blocks.append(regression_delta(blocks[1], 2))
        return np.concatenate(blocks, axis=1).astype(np.float32)
