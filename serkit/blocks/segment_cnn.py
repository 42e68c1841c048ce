"""Segment CNNs of the binaural system (Zhang et al., IEEE Access 2020, Sec. II-B, eq. 1–2).

The paper fine-tunes ImageNet AlexNet on 227 × 227 × 3 log-Mel segment images, replaces fc8 with
a new emotion layer and takes the 4096-d fc7 activations as segment features. Here a network is
a list of *stages* run in order after a bilinear resize of the ``(3, n_mels, frames)`` segment
to the network's input size; the last ``k`` stages can be fine-tuned with a new linear
classification layer, the earlier ones stay frozen, so their output (the *cut*) is computed
once and cached. Two networks:

``efficientnet_lite0`` (default)
    ImageNet EfficientNet-Lite0 from the PyPI packages of :mod:`serkit.blocks.imagenet_cnn`
    (SHA-256 checked). Stages: stem, the 16 MBConv blocks, head (1 × 1 conv to 1280, BN, ReLU6,
    global average). Segment features: the 1280-d head output, the input of ImageNet's
    classifier (the counterpart of AlexNet's fc7). Input 224 × 224.
``alexnet``
    The AlexNet architecture (Krizhevsky et al. 2012, the paper's network) in the single-tower
    layout torchvision uses (64-192-384-256-256 convolutions, fc6/fc7 4096), written here so
    that a torchvision-format state dict loads without torchvision. ImageNet AlexNet weights
    cannot be obtained on these machines: train from scratch (``finetune_stages = -1``) or pass
    a local weight file with its SHA-256. Stages: conv1 … conv5 (with their max-pools; conv5
    ends with the 6 × 6 average pool), fc6, fc7. Segment features: 4096-d fc7. Input 227 × 227.

Batch-norm layers stay in evaluation mode while fine-tuning (ImageNet statistics; batches of
30 one-emotion segments would give poor estimates). No stochastic depth.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from serkit.errors import ConfigError
from serkit.io import sha256_file

ARCHITECTURES = ("efficientnet_lite0", "alexnet")
#: Input side in pixels of each architecture (the paper: 227 for AlexNet).
INPUT_SIZE = {"efficientnet_lite0": 224, "alexnet": 227}


class Resize(nn.Module):
    """Bilinear resize of ``(B, 3, H, W)`` images to ``size × size`` (Sec. II-A: "bilinear interpolation")."""

    def __init__(self, size: int):
        super().__init__()
        self.size = int(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(
            x, size=(self.size, self.size), mode="bilinear", align_corners=False
        )


class AlexNet(nn.Module):
    """AlexNet, torchvision's layout and parameter names (``features.*``, ``classifier.*``).

    Input ``(B, 3, 227, 227)`` (224 works as well: the 6 × 6 adaptive average pool absorbs the
    difference); output ``(B, num_classes)`` logits.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    def stages(self) -> list[nn.Module]:
        """conv1 … conv5 (+ pooling, flatten), fc6, fc7: the network without fc8."""
        f, c = self.features, self.classifier
        conv5 = nn.Sequential(*f[10:13], self.avgpool, nn.Flatten())
        return [f[0:3], f[3:6], f[6:8], f[8:10], conv5, c[0:3], c[3:6]]


def _efficientnet_stages(model: nn.Module) -> list[nn.Module]:
    stem = nn.Sequential(model._conv_stem, model._bn0, nn.ReLU6())
    head = nn.Sequential(
        model._conv_head, model._bn1, nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )
    return [stem, *[_Block(b) for b in model._blocks], head]


