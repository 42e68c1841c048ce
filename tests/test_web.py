"""The web page end to end in headless Chromium (Debian's ``chromium`` driven by Playwright).

Needs ``/usr/bin/chromium`` (``apt-get install -y chromium``) and the ``playwright`` Python
package; a missing browser fails these tests, it does not skip them. The service runs in a
uvicorn thread on 127.0.0.1.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
import uvicorn

from serkit.inference import Recognizer
from serkit.service import create_app

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-extensions", "--disable-sync", "--no-first-run", "--mute-audio"]


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer()


@pytest.fixture(scope="module")
def server(recognizer):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(recognizer), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    else:
        raise RuntimeError("the service did not start within 30 s")
    yield url
    srv.should_exit = True
    thread.join(timeout=10)


def _launch(playwright, extra=()):
    if not Path(CHROMIUM).is_file() or shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: the web tests need Debian's chromium (apt-get install -y chromium)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[*FLAGS, *extra])


@pytest.fixture(scope="module")
def playwright():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


def _segments_table(page) -> list[list[str]]:
    return page.eval_on_selector_all(
        "#segments tbody tr", "rows => rows.map(r => Array.from(r.cells).map(c => c.textContent))")


def test_upload_a_real_emodb_file_and_see_its_timeline(playwright, server, recognizer, emodb_file, tmp_path):
    expected = recognizer.recognize_file(emodb_file).to_dict()
    browser = _launch(playwright)
    try:
        page = browser.new_page(viewport={"width": 1100, "height": 1000})
        page.goto(server + "/")
        name = recognizer.bundle.meta["model"]["name"]
        page.wait_for_function(f"document.getElementById('model').textContent.includes('{name}')")
        page.set_input_files("#file", str(emodb_file))
        page.click("#upload")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('Done')", timeout=60_000)
        # The plot arrived and decoded as an image.
        assert page.eval_on_selector("#plot", "img => img.complete && img.naturalWidth") == 1000
        rows = _segments_table(page)
        assert len(rows) == len(expected["segments"]) == 1
        channel, start, _end, label, *probs = rows[0]
        assert (channel, label) == ("mix", expected["label"])
        assert float(start) == pytest.approx(expected["segments"][0]["start"], abs=0.01)
        assert [float(p) for p in probs] == pytest.approx(list(expected["segments"][0]["probabilities"].values()), abs=0.006)
        assert expected["label"] in page.inner_text("#summary")
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    finally:
        browser.close()


def test_a_bad_file_shows_the_servers_error(playwright, server, tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    browser = _launch(playwright)
    try:
        page = browser.new_page()
        page.goto(server + "/")
        page.set_input_files("#file", str(bad))
        page.click("#upload")
        page.wait_for_function("document.getElementById('status').className === 'error'", timeout=30_000)
        text = page.inner_text("#status")
        assert "422" in text and "unreadable_audio" in text and "notes.wav" in text
    finally:
        browser.close()


def test_record_from_the_microphone(playwright, server, emodb_root, tmp_path):
    # Chromium's fake microphone plays a real EmoDB utterance, with silence around it.
    x, rate = sf.read(emodb_root / "wav" / "03a01Wa.wav", dtype="float32")
    pad = np.zeros(rate // 2, np.float32)
    mic = tmp_path / "mic.wav"
    sf.write(mic, np.concatenate([pad, x, pad, pad]), rate, subtype="PCM_16")
    browser = _launch(playwright, ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                                   f"--use-file-for-fake-audio-capture={mic}%noloop"])
    try:
        context = browser.new_context(permissions=["microphone"])
        page = context.new_page()
        page.goto(server + "/")
        page.click("#record")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('Recording')")
        page.wait_for_timeout(3500)
        page.click("#stop")
        page.wait_for_function(
            "['Done', 'Error'].some(s => document.getElementById('status').textContent.startsWith(s))", timeout=60_000)
        assert page.inner_text("#status").startswith("Done"), page.inner_text("#status")
        assert "recording.wav" in page.inner_text("#summary")
        rows = _segments_table(page)
        assert len(rows) >= 1  # the utterance was heard and labelled
        start, end = float(rows[0][1]), float(rows[-1][2])
        assert end - start > 1.0
    finally:
        browser.close()
