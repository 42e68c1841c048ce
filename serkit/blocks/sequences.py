"""Padded batches of variable-length sequences and the masks that keep padding out of the sums.

Utterances differ in length; a batch is zero-padded to its longest member and carries the real
lengths, and every layer that looks across time uses :func:`length_mask` (or reverses each
sequence within its own length, :func:`reverse_within_length`) so that an utterance gives the
same output alone or in a batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def pad_sequences(items: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``(frames_i, dims)`` arrays into a zero-padded ``(B, max_frames, dims)`` float32 tensor.

    Returns:
        The padded batch and the int64 lengths ``(B,)``.
    """
    lengths = torch.tensor([len(x) for x in items], dtype=torch.int64)
    out = torch.zeros((len(items), int(lengths.max()), items[0].shape[1]), dtype=torch.float32)
    for i, x in enumerate(items):
        out[i, : len(x)] = torch.from_numpy(np.asarray(x, dtype=np.float32))
    return out, lengths


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """Boolean ``(B, max_len)`` mask, True on real frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse the real frames of each padded sequence in place of time, padding left at the end.

    Args:
        x: ``(B, T, D)`` padded sequences.
        lengths: ``(B,)`` int64 real frame counts.

    Returns:
        ``(B, T, D)`` with ``out[b, t] = x[b, lengths[b] - 1 - t]`` for ``t < lengths[b]`` and
        ``x[b, t]`` otherwise; applying it twice gives ``x`` back.
    """
    steps = torch.arange(x.shape[1], device=x.device)[None, :]
    last = lengths.to(x.device)[:, None] - 1
    index = torch.where(steps <= last, last - steps, steps)
    return x.gather(1, index[:, :, None].expand(-1, -1, x.shape[2]))