class _Block(nn.Module):
    """One MBConv block called without drop-connect."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


def load_alexnet(
    weights: str | Path | None = None, sha256: str | None = None
) -> AlexNet:
    """AlexNet with random weights, or with a local torchvision-format state dict.

    Args:
        weights: path of a ``torch.save``'d state dict with torchvision's AlexNet names.
        sha256: the file's expected SHA-256 (required with ``weights``: what is loaded is pinned).

    Raises:
        ConfigError: a weight file without its SHA-256, a missing file, another hash, or a
            state dict that does not match the architecture.
    """

    model = AlexNet()
    if weights is None:
        return model.eval()
    path = Path(weights)
    if not sha256:
        raise ConfigError(
            f"AlexNet weights {path}: give weights_sha256 as well, so the file loaded is pinned"
        )
    if not path.is_file():
        raise ConfigError(f"AlexNet weight file {path} does not exist")
    digest = sha256_file(path)
    if digest != sha256.lower():
        raise ConfigError(f"{path}: SHA-256 {digest} is not the expected {sha256}")
    try:
        model.load_state_dict(
            torch.load(path, map_location="cpu", weights_only=True), strict=True
        )
    except (RuntimeError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path}: not an AlexNet state dict in torchvision's layout ({exc})"
        ) from exc
    return model.eval()


@dataclass(frozen=True)
class Backbone:
    """A network cut for fine-tuning (module docstring).

    Attributes:
        frozen: ``(B, 3, n_mels, frames)`` segments -> cut activations; in eval mode, no gradients.
        trainable: cut activations -> ``(B, feature_dim)`` segment features (initial weights).
        feature_dim: size of the segment features (1280 or 4096).
        cut: stages in the frozen part (0: everything trains, the resize included).
    """

    frozen: nn.Module
    trainable: nn.Module
    feature_dim: int
    cut: int


def build_backbone(
    architecture: str,
    finetune_stages: int,
    image_size: int | None = None,
    *,
    pretrained: bool = True,
    weights: str | Path | None = None,
    weights_sha256: str | None = None,
) -> Backbone:
    """Split a network into a frozen part and a trainable part.

    The frozen part is the resize plus all stages but the last ``max(finetune_stages, 1)``; with
    ``finetune_stages = 0`` (no fine-tuning) the last stage still sits in the trainable part,
    with its pretrained weights, so that frozen features and head-only fine-tuning share the
    same cached cut. ``finetune_stages = -1`` trains everything.

    Args:
        architecture: ``"efficientnet_lite0"`` or ``"alexnet"``.
        finetune_stages: ``-1`` (all), 0 (none) or the number of final stages to train.
        image_size: network input side; ``None`` takes :data:`INPUT_SIZE`.
        pretrained: EfficientNet-Lite0's ImageNet weights (``False``: random, for tests).
        weights, weights_sha256: a local weight file and its hash (EfficientNet: replaces the
            installed file, same hash required; AlexNet: see :func:`load_alexnet`).

    Raises:
        ConfigError: unknown architecture, ``finetune_stages`` out of range, missing weights.
    """
    if architecture not in ARCHITECTURES:
        raise ConfigError(
            f"unknown segment CNN {architecture!r}; choose one of {', '.join(ARCHITECTURES)}"
        )
    if architecture == "efficientnet_lite0":
        from serkit.blocks.imagenet_cnn import FEATURE_DIM, load_efficientnet_lite0

        stages, dim = (
            _efficientnet_stages(
                load_efficientnet_lite0(pretrained=pretrained, weights=weights)
            ),
            FEATURE_DIM,
        )
    else:
        stages, dim = load_alexnet(weights, weights_sha256).stages(), 4096
    n = len(stages)
    if (
        not isinstance(finetune_stages, int)
        or isinstance(finetune_stages, bool)
        or not -1 <= finetune_stages <= n
    ):
        raise ConfigError(
            f"finetune_stages must be -1 (all), 0 (none) or 1..{n} for {architecture}, got {finetune_stages!r}"
        )
    ops: list[nn.Module] = [Resize(image_size or INPUT_SIZE[architecture]), *stages]
    cut = 0 if finetune_stages in (-1, n) else n - max(finetune_stages, 1)
    frozen = nn.Sequential(*ops[: 1 + cut]) if cut else nn.Identity()
    trainable = nn.Sequential(*ops[1 + cut :]) if cut else nn.Sequential(*ops)
    for p in frozen.parameters():
        p.requires_grad_(False)
    return Backbone(frozen.eval(), trainable.eval(), dim, cut)


class SegmentNet(nn.Module):
    """Trainable part of a backbone + new emotion layer (eq. 1: ``softmax(W · Υ(a; θ))``).

    ``forward`` takes the trainer's batch ``{key: (B, prod(cut_shape))}`` of flattened cut
    activations and returns ``(B, K)`` logits; :meth:`features` returns the segment features
    ``Υ`` (penultimate activations). Batch-norm layers stay in evaluation mode.
    """

    def __init__(
        self,
        trainable: nn.Module,
        cut_shape: Sequence[int],
        feature_dim: int,
        n_classes: int,
        dropout: float,
    ):
        super().__init__()
        self.trainable = copy.deepcopy(trainable)
        for p in self.trainable.parameters():
            p.requires_grad_(True)
        self.cut_shape = tuple(int(s) for s in cut_shape)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(feature_dim, n_classes)

    def features(self, flat: torch.Tensor) -> torch.Tensor:
        """Segment features ``(B, feature_dim)`` of flattened cut activations ``(B, prod(cut_shape))``."""
        return self.trainable(flat.reshape(len(flat), *self.cut_shape))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        (flat,) = batch.values()
        return self.classifier(self.dropout(self.features(flat)))

    def train(self, mode: bool = True) -> SegmentNet:
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self
