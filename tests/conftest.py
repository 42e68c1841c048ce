"""Shared test fixtures: the real corpora beside the repository.

The corpora live in ``../shared/corpora`` (override with ``SERKIT_SHARED``). They are required:
a missing corpus fails the run loudly instead of skipping tests.

RAVDESS and TESS are fetched on demand (``../shared/corpora/fetchable/README.md``) into
``/tmp/corpora/ravdess`` and ``/tmp/corpora/tess`` (override with ``SERKIT_RAVDESS`` and
``SERKIT_TESS``). CI does not have them: their tests are skipped, with the reason, when a folder is
absent; a folder that is there must hold the release byte for byte (every SHA-256 is checked).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SERKIT_SHARED", REPO.parent / "shared")).resolve()
FETCHED = {
    "ravdess": Path(os.environ.get("SERKIT_RAVDESS", "/tmp/corpora/ravdess")),
    "tess": Path(os.environ.get("SERKIT_TESS", "/tmp/corpora/tess")),
}


def _corpus(name: str) -> Path:
    path = SHARED / "corpora" / name
    if not path.is_dir():
        raise RuntimeError(f"real corpus {path} is missing: tests need ../shared beside the repository (or SERKIT_SHARED)")
    return path


def _fetched(name: str) -> Path:
    """The fetched release ``name``, every file checked against ``fetchable/<name>.SHA256SUMS``;
    the test is skipped (reason printed with ``-rs``) when the folder is absent."""
    root, sums = FETCHED[name], SHARED / "corpora" / "fetchable" / f"{name}.SHA256SUMS"
    if not root.is_dir():
        pytest.skip(
            f"NOT TESTED: the {name.upper()} release is not at {root}; fetch it as {sums.parent}/README.md says "
            f"(or set SERKIT_{name.upper()}) to run this test on the real corpus"
        )
    expected = dict(reversed(line.split(maxsplit=1)) for line in sums.read_text().splitlines())
    wrong = [rel for rel, digest in expected.items() if not (root / rel).is_file()
             or hashlib.sha256((root / rel).read_bytes()).hexdigest() != digest]  # fmt: skip
    if wrong:
        raise RuntimeError(f"{root}: {len(wrong)} files missing or differing from {sums}, e.g. {wrong[:3]}")
    return root


@pytest.fixture(scope="session")
def tess_release() -> Path:
    """Root of the fetched TESS release (``<SPK>_<emotion>/*.wav``, 2800 files), checked byte for byte."""
    return _fetched("tess")


@pytest.fixture(scope="session")
def ravdess_release() -> Path:
    """Root of the fetched RAVDESS speech release (``Actor_XX/*.wav``, 1440 files), checked byte for byte."""
    return _fetched("ravdess") / "Audio_Speech_Actors_01-24"


@pytest.fixture
def count_folds(monkeypatch):
    """``count_folds(interrupt_at=0)``: count the calls of ``serkit.experiment.run_fold`` from then
    on, raising ``KeyboardInterrupt`` on call ``interrupt_at`` (0: never); returns ``{"n": calls}``.
    Each call replaces the previous counter (it wraps the real ``run_fold``, not the last wrapper)."""
    from serkit import experiment

    real = experiment.run_fold

    def arm(interrupt_at: int = 0) -> dict[str, int]:
        calls = {"n": 0}

        def counted(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == interrupt_at:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(experiment, "run_fold", counted)
        return calls

    return arm


@pytest.fixture(scope="module")
def torch_one_thread():
    """Run a module's torch code on one thread (LSTM backward on 2 busy cores ran ~20x slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def emodb_root() -> Path:
    """Root of the real EmoDB copy (``wav/*.wav``, 535 files, 16 kHz mono)."""
    return _corpus("emodb")


@pytest.fixture(scope="session")
def emovo_root() -> Path:
    """Root of the real EMOVO copy (``<speaker>/*.flac``, 588 files, 48 kHz, mostly stereo)."""
    return _corpus("emovo")


@pytest.fixture(scope="session")
def emodb_file(emodb_root: Path) -> Path:
    """One real EmoDB utterance (speaker 03, text a01, happiness)."""
    return emodb_root / "wav" / "03a01Fa.wav"


@pytest.fixture(scope="session")
def emovo_file(emovo_root: Path) -> Path:
    """One real, genuinely stereo EMOVO utterance (speaker m1, anger)."""
    return emovo_root / "m1" / "rab-m1-b1.flac"
