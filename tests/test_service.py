"""The HTTP service: real recordings in, timelines out; every bad upload a 4xx JSON error."""

from __future__ import annotations

import asyncio
import io
import json
import time

import httpx
import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from serkit.errors import ConfigError
from serkit.inference import Recognizer
from serkit.service import ServiceLimits, create_app


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer()


@pytest.fixture(scope="module")
def client(recognizer) -> TestClient:
    app = create_app(recognizer, limits=ServiceLimits(max_upload_bytes=2_000_000, max_duration=30.0))
    return TestClient(app)


@pytest.fixture(scope="module")
def emodb_bytes(emodb_file) -> bytes:
    return emodb_file.read_bytes()


def _wav(x: np.ndarray, rate: int = 16000, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, subtype=subtype, format=fmt)
    return buf.getvalue()


def _post(client, data: bytes, name: str = "x.wav", content_type: str = "audio/wav", **params):
    return client.post("/v1/recognize", files={"file": (name, data, content_type)}, params=params)


def test_healthz_and_openapi(client):
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["model"]["labels"][0] == "anger"
    schema = client.get("/openapi.json").json()
    assert "/v1/recognize" in schema["paths"] and "/healthz" in schema["paths"]
    body = schema["paths"]["/v1/recognize"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body


def test_real_emodb_upload_gives_the_same_timeline_as_the_library(client, recognizer, emodb_file, emodb_bytes):
    response = _post(client, emodb_bytes, emodb_file.name, plot="true")
    assert response.status_code == 200, response.text
    result = response.json()
    expected = recognizer.recognize_file(emodb_file).to_dict()
    assert result["file"] == emodb_file.name and result["label"] == expected["label"] == "happiness"
    assert [s["start"] for s in result["segments"]] == [s["start"] for s in expected["segments"]]
    for got, want in zip(result["segments"], expected["segments"]):
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-4)
    import base64

    assert base64.b64decode(result["plot_png"]).startswith(b"\x89PNG")


def test_stereo_upload_per_channel(client, emodb_bytes):
    import soundfile as sf

    x, rate = sf.read(io.BytesIO(emodb_bytes), dtype="float32")
    stereo = np.stack([x, np.zeros_like(x)], axis=1)  # speech on the left only
    result = _post(client, _wav(stereo, rate), "call.wav", per_channel="true", windows="false").json()
    assert result["channels"] == ["left", "right"] and "windows" not in result
    assert {s["channel"] for s in result["segments"]} == {"left"}
    assert result["per_channel"]["right"] is None


BAD_UPLOADS = {
    "not audio": (b"hello, I am a text file pretending to be audio" * 10, "notes.wav", "audio/wav", 422, "unreadable_audio"),
    "empty": (b"", "empty.wav", "audio/wav", 400, "empty_upload"),
    "truncated header": (None, "cut.wav", "audio/wav", 422, "unreadable_audio"),
    "wrong content type": (None, "x.png", "image/png", 415, "unsupported_media_type"),
    "too long": (None, "long.wav", "audio/wav", 413, "audio_too_long"),
    "too large": (None, "big.wav", "audio/wav", 413, "upload_too_large"),
    "non-finite": (None, "nan.wav", "audio/wav", 422, "unusable_audio"),
    "too short": (None, "blip.wav", "audio/wav", 422, "unusable_audio"),
}


def _bad_payload(case: str, emodb_bytes: bytes) -> bytes:
    data = BAD_UPLOADS[case][0]
    if data is not None:
        return data
    if case == "truncated header":
        return emodb_bytes[:30]
    if case == "wrong content type":
        return emodb_bytes
    if case == "too long":
        return _wav(np.zeros(16000 * 31, np.float32))  # 31 s > 30 s limit, 1 MB < upload limit
    if case == "too large":
        return _wav(np.zeros(1_100_000, np.float32), subtype="FLOAT")  # 4.4 MB > 2 MB
    if case == "non-finite":
        x = np.zeros(16000, np.float32)
        x[100] = np.nan
        return _wav(x, subtype="FLOAT")
    if case == "too short":
        return _wav(np.zeros(100, np.float32))
    raise AssertionError(case)


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_uploads_get_a_json_4xx_naming_the_problem_and_the_server_keeps_serving(client, emodb_bytes, case):
    _, name, content_type, status, code = BAD_UPLOADS[case]
    response = _post(client, _bad_payload(case, emodb_bytes), name, content_type)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code and isinstance(body["message"], str) and body["message"]
    if status == 422 and code != "invalid_request":
        assert name in body["message"]
    assert _post(client, emodb_bytes, "after.wav").status_code == 200


