"""Whisper's encoder through ONNX Runtime: the inference path of ``serkit predict`` and ``serve``.

``import torch`` alone takes about 3 s on a 2-core machine (measured: 3.2 s, against 0.28 s for
onnxruntime), more than the whole cold-start budget of ``serkit predict`` (3 s). So a bundle
reading Whisper statistics labels recordings without torch: the encoder runs as an ONNX graph in
onnxruntime, which took 51 ms for a 3-s window through Whisper base's first 3 blocks where the
torch pass (:mod:`serkit.features.whisper_forward`) took 58 ms, and 749 vs 753 ms for 30 s
(2 threads, 2-core AMD EPYC).

**The graph ships without weights.** :func:`build_whisper_graph` (needs the ``onnx`` package, the
``export`` extra) writes Whisper's encoder (Radford et al., 2022, Sec. 2.2: two convolutions with
GELU, sinusoidal positions, pre-norm transformer blocks; the same computation as
:func:`~serkit.features.whisper_forward.whisper_hidden_states`) with every weight an *external*
initializer that names no real file; ``serkit/features/graphs/<model>-<blocks>.onnx`` are its
outputs (5 to 25 kB; ``scripts/build_whisper_graphs.py`` rebuilds them and a test checks they are
current). :class:`WhisperOnnx` hands onnxruntime the weights that
:func:`~serkit.features.whisper.whisper_weights` reads from the pinned CTranslate2 file
(``SessionOptions.add_external_initializers``), fused as in the torch pass: query, key and value
one ``(d, 3d)`` product with the query pre-scaled by ``head_dim ** -0.5``. An ONNX file is data:
loading one executes no code.

A graph runs the first ``k`` blocks and outputs ``layer_0`` (front end + positions) ...
``layer_k`` (``layer_L`` after the final layer norm), each ``(B, T', d)``. There is one graph per
``k`` because onnxruntime runs every node of a graph whatever outputs are asked for (measured: 97
ms for a 3-s window through 6 blocks whether layer 1 or 6 was fetched), so a bundle holding layers
up to 3 loads the 3-block graph.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from serkit.errors import BundleError, FeatureError

#: Where the weight-free graphs live (package data).
GRAPH_PACKAGE = "serkit.features.graphs"
#: The file name every external initializer of a graph points at; never read (the weights are
#: handed over in memory), so a graph whose initializers were not all supplied fails loudly.
EXTERNAL_MARK = "weights-supplied-at-load"
#: ONNX opset of the graphs (17: ``LayerNormalization``).
OPSET = 17
LAYER_NORM_EPS = 1e-5


def graph_initializers(config: dict[str, Any], state: dict[str, np.ndarray], n_blocks: int) -> dict[str, np.ndarray]:
    """The initializers of the graph run to block ``n_blocks``, from a Whisper encoder's
    configuration and state dict named as ``transformers``' encoder (both from
    :func:`~serkit.features.whisper.whisper_weights`): products as
    ``(in, out)`` float32, query, key and value fused with the query scaled by ``head_dim ** -0.5``
    (a power of two for 64-wide heads: exact) and a zero key bias, as
    :func:`~serkit.features.whisper_forward.fuse_whisper_weights` does.

    Raises:
        FeatureError: a weight is missing.
    """

    def get(name: str) -> np.ndarray:
        if name not in state:
            raise FeatureError(f"Whisper encoder weights lack {name!r}")
        return np.asarray(state[name], dtype=np.float32)

    heads = config["encoder_attention_heads"]
    names = ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "embed_positions.weight"]
    if n_blocks == config["encoder_layers"]:
        names += ["layer_norm.weight", "layer_norm.bias"]
    out = {name: get(name) for name in names}
    for i in range(n_blocks):
        p = f"layers.{i}."
        q = get(p + "self_attn.q_proj.weight")
        scale = np.float32((q.shape[0] // heads) ** -0.5)
        out[p + "qkv.weight"] = np.ascontiguousarray(
            np.concatenate([q * scale, get(p + "self_attn.k_proj.weight"), get(p + "self_attn.v_proj.weight")]).T
        )
        v_bias = get(p + "self_attn.v_proj.bias")
        out[p + "qkv.bias"] = np.concatenate([get(p + "self_attn.q_proj.bias") * scale, np.zeros_like(v_bias), v_bias])
        for ours, theirs in (("out", "self_attn.out_proj"), ("fc1", "fc1"), ("fc2", "fc2")):
            out[p + ours + ".weight"] = np.ascontiguousarray(get(p + theirs + ".weight").T)
            out[p + ours + ".bias"] = get(p + theirs + ".bias")
        for ours, theirs in (("norm1", "self_attn_layer_norm"), ("norm2", "final_layer_norm")):
            out[p + ours + ".weight"] = get(p + theirs + ".weight")
            out[p + ours + ".bias"] = get(p + theirs + ".bias")
    return out


def build_whisper_graph(config: dict[str, Any], state: dict[str, np.ndarray], n_blocks: int) -> bytes:
    """The serialized, weight-free ONNX graph of a Whisper encoder's first ``n_blocks`` blocks
    (module docstring); ``config`` and ``state`` as :func:`graph_initializers` takes them, which
    gives the names and shapes of the graph's initializers (none of their values is kept).

    Input ``log_mel``: float32 ``(B, n_mels, T)`` (:func:`~serkit.features.whisper.whisper_log_mel`
    of ``B`` recordings of equal length, ``T <= 3000``). Outputs ``layer_0`` ...
    ``layer_<n_blocks>``: float32 ``(B, ceil(T / 2), d)``; ``layer_L`` is taken after the final
    layer norm.

    Raises:
        ImportError: the ``onnx`` package is missing (``pip install 'serkit[export]'``).
    """
    from onnx import TensorProto, helper

    d, heads = config["d_model"], config["encoder_attention_heads"]
    nodes: list[Any] = []
    consts: list[Any] = []

    def const(name: str, values: list[float] | list[int], dtype: int) -> str:
        consts.append(helper.make_tensor(name, dtype, [len(values)], values))
        return name

    def node(op: str, inputs: list[str], out: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    half, one, root2 = (const(n, [v], TensorProto.FLOAT) for n, v in (("half", 0.5), ("one", 1.0), ("sqrt2", 2**0.5)))
    split = const("qkv_split", [d, d, d], TensorProto.INT64)
    heads_shape = const("heads_shape", [0, 0, heads, d // heads], TensorProto.INT64)
    width_shape = const("width_shape", [0, 0, d], TensorProto.INT64)
    start, axis = const("zero", [0], TensorProto.INT64), const("axis1", [1], TensorProto.INT64)

    def gelu(x: str) -> str:  # exact GELU: x * 0.5 * (1 + erf(x / sqrt 2)), the pattern ORT fuses
        e = node("Erf", [node("Div", [x, root2], x + "/scaled")], x + "/erf")
        return node("Mul", [node("Mul", [x, node("Add", [e, one], x + "/1+erf")], x + "/x(1+erf)"), half], x + "/gelu")

    def linear(x: str, p: str, out: str, residual: str | None = None) -> str:
        y = node("Add", [node("MatMul", [x, p + ".weight"], out + "/matmul"), p + ".bias"], out if residual is None else out + "/biased")
        return y if residual is None else node("Add", [y, residual], out)

    def norm(x: str, p: str, out: str) -> str:
        return node("LayerNormalization", [x, p + ".weight", p + ".bias"], out, axis=-1, epsilon=LAYER_NORM_EPS)

    h = gelu(node("Conv", ["log_mel", "conv1.weight", "conv1.bias"], "conv1", pads=[1, 1], strides=[1]))
    h = gelu(node("Conv", [h, "conv2.weight", "conv2.bias"], "conv2", pads=[1, 1], strides=[2]))
    h = node("Transpose", [h], "frames", perm=[0, 2, 1])
    count = node("Gather", [node("Shape", [h], "frames/shape"), axis], "frames/count", axis=0)
    positions = node("Slice", ["embed_positions.weight", start, count, start], "positions")
    outputs = [node("Add", [h, positions], "layer_0")]
    n_layers = config["encoder_layers"]
    for i in range(n_blocks):
        p, h = f"layers.{i}.", outputs[-1]
        qkv = linear(norm(h, p + "norm1", p + "norm1"), p + "qkv", p + "qkv")
        nodes.append(helper.make_node("Split", [qkv, split], [p + "q", p + "k", p + "v"], name=p + "split", axis=-1))
        q, k, v = (node("Reshape", [p + s, heads_shape], p + s + "/heads") for s in "qkv")
        q = node("Transpose", [q], p + "q/t", perm=[0, 2, 1, 3])  # (B, H, T, hd)
        k = node("Transpose", [k], p + "k/t", perm=[0, 2, 3, 1])  # (B, H, hd, T)
        v = node("Transpose", [v], p + "v/t", perm=[0, 2, 1, 3])
        weights = node("Softmax", [node("MatMul", [q, k], p + "scores")], p + "softmax", axis=-1)
        att = node("Transpose", [node("MatMul", [weights, v], p + "context")], p + "context/t", perm=[0, 2, 1, 3])
        att = node("Reshape", [att, width_shape], p + "context/merged")
        h = linear(att, p + "out", p + "attended", residual=h)
        x = gelu(linear(norm(h, p + "norm2", p + "norm2"), p + "fc1", p + "fc1"))
        h = linear(x, p + "fc2", f"layer_{i + 1}" if i < n_layers - 1 else "last_block", residual=h)
        outputs.append(h)
    if n_blocks == n_layers:
        outputs[-1] = norm(outputs[-1], "layer_norm", f"layer_{n_layers}")

    initializers = []
    for name, array in graph_initializers(config, state, n_blocks).items():
        tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(array.shape))
        tensor.data_location = TensorProto.EXTERNAL
        size = 4 * array.size
        for key, value in (("location", EXTERNAL_MARK), ("offset", "0"), ("length", str(size))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        initializers.append(tensor)
    graph = helper.make_graph(
        nodes,
        "whisper_encoder",
        [helper.make_tensor_value_info("log_mel", TensorProto.FLOAT, ["batch", config["num_mel_bins"], "mel_frames"])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["batch", "frames", d]) for o in outputs],
        initializer=initializers + consts,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="serkit")
    model.ir_version = 8
    return model.SerializeToString()


class WhisperOnnx:
    """A Whisper encoder as an onnxruntime session over the shipped graph (module docstring).

    Safe to share between threads (onnxruntime sessions are). Built once per process per model
    (:func:`whisper_onnx`).

    Args:
        model: a key of :data:`~serkit.features.whisper.WHISPER_MODELS`.
        n_blocks: the blocks run (``0..L``; :func:`graph_name`); later layers cannot be asked for.
        threads: onnxruntime's threads per run (``None``: the machine's cores). One run of a
            3-s window uses both cores of a 2-core machine well; several recognitions at once
            (the service) go faster with one thread each, the calls themselves in parallel.

    Raises:
        ConfigError, FeatureError: see :func:`~serkit.features.whisper.whisper_weights`.
        BundleError: onnxruntime is missing or the graph file is absent or does not load.
    """

    def __init__(self, model: str, n_blocks: int, threads: int | None = None):
        from serkit.features.whisper import whisper_mel_filters, whisper_weights

        try:
            from serkit.onnx_runtime import import_onnxruntime

            ort = import_onnxruntime()
        except ImportError as exc:
            raise BundleError("the Whisper encoder's inference path needs onnxruntime (pip install onnxruntime==1.31.1)") from exc
        config, state = whisper_weights(model)
        arrays = graph_initializers(config, state, n_blocks)
        options = ort.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as the VAD's (serkit.vad)
        values = [ort.OrtValue.ortvalue_from_numpy(a) for a in arrays.values()]
        options.add_external_initializers(list(arrays), values)
        try:
            graph = resources.files(GRAPH_PACKAGE).joinpath(graph_name(model, n_blocks)).read_bytes()
            self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        except (OSError, RuntimeError, ValueError) as exc:
            raise BundleError(f"{model}: the shipped encoder graph does not load ({exc})") from exc
        self.model, self.n_blocks, self.width = model, int(n_blocks), int(config["d_model"])
        self.n_mels = int(config["num_mel_bins"])
        #: float64 ``(n_mels, 201)`` mel filters of the log-Mel front end, computed once
        self.filters = whisper_mel_filters(self.n_mels)

    def hidden_states(self, mels: Sequence[np.ndarray], layers: Sequence[int]) -> list[np.ndarray]:
        """The hidden states ``layers`` of each log-Mel input, side by side.

        Inputs of equal length go through one run as a batch.

        Args:
            mels: float32 ``(n_mels, T_b)`` arrays, ``1 <= T_b <= 3000``
                (:func:`~serkit.features.whisper.whisper_log_mel`).
            layers: hidden-state indices in ``0..n_blocks`` (0: front end + positions; the
                encoder's last, ``L``: after the final layer norm), as :meth:`SpeechEncoder.layers`.

        Returns:
            One float32 ``(ceil(T_b / 2), d * len(layers))`` array per input, in order.

        Raises:
            FeatureError: an input of the wrong band count or length, or a layer outside
                ``0..n_blocks``.
        """
        if any(not 0 <= k <= self.n_blocks for k in layers):
            raise FeatureError(f"{self.model} has layers 0..{self.n_blocks}, {list(layers)} asked for")
        if any(m.ndim != 2 or m.shape[0] != self.n_mels or not 1 <= m.shape[1] <= 3000 for m in mels):
            raise FeatureError(f"{self.model} takes (n_mels={self.n_mels}, 1..3000 frames) inputs")
        names = [f"layer_{k}" for k in layers]
        results: list[np.ndarray] = [np.empty(0)] * len(mels)
        by_length: dict[int, list[int]] = {}
        for i, m in enumerate(mels):
            by_length.setdefault(m.shape[1], []).append(i)
        for group in by_length.values():
            batch = np.stack([np.asarray(mels[i], dtype=np.float32) for i in group])
            states = self.session.run(names, {"log_mel": batch})
            for row, i in enumerate(group):
                results[i] = states[0][row] if len(states) == 1 else np.concatenate([s[row] for s in states], axis=1)
        return results


_LOCK = threading.Lock()


@lru_cache(maxsize=4)
def _whisper_onnx(model: str, n_blocks: int, threads: int | None) -> WhisperOnnx:
    return WhisperOnnx(model, n_blocks, threads)


def whisper_onnx(model: str, n_blocks: int, threads: int | None = None) -> WhisperOnnx:
    """The process-wide :class:`WhisperOnnx` of ``model`` run to ``n_blocks`` with ``threads``,
    built on first use (under 1 s for Whisper base: reading and checking the weights, creating
    the session)."""
    with _LOCK:
        return _whisper_onnx(model, int(n_blocks), threads)


def graph_name(model: str, n_blocks: int) -> str:
    """File name of the shipped graph of ``model`` run to block ``n_blocks``."""
    return f"{model}-{n_blocks}.onnx"
