"""Evaluation: speaker-independent folds, metrics and run reports."""

from serkit.evaluation.metrics import (
    compute_metrics,
    confusion_counts,
    detection_metrics,
    metrics_from_confusion,
    summarise_folds,
)
from serkit.evaluation.protocols import PROTOCOLS, Fold, Protocol, inner_folds, make_folds
from serkit.evaluation.report import plot_confusion, read_predictions, render_markdown, run_metrics, write_run

__all__ = [
    "PROTOCOLS",
    "Fold",
    "Protocol",
    "compute_metrics",
    "confusion_counts",
    "detection_metrics",
    "inner_folds",
    "make_folds",
    "metrics_from_confusion",
    "plot_confusion",
    "read_predictions",
    "render_markdown",
    "run_metrics",
    "summarise_folds",
    "write_run",
]
