"""Building blocks of serkit's models and derived features: network layers (attention pooling,
masked sequences, CNN trunks), losses and pure functions from the papers. Nothing here is
registered or read by name; :mod:`serkit.models` and :mod:`serkit.derived` compose them."""
