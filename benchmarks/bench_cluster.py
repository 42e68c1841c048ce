"""One process against a Dask LocalCluster: speed-up, per-task overhead, and the cost model checked.

    flock /tmp/serkit-cpu.lock python benchmarks/bench_cluster.py [--root data/emodb] \\
        [--recipe recipes/compare_svm.yaml] [--workers 2] [--seeds 3] [--tasks 200] [--json out.json]

Run it alone on the machine (the ``flock`` above): it measures speed. Everything runs here, in
temporary folders:

1. **experiment**: the recipe (ComParE_2016 functionals + linear SVM, EmoDB leave-one-speaker-out)
   from an empty feature cache, (a) in one process (``n_jobs: 1``, folds one after another),
   (b) on a ``LocalCluster`` of ``--workers`` worker processes of one thread each (a task per
   chunk of files, a task per fold);
2. **sweep**: the recipe over ``--seeds`` seeds with the features in each side's cache (one
   prepared dataset per side, as :mod:`serkit.sweep` shares it), (a) one process, (b) the cluster;
3. **per-task overhead**: ``--tasks`` no-op tasks through :meth:`serkit.cluster.DaskRunner.map`
   (thread limits applied as for real tasks): the round trip of one task at a time, and the wall
   per task with all of them in flight.

Printed per row: wall seconds, the speed-up (one process / cluster) against its limit on this
machine, ``min(workers, cores)``, the cores other processes kept busy meanwhile (``others``, from
``/proc``: they take cores from both sides), and the wall time the cost model of
``docs/scaling.md`` predicts for the cluster from the one-process run's measured parts and the
measured overhead, with measured / predicted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from machine import busy_seconds, own_cpu_seconds

from serkit.cluster import DaskRunner
from serkit.recipe import load_recipe
from serkit.sweep import load_sweep, run_sweep

REPO = Path(__file__).resolve().parents[1]


def measured(run: Callable[[], Any]) -> tuple[Any, float, float]:
    """``run()``'s result, its wall seconds and the cores other processes kept busy meanwhile."""
    busy, own, start = busy_seconds(), own_cpu_seconds(), time.perf_counter()
    result = run()
    wall = time.perf_counter() - start
    return result, wall, max(0.0, (busy_seconds() - busy - (own_cpu_seconds() - own)) / wall)


def makespan(durations: list[float], workers: int) -> float:
    """Longest worker's load when ``durations`` go longest first to the least loaded of ``workers``."""
    loads = [0.0] * workers
    for d in sorted(durations, reverse=True):
        loads[loads.index(min(loads))] += d
    return max(loads)


def metrics_of(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "metrics.json").read_text())


def overhead(runner: DaskRunner, n: int) -> dict[str, float]:
    """Per-task seconds of no-op tasks: one at a time (latency) and all in flight (wall / n)."""
    list(runner.map(_noop, range(8), name="warm-up"))
    start = time.perf_counter()
    for i in range(min(n, 50)):
        list(runner.map(_noop, [i], name="latency"))
    latency = (time.perf_counter() - start) / min(n, 50)
    start = time.perf_counter()
    list(runner.map(_noop, range(n), name="throughput"))
    return {"latency_s": latency, "per_task_in_flight_s": (time.perf_counter() - start) / n}


def _noop(item: int) -> int:
    return item


def sweep_file(folder: Path, recipe: Path, root: Path, seeds: int, out: Path) -> Path:
    spec = {"out": str(out), "recipes": [str(recipe)], "corpora": [{"name": "emodb", "root": str(root)}],
            "seeds": list(range(seeds))}  # fmt: skip
    path = folder / f"{out.name}.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    return path


