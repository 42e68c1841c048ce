"""Training of serkit's neural models: the loop in :mod:`serkit.training.trainer` (it knows no model; :class:`serkit.models.network.TorchSERModel` calls it)."""
