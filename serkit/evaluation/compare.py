"""Results across run folders: paired per-fold comparisons of two systems, and tables over seeds.

A run folder is what :func:`serkit.evaluation.report.write_run` writes; this module reads its
``config.yaml`` (the resolved recipe) and ``metrics.json``. Two facts come from the config, never
from the folder's name:

- the run's **seed**: ``config.yaml``'s ``seed``;
- the run's **identity**: the resolved config without ``seed``, ``name``, ``cache_dir``,
  ``n_jobs`` and ``cluster`` (:data:`NOT_IDENTITY_KEYS`). Runs of one recipe (with the same overrides) over
  several seeds share an identity; any other difference (model option, corpus, protocol,
  normalisation, features) makes another system.

:func:`compare_runs` pairs two systems fold by fold; :func:`results_table` groups runs by
identity and summarises each group over its seeds; ``render_*`` turn both into Markdown.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from scipy.stats import binomtest, wilcoxon

from serkit.errors import ConfigError
from serkit.recipe import corpus_title

#: Resolved-config keys that do not make another system: the seed varies over repeats of one
#: system, the name is a label, and the cache folder, worker count and cluster never change a result.
NOT_IDENTITY_KEYS = ("seed", "name", "cache_dir", "n_jobs", "cluster")
#: Metrics that every fold of ``metrics.json`` holds and :func:`compare_runs` can pair.
FOLD_METRICS = ("ua", "wa", "macro_f1")


@dataclass(frozen=True)
class Run:
    """One complete run folder, read.

    Attributes:
        path: the folder.
        config: ``config.yaml`` (the resolved recipe, plain data).
        metrics: ``metrics.json`` (see :func:`serkit.evaluation.report.run_metrics`).
    """

    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]

    @property
    def seed(self) -> int:
        """The seed the run was made with (``config.yaml``'s ``seed``)."""
        return self.config["seed"]

    @property
    def identity(self) -> dict[str, Any]:
        """The resolved config without :data:`NOT_IDENTITY_KEYS` (see the module docstring)."""
        return run_identity(self.config)

    def fold_scores(self, metric: str = "ua") -> dict[str, float]:
        """Fold name -> that fold's ``metric`` (a fraction in [0, 1]), in ``metrics.json`` order."""
        return {fold["fold"]: float(fold[metric]) for fold in self.metrics["folds"]}


def run_identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` without the keys in :data:`NOT_IDENTITY_KEYS` (a new dict; nested values shared)."""
    return {key: value for key, value in config.items() if key not in NOT_IDENTITY_KEYS}


def read_run(path: str | Path) -> Run:
    """Read a run folder's ``config.yaml`` and ``metrics.json``.

    Raises:
        ConfigError: naming the folder, when it is not a complete run: a file missing or
            unreadable, ``config.yaml`` not a mapping with an integer ``seed``, or
            ``metrics.json`` without pooled ``ua``/``wa``/``macro_f1`` or a ``folds`` list whose
            entries hold ``fold`` and the :data:`FOLD_METRICS`.
    """
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{path}: not a run folder (no such folder)")
    missing = [name for name in ("config.yaml", "metrics.json") if not (path / name).is_file()]
    if missing:
        raise ConfigError(f"{path}: not a complete run folder (no {' or '.join(missing)}; an unfinished run?)")
    try:
        config = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8"))
        metrics = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable run folder ({exc})") from exc
    seed = config.get("seed") if isinstance(config, dict) else None
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"{path}: config.yaml is not a mapping with an integer seed (seed: {seed!r})")
    if not isinstance(metrics, dict) or not all(_is_number(metrics.get(key)) for key in FOLD_METRICS):
        raise ConfigError(f"{path}: metrics.json lacks the pooled {', '.join(FOLD_METRICS)}")
    folds = metrics.get("folds")
    if not isinstance(folds, list) or not folds:
        raise ConfigError(f"{path}: metrics.json holds no per-fold results ('folds')")
    for fold in folds:
        if not isinstance(fold, dict) or "fold" not in fold or not all(_is_number(fold.get(k)) for k in FOLD_METRICS):
            raise ConfigError(f"{path}: metrics.json has a fold entry without a name and {', '.join(FOLD_METRICS)}")
    if len({fold["fold"] for fold in folds}) != len(folds):
        raise ConfigError(f"{path}: metrics.json names a fold twice")
    return Run(path, config, metrics)


def find_runs(paths: Iterable[str | Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Split paths (e.g. a shell glob's expansion) into run folders and the rest.

    A run folder is a folder holding ``metrics.json``. Files (such as GNU ``time`` reports
    beside run folders) are dropped silently; missing paths and folders without
    ``metrics.json`` (unfinished runs, ``<run>.folds/`` checkpoints) are returned as skipped.

    Returns:
        ``(runs, skipped)``: run folders in the given order (duplicates removed), and
        ``(path, reason)`` for each skipped path.
    """
    runs: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for path in dict.fromkeys(Path(p) for p in paths):
        if not path.exists():
            skipped.append((path, "no such file or folder"))
        elif path.is_dir() and (path / "metrics.json").is_file():
            runs.append(path)
        elif path.is_dir():
            skipped.append((path, "no metrics.json (unfinished run?)"))
    return runs, skipped


# --------------------------------------------------------------------------- paired comparison


@dataclass(frozen=True)
class PairedComparison:
    """Per-fold comparison of system A against system B (:func:`compare_runs`).

    Attributes:
        metric: the fold metric compared (``ua``, ``wa`` or ``macro_f1``; fractions in [0, 1]).
        n_pairs: number of (seed, fold) pairs.
        seeds: the seeds paired, ascending.
        above, equal, below: pairs in which A's fold score is above, equal to, below B's.
        mean_a, mean_b: mean fold score of A and of B over the pairs.
        mean_difference: mean of A − B over the pairs.
        standard_error: sample standard deviation (ddof = 1) of A − B over √n_pairs.
        wilcoxon_p: two-sided Wilcoxon signed-rank p (``scipy.stats.wilcoxon`` defaults, zero
            differences dropped); ``None`` when every difference is zero.
        sign_test_p: two-sided sign test p (``scipy.stats.binomtest`` of ``above`` in
            ``above + below``, ties dropped); ``None`` when every pair is a tie.
    """

    metric: str
    n_pairs: int
    seeds: tuple[int, ...]
    above: int
    equal: int
    below: int
    mean_a: float
    mean_b: float
    mean_difference: float
    standard_error: float
    wilcoxon_p: float | None
    sign_test_p: float | None

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-safe)."""
        out = asdict(self)
        out["seeds"] = list(self.seeds)
        return out


def compare_runs(
    a: Sequence[str | Path | Run], b: Sequence[str | Path | Run], *, metric: str = "ua"
) -> PairedComparison:
    """Compare system A (one or more runs) with system B fold by fold.

    Each run is keyed by its seed (from ``config.yaml``) and each fold by its name, so a pair is
    one (seed, fold) — one test speaker (or group) scored by both systems with the same seed.
    Give each side the runs of one system over its seeds. The pairs are **not independent**
    across seeds (the same test speaker appears once per seed) nor, strictly, across folds (they
    share training speakers), so the p-values are descriptive, not a licence to call a
    difference real.

    Args:
        a, b: run folders (or :class:`Run` objects) of system A and system B.
        metric: the fold metric to pair, one of :data:`FOLD_METRICS`.

    Returns:
        :class:`PairedComparison`; differences are A − B.

    Raises:
        ConfigError: a side with no runs, an incomplete run folder, two runs of one side with
            the same seed, a (seed, fold) in only one side, paired folds with different test
            speakers (other corpora or protocols), fewer than two pairs, or an unknown metric.
    """
    if metric not in FOLD_METRICS:
        raise ConfigError(f"compare: metric must be one of {list(FOLD_METRICS)}, got {metric!r}")
    scores_a, speakers_a = _side_scores("A", a, metric)
    scores_b, speakers_b = _side_scores("B", b, metric)
    only_a, only_b = sorted(scores_a.keys() - scores_b.keys()), sorted(scores_b.keys() - scores_a.keys())
    if only_a or only_b:
        raise ConfigError(
            "compare: every (seed, fold) must be in both systems; "
            f"only in A: {_pairs_text(only_a)}; only in B: {_pairs_text(only_b)}"
        )
    keys = sorted(scores_a)
    for key in keys:
        if speakers_a[key] != speakers_b[key]:
            raise ConfigError(
                f"compare: seed {key[0]}, fold {key[1]!r} tests speakers {speakers_a[key]} in A "
                f"but {speakers_b[key]} in B (not the same folds)"
            )
    if len(keys) < 2:
        raise ConfigError(f"compare: {len(keys)} (seed, fold) pair; a paired comparison needs at least two")
    diffs = [scores_a[key] - scores_b[key] for key in keys]
    above, below = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    return PairedComparison(
        metric=metric,
        n_pairs=len(keys),
        seeds=tuple(sorted({seed for seed, _ in keys})),
        above=above,
        equal=len(diffs) - above - below,
        below=below,
        mean_a=statistics.fmean(scores_a[key] for key in keys),
        mean_b=statistics.fmean(scores_b[key] for key in keys),
        mean_difference=statistics.fmean(diffs),
        standard_error=statistics.stdev(diffs) / math.sqrt(len(diffs)),
        wilcoxon_p=float(wilcoxon(diffs).pvalue) if above + below else None,
        sign_test_p=float(binomtest(above, above + below).pvalue) if above + below else None,
    )


def two_systems(runs: Sequence[str | Path | Run]) -> tuple[list[Run], list[Run]]:
    """Systems A and B from one list of runs (e.g. two shell globs' expansions).

    Plain files among the paths (GNU ``time`` reports or lock files a glob picks up beside run
    folders) are ignored. Two runs are A and B in the order given. More runs are split by
    identity: A is the system of the first run, B the other one.

    Raises:
        ConfigError: fewer than two runs, an incomplete run folder, or more than two runs that
            are not exactly two systems (then name each side with ``--a``/``--b``).
    """
    read = _read_all(run for run in runs if isinstance(run, Run) or not Path(run).is_file())
    if len(read) < 2:
        raise ConfigError(f"compare: {len(read)} run given; give system A's and system B's runs")
    if len(read) == 2:
        return [read[0]], [read[1]]
    groups = group_by_identity(read)
    if len(groups) != 2:
        raise ConfigError(
            f"compare: the {len(read)} runs are {len(groups)} systems (configs without seed and name), not two; "
            "name each side's runs explicitly (--a RUN --a RUN --b RUN ...)"
        )
    return groups[0], groups[1]


def _side_scores(
    side: str, runs: Sequence[str | Path | Run], metric: str
) -> tuple[dict[tuple[int, str], float], dict[tuple[int, str], list[str]]]:
    if not runs:
        raise ConfigError(f"compare: system {side} has no runs")
    scores, speakers, by_seed = {}, {}, {}
    for run in _read_all(runs):
        if run.seed in by_seed:
            raise ConfigError(
                f"compare: system {side} has two runs with seed {run.seed} ({by_seed[run.seed]} and {run.path}); "
                "give each side one run per seed"
            )
        by_seed[run.seed] = run.path
        for fold in run.metrics["folds"]:
            key = (run.seed, str(fold["fold"]))
            scores[key] = float(fold[metric])
            speakers[key] = sorted(str(s) for s in fold.get("test_speakers", []))
    return scores, speakers


def _pairs_text(pairs: list[tuple[int, str]]) -> str:
    shown = ", ".join(f"(seed {seed}, {fold})" for seed, fold in pairs[:6]) or "none"
    return shown + (f" and {len(pairs) - 6} more" if len(pairs) > 6 else "")


def render_comparison(result: PairedComparison) -> str:
    """A Markdown table of a :class:`PairedComparison` and a note on reading its p-values."""
    name = {"ua": "UA", "wa": "WA", "macro_f1": "macro-F1"}[result.metric]
    seeds = ", ".join(str(s) for s in result.seeds)
    rows = [
        ("(seed, fold) pairs", f"{result.n_pairs} over seed{'s' if len(result.seeds) > 1 else ''} {seeds}"),
        ("A above / equal / below B", f"{result.above} / {result.equal} / {result.below}"),
        (f"mean fold {name}: A, B", f"{result.mean_a:.4f}, {result.mean_b:.4f}"),
        ("mean paired difference A − B ± standard error", f"{result.mean_difference:+.4f} ± {result.standard_error:.4f}"),
        ("Wilcoxon signed-rank, two-sided", _p_text(result.wilcoxon_p)),
        ("sign test, two-sided (ties dropped)", _p_text(result.sign_test_p)),
    ]
    note = "\nPairs share test speakers across seeds and training speakers across folds: the p-values are descriptive.\n"
    return _markdown(["paired per-fold comparison", "value"], rows) + note


def _p_text(p: float | None) -> str:
    return "n/a (every pair is a tie)" if p is None else f"p = {p:.3f}"


# --------------------------------------------------------------------------- tables over seeds


@dataclass(frozen=True)
class Summary:
    """Mean and sample standard deviation (ddof = 1; ``None`` for a single value) of some values."""

    mean: float
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        values = [float(v) for v in values]
        return cls(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None, len(values))


@dataclass(frozen=True)
class TableRow:
    """One system in :func:`results_table`: the runs of one identity, summarised over seeds.

    Attributes:
        system: the runs' recipe name(s), plus the identity keys that tell it apart from another
            row of the same name (e.g. ``is10_svm [normalisation=speaker]``).
        corpus: the corpus adapter name (pooled corpora: their names joined by ``+``).
        runs: the run folders, in the order given.
        seeds: the runs' seeds, ascending.
        ua, wa, macro_f1: pooled metric of each run, summarised over the runs (fractions).
        fold_ua: fold UA over every fold of every run (mean ± sample std).
        best_epoch, epochs_run: mean over the folds of all runs of the epoch early stopping
            kept and of the epochs trained; ``None`` when the runs trained no network.
        wall_s: seconds of a whole run (``extra.wall_time_s.total``; for the benchmark's runs,
            which lack it, the folds' fit time ``extra.fit_wall_time_s``), mean over runs.
        user_cpu_s: user CPU seconds summed over a run's folds (``extra.fold_cost``, feature
            extraction not counted), mean over runs.
        peak_rss_mib: the largest ``peak_rss_mib`` of any fold of any run (MiB).
        A cost field is ``None`` when some run's ``metrics.json`` does not record it.
    """

    system: str
    corpus: str
    runs: tuple[Path, ...]
    seeds: tuple[int, ...]
    ua: Summary
    wa: Summary
    macro_f1: Summary
    fold_ua: Summary
    best_epoch: float | None
    epochs_run: float | None
    wall_s: float | None
    user_cpu_s: float | None
    peak_rss_mib: float | None

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-safe); ``runs`` as strings."""
        out = asdict(self)
        out["runs"] = [str(p) for p in self.runs]
        out["seeds"] = list(self.seeds)
        return out


def results_table(runs: Sequence[str | Path | Run], *, per_run: bool = False) -> list[TableRow]:
    """Group runs by identity and summarise each group over its seeds.

    Args:
        runs: run folders (or :class:`Run` objects).
        per_run: one row per run instead of one per identity.

    Returns:
        One :class:`TableRow` per identity (or run), in order of first appearance.

    Raises:
        ConfigError: no runs, an incomplete run folder, or two runs of one identity with the
            same seed (repeats are not seeds: e.g. the two heads a benchmark scores from one
            training share a config; table them separately).
    """
    read = _read_all(runs)
    if not read:
        raise ConfigError("table: no runs given")
    groups = [[run] for run in read] if per_run else group_by_identity(read)
    for group in groups:
        seen: dict[int, Path] = {}
        for run in group:
            if run.seed in seen:
                raise ConfigError(
                    f"table: {seen[run.seed]} and {run.path} have the same config and seed {run.seed}; "
                    "they are repeats, not seeds of one system (table them separately)"
                )
            seen[run.seed] = run.path
    return [_row(label, group) for label, group in zip(_labels(groups, per_run), groups)]


def group_by_identity(runs: Sequence[Run]) -> list[list[Run]]:
    """Runs grouped by :attr:`Run.identity`, groups and runs in order of first appearance."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(json.dumps(run.identity, sort_keys=True, default=str), []).append(run)
    return list(groups.values())


def _row(label: str, group: list[Run]) -> TableRow:
    fits = [fit for run in group for fit in _fits(run)]
    costs = [_cost(run) for run in group]
    walls, cpus, peaks = zip(*costs)
    return TableRow(
        system=label,
        corpus=corpus_title(group[0].config),
        runs=tuple(run.path for run in group),
        seeds=tuple(sorted(run.seed for run in group)),
        ua=Summary.of([run.metrics["ua"] for run in group]),
        wa=Summary.of([run.metrics["wa"] for run in group]),
        macro_f1=Summary.of([run.metrics["macro_f1"] for run in group]),
        fold_ua=Summary.of([fold["ua"] for run in group for fold in run.metrics["folds"]]),
        best_epoch=statistics.fmean(f["best_epoch"] for f in fits) if fits else None,
        epochs_run=statistics.fmean(f["epochs_run"] for f in fits) if fits else None,
        wall_s=None if None in walls else statistics.fmean(walls),
        user_cpu_s=None if None in cpus else statistics.fmean(cpus),
        peak_rss_mib=None if None in peaks else max(peaks),
    )


def _fits(run: Run) -> list[dict[str, Any]]:
    """Per-fold training records with ``best_epoch`` and ``epochs_run`` (networks only)."""
    fit = (run.metrics.get("extra") or {}).get("fit") or {}
    # serkit experiment stores fit[fold] = {best_epoch, ...}; models with a network inside
    # (blstm_fcn_svm) nest it under "network".
    records = [info.get("network", info) if isinstance(info, dict) else {} for info in fit.values()]
    return [r for r in records if _is_number(r.get("best_epoch")) and _is_number(r.get("epochs_run"))]


def _cost(run: Run) -> tuple[float | None, float | None, float | None]:
    extra = run.metrics.get("extra") or {}
    wall = (extra.get("wall_time_s") or {}).get("total")
    if not _is_number(wall):  # benchmarks/bench_blstm_fcn.py records the folds' fit time only
        wall = extra.get("fit_wall_time_s")
    folds = list((extra.get("fold_cost") or {}).values())

    def over_folds(key: str, combine: Any) -> float | None:
        values = [f.get(key) for f in folds]
        return float(combine(values)) if values and all(_is_number(v) for v in values) else None

    return (float(wall) if _is_number(wall) else None), over_folds("user_cpu_s", sum), over_folds("peak_rss_mib", max)


def _labels(groups: list[list[Run]], per_run: bool) -> list[str]:
    """Row names: the recipe names, then the identity keys that tell same-named rows apart."""
    names = [" / ".join(dict.fromkeys(str(run.config.get("name", "?")) for run in group)) for group in groups]
    if per_run:
        return [f"{name} ({group[0].path.name}, seed {group[0].seed})" for name, group in zip(names, groups)]
    flat = [_flatten(group[0].identity) for group in groups]
    labels = []
    for i, name in enumerate(names):
        same = [j for j, other in enumerate(names) if other == name]
        if len(same) == 1:
            labels.append(name)
            continue
        keys = sorted({k for j in same for k in flat[j]})
        differing = [k for k in keys if len({json.dumps(flat[j].get(k), default=str) for j in same}) > 1]
        labels.append(f"{name} [" + "; ".join(f"{k}={_inline(flat[i].get(k))}" for k in differing[:4]) + "]")
    return labels


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def render_table(rows: Sequence[TableRow], extra: Mapping[str, Sequence[str]] | None = None) -> str:
    """A Markdown table of :func:`results_table` rows (UA, WA, macro-F1 as fractions, 3 decimals);
    ``extra`` adds columns, header -> one cell per row (e.g. a sweep's comparison with its baseline)."""
    extra = dict(extra or {})
    header = ["system", "corpus", "seeds", "UA", "WA", "macro-F1", "fold UA", *extra, "best / run epochs",
              "wall per run", "user CPU s per run", "peak RSS GiB"]
    lines = [
        (
            row.system,
            row.corpus,
            f"{len(row.seeds)}: " + ", ".join(str(s) for s in row.seeds),
            *(_summary_text(x) for x in (row.ua, row.wa, row.macro_f1, row.fold_ua)),
            *(cells[i] for cells in extra.values()),
            "–" if row.best_epoch is None else f"{row.best_epoch:.1f} / {row.epochs_run:.1f}",
            "–" if row.wall_s is None else _clock(row.wall_s),
            "–" if row.user_cpu_s is None else f"{row.user_cpu_s:.0f}",
            "–" if row.peak_rss_mib is None else f"{row.peak_rss_mib / 1024:.2f}",
        )
        for i, row in enumerate(rows)
    ]
    note = (
        "\nUA, WA, macro-F1: pooled per run, mean ± sample std over the seeds; fold UA: mean ± sample "
        "std over every fold of every seed. Cost from metrics.json: wall = whole run, user CPU = "
        "summed over the folds (feature extraction not counted), peak RSS = largest fold.\n"
    )
    return _markdown(header, lines) + note


def _summary_text(summary: Summary) -> str:
    return f"{summary.mean:.3f}" + ("" if summary.std is None else f" ± {summary.std:.3f}")


def _clock(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


# --------------------------------------------------------------------------- helpers


def _read_all(runs: Iterable[str | Path | Run]) -> list[Run]:
    return [item if isinstance(item, Run) else read_run(item) for item in runs]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _inline(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str) if isinstance(value, (Mapping, list)) else str(value)


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |\n"

    return line(header) + "|" + "|".join("---" for _ in header) + "|\n" + "".join(line(r) for r in rows)
