"""Sweeps: runs over recipes × corpora × ``--set`` values × seeds, ending in one table.

A sweep file is YAML::

    name: msir_table1              # optional: names the closing table (default: the file's stem)
    out: results/msir              # folder of the run folders (default results/<name>)
    recipes:                       # recipe files, relative to this file; label: names the runs
      - ../recipes/reduced/msir_ce.yaml
      - {recipe: ../recipes/reduced/msir_fl.yaml, label: msir-fl}
    corpora:                       # optional (default: each recipe's own corpus); roots as in a
      - {name: emodb, root: data/emodb}                 # recipe, ${VAR:-default} expanded
      - {name: emovo, root: "${EMOVO_ROOT:-../shared/corpora/emovo}"}
    seeds: [0, 1, 2]               # optional (default: each recipe's seed)
    set:                           # optional grid: dotted recipe key -> the values to try
      normalisation: [global, speaker]
    baseline: msir_ce              # optional: the label every system is compared with, per fold
    cluster: tcp://scheduler:8786  # optional: as a recipe's cluster key (serkit.cluster); the
                                   # recipes' own cluster keys are not used in a sweep

Every combination is one run of :func:`serkit.experiment.run_experiment` into
``<out>/<corpus>-<label>[-<key=value,...>]-s<seed>`` (the label defaults to the recipe's name), so
a sweep is the loop a shell script would write, with its bookkeeping done once:

- a run whose folder is complete is skipped (after checking that its ``config.yaml`` is this
  run's recipe: another one is an error, never silently reused); one with the folds of an
  interrupted run (``<run>.folds/``) resumes from them; the others start. A run that fails is
  reported and the sweep goes on with the rest;
- two sweep processes can share a machine: a run holds its folder's lock (``<run>.lock``,
  :func:`serkit.io.output_lock`) while it runs, and the other process skips it;
- the runs that read the same corpus, features and cache share one prepared dataset (features
  are extracted once for all seeds and models). Without a cluster the runs go one after another;
  with one, several runs are in flight together and their folds are tasks of the same cluster;
- once every run of the sweep is complete, :func:`sweep_table` makes one table: a row per
  (label, corpus, ``set`` values) with UA, WA and macro-F1 as mean ± std over the seeds
  (:func:`serkit.evaluation.compare.results_table`), and, with a ``baseline``, each row's paired
  per-fold comparison with the baseline's row on the same corpus and ``set`` values
  (:func:`serkit.evaluation.compare.compare_runs`). ``baseline: {recipe: LABEL, set: {key:
  value}}`` pins some ``set`` values of the baseline instead. It is written to
  ``<out>/<name>.md`` and ``<out>/<name>.json`` only then, so a table never stands for a sweep
  that is not finished.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import itertools
import json
import logging
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from threading import Lock
from typing import Any

import yaml

from serkit.cluster import LOCAL, open_runner
from serkit.errors import ConfigError, OutputError, SerkitError
from serkit.evaluation.compare import (
    compare_runs,
    read_run,
    render_table,
    results_table,
    run_identity,
)
from serkit.evaluation.report import plain_data
from serkit.experiment import Dataset, check_recipe, prepare_dataset, run_experiment
from serkit.io import atomic_write_text, output_lock
from serkit.recipe import corpus_title, read_recipe_mapping, resolve_recipe

log = logging.getLogger(__name__)

KEYS = {"name", "out", "recipes", "corpora", "seeds", "set", "baseline", "cluster"}
#: Most runs a cluster sweep keeps in flight per worker thread (their folds queue on the cluster).
RUNS_PER_THREAD = 2


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep.

    Attributes:
        name: the run folder's name. label: the recipe's label. corpus: the corpus name.
        variant: ``(key, value)`` of each ``set`` grid key, in the file's order.
        recipe: the resolved recipe (seed and corpus set). out_dir: the run folder.
    """

    name: str
    label: str
    corpus: str
    variant: tuple[tuple[str, Any], ...]
    recipe: dict[str, Any]
    out_dir: Path

    @property
    def cell(self) -> str:
        """The table row the run belongs to: label, corpus and ``set`` values (all but the seed)."""
        return json.dumps([self.label, self.corpus, [list(kv) for kv in self.variant]], default=str)


