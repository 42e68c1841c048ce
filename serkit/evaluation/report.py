"""The run folder: resolved config, predictions, metrics, a Markdown report and a confusion plot.

:func:`write_run` writes, atomically (see :func:`serkit.io.atomic_directory`)::

    <out_dir>/config.yaml       the fully resolved config (yaml.safe_dump; re-runnable)
    <out_dir>/predictions.csv   one row per test utterance (read back with read_predictions); a
                                ``corpus`` column when the corpora were pooled
    <out_dir>/metrics.json      pooled metrics, per-fold metrics, fold mean/std, detection view
    <out_dir>/report.md         researcher-ready summary
    <out_dir>/confusion.png     confusion matrix: counts annotated, colour = row-normalised

Pooled vs fold mean: the top-level ``ua``/``wa``/``macro_f1`` of ``metrics.json`` are computed once
over all test predictions of all folds together (pooled); ``fold_mean`` holds the mean and sample
standard deviation of the per-fold values. Papers report either; the report states both. With a
``corpus`` column (pooled corpora, :mod:`serkit.corpora.pool`), ``per_corpus`` holds the metrics of
each corpus's test utterances and ``corpus_mean`` their mean over corpora: under
``leave_one_corpus_out`` that is each held-out corpus; under ``loso`` each corpus's speakers.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from serkit.errors import ConfigError
from serkit.evaluation.metrics import calibration_metrics, compute_metrics, detection_metrics, summarise_folds
from serkit.io import atomic_directory

#: Required columns of a predictions table, besides one ``p_<label>`` column per label.
PREDICTION_COLUMNS = ("utterance_id", "speaker", "fold", "true", "predicted")
_TEXT_COLUMNS = {c: str for c in PREDICTION_COLUMNS}

FILES = ("config.yaml", "predictions.csv", "metrics.json", "report.md", "confusion.png")
#: Plots are drawn one at a time: matplotlib's font cache is shared by every figure of the process,
#: and a sweep on a cluster writes run folders from several threads.
_PLOT_LOCK = threading.Lock()


def write_run(
    out_dir: str | Path,
    *,
    config: Mapping[str, Any],
    predictions: pd.DataFrame,
    labels: Sequence[str],
    protocol: Mapping[str, Any] | Any,
    extra: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a complete run folder (module docstring) or nothing at all.

    Args:
        out_dir: the run folder to create.
        config: the fully resolved experiment config (plain data; paths, tuples and numpy
            scalars are converted to YAML-safe types).
        predictions: one row per test utterance with columns :data:`PREDICTION_COLUMNS` and
            ``p_<label>`` (probability, float) for every label; optionally ``corpus``.
        labels: the class order used in every table and matrix.
        protocol: :meth:`~serkit.evaluation.protocols.Protocol.describe` output (or the
            Protocol itself); add ``"normalisation"`` to it, else it is looked up in
            ``config["normalisation"]`` / ``config["evaluation"]["normalisation"]``.
        extra: optional; ``extra["failures"]`` (list of strings or dicts, e.g. utterances that
            could not be processed) is reported as ``failures``; other keys go to
            ``metrics.json["extra"]``.
        overwrite: replace an existing non-empty ``out_dir``.

    Returns:
        ``out_dir`` as a Path.

    Raises:
        ConfigError: ``out_dir`` exists and is non-empty without ``overwrite``; missing
            prediction columns, duplicated utterance ids, labels outside ``labels``, non-finite
            probabilities, or a config that is not plain data.
    """
    labels = [str(lab) for lab in labels]
    config_plain = plain_data(dict(config), "config")
    metrics = run_metrics(predictions, labels, protocol=_protocol_dict(protocol, config_plain), extra=extra)
    config_text = yaml.safe_dump(config_plain, sort_keys=False, allow_unicode=True)
    try:
        metrics_text = json.dumps(metrics, indent=2, allow_nan=False) + "\n"
    except ValueError as exc:
        raise ConfigError(f"metrics.json: protocol/extra hold a non-finite number ({exc})") from exc
    markdown = render_markdown(metrics, config_plain)

    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        (tmp / "config.yaml").write_text(config_text, encoding="utf-8")
        columns = _prediction_columns(labels) + (["corpus"] if "corpus" in predictions.columns else [])
        predictions.loc[:, columns].to_csv(tmp / "predictions.csv", index=False)
        (tmp / "metrics.json").write_text(metrics_text, encoding="utf-8")
        (tmp / "report.md").write_text(markdown, encoding="utf-8")
        plot_confusion(tmp / "confusion.png", np.array(metrics["confusion"]["counts"]), labels)
    return Path(out_dir)