def predict_experiment(local: dict[str, Any], n_files: int, n_extract_tasks: int, workers: int, task_s: float) -> float:
    """The cost model (docs/scaling.md) of one run on ``workers`` one-thread workers, from the one-process run."""
    features = local["wall_time_s"]["features"]
    folds = [cost["wall_s"] for cost in local["fold_cost"].values()]
    rest = local["wall_time_s"]["total"] - features - sum(folds)  # corpus table, folds, report
    extract = features / workers + n_extract_tasks * task_s
    return extract + makespan(folds, workers) + len(folds) * task_s + rest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=REPO / "data" / "emodb", help="EmoDB root")
    parser.add_argument("--recipe", type=Path, default=REPO / "recipes" / "compare_svm.yaml")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (one thread each)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the sweep")
    parser.add_argument("--tasks", type=int, default=200, help="no-op tasks for the overhead")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    from distributed import Client, LocalCluster

    cores = len(os.sched_getaffinity(0))
    limit = min(args.workers, cores)
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        tmp = Path(tmp)
        from serkit.experiment import run_experiment

        def recipe(side: str) -> dict[str, Any]:
            return load_recipe(args.recipe, corpus="emodb", root=args.root.resolve(),
                               overrides=[f"cache_dir={tmp / side / 'cache'}", "n_jobs=1"])  # fmt: skip

        local_dir, wall, others = measured(lambda: run_experiment(recipe("local"), tmp / "local" / "run", progress=False))
        local = metrics_of(local_dir)
        rows["experiment, one process"] = {"wall_s": wall, "others": others, "ua": local["ua"]}
        n_files = local["n_utterances"] + len(local.get("failures", []))

        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None)
        with cluster, Client(cluster) as client:
            runner = DaskRunner(client)
            task = overhead(runner, args.tasks)
            remote_dir, wall, others = measured(
                lambda: run_experiment(recipe("cluster"), tmp / "cluster" / "run", progress=False, runner=runner)
            )
            remote = metrics_of(remote_dir)
            chunks = math.ceil(n_files / 256)  # FeaturePlan.materialise's chunks, 4 tasks per thread each
            predicted = predict_experiment(local["extra"], n_files, chunks * 4 * args.workers, args.workers, task["per_task_in_flight_s"])
            rows["experiment, LocalCluster"] = {"wall_s": wall, "others": others, "ua": remote["ua"], "predicted_s": predicted,
                                                "features_s": remote["extra"]["wall_time_s"]["features"]}  # fmt: skip
            sweeps = {}
            for side, use in (("local", None), ("cluster", runner)):
                sweep = load_sweep(sweep_file(tmp, args.recipe.resolve(), args.root.resolve(), args.seeds, tmp / side / "sweep"),
                                   overrides=[f"cache_dir={tmp / side / 'cache'}", "n_jobs=1"])  # fmt: skip
                report, wall, others = measured(lambda: run_sweep(sweep, runner=use, progress=False))  # noqa: B023
                sweeps[side] = (report, wall, others)
            folds = [c["wall_s"] for c in local["extra"]["fold_cost"].values()]
            rest = local["extra"]["wall_time_s"]["total"] - local["extra"]["wall_time_s"]["features"] - sum(folds)
            cached = sweeps["local"][1] - args.seeds * (sum(folds) + rest)  # reading the cached features once
            sweep_predicted = cached + makespan(folds * args.seeds, args.workers) + len(folds) * args.seeds * task["per_task_in_flight_s"] + args.seeds * rest
            for side, (report, wall, others) in sweeps.items():
                name = f"sweep of {args.seeds} seeds, " + ("one process" if side == "local" else "LocalCluster")
                rows[name] = {"wall_s": wall, "others": others, "complete": report.table is not None}
            rows[f"sweep of {args.seeds} seeds, LocalCluster"]["predicted_s"] = sweep_predicted

    print(f"{platform.processor() or platform.machine()}, {cores} cores, LocalCluster {args.workers} workers x 1 thread; "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"per-task overhead: {task['latency_s'] * 1e3:.1f} ms round trip one at a time, "
          f"{task['per_task_in_flight_s'] * 1e3:.2f} ms per task with {args.tasks} in flight")
    print(f"{'row':38} {'wall_s':>8} {'speed-up':>9} {'of limit':>9} {'others':>7} {'predicted_s':>12} {'meas/pred':>10}")
    base = {"experiment": rows["experiment, one process"]["wall_s"], "sweep": rows[f"sweep of {args.seeds} seeds, one process"]["wall_s"]}
    for name, row in rows.items():
        speed = base[name.split(",")[0].split(" of")[0]] / row["wall_s"]
        pred = row.get("predicted_s")
        model = f"{'':>12} {'':>10}" if pred is None else f"{pred:>12.1f} {row['wall_s'] / pred:>10.2f}"
        print(f"{name:38} {row['wall_s']:>8.1f} {speed:>9.2f} {speed / limit:>9.0%} {row['others']:>7.2f} {model}")
    print(f"UA one process {rows['experiment, one process']['ua']:.4f}, LocalCluster {rows['experiment, LocalCluster']['ua']:.4f}")
    if args.json:
        args.json.write_text(json.dumps({"cores": cores, "workers": args.workers, "task": task, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
