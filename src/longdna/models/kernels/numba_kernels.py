"""Fused CPU kernels of the recurrent models, compiled by numba when this module is first imported (from
numba's on-disk cache after the first time): the CPU fast path, ``scan_backend`` "numba".

* :func:`selective_scan` (Mamba, Caduceus): the selective SSM of
  :func:`longdna.models.mamba.selective_scan_reference`, with the step's softplus(dt + bias) and the z gate
  fused, position by position with the (N, E) state held in cache: no (B, L, E, N) tensor is ever formed.
  Forward keeps the state every :data:`CHECKPOINT` positions; backward recomputes one such stretch at a time
  and runs the gradient recurrence back through it. Saved for backward: the inputs and those checkpoints
  (N / CHECKPOINT input-sized tensors). ``reverse`` scans right to left (Caduceus' reverse direction without
  flipped copies).
* :func:`causal_conv1d`: the short depthwise causal convolution of both models (with Mamba's SiLU), which
  PyTorch runs as several passes (shifted products) or through oneDNN's slow small-channel path.
* :func:`rg_lru` (Hawk): the RG-LRU from its gate pre-activations (gates, decay, normaliser, scan) in one pass,
  where PyTorch runs a dozen elementwise operations and the scan's operator calls per position.

Each accepts an initial state and returns the final one, so chunked inference carries state across calls.
Loops run over channels innermost so that LLVM vectorises them, with float32 versions of exp, expm1 and
softplus written to vectorise (numba's own call libm per element: without Intel's SVML, 7x the cost of the
rest of a scan step). float32 and float64; single-threaded.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
import torch
from numba import types
from numba.extending import overload
from torch import Tensor

from longdna.models.kernels import has_data

#: positions between the states that forward keeps for backward (backward's scratch is 2 x CHECKPOINT states)
CHECKPOINT = 16
#: fastmath without nnan / ninf, so that NaN and inf propagate as in PyTorch (reassociation lets sums vectorise);
#: error_model "numpy": division by zero gives inf, with no check that would stop vectorisation
OPTIONS: dict[str, Any] = dict(fastmath={"contract", "reassoc", "nsz", "arcp"}, error_model="numpy")
#: helpers, inlined into the kernels in numba's IR (a call inside a loop would keep it from vectorising)
helper = numba.njit(inline="always", **OPTIONS)


def kernel(arguments: str) -> Any:
    """numba.njit, compiled at import for float32 and float64 and cached on disk: ``arguments`` lists the
    argument types, ``A1``..``A4`` for C-contiguous float arrays of that many dimensions, ``b`` for a flag,
    ``f`` for a float64 scalar. Compiling up front keeps compilation out of the first training step (and out
    of its time and memory)."""

    def signature(dtype: str) -> str:
        def one(code: str) -> str:
            if code in ("b", "f"):
                return {"b": "boolean", "f": "float64"}[code]
            return f"{dtype}[{', '.join([':'] * (int(code[1]) - 1) + ['::1'])}]"

        return f"void({', '.join(one(code) for code in arguments.split())})"

    return numba.njit([signature("float32"), signature("float64")], cache=True, nogil=True, **OPTIONS)


# numba matches an overload's implementation to its typing function by signature, annotations included: none here
def fast_exp(v):  # noqa: ANN001, ANN201
    """exp; in float32 a vectorisable version (cephes' expf: within 2 ulp), in float64 libm's."""
    return math.exp(v)


def _expf(v):  # noqa: ANN001, ANN202
    # exp(v) = 2^k exp(r), k = round(v / ln 2), r = v - k ln 2 in [-ln2/2, ln2/2] (ln 2 split in two so that
    # k ln 2 is exact), exp(r) by cephes' degree-7 polynomial; 2^k assembled in the exponent bits
    v = min(max(v, np.float32(-87.33654)), np.float32(88.72283))  # exp of the bounds: float32's normal range
    k = np.floor(v * np.float32(1.44269504088896341) + np.float32(0.5))
    r = v - k * np.float32(0.693359375) + k * np.float32(2.12194440e-4)
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    p = p * r * r + r + np.float32(1.0)
    return p * np.int32((np.int32(k) + 127) << 23).view(np.float32)


@overload(fast_exp, inline="always")
def _fast_exp(v):  # noqa: ANN001, ANN202
    if v == types.float32:
        return _expf
    return lambda v: math.exp(v)


def fast_expm1(v):  # noqa: ANN001, ANN201
    """expm1 (exp(v) - 1, exact near 0); in float32 vectorisable (relative error below 2e-7), in float64 libm's."""
    return math.expm1(v)


def _expm1f(v):  # noqa: ANN001, ANN202
    # Taylor series to v^8 / 8! for |v| < 1/2 (where exp(v) - 1 would cancel; remainder < 2e-8 relative),
    # exp(v) - 1 elsewhere; both are computed and one selected, which vectorises
    p = np.float32(1 / 40320)
    for coefficient in (1 / 5040, 1 / 720, 1 / 120, 1 / 24, 1 / 6, 1 / 2, 1.0):
        p = p * v + np.float32(coefficient)
    near_zero = p * v
    return near_zero if abs(v) < np.float32(0.5) else fast_exp(v) - np.float32(1.0)


@overload(fast_expm1, inline="always")
def _fast_expm1(v):  # noqa: ANN001, ANN202
    if v == types.float32:
        return _expm1f
    return lambda v: math.expm1(v)


def like(v, c):  # noqa: ANN001, ANN201
    """The constant c in v's type: numba types ``1 + v`` as float64 for a float32 v (and does not vectorise it)."""
    return c


@overload(like, inline="always")
def _like(v, c):  # noqa: ANN001, ANN202
    kind = v
    return lambda v, c: kind(c)


@helper
def _sigmoid(v):  # noqa: ANN001, ANN202
    one = like(v, 1)
    return one / (one + fast_exp(-v))


def fast_softplus(v):  # noqa: ANN001, ANN201
    """log(1 + exp(v)) (PyTorch's softplus: v itself above 20); in float32 vectorisable, in float64 libm's."""
    return v if v > 20 else math.log1p(math.exp(v))


def _softplusf(v):  # noqa: ANN001, ANN202
    # max(v, 0) + log1p(exp(-|v|)), log1p(u) = 2 atanh(u / (2 + u)) by its series (u <= 1: the ratio is <= 1/3,
    # 7 terms leave < 1e-8); exact for small u, where log(1 + u) would lose u to rounding
    u = fast_exp(-abs(v))
    r = u / (np.float32(2.0) + u)
    r2 = r * r
    series = np.float32(1 / 13)
    for coefficient in (1 / 11, 1 / 9, 1 / 7, 1 / 5, 1 / 3, 1.0):
        series = series * r2 + np.float32(coefficient)
    return max(v, np.float32(0.0)) + np.float32(2.0) * r * series


@overload(fast_softplus, inline="always")
def _fast_softplus(v):  # noqa: ANN001, ANN202
    if v == types.float32:
        return _softplusf
    return lambda v: v if v > 20 else math.log1p(math.exp(v))


@helper
def _sigmoid_slope(s, v):  # noqa: ANN001, ANN202
    """d silu(v) / dv = s (1 + v (1 - s)) for s = sigmoid(v)."""
    one = like(v, 1)
    return s * (one + v * (one - s))


@helper
def _position(s, length, reverse):  # noqa: ANN001, ANN202
    """The position handled at step s of a scan that runs left to right, or right to left if ``reverse``."""
    return length - 1 - s if reverse else s


@numba.njit(cache=True, nogil=True, **OPTIONS)  # called once per position: no need to inline
def _steps(dt_row, dt_bias, softplus, out):  # noqa: ANN001, ANN202
    """out = softplus(dt_row + dt_bias) if ``softplus`` else dt_row."""
    if softplus:
        for e in range(out.shape[0]):
            out[e] = fast_softplus(dt_row[e] + dt_bias[e])
    else:
        out[:] = dt_row


# -- selective scan ---------------------------------------------------------------------------------------------
# Layouts: x, dt, z (B, L, E); b, c (B, L, N); a and states transposed to (N, E) so that the inner loops run
# along contiguous channels. ``softplus``: the step is softplus(dt + dt_bias) (mamba_ssm's delta_softplus);
# ``gated``: the output is multiplied by SiLU(z); ``reverse``: the scan runs from the last position to the first.
@kernel("A3 A3 A1 b A2 A3 A3 A1 A3 b b A3 A3 A4 A3")
def _selective_forward(
    x,
    dt,
    dt_bias,
    softplus,
    a,
    b,
    c,
    d,
    z,
    gated,
    reverse,  # noqa: ANN001, ANN202
    h,
    out,
    checkpoints,
    ungated,
):
    """Writes out (B, L, E) and checkpoints (B, ceil(L / CHECKPOINT), N, E), the state before every
    CHECKPOINT-th step, and, if it is not empty, ``ungated``: the output before the gate (for backward);
    h (B, N, E) enters as the initial state and leaves as the last one."""
    batch, length, channels = x.shape
    states = a.shape[0]
    state = np.empty((states, channels), x.dtype)  # local arrays: LLVM vectorises only what it knows is unaliased
    step = np.empty(channels, x.dtype)
    u = np.empty(channels, x.dtype)
    y = np.empty(channels, x.dtype)
    for i in range(batch):
        state[:] = h[i]
        for s in range(length):
            t = _position(s, length, reverse)
            if s % CHECKPOINT == 0:
                checkpoints[i, s // CHECKPOINT] = state
            _steps(dt[i, t], dt_bias, softplus, step)
            xt = x[i, t]
            for e in range(channels):
                u[e] = step[e] * xt[e]
                y[e] = d[e] * xt[e]
            for n in range(states):
                bn, cn, an, hn = b[i, t, n], c[i, t, n], a[n], state[n]
                for e in range(channels):
                    v = fast_exp(step[e] * an[e]) * hn[e] + u[e] * bn
                    hn[e] = v
                    y[e] += v * cn
            ot = out[i, t]
            if ungated.size:
                ungated[i, t] = y
            if gated:
                zt = z[i, t]
                for e in range(channels):
                    ot[e] = y[e] * zt[e] * _sigmoid(zt[e])
            else:
                ot[:] = y
        h[i] = state


@kernel("A3 A3 A1 b A2 A3 A3 A1 A3 b b A4 A3 A3 A3 A3 A3 A1 A2 A3 A3 A1 A3")
def _selective_backward(
    x,
    dt,
    dt_bias,
    softplus,
    a,
    b,
    c,
    d,
    z,
    gated,
    reverse,  # noqa: ANN001, ANN202
    checkpoints,
    ungated,
    grad_out,
    grad_h,
    gx,
    gdt,
    gdt_bias,
    ga,
    gb,
    gc,
    gd,
    gz,
):
    """Gradients of :func:`_selective_forward` (``ungated``: its output before the gate, when gated). grad_h
    (B, N, E) enters as the gradient of the last state and leaves as that of the initial state; gdt_bias (E,),
    ga (N, E) and gd (E,) are accumulated into."""
    batch, length, channels = x.shape
    states = a.shape[0]
    zero = np.zeros(1, x.dtype)[0]
    hs = np.empty((CHECKPOINT + 1, states, channels), x.dtype)  # hs[j]: state before step start + j
    decays = np.empty((CHECKPOINT, states, channels), x.dtype)
    steps = np.empty((CHECKPOINT, channels), x.dtype)
    g = np.empty((states, channels), x.dtype)  # d loss / d state after the step being processed
    ga_local = np.zeros((states, channels), x.dtype)
    u = np.empty(channels, x.dtype)
    gy = np.empty(channels, x.dtype)
    gu = np.empty(channels, x.dtype)
    gstep = np.empty(channels, x.dtype)
    for i in range(batch):
        g[:] = grad_h[i]
        for k in range((length + CHECKPOINT - 1) // CHECKPOINT - 1, -1, -1):
            start = k * CHECKPOINT
            stop = min(start + CHECKPOINT, length)
            hs[0] = checkpoints[i, k]
            for s in range(start, stop):  # recompute this stretch's steps, states and decays
                j, t = s - start, _position(s, length, reverse)
                step, xt = steps[j], x[i, t]
                _steps(dt[i, t], dt_bias, softplus, step)
                for e in range(channels):
                    u[e] = step[e] * xt[e]
                for n in range(states):
                    bn, an = b[i, t, n], a[n]
                    dn, previous, current = decays[j, n], hs[j, n], hs[j + 1, n]
                    for e in range(channels):
                        decay = fast_exp(step[e] * an[e])
                        dn[e] = decay
                        current[e] = decay * previous[e] + u[e] * bn
            for s in range(stop - 1, start - 1, -1):
                j, t = s - start, _position(s, length, reverse)
                step, xt, got = steps[j], x[i, t], grad_out[i, t]
                if gated:
                    zt, gzt, yt = z[i, t], gz[i, t], ungated[i, t]
                    for e in range(channels):
                        gy[e] = got[e] * zt[e] * _sigmoid(zt[e])
                    for e in range(channels):  # a loop of its own vectorises better
                        gzt[e] = got[e] * yt[e] * _sigmoid_slope(_sigmoid(zt[e]), zt[e])
                else:
                    gy[:] = got
                for e in range(channels):
                    u[e] = step[e] * xt[e]
                    gu[e] = 0
                    gstep[e] = 0
                for n in range(states):
                    bn, cn, an, gan = b[i, t, n], c[i, t, n], a[n], ga_local[n]
                    dn, previous, current, gn = decays[j, n], hs[j, n], hs[j + 1, n], g[n]
                    gcn = zero
                    gbn = zero
                    for e in range(channels):
                        gh = gn[e] + cn * gy[e]  # d loss / d h_t
                        gcn += gy[e] * current[e]
                        gbn += gh * u[e]
                        gu[e] += gh * bn
                        w = gh * previous[e] * dn[e]  # d loss / d (dt a), through exp
                        gstep[e] += w * an[e]
                        gan[e] += w * step[e]
                        gn[e] = gh * dn[e]  # d loss / d h_{t-1}
                    gc[i, t, n] = gcn
                    gb[i, t, n] = gbn
                gxt, gdtt = gx[i, t], gdt[i, t]
                for e in range(channels):
                    gd[e] += gy[e] * xt[e]
                    gxt[e] = gy[e] * d[e] + gu[e] * step[e]
                    gdtt[e] = gstep[e] + gu[e] * xt[e]
                if softplus:  # d softplus(v) / dv = sigmoid(v)
                    dtt = dt[i, t]
                    for e in range(channels):
                        gdtt[e] *= _sigmoid(dtt[e] + dt_bias[e])
                        gdt_bias[e] += gdtt[e]
        grad_h[i] = g
    ga += ga_local


def _array(tensor: Tensor) -> np.ndarray:
    """A NumPy view of a contiguous CPU tensor (the kernels write into some of them)."""
    return tensor.detach().numpy()


class _SelectiveScan(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        dt: Tensor,
        a: Tensor,
        b: Tensor,
        c: Tensor,
        d: Tensor,
        z: Tensor | None,
        h0: Tensor | None,
        dt_bias: Tensor | None,
        reverse: bool,
    ) -> tuple[Tensor, Tensor]:
        batch, length, channels = x.shape
        states = a.shape[1]
        gate = x.new_empty(0, 0, 0) if z is None else z
        bias = x.new_empty(0) if dt_bias is None else dt_bias
        x, dt, bias, a_t, b, c, d, gate = (t.contiguous() for t in (x, dt, bias, a.t(), b, c, d, gate))
        h = (
            x.new_zeros(batch, states, channels)
            if h0 is None
            else h0.detach().to(x.dtype).transpose(1, 2).clone(memory_format=torch.contiguous_format)
        )
        out = torch.empty_like(x)
        checkpoints = x.new_empty(batch, -(-length // CHECKPOINT), states, channels)
        # the gate's gradient needs the output before the gate: kept when there will be a backward
        ungated = torch.empty_like(x) if z is not None and any(ctx.needs_input_grad) else x.new_empty(0, 0, 0)
        ctx.flags = dt_bias is not None, z is not None, reverse
        if has_data(x):
            _selective_forward(
                *_kernel_arguments(x, dt, bias, a_t, b, c, d, gate, ctx.flags),
                *map(_array, (h, out, checkpoints, ungated)),
            )
        ctx.save_for_backward(x, dt, bias, a_t, b, c, d, gate, checkpoints, ungated)
        ctx.has_h0 = h0 is not None
        return out, h.transpose(1, 2).contiguous()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_out: Tensor | None, grad_last: Tensor | None) -> tuple[Tensor | None, ...]:
        x, dt, bias, a_t, b, c, d, gate, checkpoints, ungated = ctx.saved_tensors
        grad_out = torch.zeros_like(x) if grad_out is None else grad_out.contiguous()
        grad_h = (
            x.new_zeros(x.shape[0], *a_t.shape)
            if grad_last is None
            else grad_last.transpose(1, 2).clone(memory_format=torch.contiguous_format)
        )
        gx, gdt, gz, gb, gc = (torch.empty_like(t) for t in (x, dt, gate, b, c))
        gbias, ga, gd = (torch.zeros_like(t) for t in (bias, a_t, d))
        if has_data(x):
            _selective_backward(
                *_kernel_arguments(x, dt, bias, a_t, b, c, d, gate, ctx.flags),
                *map(_array, (checkpoints, ungated, grad_out, grad_h, gx, gdt, gbias, ga, gb, gc, gd, gz)),
            )
        softplus, gated, _ = ctx.flags
        return (
            gx,
            gdt,
            ga.t(),
            gb,
            gc,
            gd,
            gz if gated else None,
            grad_h.transpose(1, 2) if ctx.has_h0 else None,
            gbias if softplus else None,
            None,
        )


def _kernel_arguments(
    x: Tensor,
    dt: Tensor,
    bias: Tensor,
    a_t: Tensor,
    b: Tensor,
    c: Tensor,
    d: Tensor,
    gate: Tensor,
    flags: tuple[bool, bool, bool],
) -> tuple:
    """The inputs of both selective-scan kernels, in their order."""
    softplus, gated, reverse = flags
    x, dt, bias, a_t, b, c, d, gate = map(_array, (x, dt, bias, a_t, b, c, d, gate))
    return x, dt, bias, softplus, a_t, b, c, d, gate, gated, reverse


def selective_scan(
    x: Tensor,
    dt: Tensor,
    a: Tensor,
    b: Tensor,
    c: Tensor,
    d: Tensor,
    h0: Tensor | None = None,
    z: Tensor | None = None,
    dt_bias: Tensor | None = None,
    reverse: bool = False,
) -> tuple[Tensor, Tensor]:
    """:func:`longdna.models.mamba.selective_scan_reference`, fused, with two more options: the step is
    softplus(dt + dt_bias) when ``dt_bias`` is given, and with ``reverse`` the scan runs from the last position
    to the first (the scan of the flipped sequence, flipped back; h0 and the returned state are its ends).

    CPU tensors, all float32 or all float64: x, dt, z (B, L, E); a (E, N); b, c (B, L, N); d, dt_bias (E,);
    h0 (B, E, N) or None. Returns the output (B, L, E) and the last state (B, E, N).
    """
    return _SelectiveScan.apply(x, dt, a, b, c, d, z, h0, dt_bias, reverse)


# -- causal depthwise convolution -------------------------------------------------------------------------------
@kernel("A3 A2 A1 b b A3")
def _conv_forward(padded, weight, bias, silu, reverse, out):  # noqa: ANN001, ANN202
    """out[i, t] = act(bias + sum_k weight[k] * padded[i, t + k]); padded (B, K - 1 + L, C), out (B, L, C).
    With ``reverse`` the taps are mirrored (padded[i, t + K - 1 - k]): the convolution of the flipped sequence."""
    batch, length, channels = out.shape
    context = weight.shape[0] - 1
    for i in range(batch):
        for t in range(length):
            ot = out[i, t]
            ot[:] = bias
            for k in range(weight.shape[0]):
                wk, row = weight[k], padded[i, t + (context - k if reverse else k)]
                for c in range(channels):
                    ot[c] += wk[c] * row[c]
            if silu:
                for c in range(channels):
                    ot[c] = ot[c] * _sigmoid(ot[c])


@kernel("A3 A2 A1 b b A3 A3 A2 A1")
def _conv_backward(padded, weight, bias, silu, reverse, grad_out, gpadded, gw, gbias):  # noqa: ANN001, ANN202
    """Gradients of :func:`_conv_forward`, accumulated into gpadded, gw and gbias (zero them first)."""
    batch, length, channels = grad_out.shape
    context = weight.shape[0] - 1
    gpre = np.empty(channels, padded.dtype)
    pre = np.empty(channels, padded.dtype)
    for i in range(batch):
        for t in range(length):
            gpre[:] = grad_out[i, t]
            if silu:  # recompute the pre-activation
                pre[:] = bias
                for k in range(weight.shape[0]):
                    wk, row = weight[k], padded[i, t + (context - k if reverse else k)]
                    for c in range(channels):
                        pre[c] += wk[c] * row[c]
                for c in range(channels):
                    gpre[c] *= _sigmoid_slope(_sigmoid(pre[c]), pre[c])
            for c in range(channels):
                gbias[c] += gpre[c]
            for k in range(weight.shape[0]):
                p = t + (context - k if reverse else k)
                wk, gwk, row, grow = weight[k], gw[k], padded[i, p], gpadded[i, p]
                for c in range(channels):
                    gwk[c] += gpre[c] * row[c]
                    grow[c] += wk[c] * gpre[c]


class _CausalConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, padded: Tensor, weight: Tensor, bias: Tensor, silu: bool, reverse: bool) -> Tensor:
        weight, bias = weight.contiguous(), bias.contiguous()
        out = padded.new_empty(padded.shape[0], padded.shape[1] - weight.shape[0] + 1, padded.shape[2])
        if has_data(padded):
            _conv_forward(*map(_array, (padded, weight, bias)), silu, reverse, _array(out))
        ctx.save_for_backward(padded, weight, bias)
        ctx.flags = silu, reverse
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        padded, weight, bias = ctx.saved_tensors
        gpadded, gw, gbias = (torch.zeros_like(t) for t in (padded, weight, bias))
        if has_data(padded):
            _conv_backward(
                *map(_array, (padded, weight, bias)),
                *ctx.flags,
                *map(_array, (grad_out.contiguous(), gpadded, gw, gbias)),
            )
        return gpadded, gw, gbias, None, None


def causal_conv1d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    history: Tensor | None = None,
    silu: bool = False,
    reverse: bool = False,
) -> tuple[Tensor, Tensor]:
    """Depthwise causal convolution over time, then SiLU if ``silu``, fused.

    x (B, L, C); weight (K, C), tap k multiplying x[t - K + 1 + k]; bias (C,) or None; history (B, K - 1, C),
    the inputs before x (None: zeros, a sequence start). Returns the output (B, L, C) and the history for the
    next piece (the last K - 1 inputs). With ``reverse``, the same for the flipped sequence, flipped back: time
    runs from the last position to the first, and history is in that order too.
    """
    context = weight.shape[0] - 1
    if history is None:
        history = x.new_zeros(x.shape[0], context, x.shape[2])
    history = history.to(x.dtype)
    padded = torch.cat([x, history.flip(1)] if reverse else [history, x], dim=1)
    out = _CausalConv.apply(padded, weight, x.new_zeros(x.shape[2]) if bias is None else bias, silu, reverse)
    tail = padded[:, :context].flip(1) if reverse else padded[:, padded.shape[1] - context :]
    return out, tail


# -- RG-LRU ------------------------------------------------------------------------------------------------------
# Hawk's gated recurrence from its gate pre-activations: a_t = exp(log_base * sigmoid(gate_a)),
# h_t = a_t h_{t-1} + sqrt(1 - a_t^2) sigmoid(gate_x) x_t, over (B, L, W); the gates are recomputed in backward.
@kernel("A3 A3 A3 A1 A2 A3")
def _rg_lru_forward(x, gate_x, gate_a, log_base, h, out):  # noqa: ANN001, ANN202
    """Writes out (B, L, W); h (B, W) enters as the initial state and leaves as the last one."""
    batch, length, width = x.shape
    state = np.empty(width, x.dtype)
    for i in range(batch):
        state[:] = h[i]
        for t in range(length):
            xt, gxt, gat, ot = x[i, t], gate_x[i, t], gate_a[i, t], out[i, t]
            for w in range(width):
                log_a = log_base[w] * _sigmoid(gat[w])
                drive = math.sqrt(-fast_expm1(log_a + log_a)) * _sigmoid(gxt[w]) * xt[w]
                state[w] = fast_exp(log_a) * state[w] + drive
                ot[w] = state[w]
        h[i] = state


@kernel("A3 A3 A3 A1 f A2 A3 A3 A2 A3 A3 A3 A1")
def _rg_lru_backward(
    x,
    gate_x,
    gate_a,
    log_base,
    sqrt_floor,
    h0,
    out,
    grad_out,
    grad_h,  # noqa: ANN001, ANN202
    gx,
    ggate_x,
    ggate_a,
    glog_base,
):
    """Gradients of :func:`_rg_lru_forward`; grad_h (B, W) enters as the gradient of the last state and leaves
    as that of the initial one; glog_base is accumulated into. d sqrt(y) / dy is capped at 1 / sqrt(sqrt_floor)
    (Hawk's bounded square-root gradient)."""
    batch, length, width = x.shape
    carry = np.empty(width, x.dtype)  # d loss / d h_t from the positions after t
    glb = np.zeros(width, x.dtype)
    zero = glb[0:1].sum()  # of x's type
    one, two, four, floor = like(zero, 1), like(zero, 2), like(zero, 4), like(zero, sqrt_floor)
    for i in range(batch):
        carry[:] = grad_h[i]
        for t in range(length - 1, -1, -1):
            previous = out[i, t - 1] if t > 0 else h0[i]
            xt, gxt, gat, got = x[i, t], gate_x[i, t], gate_a[i, t], grad_out[i, t]
            gxo, ggxt, ggat = gx[i, t], ggate_x[i, t], ggate_a[i, t]
            for w in range(width):
                sa, sx = _sigmoid(gat[w]), _sigmoid(gxt[w])
                log_a = log_base[w] * sa
                a = fast_exp(log_a)
                y = -fast_expm1(two * log_a)  # 1 - a^2
                normaliser = math.sqrt(y)
                total = carry[w] + got[w]  # d loss / d h_t
                gxo[w] = total * normaliser * sx
                ggxt[w] = total * normaliser * xt[w] * sx * (one - sx)
                g_y = total * sx * xt[w] / math.sqrt(max(four * y, floor))
                g_log_a = total * previous[w] * a - two * a * a * g_y
                ggat[w] = g_log_a * log_base[w] * sa * (one - sa)
                glb[w] += g_log_a * sa
                carry[w] = total * a
        grad_h[i] = carry
    glog_base += glb


class _RGLRU(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        gate_x: Tensor,
        gate_a: Tensor,
        log_base: Tensor,
        h0: Tensor | None,
        max_sqrt_gradient: float,
    ) -> tuple[Tensor, Tensor]:
        x, gate_x, gate_a, log_base = (t.contiguous() for t in (x, gate_x, gate_a, log_base))
        h = x.new_zeros(x.shape[0], x.shape[2]) if h0 is None else h0.detach().to(x.dtype).clone()
        start = h.clone()
        out = torch.empty_like(x)
        if has_data(x):
            _rg_lru_forward(*map(_array, (x, gate_x, gate_a, log_base, h, out)))
        ctx.save_for_backward(x, gate_x, gate_a, log_base, start, out)
        ctx.has_h0, ctx.sqrt_floor = h0 is not None, 1.0 / max_sqrt_gradient**2
        return out, h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_out: Tensor | None, grad_last: Tensor | None) -> tuple[Tensor | None, ...]:
        x, gate_x, gate_a, log_base, start, out = ctx.saved_tensors
        grad_h = torch.zeros_like(start) if grad_last is None else grad_last.contiguous().clone()
        grad_out = torch.zeros_like(out) if grad_out is None else grad_out.contiguous()
        gx, ggate_x, ggate_a, glog_base = (
            torch.empty_like(x),
            torch.empty_like(x),
            torch.empty_like(x),
            torch.zeros_like(log_base),
        )
        if has_data(x):
            _rg_lru_backward(
                *map(_array, (x, gate_x, gate_a, log_base)),
                ctx.sqrt_floor,
                *map(_array, (start, out, grad_out, grad_h, gx, ggate_x, ggate_a, glog_base)),
            )
        return gx, ggate_x, ggate_a, glog_base, grad_h if ctx.has_h0 else None, None


def rg_lru(
    x: Tensor, gate_x: Tensor, gate_a: Tensor, log_base: Tensor, h0: Tensor | None, max_sqrt_gradient: float
) -> tuple[Tensor, Tensor]:
    """Hawk's RG-LRU (:class:`longdna.models.hawk.RGLRU`) from its gate pre-activations, fused.

    x, gate_x, gate_a (B, L, W): the input and the pre-activations of the input and recurrence gates;
    log_base (W,): -c softplus(Lambda), so that log a_t = log_base sigmoid(gate_a_t); h0 (B, W) or None.
    Returns (h (B, L, W), h_{L-1}). CPU tensors, all float32 or all float64.
    """
    return _RGLRU.apply(x, gate_x, gate_a, log_base, h0, max_sqrt_gradient)