def run_metrics(
    predictions: pd.DataFrame,
    labels: Sequence[str],
    *,
    protocol: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``metrics.json`` content for a predictions table (pure; no files).

    Returns:
        The pooled :func:`~serkit.evaluation.metrics.compute_metrics` dict plus ``folds`` (per
        fold: ``fold``, ``test_speakers`` and that fold's metrics), ``fold_mean``
        (:func:`~serkit.evaluation.metrics.summarise_folds`), ``detection``, ``protocol``,
        ``n_utterances``, ``pooling`` (a sentence), ``per_corpus`` (``[{corpus, ...metrics}]``)
        and ``corpus_mean`` when ``predictions`` has a ``corpus`` column, and ``failures`` /
        ``extra`` when given.

    Raises:
        ConfigError: as in :func:`write_run`.
    """
    labels = [str(lab) for lab in labels]
    _check_predictions(predictions, labels)
    true = predictions["true"].astype(str).tolist()
    pred = predictions["predicted"].astype(str).tolist()
    metrics = compute_metrics(true, pred, labels)

    fold_col = predictions["fold"].astype(str)
    order = list(dict.fromkeys(fold_col))
    known = [f.get("name") for f in (protocol or {}).get("folds", []) if isinstance(f, Mapping)]
    if set(order) <= set(known):
        order = [name for name in known if name in set(order)]
    folds = []
    for name in order:
        rows = predictions[fold_col == name]
        entry = {"fold": name, "test_speakers": sorted(rows["speaker"].astype(str).unique().tolist())}
        entry.update(compute_metrics(rows["true"].astype(str), rows["predicted"].astype(str), labels))
        folds.append(entry)

    metrics["pooling"] = (
        "ua, wa and macro_f1 are pooled over all test predictions of all folds; "
        "fold_mean gives the mean and sample std (ddof=1) of the per-fold values"
    )
    metrics["fold_mean"] = summarise_folds(folds)
    metrics["folds"] = folds
    if "corpus" in predictions.columns:
        corpus = predictions["corpus"].astype(str)
        metrics["per_corpus"] = [
            {"corpus": name, **compute_metrics(rows["true"].astype(str), rows["predicted"].astype(str), labels)}
            for name, rows in predictions.groupby(corpus, sort=False)
        ]
        metrics["corpus_mean"] = summarise_folds(metrics["per_corpus"])
    metrics["detection"] = detection_metrics(true, pred, labels)
    proba = predictions[[f"p_{lab}" for lab in labels]].to_numpy(dtype=np.float64)
    metrics["calibration"] = calibration_metrics(proba, np.array([labels.index(t) for t in true]))
    metrics["protocol"] = plain_data(dict(protocol or {}), "protocol")
    metrics["n_utterances"] = int(len(predictions))
    extra = dict(extra or {})
    if "failures" in extra:
        metrics["failures"] = plain_data(list(extra.pop("failures") or []), "failures")
    if extra:
        metrics["extra"] = plain_data(extra, "extra")
    return metrics


def read_predictions(path: str | Path) -> pd.DataFrame:
    """Read a ``predictions.csv`` back with ids, speakers, folds and labels as strings."""
    return pd.read_csv(path, dtype=_TEXT_COLUMNS, keep_default_na=False)


def plot_confusion(path: str | Path, counts: np.ndarray, labels: Sequence[str], title: str | None = None) -> None:
    """Save a confusion-matrix PNG: colour = row-normalised recall in [0, 1], text = counts.

    Args:
        path: PNG file to write.
        counts: K×K counts, rows = true, columns = predicted.
        labels: the K class names (axis tick labels).
        title: optional figure title.

    Uses a bare :class:`matplotlib.figure.Figure` on the Agg canvas (no pyplot global state),
    one plot at a time.
    """
    with _PLOT_LOCK:
        _plot_confusion(path, counts, labels, title)


def _plot_confusion(path: str | Path, counts: np.ndarray, labels: Sequence[str], title: str | None) -> None:
    counts = np.asarray(counts)
    k = len(labels)
    rows = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=float), where=rows > 0)
    size = 1.6 + 0.75 * k
    fig = Figure(figsize=(size + 1.2, size))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(k):
        for j in range(k):
            colour = "white" if normalised[i, j] > 0.5 else "black"
            ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", color=colour, fontsize=9)
    ax.set_xticks(range(k), labels=list(labels), rotation=45, ha="right")
    ax.set_yticks(range(k), labels=list(labels))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="row-normalised (recall)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def render_markdown(metrics: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    """The ``report.md`` text for a :func:`run_metrics` dict and the resolved config."""
    labels = metrics["labels"]
    protocol = metrics.get("protocol", {})
    out = io.StringIO()
    w = out.write
    w(f"# Run report{': ' + str(config['name']) if config.get('name') else ''}\n\n")
    if protocol.get("speaker_independent") is False:
        w(
            "> **WARNING — SPEAKER-DEPENDENT EVALUATION.** Test speakers also appear in training. "
            "These numbers are not comparable with speaker-independent (leave-one-speaker-out) "
            "results and are typically much higher.\n\n"
        )
    n_folds = protocol.get("n_folds", len(metrics["folds"]))
    independence = {True: "speaker-independent", False: "SPEAKER-DEPENDENT"}.get(
        protocol.get("speaker_independent"), "speaker independence not stated"
    )
    setup = [
        ("Corpus", _summary(config.get("corpora") or config.get("corpus"))),
        ("Protocol", f"{protocol.get('name', 'unknown')} ({n_folds} folds, {independence})"),
        ("Features", _summary(config.get("features"))),
        ("Normalisation", _summary(protocol.get("normalisation"))),
        ("Model", _summary(config.get("model"))),
        ("Test utterances", str(metrics["n_utterances"])),
        ("Classes", ", ".join(labels)),
    ]
    w(_table(["setting", "value"], setup))

    fm = metrics["fold_mean"]
    w("\n## Results\n\n")
    rows = []
    for key, title in (("ua", "UA (unweighted average recall)"), ("wa", "WA (accuracy)"), ("macro_f1", "macro-F1")):
        std = fm["std"][key]
        spread = f" ± {_pct(std)}" if std is not None else ""
        rows.append((title, _pct(metrics[key]), f"{_pct(fm['mean'][key])}{spread}"))
    w(_table(["metric", "pooled (%)", "fold mean ± std (%)"], rows))
    w(
        "\nPooled: computed once over all test predictions. Fold mean: mean and sample standard "
        f"deviation over the {fm['n_folds']} folds. UA and macro-F1 average over the classes present "
        "in the test labels.\n"
    )
    if "calibration" in metrics:
        cal = metrics["calibration"]
        w(
            f"\nCalibration of the test probabilities: expected calibration error {_pct(cal['ece'])} % "
            f"({cal['n_bins']} confidence bins), negative log-likelihood {cal['nll']:.3f}, "
            f"mean confidence {_pct(cal['mean_confidence'])} %.\n"
        )

    if "per_corpus" in metrics:
        w("\n## Per corpus\n\n")
        rows = [(c["corpus"], str(c["n"]), _pct(c["ua"]), _pct(c["wa"]), _pct(c["macro_f1"])) for c in metrics["per_corpus"]]
        cm = metrics["corpus_mean"]
        rows.append(("mean over corpora", "", *(_pct(cm["mean"][k]) for k in ("ua", "wa", "macro_f1"))))
        w(_table(["corpus", "n", "UA (%)", "WA (%)", "macro-F1 (%)"], rows))
        w("\nEach corpus's test utterances scored on their own; UA over the classes that corpus has.\n")

    w("\n## Per class (one vs rest)\n\n")
    rows = []
    for lab in labels:
        pc = metrics["per_class"][lab]
        scores = (_pct(pc[k]) for k in ("precision", "recall", "f1", "sensitivity", "specificity"))
        rows.append((lab, *scores, str(pc["support"])))
    w(_table(["class", "precision (%)", "recall (%)", "F1 (%)", "sensitivity (%)", "specificity (%)", "support"], rows))

    counts = metrics["confusion"]["counts"]
    normalised = metrics["confusion"]["normalised"]
    w("\n## Confusion matrix — counts (rows = true, columns = predicted)\n\n")
    w(_table(["true \\ predicted", *labels], [(lab, *map(str, row)) for lab, row in zip(labels, counts)]))
    w("\n## Confusion matrix — row-normalised (%)\n\n")
    w(_table(["true \\ predicted", *labels], [(lab, *(_pct(v) for v in row)) for lab, row in zip(labels, normalised)]))
    w("\n![confusion matrix](confusion.png)\n")

    w("\n## Emotion detection (each class vs rest)\n\n")
    rows = []
    for lab in labels:
        d = metrics["detection"][lab]
        (tn, fp), (fn, tp) = d["confusion"]
        rates = (_pct(d["sensitivity"]), _pct(d["specificity"]), _pct(d["ua"]))
        rows.append((lab, *rates, str(tn), str(fp), str(fn), str(tp)))
    w(_table(["class", "sensitivity (%)", "specificity (%)", "binary UA (%)", "TN", "FP", "FN", "TP"], rows))

    w("\n## Per fold\n\n")
    valid = {f.get("name"): f.get("valid_speakers") for f in protocol.get("folds", []) if isinstance(f, Mapping)}
    header = ["fold", "test speakers", "n", "UA (%)", "WA (%)", "macro-F1 (%)"]
    rows = [
        [f["fold"], ", ".join(f["test_speakers"]), str(f["n"]), _pct(f["ua"]), _pct(f["wa"]), _pct(f["macro_f1"])]
        for f in metrics["folds"]
    ]
    if any(valid.get(f["fold"]) for f in metrics["folds"]):
        header.insert(2, "validation speakers")
        for row, f in zip(rows, metrics["folds"]):
            row.insert(2, ", ".join(valid.get(f["fold"]) or []))
    w(_table(header, rows))

    failures = metrics.get("failures")
    if failures:
        w(f"\n## Failures ({len(failures)})\n\n")
        for item in failures:
            w(f"- {_summary(item)}\n")
    w("\nFull configuration: `config.yaml`; predictions: `predictions.csv`; all numbers: `metrics.json`.\n")
    return out.getvalue()


# --------------------------------------------------------------------------- helpers


def _check_predictions(predictions: pd.DataFrame, labels: list[str]) -> None:
    if not isinstance(predictions, pd.DataFrame):
        raise ConfigError(f"predictions must be a DataFrame, got {type(predictions).__name__}")
    missing = [c for c in _prediction_columns(labels) if c not in predictions.columns]
    if missing:
        raise ConfigError(f"predictions lack columns {missing}")
    if predictions.empty:
        raise ConfigError("predictions table is empty")
    dup = predictions["utterance_id"][predictions["utterance_id"].duplicated()]
    if len(dup):
        raise ConfigError(
            f"predictions repeat utterance ids (pooled metrics need one per utterance), e.g. {list(dup[:3])}"
        )
    probs = predictions[[f"p_{lab}" for lab in labels]]
    try:
        values = probs.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"probability columns must be numeric ({exc})") from exc
    if not np.all(np.isfinite(values)):
        raise ConfigError("probability columns contain NaN or infinite values")


def _prediction_columns(labels: list[str]) -> list[str]:
    return [*PREDICTION_COLUMNS, *(f"p_{lab}" for lab in labels)]


def _protocol_dict(protocol: Any, config: Mapping[str, Any]) -> dict[str, Any]:
    if hasattr(protocol, "describe"):
        protocol = protocol.describe()
    if not isinstance(protocol, Mapping):
        raise ConfigError(f"protocol must be a Protocol or its describe() dict, got {type(protocol).__name__}")
    out = dict(protocol)
    if "normalisation" not in out:
        evaluation = config.get("evaluation")
        nested = evaluation.get("normalisation") if isinstance(evaluation, Mapping) else None
        out["normalisation"] = config.get("normalisation", nested)
    return out


def plain_data(value: Any, where: str) -> Any:
    """Convert to YAML/JSON-safe plain data (dict/list/str/int/float/bool/None).

    NumPy scalars and arrays become Python numbers and lists, paths strings.

    Raises:
        ConfigError: a value of another type; the message names ``where`` it sits.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): plain_data(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain_data(v, where) for v in value]
    raise ConfigError(f"{where}: value of type {type(value).__name__} is not plain data (dict, list, str, number)")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.2f}"


def _summary(value: Any) -> str:
    """One-line description of a config entry: a name plus its options."""
    if value is None or value == {} or value == []:
        return "not stated"
    if isinstance(value, Mapping):
        parts = [f"{k}={_inline(v)}" for k, v in value.items()]
        return "; ".join(parts)
    if isinstance(value, (list, tuple)):
        return " + ".join(_summary(v) for v in value)
    return str(value)


def _inline(value: Any) -> str:
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |\n"

    return line(header) + "|" + "|".join("---" for _ in header) + "|\n" + "".join(line(r) for r in rows)