def test_malformed_requests(client):
    no_file = client.post("/v1/recognize", data={"other": "x"})
    assert no_file.status_code == 422 and no_file.json()["error"] == "invalid_request"
    assert "file" in no_file.json()["message"]
    raw = client.post("/v1/recognize", content=b"RIFF....", headers={"content-type": "audio/wav"})
    assert raw.status_code == 422 and raw.json()["error"] == "invalid_request"
    bad_query = client.post("/v1/recognize", files={"file": ("a.wav", b"x", "audio/wav")}, params={"plot": "maybe"})
    assert bad_query.status_code == 422
    assert client.get("/v1/nothing").json()["error"] == "not_found"


def _chunked_multipart(data: bytes, name: str = "big.wav"):
    """A multipart body streamed in 64 kB chunks: httpx sends it without Content-Length."""
    boundary = "serkitboundary"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: audio/wav\r\n\r\n").encode()
    body = head + data + f"\r\n--{boundary}--\r\n".encode()
    chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
    return chunks, {"content-type": f"multipart/form-data; boundary={boundary}"}


def test_streamed_upload_without_content_length_is_cut_off_at_the_limit(client, emodb_bytes):
    chunks, headers = _chunked_multipart(_wav(np.zeros(1_100_000, np.float32), subtype="FLOAT"))
    response = client.post("/v1/recognize", content=chunks, headers=headers)
    assert response.status_code == 413 and response.json()["error"] == "upload_too_large"
    assert "request body exceeds" in response.json()["message"]  # counted while streaming, not declared
    chunks, headers = _chunked_multipart(emodb_bytes, "small.wav")  # under the limit: served as usual
    response = client.post("/v1/recognize", content=chunks, headers=headers)
    assert response.status_code == 200 and response.json()["file"] == "small.wav"


def test_decompression_bomb_is_refused_from_the_header(recognizer):
    # 20 minutes of FLAC silence is a few kB: the duration limit must apply before decoding.
    app = create_app(recognizer, limits=ServiceLimits(max_duration=600.0))
    data = _wav(np.zeros(16000 * 1200, np.float32), fmt="FLAC")
    assert len(data) < 200_000
    response = TestClient(app).post("/v1/recognize", files={"file": ("bomb.flac", data, "audio/flac")})
    assert response.status_code == 413 and response.json()["error"] == "audio_too_long"


class SlowRecognizer(Recognizer):
    """The real recognizer, plus a fixed sleep standing in for heavy work, to time concurrency."""

    delay = 2.0

    def recognize(self, audio, config=None):
        time.sleep(self.delay)
        return super().recognize(audio, config)


