"""serkit on Dask: a LocalCluster of 2 worker processes (1 thread each) against the local path.

The corpus is four real EmoDB speakers plus a corrupt file (tests/sweep_fixtures.py); workers are
killed by a worker plugin when a task of the kind under test starts, so the rerun is certain.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pytest
import yaml
from distributed import Client, LocalCluster
from sweep_fixtures import (
    KillOnce,
    emodb_manifest,
    plus_total,
    sweep_args,
    table_numbers,
    write_sweep,
)
from typer.testing import CliRunner

from serkit import experiment
from serkit.cli import app
from serkit.cluster import DaskRunner, cluster_address, connect
from serkit.errors import ClusterError, ConfigError
from serkit.evaluation.report import read_predictions
from serkit.experiment import run_experiment
from serkit.recipe import load_recipe, resolve_recipe
from serkit.sweep import load_sweep, run_sweep

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def client():
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with cluster, Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, emodb_root) -> Path:
    return emodb_manifest(tmp_path_factory.mktemp("corpus"), emodb_root)


@pytest.fixture(scope="module")
def recipe(corpus, tmp_path_factory) -> dict:
    cache = tmp_path_factory.mktemp("local-cache")
    return load_recipe(REPO / "recipes" / "egemaps_svm.yaml", corpus="manifest", root=corpus,
                       overrides=[f"cache_dir={cache}", "n_jobs=1"])  # fmt: skip


@pytest.fixture(scope="module")
def local_run(recipe, tmp_path_factory) -> Path:
    return run_experiment(recipe, tmp_path_factory.mktemp("local") / "run", progress=False)


def _kill_once(client: Client, prefix: str, marker: Path) -> dict[str, int]:
    """Arm a KillOnce plugin; returns the worker pids before."""
    client.register_plugin(KillOnce(prefix, str(marker)), name=f"kill-{prefix}")
    return client.run(os.getpid)


def _entries(cache: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(Path(cache).rglob("*.npy"))}


def _same_result(a: Path, b: Path) -> None:
    pd.testing.assert_frame_equal(read_predictions(a / "predictions.csv"), read_predictions(b / "predictions.csv"))
    ma, mb = (json.loads((run / "metrics.json").read_text()) for run in (a, b))
    ea, eb = ma.pop("extra"), mb.pop("extra")
    assert ma == mb  # pooled and per-fold metrics, failures, protocol
    assert ea["fit"] == eb["fit"]  # the C chosen in every fold
    ca, cb = (yaml.safe_load((run / "config.yaml").read_text()) for run in (a, b))
    assert {**ca, "cache_dir": None} == {**cb, "cache_dir": None} and "cluster" not in cb


@pytest.mark.parametrize("shared", [True, False], ids=["shared-cache", "client-cache"])
def test_a_cluster_run_equals_the_local_run_with_a_worker_killed(client, recipe, local_run, tmp_path, shared):
    marker = tmp_path / "killed"
    before = _kill_once(client, "serkit-extract-", marker)
    try:
        cached = resolve_recipe(recipe, overrides=[f"cache_dir={tmp_path / 'cache'}"])
        run = run_experiment(cached, tmp_path / "run", progress=False, runner=DaskRunner(client, shared_cache=shared))
    finally:
        client.unregister_worker_plugin("kill-serkit-extract-")
    # a worker died as an extraction task started, and was replaced
    assert marker.read_text().startswith("serkit-extract-opensmile_functionals-")
    assert set(client.run(os.getpid).values()) != set(before.values())
    _same_result(local_run, run)
    metrics = json.loads((run / "metrics.json").read_text())
    assert [f["utterance_id"] for f in metrics["failures"]] == ["corrupt"]  # reported, the run went on
    assert metrics["extra"]["executor"]["kind"] == "dask" and metrics["extra"]["executor"]["threads"] == 2
    # the cache: the same entries (keys and bytes) as the local run's, written by workers or this process
    assert _entries(tmp_path / "cache") == _entries(Path(recipe["cache_dir"]))
    assert not list((tmp_path / "cache").rglob(".*.tmp")) and not list((tmp_path / "cache").rglob(".serkit-probe-*"))


def test_folds_run_as_tasks_and_a_lost_worker_changes_nothing(client, recipe, local_run, tmp_path):
    marker = tmp_path / "killed"
    _kill_once(client, "serkit-fold-", marker)
    try:
        run = run_experiment(recipe, tmp_path / "run", progress=False, runner=DaskRunner(client))
    finally:
        client.unregister_worker_plugin("kill-serkit-fold-")
    assert marker.read_text().startswith("serkit-fold-egemaps_svm-manifest-s0-")
    _same_result(local_run, run)
    assert not (tmp_path / "run.folds").exists()


def test_an_unreachable_scheduler_is_a_clear_error_before_any_work(recipe, tmp_path, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("work started although the cluster cannot be reached")

    monkeypatch.setattr(experiment, "prepare_dataset", must_not_run)
    address = "tcp://127.0.0.1:9"  # the discard port: nothing listens
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(ClusterError, match=f"cluster {address}: cannot reach the Dask scheduler"):
            run_experiment(resolve_recipe(recipe, overrides=[f"cluster={address}"]), tmp_path / "run", progress=False)
        # the environment variable is the default; the command line's --cluster says the same
        monkeypatch.setenv("SERKIT_CLUSTER", address)
        with pytest.raises(ClusterError, match="cannot reach"):
            run_experiment(recipe, tmp_path / "run", progress=False)
        result = CliRunner().invoke(app, ["experiment", str(REPO / "recipes" / "egemaps_svm.yaml"), "--corpus", "manifest",
                                          "--root", recipe["corpus"]["root"], "--out", str(tmp_path / "cli"), "--cluster", address])  # fmt: skip
    assert result.exit_code == 2 and "cannot reach the Dask scheduler" in result.output
    assert not any(tmp_path.iterdir())  # nothing written
    with pytest.raises(ClusterError, match="no such scheduler file"):
        connect(str(tmp_path / "scheduler.json"))


def test_the_cluster_comes_from_the_recipe_then_the_environment(monkeypatch):
    monkeypatch.delenv("SERKIT_CLUSTER", raising=False)
    assert cluster_address({"cluster": None}) is None
    monkeypatch.setenv("SERKIT_CLUSTER", "tcp://env:8786")
    assert cluster_address({"cluster": None}) == "tcp://env:8786"
    assert cluster_address({"cluster": "tcp://recipe:8786"}) == "tcp://recipe:8786"
    assert cluster_address({"cluster": "local"}) is None
    with pytest.raises(ConfigError, match="cluster must be"):
        resolve_recipe({"features": {"f": {"extractor": "logmel"}}, "model": {"name": "linear_svm"}, "cluster": 8786})


def test_workers_limit_their_threads_to_their_share_of_the_cores(client):
    def threads(_item):
        import torch
        from threadpoolctl import threadpool_info

        return torch.get_num_threads(), {info["num_threads"] for info in threadpool_info()}, os.environ["OMP_NUM_THREADS"]

    client.wait_for_workers(2, timeout=60)  # a worker killed by an earlier test restarts first
    runner = DaskRunner(client)
    cores = len(os.sched_getaffinity(0))
    expected = max(1, cores // 2)  # two one-thread workers on this host
    assert runner._thread_budget() == {"127.0.0.1": expected}
    results = dict(runner.map(threads, range(4), name="threads"))
    assert all(result == (expected, {expected}, str(expected)) for result in results.values())


def test_a_sweep_survives_a_killed_worker_with_the_undisturbed_table(client, corpus, tmp_path):
    cache = tmp_path / "cache"
    undisturbed = run_sweep(
        load_sweep(write_sweep(tmp_path / "a", corpus, tmp_path / "out-a"), overrides=sweep_args(cache)), progress=False
    )
    marker = tmp_path / "killed"
    client.wait_for_workers(2, timeout=60)  # both up before one is killed
    _kill_once(client, "serkit-fold-", marker)
    try:
        sweep = load_sweep(write_sweep(tmp_path / "b", corpus, tmp_path / "out-b"), overrides=sweep_args(cache))
        disturbed = run_sweep(sweep, runner=DaskRunner(client), progress=False)
    finally:
        client.unregister_worker_plugin("kill-serkit-fold-")
    assert marker.read_text().startswith("serkit-fold-")
    assert [o.status for o in disturbed.outcomes] == ["ran"] * 4 and not disturbed.missing
    assert table_numbers(disturbed.files[1]) == table_numbers(undisturbed.files[1])
    rows = table_numbers(disturbed.files[1])
    assert [row["system"] for row in rows] == ["egemaps", "is09"] and rows[0]["seeds"] == [0, 1]
    assert rows[0]["vs_baseline"] == "baseline" and rows[1]["vs_baseline"]["n_pairs"] == 8  # 2 seeds x 4 folds
    for run in sweep.runs:  # every run folder as the local sweep's
        _same_result(tmp_path / "out-a" / run.name, run.out_dir)
        assert json.loads((run.out_dir / "metrics.json").read_text())["extra"]["executor"]["kind"] == "dask"
    assert np.isclose(rows[1]["vs_baseline"]["mean_b"], rows[0]["fold_ua"]["mean"])


def test_data_lost_with_the_only_worker_holding_it_is_scattered_again(tmp_path, caplog):
    marker = tmp_path / "killed"
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None)
    with cluster, Client(cluster) as client, caplog.at_level("WARNING", logger="serkit.cluster"):
        _kill_once(client, "serkit-lost-", marker)
        values = np.arange(1000)
        results = dict(DaskRunner(client).map(plus_total, range(3), values, name="lost", share=(0,)))
    assert marker.exists() and results == {i: i + int(values.sum()) for i in range(3)}
    # the array was on the killed worker only: the tasks were cancelled, the array scattered again
    assert any("lost its data" in record.message for record in caplog.records)
