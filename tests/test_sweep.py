"""serkit sweep on this machine: the grid, skipping and resuming runs, failures, the closing table.

Real recordings, kept cheap: four EmoDB speakers through eGeMAPS / IS09 functionals and a linear
SVM (tests/sweep_fixtures.py). The cluster side is tests/test_cluster.py.
"""

from __future__ import annotations

import fcntl
import json
import shutil
from pathlib import Path

import pytest
import yaml
from sweep_fixtures import REPO, emodb_manifest, sweep_args, table_numbers, write_sweep
from typer.testing import CliRunner

import serkit.sweep as sweep_module
from serkit import experiment
from serkit.cli import app
from serkit.errors import ConfigError
from serkit.evaluation.compare import compare_runs, results_table
from serkit.sweep import load_sweep, run_sweep


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, emodb_root) -> Path:
    return emodb_manifest(tmp_path_factory.mktemp("corpus"), emodb_root, bad_file=False)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def test_the_grid_names_every_run_and_puts_seeds_innermost(corpus, tmp_path):
    path = write_sweep(tmp_path, corpus, tmp_path / "out", set={"normalisation": ["global", "speaker"]})
    sweep = load_sweep(path, overrides=["n_jobs=1"])
    assert [run.name for run in sweep.runs] == [
        f"manifest-{label}-normalisation={norm}-s{seed}"
        for label in ("egemaps", "is09") for norm in ("global", "speaker") for seed in (0, 1)
    ]  # fmt: skip
    run = sweep.runs[3]
    assert run.recipe["normalisation"] == "speaker" and run.recipe["seed"] == 1 and run.recipe["n_jobs"] == 1
    assert run.recipe["corpus"] == {"name": "manifest", "root": str(corpus), "options": {}}
    assert run.out_dir == tmp_path / "out" / run.name and sweep.baseline == "egemaps" and sweep.name == "sweep"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"seed": [0]}, "unknown key(s) ['seed']"),
        ({"recipes": ["nowhere.yaml"]}, "recipe 'nowhere.yaml' is not a file"),
        ({"set": {"normalisation": "speaker"}}, "set must map dotted keys to non-empty lists"),
        ({"baseline": "compare"}, "baseline 'compare' is not a recipe label"),
        ({"corpora": [{"name": "manifest", "root": "/no/such/folder"}]}, "root '/no/such/folder' is not a folder"),
        ({"set": {"model.config.bogus": [1]}}, "model: linear_svm: unknown option(s) ['bogus']"),
        ({"set": {"normalisation": ["global", "per-speaker"]}}, "normalisation must be global, speaker or none"),
    ],
)
def test_a_bad_sweep_file_is_refused_by_name_before_any_work(corpus, tmp_path, monkeypatch, change, message):
    monkeypatch.setattr(sweep_module, "prepare_dataset", lambda *a, **k: pytest.fail("work started"))
    path = write_sweep(tmp_path, corpus, tmp_path / "out")
    spec = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**spec, **change}))
    with pytest.raises(ConfigError) as info:
        run_sweep(load_sweep(path), progress=False)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)
    assert not (tmp_path / "out").exists()


