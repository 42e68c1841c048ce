"""A :class:`~serkit.pipeline.FeaturePlan` of extractor instances, for tests that save bundles by hand."""

from __future__ import annotations

from serkit.pipeline import FeaturePlan


def plan_of(extractors: dict) -> FeaturePlan:
    """The plan of ``{key: (extractor, channel)}``: those extractors, no derived feature."""
    return FeaturePlan(
        {key: {"extractor": ex.name, "config": ex.describe()["config"], "channel": channel}
         for key, (ex, channel) in extractors.items()}  # fmt: skip
    )
