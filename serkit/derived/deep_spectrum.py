"""Deep-spectrum features of a log-Mel spectrogram (Zhao et al., IEEE Access 2019, Sec. III, IV-B, Table 7).

Zhao et al. call the fused utterance vector of their Attention-BLSTM-FCN, taken before its DNN
classifier, a *deep spectrum* representation, and feed it to an SVM (Table 7, "Deep Spectrum");
they compare it with the activations of ImageNet CNNs on spectrogram images (AlexNet and VGG fc7,
Fig. 3–4). Both are derived features here, read by a linear SVM (``linear_svm``), with the
recipe's ``normalisation: global`` standardising them with the training fold's statistics:

``imagenet_deep_spectrum`` (fixed, :class:`ImageNetDeepSpectrum`)
    each utterance's log-Mel spectrogram becomes an RGB image
    (:func:`~serkit.blocks.spectrogram_image.spectrogram_image`: colour-mapped, low bands at the
    bottom, 224 × 224), and the frozen ImageNet EfficientNet-Lite0
    (:mod:`serkit.blocks.imagenet_cnn`; AlexNet and VGG weights cannot be obtained here) gives its
    1280-d penultimate activations, the counterpart of fc7. Nothing is learnt, so the pipeline
    computes it once per utterance and caches it (``recipes/blstm_fcn_cnn_svm.yaml``).
``blstm_fcn_deep_spectrum`` (fitted, :class:`BLSTMFCNDeepSpectrum`)
    in each fold an Attention-BLSTM-FCN (:class:`~serkit.models.blstm_fcn.AttentionBLSTMFCN`, the
    same options) is trained on the training speakers' utterances, one of them held out for early
    stopping; every utterance's feature is the network's fused ``[BLSTM ; FCN]`` vector
    (:meth:`~serkit.models.blstm_fcn.AttentionBLSTMFCN.embed`, Sec. III, Fig. 1). No test speaker
    reaches the network (``recipes/blstm_fcn_svm.yaml``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from serkit.blocks.imagenet_cnn import (
    FEATURE_DIM,
    IMAGE_SIZE,
    load_efficientnet_lite0,
    penultimate_features,
)
from serkit.blocks.spectrogram_image import spectrogram_image
from serkit.config import check_choice, check_int, check_option
from serkit.derived.base import FittedFeature, FixedFeature, register
from serkit.errors import BundleError, ConfigError, FeatureError
from serkit.features.data import FeatureData, FeatureSpec, Inputs
from serkit.features.layout import UNIT, Layout
from serkit.features.normalise import Normaliser, fit_normaliser
from serkit.models.blstm_fcn import AttentionBLSTMFCN, BLSTMFCNConfig
from serkit.state_files import read_json, write_json


def _only(inputs: Mapping[str, Any]) -> tuple[str, Any]:
    ((key, value),) = inputs.items()
    return key, value


# --------------------------------------------------------------------------- ImageNet CNN


@register
class ImageNetDeepSpectrum(FixedFeature):
    """Frozen EfficientNet-Lite0 activations of spectrogram images (module docstring; Zhao et al. 2019, Fig. 3–4).

    Config:
        colormap: matplotlib colour map of the spectrogram image (Deep Spectrum uses viridis).
        batch_size: images per CNN forward pass in :meth:`compute_batch` (memory only: a batch
            gives each image's own activations, to float32 rounding).

    Input: one frame-level feature, ``(frames, n_mels)`` log-Mel energies of an utterance (not
    standardised: the image is min-max scaled per utterance). Output: utterance level, float32
    ``(1280,)`` laid out ``unit``: the global average of the CNN's last convolution block
    (:func:`~serkit.blocks.imagenet_cnn.penultimate_features`) of the 224 × 224 image.

    The network is loaded (SHA-256 checked, on the CPU) on first use, not in ``__init__``.
    """

    name = "imagenet_deep_spectrum"

    @dataclass(frozen=True)
    class Config:
        colormap: str = "viridis"
        batch_size: int = 32

    def check_config(self) -> None:
        from matplotlib import colormaps

        check_option(isinstance(self.config.colormap, str) and self.config.colormap in colormaps,
                     self.name, f"unknown matplotlib colour map {self.config.colormap!r}")  # fmt: skip
        check_int(self.name, "batch_size", self.config.batch_size, 1)

    def output(self, inputs: Mapping[str, FeatureSpec]) -> FeatureSpec:
        self.check_inputs(inputs, level="frame")
        return FeatureSpec("utterance", Layout.of((UNIT, FEATURE_DIM)))

    @cached_property
    def network(self) -> torch.nn.Module:
        """The frozen ImageNet EfficientNet-Lite0 (:func:`~serkit.blocks.imagenet_cnn.load_efficientnet_lite0`).

        Raises:
            ConfigError: its packages are missing or the weight file's SHA-256 differs.
        """
        return load_efficientnet_lite0(pretrained=True)

    def compute(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """``(1280,)`` float32 CNN features of one utterance's ``(frames, n_mels)`` log-Mels.

        Raises:
            FeatureError: no frames, or non-finite values.
        """
        return self.compute_batch([inputs])[0]

    def compute_batch(self, items: Sequence[Mapping[str, np.ndarray]]) -> list[np.ndarray]:
        """:meth:`compute` of several utterances, ``batch_size`` images per forward pass, in order.

        Raises:
            FeatureError: an utterance without frames or with non-finite values (the pipeline
                then finds it by computing one at a time).
        """
        out: list[np.ndarray] = []
        for start in range(0, len(items), self.config.batch_size):
            batch = items[start : start + self.config.batch_size]
            images = torch.stack([spectrogram_image(_only(item)[1], IMAGE_SIZE, self.config.colormap) for item in batch])
            out.extend(penultimate_features(self.network, images).numpy().astype(np.float32, copy=False))
        return out


# --------------------------------------------------------------------------- learned deep spectrum


@dataclass(frozen=True)
class BLSTMFCNDeepSpectrumConfig(BLSTMFCNConfig):
    """Options of :class:`BLSTMFCNDeepSpectrum`: the network's (:class:`BLSTMFCNConfig`) plus one.

    Attributes:
        input_normalisation: ``"global"`` standardises every mel band of the network's input with
            the mean and standard deviation of the training rows' frames (the recipe's
            ``normalisation`` applies to the SVM's input, the deep-spectrum vectors, not to the
            log-Mels a derived feature reads); ``"none"`` feeds the log-Mels as they are.

    ``feature`` must stay ``None``: the network reads the feature's one input (``from:``).
    """

    input_normalisation: str = "global"


@register
class BLSTMFCNDeepSpectrum(FittedFeature):
    """Fused ``[BLSTM ; FCN]`` vectors of an Attention-BLSTM-FCN trained in each fold (module docstring;
    Zhao et al. 2019, Sec. III, Table 7).

    Config: :class:`BLSTMFCNDeepSpectrumConfig` (every option of ``blstm_fcn``).

    Input: one frame-level feature, ``(frames, n_mels)`` log-Mel energies per utterance. Output:
    utterance level, float32 ``(n, dim)`` laid out ``unit``, ``dim = lstm_hidden`` (with the
    BLSTM branch) ``+ fcn_filters[-1]`` (with the FCN branch), BLSTM part first.

    :meth:`fit` gets the training speakers' rows only; the network holds ``valid_speakers`` of
    those speakers out for early stopping (chosen with the seed), as ``blstm_fcn`` does.
    Fitted state: ``input_normaliser_`` (:class:`~serkit.features.normalise.Normaliser`) and
    ``network_`` (the fitted :class:`~serkit.models.blstm_fcn.AttentionBLSTMFCN`).
    """

    name = "blstm_fcn_deep_spectrum"
    Config = BLSTMFCNDeepSpectrumConfig

    def check_config(self) -> None:
        check_option(self.config.feature is None, self.name,
                     f"reads its one input (from:); feature must be null, got {self.config.feature!r}")  # fmt: skip
        check_choice(self.name, "input_normalisation", self.config.input_normalisation, ("global", "none"))

    @property
    def network_config(self) -> dict[str, Any]:
        """The options of the ``blstm_fcn`` network (everything but ``input_normalisation``)."""
        names = {f.name for f in dataclasses.fields(BLSTMFCNConfig)}
        return {k: v for k, v in dataclasses.asdict(self.config).items() if k in names}

    def output(self, inputs: Mapping[str, FeatureSpec]) -> FeatureSpec:
        self.check_inputs(inputs, level="frame")
        (spec,) = inputs.values()
        c = self.config
        if "fcn" in c.branches and spec.dim // c.fcn_pool ** len(c.fcn_filters) < 1:
            raise ConfigError(f"{self.name}: {spec.dim} input columns vanish after {len(c.fcn_filters)} max-pools of {c.fcn_pool}")
        dim = (c.lstm_hidden if "blstm" in c.branches else 0) + (c.fcn_filters[-1] if "fcn" in c.branches else 0)
        return FeatureSpec("utterance", Layout.of((UNIT, dim)))

    def _network_inputs(self, X: Inputs) -> dict[str, FeatureData]:
        key, data = _only(X)
        if not isinstance(data, list):
            raise FeatureError(f"{self.name}: input {key!r} must be frame level (a list of (frames, n_mels) arrays)")
        return {key: self.input_normaliser_.transform(data)}

    def fit(
        self,
        X: Inputs,
        y: np.ndarray,
        *,
        labels: Sequence[str],
        groups: np.ndarray,
        seed: int,
        valid: tuple[Inputs, np.ndarray] | None = None,
    ) -> BLSTMFCNDeepSpectrum:
        """Standardise the input with the training rows' statistics and train the network on them.

        Args:
            X: key -> the training rows' ``(frames, n_mels)`` arrays (training speakers only).
            y: ``(n,)`` int classes; labels: the class names.
            groups: ``(n,)`` speakers, for the validation speaker(s) held out of training.
            seed: seeds the network's weights, shuffling, crops and validation speakers.
            valid: the protocol's validation split (training speakers), used for early stopping
                instead of holding out ``valid_speakers`` when given.

        Raises:
            FeatureError: the input is not frame level, empty, or not finite.
            ConfigError: no validation speaker can be held out (fewer than ``valid_speakers + 1``
                training speakers; set ``valid_speakers: 0``).
        """
        key, data = _only(X)
        if not isinstance(data, list):
            raise FeatureError(f"{self.name}: input {key!r} must be frame level (a list of (frames, n_mels) arrays)")
        self.input_normaliser_ = fit_normaliser(self.config.input_normalisation, data)
        bound = getattr(self, "input_specs", None)  # set by bind(); a feature used on its own may lack it
        layouts = None if bound is None else {key: bound[key].layout}
        valid = None if valid is None else (self._network_inputs(valid[0]), valid[1])
        self.network_ = AttentionBLSTMFCN(self.network_config).fit(
            self._network_inputs(X), y, labels=labels, groups=groups, seed=seed, valid=valid, layouts=layouts
        )
        return self

    def transform(self, X: Inputs) -> np.ndarray:
        """``(n, dim)`` float32 fused vectors of every row of ``X`` (the network in evaluation mode).

        Raises:
            FeatureError: the input is not frame level, has another band count, or is not finite.
        """
        return self.network_.embed(self._network_inputs(X))

    def network_proba(self, X: Inputs) -> np.ndarray:
        """``(n, K)`` float64 class probabilities of the trained network's own DNN head.

        The Attention-BLSTM-FCN system itself (Zhao et al. 2019, Table 5), from the same training
        as the features: ``benchmarks/bench_blstm_fcn.py`` scores both heads of one network.

        Raises:
            FeatureError: as :meth:`transform`.
        """
        return self.network_.predict_proba(self._network_inputs(X))

    def fit_info(self) -> dict[str, Any]:
        """The network's training record: best epoch, epochs run, per-epoch history."""
        return self.network_.fit_info()

    def save(self, directory: Path) -> None:
        """``module.safetensors`` and ``module.json`` (the network: tensors, labels and layouts)
        and ``input_normaliser.json``."""
        self.network_.save(directory)
        write_json(directory / "input_normaliser.json", self.input_normaliser_.to_dict())

    @classmethod
    def load(cls, directory: Path, config: Mapping[str, Any], inputs: Mapping[str, FeatureSpec]) -> BLSTMFCNDeepSpectrum:
        """Rebuild the feature saved by :meth:`save` with the same ``config``, bound to ``inputs``.

        Raises:
            BundleError: a missing or malformed file, input statistics or a network of another
                width than the input, or a network of another size than ``config``.
        """
        feature = cls(dict(config))
        feature.bind(inputs)
        ((key, spec),) = inputs.items()
        path = directory / "input_normaliser.json"
        feature.input_normaliser_ = Normaliser.from_dict(read_json(path), where=str(path))
        if feature.input_normaliser_.dim != spec.dim:
            raise BundleError(f"{path}: field 'dim' is {feature.input_normaliser_.dim}, the input {key!r} has {spec.dim} columns")
        feature.network_ = AttentionBLSTMFCN.load(directory, feature.network_config)
        if feature.network_.layouts_ != {key: spec.layout}:
            raise BundleError(f"{directory / 'module.json'}: field 'layouts' is {feature.network_.layouts_}, the input is {key!r}: {spec.layout}")
        return feature