def test_a_sweep_skips_complete_runs_resumes_interrupted_ones_and_tables_once_complete(corpus, cache, tmp_path, count_folds):
    sweep = load_sweep(write_sweep(tmp_path, corpus, tmp_path / "out"), overrides=sweep_args(cache))
    names = [run.name for run in sweep.runs]
    # a part of the sweep: no table while runs are missing
    report = run_sweep(sweep, only=["*-egemaps-*"], progress=False)
    assert [(o.run.name, o.status) for o in report.outcomes] == [(names[0], "ran"), (names[1], "ran")]
    assert report.missing == names[2:] and report.table is None and report.files is None
    assert not (tmp_path / "out" / "sweep.md").exists()
    # an interrupted run leaves its finished folds, never a run folder
    count_folds(interrupt_at=2)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(sweep, progress=False)
    assert not (tmp_path / "out" / names[2]).exists() and len(list((tmp_path / "out" / f"{names[2]}.folds").iterdir())) == 1
    # again: complete runs skipped, the interrupted one resumed, the table written
    calls = count_folds()
    report = run_sweep(sweep, progress=False)
    assert [(o.run.name, o.status) for o in report.outcomes] == [(n, s) for n, s in zip(names, ["complete"] * 2 + ["ran"] * 2)]
    assert calls["n"] == 3 + 4  # 4 folds per run, one kept
    metrics = json.loads((tmp_path / "out" / names[2] / "metrics.json").read_text())
    assert metrics["extra"]["resumed_folds"] == ["speaker-03"]
    assert report.files == (tmp_path / "out" / "sweep.md", tmp_path / "out" / "sweep.json")
    rows = table_numbers(report.files[1])
    # the table is compare.py's over the same folders: mean ± std over seeds, paired with the baseline
    expected = [row.to_dict() for row in results_table([sweep.runs[0].out_dir, sweep.runs[1].out_dir])]
    assert rows[0]["ua"] == expected[0]["ua"] and rows[0]["seeds"] == [0, 1] and rows[0]["vs_baseline"] == "baseline"
    paired = compare_runs([r.out_dir for r in sweep.runs[2:]], [r.out_dir for r in sweep.runs[:2]]).to_dict()
    assert rows[1]["vs_baseline"] == paired and paired["n_pairs"] == 8
    markdown = report.files[0].read_text()
    assert f"{paired['mean_difference']:+.3f} ± {paired['standard_error']:.3f}" in markdown
    # once more: nothing runs, the same table
    calls = count_folds()
    again = run_sweep(sweep, progress=False)
    assert calls["n"] == 0 and {o.status for o in again.outcomes} == {"complete"}
    assert table_numbers(again.files[1]) == rows


def test_a_failed_run_is_reported_the_others_go_on_and_no_table_is_written(corpus, cache, tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, corpus, tmp_path / "out"), overrides=sweep_args(cache))
    egemaps, is09 = sweep.runs[0], sweep.runs[2]
    # a folder holding the result of another recipe is never taken for this run's
    experiment.run_experiment(egemaps.recipe, is09.out_dir, progress=False)
    report = run_sweep(sweep, progress=False)
    status = {o.run.name: o.status for o in report.outcomes}
    assert status == {egemaps.name: "ran", sweep.runs[1].name: "ran", is09.name: "failed", sweep.runs[3].name: "ran"}
    [failed] = report.failed
    assert f"{is09.out_dir} holds a run of another recipe (differs in ['features'])" in failed.message
    assert report.table is None and not (tmp_path / "out" / "sweep.json").exists()
    # the command line says so and exits 1
    result = CliRunner().invoke(app, ["sweep", str(sweep.path), *(f"--set={s}" for s in sweep_args(cache)), "--quiet"])
    assert result.exit_code == 1 and "failed" in result.output and "holds a run of another recipe" in result.output
    # with the folder cleared the sweep completes, and prints its table
    shutil.rmtree(is09.out_dir)
    result = CliRunner().invoke(app, ["sweep", str(sweep.path), *(f"--set={s}" for s in sweep_args(cache)), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "| egemaps | manifest | 2: 0, 1 |" in result.output and "vs egemaps: fold UA Δ ± SE" in result.output


def test_a_run_another_process_holds_is_left_to_it(corpus, cache, tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, corpus, tmp_path / "out"), overrides=sweep_args(cache))
    held = sweep.runs[1]
    held.out_dir.parent.mkdir(parents=True)
    with open(held.out_dir.with_name(f"{held.name}.lock"), "w") as handle:  # as serkit.io.output_lock holds it
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        handle.write("4242\n")
        handle.flush()
        report = run_sweep(sweep, only=[sweep.runs[0].name, held.name], progress=False)
    assert [o.status for o in report.outcomes] == ["ran", "busy"] and held.name in report.missing
    assert "process 4242" in report.outcomes[1].message and not held.out_dir.exists()


def test_shipped_sweep_files_resolve(monkeypatch):
    monkeypatch.setenv("EMOVO_ROOT", str(REPO.parent / "shared" / "corpora" / "emovo"))
    for path in sorted((REPO / "sweeps").glob("*.yaml")):
        sweep = load_sweep(path)
        assert sweep.runs and len({run.name for run in sweep.runs}) == len(sweep.runs), path
