"""Spectrograms as colour images: the input of ImageNet CNNs in the Deep Spectrum recipe.

Deep Spectrum (Amiriparian et al., "Snore sound classification using image-based deep spectrum
features", Interspeech 2017) feeds pre-trained image CNNs with plots of a spectrogram: values
colour-mapped, low frequencies at the bottom, scaled to the network's input size. Zhao et al.
(IEEE Access 2019, Sec. IV-B, Fig. 3–4) compare their learned deep spectrum with such features
from AlexNet and VGG. :func:`spectrogram_image` is that picture for a log-Mel spectrogram; the
CNN is :mod:`serkit.blocks.imagenet_cnn`, the derived feature :mod:`serkit.derived.deep_spectrum`.
"""

from __future__ import annotations

import numpy as np
import torch

from serkit.errors import ConfigError, FeatureError


def spectrogram_image(logmel: np.ndarray, size: int = 224, colormap: str = "viridis") -> torch.Tensor:
    """A log-Mel spectrogram as an RGB image, the Deep Spectrum way (module docstring).

    The values are min-max scaled per utterance to [0, 1], quantised to the 256 entries of a
    matplotlib colour map, flipped so that low frequencies are at the bottom (row 0 is the
    highest band), and resized (bilinear, anti-aliased, ``align_corners=False``) to
    ``size × size``. A constant spectrogram gives one colour (the map's lowest).

    Args:
        logmel: ``(frames, n_mels)`` log-Mel energies (any real dtype; computed in float64).
        size: output side in pixels (224 for :mod:`serkit.blocks.imagenet_cnn`).
        colormap: a matplotlib colour-map name.

    Returns:
        float32 ``(3, size, size)`` RGB in [0, 1]; rows are bands (high to low), columns time.

    Raises:
        FeatureError: ``logmel`` is not a non-empty 2-D array of finite values.
        ConfigError: an unknown colour map or a ``size`` below 1.
    """
    from matplotlib import colormaps

    logmel = np.asarray(logmel, dtype=np.float64)
    if logmel.ndim != 2 or logmel.size == 0 or not np.all(np.isfinite(logmel)):
        raise FeatureError(f"spectrogram_image needs a finite, non-empty (frames, n_mels) array, got shape {logmel.shape}")
    if colormap not in colormaps:
        raise ConfigError(f"unknown matplotlib colour map {colormap!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ConfigError(f"spectrogram_image: size must be an integer >= 1, got {size!r}")
    low, high = logmel.min(), logmel.max()
    scaled = (logmel - low) / (high - low) if high > low else np.zeros_like(logmel)
    lut = colormaps[colormap](np.linspace(0.0, 1.0, 256))[:, :3]
    rgb = lut[np.round(scaled.T[::-1] * 255).astype(int)]  # (n_mels, frames, 3), low bands at the bottom
    image = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32))[None]
    image = torch.nn.functional.interpolate(image, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return image[0].clamp(0.0, 1.0)
