"""The shared neural trainer: padding, speaker-independent validation, early stopping, persistence."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from serkit.errors import ConfigError
from serkit.blocks.sequences import length_mask, pad_sequences
from serkit.models.network import TorchSERModel
from serkit.training.trainer import TrainConfig, speaker_holdout


class MeanPool(nn.Module):
    """Masked mean over frames, then a linear layer: padding must not change its output."""

    def __init__(self, dim: int, n_classes: int):
        super().__init__()
        self.linear = nn.Linear(dim, n_classes)

    def forward(self, batch):
        x, lengths = batch["seq"], batch["seq_lengths"]
        mask = length_mask(lengths, x.shape[1]).unsqueeze(-1)
        return self.linear((x * mask).sum(1) / lengths[:, None])


@dataclass(frozen=True)
class TinyConfig(TrainConfig):
    hidden: int = 0


class Tiny(TorchSERModel):
    name = "tiny_test_model"
    Config = TinyConfig

    def build(self, layouts, n_classes):
        return MeanPool(layouts["seq"].dim, n_classes)


def _sequences(seed=0, n_speakers=4, per_class=12, K=3, dim=5, noise=0.5):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2, size=(K, dim))
    X, y, groups = [], [], []
    for s in range(n_speakers):
        for k in range(K):
            for _ in range(per_class):
                frames = rng.integers(5, 40)
                X.append((centres[k] + rng.normal(0, noise, size=(frames, dim))).astype(np.float32))
                y.append(k)
                groups.append(f"s{s}")
    return X, np.array(y), np.array(groups)


def test_pad_sequences_and_mask():
    batch, lengths = pad_sequences([np.ones((3, 2)), 2 * np.ones((5, 2))])
    assert batch.shape == (2, 5, 2) and lengths.tolist() == [3, 5]
    assert torch.all(batch[0, 3:] == 0) and torch.all(batch[1] == 2)
    assert length_mask(lengths, 5).tolist() == [[True] * 3 + [False] * 2, [True] * 5]


def test_speaker_holdout_takes_whole_speakers():
    groups = np.array(["a", "a", "b", "c", "c", "d"])
    held = speaker_holdout(groups, 2, seed=3)
    chosen = set(groups[held])
    assert len(chosen) == 2
    assert not set(groups[~held]) & chosen  # no speaker on both sides
    assert np.array_equal(held, speaker_holdout(groups, 2, seed=3))  # deterministic
    assert not speaker_holdout(groups, 4, seed=0).any()  # cannot hold out every speaker


def test_learns_separable_data_and_predictions_do_not_depend_on_batching():
    X, y, groups = _sequences()
    model = Tiny({"max_epochs": 60, "patience": 60, "learning_rate": 0.05, "batch_size": 16})
    model.fit({"seq": X}, y, labels=["a", "b", "c"], groups=groups, seed=1)
    proba = model.predict_proba({"seq": X})
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert np.mean(proba.argmax(axis=1) == y) > 0.95
    one_by_one = np.vstack([model.predict_proba({"seq": [x]}) for x in X[:10]])
    assert np.allclose(one_by_one, proba[:10], atol=1e-6)


def test_early_stopping_restores_the_best_epoch():
    X, y, groups = _sequences(noise=3.0)
    model = Tiny({"max_epochs": 40, "patience": 3, "learning_rate": 0.2, "batch_size": 8})
    model.fit({"seq": X}, y, labels=["a", "b", "c"], groups=groups, seed=0)
    scores = [h["valid_ua"] for h in model.history_]
    assert model.best_epoch_ == int(np.argmax(scores)) + 1
    assert len(model.history_) <= model.best_epoch_ + 3
    # The held-out speaker's rows are the validation set; the restored weights score the best UA.
    held = speaker_holdout(groups, 1, 0)
    pred = model.predict({"seq": [x for x, h in zip(X, held) if h]})
    from sklearn.metrics import balanced_accuracy_score

    assert balanced_accuracy_score(y[held], pred) == pytest.approx(max(scores))


def test_same_seed_same_model():
    X, y, groups = _sequences()
    a = Tiny({"max_epochs": 5}).fit({"seq": X}, y, labels=["a", "b", "c"], groups=groups, seed=7)
    b = Tiny({"max_epochs": 5}).fit({"seq": X}, y, labels=["a", "b", "c"], groups=groups, seed=7)
    assert np.array_equal(a.predict_proba({"seq": X}), b.predict_proba({"seq": X}))


def test_validation_needs_speakers():
    X, y, groups = _sequences(n_speakers=1)
    with pytest.raises(ConfigError, match="groups"):
        Tiny().fit({"seq": X}, y, labels=["a", "b", "c"])
    with pytest.raises(ConfigError, match="valid_speakers=0"):
        Tiny().fit({"seq": X}, y, labels=["a", "b", "c"], groups=groups)
    model = Tiny({"valid_speakers": 0, "max_epochs": 3}).fit({"seq": X}, y, labels=["a", "b", "c"], groups=groups)
    assert len(model.history_) == 3 and model.best_epoch_ == 3


@pytest.mark.parametrize("bad", [{"learning_rate": 0}, {"batch_size": 0}, {"monitor": "f1"}, {"valid_speakers": -1}])
def test_bad_training_config(bad):
    with pytest.raises(ConfigError):
        Tiny(bad)


def test_save_load_round_trip(tmp_path):
    X, y, groups = _sequences()
    model = Tiny({"max_epochs": 3}).fit({"seq": X}, y, labels=["a", "b", "c"], groups=groups)
    model.save(tmp_path)
    again = Tiny.load(tmp_path, model.describe()["config"])
    assert np.allclose(again.predict_proba({"seq": X}), model.predict_proba({"seq": X}))
