"""The experiment loop: corpus -> features -> folds -> normalise -> fit -> predict -> report.

:func:`run_experiment` evaluates a recipe (:mod:`serkit.recipe`) on the folds of its protocol and
writes a run folder (:func:`serkit.evaluation.report.write_run`). :func:`train_bundle` fits the
same recipe on every utterance of the corpus and saves a model bundle (:mod:`serkit.bundle`).
Both drop utterances whose audio is unusable and report them; neither writes anything until the
work is complete. While :func:`run_experiment` works, each finished fold is kept in
``<run folder>.folds/`` (:class:`FoldCheckpoints`), so an interrupted run can be continued with
``resume=True`` (``serkit experiment --resume``) instead of starting again; the folder is deleted
once the run folder is written.

Where the work runs: on this machine (extraction in ``n_jobs`` processes, folds one after
another), or, when the recipe's ``cluster`` or ``SERKIT_CLUSTER`` names a Dask scheduler, as
tasks on that cluster (:mod:`serkit.cluster`): extraction over files, training over folds. The
results are the same; ``metrics.json["extra"]["executor"]`` says where a cluster run ran.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import resource
import shutil
import time
import zipfile
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import serkit
from serkit.adaptation import standardise
from serkit.augment import Copies, add_copies, compute_copies, speeds
from serkit.bundle import save_bundle
from serkit.cluster import open_runner
from serkit.corpora import get_corpus
from serkit.corpora.pool import load_pooled
from serkit.corpora.vocabulary import select_labels
from serkit.derived.base import FittedFeature
from serkit.errors import ConfigError
from serkit.evaluation.protocols import Fold, check_protocol, make_folds
from serkit.evaluation.report import plain_data, write_run
from serkit.features.data import FeatureData, Inputs, take_rows
from serkit.features.normalise import Normaliser, fit_normaliser
from serkit.io import atomic_write_bytes, check_output_dir, output_lock
from serkit.models.base import get_model
from serkit.pipeline import FeaturePlan
from serkit.recipe import corpus_specs, corpus_title
from serkit.trimming import trim_encoder_layers

log = logging.getLogger(__name__)


@dataclass
class Dataset:
    """A corpus table and its features, restricted to the utterances every feature could use.

    Attributes:
        table: corpus table (columns of :data:`serkit.corpora.base.COLUMNS`, and ``corpus`` when
            the recipe pools ``corpora``), row ``i`` is utterance ``i`` of every feature.
        plan: the recipe's feature graph (:class:`~serkit.pipeline.FeaturePlan`).
        features: the plan's stored features (``(n, dims)`` matrix or list of ``(frames, dims)``
            arrays per key), in table order; fitted derived features are made per fold from them.
        labels: the class order (the recipe's ``labels``, else the corpus's label set, in
            vocabulary order when pooled), restricted to labels present.
        y: ``(n,)`` int class index of every row.
        failures: ``{"utterance_id", "path", "feature", "error"}`` records of dropped utterances.
        copies: the speed-perturbed copies of the rows the recipe's ``augment`` asks for
            (:mod:`serkit.augment`), added to the training rows of each fold.
    """

    table: pd.DataFrame
    plan: FeaturePlan
    features: dict[str, FeatureData]
    labels: list[str]
    y: np.ndarray
    failures: list[dict[str, str]]
    copies: list[Copies] = field(default_factory=list)

    @property
    def speakers(self) -> np.ndarray:
        """``(n,)`` speaker of every row."""
        return self.table["speaker"].to_numpy(dtype=str)

    def fold_inputs(
        self, train: np.ndarray, seed: int, valid: np.ndarray | None = None
    ) -> tuple[dict[str, FeatureData], dict[str, FittedFeature]]:
        """The model's inputs for every row, fitted derived features learnt on rows ``train`` only
        (and stopped early on rows ``valid``, training speakers the protocol held out, if given)."""
        return self.plan.fit_fold(
            self.features, train, self.y, labels=self.labels, groups=self.speakers, seed=seed, valid=valid
        )


def check_recipe(recipe: dict[str, Any]) -> FeaturePlan:
    """Build every component a resolved recipe names, so that a bad name, option or value is an
    error before any audio is read: the corpus adapters (by name), the feature graph (every
    extractor and derived feature with its config), the model with its config (a score fusion's
    members too), and the protocol's name and options.

    Returns:
        The recipe's :class:`~serkit.pipeline.FeaturePlan`.

    Raises:
        ConfigError: the first component that cannot be built; the message names the recipe
            key (``corpus``, ``features``, ``model``, ``protocol``) and the option.
    """
    steps = (
        ("corpus", lambda: [get_corpus(spec["name"]) for spec in corpus_specs(recipe)]),
        ("features", lambda: FeaturePlan(recipe["features"])),
        ("model", lambda: get_model(recipe["model"]["name"], recipe["model"]["config"])),
        ("protocol", lambda: check_protocol(recipe["protocol"])),
        ("augment", lambda: speeds(recipe, built["features"])),
    )
    built = {}
    for key, build in steps:
        try:
            built[key] = build()
        except ConfigError as exc:
            raise ConfigError(f"recipe: {key}: {exc}") from exc
    return built["features"]


def prepare_dataset(recipe: dict[str, Any], *, progress: bool = True, runner: Any = None) -> Dataset:
    """Load the recipe's corpus (or pool its ``corpora``), keep the classes of its ``labels``, and
    compute the features that do not depend on a fold.

    Every component of the recipe is checked first (:func:`check_recipe`). Extractors and fixed
    derived features run here (cached when ``cache_dir`` is set), or as the tasks of ``runner``
    (:class:`serkit.cluster.DaskRunner`) when one is given; utterances any of them could not
    process are dropped and listed in ``failures``.

    Raises:
        ConfigError, CorpusError: bad recipe, ``labels`` or corpus folder.
        FeatureError: every utterance failed.
    """
    plan = check_recipe(recipe)
    if recipe.get("corpora") is not None:
        table, order = load_pooled(recipe["corpora"])
    else:
        corpus_spec = recipe["corpus"]
        adapter = get_corpus(corpus_spec["name"])
        table = adapter.load(corpus_spec["root"], **(corpus_spec.get("options") or {}))
        order = list(adapter.labels)
    if recipe.get("labels") is not None:
        table, order = select_labels(table, recipe["labels"])
    done = plan.materialise(
        table, cache_dir=recipe.get("cache_dir"), n_jobs=recipe.get("n_jobs", -1), progress=progress, runner=runner
    )
    by_id = table.set_index("utterance_id")["path"]
    failures = [{"utterance_id": f["utterance_id"], "path": str(by_id[f["utterance_id"]]), "feature": f["feature"],
                 "error": f["error"]} for f in done.failures]  # fmt: skip
    table = table.set_index("utterance_id").loc[done.ids].reset_index()
    present = set(table["label"])
    labels = [lab for lab in order if lab in present] or sorted(present)
    y = table["label"].map({lab: i for i, lab in enumerate(labels)}).to_numpy(dtype=int)
    copies = compute_copies(recipe, plan, table, progress=progress, runner=runner)
    return Dataset(table, plan, done.features, labels, y, failures, copies)


def fit_normalisers(mode: str, inputs: Inputs, speakers: np.ndarray) -> dict[str, Normaliser]:
    """One normaliser per feature key, fitted on training rows."""
    return {key: fit_normaliser(mode, data, speakers) for key, data in inputs.items()}


def normalise(normalisers: dict[str, Normaliser], inputs: Inputs, speakers: np.ndarray) -> dict[str, FeatureData]:
    """Apply fitted normalisers key by key."""
    return {key: normalisers[key].transform(data, speakers) for key, data in inputs.items()}


def run_fold(recipe: dict[str, Any], data: Dataset, fold: Fold) -> tuple[np.ndarray, dict[str, Any]]:
    """Fit on ``fold.train`` and return test probabilities ``(n_test, K)`` and the fit info.

    Fitted derived features learn from the training rows only. Normalisation statistics come
    from the training rows (``global``) or from each speaker's own rows (``speaker``); with
    ``adapt`` the test rows are standardised with their own statistics instead
    (:mod:`serkit.adaptation`); test labels are never used. A validation split of the protocol (``fold.valid``, training speakers
    only) goes to the model for early stopping.
    """
    speakers = data.speakers
    inputs, fitted = data.fold_inputs(fold.train, recipe["seed"], fold.valid)
    rows = {name: {key: take_rows(x, index) for key, x in inputs.items()} for name, index in
            (("train", fold.train), ("test", fold.test))}  # fmt: skip
    # the training rows, then their speed-perturbed copies (augment); never a test speaker's
    x_train, y_train, groups, norm_groups = add_copies(rows["train"], fold.train, data.y, speakers, data.copies)
    normalisers = fit_normalisers(recipe["normalisation"], x_train, norm_groups)
    x_train = normalise(normalisers, x_train, norm_groups)
    # adapt: the training statistics (none), or the test rows' own (the whole fold, or each
    # speaker), never their labels
    x_test = standardise(normalisers, rows["test"], speakers[fold.test], recipe.get("adapt", "none"), min_windows=2).inputs
    valid = None
    if fold.valid is not None:
        x_valid = {key: take_rows(x, fold.valid) for key, x in inputs.items()}
        valid = (normalise(normalisers, x_valid, speakers[fold.valid]), data.y[fold.valid])
    model = get_model(recipe["model"]["name"], recipe["model"]["config"])
    model.fit(
        x_train, y_train, labels=data.labels, groups=groups, seed=recipe["seed"], valid=valid, layouts=data.plan.layouts,
    )  # fmt: skip
    info = model.fit_info()
    if fitted:
        info = {**info, "derived": {key: feature.fit_info() for key, feature in fitted.items()}}
    return model.predict_proba(x_test), info


# Recipe keys that change where features are cached and where the work runs, never a result.
_NOT_RESULT_KEYS = ("cache_dir", "n_jobs", "cluster")


@dataclass
class FoldResult:
    """What one fold of :func:`run_experiment` produced.

    Attributes:
        proba: ``(n_test, K)`` test probabilities, rows in ``fold.test`` order.
        info: the model's :meth:`fit_info` (plain data).
        cost: ``wall_s`` (seconds), ``user_cpu_s`` and ``sys_cpu_s`` (user and kernel CPU
            seconds of this process) and ``peak_rss_mib`` (the process's peak resident memory so
            far, MiB) of the fold.
    """

    proba: np.ndarray
    info: dict[str, Any]
    cost: dict[str, float]


class FoldCheckpoints:
    """Finished folds of one run, one ``<fold>.npz`` each in ``<out_dir>.folds/``.

    A checkpoint records the recipe's digest (SHA-256 of the recipe without ``cache_dir``,
    ``n_jobs`` and ``cluster``) and the fold's test utterance IDs, so a fold is only reused by the
    same recipe on the same folds. Each file is written atomically: a fold is either complete or
    absent.
    """

    def __init__(self, out_dir: str | Path, recipe: dict[str, Any]):
        out_dir = Path(out_dir)
        self.dir = out_dir.with_name(out_dir.name + ".folds")
        kept = {key: value for key, value in recipe.items() if key not in _NOT_RESULT_KEYS}
        self.digest = hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()

    def finished(self) -> list[str]:
        """Names of the folds kept so far."""
        return sorted(path.stem for path in self.dir.glob("*.npz")) if self.dir.is_dir() else []

    def save(self, fold: str, test_ids: list[str], result: FoldResult) -> None:
        meta = {"recipe_sha256": self.digest, "fold": fold, "test_ids": test_ids, "info": result.info, "cost": result.cost}
        buffer = io.BytesIO()
        np.savez(buffer, proba=result.proba, meta=np.array(json.dumps(plain_data(meta, "fold checkpoint"))))
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.dir / f"{fold}.npz", buffer.getvalue())

    def load(self, fold: str, test_ids: list[str]) -> FoldResult | None:
        """The kept result of ``fold``, or None if it has none.

        Raises:
            ConfigError: the checkpoint is unreadable, was made by a different recipe, or tested
                other utterances (the corpus or protocol changed).
        """
        path = self.dir / f"{fold}.npz"
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as saved:
                proba, meta = saved["proba"], json.loads(str(saved["meta"]))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise ConfigError(f"{path}: unreadable fold checkpoint ({exc}); delete it to run that fold again") from exc
        if meta["recipe_sha256"] != self.digest:
            raise ConfigError(
                f"{path} was made by a different recipe; resume with the same recipe and overrides, "
                f"or delete {self.dir} to start again"
            )
        if meta["test_ids"] != test_ids or proba.shape[0] != len(test_ids):
            raise ConfigError(f"{path} tested other utterances than fold {fold} of this run (corpus or protocol changed)")
        return FoldResult(proba, meta["info"], meta["cost"])

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _fold_task(fold: Fold, recipe: dict[str, Any], data: Dataset) -> FoldResult:
    """One fold as a cluster task (:meth:`serkit.cluster.DaskRunner.map` passes the item first)."""
    return _timed_fold(recipe, data, fold)


def _fit_folds(recipe: dict[str, Any], data: Dataset, folds: list[Fold], runner: Any) -> Any:
    """``(fold, result)`` as each fold finishes: here one after another, or all at once as tasks of ``runner``."""
    if runner is None:
        for fold in folds:
            yield fold, _timed_fold(recipe, data, fold)
        return
    name = f"fold-{recipe['name']}-{corpus_title(recipe)}-s{recipe['seed']}"
    for i, result in runner.map(_fold_task, folds, recipe, data, name=name, share=(1,)):
        yield folds[i], result


def _evaluate(
    recipe: dict[str, Any], data: Dataset, folds: list[Fold], checkpoints: FoldCheckpoints, resume: bool, runner: Any
) -> tuple[dict[str, FoldResult], list[str]]:
    """Every fold's result (kept ones reused when ``resume``), each checkpointed as it finishes; the reused names."""
    test_ids = {fold.name: data.table["utterance_id"].iloc[fold.test].tolist() for fold in folds}
    results: dict[str, FoldResult] = {}
    for fold in folds if resume else ():
        kept = checkpoints.load(fold.name, test_ids[fold.name])
        if kept is not None:
            results[fold.name] = kept
    resumed = list(results)
    for fold, result in _fit_folds(recipe, data, [fold for fold in folds if fold.name not in results], runner):
        checkpoints.save(fold.name, test_ids[fold.name], result)
        results[fold.name] = result
        log.info("fold %s done", fold.name)
    return results, resumed