def test_requests_run_concurrently_and_do_not_block_the_event_loop(recognizer, emodb_bytes):
    slow = SlowRecognizer(recognizer.bundle)
    app = create_app(slow, limits=ServiceLimits(max_workers=4))

    async def run() -> tuple[float, float, list[int]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            files = {"file": ("a.wav", emodb_bytes, "audio/wav")}
            started = time.perf_counter()
            posts = [asyncio.create_task(http.post("/v1/recognize", files=files)) for _ in range(4)]
            await asyncio.sleep(0.2)
            t0 = time.perf_counter()
            health = await http.get("/healthz")
            health_s = time.perf_counter() - t0
            assert health.status_code == 200
            responses = await asyncio.gather(*posts)
            return time.perf_counter() - started, health_s, [r.status_code for r in responses]

    total, health_s, codes = asyncio.run(run())
    assert codes == [200] * 4
    # Four 2-second sleeps in series would take >= 8 s; in parallel about 2 s plus the real work.
    assert total < 6.0, total
    assert health_s < 0.5, health_s


def test_binds_loopback_by_default():
    import inspect

    from serkit.cli import serve as serve_command
    from serkit.service import serve

    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(serve_command).parameters["host"].default == "127.0.0.1"


def test_adaptation_and_abstention_options(client, recognizer, emodb_root):
    from serkit.audio import load_audio
    from serkit.inference import InferenceConfig

    # EmoDB utterances one after another (< 30 s): one recording whose windows are the batch.
    names = sorted(p.name for p in (emodb_root / "wav").glob("*.wav"))[:10]
    x = np.concatenate([load_audio(emodb_root / "wav" / n).samples[0] for n in names])
    data = _wav(x)
    response = _post(client, data, adapt="batch", min_confidence="0.6", min_batch="5")
    assert response.status_code == 200, response.text
    config = InferenceConfig(adapt="batch", min_confidence=0.6, min_batch=5)
    expected = recognizer.recognize(load_audio(io.BytesIO(data)), config).to_dict()
    assert [w["label"] for w in response.json()["windows"]] == [w["label"] for w in expected["windows"]]
    assert "uncertain" in {w["label"] for w in expected["windows"]} and not expected["adaptation"]
    plain = recognizer.recognize(load_audio(io.BytesIO(data))).to_dict()
    assert [w["probabilities"] for w in plain["windows"]] != [w["probabilities"] for w in expected["windows"]]
    for bad in ({"adapt": "corpus"}, {"min_confidence": "1.5"}):
        refused = _post(client, data, **bad)
        assert refused.status_code == 422 and refused.json()["error"] == "invalid_request"


# --------------------------------------------------------------------------- memory, time, token, docs


def _worst_upload(emodb_file) -> bytes:
    """150 s at 192 kHz in 8 channels, the most samples the default limits accept: a real EmoDB
    utterance (upsampled) at 10 s in channel 1, silence elsewhere; a FLAC of about 0.4 MB."""
    import soxr

    rate, channels = 192_000, 8
    speech, native = sf.read(emodb_file, dtype="float32")
    speech = soxr.resample(speech, native, rate, quality="VHQ")
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", rate, channels, "PCM_16", format="FLAC") as f:
        for second in range(150):
            block = np.zeros((rate, channels), np.float32)
            piece = speech[(second - 10) * rate : (second - 9) * rate] if second >= 10 else speech[:0]
            block[: len(piece), 0] = piece
            f.write(block)
    return buf.getvalue()


def test_the_worst_accepted_upload_stays_inside_its_memory_share(recognizer, emodb_file):
    import dataclasses
    import tracemalloc

    from serkit.service import check_header, memory_share, recognize_bytes

    limits = ServiceLimits()
    data = _worst_upload(emodb_file)
    header = check_header(data, "worst.flac", limits)
    assert header.frames * header.channels == limits.max_samples  # the most the limits accept
    recognize_bytes(recognizer, _wav(np.zeros(16000, np.float32)), "warm.wav", limits, recognizer.config, True)  # imports
    for per_channel in (False, True):
        config = dataclasses.replace(recognizer.config, per_channel=per_channel)
        share = memory_share(recognizer, header, limits, config)
        tracemalloc.start()
        try:
            result = recognize_bytes(recognizer, data, "worst.flac", limits, config, plot=True)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert result["label"] == "happiness" and result["segments"][0]["start"] == pytest.approx(10.0, abs=0.3)
        assert peak <= 4 * share, (per_channel, peak, 4 * share)
        assert 4 * share <= (30 if not per_channel else 170) * 2**20  # docs/security.md
        assert share <= limits.memory_samples


def test_the_memory_budget_is_shared_between_requests(recognizer, emodb_bytes):
    import threading

    from serkit.service_http import BudgetTimeout, SampleBudget

    budget = SampleBudget(100)
    first = budget.hold(60, wait=1)
    first.__enter__()
    with pytest.raises(BudgetTimeout), budget.hold(50, wait=0.05):
        pass
    threading.Timer(0.2, first.__exit__, (None, None, None)).start()  # another request finishes
    with budget.hold(50, wait=10):  # waited for it
        assert budget.used == 50
    assert budget.used == 0
    with pytest.raises(ValueError), budget.hold(101, wait=0.05):
        pass
    # a recording whose decoding can never fit the service's budget is refused at once
    small = create_app(recognizer, limits=ServiceLimits(memory_samples=1_000_000))
    response = _post(TestClient(small), _wav(np.zeros(16000 * 120, np.float32)), "two-minutes.wav")
    assert response.status_code == 413 and response.json()["error"] == "audio_too_large"
    assert "budget" in response.json()["message"]


def test_a_full_budget_makes_requests_wait_then_answer_busy(recognizer, emodb_bytes, monkeypatch):
    from serkit import service

    app = create_app(recognizer)
    http = TestClient(app)
    monkeypatch.setattr(service, "BUDGET_WAIT_S", 0.2)
    with app.state.budget.hold(app.state.budget.total, wait=1):
        response = _post(http, emodb_bytes, "waits.wav")
    assert response.status_code == 503 and response.json()["error"] == "busy"
    assert _post(http, emodb_bytes, "after.wav").status_code == 200


def test_a_header_with_too_many_samples_is_refused_before_decoding(client):
    from serkit import service

    limits = ServiceLimits(max_samples=16000 * 10)
    with pytest.raises(service.ServiceError) as err:
        service.check_header(_wav(np.zeros((16000 * 6, 2), np.float32)), "stereo.wav", limits)  # 12 s of samples
    assert err.value.code == "audio_too_large" and "stereo.wav" in err.value.message


def test_a_slow_body_is_cut_off(recognizer, emodb_bytes):
    app = create_app(recognizer, limits=ServiceLimits(body_timeout=0.5))

    async def run() -> httpx.Response:
        async def trickle():
            yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"slow.wav\"\r\n\r\n"
            await asyncio.sleep(5)
            yield emodb_bytes + b"\r\n--b--\r\n"

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await http.post("/v1/recognize", content=trickle(),
                                   headers={"content-type": "multipart/form-data; boundary=b"})

    response = asyncio.run(run())
    assert response.status_code == 408 and response.json()["error"] == "request_timeout"


def test_a_token_guards_the_api_but_not_the_page(recognizer, emodb_bytes):
    http = TestClient(create_app(recognizer, token="s3cret-token"))
    files = {"file": ("a.wav", emodb_bytes, "audio/wav")}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
        response = http.post("/v1/recognize", files=files, headers=headers)
        assert response.status_code == 401 and response.json()["error"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
    assert http.get("/openapi.json").status_code == 401
    good = {"Authorization": "Bearer s3cret-token"}
    assert http.post("/v1/recognize", files=files, headers=good).status_code == 200
    assert http.get("/").status_code == 200 and http.get("/app.js").status_code == 200
    assert http.get("/healthz").json() == {"status": "ok", "token_required": True}  # nothing about the model
    assert http.get("/healthz", headers=good).json()["model"]["labels"][0] == "anger"
    with pytest.raises(ConfigError, match="empty"):
        create_app(recognizer, token=" ")


def test_answers_show_no_paths_or_python_objects(client, recognizer):
    health = client.get("/healthz").json()
    assert health["model"]["name"] == "default_model"
    assert str(recognizer.bundle.path) not in json.dumps(health) and "/" not in json.dumps(health["model"])
    message = _post(client, b"\x00\x01 not audio" * 40, "junk.wav").json()["message"]
    assert message.startswith("junk.wav: cannot decode audio") and " at 0x" not in message and "<_io" not in message


def test_docs_are_served_offline(client):
    import re

    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/v1/recognize" in page.text and "per_channel" in page.text
    assert "<script" not in page.text and not re.search(r"(src|href)=\"(https?:)?//", page.text)
    assert client.get("/redoc").status_code == 404


def test_serve_sets_timeouts_and_warns_on_an_open_bind_without_a_token(recognizer, monkeypatch, caplog):
    import uvicorn

    from serkit import service

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    monkeypatch.setattr(service, "create_app", lambda *a, **kw: object())
    with caplog.at_level("WARNING", logger="serkit.service"):
        service.serve(host="0.0.0.0", limits=ServiceLimits(keep_alive_timeout=7))
    assert calls[-1]["timeout_keep_alive"] == 7 and calls[-1]["limit_concurrency"] == 64
    assert calls[-1]["http"].__name__ == "HeadTimeout"
    assert "without a token" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="serkit.service"):
        service.serve(host="0.0.0.0", token="t")
        service.serve(host="127.0.0.1")
        service.serve(host="::1")
    assert "without a token" not in caplog.text


def test_cli_serve_takes_the_token_from_the_environment(monkeypatch):
    from typer.testing import CliRunner

    from serkit import service
    from serkit.cli import app

    seen = {}
    monkeypatch.setattr(service, "serve", lambda model, **kw: seen.update(kw))
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"], env={"SERKIT_TOKEN": "from-env"})
    assert result.exit_code == 0, result.output
    assert seen["token"] == "from-env" and seen["host"] == "0.0.0.0"


def test_a_client_that_trickles_its_headers_is_disconnected(recognizer):
    import socket
    import threading

    import uvicorn

    from serkit.service_http import head_timeout_protocol

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(create_app(recognizer), host="127.0.0.1", port=port, log_level="warning",
                            http=head_timeout_protocol(0.5))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(100):
            if server.started:
                break
            time.sleep(0.1)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200  # whole heads pass
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            slow.sendall(b"POST /v1/recognize HTTP/1.1\r\nHost: x\r\n")  # ... and the rest never comes
            assert slow.recv(1024) == b""  # closed by the server, not by our 10 s timeout
        with socket.create_connection(("127.0.0.1", port), timeout=10) as kept:  # a second request on a kept connection
            kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b"}}"):  # the whole answer: headers, then the JSON body
                answer += kept.recv(4096)
            assert answer.startswith(b"HTTP/1.1 200")
            kept.sendall(b"GET /healthz HTTP/1.1\r\n")
            time.sleep(0.2)
            kept.sendall(b"Host: x\r\n")  # trickling, so the keep-alive timer is not what closes it
            assert kept.recv(1024) == b""
    finally:
        server.should_exit = True
        thread.join(timeout=10)
