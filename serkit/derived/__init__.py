"""Derived features: features computed from other features (:mod:`serkit.derived.base`).

Fixed ones — ``pooled_stats`` and ``select`` (:mod:`serkit.derived.pooling`), the binaural
system's ``segment_cnn`` and ``temporal_pool`` (:mod:`serkit.derived.binaural`),
``imagenet_deep_spectrum`` (:mod:`serkit.derived.deep_spectrum`) — are computed once per utterance
and cached; fitted ones — ``pca`` (:mod:`serkit.derived.pca`), ``finetuned_segment_cnn``
(:mod:`serkit.derived.finetuned_cnn`), ``blstm_fcn_deep_spectrum``
(:mod:`serkit.derived.deep_spectrum`) — are learnt inside each fold from the training speakers
only. :mod:`serkit.pipeline` runs them.
"""

from serkit.derived.base import (
    DERIVED,
    DerivedFeature,
    FittedFeature,
    FixedFeature,
    get_derived,
    list_derived,
    register,
)

__all__ = ["DERIVED", "DerivedFeature", "FittedFeature", "FixedFeature", "get_derived", "list_derived", "register"]
