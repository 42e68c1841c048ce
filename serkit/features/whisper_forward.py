"""Whisper's encoder run fast on a CPU: packed utterances, fused projections, oneDNN products.

:func:`whisper_hidden_states` computes what ``transformers``' ``WhisperEncoder`` sub-modules
compute (:mod:`serkit.features.whisper` explains why not its ``forward``), with the same weights,
but arranged for speed and without ``transformers`` (importing its Whisper model costs about 1.5 s
of every cold start): :func:`fuse_whisper_weights` takes the state dict
:func:`~serkit.features.whisper.whisper_weights` reads from the CTranslate2 file. The numbers
agree up to float32 rounding (``tests/test_encoders.py`` checks them against the sub-modules and
against CTranslate2):

- **Packed utterances.** After the convolutional front end, the frames of all utterances of a
  batch are stacked into one ``(N, d)`` matrix (``N`` = their total frame count), so every
  projection and MLP product runs once over real frames only: no padding rows, no mask.
  Attention runs per utterance on its own slice of that matrix (short ones as two batched
  products and a softmax, long ones through ``torch``'s fused ``scaled_dot_product_attention``).
  Only the two convolutions see zero padding (zeroed again after the first), which length-sorted
  batches keep small.
- **Fused projections.** Query, key and value are one ``(3d, d)`` product; the query rows carry
  the ``head_dim ** -0.5`` scaling (a power of two for Whisper's 64-wide heads, so exact).
- **oneDNN.** Where this ``torch`` build ships oneDNN (``torch.backends.mkldnn``; the x86 Linux
  wheels do), the products and convolutions run through its primitives with the bias, GELU (the
  exact erf form) or residual addition fused in (``torch.ops.mkldnn``'s ``_linear_pointwise`` and
  ``_convolution_pointwise``, the operators ``torch.compile`` emits for CPU; probed once,
  :func:`onednn_available`). On an AVX-512 CPU whose BLAS takes its AVX2 path (MKL on AMD),
  that is about twice the rate of ``torch.mm``. Elsewhere ``torch.nn.functional.linear`` and
  ``conv1d`` do the same arithmetic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from serkit.errors import FeatureError

#: Up to this many frames (10.24 s), attention is two batched products and a softmax; beyond,
#: the fused kernel, whose tiling wins once the scores outgrow the caches (measured with 2
#: threads: 20-40 % faster below 600 frames, half the speed at 1500).
UNFUSED_ATTENTION_FRAMES = 512
#: Whisper's layer-norm epsilon (``torch.nn.LayerNorm``'s default, which ``transformers`` uses).
LAYER_NORM_EPS = 1e-5


@dataclass(frozen=True)
class FusedBlock:
    """One transformer block's float32 weights as :func:`whisper_hidden_states` uses them.

    Attributes:
        norm1, norm2: ``(weight, bias)``, each ``(d,)``: the layer norms before attention and MLP.
        qkv: ``(weight (3d, d), bias (3d,))``: query (pre-scaled), key (zero bias), value.
        out: ``(weight (d, d), bias (d,))``: the attention output projection.
        fc1: ``(weight (f, d), bias (f,))``, ``fc2``: ``(weight (d, f), bias (d,))``: the MLP.
    """

    norm1: tuple[Any, Any]
    qkv: tuple[Any, Any]
    out: tuple[Any, Any]
    norm2: tuple[Any, Any]
    fc1: tuple[Any, Any]
    fc2: tuple[Any, Any]


@dataclass(frozen=True)
class FusedWhisper:
    """A Whisper encoder prepared for :func:`whisper_hidden_states` (:func:`fuse_whisper_weights`).

    Attributes:
        conv1: ``(weight (d, n_mels, 3), bias (d,))``, stride 1; ``conv2``: ``((d, d, 3), (d,))``,
            stride 2: the front end, each followed by exact GELU.
        positions: ``(P, d)``, the positional table (``P`` = 1500 frames, 30 s).
        final_norm: ``(weight (d,), bias (d,))``, the layer norm after the last block.
        blocks: the ``L`` transformer blocks, fused.
        heads: attention heads per block.
        onednn: whether products run through oneDNN (else ``torch.nn.functional.linear``).
    """

    conv1: tuple[Any, Any]
    conv2: tuple[Any, Any]
    positions: Any
    final_norm: tuple[Any, Any]
    blocks: tuple[FusedBlock, ...]
    heads: int
    onednn: bool

    @property
    def width(self) -> int:
        """``d``, the model width."""
        return int(self.positions.shape[1])

    @property
    def n_mels(self) -> int:
        """Mel bands the front end takes."""
        return int(self.conv1[0].shape[1])


@cache
def onednn_available() -> bool:
    """Whether ``torch``'s fused oneDNN linear and convolution primitives run here and agree with
    ``F.linear`` and ``F.conv1d`` (probed once per process)."""
    import torch
    from torch.nn import functional as F

    if not torch.backends.mkldnn.is_available():
        return False
    try:
        x, w, b = torch.linspace(-1, 1, 24).reshape(4, 6), torch.linspace(-1, 1, 18).reshape(3, 6), torch.ones(3)
        y = torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")
        c = torch.ops.mkldnn._convolution_pointwise(x[None], w[:, :4, None], b, [1], [2], [1], 1, "gelu", [], "none")
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    expected = F.gelu(F.conv1d(x[None], w[:, :4, None], b, stride=2, padding=1))
    return bool(torch.allclose(y, F.linear(x, w, b), atol=1e-5) and torch.allclose(c, expected, atol=1e-5))


def fuse_whisper_weights(state: Mapping[str, Any], heads: int, onednn: bool | None = None) -> FusedWhisper:
    """Fuse a Whisper encoder's weights, named as in ``transformers``' ``WhisperEncoder`` state dict.

    Args:
        state: name -> float32 array or tensor: ``conv1.weight``, ``embed_positions.weight``,
            ``layers.<i>.self_attn.q_proj.weight``, ... (the state dict of a ``WhisperEncoder``,
            or :func:`~serkit.features.whisper.whisper_weights`' arrays). Tensors may share
            memory with ``state``'s arrays; nothing is written to them.
        heads: attention heads per block.
        onednn: use oneDNN for the products; ``None``: when :func:`onednn_available`.

    Raises:
        FeatureError: ``onednn=True`` where oneDNN does not run, or a missing weight.
    """
    import torch

    if onednn is None:
        onednn = onednn_available()
    elif onednn and not onednn_available():
        raise FeatureError("oneDNN's linear primitive is not available in this torch build")

    def get(name: str) -> Any:
        if name not in state:
            raise FeatureError(f"Whisper encoder weights lack {name!r}")
        return torch.as_tensor(state[name], dtype=torch.float32).detach().contiguous()

    def pair(prefix: str) -> tuple[Any, Any]:
        return get(f"{prefix}.weight"), get(f"{prefix}.bias")

    n_layers = sum(1 for name in state if name.startswith("layers.") and name.endswith(".fc1.weight"))
    blocks = []
    with torch.inference_mode():
        for i in range(n_layers):
            at = f"layers.{i}.self_attn"
            q_weight, q_bias = pair(f"{at}.q_proj")
            scale = (q_weight.shape[0] // heads) ** -0.5
            v_weight, v_bias = pair(f"{at}.v_proj")
            weight = torch.cat([q_weight * scale, get(f"{at}.k_proj.weight"), v_weight])
            bias = torch.cat([q_bias * scale, torch.zeros_like(v_bias), v_bias])
            blocks.append(
                FusedBlock(
                    norm1=pair(f"layers.{i}.self_attn_layer_norm"),
                    qkv=(weight.contiguous(), bias.contiguous()),
                    out=pair(f"{at}.out_proj"),
                    norm2=pair(f"layers.{i}.final_layer_norm"),
                    fc1=pair(f"layers.{i}.fc1"),
                    fc2=pair(f"layers.{i}.fc2"),
                )
            )
    return FusedWhisper(pair("conv1"), pair("conv2"), get("embed_positions.weight"), pair("layer_norm"),
                        tuple(blocks), int(heads), bool(onednn))  # fmt: skip


def dense(x: Any, weight: Any, bias: Any, *, onednn: bool, gelu: bool = False, residual: Any = None) -> Any:
    """``x @ weight.T + bias``, then exact GELU (``gelu``) or ``+ residual``; float32 ``(N, out)``.

    Args:
        x: float32 ``(N, in)``, contiguous.
        weight: ``(out, in)``; bias: ``(out,)``.
        onednn: through oneDNN's fused primitive (:func:`onednn_available` must hold).
        gelu, residual: the operation fused after the product (not both).
    """
    import torch
    from torch.nn import functional as F

    if onednn:
        if residual is not None:
            return torch.ops.mkldnn._linear_pointwise.binary(x, residual, weight, bias, "add")
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu" if gelu else "none", [], "none" if gelu else "")
    y = F.linear(x, weight, bias)
    if gelu:
        return F.gelu(y)
    return y.add_(residual) if residual is not None else y


def conv_gelu(x: Any, weight: Any, bias: Any, stride: int, *, onednn: bool) -> Any:
    """Exact GELU of a 1-D convolution with padding 1 (Whisper's front end); float32 ``(B, out, T')``.

    Args:
        x: float32 ``(B, in, T)``; weight: ``(out, in, 3)``; bias: ``(out,)``.
        stride: 1 or 2 (``T' = ceil(T / stride)``).
        onednn: through oneDNN's convolution with the GELU fused (:func:`onednn_available`).
    """
    import torch
    from torch.nn import functional as F

    if onednn:
        return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, [1], [stride], [1], 1, "gelu", [], "none")
    return F.gelu(F.conv1d(x, weight, bias, stride=stride, padding=1))


def whisper_hidden_states(
    model: FusedWhisper, mels: Sequence[Any], n_blocks: int | None = None
) -> tuple[list[Any], list[int]]:
    """Hidden states of a Whisper encoder for a batch of mel inputs of any lengths up to 30 s.

    Args:
        model: :func:`fuse_whisper_weights`' result.
        mels: ``B`` float32 tensors ``(n_mels, T_b)``, ``1 <= T_b <= 3000``
            (:func:`~serkit.features.whisper.whisper_log_mel`). Each is computed as if alone:
            batching changes float rounding only.
        n_blocks: run only the first ``n_blocks`` transformer blocks (``None``: all ``L``); later
            blocks cannot change earlier states, so a middle layer costs less.

    Returns:
        ``(states, frames)``: ``n_blocks + 1`` float32 tensors ``(N, d)`` — the front end
        (convolutions + positions), then each block's output, the output of block ``L`` taken
        after the final layer norm — whose rows are the utterances' frames one after the other;
        ``frames[b] = ceil(T_b / 2)`` rows belong to utterance ``b`` (``N = sum(frames)``).

    Raises:
        FeatureError: an input with no frame or more than 3000, a wrong band count, or
            ``n_blocks`` outside ``[0, L]``.
    """
    import torch
    from torch.nn import functional as F

    n_layers = len(model.blocks)
    n_blocks = n_layers if n_blocks is None else int(n_blocks)
    if not 0 <= n_blocks <= n_layers:
        raise FeatureError(f"Whisper has {n_layers} blocks, {n_blocks} asked for")
    lengths = [int(m.shape[-1]) for m in mels]
    limit = 2 * model.positions.shape[0]
    if not mels or any(m.ndim != 2 or m.shape[0] != model.n_mels for m in mels):
        raise FeatureError(f"Whisper needs (n_mels={model.n_mels}, frames) inputs")
    if min(lengths) < 1 or max(lengths) > limit:
        raise FeatureError(f"Whisper takes 1 to {limit} mel frames (30 s) per pass, got {min(lengths)}..{max(lengths)}")
    frames = [(n + 1) // 2 for n in lengths]
    with torch.inference_mode():
        batch = torch.zeros((len(mels), model.n_mels, max(lengths)))
        for row, mel in zip(batch, mels, strict=True):
            row[:, : mel.shape[-1]] = mel
        h = conv_gelu(batch, *model.conv1, 1, onednn=model.onednn)
        if min(lengths) != max(lengths):  # padding must stay zero for the strided convolution
            h = h * (torch.arange(h.shape[-1])[None, :] < torch.tensor(lengths)[:, None])[:, None, :]
        h = conv_gelu(h, *model.conv2, 2, onednn=model.onednn)
        h = h.transpose(1, 2) + model.positions[: max(frames)]
        h = torch.cat([h[b, :n] for b, n in enumerate(frames)])
        states = [h]
        d = model.width
        for block in model.blocks[:n_blocks]:
            x = F.layer_norm(h, (d,), *block.norm1, eps=LAYER_NORM_EPS)
            att = _attention(dense(x, *block.qkv, onednn=model.onednn), frames, model.heads)
            h = dense(att, *block.out, onednn=model.onednn, residual=h)
            x = F.layer_norm(h, (d,), *block.norm2, eps=LAYER_NORM_EPS)
            x = dense(x, *block.fc1, onednn=model.onednn, gelu=True)
            h = dense(x, *block.fc2, onednn=model.onednn, residual=h)
            states.append(h)
        if n_blocks == n_layers:
            states[-1] = F.layer_norm(h, (d,), *model.final_norm, eps=LAYER_NORM_EPS)
    return states, frames


def _attention(qkv: Any, frames: Sequence[int], heads: int) -> Any:
    """Self-attention of each utterance's rows of packed ``(N, 3d)`` projections -> ``(N, d)``."""
    import torch
    from torch.nn import functional as F

    n, d = qkv.shape[0], qkv.shape[1] // 3
    out = torch.empty((n, d))
    start = 0
    for count in frames:
        # (3, 1, heads, count, head_dim): four dimensions select the fused (flash) CPU kernel.
        q, k, v = qkv[start : start + count].view(1, count, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        if count <= UNFUSED_ATTENTION_FRAMES:  # (1, heads, count, head_dim)
            o = torch.matmul(torch.matmul(q, k.transpose(-1, -2)).softmax(dim=-1), v)
        else:
            o = F.scaled_dot_product_attention(q, k, v, scale=1.0)
        out[start : start + count] = o[0].transpose(0, 1).reshape(count, d)
        start += count
    return out
