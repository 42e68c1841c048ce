"""Training of serkit's neural models: the shared trainer in :mod:`serkit.training.trainer`."""
