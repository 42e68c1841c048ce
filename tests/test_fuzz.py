"""Fuzzing (hypothesis): the audio loader and the upload endpoint fail only in documented ways.

Inputs are random bytes and real EmoDB audio (WAV, FLAC, OGG) with bytes flipped, cut off or
inserted, in header and data alike. The loader must return valid audio or raise an
:class:`~serkit.errors.AudioError`; the endpoint must answer 200 or a documented 4xx JSON error,
never a 5xx. Runs are derandomised, so CI sees the same examples every time.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serkit.audio import Audio, load_audio
from serkit.errors import AudioError
from serkit.inference import Recognizer
from serkit.service import ServiceLimits, create_app

DOCUMENTED = {"empty_upload", "bad_request", "upload_too_large", "audio_too_long", "unsupported_media_type",
              "invalid_request", "unreadable_audio", "unusable_audio"}
SETTINGS = {"deadline": None, "derandomize": True, "suppress_health_check": [HealthCheck.too_slow]}


def _seeds(emodb_file) -> dict[str, bytes]:
    x, rate = sf.read(emodb_file, dtype="float32")
    x = x[: rate // 2]  # half a second keeps each example fast
    out = {}
    for fmt, subtype in (("WAV", "PCM_16"), ("WAV", "FLOAT"), ("FLAC", "PCM_16"), ("OGG", "VORBIS")):
        buf = io.BytesIO()
        sf.write(buf, x, rate, format=fmt, subtype=subtype)
        out[f"{fmt}-{subtype}"] = buf.getvalue()
    return out


SEEDS: dict[str, bytes] = {}


@pytest.fixture(scope="module", autouse=True)
def seeds(emodb_file):
    SEEDS.update(_seeds(emodb_file))


@st.composite
def mutated(draw) -> bytes:
    """A real audio file with a few random edits: flips, overwrites, cuts, insertions."""
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "overwrite", "truncate", "insert", "header"]))
        pos = draw(st.integers(0, len(data) - 1)) if data else 0
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite" and data:
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[pos : pos + len(chunk)] = chunk
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "header" and len(data) > 64:
            at = draw(st.integers(0, 60))  # sizes, rates and channel counts live here
            data[at : at + 4] = draw(st.binary(min_size=4, max_size=4))
    return bytes(data)


payloads = st.one_of(st.binary(max_size=2048), mutated())


def _check_audio(audio: Audio) -> None:
    assert audio.samples.ndim == 2 and audio.samples.dtype == np.float32
    assert audio.sample_rate > 0 and audio.n_samples > 0
    assert np.all(np.isfinite(audio.samples)) and np.max(np.abs(audio.samples)) <= 1.0


@settings(max_examples=300, **SETTINGS)
@given(payloads)
def test_loader_returns_valid_audio_or_raises_an_audio_error(data):
    try:
        audio = load_audio(data, name="fuzz")
    except AudioError as exc:
        assert exc.path == "fuzz" and exc.problem
        return
    _check_audio(audio)


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app(Recognizer(), limits=ServiceLimits(max_upload_bytes=200_000, max_duration=20.0)),
                      raise_server_exceptions=False)


CONTENT_TYPES = ["audio/wav", "audio/flac", "application/octet-stream", "text/plain", "", "audio/x-anything"]


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
          deadline=None, derandomize=True)
@given(data=payloads, content_type=st.sampled_from(CONTENT_TYPES), name=st.text(max_size=20))
def test_upload_endpoint_answers_200_or_a_documented_4xx(client, data, content_type, name):
    response = client.post("/v1/recognize", files={"file": (name or "f", data, content_type)})
    assert response.status_code in (200, 400, 413, 415, 422), (response.status_code, response.text)
    body = response.json()
    if response.status_code == 200:
        assert set(body["labels"]) and isinstance(body["segments"], list)
    else:
        assert body["error"] in DOCUMENTED and body["message"]
