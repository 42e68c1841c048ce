"""The torch-free inference path: Whisper in onnxruntime, the numpy log-Mel and mel filters, the VAD
without silero's Python code, and what ``serkit predict`` imports."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serkit.audio import Audio, load_audio
from serkit.errors import FeatureError
from serkit.features.encoders import SpeechEncoder
from serkit.features.whisper import (
    WHISPER_MODELS,
    whisper_log_mel,
    whisper_log_mel_numpy,
    whisper_mel_filters,
    whisper_weights,
)
from serkit.features.whisper_onnx import (
    GRAPH_PACKAGE,
    build_whisper_graph,
    graph_name,
    whisper_onnx,
)
from serkit.inference import InferenceConfig, Recognizer
from serkit.vad import VAD_RATE, SileroVAD, speech_segments_from_probabilities

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def speech(emodb_root: Path) -> Audio:
    """Four real EmoDB utterances with a second of silence after each (16 kHz, about 14 s)."""
    parts = []
    for name in ("03a01Fa", "08a02Wc", "11b03Nb", "16b10Lb"):
        x = load_audio(emodb_root / "wav" / f"{name}.wav").samples[0]
        parts += [x, np.zeros(VAD_RATE, dtype=np.float32)]
    return Audio(np.concatenate(parts)[None], VAD_RATE, "emodb-4")


# --------------------------------------------------------------------------- the graphs


def test_shipped_graphs_are_what_the_builder_writes():
    """Every model and block count has its graph, byte for byte what ``scripts/build_whisper_graphs.py``
    writes now (a change to the builder without rebuilding the files fails here)."""
    for model in WHISPER_MODELS:
        config, state = whisper_weights(model)
        for n_blocks in range(config["encoder_layers"] + 1):
            shipped = resources.files(GRAPH_PACKAGE).joinpath(graph_name(model, n_blocks)).read_bytes()
            assert shipped == build_whisper_graph(config, state, n_blocks), graph_name(model, n_blocks)


@pytest.mark.parametrize(("model", "layer"), [("whisper-tiny.en", "all"), ("whisper-base", {"up_to": 3})])
def test_onnxruntime_frames_equal_the_torch_pass_on_real_speech(speech, model, layer):
    """The same frames, layer for layer, from the graph in onnxruntime as from the fused torch pass
    (itself tested against transformers' sub-modules), for a 3-s window, a shorter one, a
    recording over 30 s (two pieces) and equal-length windows batched together."""
    x = speech.samples[0]
    windows = [speech.slice(0.0, 3.0), speech.slice(3.0, 6.0), speech.slice(1.0, 2.3),
               Audio(np.tile(x, 3)[None, : 33 * VAD_RATE], VAD_RATE, "33s")]  # fmt: skip
    torch_encoder = SpeechEncoder({"model": model, "layer": layer})
    ort_encoder = SpeechEncoder({"model": model, "layer": layer})
    ort_encoder.runtime = "onnxruntime"
    expected = torch_encoder.extract_batch(windows)
    got = ort_encoder.extract_batch(windows)
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape and g.dtype == np.float32
        width = torch_encoder.shape[1]
        for k in range(len(torch_encoder.layers)):  # each layer against its own scale
            ref = e[:, k * width : (k + 1) * width]
            np.testing.assert_allclose(g[:, k * width : (k + 1) * width], ref, atol=2e-5 * np.abs(ref).max())


def test_the_graph_refuses_layers_it_does_not_run_and_wrong_inputs():
    encoder = whisper_onnx("whisper-tiny.en", 2)
    mel = np.zeros((80, 300), dtype=np.float32)
    with pytest.raises(FeatureError, match="layers 0..2"):
        encoder.hidden_states([mel], [3])
    with pytest.raises(FeatureError, match="n_mels=80"):
        encoder.hidden_states([mel[:40]], [1])
    with pytest.raises(FeatureError, match="3000 frames"):
        encoder.hidden_states([np.zeros((80, 3001), dtype=np.float32)], [1])
    assert [s.shape for s in encoder.hidden_states([mel, mel[:, :101]], [0, 2])] == [(150, 768), (51, 768)]


# --------------------------------------------------------------------------- log-Mel


@pytest.mark.parametrize("n_mels", [80, 128])
def test_mel_filters_equal_librosa_slaney(n_mels):
    import librosa

    expected = librosa.filters.mel(sr=16000, n_fft=400, n_mels=n_mels, dtype=np.float64)
    np.testing.assert_allclose(whisper_mel_filters(n_mels), expected, rtol=1e-12, atol=1e-15)


def test_numpy_log_mel_equals_the_torch_one_on_real_speech(speech):
    import torch

    filters = whisper_mel_filters(80)
    for x in (speech.samples[0], speech.samples[0][:48000], speech.samples[0][:1001]):
        expected = whisper_log_mel(x, torch.from_numpy(filters)).numpy()
        got = whisper_log_mel_numpy(x, filters)
        assert got.shape == expected.shape == (80, len(x) // 160) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=1e-6)


# --------------------------------------------------------------------------- VAD


def test_vad_probabilities_equal_silero_own_sequence_model(speech):
    """serkit's loop over silero's sequence export (blocks of frames, 64-sample context, state
    carried between blocks) gives silero's own probabilities, over more than one block."""
    from silero_vad.sequence_vad import SileroVADSequence

    vad = SileroVAD()
    long = Audio(np.tile(speech.samples[0], 2)[None], VAD_RATE, "long")  # 28 s: two blocks of 512 frames
    expected = SileroVADSequence(str(vad.path)).audio_forward(long.samples[0])
    got = vad.speech_probabilities(long)
    assert len(got) == -(-long.n_samples // 512) > 512
    np.testing.assert_allclose(got, expected, atol=1e-6)


def _silero_segments(probs, n, threshold, min_speech, min_silence, pad):
    from silero_vad import get_speech_timestamps_from_probs

    stamps = get_speech_timestamps_from_probs(
        list(map(float, probs)), sampling_rate=VAD_RATE, threshold=threshold, min_speech_duration_ms=min_speech * 1000,
        min_silence_duration_ms=min_silence * 1000, speech_pad_ms=pad * 1000, audio_length_samples=n,
    )  # fmt: skip
    return [(s["start"] / VAD_RATE, s["end"] / VAD_RATE) for s in stamps]


def test_vad_segments_equal_silero_hysteresis_on_real_speech(speech):
    vad, config = SileroVAD(), InferenceConfig()
    probs = vad.speech_probabilities(speech)
    got = vad.speech_segments(speech, config)
    assert len(got) == 4  # the four utterances, split at the silences
    assert got == _silero_segments(probs, speech.n_samples, config.vad_threshold, config.min_speech,
                                   config.min_silence, config.speech_pad)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    probs=st.lists(st.sampled_from([0.0, 0.2, 0.36, 0.5, 0.7, 1.0]), max_size=120),
    threshold=st.sampled_from([0.3, 0.5, 0.7]),
    min_speech=st.sampled_from([0.0, 0.05, 0.25]),
    min_silence=st.sampled_from([0.0, 0.03, 0.1, 0.5]),
    pad=st.sampled_from([0.0, 0.01, 0.03, 0.2]),
    short=st.integers(0, 511),
)
def test_vad_hysteresis_equals_silero_on_any_probabilities(probs, threshold, min_speech, min_silence, pad, short):
    n = max(0, 512 * len(probs) - short)
    got = speech_segments_from_probabilities(np.array(probs), n, threshold=threshold, min_speech=min_speech,
                                             min_silence=min_silence, speech_pad=pad)  # fmt: skip
    assert got == _silero_segments(probs, n, threshold, min_speech, min_silence, pad)


# --------------------------------------------------------------------------- the predict path


def test_predict_path_runs_without_torch_and_gives_the_torch_path_probabilities(speech, tmp_path):
    """Labelling with the shipped model imports none of torch, scikit-learn, scipy, librosa,
    silero_vad's code or transformers (together over 10 s of a 2-core cold start), and its window
    probabilities are those of the same bundle run through torch."""
    wav = tmp_path / "speech.wav"
    import soundfile as sf

    sf.write(wav, speech.samples[0], VAD_RATE)
    heavy = ["torch", "sklearn", "scipy", "librosa", "silero_vad", "transformers"]
    code = (
        "import json, sys\n"
        "from serkit.audio import load_audio\n"
        "from serkit.inference import Recognizer\n"
        f"t = Recognizer().recognize(load_audio({str(wav)!r}))\n"
        f"print(json.dumps([[r[k] for k in sorted(r) if k.startswith('p_')] for r in t.window_rows]))\n"
        f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert json.loads(lines[-1]) == []
    got = np.array(json.loads(lines[-2]))

    recognizer = Recognizer()
    for extractor, _ in recognizer.bundle.extractors.values():
        extractor.runtime = "torch"
    rows = recognizer.recognize(load_audio(wav)).window_rows
    expected = np.array([[r[k] for k in sorted(r) if k.startswith("p_")] for r in rows])
    assert got.shape == expected.shape and len(got) >= 4
    np.testing.assert_allclose(got, expected, atol=1e-4)
