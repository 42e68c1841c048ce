"""Feature extractors (one module each, registered by name) and the extraction pipeline.

``get_extractor(name, config)`` builds a registered extractor: ``logmel`` and ``stft``
(:mod:`~serkit.features.spectral`), ``opensmile_lld`` (:mod:`~serkit.features.lld`),
``opensmile_functionals`` (:mod:`~serkit.features.functionals`). ``extract_features`` runs one
over a corpus table (cached, in parallel) and returns a :class:`FeatureSet`.
"""

from serkit.features.base import Extractor, get_extractor, list_extractors, register
from serkit.features.deltas import regression_delta, stack_deltas
from serkit.features.extract import (
    FeatureSet,
    extract_audio,
    extract_features,
    select_channel,
)

__all__ = [
    "Extractor",
    "FeatureSet",
    "extract_audio",
    "extract_features",
    "get_extractor",
    "list_extractors",
    "regression_delta",
    "register",
    "select_channel",
    "stack_deltas",
]
