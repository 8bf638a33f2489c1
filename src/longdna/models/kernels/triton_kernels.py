"""Fused GPU kernels for the two recurrences, compiled by Triton (no CUDA toolkit, no build step).

* :func:`linear_scan` (Hawk's RG-LRU): h_t = a_t h_{t-1} + b_t over (B, L, W);
* :func:`selective_scan` (Mamba, Caduceus): the selective SSM of
  :func:`longdna.models.mamba.selective_scan_reference` with its D skip and the z gate, discretised inside the
  kernel, so that no (B, L, E, N) tensor exists.

Both use one scheme, forward and backward. The sequence is cut into chunks of ``T`` positions; a program owns
one chunk of one block of channels and scans it in registers (``tl.associative_scan`` with the operator
(a1, b1) . (a2, b2) = (a1 a2, b1 a2 + b2)): every chunk of every sequence at once, so a GPU is busy however
short the batch. The state each chunk starts from comes from a small sequential kernel over the chunks'
end states (decay product, local state): the recurrence at chunk level. A second pass then rescans each chunk
from its true start state and writes the outputs. Backward runs the same three steps on the gradient
recurrence g_t = a_{t+1} g_{t+1} + dL/dh_t in reverse (``reverse=True`` scans). Saved for backward are the
inputs and one state per chunk; memory is linear in the length and nothing is quadratic. The arithmetic is
float32 whatever the input dtype; outputs take the input dtype.

Under ``TRITON_INTERPRET=1`` the same kernels run on CPU tensors (slowly): that is how the tests check them
against the references without a GPU.
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl
from torch import Tensor

from longdna.models.kernels import has_data

#: positions per chunk and channels per program of each scan (the selective scan's tiles are T x E x N)
LINEAR_T, LINEAR_BLOCK = 32, 32
SELECTIVE_T, SELECTIVE_BLOCK = 32, 8
CARRY_BLOCK = 128


@triton.jit
def _first_order(a1, b1, a2, b2):  # noqa: ANN001, ANN202
    """(a1, b1) then (a2, b2) for h -> a h + b: the composition h -> a2 (a1 h + b1) + b2."""
    return a1 * a2, b1 * a2 + b2


@triton.jit
def _carry_kernel(
    decay_ptr,
    local_ptr,
    init_ptr,
    starts_ptr,
    final_ptr,
    n_chunks,
    width,  # noqa: ANN001, ANN202
    BLOCK: tl.constexpr,
    REVERSE: tl.constexpr,
):
    """The chunk-level recurrence h_c = decay_c h_{c-1} + local_c over the chunks of one sequence (in reverse
    order if REVERSE), for BLOCK of its ``width`` state elements: stores the state entering every chunk and the
    final state. decay, local, starts: (B, n_chunks, width); init, final: (B, width)."""
    row = tl.program_id(0).to(tl.int64)
    w = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = w < width
    h = tl.load(init_ptr + row * width + w, mask=mask, other=0.0).to(tl.float32)
    for i in range(n_chunks):
        if REVERSE:
            chunk = n_chunks - 1 - i
        else:
            chunk = i
        offset = (row * n_chunks + chunk) * width + w
        tl.store(starts_ptr + offset, h, mask=mask)
        h = tl.load(decay_ptr + offset, mask=mask, other=1.0) * h + tl.load(local_ptr + offset, mask=mask, other=0.0)
    tl.store(final_ptr + row * width + w, h, mask=mask)


def _carry(decay: Tensor, local: Tensor, init: Tensor, reverse: bool) -> tuple[Tensor, Tensor]:
    """(states entering each chunk (B, n_chunks, width), final state (B, width)) of :func:`_carry_kernel`."""
    batch, n_chunks, width = decay.shape
    starts, final = torch.empty_like(decay), torch.empty_like(init)
    grid = (batch, triton.cdiv(width, CARRY_BLOCK))
    _carry_kernel[grid](decay, local, init, starts, final, n_chunks, width, BLOCK=CARRY_BLOCK, REVERSE=reverse)
    return starts, final


# -- linear scan ------------------------------------------------------------------------------------------------
@triton.jit
def _linear_tile(length, width, T: tl.constexpr, BLOCK: tl.constexpr):  # noqa: ANN001, ANN202
    """This program's (T, BLOCK) tile of a (B, L, W) tensor: offsets and mask; its (BLOCK,) row of a
    (B, n_chunks, W) and of a (B, W) tensor: offsets (the mask is ``w_mask``); and its positions t."""
    row, chunk = tl.program_id(0).to(tl.int64), tl.program_id(2)
    t = chunk * T + tl.arange(0, T)
    w = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = (t < length)[:, None] & (w < width)[None, :]
    offsets = (row * length + t[:, None]) * width + w[None, :]
    chunk_offsets = (row * tl.num_programs(2) + chunk) * width + w
    return offsets, mask, chunk_offsets, row * width + w, w < width, t


@triton.jit
def _linear_forward_kernel(
    a_ptr,
    b_ptr,
    starts_ptr,
    ends_a_ptr,
    ends_b_ptr,
    out_ptr,  # noqa: ANN001, ANN202
    length,
    width,
    T: tl.constexpr,
    BLOCK: tl.constexpr,
    OUTPUT: tl.constexpr,
):
    """Scan one chunk. Without OUTPUT, from a zero state: store the chunk's decay product and end state. With
    OUTPUT, from the chunk's true start state: store the states."""
    offsets, mask, chunk_offsets, _, chunk_mask, t = _linear_tile(length, width, T, BLOCK)
    a = tl.load(a_ptr + offsets, mask=mask, other=1.0).to(tl.float32)  # a = 1, b = 0 past the end keep the state
    b = tl.load(b_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    decay, h = tl.associative_scan((a, b), axis=0, combine_fn=_first_order)
    if OUTPUT:
        start = tl.load(starts_ptr + chunk_offsets, mask=chunk_mask, other=0.0)
        tl.store(out_ptr + offsets, (h + decay * start[None, :]).to(out_ptr.dtype.element_ty), mask=mask)
    else:
        last = (tl.arange(0, T) == T - 1)[:, None]
        tl.store(ends_a_ptr + chunk_offsets, tl.sum(tl.where(last, decay, 0.0), axis=0), mask=chunk_mask)
        tl.store(ends_b_ptr + chunk_offsets, tl.sum(tl.where(last, h, 0.0), axis=0), mask=chunk_mask)


@triton.jit
def _linear_backward_kernel(
    a_ptr,
    out_ptr,
    h0_ptr,
    grad_ptr,
    carry_ptr,
    ends_a_ptr,
    ends_b_ptr,  # noqa: ANN001, ANN202
    ga_ptr,
    gb_ptr,
    length,
    width,
    T: tl.constexpr,
    BLOCK: tl.constexpr,
    OUTPUT: tl.constexpr,
):
    """The gradient recurrence g_t = a_{t+1} g_{t+1} + dL/dh_t over one chunk, from the right. Without OUTPUT,
    from zero: store what the chunk passes to the previous one (a_s g_s at its first position s) and its decay
    product. With OUTPUT, from the gradient carried in from the right: store dL/da_t = g_t h_{t-1}, dL/db_t = g_t."""
    offsets, mask, chunk_offsets, row_offsets, chunk_mask, t = _linear_tile(length, width, T, BLOCK)
    inside = (tl.arange(0, T) < T - 1)[:, None] & (t + 1 < length)[:, None]
    a_next = tl.load(a_ptr + offsets + width, mask=mask & inside, other=1.0).to(tl.float32)
    grad = tl.load(grad_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    decay, g = tl.associative_scan((a_next, grad), axis=0, combine_fn=_first_order, reverse=True)
    if OUTPUT:
        g += decay * tl.load(carry_ptr + chunk_offsets, mask=chunk_mask, other=0.0)[None, :]
        first = (t == 0)[:, None]
        previous = tl.load(out_ptr + offsets - width, mask=mask & ~first, other=0.0).to(tl.float32)  # h_{t-1}
        h0 = tl.load(h0_ptr + row_offsets, mask=chunk_mask, other=0.0)
        previous = tl.where(first, h0[None, :], previous)
        tl.store(gb_ptr + offsets, g.to(gb_ptr.dtype.element_ty), mask=mask)
        tl.store(ga_ptr + offsets, (g * previous).to(ga_ptr.dtype.element_ty), mask=mask)
    else:
        a = tl.load(a_ptr + offsets, mask=mask, other=1.0).to(tl.float32)
        first = (tl.arange(0, T) == 0)[:, None]
        tl.store(ends_a_ptr + chunk_offsets, tl.sum(tl.where(first, a * decay, 0.0), axis=0), mask=chunk_mask)
        tl.store(ends_b_ptr + chunk_offsets, tl.sum(tl.where(first, a * g, 0.0), axis=0), mask=chunk_mask)


def _linear_grid(b: Tensor) -> tuple[int, int, int]:
    batch, length, width = b.shape
    return batch, triton.cdiv(width, LINEAR_BLOCK), triton.cdiv(length, LINEAR_T)


class _LinearScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, a: Tensor, b: Tensor, h0: Tensor | None) -> tuple[Tensor, Tensor]:
        a, b = a.contiguous(), b.contiguous()
        batch, length, width = b.shape
        grid = _linear_grid(b)
        start = b.new_zeros(batch, width, dtype=torch.float32) if h0 is None else h0.detach().float().contiguous()
        out = torch.empty_like(b)
        ends_a, ends_b = (b.new_empty(batch, grid[2], width, dtype=torch.float32) for _ in range(2))
        last = torch.empty_like(start)
        if has_data(b):
            meta = dict(T=LINEAR_T, BLOCK=LINEAR_BLOCK)
            _linear_forward_kernel[grid](a, b, ends_a, ends_a, ends_b, out, length, width, **meta, OUTPUT=False)
            starts, last = _carry(ends_a, ends_b, start, reverse=False)
            _linear_forward_kernel[grid](a, b, starts, ends_a, ends_b, out, length, width, **meta, OUTPUT=True)
        ctx.save_for_backward(a, out, start)
        ctx.has_h0 = h0 is not None
        return out, last.to(b.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_out: Tensor | None, grad_last: Tensor | None) -> tuple[Tensor | None, ...]:
        a, out, start = ctx.saved_tensors
        batch, length, width = out.shape
        grid = _linear_grid(out)
        grad_out = torch.zeros_like(out) if grad_out is None else grad_out.contiguous()
        g_last = torch.zeros_like(start) if grad_last is None else grad_last.float().contiguous()
        ga, gb = torch.empty_like(out), torch.empty_like(out)
        ends_a, ends_b = (out.new_empty(batch, grid[2], width, dtype=torch.float32) for _ in range(2))
        g_h0 = torch.empty_like(start)
        if has_data(out):
            meta = dict(T=LINEAR_T, BLOCK=LINEAR_BLOCK)
            args = (a, out, start, grad_out)
            _linear_backward_kernel[grid](*args, ends_a, ends_a, ends_b, ga, gb, length, width, **meta, OUTPUT=False)
            carries, g_h0 = _carry(ends_a, ends_b, g_last, reverse=True)
            _linear_backward_kernel[grid](*args, carries, ends_a, ends_b, ga, gb, length, width, **meta, OUTPUT=True)
        return ga, gb, g_h0.to(out.dtype) if ctx.has_h0 else None


def linear_scan(a: Tensor, b: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """:func:`longdna.models.scan.linear_scan_reference` by the kernels above: a, b (B, L, ...) and h0 (B, ...) or
    None; returns (h (B, L, ...), h_{L-1})."""
    states, last = _LinearScan.apply(a.flatten(2), b.flatten(2), None if h0 is None else h0.flatten(1))
    return states.view(b.shape), last.view(b.shape[:1] + b.shape[2:])


# -- selective scan ---------------------------------------------------------------------------------------------
@triton.jit
def _selective_tile(
    x_ptr,
    dt_ptr,
    a_ptr,
    b_ptr,
    d_ptr,
    length,
    channels,
    states,  # noqa: ANN001, ANN202
    T: tl.constexpr,
    BLOCK: tl.constexpr,
    N: tl.constexpr,
):
    """This program's chunk of T positions x BLOCK channels: offsets and masks into (B, L, E), (B, L, N),
    (B, n_chunks, E, N) and (B, n_chunks, E) tensors; the loaded x, dt (T, BLOCK), A (BLOCK, N), B (T, N) and
    D (BLOCK,) in float32; and the positions t."""
    row, chunk = tl.program_id(0).to(tl.int64), tl.program_id(2)
    t = chunk * T + tl.arange(0, T)
    e = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    n = tl.arange(0, N)
    te = (row * length + t[:, None]) * channels + e[None, :]
    te_mask = (t < length)[:, None] & (e < channels)[None, :]
    tn = (row * length + t[:, None]) * states + n[None, :]
    tn_mask = (t < length)[:, None] & (n < states)[None, :]
    en = ((row * tl.num_programs(2) + chunk) * channels + e[:, None]) * states + n[None, :]
    en_mask = (e < channels)[:, None] & (n < states)[None, :]
    x = tl.load(x_ptr + te, mask=te_mask, other=0.0).to(tl.float32)
    dt = tl.load(dt_ptr + te, mask=te_mask, other=0.0).to(tl.float32)  # dt = 0 past the end: decay 1, no input
    a = tl.load(a_ptr + e[:, None] * states + n[None, :], mask=en_mask, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + tn, mask=tn_mask, other=0.0).to(tl.float32)
    d = tl.load(d_ptr + e, mask=e < channels, other=0.0).to(tl.float32)
    ce = (row * tl.num_programs(2) + chunk) * channels + e
    return te, te_mask, tn, tn_mask, en, en_mask, ce, e < channels, x, dt, a, b, d, t


@triton.jit
def _selective_forward_kernel(
    x_ptr,
    dt_ptr,
    a_ptr,
    b_ptr,
    c_ptr,
    d_ptr,
    z_ptr,
    starts_ptr,  # noqa: ANN001, ANN202
    ends_a_ptr,
    ends_b_ptr,
    out_ptr,
    length,
    channels,
    states,
    T: tl.constexpr,
    BLOCK: tl.constexpr,
    N: tl.constexpr,
    OUTPUT: tl.constexpr,
    GATED: tl.constexpr,
):
    """Without OUTPUT: scan one chunk from a zero state, store its decay product exp(A sum dt) and end state.
    With OUTPUT: from the chunk's true start state, store y = <h, C> + D x (times SiLU(z) if GATED)."""
    te, te_mask, tn, tn_mask, en, en_mask, _, _, x, dt, a, b, d, t = _selective_tile(
        x_ptr, dt_ptr, a_ptr, b_ptr, d_ptr, length, channels, states, T, BLOCK, N
    )
    decay = tl.exp(dt[:, :, None] * a[None, :, :])
    drive = (dt * x)[:, :, None] * b[:, None, :]
    decay, h = tl.associative_scan((decay, drive), axis=0, combine_fn=_first_order)
    if OUTPUT:
        h += decay * tl.load(starts_ptr + en, mask=en_mask, other=0.0)[None, :, :]
        c = tl.load(c_ptr + tn, mask=tn_mask, other=0.0).to(tl.float32)
        y = tl.sum(h * c[:, None, :], axis=2) + d[None, :] * x
        if GATED:
            z = tl.load(z_ptr + te, mask=te_mask, other=0.0).to(tl.float32)
            y = y * z * tl.sigmoid(z)
        tl.store(out_ptr + te, y.to(out_ptr.dtype.element_ty), mask=te_mask)
    else:
        last = (tl.arange(0, T) == T - 1)[:, None, None]
        tl.store(ends_b_ptr + en, tl.sum(tl.where(last, h, 0.0), axis=0), mask=en_mask)
        tl.store(ends_a_ptr + en, tl.exp(a * tl.sum(dt, axis=0)[:, None]), mask=en_mask)


@triton.jit
def _selective_backward_kernel(
    x_ptr,
    dt_ptr,
    a_ptr,
    b_ptr,
    c_ptr,
    d_ptr,
    z_ptr,
    starts_ptr,  # noqa: ANN001, ANN202
    grad_ptr,
    carry_ptr,
    ends_a_ptr,
    ends_b_ptr,
    gx_ptr,
    gdt_ptr,
    ga_ptr,
    gb_ptr,
    gc_ptr,
    gd_ptr,
    gz_ptr,
    length,
    channels,
    states,
    T: tl.constexpr,
    BLOCK: tl.constexpr,
    N: tl.constexpr,
    OUTPUT: tl.constexpr,
    GATED: tl.constexpr,
):
    """The gradient recurrence G_t = exp(dt_{t+1} A) G_{t+1} + C_t dL/dy_t over one chunk, from the right.
    Without OUTPUT, from zero: store what the chunk passes to the previous one (exp(dt_s A) G_s at its first
    position s) and its decay product. With OUTPUT, from the gradient carried in: store every input's gradient
    (those of A and D as per-chunk partial sums, those of B and C added atomically over channel blocks)."""
    te, te_mask, tn, tn_mask, en, en_mask, ce, e_mask, x, dt, a, b, d, t = _selective_tile(
        x_ptr, dt_ptr, a_ptr, b_ptr, d_ptr, length, channels, states, T, BLOCK, N
    )
    c = tl.load(c_ptr + tn, mask=tn_mask, other=0.0).to(tl.float32)
    grad = tl.load(grad_ptr + te, mask=te_mask, other=0.0).to(tl.float32)
    if GATED:
        z = tl.load(z_ptr + te, mask=te_mask, other=0.0).to(tl.float32)
        gy = grad * z * tl.sigmoid(z)
    else:
        gy = grad
    inside = (tl.arange(0, T) < T - 1)[:, None] & te_mask & (t + 1 < length)[:, None]
    dt_next = tl.load(dt_ptr + te + channels, mask=inside, other=0.0).to(tl.float32)
    decay_next, g = tl.associative_scan(
        (tl.exp(dt_next[:, :, None] * a[None, :, :]), c[:, None, :] * gy[:, :, None]),
        axis=0,
        combine_fn=_first_order,
        reverse=True,
    )
    if OUTPUT:
        g += decay_next * tl.load(carry_ptr + en, mask=en_mask, other=0.0)[None, :, :]  # dL/dh_t
        drive = (dt * x)[:, :, None] * b[:, None, :]
        decay, h = tl.associative_scan((tl.exp(dt[:, :, None] * a[None, :, :]), drive), axis=0, combine_fn=_first_order)
        h += decay * tl.load(starts_ptr + en, mask=en_mask, other=0.0)[None, :, :]
        if GATED:
            y = tl.sum(h * c[:, None, :], axis=2) + d[None, :] * x
            sig = tl.sigmoid(z)
            tl.store(gz_ptr + te, (grad * y * sig * (1 + z * (1 - sig))).to(gz_ptr.dtype.element_ty), mask=te_mask)
        w = g * (h - drive)  # dL/d(dt A) through exp: g_t exp(dt_t A) h_{t-1}, with exp(dt_t A) h_{t-1} = h_t - drive_t
        gu = tl.sum(g * b[:, None, :], axis=2)  # dL/d(dt x)
        gdt = tl.sum(w * a[None, :, :], axis=2) + gu * x
        tl.store(gdt_ptr + te, gdt.to(gdt_ptr.dtype.element_ty), mask=te_mask)
        tl.store(gx_ptr + te, (gy * d[None, :] + gu * dt).to(gx_ptr.dtype.element_ty), mask=te_mask)
        tl.store(ga_ptr + en, tl.sum(w * dt[:, :, None], axis=0), mask=en_mask)
        tl.store(gd_ptr + ce, tl.sum(gy * x, axis=0), mask=e_mask)
        tl.atomic_add(gb_ptr + tn, tl.sum(g * (dt * x)[:, :, None], axis=1), mask=tn_mask)
        tl.atomic_add(gc_ptr + tn, tl.sum(gy[:, :, None] * h, axis=1), mask=tn_mask)
    else:
        first = (tl.arange(0, T) == 0)[:, None, None]
        decay_first = tl.exp(dt[:, :, None] * a[None, :, :])
        tl.store(ends_b_ptr + en, tl.sum(tl.where(first, decay_first * g, 0.0), axis=0), mask=en_mask)
        tl.store(ends_a_ptr + en, tl.exp(a * tl.sum(dt, axis=0)[:, None]), mask=en_mask)


class _SelectiveScan(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, x: Tensor, dt: Tensor, a: Tensor, b: Tensor, c: Tensor, d: Tensor, z: Tensor | None, h0: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        batch, length, channels = x.shape
        states = a.shape[1]
        gate = x.new_empty(0) if z is None else z
        x, dt, a, b, c, d, gate = (t.contiguous() for t in (x, dt, a, b, c, d, gate))
        grid = (batch, triton.cdiv(channels, SELECTIVE_BLOCK), triton.cdiv(length, SELECTIVE_T))
        start = (
            x.new_zeros(batch, channels, states, dtype=torch.float32)
            if h0 is None
            else h0.detach().float().contiguous()
        )
        ends_a, ends_b = (x.new_empty(batch, grid[2], channels, states, dtype=torch.float32) for _ in range(2))
        out, starts, last = torch.empty_like(x), torch.empty_like(ends_a), torch.empty_like(start)
        if has_data(x):
            meta = dict(T=SELECTIVE_T, BLOCK=SELECTIVE_BLOCK, N=triton.next_power_of_2(states), GATED=z is not None)
            args = (x, dt, a, b, c, d, gate)
            _selective_forward_kernel[grid](
                *args, ends_a, ends_a, ends_b, out, length, channels, states, **meta, OUTPUT=False
            )
            starts, last = _carry(ends_a.flatten(2), ends_b.flatten(2), start.flatten(1), reverse=False)
            starts, last = starts.view_as(ends_a), last.view_as(start)
            _selective_forward_kernel[grid](
                *args, starts, ends_a, ends_b, out, length, channels, states, **meta, OUTPUT=True
            )
        ctx.save_for_backward(x, dt, a, b, c, d, gate, starts)
        ctx.gated, ctx.has_h0 = z is not None, h0 is not None
        return out, last.to(x.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_out: Tensor | None, grad_last: Tensor | None) -> tuple[Tensor | None, ...]:
        x, dt, a, b, c, d, gate, starts = ctx.saved_tensors
        batch, length, channels = x.shape
        states = a.shape[1]
        grid = (batch, triton.cdiv(channels, SELECTIVE_BLOCK), triton.cdiv(length, SELECTIVE_T))
        grad_out = torch.zeros_like(x) if grad_out is None else grad_out.contiguous()
        g_last = (
            x.new_zeros(batch, channels, states, dtype=torch.float32)
            if grad_last is None
            else grad_last.float().contiguous()
        )
        gx, gdt, gz = torch.empty_like(x), torch.empty_like(dt), torch.empty_like(gate)
        gb, gc = (torch.zeros_like(t, dtype=torch.float32) for t in (b, c))  # atomically accumulated
        ga_parts, ends_a, ends_b = (torch.empty_like(starts) for _ in range(3))
        gd_parts = x.new_empty(batch, grid[2], channels, dtype=torch.float32)
        g_h0 = torch.empty_like(g_last)
        if has_data(x):
            meta = dict(T=SELECTIVE_T, BLOCK=SELECTIVE_BLOCK, N=triton.next_power_of_2(states), GATED=ctx.gated)
            args = (x, dt, a, b, c, d, gate, starts, grad_out)
            outs = (ends_a, ends_b, gx, gdt, ga_parts, gb, gc, gd_parts, gz, length, channels, states)
            _selective_backward_kernel[grid](*args, ends_a, *outs, **meta, OUTPUT=False)
            carries, g_h0 = _carry(ends_a.flatten(2), ends_b.flatten(2), g_last.flatten(1), reverse=True)
            _selective_backward_kernel[grid](*args, carries.view_as(ends_a), *outs, **meta, OUTPUT=True)
            g_h0 = g_h0.view_as(g_last)
        return (
            gx,
            gdt,
            ga_parts.sum((0, 1)).to(a.dtype),
            gb.to(b.dtype),
            gc.to(c.dtype),
            gd_parts.sum((0, 1)).to(d.dtype),
            gz if ctx.gated else None,
            g_h0.to(x.dtype) if ctx.has_h0 else None,
        )


def selective_scan(
    x: Tensor, dt: Tensor, a: Tensor, b: Tensor, c: Tensor, d: Tensor, h0: Tensor | None = None, z: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """:func:`longdna.models.mamba.selective_scan_reference` (then ``* silu(z)`` when z is given) by the kernels
    above: x, dt, z (B, L, E); a (E, N); b, c (B, L, N); d (E,); h0 (B, E, N) or None. Returns the output
    (B, L, E) in x's dtype and the last state (B, E, N)."""
    return _SelectiveScan.apply(x, dt, a, b, c, d, z, h0)
