"""Shared test fixtures: the real corpora beside the repository.

The corpora live in ``../shared/corpora`` (override with ``SERKIT_SHARED``). They are required:
a missing corpus fails the run loudly instead of skipping tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SERKIT_SHARED", REPO.parent / "shared")).resolve()


def _corpus(name: str) -> Path:
    path = SHARED / "corpora" / name
    if not path.is_dir():
        raise RuntimeError(f"real corpus {path} is missing: tests need ../shared beside the repository (or SERKIT_SHARED)")
    return path


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
