"""Run only the encoder blocks a trained model reads.

A recipe that chooses its encoder layers on inner folds (``linear_svm`` / ``logistic_regression``
with ``select: layer``) must extract every candidate layer, so its extractor says ``layer: all``.
Once the model is fitted, the columns it reads are known: a bundle needs the encoder only up to
the highest layer among them. :func:`trim_encoder_layers` rewrites the trained pieces for
``layer: {up_to: k}``: the extractor's config, the normaliser's statistics (kept columns only) and
the model's column indices (positions in the shorter layout). The blocks after ``k`` never run at
inference, and the probabilities are unchanged (the kept columns' values and statistics are
the same numbers).

The graph it trims is the encoder recipes': a ``speech_encoder`` extractor read by one
``pooled_stats`` derived feature, read by a linear model; anything else is returned unchanged.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from serkit.features.layout import LAYER
from serkit.features.normalise import Normaliser
from serkit.models.base import SERModel
from serkit.pipeline import FeaturePlan


def encoder_statistics(plan: FeaturePlan) -> tuple[str, str] | None:
    """``(pooled key, encoder key)`` when the plan's one model input is ``pooled_stats`` of a
    ``speech_encoder`` extractor (the encoder recipes' graph), else ``None``."""
    if len(plan.outputs) != 1:
        return None
    (key,) = plan.outputs
    node = plan.nodes[key]
    if node.derived is None or node.derived.name != "pooled_stats" or len(node.inputs) != 1:
        return None
    extractor = plan.nodes[node.inputs[0]].extractor
    if extractor is None or extractor.name != "speech_encoder":
        return None
    return key, node.inputs[0]


def trim_encoder_layers(
    plan: FeaturePlan, normalisers: dict[str, Normaliser], model: SERModel
) -> tuple[FeaturePlan, dict[str, Normaliser], int | None]:
    """The plan, normalisers and model for the highest encoder layer the model reads.

    Args:
        plan: the training recipe's feature graph.
        normalisers: input key -> fitted normaliser (global or none).
        model: a fitted model with ``columns_`` (the columns of its one input it reads); the
            model is updated in place when the plan is trimmed.

    Returns:
        ``(plan, normalisers, k)``: a new plan whose extractor holds layers ``0..k`` and new
        normalisers, or the arguments unchanged and ``None`` when there is nothing to trim
        (another graph, every column read, or the highest layer already the extractor's).
    """
    columns = getattr(model, "columns_", None)
    graph = encoder_statistics(plan)
    if columns is None or graph is None or normalisers[graph[0]].mode == "speaker":
        return plan, normalisers, None
    key, source_key = graph
    layout = plan.nodes[key].spec.layout
    held = plan.nodes[source_key].extractor.layers  # encoder layer of each index of the layer axis
    if held != tuple(range(len(held))):
        return plan, normalisers, None
    top = int(_layer_index(layout, np.asarray(columns)).max())
    if top >= held[-1]:
        return plan, normalisers, None
    kept = layout.columns(LAYER, list(range(top + 1)))
    features = copy.deepcopy(plan.recipe)
    features[source_key].setdefault("config", {})
    features[source_key]["config"] = {**features[source_key]["config"], "layer": {"up_to": top}}
    trimmed = FeaturePlan(features)
    norm = normalisers[key]
    new_norm = Normaliser(mode=norm.mode, dim=len(kept), min_utterances=norm.min_utterances,
                          mean_=None if norm.mean_ is None else norm.mean_[kept],
                          std_=None if norm.std_ is None else norm.std_[kept])  # fmt: skip
    model.columns_ = np.searchsorted(kept, columns).astype(np.int64)
    if getattr(model, "widths_", None) is not None:
        model.widths_ = [len(kept)]  # the model's one input, now as wide as the kept layers
    return trimmed, {**normalisers, key: new_norm}, top


def _layer_index(layout: Any, columns: np.ndarray) -> np.ndarray:
    """Index along the ``layer`` axis of each flat column of ``layout``."""
    sizes = [size for _, size in layout.axes]
    coords = np.unravel_index(columns, sizes)
    return coords[layout.names.index(LAYER)]