def _timed_fold(recipe: dict[str, Any], data: Dataset, fold: Fold) -> FoldResult:
    wall, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    proba, info = run_fold(recipe, data, fold)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cost = {
        "wall_s": round(time.perf_counter() - wall, 2),
        "user_cpu_s": round(usage.ru_utime - before.ru_utime, 2),
        "sys_cpu_s": round(usage.ru_stime - before.ru_stime, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # ru_maxrss is in KiB on Linux
    }
    return FoldResult(proba, info, cost)


def default_run_dir(recipe: dict[str, Any], base: str | Path = "results") -> Path:
    """``results/<name>-<corpus>-<UTC time>`` (pooled corpora: ``<corpus>+<corpus>...``)."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Path(base) / f"{recipe['name']}-{corpus_title(recipe)}-{stamp}"


def run_experiment(
    recipe: dict[str, Any],
    out_dir: str | Path | None = None,
    *,
    progress: bool = True,
    overwrite: bool = False,
    resume: bool = False,
    runner: Any = None,
    dataset: Dataset | None = None,
) -> Path:
    """Evaluate a resolved recipe on its protocol's folds and write the run folder.

    Every finished fold is kept in ``<out_dir>.folds/`` (:class:`FoldCheckpoints`) until the run
    folder is written. With ``resume=True`` the folds kept there by an interrupted run of the same
    recipe are reused and only the others are fitted. Each fold's model is seeded on its own, so
    the result is the one an uninterrupted run gives, whatever order the folds finish in.

    Args:
        runner: a :class:`serkit.cluster.DaskRunner` to run extraction and folds as its tasks;
            ``None``: the recipe's ``cluster`` (or ``SERKIT_CLUSTER``) is connected to for this
            run, and without one everything runs here.
        dataset: :func:`prepare_dataset`'s result for this recipe's corpus, features and cache
            (a sweep shares one between runs); ``None``: prepared here.

    Returns:
        The run folder (``config.yaml``, ``metrics.json``, ``predictions.csv``, ``report.md``,
        ``confusion.png``), created atomically. ``metrics.json["extra"]`` holds ``fold_cost``
        (wall seconds, user and system CPU seconds, peak memory per fold, also of reused folds) and
        ``resumed_folds``.

    Raises:
        ClusterError: the cluster cannot be reached or has no workers (before any work), or lost
            the work.
        ConfigError: bad recipe; ``out_dir`` already holds a run and ``overwrite`` is false
            (checked before any work); ``<out_dir>.folds/`` holds folds of an interrupted run while
            ``resume`` and ``overwrite`` are false (``overwrite`` alone discards them); a kept fold
            comes from another recipe or other folds.
        CorpusError, FeatureError: bad corpus or features. Nothing but fold checkpoints is written.
        OutputError: another run is writing ``out_dir`` (it holds ``<out_dir>.lock``), or the
            results cannot be written (no permission, disk full).
    """
    out_dir = Path(out_dir) if out_dir is not None else default_run_dir(recipe)
    check_output_dir(out_dir, overwrite=overwrite)
    with output_lock(out_dir), open_runner(recipe) if runner is None else nullcontext(runner) as active:
        return _run_experiment(recipe, out_dir, progress=progress, overwrite=overwrite, resume=resume, runner=active,
                               dataset=dataset)  # fmt: skip


def _run_experiment(
    recipe: dict[str, Any], out_dir: Path, *, progress: bool, overwrite: bool, resume: bool, runner: Any,
    dataset: Dataset | None,
) -> Path:  # fmt: skip
    checkpoints = FoldCheckpoints(out_dir, recipe)
    kept = checkpoints.finished()
    if kept and not resume:
        if not overwrite:
            raise ConfigError(
                f"{checkpoints.dir} holds {len(kept)} finished folds of an interrupted run; "
                "resume it (--resume), replace it (--overwrite) or delete that folder"
            )
        log.warning("discarding the folds of an interrupted run in %s (overwrite)", checkpoints.dir)
        checkpoints.clear()
    started = time.perf_counter()
    data = dataset if dataset is not None else prepare_dataset(recipe, progress=progress, runner=runner)
    extraction_s = time.perf_counter() - started
    protocol = make_folds(data.table, recipe["protocol"])
    results, resumed = _evaluate(recipe, data, protocol.folds, checkpoints, resume, runner)
    if dataset is None and runner is not None:
        runner.release(data)
    frames = []
    fit_info, fold_cost = {}, {}
    for fold in protocol.folds:
        rows = data.table.iloc[fold.test]
        result = results[fold.name]
        proba = result.proba
        frame = pd.DataFrame(
            {
                "utterance_id": rows["utterance_id"].to_numpy(),
                "speaker": rows["speaker"].to_numpy(),
                "fold": fold.name,
                "true": rows["label"].to_numpy(),
                "predicted": [data.labels[k] for k in proba.argmax(axis=1)],
            }
        )
        if "corpus" in rows.columns:
            frame["corpus"] = rows["corpus"].to_numpy()
        for k, lab in enumerate(data.labels):
            frame[f"p_{lab}"] = proba[:, k]
        frames.append(frame)
        fit_info[fold.name] = result.info
        fold_cost[fold.name] = result.cost
    described = protocol.describe()
    described["normalisation"] = recipe["normalisation"]
    described["adapt"] = recipe.get("adapt", "none")
    extra = {
        "failures": data.failures,
        "fit": fit_info,
        "fold_cost": fold_cost,
        "resumed_folds": resumed,
        "serkit_version": serkit.__version__,
        # total: this call plus the reused folds' own time
        "wall_time_s": {
            "features": round(extraction_s, 2),
            "total": round(time.perf_counter() - started + sum(fold_cost[name]["wall_s"] for name in resumed), 2),
        },
    }
    if runner is not None:
        extra["executor"] = runner.describe()
    run_dir = write_run(
        out_dir,
        # where it ran is not part of the experiment: config.yaml re-runs it anywhere
        config={key: value for key, value in recipe.items() if key != "cluster"},
        predictions=pd.concat(frames, ignore_index=True),
        labels=data.labels,
        protocol=described,
        extra=extra,
        overwrite=overwrite,
    )
    checkpoints.clear()
    return run_dir


def train_bundle(
    recipe: dict[str, Any],
    out_dir: str | Path,
    *,
    progress: bool = True,
    overwrite: bool = False,
    documents: dict[str, str] | None = None,
) -> Path:
    """Fit a resolved recipe on every usable utterance of its corpus and save a model bundle.

    Hyper-parameters the model chooses itself (e.g. the SVM's C) are chosen on
    leave-one-speaker-out folds of the whole corpus; fitted derived features learn from every
    utterance. ``documents`` (file name -> text, such as ``README.md``) go into the bundle
    (:func:`~serkit.bundle.save_bundle`).

    Feature extraction runs on the recipe's cluster when it (or ``SERKIT_CLUSTER``) names one; the
    model is fitted here.

    Returns:
        The bundle folder (see :mod:`serkit.bundle`), written atomically.

    Raises:
        ClusterError: the recipe's cluster cannot be reached or has no workers.
        OutputExistsError: ``out_dir`` is not empty and ``overwrite`` is false (checked first).
        OutputError: another run is writing ``out_dir``, or the bundle cannot be written.
    """
    check_output_dir(out_dir, overwrite=overwrite)
    with output_lock(out_dir):
        return _train_bundle(recipe, out_dir, progress=progress, overwrite=overwrite, documents=documents)


def _train_bundle(
    recipe: dict[str, Any], out_dir: str | Path, *, progress: bool, overwrite: bool, documents: dict[str, str] | None
) -> Path:
    with open_runner(recipe) as runner:
        data = prepare_dataset(recipe, progress=progress, runner=runner)
    speakers = data.speakers
    every = np.arange(len(data.table))
    inputs, fitted = data.fold_inputs(every, recipe["seed"])
    inputs, y, groups, norm_groups = add_copies(inputs, every, data.y, speakers, data.copies)
    normalisers = fit_normalisers(recipe["normalisation"], inputs, norm_groups)
    model = get_model(recipe["model"]["name"], recipe["model"]["config"])
    model.fit(
        normalise(normalisers, inputs, norm_groups), y, labels=data.labels, groups=groups, seed=recipe["seed"],
        layouts=data.plan.layouts,
    )  # fmt: skip
    trained_on = {
        "corpus": corpus_title(recipe),
        "n_utterances": len(data.table),
        **({"augment": {f"speed {c.factor:g}": len(c.rows) for c in data.copies}} if data.copies else {}),
        **({"per_corpus": data.table["corpus"].value_counts().sort_index().to_dict()} if "corpus" in data.table else {}),
        "speakers": sorted(set(speakers.tolist())),
        "failures": data.failures,
        "fit": model.fit_info(),
    }
    plan, normalisers, top = trim_encoder_layers(data.plan, normalisers, model)
    if top is not None:
        trained_on["encoder_layers"] = f"0..{top}: the blocks after layer {top} are not run (serkit.trimming)"
    return save_bundle(
        out_dir,
        recipe={**recipe, "features": plan.recipe},
        labels=data.labels,
        plan=plan,
        fitted=fitted,
        normalisers=normalisers,
        model=model,
        trained_on=trained_on,
        documents=documents,
        overwrite=overwrite,
    )
