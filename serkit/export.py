"""Export a model bundle to ONNX (``serkit export MODEL_DIR --onnx``).

Linear models (``linear_svm``, ``logistic_regression``) are exported by
:mod:`serkit.export_linear`, Whisper blocks and pooling included. Neural models: works for any :class:`~serkit.models.network.TorchSERModel`: its module takes the batch dict
that :meth:`~serkit.models.network.TorchSERModel.make_batch` builds (``(B, dims)`` utterance
features, ``(B, T, dims)`` frame features with ``<key>_lengths`` ``(B,)`` int64) and returns logits.
The exported graph takes those tensors as named inputs, in the order ``make_batch`` produces
them, with the batch size and every frame count dynamic, and returns ``probabilities`` ``(B, K)``
(softmax of the logits, float32). The class order, the bundle's extractors and the network's
inputs (level and column layout) are stored in the ONNX metadata (``serkit_labels``,
``serkit_features``, ``serkit_inputs``, JSON). Features must be
computed and normalised as :meth:`serkit.bundle.Bundle.predict` does before they go in.

After writing, the file is run with onnxruntime on a fresh batch of another size and length and
compared with PyTorch; a difference above ``tolerance`` is an error.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from serkit.bundle import load_bundle
from serkit.errors import BundleError
from serkit.export_linear import LINEAR_MODELS, linear_graph
from serkit.io import atomic_write_bytes

OUTPUT = "probabilities"


def _dummy_inputs(model: Any, levels: dict[str, str], n: int, frames: tuple[int, ...], seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    X: dict[str, Any] = {}
    for key, dim in model.dims_.items():
        if levels.get(key) == "frame":
            X[key] = [rng.standard_normal((frames[i % len(frames)], dim)).astype(np.float32) for i in range(n)]
        else:
            X[key] = rng.standard_normal((n, dim)).astype(np.float32)
    return X


EXPORTERS = ("auto", "dynamo", "torchscript")


def export_onnx(
    model_dir: str | Path,
    out_file: str | Path | None = None,
    *,
    exporter: str = "auto",
    tolerance: float = 1e-4,
) -> dict[str, Any]:
    """Write ``model_dir``'s network as ONNX and check it against PyTorch with onnxruntime.

    Args:
        model_dir: bundle folder of a neural model (a ``TorchSERModel``).
        out_file: ONNX file to write (default ``<model_dir>.onnx`` beside the bundle folder: a file
            added inside a bundle would make it fail its checksum list).
        exporter: ``"dynamo"`` (``torch.export``, PyTorch's default; thorough but slow, about a
            minute on two busy cores), ``"torchscript"`` (the older tracing exporter, seconds) or
            ``"auto"`` (dynamo, falling back to TorchScript if it fails).
        tolerance: largest accepted ``|p_onnx - p_torch|`` on the check batch.

    Returns:
        ``{"path", "inputs", "labels", "exporter", "max_abs_diff"}``.

    Raises:
        BundleError: the bundle is not a neural model, the export fails, or the parity check
            exceeds ``tolerance`` (the file is then not written), or ``exporter`` is unknown.
    """
    import torch
    from torch import nn

    from serkit.models.network import TorchSERModel
    from serkit.onnx_runtime import import_onnxruntime

    ort = import_onnxruntime()
    if exporter not in EXPORTERS:
        raise BundleError(f"unknown exporter {exporter!r}; choose one of {', '.join(EXPORTERS)}")
    bundle = load_bundle(model_dir)
    model = bundle.model
    target = Path(out_file) if out_file else Path(model_dir).with_name(Path(model_dir).name + ".onnx")
    if bundle.meta["model"]["name"] in LINEAR_MODELS:
        return _export_linear(bundle, target, exporter, tolerance)
    if not isinstance(model, TorchSERModel):
        raise BundleError(
            f"{model_dir}: ONNX export is for neural models (TorchSERModel) and linear models "
            f"({', '.join(LINEAR_MODELS)}); {bundle.meta['model']['name']!r} is neither"
        )
    levels = {key: spec.level for key, spec in bundle.plan.specs.items()}
    rng = np.random.default_rng(0)
    X = _dummy_inputs(model, levels, 2, (64, 48), seed=0)
    batch = model.make_batch(X, np.arange(2), train=False, rng=rng)
    names = list(batch)
    module = model.module_.cpu().eval()

    class Wrapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.inner(dict(zip(names, tensors))), dim=1)

    wrapped = Wrapped().eval()
    args = tuple(batch[k] for k in names)
    batch_dim = torch.export.Dim("batch", min=1)
    frame_dims = {k: torch.export.Dim(f"{k}_frames", min=1) for k in names if batch[k].ndim == 3}
    shapes = tuple({0: batch_dim, 1: frame_dims[k]} if k in frame_dims else {0: batch_dim} for k in names)
    dynamic = {
        "dynamo": {"dynamic_shapes": {"tensors": shapes}, "verbose": False},  # forward(*tensors)
        "torchscript": {"dynamic_axes": {
            **{k: ({0: "batch", 1: f"{k}_frames"} if k in frame_dims else {0: "batch"}) for k in names},
            OUTPUT: {0: "batch"}}},
    }  # fmt: skip
    meta = {
        "serkit_labels": json.dumps(model.labels_),
        "serkit_features": json.dumps(bundle.meta["features"]),
        "serkit_inputs": json.dumps({key: spec.to_dict() for key, spec in bundle.plan.specs.items()}),
    }
    data, used = _to_onnx(wrapped, args, names, dynamic, meta, ("dynamo", "torchscript"), exporter, model_dir)

    # Parity on a batch of another size and other lengths than the one traced.
    check = _dummy_inputs(model, levels, 3, (80, 53, 67), seed=1)
    check_batch = model.make_batch(check, np.arange(3), train=False, rng=np.random.default_rng(1))
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT], {k: check_batch[k].numpy() for k in names})[0]
    with torch.no_grad():
        want = wrapped(*(check_batch[k] for k in names)).numpy()
    diff = float(np.max(np.abs(got - want)))
    if not diff <= tolerance:
        raise BundleError(f"{model_dir}: ONNX output differs from PyTorch by {diff:.3g} (> {tolerance:g}); not written")
    atomic_write_bytes(target, data)
    return {"path": str(target), "inputs": names, "labels": list(model.labels_), "exporter": used, "max_abs_diff": diff}


def _export_linear(bundle: Any, target: Path, exporter: str, tolerance: float) -> dict[str, Any]:
    """:func:`export_onnx` of a linear-model bundle (:mod:`serkit.export_linear`)."""
    import torch

    from serkit.onnx_runtime import import_onnxruntime

    ort = import_onnxruntime()
    module, args, axes, name = linear_graph(bundle)
    dims = {i: torch.export.Dim(label, min=2 if label == "frames" else 1) for i, label in axes[name].items()}
    dynamic = {
        "dynamo": {"dynamic_shapes": {"x" if name == "features" else "mel": dims}},
        "torchscript": {"dynamic_axes": {name: axes[name], OUTPUT: {0: "batch"}}},
    }
    meta = {"serkit_labels": json.dumps(bundle.labels), "serkit_features": json.dumps(bundle.meta["features"]),
            "serkit_input": name}  # fmt: skip
    # TorchScript first: tracing a linear head behind fixed Whisper blocks is exact and takes seconds.
    data, used = _to_onnx(module, args, [name], dynamic, meta, ("torchscript", "dynamo"), exporter, bundle.path)
    # Parity on an input of another size than the one traced.
    rng = np.random.default_rng(1)
    shape = (1, args[0].shape[1], 437) if name == "log_mel" else (3, args[0].shape[1])
    check = rng.standard_normal(shape).astype(np.float32) * (0.5 if name == "log_mel" else 1.0)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT], {name: check})[0]
    with torch.no_grad():
        want = module(torch.from_numpy(check)).numpy()
    diff = float(np.max(np.abs(got - want)))
    if not diff <= tolerance:
        raise BundleError(f"{bundle.path}: ONNX output differs from PyTorch by {diff:.3g} (> {tolerance:g}); not written")
    atomic_write_bytes(target, data)
    return {"path": str(target), "inputs": [name], "labels": list(bundle.labels), "exporter": used, "max_abs_diff": diff}


def _to_onnx(
    module: Any, args: tuple, names: list[str], dynamic: dict[str, dict[str, Any]], meta: dict[str, str],
    order: tuple[str, str], exporter: str, where: Any,
) -> tuple[bytes, str]:
    """Export ``module`` with the exporters of ``exporter`` (``"auto"``: ``order``, the second if the
    first fails), ``dynamic`` giving each exporter's dynamic-shape arguments; ``meta`` goes into
    the model's metadata. Returns the serialised model and the exporter used.

    Raises:
        BundleError: every exporter tried failed (each one's error named).
    """
    import onnx
    import torch

    tries = order if exporter == "auto" else (exporter,)
    errors = []
    with tempfile.TemporaryDirectory() as scratch:
        raw = Path(scratch) / "model.onnx"
        for name in tries:
            kwargs = {"input_names": names, "output_names": [OUTPUT], "dynamo": name == "dynamo", **dynamic[name]}
            try:
                with torch.no_grad():
                    torch.onnx.export(module, args, str(raw), **kwargs)
            except Exception as exc:  # noqa: BLE001 - any exporter failure: try the other, then report both
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            proto = onnx.load(str(raw))
            for key, value in meta.items():
                entry = proto.metadata_props.add()
                entry.key, entry.value = key, value
            return proto.SerializeToString(), name
    raise BundleError(f"{where}: ONNX export failed ({'; '.join(errors)})")
