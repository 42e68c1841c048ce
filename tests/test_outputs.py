"""Outputs that survive careless use: unique names, atomic sets, one run per folder, leftovers
cleaned, one-line errors in the command line's words, bracketed text kept."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import serkit.io as sio
from serkit.cli import app
from serkit.errors import OutputError, OutputExistsError
from serkit.io import (
    atomic_directory,
    atomic_write_set,
    output_lock,
    remove_stale_temp_files,
)

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()
UTTERANCES = ("03a01Wa.wav", "08a02Fe.wav")


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(src.read_bytes())
    return dst


def _disk_full_on(suffix: str, monkeypatch) -> None:
    """Make writing any file whose temporary name has ``suffix`` fail with ENOSPC."""
    real = sio._write_file

    def write(path: Path, data: bytes) -> None:
        if f"{suffix}." in path.name:
            path.write_bytes(data[: len(data) // 2])  # what a full disk leaves: part of the file
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data)

    monkeypatch.setattr(sio, "_write_file", write)


# --------------------------------------------------------------------------- serkit predict --out


def test_two_files_of_one_name_in_different_folders_keep_their_own_outputs(emodb_root, tmp_path):
    a = _copy(emodb_root / "wav" / UTTERANCES[0], tmp_path / "in" / "a" / "x.wav")  # anger
    b = _copy(emodb_root / "wav" / UTTERANCES[1], tmp_path / "in" / "b" / "x.wav")  # fear
    result = runner.invoke(app, ["predict", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    labels = {row["file"]: row["label"] for row in json.loads(result.stdout)}
    for src, name in ((a, "a/x"), (b, "b/x")):
        saved = json.loads((tmp_path / "out" / f"{name}.json").read_text())
        assert saved["label"] == labels[str(src)]
        assert (tmp_path / "out" / f"{name}.csv").is_file() and (tmp_path / "out" / f"{name}.png").is_file()
    assert labels[str(a)] != labels[str(b)]  # two different results, neither overwritten


def test_a_full_disk_leaves_none_of_a_files_set_and_stops_with_one_line(emodb_root, tmp_path, monkeypatch):
    src = _copy(emodb_root / "wav" / UTTERANCES[0], tmp_path / "in" / "x.wav")
    _disk_full_on(".png", monkeypatch)
    result = runner.invoke(app, ["predict", str(src), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"error: cannot write {tmp_path / 'out' / 'x.png'}: No space left on device"], result.output
    assert "Traceback" not in result.output
    assert list((tmp_path / "out").iterdir()) == []  # no CSV or JSON without its PNG, no temporary files


def test_atomic_write_set_is_all_or_nothing(tmp_path, monkeypatch):
    atomic_write_set({tmp_path / "a.csv": b"old a", tmp_path / "a.json": b"old j"})
    _disk_full_on(".json", monkeypatch)
    with pytest.raises(OutputError, match="No space left"):
        atomic_write_set({tmp_path / "a.csv": b"new a", tmp_path / "a.json": b"new j"})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {"a.csv": b"old a", "a.json": b"old j"}


def test_out_that_is_a_file_or_unwritable_is_one_line(emodb_root, tmp_path):
    src = emodb_root / "wav" / UTTERANCES[0]
    blocker = tmp_path / "taken"
    blocker.write_text("a file")
    for out in (blocker, blocker / "sub"):  # a file; a folder that cannot be made (its parent is a file)
        result = runner.invoke(app, ["predict", str(src), "--out", str(out)])
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1, result.output
        assert str(blocker) in result.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_out_in_a_read_only_folder_is_one_line(emodb_root, tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o500)
    result = runner.invoke(app, ["predict", str(emodb_root / "wav" / UTTERANCES[0]), "--out", str(locked / "out")])
    assert result.exit_code == 2 and "Permission denied" in result.output


def test_an_unreadable_file_is_skipped_and_the_rest_labelled(emodb_root, tmp_path, monkeypatch):
    good = _copy(emodb_root / "wav" / UTTERANCES[0], tmp_path / "good.wav")
    locked = _copy(emodb_root / "wav" / UTTERANCES[1], tmp_path / "locked [take 1].wav")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(locked) else real_access(p, mode, **kw))
    result = runner.invoke(app, ["predict", str(locked), str(good)], env={"COLUMNS": "250"})
    assert result.exit_code == 1, result.output  # reported and skipped, not a usage error
    assert "anger" in result.stdout
    assert f"skipped {locked}: permission denied" in result.output  # brackets in the name kept


def test_stale_temporary_files_are_removed_live_ones_kept(tmp_path):
    stale, live, other = tmp_path / ".x.csv.0123456789ab.tmp", tmp_path / ".y.csv.ba9876543210.tmp", tmp_path / ".notes.tmp"
    for path in (stale, live, other):
        path.write_text("partial")
    old = time.time() - sio.STALE_TEMP_S - 60
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    assert remove_stale_temp_files(tmp_path) == 1
    assert not stale.exists() and live.exists() and other.exists()  # only our own temporary names


def test_the_feature_cache_drops_temporary_files_of_killed_runs(emodb_root, tmp_path):
    import pandas as pd

    from serkit.features.base import get_extractor
    from serkit.features.extract import cache_folder, extract_features

    extractor = get_extractor("logmel", {})
    folder = cache_folder(tmp_path, extractor)
    folder.mkdir(parents=True)
    stale = folder / ".abc.npy.0123456789ab.tmp"
    stale.write_bytes(b"\x93NUMPY half")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    table = pd.DataFrame({"utterance_id": ["u"], "path": [str(emodb_root / "wav" / UTTERANCES[0])]})
    extract_features(table, extractor, cache_dir=tmp_path, progress=False)
    assert not stale.exists() and len(list(folder.glob("*.npy"))) == 1


# --------------------------------------------------------------------------- one run per folder


def _hold_lock(out: Path) -> subprocess.Popen:
    code = ("import sys, time; from serkit.io import output_lock; lock = output_lock(sys.argv[1]); lock.__enter__(); "
            "print('held', flush=True); time.sleep(120)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_into_a_live_runs_folder_is_refused_clearly(emodb_root, tmp_path):
    out = tmp_path / "run"
    out.with_name("run.folds").mkdir()
    (out.with_name("run.folds") / "03.npz").write_bytes(b"a fold the live run just finished")
    holder = _hold_lock(out)
    try:
        args = ["experiment", str(REPO / "recipes" / "egemaps_svm.yaml"), "--root", str(emodb_root), "--out", str(out), "-q"]
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert f"process {holder.pid}" in result.output and "is writing" in result.output
        assert "interrupted" not in result.output  # the live run's folds are not called interrupted
        with pytest.raises(OutputError, match="another serkit run"), atomic_directory(out):
            pass
    finally:
        holder.kill()
        holder.wait()
    with output_lock(out):  # the kernel dropped the dead holder's lock
        assert out.with_name("run.lock").is_file()
    assert not out.with_name("run.lock").exists()


def test_leftovers_of_a_killed_run_go_when_the_next_run_takes_the_folder(tmp_path):
    out = tmp_path / "run"
    partial = out.with_name("run.partial-1a2b3c4d")
    (partial / "model").mkdir(parents=True)
    out.with_name("run.old-5e6f7a8b").mkdir()
    folds = out.with_name("run.folds")
    folds.mkdir()
    (folds / "01.npz").write_bytes(b"kept fold")
    (folds / ".02.npz.0123456789ab.tmp").write_bytes(b"half a fold")
    neighbour = tmp_path / "run2.partial-00000000"  # another folder's: not ours to remove
    neighbour.mkdir()
    with atomic_directory(out) as tmp:
        (tmp / "metrics.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "run.folds", "run2.partial-00000000"]
    assert [p.name for p in folds.iterdir()] == ["01.npz"]


def test_existing_output_says_overwrite_in_the_words_of_the_caller(emodb_root, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    with pytest.raises(OutputExistsError, match="pass overwrite=True"):
        sio.check_output_dir(out)
    result = runner.invoke(app, ["experiment", str(REPO / "recipes" / "egemaps_svm.yaml"), "--root", str(emodb_root),
                                 "--out", str(out), "-q"])
    assert result.exit_code == 2
    assert "--overwrite" in result.output and "overwrite=True" not in result.output


# --------------------------------------------------------------------------- messages through rich


def test_bracketed_text_reaches_the_user(monkeypatch):
    monkeypatch.setitem(sys.modules, "serkit.service", None)  # as if the serve extra were missing
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 2
    assert "pip install 'serkit[serve]'" in result.output


def test_run_folders_that_cannot_be_written_are_one_line(emodb_root, tmp_path):
    blocker = tmp_path / "taken"
    blocker.write_text("a file")
    recipe = str(REPO / "recipes" / "egemaps_svm.yaml")
    for out, expected in ((blocker, "exists and is not a folder"), (blocker / "run", "cannot write")):
        result = runner.invoke(app, ["experiment", recipe, "--root", str(emodb_root), "--out", str(out), "-q"])
        assert result.exit_code == 2 and expected in result.output, result.output
        assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1
    # a disk that fills while the run folder is written: one OutputError naming the folder, nothing left
    full = pytest.raises(OutputError, match=f"cannot write {tmp_path / 'run'}: No space left on device")
    with full, atomic_directory(tmp_path / "run") as tmp:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp / "predictions.csv"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
