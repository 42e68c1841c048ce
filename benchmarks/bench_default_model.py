"""Speed of a model bundle against the machine's limit: ``serkit predict`` on 60 s of speech, cold
start, and the service at 4 concurrent clients with 3-s clips.

The bound: the encoder blocks dominate, so a bundle that reads Whisper statistics cannot be faster
than the FLOPs of its front end and the blocks it runs (``encoder_flops`` of
``bench_encoder.py``: convolutions + attention + projections, per window) divided by the
matrix-multiply rate measured in the same run (oneDNN float32 on the threads given). Each figure
is printed with that bound and the fraction reached (bound / measured time; 1.0 = the machine's
limit). A bundle without an encoder (openSMILE functionals) has no such bound; its figures are
printed for comparison. Run it once per bundle, e.g. the shipped model and the previous one.

The bundle runs as ``serkit predict`` runs it (:class:`~serkit.inference.Recognizer`: Whisper in
onnxruntime); torch is imported here only to measure the multiply rate, and the command-line and
service figures come from child processes that never import it.

Usage::

    python benchmarks/bench_default_model.py [--model BUNDLE] [--threads 2] [--requests 96]
        [--emodb ../shared/corpora/emodb] [--json results/bench_default_model.json]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_encoder import _timed, encoder_flops, matmul_rates
from bench_service import HOST, free_port, run_level, start_server, three_second_file

from serkit.audio import Audio, load_audio
from serkit.inference import DEFAULT_MODEL, InferenceConfig, Recognizer, window_spans

REPO = Path(__file__).resolve().parents[1]
#: The ``serkit`` command of this interpreter's environment (process start to answer is measured).
SERKIT = str(Path(sys.executable).with_name("serkit"))


def sixty_seconds(emodb: Path) -> Audio:
    """EmoDB utterances one after another (sorted names), cut at 60.0 s, 16 kHz mono."""
    parts, total = [], 0
    for path in sorted((emodb / "wav").glob("*.wav")):
        x = load_audio(path).resample(16000).samples[0]
        parts.append(x)
        total += len(x)
        if total >= 60 * 16000:
            break
    return Audio(np.concatenate(parts)[None, : 60 * 16000], 16000, "emodb-60s")


def bound_seconds(recognizer: Recognizer, audio: Audio, config: InferenceConfig, rate: float) -> float | None:
    """FLOPs of the encoder blocks the bundle runs on ``audio``'s windows / ``rate`` (GFLOP/s)."""
    encoders = [ex for ex, _ in recognizer.bundle.extractors.values() if ex.name == "speech_encoder"]
    if not encoders:
        return None
    spans = recognizer.vad.speech_segments(audio.downmix(), config) if config.vad else [(0.0, audio.duration)]
    lengths = [round((b - a) * 16000) for s, e in spans for a, b in window_spans(s, e, config.window, config.hop)]
    flops = sum(encoder_flops(ex, lengths, ex.n_blocks) for ex in encoders)
    return flops / (rate * 1e9)


def request_parts(recognizer: Recognizer, data: bytes, bound: float | None) -> dict[str, float | None]:
    """Milliseconds (best of 20, warm) of one upload handled in this process as a service worker
    does (:func:`serkit.service.recognize_bytes`, no HTTP), and of its parts: decoding, the VAD,
    the features of its windows (encoder + pooling), and the bound of those windows. What is not
    the encoder (VAD, timeline, answer) is outside the bound, so it caps the fraction reachable."""
    from serkit.audio import decode_audio
    from serkit.service import ServiceLimits, recognize_bytes

    config, limits = recognizer.config, ServiceLimits()
    audio = decode_audio(data, sample_rate=16000, mono=True, name="clip")
    spans = recognizer.vad.speech_segments(audio, config)
    windows = [audio.slice(a, b) for s, e in spans for a, b in window_spans(s, e, config.window, config.hop)]
    parts = {
        "request": lambda: recognize_bytes(recognizer, data, "clip.flac", limits, config, False),
        "decode": lambda: decode_audio(data, sample_rate=16000, mono=True, name="clip"),
        "vad": lambda: recognizer.vad.speech_segments(audio, config),
        "features": lambda: recognizer.bundle.features_many(windows),
    }
    out: dict[str, float | None] = {f"{name}_ms": round(1e3 * _timed(run, 20)[0], 2) for name, run in parts.items()}
    out["bound_ms"] = None if bound is None else round(1e3 * bound, 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--requests", type=int, default=96)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--emodb", type=Path, default=REPO.parent / "shared" / "corpora" / "emodb")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rates = matmul_rates(args.threads)
    rate = rates.get("oneDNN", rates["torch.mm"])
    out: dict = {"model": str(args.model), "threads": args.threads, "matmul_gflops": rates}

    recognizer = Recognizer(args.model)
    config = recognizer.config
    audio = sixty_seconds(args.emodb)
    warm, others = _timed(lambda: recognizer.recognize(audio), 3)  # after a warm-up run
    bound = bound_seconds(recognizer, audio, config, rate)
    out["predict_60s"] = {"warm_s": round(warm, 3), "rtf": round(warm / audio.duration, 4),
                          "other_processes_cores": round(others, 2),
                          "bound_s": None if bound is None else round(bound, 3),
                          "fraction_of_bound": None if bound is None else round(bound / warm, 3)}  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        sf.write(wav, audio.samples[0], 16000)
        t0 = time.perf_counter()
        done = subprocess.run([SERKIT, "predict", "--model", str(args.model), str(wav), "--json"],
                              capture_output=True, text=True, check=False)  # fmt: skip
        out["cli_60s_s"] = round(time.perf_counter() - t0, 2)
        if done.returncode != 0:
            raise SystemExit(f"serkit predict failed: {done.stderr[-500:]}")
        clip = Path(tmp) / "clip.wav"
        clip.write_bytes(three_second_file(args.emodb))
        t0 = time.perf_counter()
        subprocess.run([SERKIT, "predict", "--model", str(args.model), str(clip), "--json"],
                       capture_output=True, check=True)  # fmt: skip
        out["cold_start_3s_clip_s"] = round(time.perf_counter() - t0, 2)

    port = free_port()
    started = time.perf_counter()
    proc = start_server(port, args.clients, args.model)
    ready = time.perf_counter() - started
    try:
        good = three_second_file(args.emodb)
        clip = load_audio(io.BytesIO(good))
        one = bound_seconds(recognizer, clip, config, rate)
        out["request_in_process"] = request_parts(recognizer, good, one)
        asyncio.run(run_level(f"http://{HOST}:{port}", args.clients, 8, good, None))  # warm the workers
        level = asyncio.run(run_level(f"http://{HOST}:{port}", args.clients, args.requests, good, None))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    level["service_start_s"] = round(ready, 2)
    if one is not None:
        level["bound_per_s"] = round(1 / one, 1)
        level["fraction_of_bound"] = round(level["good_per_s"] * one, 3)
    out["service"] = level
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    if level["failures"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