@dataclass
class Sweep:
    """A sweep file, resolved: every run, in grid order (recipes, corpora, ``set`` values, seeds)."""

    name: str
    path: Path
    out: Path
    runs: list[SweepRun]
    baseline: str | None = None
    baseline_set: dict[str, Any] = dataclasses.field(default_factory=dict)
    cluster: str | None = None


@dataclass(frozen=True)
class RunOutcome:
    """What :func:`run_sweep` did with one run: ``ran``, ``complete`` (skipped), ``failed`` or ``busy``
    (another process holds its lock), with a message for the last two."""

    run: SweepRun
    status: str
    message: str = ""


@dataclass
class SweepReport:
    """:func:`run_sweep`'s result: an outcome per selected run; the table when the sweep is complete.

    Attributes:
        outcomes: per selected run, in the order they were started.
        missing: names of the sweep's runs without a complete folder of their own recipe.
        table: the closing Markdown table, or ``None`` while runs are missing.
        files: ``(<name>.md, <name>.json)`` written, or ``None``.
    """

    outcomes: list[RunOutcome]
    missing: list[str]
    table: str | None = None
    files: tuple[Path, Path] | None = None

    @property
    def failed(self) -> list[RunOutcome]:
        """The runs that failed."""
        return [o for o in self.outcomes if o.status == "failed"]


# --------------------------------------------------------------------------- reading


def load_sweep(path: str | Path, *, overrides: Sequence[str] = ()) -> Sweep:
    """Read a sweep file and resolve every run's recipe (module docstring); nothing runs.

    Args:
        path: the sweep YAML.
        overrides: ``dotted.key=value`` applied to every run after the grid's values.

    Raises:
        ConfigError: naming the file: unreadable YAML, an unknown or malformed key, a recipe that
            does not resolve (or whose features or model are invalid), a corpus root that is
            not a folder, two runs with one name, or a baseline that is not one of the labels.
    """
    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read sweep file ({exc})") from exc
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: a sweep file must be a YAML mapping")
    unknown = sorted(set(spec) - KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; known: {sorted(KEYS)}")
    name = str(spec.get("name") or path.stem)
    recipes = _recipes(path, spec.get("recipes"))
    corpora = _list(path, spec, "corpora", [None])
    seeds = _list(path, spec, "seeds", [None])
    grid = spec.get("set") or {}
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise ConfigError(f"{path}: set must map dotted keys to non-empty lists of values, got {grid!r}")
    out = Path(_expand(str(spec.get("out") or f"results/{name}")))
    runs = []
    for (label, recipe_path), corpus, values, seed in itertools.product(recipes, corpora, itertools.product(*grid.values()), seeds):
        variant = tuple(zip(grid, values))
        try:
            recipe = _resolve(recipe_path, corpus, seed, variant, overrides)
        except ConfigError as exc:
            raise ConfigError(f"{path}: recipe {recipe_path}: {exc}") from exc
        corpus_name = corpus_title(recipe)
        run_name = f"{corpus_name}-{label}{_variant_text(variant)}-s{recipe['seed']}"
        runs.append(SweepRun(run_name, label, corpus_name, variant, recipe, out / run_name))
    twice = [n for n, count in Counter(run.name for run in runs).items() if count > 1]
    if twice:
        raise ConfigError(f"{path}: several runs would be named {twice[:3]}; give the recipes distinct labels")
    baseline, pinned = _baseline(path, spec.get("baseline"), [label for label, _ in recipes], grid)
    _check_components(path, runs)
    return Sweep(name, path, out, runs, baseline, pinned, spec.get("cluster"))


def _recipes(path: Path, entries: Any) -> list[tuple[str, Path]]:
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: recipes must be a non-empty list of recipe files")
    found = []
    for entry in entries:
        file, label = (entry.get("recipe"), entry.get("label")) if isinstance(entry, dict) else (entry, None)
        if not isinstance(file, str) or (label is not None and not isinstance(label, str)):
            raise ConfigError(f"{path}: a recipes entry is a file or {{recipe: FILE, label: NAME}}, got {entry!r}")
        recipe_path = path.parent / file
        if not recipe_path.is_file():
            raise ConfigError(f"{path}: recipe {file!r} is not a file (looked for {recipe_path})")
        found.append((label or str(read_recipe_mapping(recipe_path).get("name") or recipe_path.stem), recipe_path))
    labels = [label for label, _ in found]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"{path}: recipe labels must differ, got {labels}")
    return found


