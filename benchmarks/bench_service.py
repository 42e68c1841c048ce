"""Load test of ``serkit serve`` on loopback: requests/s and p50/p95 latency, failures counted.

Starts the service (shipped default model) in a child process on 127.0.0.1 and a free port,
then for 1, 4 and 16 concurrent clients sends a 3.0-second real EmoDB recording, first alone,
then with malformed uploads mixed in (every other request: not audio, truncated header, empty,
an image content type, a 20-minute FLAC of silence, NaN samples). Every run is bounded in
request count and wall time and only ever talks to 127.0.0.1. Good requests must all answer
200 and malformed ones a 4xx; anything else is a failure and the script exits 1.

``--memory`` measures memory instead: the service's peak resident memory (``VmHWM`` of the
child process, Linux) after start-up and a warm-up request, then after the worst upload the
default limits accept (150 s at 192 kHz in 8 channels, a FLAC of about 0.4 MB: a real EmoDB
utterance at 10 s in channel 1, silence elsewhere) as one mix, then per channel, then ``--workers``
of those at once. It prints each peak beside the figure ``docs/security.md`` gives and the
recording's size decoded whole as float32 (879 MiB).

Usage::

    python benchmarks/bench_service.py [--requests 48] [--levels 1 4 16] [--workers 4]
        [--emodb ../shared/corpora/emodb] [--json results/bench_service.json]
    python benchmarks/bench_service.py --memory [--workers 4]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
RUN_LIMIT_S = 300.0  # per (level, mix) run


def three_second_file(emodb: Path) -> bytes:
    """The first 3.0 s of EmoDB 16b10Lb (speaker 16, 3.44 s) as 16-bit WAV."""
    x, rate = sf.read(emodb / "wav" / "16b10Lb.wav", dtype="float32")
    buf = io.BytesIO()
    sf.write(buf, x[: 3 * rate], rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def malformed(good: bytes) -> list[tuple[str, bytes, str]]:
    """(name, bytes, content type) of uploads the service must refuse with a 4xx."""
    nan = np.zeros(16000, np.float32)
    nan[10] = np.nan
    bufs = {}
    for key, x, fmt, subtype in (("nan", nan, "WAV", "FLOAT"), ("bomb", np.zeros(16000 * 1200, np.float32), "FLAC", "PCM_16")):
        buf = io.BytesIO()
        sf.write(buf, x, 16000, format=fmt, subtype=subtype)
        bufs[key] = buf.getvalue()
    return [
        ("notes.wav", b"this is not audio " * 50, "audio/wav"),
        ("cut.wav", good[:40], "audio/wav"),
        ("empty.wav", b"", "audio/wav"),
        ("picture.png", good, "image/png"),
        ("bomb.flac", bufs["bomb"], "audio/flac"),
        ("nan.wav", bufs["nan"], "audio/wav"),
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start_server(port: int, workers: int, model: Path | None = None) -> subprocess.Popen:
    """``serkit serve`` (the shipped model, or the bundle ``model``) in a child process, returned
    once ``/healthz`` answers.

    Raises:
        RuntimeError: no answer within 120 s.
    """
    bundle = "" if model is None else f"{str(model)!r}, "
    code = (
        "import sys; from serkit.cli import app; "
        f"sys.argv = ['serkit', 'serve', {bundle}'--host', '{HOST}', '--port', '{port}', '--workers', '{workers}']; app()"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://{HOST}:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.05)
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError("the service did not start within 120 s")


async def run_level(url: str, clients: int, total: int, good: bytes, bad: list | None) -> dict:
    """``total`` requests from ``clients`` concurrent clients; every other one malformed if ``bad``."""
    jobs: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        jobs.put_nowait(i)
    latencies: list[float] = []
    failures: list[str] = []
    refused = 0
    started = time.perf_counter()

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal refused
        while not jobs.empty() and time.perf_counter() - started < RUN_LIMIT_S:
            i = jobs.get_nowait()
            is_bad = bad is not None and i % 2 == 1
            name, data, ctype = bad[(i // 2) % len(bad)] if is_bad else ("speech.wav", good, "audio/wav")
            t0 = time.perf_counter()
            try:
                r = await http.post(f"{url}/v1/recognize", files={"file": (name, data, ctype)}, params={"windows": "false"})
                status = r.status_code
            except httpx.HTTPError as exc:
                failures.append(f"{name}: {type(exc).__name__}")
                continue
            if is_bad:
                refused += 1
                if not 400 <= status < 500:
                    failures.append(f"{name}: status {status}")
            else:
                latencies.append(time.perf_counter() - t0)
                if status != 200:
                    failures.append(f"{name}: status {status}")

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    wall = time.perf_counter() - started
    lat = np.array(latencies) if latencies else np.array([np.nan])
    return {
        "clients": clients,
        "malformed_mixed_in": bad is not None,
        "good_requests": len(latencies),
        "malformed_requests": refused,
        "failures": failures,
        "wall_s": round(wall, 2),
        "good_per_s": round(len(latencies) / wall, 2),
        "p50_ms": round(float(np.percentile(lat, 50)) * 1000, 1),
        "p95_ms": round(float(np.percentile(lat, 95)) * 1000, 1),
    }


def worst_upload(emodb: Path) -> bytes:
    """150 s, 192 kHz, 8 channels FLAC: EmoDB 03a01Fa upsampled at 10 s in channel 1, silence elsewhere."""
    import soxr

    rate, channels = 192_000, 8
    speech, native = sf.read(emodb / "wav" / "03a01Fa.wav", dtype="float32")
    speech = soxr.resample(speech, native, rate, quality="VHQ")
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", rate, channels, "PCM_16", format="FLAC") as f:
        for second in range(150):
            block = np.zeros((rate, channels), np.float32)
            piece = speech[(second - 10) * rate : (second - 9) * rate] if second >= 10 else speech[:0]
            block[: len(piece), 0] = piece
            f.write(block)
    return buf.getvalue()


def peak_rss_mib(pid: int) -> float:
    """Peak resident memory of a process so far (VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc: --memory needs Linux")


async def post_many(url: str, data: bytes, n: int, params: dict) -> list[int]:
    async with httpx.AsyncClient(timeout=600) as http:
        files = {"file": ("worst.flac", data, "audio/flac")}
        answers = await asyncio.gather(*(http.post(f"{url}/v1/recognize", files=files, params=params) for _ in range(n)))
    return [r.status_code for r in answers]


def memory(args: argparse.Namespace, good: bytes) -> None:
    """The ``--memory`` run (module docstring)."""
    data = worst_upload(args.emodb)
    port = free_port()
    proc = start_server(port, args.workers)
    url = f"http://{HOST}:{port}"
    whole = 150 * 192_000 * 8 * 4 / 2**20
    rows = []
    try:
        codes = asyncio.run(post_many(url, good, 1, {"plot": "true"}))  # warm-up: imports, plotting
        rows.append(("start-up and one 3 s request", peak_rss_mib(proc.pid), codes, None))
        for label, n, params, bound in (("worst upload, mix", 1, {"plot": "true"}, 25),
                                        ("worst upload, per channel", 1, {"plot": "true", "per_channel": "true"}, 159),
                                        (f"{args.workers} worst uploads at once, per channel", args.workers,
                                         {"per_channel": "true"}, 610)):
            t0 = time.perf_counter()
            codes = asyncio.run(post_many(url, data, n, params))
            rows.append((f"{label} ({time.perf_counter() - t0:.1f} s)", peak_rss_mib(proc.pid), codes, bound))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    base = rows[0][1]
    print(f"\n{platform.node()}: {os.cpu_count()} CPUs, {args.workers} worker threads; upload {len(data)} bytes, "
          f"decoded whole {whole:.0f} MiB of float32\n")
    print("| after | peak RSS MiB | above start-up MiB | reserved from the budget, MiB (docs/security.md) | answers |")
    print("|---|---|---|---|---|")
    for label, peak, codes, bound in rows:
        print(f"| {label} | {peak:.0f} | {peak - base:.0f} | {bound if bound is not None else ''} | {codes} |")
    if any(code != 200 for _, _, codes, _ in rows for code in codes):
        sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=48, help="requests per run (bounded)")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--workers", type=int, default=4, help="the service's recognition threads")
    parser.add_argument("--emodb", type=Path, default=REPO.parent / "shared" / "corpora" / "emodb")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--memory", action="store_true", help="peak memory for the worst accepted upload instead")
    args = parser.parse_args()

    good = three_second_file(args.emodb)
    if args.memory:
        memory(args, good)
        return
    bad = malformed(good)
    port = free_port()
    proc = start_server(port, args.workers)
    url = f"http://{HOST}:{port}"
    results = []
    try:
        for mixed in (False, True):
            for clients in args.levels:
                asyncio.run(run_level(url, clients, min(4, args.requests), good, None))  # warm-up, not counted
                res = asyncio.run(run_level(url, clients, args.requests, good, bad if mixed else None))
                results.append(res)
                print(json.dumps(res), flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"\n{platform.node()}: {os.cpu_count()} CPUs, service with {args.workers} worker threads, 3.0 s WAV\n")
    print("| clients | malformed mixed in | good requests | good req/s | p50 ms | p95 ms | malformed refused (4xx) | failures |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['clients']} | {'yes' if r['malformed_mixed_in'] else 'no'} | {r['good_requests']} | {r['good_per_s']} "
              f"| {r['p50_ms']} | {r['p95_ms']} | {r['malformed_requests']} | {len(r['failures'])} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if any(r["failures"] for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
