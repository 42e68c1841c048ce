"""Deep-spectrum features + linear SVM (Zhao et al., IEEE Access 2019, Sec. IV-B, Table 7, Fig. 3–4).

Two models, both ending in serkit's :class:`~serkit.models.svm.LinearSVM` (C chosen on inner
leave-one-speaker-out folds of the training speakers, class-balanced):

``blstm_fcn_svm`` — the paper's "Deep Spectrum" row. ``fit`` trains an Attention-BLSTM-FCN
    (:mod:`serkit.models.blstm_fcn`, same options) on the training utterances it is given, then
    takes the fused ``[BLSTM ; FCN]`` vector of every training utterance, standardises it with
    training statistics and fits the SVM; ``predict_proba`` passes new utterances through the
    same network and SVM. In an experiment each fold builds a fresh model, so the network that
    makes a fold's features has seen that fold's training speakers only: no test speaker leaks
    into the network, the scaler or the SVM. (The inner C search runs on vectors of speakers
    the network was trained on, so its estimates are optimistic; the test fold is not.)

``deep_spectrum_cnn_svm`` — the fixed ImageNet-CNN baseline (the paper's AlexNet / VGG fc7
    features, Fig. 3–4; here EfficientNet-Lite0, :mod:`serkit.blocks.imagenet_cnn`). Each
    utterance's log-mel spectrogram becomes an RGB image (:func:`spectrogram_image`, the Deep
    Spectrum recipe: colour-mapped, low frequencies at the bottom, scaled to 224 × 224), the
    frozen CNN gives 1280-d penultimate activations, and the SVM is trained on them. Nothing is
    learnt except the scaler and the SVM. Use ``normalisation: none`` in the recipe: the image is
    scaled per utterance and a per-band standardisation would change the picture.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from serkit.errors import BundleError, ConfigError
from serkit.features.normalise import Normaliser, fit_normaliser
from serkit.features.data import Inputs
from serkit.models.base import Layouts, SERModel, register
from serkit.models.blstm_fcn import AttentionBLSTMFCN, BLSTMFCNConfig, select_feature
from serkit.models.svm import LinearSVM, LinearSVMConfig

KEY = "deep_spectrum"


class _FeaturesThenSVM(SERModel):
    """Shared tail: utterance vectors -> training-set standardisation -> :class:`LinearSVM`.

    Subclasses implement :meth:`vectors` (``(n, d)`` float32 from inputs) and may train something
    first in :meth:`fit_extractor`. Fitted state: ``labels_``, ``scaler_``, ``svm_``.
    """

    def fit_extractor(self, X: Inputs, y: np.ndarray, labels: Sequence[str], groups, seed: int, valid) -> None:
        """Train whatever makes the vectors (nothing by default)."""

    def vectors(self, X: Inputs) -> np.ndarray:
        raise NotImplementedError

    def fit(
        self,
        X: Inputs,
        y: np.ndarray,
        *,
        labels: Sequence[str],
        groups: np.ndarray | None = None,
        seed: int = 0,
        valid: tuple[Inputs, np.ndarray] | None = None,
        layouts: Layouts | None = None,
    ) -> _FeaturesThenSVM:
        """Fit the vector extractor (if any) and the SVM on the training utterances only.

        Raises:
            ConfigError: as the extractor's and :meth:`LinearSVM.fit` (e.g. a C grid without
                at least two training speakers).
        """
        y = np.asarray(y, dtype=int)
        self.labels_ = list(labels)
        self.fit_extractor(X, y, labels, groups, seed, valid)
        vectors = self.vectors(X)
        self.scaler_ = fit_normaliser("global" if self.config.standardise else "none", vectors)
        self.svm_ = LinearSVM(self._svm_config()).fit(
            {KEY: self.scaler_.transform(vectors)}, y, labels=labels, groups=groups, seed=seed
        )
        return self

    def _svm_config(self) -> LinearSVMConfig:
        return LinearSVMConfig(C=self.config.svm_C, class_weight=self.config.svm_class_weight)

    def predict_proba(self, X: Inputs) -> np.ndarray:
        """The SVM's calibrated probabilities ``(n, K)`` (see :class:`LinearSVM`)."""
        return self.svm_.predict_proba({KEY: self.scaler_.transform(self.vectors(X))})

    def fit_info(self) -> dict[str, Any]:
        return {"svm": self.svm_.fit_info()}

    def save(self, directory: Path) -> None:
        (directory / "svm").mkdir()
        self.svm_.save(directory / "svm")
        state = {"labels": self.labels_, "scaler": self.scaler_.to_dict()}
        (directory / "deep_spectrum.json").write_text(json.dumps(state, indent=2))

    def _load_tail(self, directory: Path) -> None:
        try:
            state = json.loads((directory / "deep_spectrum.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise BundleError(f"{directory}: unreadable deep_spectrum.json ({exc})") from exc
        self.labels_ = list(state["labels"])
        self.scaler_ = Normaliser.from_dict(state["scaler"])
        self.svm_ = LinearSVM.load(directory / "svm", dataclasses.asdict(self._svm_config()))


# --------------------------------------------------------------------------- learned deep spectrum


@dataclass(frozen=True)
class BLSTMFCNSVMConfig(BLSTMFCNConfig):
    """Options of :class:`BLSTMFCNSVM`: those of :class:`BLSTMFCNConfig` (the network) plus the SVM's.

    Attributes:
        svm_C: one C or a grid searched on inner leave-one-speaker-out folds.
        svm_class_weight: ``"balanced"`` or ``None``.
        standardise: z-score the deep-spectrum vectors with training statistics before the SVM.
    """

    svm_C: float | tuple[float, ...] = LinearSVMConfig.C
    svm_class_weight: str | None = "balanced"
    standardise: bool = True


def _network_config(config: BLSTMFCNSVMConfig) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(BLSTMFCNConfig)}
    return {k: v for k, v in dataclasses.asdict(config).items() if k in names}


@register
class BLSTMFCNSVM(_FeaturesThenSVM):
    """Attention-BLSTM-FCN deep-spectrum vectors + linear SVM (module docstring; Zhao et al. 2019, Table 7).

    Fitted state adds ``network_`` (the fitted :class:`AttentionBLSTMFCN`).
    """

    name = "blstm_fcn_svm"
    Config = BLSTMFCNSVMConfig

    def fit_extractor(self, X, y, labels, groups, seed, valid) -> None:
        self.network_ = AttentionBLSTMFCN(_network_config(self.config))
        self.network_.fit(X, y, labels=labels, groups=groups, seed=seed, valid=valid)

    def vectors(self, X: Inputs) -> np.ndarray:
        """Fused deep-spectrum vectors ``(n, dim)`` of the fitted network."""
        return self.network_.embed(X)

    def fit_info(self) -> dict[str, Any]:
        return {"network": self.network_.fit_info(), **super().fit_info()}

    def save(self, directory: Path) -> None:
        (directory / "network").mkdir()
        self.network_.save(directory / "network")
        super().save(directory)

    @classmethod
    def load(cls, directory: Path, config: Mapping[str, Any]) -> BLSTMFCNSVM:
        model = cls(dict(config))
        model.network_ = AttentionBLSTMFCN.load(directory / "network", _network_config(model.config))
        model._load_tail(directory)
        return model


# --------------------------------------------------------------------------- ImageNet CNN baseline


def spectrogram_image(logmel: np.ndarray, size: int = 224, colormap: str = "viridis") -> torch.Tensor:
    """A log-mel spectrogram as an RGB image, the Deep Spectrum way (Amiriparian et al. 2017;
    Zhao et al. 2019, Sec. IV-B: mel-spectrograms as the input of pre-trained CNNs).

    The values are min-max scaled per utterance to [0, 1], coloured with a matplotlib colour map,
    flipped so that low frequencies are at the bottom, and resized (bilinear, anti-aliased) to
    ``size × size``.

    Args:
        logmel: ``(frames, n_mels)`` log-mel energies.
        size: output side in pixels.
        colormap: a matplotlib colour-map name.

    Returns:
        float32 ``(3, size, size)`` in [0, 1].

    Raises:
        ConfigError: not a non-empty 2-D finite array, or an unknown colour map.
    """
    from matplotlib import colormaps

    logmel = np.asarray(logmel, dtype=np.float64)
    if logmel.ndim != 2 or logmel.size == 0 or not np.all(np.isfinite(logmel)):
        raise ConfigError(f"spectrogram_image needs a finite (frames, n_mels) array, got shape {logmel.shape}")
    if colormap not in colormaps:
        raise ConfigError(f"unknown matplotlib colour map {colormap!r}")
    low, high = logmel.min(), logmel.max()
    scaled = (logmel - low) / (high - low) if high > low else np.zeros_like(logmel)
    lut = colormaps[colormap](np.linspace(0.0, 1.0, 256))[:, :3]
    rgb = lut[np.round(scaled.T[::-1] * 255).astype(int)]  # (n_mels, frames, 3), low bands at the bottom
    image = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32))[None]
    image = torch.nn.functional.interpolate(image, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return image[0].clamp(0.0, 1.0)


@dataclass(frozen=True)
class DeepSpectrumCNNConfig:
    """Options of :class:`DeepSpectrumCNNSVM`.

    Attributes:
        feature: key of the frame-level log-mel input; ``None`` takes the only feature.
        colormap: colour map of the spectrogram image.
        batch_size: images per CNN forward pass.
        svm_C, svm_class_weight, standardise: as :class:`BLSTMFCNSVMConfig`.
    """

    feature: str | None = None
    colormap: str = "viridis"
    batch_size: int = 32
    svm_C: float | tuple[float, ...] = LinearSVMConfig.C
    svm_class_weight: str | None = "balanced"
    standardise: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError("deep_spectrum_cnn_svm: batch_size must be >= 1")


@register
class DeepSpectrumCNNSVM(_FeaturesThenSVM):
    """Frozen ImageNet CNN (EfficientNet-Lite0) on spectrogram images + linear SVM (module docstring)."""

    name = "deep_spectrum_cnn_svm"
    Config = DeepSpectrumCNNConfig

    def _cnn(self) -> torch.nn.Module:
        if getattr(self, "cnn_", None) is None:
            from serkit.blocks.imagenet_cnn import load_efficientnet_lite0

            self.cnn_ = load_efficientnet_lite0(pretrained=True)
        return self.cnn_

    def vectors(self, X: Inputs) -> np.ndarray:
        """1280-d CNN features ``(n, 1280)`` float32 of the spectrogram images of ``X``'s log-mels."""
        from serkit.blocks.imagenet_cnn import IMAGE_SIZE, penultimate_features

        key = select_feature(list(X), self.config.feature, self.name)
        data = X[key]
        if not isinstance(data, list):
            raise ConfigError(f"{self.name}: feature {key!r} must be frame-level (a list of (frames, n_mels) arrays)")
        cnn = self._cnn()
        out = []
        for start in range(0, len(data), self.config.batch_size):
            images = torch.stack(
                [spectrogram_image(x, IMAGE_SIZE, self.config.colormap) for x in data[start : start + self.config.batch_size]]
            )
            out.append(penultimate_features(cnn, images).numpy())
        return np.concatenate(out).astype(np.float32)

    @classmethod
    def load(cls, directory: Path, config: Mapping[str, Any]) -> DeepSpectrumCNNSVM:
        model = cls(dict(config))
        model._load_tail(directory)
        return model