def _list(path: Path, spec: Mapping[str, Any], key: str, default: list) -> list:
    value = spec.get(key)
    if value is None:
        return default
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{path}: {key} must be a non-empty list, got {value!r}")
    return value


def _resolve(recipe_path: Path, corpus: Any, seed: Any, variant: tuple, overrides: Sequence[str]) -> dict[str, Any]:
    raw = read_recipe_mapping(recipe_path)
    if corpus is not None:
        if not isinstance(corpus, dict) or not isinstance(corpus.get("name"), str) or not corpus.get("root"):
            raise ConfigError(f"a corpora entry needs {{name: NAME, root: FOLDER}}, got {corpus!r}")
        raw["corpus"] = {"name": corpus["name"], "root": _expand(str(corpus["root"])), "options": corpus.get("options") or {}}
        raw["corpora"] = None  # the sweep's corpus replaces a pooled one too
    if seed is not None:
        raw["seed"] = seed
    grid = [f"{key}={json.dumps(value)}" for key, value in variant]  # JSON is YAML
    recipe = resolve_recipe(raw, name=recipe_path.stem, overrides=[*grid, *overrides])
    for spec in recipe["corpora"] or [recipe["corpus"]]:
        if not Path(str(spec["root"])).is_dir():
            raise ConfigError(f"corpus {spec['name']} root {spec['root']!r} is not a folder")
    return recipe


