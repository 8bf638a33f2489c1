"""Diagonal linear recurrences h_t = a_t * h_{t-1} + b_t, the core of Mamba's selective SSM and Hawk's RG-LRU.

Two algorithms with one contract (time is dimension 1; any trailing state dimensions):

* :func:`linear_scan_reference`: the sequential loop of the definition, the faster of the two on a CPU: L small
  steps that save only the states for backward, where a parallel scan does about 2 log2(chunk_size)
  times the work and memory traffic (bench/RESULTS.md: Mamba 7x and Caduceus 11x faster at 1 k tokens;
  Hawk, with a 16x smaller state, between 12 % slower and 27 % faster, with half the activation memory);
* :func:`linear_scan_parallel`: all chunks of ``chunk_size`` steps scanned at once by recursive doubling with
  the associative operator (a1, b1) . (a2, b2) = (a1 a2, a2 b1 + b2); the states at the chunk ends form a
  recurrence of length L / chunk_size, scanned the same way, recursively. A GPU runs it in a few operations
  per doubling step, log2(chunk_size) steps per level and log_chunk_size(L) levels (about 130 kernels at
  1 M tokens) instead of one launch per position. It only multiplies decays (never divides by them), so it
  cannot overflow however strong the decay. Autograd keeps about 2 log2(chunk_size) input-sized tensors.

:func:`linear_scan` picks the one for the tensors' device; it is the models' ``"torch"`` scan backend. By
default the models run fused kernels instead (:mod:`longdna.models.kernels`: numba on a CPU, Triton on a
GPU), which do the sequential loop's work without its per-position operator calls. All accept an initial
state ``h0`` and return the final state, so a long sequence can be processed in pieces with the state carried
across calls (chunked inference) and give the same result.
"""

from __future__ import annotations

import torch
from torch import Tensor


def linear_scan_reference(a: Tensor, b: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """h_t = a_t * h_{t-1} + b_t for t = 0..L-1 with h_{-1} = h0 (zeros if None); returns (h, h_{L-1})."""
    h = torch.zeros_like(b[:, 0]) if h0 is None else h0.to(b.dtype)
    out = []
    for a_t, b_t in zip(a.unbind(1), b.unbind(1)):  # unbind, not a[:, t]: one backward node, not L full-size grads
        h = torch.addcmul(b_t, a_t, h)  # b_t + a_t * h, one operation forward and backward
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
    """:func:`linear_scan_reference` on a CPU, :func:`linear_scan_parallel` on other devices."""
    if b.device.type == "cpu":
        return linear_scan_reference(a, b, h0)
    return linear_scan_parallel(a, b, h0, chunk_size)


def linear_scan_parallel(
    a: Tensor, b: Tensor, h0: Tensor | None = None, chunk_size: int = 128
) -> tuple[Tensor, Tensor]:
    """Chunked parallel version of :func:`linear_scan_reference` (same inputs, same outputs)."""
    h0 = torch.zeros_like(b[:, 0]) if h0 is None else h0.to(b.dtype)
    length = b.shape[1]
    if length <= chunk_size:
        decay, local = _scan_chunk(a, b)
        states = local + decay * h0.unsqueeze(1)
        return states, states[:, -1]
    pad = -length % chunk_size
    if pad:  # a = 1 and b = 0 past the end hold the state at h_{L-1}
        a = torch.cat([a, a.new_ones(a.shape[0], pad, *a.shape[2:])], dim=1)
        b = torch.cat([b, b.new_zeros(b.shape[0], pad, *b.shape[2:])], dim=1)
    batch, n_chunks = b.shape[0], b.shape[1] // chunk_size
    # every chunk at once, as a batch of B * n_chunks sequences of chunk_size steps
    decay, local = _scan_chunk(*(t.unflatten(1, (n_chunks, chunk_size)).flatten(0, 1) for t in (a, b)))
    decay, local = decay.unflatten(0, (batch, n_chunks)), local.unflatten(0, (batch, n_chunks))
    # the state at each chunk's end is itself a linear recurrence over chunks: h_k = A_k h_{k-1} + local_k
    ends, last = linear_scan_parallel(decay[:, :, -1], local[:, :, -1], h0, chunk_size)
    starts = torch.cat([h0.unsqueeze(1), ends[:, :-1]], dim=1)  # the state entering each chunk
    states = local + decay * starts.unsqueeze(2)
    return states.flatten(1, 2)[:, :length], last
