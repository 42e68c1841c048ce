"""One process against a Dask LocalCluster: speed-up, per-task overhead, and the cost model checked.

    flock /tmp/serkit-cpu.lock python benchmarks/bench_cluster.py [--root data/emodb] \\
        [--recipe recipes/compare_svm.yaml] [--workers 2] [--seeds 3] [--tasks 200] [--json out.json]

Run it alone on the machine (the ``flock`` above): it measures speed. Everything runs here, in
temporary folders, first in one process, then on a ``LocalCluster`` of ``--workers`` worker
processes of one thread each:

1. **extraction**: :func:`serkit.experiment.prepare_dataset` of the recipe (ComParE_2016
   functionals on EmoDB) from an empty feature cache: ``n_jobs: 1`` against a task per chunk of
   files;
2. **folds**: :func:`serkit.experiment.run_experiment` on that dataset (linear SVM,
   leave-one-speaker-out): folds one after another against a task per fold;
3. **sweep**: ``--seeds`` seeds of the recipe (:mod:`serkit.sweep`), the features in each side's
   cache: runs one after another against all their folds as tasks;
4. **per-task overhead**: ``--tasks`` no-op tasks through :meth:`serkit.cluster.DaskRunner.map`
   (thread limits applied as for real tasks): the round trip of one task at a time, and the wall
   per task with all of them in flight (``o`` of the cost model).

Printed per phase and side: wall seconds, CPU seconds of this process and its workers, the cores
other processes kept busy meanwhile (``others``, from ``/proc``), the speed-up (one process /
cluster) and its fraction of the limit ``min(workers, cores)``, and the wall time the cost model
of ``docs/scaling.md`` predicts for the cluster from the one-process phase (extraction CPU
seconds, or the folds' CPU seconds placed longest first, plus the client's own seconds and ``o``
per task) on the cores the other processes left free during the cluster's phase, with measured /
predicted, and the model's prediction for idle cores. The run fails if the cluster's metrics
differ from the one process's.
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
from serkit.experiment import prepare_dataset, run_experiment
from serkit.recipe import load_recipe
from serkit.sweep import load_sweep, run_sweep

REPO = Path(__file__).resolve().parents[1]


def measured(run: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    """``run()``'s result; its wall seconds, the CPU seconds of this process and its workers, and
    the cores other processes kept busy meanwhile (``others``)."""
    busy, own, start = busy_seconds(), own_cpu_seconds(), time.perf_counter()
    result = run()
    wall, cpu = time.perf_counter() - start, own_cpu_seconds() - own
    return result, {"wall_s": wall, "cpu_s": cpu, "others": max(0.0, (busy_seconds() - busy - cpu) / wall)}


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


def fold_costs(run_dirs: list[Path]) -> tuple[list[float], list[float]]:
    """Wall and CPU (user + system) seconds of every fold of the runs."""
    costs = [c for run in run_dirs for c in metrics_of(run)["extra"]["fold_cost"].values()]
    return [c["wall_s"] for c in costs], [c["user_cpu_s"] + c["sys_cpu_s"] for c in costs]


def predict(cluster: dict[str, float], parallel_cpu: float, serial_s: float, n_tasks: int, workers: int, cores: int,
            task_s: float, folds_cpu: list[float] | None = None) -> float:
    """The cost model of docs/scaling.md for one phase on the cluster, from the one-process run.

    ``parallel_cpu`` CPU seconds spread over the workers (or ``folds_cpu``, one task each, longest
    first), ``serial_s`` seconds of the client's own work, ``n_tasks`` tasks of ``task_s`` each; the
    workers get the cores the other processes left during the cluster's phase (at most ``workers``).
    """
    free = min(float(workers), max(0.5, cores - cluster["others"]))
    spread = parallel_cpu / free if folds_cpu is None else makespan(folds_cpu, workers) * workers / free
    return serial_s + spread + n_tasks * task_s


def _sum(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """Two phases as one: seconds added, ``others`` weighted by wall time."""
    out = {key: a[key] + b[key] for key in a if key != "others"}
    out["others"] = (a["others"] * a["wall_s"] + b["others"] * b["wall_s"]) / out["wall_s"]
    return out


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
    rows: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        tmp = Path(tmp)
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None)
        with cluster, Client(cluster) as client:
            runner = DaskRunner(client)
            task = overhead(runner, args.tasks)
            runs: dict[str, Path] = {}
            for side, use in (("one process", None), ("LocalCluster", runner)):
                recipe = load_recipe(args.recipe, corpus="emodb", root=args.root.resolve(),
                                     overrides=[f"cache_dir={tmp / side / 'cache'}", "n_jobs=1", "cluster=local"])  # fmt: skip
                data, rows.setdefault("extraction", {})[side] = measured(lambda: prepare_dataset(recipe, progress=False, runner=use))  # noqa: B023
                runs[side], rows.setdefault("folds", {})[side] = measured(
                    lambda: run_experiment(recipe, tmp / side / "run", progress=False, runner=use, dataset=data)  # noqa: B023
                )
                path = sweep_file(tmp / side, args.recipe.resolve(), args.root.resolve(), args.seeds, tmp / side / "sweep")
                sweep = load_sweep(path, overrides=[f"cache_dir={tmp / side / 'cache'}", "n_jobs=1"])
                report, rows.setdefault(f"sweep, {args.seeds} seeds", {})[side] = measured(
                    lambda: run_sweep(sweep, runner=use, progress=False)  # noqa: B023
                )
                if report.table is None:
                    raise SystemExit(f"the {side} sweep did not complete: {report.outcomes}")
                if side == "one process":
                    sweep_walls, sweep_cpus = fold_costs([run.out_dir for run in sweep.runs])
            local, remote = (metrics_of(runs[side]) for side in ("one process", "LocalCluster"))
            walls, cpus = fold_costs([runs["one process"]])
    if local["ua"] != remote["ua"] or local["folds"] != remote["folds"]:
        raise SystemExit("the LocalCluster run's metrics differ from the one-process run's")
    n_files = local["n_utterances"] + len(local.get("failures", []))
    n_folds = len(local["folds"])
    o, swept = task["per_task_in_flight_s"], f"sweep, {args.seeds} seeds"
    model = {  # cluster phase -> (CPU s spread, client s, tasks, fold CPU s) from the one-process phase
        "extraction": (rows["extraction"]["one process"]["cpu_s"], 0.0, math.ceil(n_files / 256) * 4 * args.workers, None),
        "folds": (0.0, rows["folds"]["one process"]["wall_s"] - sum(walls), n_folds, cpus),
        swept: (0.0, rows[swept]["one process"]["wall_s"] - sum(sweep_walls), n_folds * args.seeds, sweep_cpus),
    }
    for phase, (parallel, serial, n_tasks, folds_cpu) in model.items():
        row = rows[phase]["LocalCluster"]
        row["predicted_s"] = predict(row, parallel, serial, n_tasks, args.workers, cores, o, folds_cpu)
        row["idle_predicted_s"] = predict({"others": 0.0}, parallel, serial, n_tasks, args.workers, cores, o, folds_cpu)

    rows = {"experiment (extraction + folds)": {side: _sum(rows["extraction"][side], rows["folds"][side]) for side in
                                                  ("one process", "LocalCluster")}, **rows}  # fmt: skip
    limit = min(args.workers, cores)
    print(f"{platform.processor() or platform.machine()}, {cores} cores, LocalCluster {args.workers} workers x 1 thread; "
          f"load average {os.getloadavg()[0]:.1f}; {n_files} files, {n_folds} folds")  # fmt: skip
    print(f"per-task overhead: {task['latency_s'] * 1e3:.1f} ms round trip one at a time, "
          f"{o * 1e3:.2f} ms per task with {args.tasks} in flight")
    print(f"{'phase':31} {'side':13} {'wall_s':>7} {'cpu_s':>7} {'others':>7} {'speed-up':>9} {'of limit':>9} "
          f"{'predicted_s':>12} {'meas/pred':>10} {'idle: predicted_s':>18}")
    for phase, sides in rows.items():
        for side, row in sides.items():
            speed = sides["one process"]["wall_s"] / row["wall_s"]
            extra = "" if side == "one process" else (
                f"{speed:>9.2f} {speed / limit:>9.0%} {row['predicted_s']:>12.1f} {row['wall_s'] / row['predicted_s']:>10.2f} "
                f"{row['idle_predicted_s']:>18.1f}")  # fmt: skip
            print(f"{phase:31} {side:13} {row['wall_s']:>7.1f} {row['cpu_s']:>7.1f} {row['others']:>7.2f} {extra}")
    print(f"UA {local['ua']:.4f} both ways, every fold's metrics equal")
    if args.json:
        args.json.write_text(json.dumps({"cores": cores, "workers": args.workers, "task": task, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