def _check_components(path: Path, runs: list[SweepRun]) -> None:
    """:func:`serkit.experiment.check_recipe` on every distinct recipe (seeds aside), so that a
    misspelt option fails before any work."""
    seen: set[str] = set()
    for run in runs:
        key = json.dumps({**run.recipe, "seed": None}, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            try:
                check_recipe(run.recipe)
            except ConfigError as exc:
                raise ConfigError(f"{path}: run {run.name}: {exc}") from exc


def _baseline(path: Path, value: Any, labels: list[str], grid: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    if value is None:
        return None, {}
    label, pinned = (value.get("recipe"), value.get("set") or {}) if isinstance(value, dict) else (value, {})
    if label not in labels:
        raise ConfigError(f"{path}: baseline {label!r} is not a recipe label of the sweep ({', '.join(labels)})")
    if not isinstance(pinned, dict) or any(k not in grid or v not in grid[k] for k, v in pinned.items()):
        raise ConfigError(f"{path}: baseline set {pinned!r} must pick values of the set grid")
    return label, dict(pinned)


def _variant_text(variant: tuple[tuple[str, Any], ...]) -> str:
    if not variant:
        return ""
    shown = (value if isinstance(value, str) else json.dumps(value, separators=(",", ":")) for _, value in variant)
    text = ",".join(f"{key}={value}" for (key, _), value in zip(variant, shown))
    return "-" + re.sub(r"[^A-Za-z0-9._=,+-]", "_", text)


def _expand(text: str) -> str:
    """``${VAR}`` and ``${VAR:-default}`` replaced from the environment."""
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: os.environ.get(m[1]) or (m[2] or ""), text)


# --------------------------------------------------------------------------- running


def run_sweep(
    sweep: Sweep, *, only: Sequence[str] = (), cluster: str | None = None, runner: Any = None, progress: bool = True
) -> SweepReport:
    """Run the sweep's runs that are not complete, then make its table if every run is.

    Args:
        sweep: :func:`load_sweep`'s result.
        only: run these runs only (names or shell patterns, e.g. ``emodb-*-s0``); default all.
        cluster: the scheduler address, instead of the sweep's ``cluster`` (then ``SERKIT_CLUSTER``).
        runner: a connected :class:`serkit.cluster.DaskRunner` to use instead.
        progress: progress bars (local runs only).

    Returns:
        What happened to each run, and the table (also written to ``<out>/<name>.md`` and
        ``.json``) when the whole sweep is complete.

    Raises:
        ConfigError: a pattern of ``only`` matches no run.
        ClusterError: the cluster cannot be reached, before any run starts.
        A failing run does not raise: it is reported in the outcomes.
    """
    selected = [run for run in sweep.runs if not only or any(fnmatch.fnmatchcase(run.name, p) for p in only)]
    unmatched = [p for p in only if not any(fnmatch.fnmatchcase(run.name, p) for run in sweep.runs)]
    if unmatched:
        raise ConfigError(f"{sweep.path}: --only {unmatched} matches no run (runs are named like {sweep.runs[0].name})")
    # runs reading the same dataset next to each other, so that one is held at a time
    first: dict[str, int] = {}
    selected.sort(key=lambda run: first.setdefault(_dataset_key(run.recipe), len(first)))
    if runner is None:
        with open_runner({"cluster": cluster or sweep.cluster}) as opened:
            outcomes = _execute(selected, opened, progress)
    else:
        outcomes = _execute(selected, runner, progress)
    missing = [run.name for run in sweep.runs if not _holds_its_result(run)]
    report = SweepReport(outcomes, missing)
    if not missing:
        report.table, rows = sweep_table(sweep)
        sweep.out.mkdir(parents=True, exist_ok=True)
        md, js = sweep.out / f"{sweep.name}.md", sweep.out / f"{sweep.name}.json"
        atomic_write_text(js, json.dumps({"sweep": str(sweep.path), "rows": rows}, indent=2, allow_nan=False) + "\n")
        atomic_write_text(md, f"# Sweep {sweep.name}\n\n{report.table}")
        report.files = (md, js)
    return report


def _execute(runs: list[SweepRun], runner: Any, progress: bool) -> list[RunOutcome]:
    datasets = _Datasets(runs, runner, progress and runner is None)
    if runner is None:
        return [_run_one(run, datasets, None, progress) for run in runs]
    threads = max(1, min(len(runs), RUNS_PER_THREAD * runner.threads(), 32))
    with ThreadPoolExecutor(threads, thread_name_prefix="serkit-sweep") as pool:
        futures = [pool.submit(_run_one, run, datasets, runner, False) for run in runs]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _run_one(run: SweepRun, datasets: _Datasets, runner: Any, progress: bool) -> RunOutcome:
    """Skip, resume or start one run; a failure is an outcome, not an exception."""
    try:
        with ExitStack() as stack:
            try:
                stack.enter_context(output_lock(run.out_dir))
            except OutputError as exc:
                if isinstance(exc.__cause__, BlockingIOError):  # another process holds the lock
                    return RunOutcome(run, "busy", str(exc))
                raise
            if _complete(run):
                return RunOutcome(run, "complete")
            log.info("sweep: starting %s", run.name)
            data = datasets.get(run.recipe)
            # the sweep decides where its runs go: without a runner, here (whatever the recipe says)
            recipe = run.recipe if runner is not None else {**run.recipe, "cluster": LOCAL}
            run_experiment(recipe, run.out_dir, progress=progress, resume=True, runner=runner, dataset=data)
            log.info("sweep: %s done", run.name)
            return RunOutcome(run, "ran")
    except SerkitError as exc:
        log.error("sweep: %s failed: %s", run.name, exc)
        return RunOutcome(run, "failed", str(exc))
    except Exception as exc:  # a bug or a crash in one run must not lose the others
        log.exception("sweep: %s failed", run.name)
        return RunOutcome(run, "failed", f"{type(exc).__name__}: {exc}")
    finally:
        datasets.done(run.recipe)


def _complete(run: SweepRun) -> bool:
    """Whether the run folder holds this run's complete result: the same system
    (:func:`~serkit.evaluation.compare.run_identity`) and seed.

    Raises:
        ConfigError: it holds a complete run of another recipe or seed, or is damaged.
    """
    if not (run.out_dir / "metrics.json").is_file():
        return False
    found = read_run(run.out_dir)
    wanted = yaml.safe_load(yaml.safe_dump(plain_data(run.recipe, "recipe")))  # as config.yaml reads back
    mine, theirs = run_identity(wanted), found.identity
    differ = sorted(k for k in {*mine, *theirs} if mine.get(k) != theirs.get(k)) + (["seed"] if found.seed != wanted["seed"] else [])
    if differ:
        raise ConfigError(f"{run.out_dir} holds a run of another recipe (differs in {differ}); delete it or change the sweep's out")
    return True


def _holds_its_result(run: SweepRun) -> bool:
    """:func:`_complete`, with a damaged folder or another recipe's run counted as missing."""
    try:
        return _complete(run)
    except ConfigError:
        return False


def _dataset_key(recipe: Mapping[str, Any]) -> str:
    parts = [recipe.get(key) for key in ("corpus", "corpora", "labels", "features", "cache_dir")]
    return json.dumps(parts, sort_keys=True, default=str)


class _Datasets:
    """Prepared datasets shared by the runs reading the same corpus, features and cache, each
    prepared by the first run that needs it and dropped after the last (thread-safe)."""

    def __init__(self, runs: Iterable[SweepRun], runner: Any, progress: bool):
        self._left = Counter(_dataset_key(run.recipe) for run in runs)
        self._held: dict[str, Dataset] = {}
        self._locks: defaultdict[str, Lock] = defaultdict(Lock)
        self._lock = Lock()
        self._runner, self._progress = runner, progress

    def get(self, recipe: Mapping[str, Any]) -> Dataset:
        key = _dataset_key(recipe)
        with self._lock:
            lock = self._locks[key]
        with lock:
            if key not in self._held:
                self._held[key] = prepare_dataset(dict(recipe), progress=self._progress, runner=self._runner)
            return self._held[key]

    def done(self, recipe: Mapping[str, Any]) -> None:
        key = _dataset_key(recipe)
        with self._lock:
            self._left[key] -= 1
            data = self._held.pop(key, None) if self._left[key] == 0 else None
        if data is not None and self._runner is not None:
            self._runner.release(data)


# --------------------------------------------------------------------------- the table


def sweep_table(sweep: Sweep) -> tuple[str, list[dict[str, Any]]]:
    """The closing table of a complete sweep (module docstring) as Markdown, and its rows as plain data.

    Raises:
        ConfigError: a run folder is missing or incomplete.
    """
    cells: dict[str, list[SweepRun]] = {}
    for run in sweep.runs:
        cells.setdefault(run.cell, []).append(run)
    rows, data, versus = [], [], defaultdict(list)
    column = f"vs {sweep.baseline}: fold UA Δ ± SE (above/equal/below, Wilcoxon p)"
    for cell, runs in cells.items():
        [row] = results_table([run.out_dir for run in runs])
        first = runs[0]
        label = first.label + (f" [{'; '.join(f'{k}={v}' for k, v in first.variant)}]" if first.variant else "")
        rows.append(dataclasses.replace(row, system=label))
        entry = {**rows[-1].to_dict(), "label": first.label, "set": dict(first.variant)}
        if sweep.baseline is not None:
            base = _baseline_cell(sweep, first)
            if base == cell:
                versus[column].append("baseline")
                entry["vs_baseline"] = "baseline"
            else:
                comparison = _compare(runs, cells.get(base, []))
                entry["vs_baseline"] = comparison if isinstance(comparison, str) else comparison.to_dict()
                versus[column].append(_comparison_text(comparison))
        data.append(entry)
    return render_table(rows, versus), data


def _baseline_cell(sweep: Sweep, run: SweepRun) -> str:
    variant = tuple((key, sweep.baseline_set.get(key, value)) for key, value in run.variant)
    return json.dumps([sweep.baseline, run.corpus, [list(kv) for kv in variant]], default=str)


def _compare(runs: list[SweepRun], baseline: list[SweepRun]) -> Any:
    try:
        return compare_runs([run.out_dir for run in runs], [run.out_dir for run in baseline])
    except ConfigError as exc:
        return f"n/a ({exc})"


def _comparison_text(comparison: Any) -> str:
    """Paired fold UA difference ± standard error, above/equal/below and the Wilcoxon p, in one cell."""
    if isinstance(comparison, str):
        return comparison
    p = "n/a" if comparison.wilcoxon_p is None else f"{comparison.wilcoxon_p:.3f}"
    return (f"{comparison.mean_difference:+.3f} ± {comparison.standard_error:.3f} "
            f"({comparison.above}/{comparison.equal}/{comparison.below}, p = {p})")
