"""ONNX graphs of linear-model bundles: frozen Whisper blocks + pooling + standardisation +
linear classifier + temperature, as one file (``serkit export MODEL_DIR --onnx``).

Two kinds of bundle export:

- **Encoder statistics** (a ``speech_encoder`` Whisper extractor read by one ``pooled_stats``
  derived feature, the encoder recipes): the graph takes Whisper's log-Mel spectrogram of one
  recording of at most 30 s, input ``log_mel`` float32 ``(1, n_mels, T)`` with ``T`` dynamic
  (:func:`serkit.features.whisper.whisper_log_mel` of the 16 kHz mono down-mix, in a leading
  batch axis), and runs only the blocks up to the highest layer the bundle holds.
- **Utterance-level features** (openSMILE functionals and the like): the graph takes the raw
  (unstandardised) feature vectors, input ``features`` float32 ``(B, d)``.

Both return ``probabilities`` ``(B, K)``. The classifier is the bundle's ``logistic_regression``
(logits ``W z + b``) or ``linear_svm``: libsvm's one-vs-one linear decisions
``f_ij(z) = w_ij . z + b_ij`` turned into one-vs-rest values as scikit-learn's
``decision_function_shape="ovr"`` defines them: each class gets its votes plus its summed
confidences ``s_k`` squashed as ``s_k / (3 (|s_k| + 1))`` (which keeps them below one vote).
Then ``softmax(f / T)`` with the bundle's temperature.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from serkit.errors import BundleError
from serkit.trimming import encoder_statistics

LINEAR_MODELS = ("linear_svm", "logistic_regression")


def _linear_head(bundle: Any, key: str) -> Any:
    """``nn.Module``: raw features ``(B, d)`` -> probabilities ``(B, K)`` (module docstring)."""
    import torch
    from torch import nn

    model, norm = bundle.model, bundle.normalisers[key]
    if norm.mode not in ("global", "none"):
        raise BundleError(f"{bundle.path}: ONNX export needs global (or no) normalisation, the bundle has {norm.mode!r}")
    dim = norm.dim
    mean = np.zeros(dim) if norm.mode == "none" else norm.mean_
    std = np.ones(dim) if norm.mode == "none" else norm.std_
    columns = np.arange(dim) if model.columns_ is None else np.asarray(model.columns_)
    est, n_classes = model.svm_, len(model.labels_)  # serkit.models.svm.LinearArrays
    if list(est.classes) != list(range(n_classes)):
        raise BundleError(f"{bundle.path}: the classifier was fitted on classes {list(est.classes)} of {n_classes}")
    weights = torch.tensor(est.coef, dtype=torch.float32)
    bias = torch.tensor(est.intercept, dtype=torch.float32)
    pairs = [(i, j) for i in range(n_classes) for j in range(i + 1, n_classes)]
    svm = bundle.meta["model"]["name"] == "linear_svm"
    if svm and n_classes > 2:
        # votes[k] - votes_against: pair p adds +1 to i when f_p >= 0, else +1 to j (vote matrix),
        # confidences: s_i += f_p, s_j -= f_p.
        sign = np.zeros((len(pairs), n_classes))
        for p, (i, j) in enumerate(pairs):
            sign[p, i], sign[p, j] = 1.0, -1.0
        sign_t = torch.tensor(sign, dtype=torch.float32)
        win_i = torch.tensor((sign > 0).astype(np.float32))
        win_j = torch.tensor((sign < 0).astype(np.float32))

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
            self.register_buffer("columns", torch.tensor(columns, dtype=torch.int64))
            self.register_buffer("weights", weights)
            self.register_buffer("bias", bias)
            if svm and n_classes > 2:
                self.register_buffer("sign", sign_t)
                self.register_buffer("win_i", win_i)
                self.register_buffer("win_j", win_j)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = torch.index_select((x - self.mean) / self.std, 1, self.columns)
            raw = z @ self.weights.T + self.bias
            if n_classes == 2:  # one decision value, the second class's margin
                scores = torch.cat([-raw, raw], dim=1)
            elif svm:
                positive = (raw >= 0).to(raw.dtype)
                votes = positive @ self.win_i + (1 - positive) @ self.win_j
                conf = raw @ self.sign
                scores = votes + conf / (3 * (conf.abs() + 1))
            else:
                scores = raw
            return torch.softmax(scores / model.temperature_, dim=1)

    return Head().eval()


def _encoder_front(bundle: Any) -> tuple[Any, int] | None:
    """``(nn.Module, n_mels)``: log-Mel ``(1, n_mels, T)`` -> pooled statistics ``(1, d)``, or
    ``None`` when the bundle is not encoder statistics (module docstring)."""
    import torch
    from torch import nn

    graph = encoder_statistics(bundle.plan)
    if graph is None:
        return None
    node, extractor = bundle.plan.nodes[graph[0]], bundle.plan.nodes[graph[1]].extractor
    if not extractor.config.model.startswith("whisper"):
        return None
    stats = tuple(node.derived.config.stats)
    if not set(stats) <= {"mean", "std"}:
        raise BundleError(f"{bundle.path}: ONNX export pools mean and std only, the bundle uses {list(stats)}")
    from serkit.features.whisper import build_whisper_encoder

    encoder, layers = build_whisper_encoder(extractor.config.model), extractor.layers
    n_blocks, n_layers = extractor.n_blocks, len(encoder.layers)

    class Front(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, mel: torch.Tensor) -> torch.Tensor:
            enc = self.encoder
            h = nn.functional.gelu(enc.conv1(mel))
            h = nn.functional.gelu(enc.conv2(h)).permute(0, 2, 1)
            h = h + enc.embed_positions.weight[: h.shape[1]]
            states = [h]
            for block in enc.layers[:n_blocks]:
                h = block(h, None)
                states.append(h)
            if n_blocks == n_layers:
                states[-1] = enc.layer_norm(h)
            chosen = [states[k] for k in layers]
            pooled = {"mean": [s.mean(dim=1) for s in chosen],
                      "std": [(s - s.mean(dim=1, keepdim=True)).square().mean(dim=1).sqrt() for s in chosen]}  # fmt: skip
            return torch.cat([p for name in stats for p in pooled[name]], dim=1)

    return Front().eval(), int(encoder.conv1.in_channels)


def linear_graph(bundle: Any) -> tuple[Any, tuple[Any, ...], dict[str, Any], str]:
    """The module to export, an example input, its dynamic axes and the input's name.

    Raises:
        BundleError: the model is not linear, it reads several inputs, or a missing-feature
            block (NaN) case the graph cannot express.
    """
    import torch
    from torch import nn

    name = bundle.meta["model"]["name"]
    if name not in LINEAR_MODELS:
        raise BundleError(f"{bundle.path}: not a linear model ({name!r})")
    if len(bundle.plan.outputs) != 1:
        raise BundleError(f"{bundle.path}: ONNX export of a linear model needs exactly one input feature")
    (key,) = bundle.plan.outputs
    head = _linear_head(bundle, key)
    front = _encoder_front(bundle)
    if front is None:
        if bundle.plan.specs[key].level != "utterance":
            raise BundleError(f"{bundle.path}: feature {key!r} is frame level")
        return head, (torch.zeros((2, bundle.normalisers[key].dim)),), {"features": {0: "batch"}}, "features"
    module, n_mels = front

    class Whole(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.front, self.head = module, head

        def forward(self, mel: torch.Tensor) -> torch.Tensor:
            return self.head(self.front(mel))

    return Whole().eval(), (torch.zeros((1, n_mels, 300)),), {"log_mel": {2: "frames"}}, "log_mel"
