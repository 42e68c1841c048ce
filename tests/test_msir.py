"""MSIR (msir-2024): branches on real utterances, attention, focal loss (eq. 7), overfitting, variants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from serkit.audio import load_audio
from serkit.errors import ConfigError
from serkit.features import extract_audio, get_extractor
from serkit.features.layout import Layout
from serkit.models.base import get_model
from serkit.blocks.focal_loss import class_weights, focal_loss
from serkit.models.msir import MSIR, MSIRConfig
from serkit.recipe import load_recipe
from serkit.blocks.sequences import pad_sequences

REPO = Path(__file__).resolve().parents[1]
FILES = (
    "03a01Fa.wav",
    "03a01Nc.wav",
    "03a01Wa.wav",
    "08a01Ab.wav",
    "09a01Ea.wav",
    "10a01Ac.wav",
    "11a01Ld.wav",
    "16a01Ec.wav",
)
SMALL = {"conv_channels": [8, 16], "frame_fc": 32, "hidden": 16, "classifier": [16]}


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def inputs(emodb_root: Path) -> dict[str, list[np.ndarray]]:
    """Real EmoDB frames: 2D log-Mels (80), 3D ComParE LLDs (195), Whisper tiny.en layers 0-4 (5 x 384)."""
    extractors = {
        "logmel": get_extractor("logmel", {"deltas": 1}),
        "lld": get_extractor("opensmile_lld", {"deltas": 2}),
        "encoder": get_extractor(
            "speech_encoder", {"model": "whisper-tiny.en", "layer": "all"}
        ),
    }
    audios = [load_audio(emodb_root / "wav" / f) for f in FILES]
    return {
        key: [extract_audio(a, ex) for a in audios] for key, ex in extractors.items()
    }


def _batch(inputs, index):
    batch = {}
    for key, data in inputs.items():
        batch[key], batch[f"{key}_lengths"] = pad_sequences([data[i] for i in index])
    return batch


def _net(layouts, **options):
    model = MSIR({**SMALL, **options})
    torch.manual_seed(0)
    return model.build(layouts, 7).eval()


# The extractors' layouts: log-Mels with Δ, ComParE LLDs with Δ and Δ², Whisper tiny.en layers 0-4.
LAYOUTS = {
    "logmel": Layout.of(("delta", 2), ("mel", 40)),
    "lld": Layout.of(("delta", 3), ("lld", 65)),
    "encoder": Layout.of(("layer", 5), ("unit", 384)),
}


def test_shapes_through_every_branch_on_real_utterances(inputs):
    net = _net(LAYOUTS)
    batch = _batch(inputs, range(4))
    with torch.no_grad():
        logits = net(batch)
        fused, weights = net.pooled(batch)
    assert logits.shape == (4, 7)
    # CR: 2*16 (directions concatenated, eq. 3); LLD and encoder: 16 (directions summed, eq. 4-5).
    assert fused.shape == (4, 32 + 16 + 16)
    n_logmel = max(len(x) for x in inputs["logmel"][:4])
    assert weights["cr"].shape == (4, -(-n_logmel // 2))  # one 2x2 max-pool halves time
    assert weights["lld"].shape[1] == max(len(x) for x in inputs["lld"][:4])
    assert weights["encoder"].shape[1] == max(len(x) for x in inputs["encoder"][:4])
    # The frame rates differ (10 ms vs 20 ms) and each branch pools on its own.
    assert abs(len(inputs["logmel"][0]) - 2 * len(inputs["encoder"][0])) <= 3


def test_attention_weights_sum_to_one_and_ignore_padding(inputs):
    net = _net(LAYOUTS)
    batch = _batch(inputs, range(4))
    with torch.no_grad():
        weights = net.attention(batch)
    for name, key in (("cr", "logmel"), ("lld", "lld"), ("encoder", "encoder")):
        lengths = batch[f"{key}_lengths"]
        if name == "cr":
            lengths = (lengths + 1) // 2
        w = weights[name]
        torch.testing.assert_close(w.sum(dim=1), torch.ones(4), atol=1e-5, rtol=0)
        for row, n in enumerate(lengths.tolist()):
            assert torch.all(w[row, n:] == 0) and torch.all(w[row, :n] > 0)


def test_batched_equals_alone_in_eval_mode(inputs):
    net = _net(LAYOUTS)
    with torch.no_grad():
        together = net(_batch(inputs, range(4)))
        alone = torch.cat([net(_batch(inputs, [i])) for i in range(4)])
    torch.testing.assert_close(together, alone, atol=1e-4, rtol=1e-4)


# --------------------------------------------------------------------------- focal loss (eq. 7)


def test_focal_loss_at_theta_zero_is_zeta_weighted_cross_entropy():
    torch.manual_seed(0)
    logits, y = torch.randn(32, 4), torch.randint(0, 4, (32,))
    ce = torch.nn.functional.cross_entropy(logits, y)
    half = class_weights(0.5, np.ones(4))
    torch.testing.assert_close(focal_loss(logits, y, half, 0.0), 0.5 * ce)
    zeta = torch.tensor([0.1, 0.2, 0.3, 0.9])
    per_sample = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    torch.testing.assert_close(
        focal_loss(logits, y, zeta, 0.0), (zeta[y] * per_sample).mean()
    )


def test_focal_loss_matches_its_formula_and_down_weights_easy_samples():
    logits = torch.tensor([[4.0, 0.0], [0.0, 0.0], [-1.0, 1.0]])
    y = torch.tensor([0, 0, 0])
    p = torch.softmax(logits, 1)[:, 0]
    zeta = torch.tensor([0.25, 0.75])
    expected = (-0.25 * (1 - p) ** 2 * torch.log(p)).mean()
    torch.testing.assert_close(focal_loss(logits, y, zeta, 2.0), expected)
    # An easy sample (p = 0.98) loses far more of its weight than a hard one (p = 0.12).
    ratio = lambda i: float(
        focal_loss(logits[i : i + 1], y[i : i + 1], zeta, 2.0)
        / focal_loss(logits[i : i + 1], y[i : i + 1], zeta, 0.0)
    )
    assert ratio(0) < 1e-3 and ratio(2) > 0.7


def test_class_weights_balanced_and_invalid():
    w = class_weights("balanced", np.array([10, 30, 60]))
    torch.testing.assert_close(w.mean(), torch.tensor(0.5))
    assert w[0] / w[2] == pytest.approx(6.0)
    with pytest.raises(ConfigError):
        class_weights([0.5, 1.5, 0.2], np.ones(3))
    with pytest.raises(ConfigError):
        class_weights([0.5, 0.5], np.ones(3))
    with pytest.raises(ConfigError):
        focal_loss(
            torch.zeros(1, 2), torch.zeros(1, dtype=torch.int64), torch.ones(2), -1.0
        )


# --------------------------------------------------------------------------- training


def test_tiny_overfit_reaches_near_zero_training_loss(inputs):
    y = np.arange(len(FILES)) % 4
    # The first 1.2 s of each utterance keeps the test fast.
    inputs = {
        key: [x[: 60 if key == "encoder" else 120] for x in data]
        for key, data in inputs.items()
    }
    model = get_model(
        "msir",
        {**SMALL, "max_epochs": 60, "valid_speakers": 0, "batch_size": 8,
         "learning_rate": 1e-2, "dropout": 0.0, "device": "cpu"},
    )  # fmt: skip
    model.fit(inputs, y, labels=["a", "b", "c", "d"], seed=0, layouts=LAYOUTS)
    losses = [h["train_loss"] for h in model.history_]
    assert losses[0] > 0.05 and min(losses[-5:]) < 0.01 * losses[0]
    # With batch statistics (training mode; the BN running averages, momentum 0.01, lag behind
    # after a few dozen steps) every utterance gets its own class with high probability.
    net = model.module_.train()
    batch = _batch(inputs, range(len(FILES)))
    with torch.no_grad():
        p = torch.softmax(net(batch), dim=1)[
            torch.arange(len(FILES)), torch.from_numpy(y)
        ]
    assert bool((p > 0.9).all())


def test_learning_rate_grid_keeps_the_best_validation_score(inputs):
    y = np.arange(len(FILES)) % 2
    speakers = np.array([f[:2] for f in FILES])
    model = get_model(
        "msir",
        {**SMALL, "lld_key": None, "logmel_key": None, "max_epochs": 2, "patience": 1,
         "learning_rates": [1e-6, 1e-2], "loss": "cross_entropy", "device": "cpu"},
    )  # fmt: skip
    model.fit({"encoder": inputs["encoder"]}, y, labels=["a", "b"], groups=speakers, seed=0, layouts=LAYOUTS)
    grid = model.fit_info()["grid"]
    assert [g["learning_rate"] for g in grid] == [1e-6, 1e-2]
    assert (
        model.learning_rate_
        == grid[int(np.argmax([g["score"] for g in grid]))]["learning_rate"]
    )


def test_saved_model_reloads_with_identical_predictions(inputs, tmp_path):
    y = np.arange(len(FILES)) % 2
    model = get_model(
        "msir",
        {**SMALL, "max_epochs": 1, "valid_speakers": 0, "device": "cpu"},
    )
    model.fit(inputs, y, labels=["a", "b"], seed=0, layouts=LAYOUTS)
    model.save(tmp_path)
    again = MSIR.load(tmp_path, model.describe()["config"])
    assert again.layouts_ == LAYOUTS  # the layer weighting is rebuilt from the saved layout
    np.testing.assert_allclose(
        again.predict_proba(inputs), model.predict_proba(inputs), atol=1e-6
    )


def test_config_errors():
    with pytest.raises(ConfigError):
        MSIRConfig(logmel_key=None, lld_key=None, encoder_key=None)
    with pytest.raises(ConfigError):
        MSIRConfig(loss="hinge")
    # Facts the features' layouts carry are not options: a recipe cannot state them a second time.
    for option in ({"n_mels": 40}, {"encoder_layers": 7}):
        with pytest.raises(ConfigError, match="unknown option"):
            MSIR(option)
    with pytest.raises(ConfigError, match="delta × mel"):
        MSIR({}).build({**LAYOUTS, "logmel": Layout.flat(80)}, 4)
    with pytest.raises(ConfigError, match="reads feature 'encoder'"):
        MSIR({}).build({"logmel": LAYOUTS["logmel"], "lld": LAYOUTS["lld"]}, 4)


# --------------------------------------------------------------------------- recipes (Table 1 rows)


@pytest.mark.parametrize(
    "recipe",
    sorted((REPO / "recipes").glob("msir*.yaml")) + sorted((REPO / "recipes" / "reduced").glob("msir*.yaml")),
    ids=lambda p: str(p.relative_to(REPO / "recipes").with_suffix("")),
)
def test_every_variant_recipe_builds_its_branches(recipe):
    spec = load_recipe(recipe)
    model = get_model(spec["model"]["name"], spec["model"]["config"])
    layouts = {}
    for key, feature in spec["features"].items():
        layouts[key] = get_extractor(feature["extractor"], feature.get("config")).layout
    net = model.build(layouts, 7)
    assert set(net.branches) == set(model.config.branch_keys)
    assert set(model.config.branch_keys.values()) == set(
        spec["features"]
    )  # no feature extracted for nothing
