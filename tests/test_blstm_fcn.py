"""Attention-BLSTM-FCN (Zhao et al. 2019): masking, attention, class weights, cell states, training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from serkit.audio import load_audio
from serkit.errors import ConfigError
from serkit.features import extract_audio, get_extractor
from serkit.blocks.attention import (
    LinearAttentionPooling,
    TanhAttentionPooling,
    masked_softmax,
)
from serkit.models.base import get_model, list_models
from serkit.models.blstm_fcn import (
    AttentionBLSTMFCN,
    AttentionBLSTMFCNNet,
    BLSTMFCNConfig,
    MaskedBatchNorm2d,
    class_weights,
    lstm_cell_states,
    recalibrate_batch_norm,
)
from serkit.blocks.sequences import pad_sequences, reverse_within_length

REPO_RECIPES = Path(__file__).resolve().parents[1] / "recipes"
PAPER_LOGMEL = {"n_mels": 40, "window": "hamming", "preemphasis": 0.0, "filterbank": "librosa"}
SMALL = {"fcn_filters": (4, 8, 8), "lstm_hidden": 8, "dnn_hidden": (8,)}


@pytest.fixture(scope="module")
def emodb_logmels(emodb_root):
    """40-band librosa log-mels of four real EmoDB utterances of different lengths, (frames, 40) each."""
    extractor = get_extractor("logmel", PAPER_LOGMEL)
    names = ["03a01Fa.wav", "03a01Nc.wav", "08b09Ab.wav", "16b10Wb.wav"]
    return [extract_audio(load_audio(emodb_root / "wav" / n), extractor) for n in names]


def _embed(net: nn.Module, items: list[np.ndarray]) -> torch.Tensor:
    x, lengths = pad_sequences(items)
    with torch.no_grad():
        return net.embed({"x": x, "x_lengths": lengths})


@pytest.mark.parametrize("lstm_output", ["hidden", "cell"])
def test_padded_batch_gives_each_utterance_vector_on_real_speech(emodb_logmels, lstm_output):
    torch.manual_seed(0)
    net = AttentionBLSTMFCNNet("x", 40, 7, BLSTMFCNConfig(lstm_output=lstm_output, **SMALL)).eval()
    lengths = [len(x) for x in emodb_logmels]
    assert len(set(lengths)) == 4 and len({n % 8 for n in lengths}) > 1  # different lengths, not all pool-aligned
    batch = _embed(net, emodb_logmels)
    alone = torch.cat([_embed(net, [x]) for x in emodb_logmels])
    assert batch.shape == (4, 8 + 8)  # [BLSTM (hidden) ; FCN (last filters)]
    torch.testing.assert_close(batch, alone, rtol=1e-4, atol=1e-5)
    # Padding is really there (and large): the shortest utterance sits in a much longer batch.
    assert max(lengths) > 1.5 * min(lengths)


def test_padding_content_is_ignored():
    torch.manual_seed(1)
    net = AttentionBLSTMFCNNet("x", 16, 3, BLSTMFCNConfig(**SMALL)).eval()
    x, lengths = pad_sequences([np.random.default_rng(0).normal(size=(n, 16)).astype(np.float32) for n in (21, 50)])
    noisy = x.clone()
    noisy[0, 21:] = 100.0  # garbage where the mask says padding
    with torch.no_grad():
        clean_v = net.embed({"x": x, "x_lengths": lengths})
        noisy_v = net.embed({"x": noisy, "x_lengths": lengths})
    torch.testing.assert_close(clean_v, noisy_v, rtol=1e-4, atol=1e-5)


def _norm_inputs(net: nn.Module, batch: dict) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each MaskedBatchNorm2d's (input, mask) in one forward pass of ``batch``."""
    seen = []
    hooks = [m.register_forward_hook(lambda mod, args, out: seen.append(args))
             for m in net.modules() if isinstance(m, MaskedBatchNorm2d)]
    with torch.no_grad():
        net(batch)
    for hook in hooks:
        hook.remove()
    return seen


