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
from serkit.features.base import Extractor, register
from serkit.features.deltas import regression_delta
from serkit.features.spectral import check_choice, check_input, check_int, check_option

#: LLD sets: number of LLDs, whether openSMILE has a Δ level, shortest input in seconds that
#: yields finite LLDs (measured with opensmile 2.6 at 16 kHz: 960 samples; the longest window
#: of both sets is 60 ms).
LLD_SETS: dict[str, tuple[int, bool, float]] = {
    "ComParE_2016": (65, True, 0.060),
    "eGeMAPSv02": (25, False, 0.060),
}


def smile_input(x: np.ndarray) -> np.ndarray:
    """Mono float samples as openSMILE should get them: float32, clipped to ``[-1, 32767/32768]``.

    opensmile-python converts with ``int16(x * 32768)``; without the clip a sample of +1.0 would
    wrap to -32768.
    """
    return np.clip(x, -1.0, 32767.0 / 32768.0).astype(np.float32)


@register
class OpenSmileLLD(Extractor):
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

    def __init__(self, config: Any = None, **overrides: Any):
        self._smile: Any = None
        super().__init__(config, **overrides)

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

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_smile"] = None
        return state

    @property
    def sample_rate(self) -> int:
        return int(self.config.sample_rate)

    @property
    def n_lld(self) -> int:
        """Number of LLDs in the feature set (65 ComParE_2016, 25 eGeMAPSv02)."""
        return LLD_SETS[self.config.feature_set][0]

    @property
    def dim(self) -> int:
        return self.n_lld * (self.config.deltas + 1)

    @property
    def frame_shift(self) -> float:
        return 0.010

    @property
    def min_samples(self) -> int:
        """Fewest input samples that give finite LLDs (60 ms at the configured rate)."""
        return int(np.ceil(LLD_SETS[self.config.feature_set][2] * self.sample_rate))

    @property
    def uses_smile_deltas(self) -> bool:
        """Whether Δ comes from openSMILE's own Δ level."""
        return self.config.deltas >= 1 and self.config.delta_source == "opensmile"

    @property
    def smile(self) -> Any:
        """The ``opensmile.Smile`` reading the LLD level (and the Δ level when used), built once."""
        if self._smile is None:
            import opensmile

            level = "lld;lld_de" if self.uses_smile_deltas else opensmile.FeatureLevel.LowLevelDescriptors
            feature_set = opensmile.FeatureSet[self.config.feature_set]
            self._smile = opensmile.Smile(feature_set=feature_set, feature_level=level)
        return self._smile

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
                :func:`~serkit.features.spectral.check_input` (at least 60 ms are needed).
            FeatureError: openSMILE returned non-finite values or an unexpected shape.
        """
        x = check_input(audio, self.sample_rate, self.min_samples, self.name)
        table = self.smile.process_signal(smile_input(x), self.sample_rate)
        values = table.to_numpy(dtype=np.float64)
        expected = self.n_lld * (2 if self.uses_smile_deltas else 1)
        if values.ndim != 2 or values.shape[1] != expected or values.shape[0] == 0:
            raise FeatureError(f"{self.name}: openSMILE returned shape {values.shape}, expected (frames, {expected})")
        if not np.all(np.isfinite(values)):
            bad = int(np.sum(~np.isfinite(values)))
            raise FeatureError(f"{self.name}: openSMILE returned {bad} non-finite values")
        lld = values[:, : self.n_lld]
        blocks = [lld]
        if self.config.deltas >= 1:
            blocks.append(values[:, self.n_lld :] if self.uses_smile_deltas else regression_delta(lld, 2))
        if self.config.deltas == 2:
            blocks.append(regression_delta(blocks[1], 2))
        return np.concatenate(blocks, axis=1).astype(np.float32)
