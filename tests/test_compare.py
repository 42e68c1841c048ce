"""Results tooling: run folders read by config (seed, identity), paired fold statistics, tables over seeds.

The run folders are real ones (``write_run``) with synthetic predictions whose per-fold scores are
known by construction: every fold tests 10 anger and 10 neutral utterances, and a fold with
``(k_anger, k_neutral)`` correct has UA = (k_anger / 10 + k_neutral / 10) / 2. Folder names carry
no seed, so every seed the tools report must come from ``config.yaml``.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pandas as pd
import pytest
from scipy.stats import binomtest, wilcoxon
from typer.testing import CliRunner

from serkit.cli import app
from serkit.errors import ConfigError
from serkit.evaluation.compare import (
    compare_runs,
    find_runs,
    read_run,
    render_comparison,
    results_table,
    run_identity,
    two_systems,
)
from serkit.evaluation.report import write_run
from serkit.recipe import resolve_recipe

LABELS = ["anger", "neutral"]
PER_CLASS = 10
FOLDS = ["spk-a", "spk-b", "spk-c", "spk-d"]


def make_config(name: str, seed: int, *, C: float = 0.01, **top: object) -> dict:
    raw = {
        "features": {"f": {"extractor": "opensmile_functionals", "config": {"feature_set": "eGeMAPSv02"}}},
        "model": {"name": "linear_svm", "config": {"C": C}},
        **top,
    }
    return resolve_recipe(raw, name=name, overrides=[f"seed={seed}"])


def make_run(
    path: Path,
    config: dict,
    correct: dict[str, tuple[int, int]],
    *,
    speakers: dict[str, str] | None = None,
    extra: dict | None = None,
) -> Path:
    """A run folder whose fold ``f`` gets ``correct[f] = (k_anger, k_neutral)`` utterances right."""
    rows = []
    for fold, counts in correct.items():
        speaker = (speakers or {}).get(fold, fold)
        for label, other, k in (("anger", "neutral", counts[0]), ("neutral", "anger", counts[1])):
            for i in range(PER_CLASS):
                predicted = label if i < k else other
                rows.append(
                    {
                        "utterance_id": f"{fold}-{label}-{i}",
                        "speaker": speaker,
                        "fold": fold,
                        "true": label,
                        "predicted": predicted,
                        "p_anger": 0.8 if predicted == "anger" else 0.2,
                        "p_neutral": 0.8 if predicted == "neutral" else 0.2,
                    }
                )
    return write_run(path, config=config, predictions=pd.DataFrame(rows), labels=LABELS,
                     protocol={"name": "loso"}, extra=extra)


def fold_ua(counts: tuple[int, int]) -> float:
    return (counts[0] / PER_CLASS + counts[1] / PER_CLASS) / 2


def pooled_ua(correct: dict[str, tuple[int, int]]) -> float:
    n = PER_CLASS * len(correct)
    return (sum(c[0] for c in correct.values()) / n + sum(c[1] for c in correct.values()) / n) / 2


# Per-fold correct counts of two systems over seeds 0 and 1. The differences A − B in UA are
# +0.05, −0.10, 0, +0.15 (seed 0) and +0.20, +0.25, −0.30, 0 (seed 1): distinct magnitudes, two ties.
A = {
    0: {"spk-a": (6, 5), "spk-b": (5, 5), "spk-c": (7, 7), "spk-d": (9, 6)},
    1: {"spk-a": (8, 6), "spk-b": (9, 6), "spk-c": (4, 4), "spk-d": (3, 8)},
}
B = {
    0: {"spk-a": (5, 5), "spk-b": (6, 6), "spk-c": (7, 7), "spk-d": (6, 6)},
    1: {"spk-a": (5, 5), "spk-b": (5, 5), "spk-c": (7, 7), "spk-d": (3, 8)},
}
EXPECTED_DIFFS = [0.05, -0.10, 0.0, 0.15, 0.20, 0.25, -0.30, 0.0]


@pytest.fixture()
def systems(tmp_path: Path) -> dict[str, list[Path]]:
    """Two systems, two seeds each, in folders named without seeds."""
    a = [make_run(tmp_path / name, make_config("sys_a", seed, C=0.01), A[seed]) for name, seed in (("alpha", 0), ("beta", 1))]
    b = [make_run(tmp_path / name, make_config("sys_b", seed, C=1.0), B[seed]) for name, seed in (("gamma", 0), ("delta", 1))]
    return {"a": a, "b": b}


def test_known_fold_scores_are_what_the_runs_hold(systems):
    # The construction the other tests rely on: each fold's UA is the designed one.
    run = read_run(systems["a"][1])
    assert run.fold_scores() == pytest.approx({fold: fold_ua(c) for fold, c in A[1].items()})
    diffs = [fold_ua(A[s][f]) - fold_ua(B[s][f]) for s in (0, 1) for f in FOLDS]
    assert diffs == pytest.approx(EXPECTED_DIFFS)


def test_seed_comes_from_config_and_identity_drops_only_run_keys(tmp_path):
    path = make_run(tmp_path / "north", make_config("x", 7), {"spk-a": (5, 5), "spk-b": (6, 6)})
    run = read_run(path)
    assert run.seed == 7
    assert "seed" not in run.identity and "name" not in run.identity
    base = make_config("x", 0)
    same = {**make_config("renamed", 3), "cache_dir": None, "n_jobs": 1}
    assert run_identity(same) == run_identity(base)
    assert run_identity(make_config("x", 0, C=1.0)) != run_identity(base)
    assert run_identity(make_config("x", 0, normalisation="speaker")) != run_identity(base)


def test_paired_statistics_equal_scipy_on_known_differences(systems):
    # B's runs given in the opposite order: pairs are matched by seed, not by position.
    result = compare_runs(systems["a"], systems["b"][::-1])
    ua_a = [fold_ua(A[s][f]) for s in (0, 1) for f in FOLDS]
    ua_b = [fold_ua(B[s][f]) for s in (0, 1) for f in FOLDS]
    assert result.n_pairs == 8
    assert result.seeds == (0, 1)
    assert (result.above, result.equal, result.below) == (4, 2, 2)
    assert result.mean_a == pytest.approx(statistics.mean(ua_a))
    assert result.mean_b == pytest.approx(statistics.mean(ua_b))
    assert result.mean_difference == pytest.approx(statistics.mean(EXPECTED_DIFFS))
    assert result.standard_error == pytest.approx(statistics.stdev(EXPECTED_DIFFS) / math.sqrt(8))
    assert result.wilcoxon_p == pytest.approx(wilcoxon(EXPECTED_DIFFS).pvalue)
    assert result.sign_test_p == pytest.approx(binomtest(4, 6).pvalue)
    # Swapping the systems mirrors everything but the p-values.
    swapped = compare_runs(systems["b"], systems["a"])
    assert (swapped.above, swapped.equal, swapped.below) == (2, 2, 4)
    assert swapped.mean_difference == pytest.approx(-result.mean_difference)
    assert swapped.wilcoxon_p == pytest.approx(result.wilcoxon_p)


def test_other_fold_metrics_pair_the_same_way(systems):
    result = compare_runs(systems["a"][:1], systems["b"][:1], metric="wa")
    # Balanced classes: WA equals UA fold by fold.
    assert result.mean_difference == pytest.approx(statistics.mean(EXPECTED_DIFFS[:4]))
    with pytest.raises(ConfigError, match="metric"):
        compare_runs(systems["a"], systems["b"], metric="accuracy")


def test_unmatched_seeds_and_folds_are_refused(systems, tmp_path):
    with pytest.raises(ConfigError, match=r"only in A: \(seed 1, spk-a\)"):
        compare_runs(systems["a"], systems["b"][:1])
    three_folds = {f: c for f, c in B[0].items() if f != "spk-d"}
    short = make_run(tmp_path / "short", make_config("sys_b", 0, C=1.0), three_folds)
    with pytest.raises(ConfigError, match=r"only in A: \(seed 0, spk-d\); only in B: none"):
        compare_runs(systems["a"][:1], [short])
    # Two runs of one side with one seed: a repeat is not a second seed.
    again = make_run(tmp_path / "again", make_config("sys_a", 0, C=0.01), A[0])
    with pytest.raises(ConfigError, match="two runs with seed 0"):
        compare_runs([systems["a"][0], again], systems["b"][:1])
    # Same fold names but other test speakers: not the same folds.
    moved = make_run(tmp_path / "moved", make_config("sys_b", 0, C=1.0), B[0], speakers={"spk-c": "someone"})
    with pytest.raises(ConfigError, match="tests speakers"):
        compare_runs(systems["a"][:1], [moved])


def test_incomplete_run_folders_are_named(tmp_path, systems):
    broken = tmp_path / "unfinished"
    broken.mkdir()
    (broken / "config.yaml").write_text((systems["a"][0] / "config.yaml").read_text())
    with pytest.raises(ConfigError, match="unfinished.*metrics.json"):
        read_run(broken)
    (broken / "metrics.json").write_text((systems["a"][0] / "metrics.json").read_text())
    (broken / "config.yaml").write_text("name: x\nseed: zero\n")
    with pytest.raises(ConfigError, match="unfinished.*integer seed"):
        read_run(broken)
    with pytest.raises(ConfigError, match="nowhere"):
        compare_runs([tmp_path / "nowhere"], systems["b"])


def test_two_systems_split_by_config(systems, tmp_path):
    # A glob also picks up files beside the run folders (GNU time reports): they are not runs.
    report = tmp_path / "alpha.time"
    report.write_text("Elapsed (wall clock) time: 1:00\n")
    a, b = two_systems([*systems["a"], report, *systems["b"]])
    assert [r.path for r in a] == systems["a"] and [r.path for r in b] == systems["b"]
    a, b = two_systems([systems["b"][0], systems["a"][0]])  # two runs: A and B by position
    assert a[0].path == systems["b"][0]
    third = make_run(tmp_path / "third", make_config("sys_c", 0, C=0.1), A[0])
    with pytest.raises(ConfigError, match="3 systems"):
        two_systems([*systems["a"], *systems["b"], third])


def test_table_groups_seeds_by_identity_with_mean_and_std(tmp_path):
    seeds = {
        0: {"spk-a": (6, 5), "spk-b": (8, 7)},
        1: {"spk-a": (9, 4), "spk-b": (7, 7)},
        2: {"spk-a": (5, 5), "spk-b": (10, 8)},
    }
    cost = {0: (100.0, [10.0, 12.0], [700.0, 900.0]), 1: (140.0, [11.0, 15.0], [650.0, 1200.0]), 2: (90.0, [9.0, 9.5], [800.0, 810.0])}
    epochs = {0: [(3, 9), (5, 11)], 1: [(4, 10), (6, 12)], 2: [(2, 8), (8, 14)]}
    folders = []
    for (name, seed) in (("red", 2), ("green", 0), ("blue", 1)):
        wall, cpu, peak = cost[seed]
        extra = {
            "wall_time_s": {"features": 1.0, "total": wall},
            "fold_cost": {f: {"wall_s": 1.0, "user_cpu_s": c, "sys_cpu_s": 0.5, "peak_rss_mib": p}
                          for f, c, p in zip(("spk-a", "spk-b"), cpu, peak)},
            "fit": {f: {"best_epoch": be, "epochs_run": er} for f, (be, er) in zip(("spk-a", "spk-b"), epochs[seed])},
        }
        folders.append(make_run(tmp_path / name, make_config("net", seed), seeds[seed], extra=extra))
    other = make_run(tmp_path / "plain", make_config("svm", 4, C=1.0), {"spk-a": (5, 5), "spk-b": (6, 6)})

    rows = results_table([*folders, other])
    assert [row.system for row in rows] == ["net", "svm"]
    net, svm = rows
    assert net.seeds == (0, 1, 2) and svm.seeds == (4,)
    pooled = [pooled_ua(seeds[s]) for s in (0, 1, 2)]
    assert net.ua.mean == pytest.approx(statistics.mean(pooled))
    assert net.ua.std == pytest.approx(statistics.stdev(pooled))
    assert net.wa.mean == pytest.approx(statistics.mean(pooled))  # balanced classes
    folds = [fold_ua(c) for s in (0, 1, 2) for c in seeds[s].values()]
    assert net.fold_ua.mean == pytest.approx(statistics.mean(folds))
    assert net.fold_ua.std == pytest.approx(statistics.stdev(folds))
    assert net.best_epoch == pytest.approx(statistics.mean(b for s in epochs for b, _ in epochs[s]))
    assert net.epochs_run == pytest.approx(statistics.mean(e for s in epochs for _, e in epochs[s]))
    assert net.wall_s == pytest.approx(statistics.mean(c[0] for c in cost.values()))
    assert net.user_cpu_s == pytest.approx(statistics.mean(sum(c[1]) for c in cost.values()))
    assert net.peak_rss_mib == 1200.0
    # One seed: no spread, and no network or cost recorded.
    assert svm.ua.std is None and svm.best_epoch is None and svm.wall_s is None
    # Per run: one row each, in the order given.
    per_run = results_table(folders, per_run=True)
    assert [row.seeds for row in per_run] == [(2,), (0,), (1,)]
    assert per_run[0].ua.mean == pytest.approx(pooled_ua(seeds[2]))


def test_table_refuses_repeats_and_tells_same_named_systems_apart(tmp_path):
    first = make_run(tmp_path / "one", make_config("svm", 0), {"spk-a": (5, 5), "spk-b": (6, 6)})
    repeat = make_run(tmp_path / "two", make_config("svm", 0), {"spk-a": (5, 5), "spk-b": (6, 6)})
    with pytest.raises(ConfigError, match="same config and seed 0"):
        results_table([first, repeat])
    speaker = make_run(tmp_path / "three", make_config("svm", 0, normalisation="speaker"), {"spk-a": (7, 5), "spk-b": (6, 6)})
    rows = results_table([first, speaker])
    assert [row.system for row in rows] == ["svm [normalisation=global]", "svm [normalisation=speaker]"]


def test_find_runs_skips_what_is_not_a_run(tmp_path, systems):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    report = tmp_path / "alpha.time"
    report.write_text("Elapsed (wall clock) time: 1:00\n")
    runs, skipped = find_runs([systems["a"][0], unfinished, report, tmp_path / "gone", systems["a"][0]])
    assert runs == [systems["a"][0]]
    assert [(p.name, reason) for p, reason in skipped] == [
        ("unfinished", "no metrics.json (unfinished run?)"),
        ("gone", "no such file or folder"),
    ]


runner = CliRunner()


def test_cli_compare_prints_the_paired_statistics(systems):
    expected = compare_runs(systems["a"], systems["b"])
    by_glob = runner.invoke(app, ["compare", *map(str, systems["a"]), *map(str, systems["b"])])
    assert by_glob.exit_code == 0, by_glob.output
    assert by_glob.output.strip() == render_comparison(expected).strip()
    assert "| A above / equal / below B | 4 / 2 / 2 |" in by_glob.output
    assert f"p = {wilcoxon(EXPECTED_DIFFS).pvalue:.3f}" in by_glob.output
    named = runner.invoke(
        app, ["compare", "--json", "--a", str(systems["a"][1]), "--a", str(systems["a"][0]),
              "--b", str(systems["b"][0]), "--b", str(systems["b"][1])]
    )
    assert named.exit_code == 0, named.output
    printed = json.loads(named.output)
    for key, value in expected.to_dict().items():
        assert printed[key] == (pytest.approx(value) if isinstance(value, float) else value), key
    unmatched = runner.invoke(app, ["compare", str(systems["a"][0]), str(systems["b"][1])])
    assert unmatched.exit_code == 2
    assert "only in A" in unmatched.output


def test_cli_table_prints_mean_and_std_and_names_skipped_folders(systems, tmp_path):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    result = runner.invoke(app, ["table", *map(str, systems["a"]), str(unfinished), *map(str, systems["b"])])
    assert result.exit_code == 0, result.output
    assert f"skipped {unfinished}: no metrics.json" in result.stderr
    ua = [pooled_ua(A[s]) for s in (0, 1)]
    line = next(line for line in result.stdout.splitlines() if line.startswith("| sys_a "))
    assert f"| 2: 0, 1 | {statistics.mean(ua):.3f} ± {statistics.stdev(ua):.3f} |" in line
    rows = json.loads(runner.invoke(app, ["table", "--json", *map(str, systems["b"])]).stdout)
    assert rows[0]["system"] == "sys_b" and rows[0]["seeds"] == [0, 1]
    assert rows[0]["ua"]["mean"] == pytest.approx(statistics.mean(pooled_ua(B[s]) for s in (0, 1)))
    nothing = runner.invoke(app, ["table", str(unfinished)])
    assert nothing.exit_code == 2