def _masked_stats(x: torch.Tensor, mask: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and unbiased variance of ``x`` (B, C, F, T) over real frames, in float64."""
    values = x.double().permute(1, 0, 2, 3)[:, mask[:, None, :].expand(-1, x.shape[2], -1)]  # (C, n)
    return values.mean(1).numpy(), values.var(1, unbiased=True).numpy()


def test_batch_norm_recalibration_fits_evaluation_statistics(emodb_logmels):
    """After recalibration on a batch, each FCN batch norm's running mean / variance are the
    statistics of its own evaluation-mode (dropout-free) input on that batch; the statistics
    gathered while training with dropout are not."""
    torch.manual_seed(0)
    net = AttentionBLSTMFCNNet("x", 40, 7, BLSTMFCNConfig(branches=("fcn",), dropout=0.5, **SMALL))
    x, lengths = pad_sequences(emodb_logmels)
    batch = {"x": x, "x_lengths": lengths}
    norms = [m for m in net.modules() if isinstance(m, MaskedBatchNorm2d)]
    net.train()
    with torch.no_grad():
        for _ in range(30):  # running statistics from training-mode passes, dropout on
            net(batch)
    net.eval()
    last_x, last_mask = _norm_inputs(net, batch)[-1]
    mean, var = _masked_stats(last_x, last_mask)
    assert not np.allclose(norms[-1].running_var.numpy(), var, rtol=0.05)  # the shift exists

    recalibrate_batch_norm(net, [batch])
    assert not net.training and not any(m.training for m in net.modules())
    # rtol 1e-3: recalibration normalises with the biased batch variance, evaluation with the
    # stored unbiased one, so deeper inputs differ by a factor of about 1 + 1 / (frames × bands).
    for norm, (inputs, mask) in zip(norms, _norm_inputs(net, batch), strict=True):
        mean, var = _masked_stats(inputs, mask)
        np.testing.assert_allclose(norm.running_mean.numpy(), mean, rtol=1e-3, atol=1e-5)
        np.testing.assert_allclose(norm.running_var.numpy(), var, rtol=1e-3, atol=1e-6)
        assert norm.momentum == 0.1

    # Two batches: the first norm (input independent of any norm) keeps the mean of their statistics.
    halves = [dict(zip(("x", "x_lengths"), pad_sequences(part), strict=True))
              for part in (emodb_logmels[:2], emodb_logmels[2:])]
    recalibrate_batch_norm(net, halves)
    means = [_masked_stats(*_norm_inputs(net, half)[0])[0] for half in halves]
    np.testing.assert_allclose(norms[0].running_mean.numpy(), (means[0] + means[1]) / 2, rtol=1e-4, atol=1e-5)


def test_masked_softmax_reference_and_scale():
    scores = torch.tensor([[1.0, 2.0, 3.0, 9.0], [0.5, -1.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    weights = masked_softmax(scores, mask, 1.0)
    torch.testing.assert_close(weights[0, :3], torch.softmax(scores[0, :3], 0))
    assert weights[0, 3] == 0
    torch.testing.assert_close(masked_softmax(scores, mask, 0.3)[1], torch.softmax(0.3 * scores[1], 0))
    with pytest.raises(ConfigError):
        masked_softmax(scores, torch.zeros_like(mask), 1.0)
    with pytest.raises(ConfigError):
        masked_softmax(scores, mask, -0.1)


def test_attention_weights_sum_to_one_and_lambda_zero_is_uniform():
    torch.manual_seed(0)
    a = torch.randn(3, 10, 6)
    mask = torch.arange(10)[None, :] < torch.tensor([10, 4, 1])[:, None]
    for pool in (TanhAttentionPooling(6, scale=0.3), TanhAttentionPooling(6, scale=1.0), LinearAttentionPooling(6)):
        pooled, weights = pool(a, mask)
        torch.testing.assert_close(weights.sum(1), torch.ones(3))
        assert torch.all(weights[~mask] == 0)
        torch.testing.assert_close(pooled, torch.einsum("bl,blc->bc", weights, a))
    pooled, weights = TanhAttentionPooling(6, scale=0.0)(a, mask)
    expected = mask.float() / mask.sum(1, keepdim=True)
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(pooled[1], a[1, :4].mean(0))  # λ = 0: mean over the real positions
    torch.testing.assert_close(pooled[2], a[2, 0])
    # λ = 0.3 flattens the weights relative to λ = 1 (same energies).
    sharp = TanhAttentionPooling(6, scale=1.0)
    flat = TanhAttentionPooling(6, scale=0.3)
    flat.load_state_dict(sharp.state_dict())
    assert flat(a, mask)[1][0].max() < sharp(a, mask)[1][0].max()
    with pytest.raises(ConfigError):
        TanhAttentionPooling(6, scale=1.5)


def test_class_weights_eq_11():
    labels = np.array([0] * 10 + [1] * 5 + [2] * 85)
    weights = class_weights(np.bincount(labels, minlength=4))
    np.testing.assert_allclose(weights.numpy(), [100 / 10, 100 / 5, 100 / 85, 0.0], rtol=1e-6)
    with pytest.raises(ConfigError):
        class_weights([0, 0])


def test_training_loss_is_the_eq_11_weighted_cross_entropy():
    model = AttentionBLSTMFCN()
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.1, 0.2, 0.3], [-1.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
    y = torch.tensor([0, 2, 1, 2])
    counts = torch.tensor([6, 2, 12])
    loss = model.training_loss(lambda batch: logits, {}, y, counts)
    r = 20 / counts.double()
    nll = -torch.log_softmax(logits.double(), 1)[torch.arange(4), y]
    expected = (r[y] * nll).sum() / r[y].sum()
    assert abs(float(loss) - float(expected)) < 1e-6


def test_cell_states_match_stepping_an_lstm_cell():
    torch.manual_seed(0)
    lstm = nn.LSTM(5, 7, batch_first=True)
    cell = nn.LSTMCell(5, 7)
    cell.load_state_dict({"weight_ih": lstm.weight_ih_l0, "weight_hh": lstm.weight_hh_l0,
                          "bias_ih": lstm.bias_ih_l0, "bias_hh": lstm.bias_hh_l0})
    x = torch.randn(2, 9, 5)
    with torch.no_grad():
        outputs = lstm(x)[0]
        cells = lstm_cell_states(lstm, x, outputs)
        h = c = torch.zeros(2, 7)
        for t in range(9):
            h, c = cell(x[:, t], (h, c))
            torch.testing.assert_close(cells[:, t], c, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(outputs[:, t], h, rtol=1e-5, atol=1e-6)


def test_reverse_within_length():
    x = torch.arange(12.0).reshape(2, 6, 1)
    out = reverse_within_length(x, torch.tensor([6, 4]))
    assert out[:, :, 0].tolist() == [[5, 4, 3, 2, 1, 0], [9, 8, 7, 6, 10, 11]]
    torch.testing.assert_close(reverse_within_length(out, torch.tensor([6, 4])), x)


@pytest.mark.parametrize(
    "options, dim",
    [
        ({"branches": ("fcn",), "fcn_pooling": "mean"}, 8),  # FCN
        ({"branches": ("fcn",)}, 8),  # Attention-FCN
        ({"branches": ("blstm",), "bidirectional": False}, 8),  # Attention-LSTM
        ({"branches": ("blstm",), "lstm_layers": 3}, 8),  # Attention-BLSTM, 3 layers
        ({"lstm_layers": 1}, 16),  # Attention-BLSTM-FCN, 1 layer
    ],
)
def test_table5_variants_build_and_mask(options, dim):
    torch.manual_seed(0)
    net = AttentionBLSTMFCNNet("x", 16, 3, BLSTMFCNConfig(**{**SMALL, **options})).eval()
    items = [np.random.default_rng(n).normal(size=(n, 16)).astype(np.float32) for n in (5, 19, 33)]
    batch = _embed(net, items)
    assert batch.shape == (3, dim)
    torch.testing.assert_close(batch, torch.cat([_embed(net, [x]) for x in items]), rtol=1e-4, atol=1e-5)


def test_config_is_validated():
    for bad in ({"branches": ("cnn",)}, {"branches": ()}, {"lstm_output": "both"}, {"attention_scale": 2.0},
                {"fcn_kernel": 4}, {"max_train_frames": 4}):
        with pytest.raises(ConfigError):
            get_model("blstm_fcn", bad)
    with pytest.raises(ConfigError):  # 4 bands vanish after three 2x2 pools
        AttentionBLSTMFCNNet("x", 4, 2, BLSTMFCNConfig())
    assert "blstm_fcn" in set(list_models())


def _toy(seed: int = 0, n: int = 24, bands: int = 16):
    """Two classes that differ in which half of the bands carries energy."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for i in range(n):
        k = i % 2
        x = rng.normal(0, 1, size=(int(rng.integers(12, 40)), bands))
        x[:, k * bands // 2 : (k + 1) * bands // 2] += 1.5
        X.append(x.astype(np.float32))
        y.append(k)
    return X, np.array(y), np.array([f"s{i % 3}" for i in range(n)])


def test_tiny_overfit_and_save_load(tmp_path):
    X, y, groups = _toy(n=12)
    config = {**SMALL, "lstm_layers": 1, "max_epochs": 25, "valid_speakers": 0, "batch_size": 12,
              "learning_rate": 0.02, "dropout": 0.0, "max_train_frames": 16}
    model = AttentionBLSTMFCN(config).fit({"logmel": X}, y, labels=["a", "b"], groups=groups, seed=0)
    proba = model.predict_proba({"logmel": X})
    assert np.mean(proba.argmax(1) == y) == 1.0
    assert model.history_[-1]["train_loss"] < 0.5 * model.history_[0]["train_loss"]
    vectors = model.embed({"logmel": X})
    assert vectors.shape == (len(X), 16) and vectors.dtype == np.float32
    model.save(tmp_path)
    again = AttentionBLSTMFCN.load(tmp_path, model.describe()["config"])
    np.testing.assert_allclose(again.predict_proba({"logmel": X}), proba, rtol=1e-6, atol=1e-7)


def test_frame_level_input_is_required():
    model = AttentionBLSTMFCN({**SMALL, "max_epochs": 1, "valid_speakers": 0})
    with pytest.raises(ConfigError):
        model.fit({"f": np.zeros((4, 16), np.float32)}, np.array([0, 1, 0, 1]), labels=["a", "b"])
    with pytest.raises(ConfigError):
        AttentionBLSTMFCN({"feature": "mel"}).feature_key(["logmel"])


def test_iemocap_recipe_protocol_splits_the_held_out_session(tmp_path):
    import pandas as pd

    from serkit.evaluation.protocols import make_folds
    from serkit.recipe import load_recipe

    recipe = load_recipe(REPO_RECIPES / "blstm_fcn_iemocap.yaml", root=tmp_path)
    assert recipe["corpus"]["options"] == {"improvised_only": True}
    rows = [
        {"utterance_id": f"Ses0{s}{g}_impro01_{g}{i:03d}", "path": "x.wav", "speaker": f"Ses0{s}{g}",
         "session": f"Ses0{s}", "gender": g.lower(), "label": "neutral", "duration": 2.0}
        for s in range(1, 6) for g in "FM" for i in range(3)
    ]
    table = pd.DataFrame(rows)
    protocol = make_folds(table, recipe["protocol"])
    assert len(protocol.folds) == 10 and protocol.speaker_independent
    for fold in protocol.folds:
        test_spk, valid_spk = set(table.speaker[fold.test]), set(table.speaker[fold.valid])
        assert len(test_spk) == len(valid_spk) == 1 and test_spk != valid_spk
        held = set(table.session[fold.test])
        assert held == set(table.session[fold.valid]) and not held & set(table.session[fold.train])
    tested = np.concatenate([f.test for f in protocol.folds])
    assert sorted(tested.tolist()) == list(range(len(table)))  # every utterance tested exactly once
