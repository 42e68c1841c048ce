"""Helpers of the sweep and cluster tests: a small real-EmoDB corpus, sweep files, a worker killer.

Cheap on purpose: four EmoDB speakers (165 utterances) through eGeMAPS or IS09 functionals and a
linear SVM, leave-one-speaker-out; the cluster tests import :class:`KillOnce` on the workers by
this module's name (the workers get the test process's ``sys.path``).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pandas as pd
import yaml
from distributed.diagnostics.plugin import WorkerPlugin

REPO = Path(__file__).resolve().parents[1]
SPEAKERS = ("03", "09", "10", "12")


def emodb_manifest(root: Path, emodb: Path, *, bad_file: bool = True) -> Path:
    """A CSV-manifest corpus of four real EmoDB speakers (labels: EmoDB's letter codes), plus one
    corrupt file of speaker 03 when ``bad_file``; returns its root."""
    root.mkdir(parents=True, exist_ok=True)
    rows = [{"path": str(path), "speaker": path.name[:2], "label": path.name[5]}
            for path in sorted((emodb / "wav").glob("*.wav")) if path.name[:2] in SPEAKERS]  # fmt: skip
    if bad_file:
        (root / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage")
        rows.append({"path": "corrupt.wav", "speaker": "03", "label": "W"})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


def write_sweep(folder: Path, corpus: Path, out: Path, **extra) -> Path:
    """A sweep of eGeMAPS and IS09 functionals + linear SVM (baseline eGeMAPS) x seeds 0 and 1 on ``corpus``."""
    recipes = [{"recipe": str(REPO / "recipes" / "egemaps_svm.yaml"), "label": "egemaps"},
               {"recipe": str(REPO / "recipes" / "is09_svm.yaml"), "label": "is09"}]  # fmt: skip
    spec = {
        "out": str(out),
        "recipes": recipes,
        "corpora": [{"name": "manifest", "root": str(corpus)}],
        "seeds": [0, 1],
        "baseline": "egemaps",
        **extra,
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def sweep_args(cache: Path) -> list[str]:
    """The ``--set`` overrides the tests give a sweep: a test-local cache, one extraction process."""
    return [f"cache_dir={cache}", "n_jobs=1"]


COST_KEYS = ("runs", "wall_s", "user_cpu_s", "peak_rss_mib")


def table_numbers(json_path: Path) -> list[dict]:
    """A sweep table's rows without what depends on the machine (folders and cost)."""
    rows = json.loads(json_path.read_text())["rows"]
    return [{key: value for key, value in row.items() if key not in COST_KEYS} for row in rows]


class KillOnce(WorkerPlugin):
    """Kills its worker process (SIGKILL) when a task whose key starts with ``prefix`` starts
    executing, once per ``marker`` file (created atomically, holding the task's key)."""

    def __init__(self, prefix: str, marker: str):
        self.prefix, self.marker = prefix, marker

    def transition(self, key, start, finish, **kwargs) -> None:
        if finish != "executing" or not str(key).startswith(self.prefix):
            return
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, str(key).encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)


def plus_total(item: int, values) -> int:
    """A task of the cluster tests: ``item`` plus the sum of a scattered array."""
    return int(item + values.sum())
