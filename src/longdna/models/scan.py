"""Diagonal linear recurrences h_t = a_t * h_{t-1} + b_t, the core of Mamba's selective SSM and Hawk's RG-LRU.

Two implementations with one contract (time is dimension 1; any trailing state dimensions):

* :func:`linear_scan_reference`: the obvious sequential loop (slow, the definition);
* :func:`linear_scan`: chunks of ``chunk_size`` steps scanned in parallel by recursive doubling with the
  associative operator (a1, b1) . (a2, b2) = (a1 a2, a2 b1 + b2), and the state carried sequentially from
  chunk to chunk. It only multiplies decays (never divides by them), so it cannot overflow however strong
  the decay, and its memory is bounded by the chunk size times log2(chunk_size).

Both accept an initial state ``h0`` and return the final state, so a long sequence can be processed in
pieces with the state carried across calls (chunked inference) and give exactly the same result.
"""

from __future__ import annotations

import torch
from torch import Tensor


def linear_scan_reference(a: Tensor, b: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """h_t = a_t * h_{t-1} + b_t for t = 0..L-1 with h_{-1} = h0 (zeros if None); returns (h, h_{L-1})."""
    h = torch.zeros_like(b[:, 0]) if h0 is None else h0.to(b.dtype)
    out = []
    for t in range(b.shape[1]):
        h = a[:, t] * h + b[:, t]
        out.append(h)
    return torch.stack(out, dim=1), h


def _scan_chunk(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Inclusive scan within a chunk by recursive doubling: returns (cumulative decay A_t, h_t with h0 = 0)."""
    length = a.shape[1]
    shift = 1
    while shift < length:
        a_prev = torch.cat([torch.ones_like(a[:, :shift]), a[:, :-shift]], dim=1)
        b_prev = torch.cat([torch.zeros_like(b[:, :shift]), b[:, :-shift]], dim=1)
        b = a * b_prev + b
        a = a * a_prev
        shift *= 2
    return a, b


def linear_scan(a: Tensor, b: Tensor, h0: Tensor | None = None, chunk_size: int = 128) -> tuple[Tensor, Tensor]:
    """Chunked parallel version of :func:`linear_scan_reference` (same inputs, same outputs)."""
    h = torch.zeros_like(b[:, 0]) if h0 is None else h0.to(b.dtype)
    out = []
    for start in range(0, b.shape[1], chunk_size):
        decay, local = _scan_chunk(a[:, start : start + chunk_size], b[:, start : start + chunk_size])
        states = local + decay * h.unsqueeze(1)
        out.append(states)
        h = states[:, -1]
    return torch.cat(out, dim=1), h
