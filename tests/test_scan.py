"""The recurrences and their fast paths against the sequential definitions, values and gradients: the PyTorch
parallel scan, numba's fused CPU kernels (selective scan, causal convolution, RG-LRU) and the backend choice.
(The Triton kernels are checked in test_triton_kernels.py.)"""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from longdna.models import build_model, scan
from longdna.models.hawk import RGLRU, HawkConfig
from longdna.models.kernels import choose_backend, numba_kernels
from longdna.models.mamba import selective_scan_reference
from longdna.models.scan import linear_scan, linear_scan_parallel, linear_scan_reference


def per_step(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """h_t = a_t h_{t-1} + b_t written out with Python floats, independent of both implementations."""
    a, b, h = a.tolist(), b.tolist(), h0.tolist()
    out = []
    for a_t, b_t in zip(a, b):
        h = [x * y + z for x, y, z in zip(a_t, h, b_t)]
        out.append(h)
    return torch.tensor(out, dtype=torch.float64)


def test_reference_is_the_recurrence() -> None:
    torch.manual_seed(0)
    a, b, h0 = torch.rand(1, 9, 3, dtype=torch.float64), torch.randn(1, 9, 3, dtype=torch.float64), torch.randn(1, 3)
    states, last = linear_scan_reference(a, b, h0.double())
    torch.testing.assert_close(states[0], per_step(a[0], b[0], h0[0].double()), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(last, states[:, -1])


# chunks of 4: one chunk, a partial chunk, exact multiples, and 1 to 3 levels of recursion over chunk ends
@pytest.mark.parametrize("length", [1, 3, 4, 5, 16, 17, 63, 64, 65, 200])
@pytest.mark.parametrize("state", [(3,), (3, 2)])
def test_parallel_scan_matches_reference_with_gradients(length: int, state: tuple[int, ...]) -> None:
    torch.manual_seed(length)
    shape = (2, length, *state)
    a = torch.rand(shape, dtype=torch.float64).requires_grad_()
    b = torch.randn(shape, dtype=torch.float64).requires_grad_()
    h0 = torch.randn(2, *state, dtype=torch.float64).requires_grad_()
    weights = torch.randn(shape, dtype=torch.float64)
    results = []
    for fn in (linear_scan_reference, lambda *args: linear_scan_parallel(*args, chunk_size=4)):
        states, last = fn(a, b, h0)
        grads = torch.autograd.grad((states * weights).sum() + last.sum(), (a, b, h0))
        results.append((states, last, *grads))
    for fast, reference in zip(*results):
        torch.testing.assert_close(fast, reference, rtol=1e-12, atol=1e-12)


def test_parallel_scan_survives_extreme_decays() -> None:
    """Decays of exactly 0 and 1 and tiny ones: the scan only multiplies decays, so nothing overflows."""
    a = torch.tensor([0.0, 1.0, 1e-30, 1.0, 0.5] * 13, dtype=torch.float32).view(1, -1, 1).expand(1, -1, 2)
    b = torch.ones_like(a)
    fast, _ = linear_scan_parallel(a, b, chunk_size=4)
    reference, _ = linear_scan_reference(a, b)
    assert torch.isfinite(fast).all()
    torch.testing.assert_close(fast, reference)


def test_scan_continues_from_a_state_exactly() -> None:
    """Two calls with the state carried equal one call over the whole sequence (chunked inference)."""
    torch.manual_seed(1)
    a, b = torch.rand(2, 30, 5, dtype=torch.float64), torch.randn(2, 30, 5, dtype=torch.float64)
    for fn in (linear_scan_reference, lambda *args: linear_scan_parallel(*args, chunk_size=4)):
        whole, last = fn(a, b, None)
        first, state = fn(a[:, :13], b[:, :13], None)
        second, last_pieces = fn(a[:, 13:], b[:, 13:], state)
        torch.testing.assert_close(torch.cat([first, second], dim=1), whole, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(last_pieces, last, rtol=1e-12, atol=1e-12)


def test_linear_scan_uses_the_sequential_loop_on_cpu_and_the_parallel_scan_elsewhere(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(scan, "linear_scan_reference", lambda *args: calls.append("sequential") or (None, None))
    monkeypatch.setattr(scan, "linear_scan_parallel", lambda *args: calls.append("parallel") or (None, None))
    linear_scan(torch.zeros(1, 2, 1), torch.zeros(1, 2, 1))
    linear_scan(torch.zeros(1, 2, 1, device="meta"), torch.zeros(1, 2, 1, device="meta"))
    assert calls == ["sequential", "parallel"]


# -- the backend choice -----------------------------------------------------------------------------------------
def test_auto_picks_numba_on_cpu_and_torch_elsewhere() -> None:
    for selective in (True, False):
        assert choose_backend("auto", torch.device("cpu"), selective=selective, initial_state=False) == "numba"
        assert choose_backend("auto", torch.device("meta"), selective=selective, initial_state=True) == "torch"
        assert choose_backend("torch", torch.device("cpu"), selective=selective, initial_state=True) == "torch"


@pytest.mark.parametrize(
    ("backend", "device", "selective", "message"),
    [
        ("numba", "meta", True, "CPU tensors"),
        ("mamba_ssm", "cpu", False, "only has the selective scan"),
        ("mamba_ssm", "cpu", True, "needs CUDA tensors"),
        ("triton", "cpu", True, "TRITON_INTERPRET=1"),
    ],
)
def test_a_forced_backend_that_cannot_run_says_why(backend, device, selective, message, monkeypatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match=message):
        choose_backend(backend, torch.device(device), selective=selective, initial_state=False)


def test_unknown_backends_are_rejected_by_name() -> None:
    with pytest.raises(ValueError, match="scan backend must be one of"):
        choose_backend("cuda", torch.device("cpu"), selective=True, initial_state=False)
    with pytest.raises(ValueError, match="scan_backend"):
        build_model("hawk", d_model=8, n_layer=1, num_heads=2, scan_backend="mamba_ssm")
    with pytest.raises(ValueError, match="scan_backend"):
        build_model("mamba", d_model=8, n_layer=1, scan_backend="cuda")


# -- numba: the float32 functions the kernels are built from ------------------------------------------------------
@numba.njit
def _elementwise(v):  # noqa: ANN001, ANN202
    out = np.empty((3, v.size), v.dtype)
    for i in range(v.size):
        out[0, i] = numba_kernels.fast_exp(v[i])
        out[1, i] = numba_kernels.fast_expm1(v[i])
        out[2, i] = numba_kernels.fast_softplus(v[i])
    return out


def test_float32_exp_expm1_and_softplus_are_accurate() -> None:
    v = np.concatenate([np.linspace(-87, 88, 20001), np.geomspace(1e-12, 2, 2001), -np.geomspace(1e-12, 2, 2001)])
    v = v.astype(np.float32)
    exp, expm1, softplus = _elementwise(v).astype(np.float64)
    v64 = v.astype(np.float64)
    np.testing.assert_allclose(exp, np.exp(v64), rtol=3e-7)  # within 2 ulp
    np.testing.assert_allclose(expm1, np.expm1(v64), rtol=3e-7, atol=0)  # relative even next to 0
    reference = torch.nn.functional.softplus(torch.from_numpy(v64)).numpy()
    np.testing.assert_allclose(softplus, reference, rtol=3e-7, atol=0)


# -- numba: selective scan ---------------------------------------------------------------------------------------
def selective_inputs(length: int, dtype: torch.dtype, seed: int = 0) -> list[torch.Tensor]:
    """x, dt (before softplus), a, b, c, d, h0, z, dt_bias: a small random problem with E = 5, N = 3."""
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)

    batch, channels, states = 2, 5, 3
    return [
        rand(batch, length, channels),
        rand(batch, length, channels),
        -torch.exp(rand(channels, states)),
        rand(batch, length, states),
        rand(batch, length, states),
        rand(channels),
        rand(batch, channels, states),
        rand(batch, length, channels),
        rand(channels),
    ]


def selective_reference(x, dt, a, b, c, d, h0, z, dt_bias, reverse):  # noqa: ANN001, ANN201
    """The definition, with the fused kernel's extras spelled out: softplus of dt + bias, the scan of the
    flipped sequence flipped back."""
    flip = (lambda t: t.flip(1)) if reverse else (lambda t: t)
    dt = dt if dt_bias is None else F.softplus(dt + dt_bias)
    y, last = selective_scan_reference(flip(x), flip(dt), a, flip(b), flip(c), d, h0, None if z is None else flip(z))
    return flip(y), last


def outputs_and_gradients(fn, inputs: list[torch.Tensor], seed: int = 1) -> list[torch.Tensor]:  # noqa: ANN001
    """fn(*inputs) = (y, last state), and the gradients of a random linear function of both."""
    inputs = [t.clone().requires_grad_() for t in inputs]
    y, last = fn(*inputs)
    generator = torch.Generator().manual_seed(seed)
    weights = [torch.randn(t.shape, generator=generator, dtype=torch.float64).to(t.dtype) for t in (y, last)]
    loss = (y * weights[0]).sum() + (last * weights[1]).sum()
    return [y, last, *torch.autograd.grad(loss, inputs)]


def assert_all_close(fast: list[torch.Tensor], reference: list[torch.Tensor], tolerance: float) -> None:
    """Each tensor within ``tolerance`` of the largest absolute value of its reference."""
    for i, (f, r) in enumerate(zip(fast, reference)):
        assert f.dtype == r.dtype and f.shape == r.shape, i
        scale = r.abs().max().clamp_min(1e-30).item()
        torch.testing.assert_close(f, r, rtol=0, atol=tolerance * scale, msg=lambda m, i=i: f"tensor {i}: {m}")


# lengths around the kernel's checkpoint interval (16): below, at, across, several
@pytest.mark.parametrize("length", [1, 15, 16, 17, 50])
@pytest.mark.parametrize(
    ("gated", "bias", "initial", "reverse"),
    [
        (False, False, False, False),
        (True, True, True, False),
        (True, True, True, True),
        (False, True, False, True),
    ],
)
def test_numba_selective_scan_matches_the_definition(length, gated, bias, initial, reverse) -> None:
    x, dt, a, b, c, d, h0, z, dt_bias = selective_inputs(length, torch.float64, seed=length)
    if not bias:
        dt = F.softplus(dt)
    inputs = [x, dt, a, b, c, d] + [h0] * initial + [z] * gated + [dt_bias] * bias

    def call(kernel):  # noqa: ANN001, ANN202
        def run(*args):  # noqa: ANN002, ANN202
            x, dt, a, b, c, d, *rest = args
            h0 = rest.pop(0) if initial else None
            z = rest.pop(0) if gated else None
            return kernel(x, dt, a, b, c, d, h0, z, rest.pop(0) if bias else None, reverse)

        return run

    fast = outputs_and_gradients(call(numba_kernels.selective_scan), inputs)
    assert_all_close(fast, outputs_and_gradients(call(selective_reference), inputs), 1e-12)
    fast32 = outputs_and_gradients(call(numba_kernels.selective_scan), [t.float() for t in inputs])
    assert_all_close(fast32, [t.float() for t in fast], 2e-5)


def test_numba_selective_scan_survives_extreme_decays() -> None:
    """Steps so large that exp(dt A) underflows to 0 (and below float32's normal range), and so small that it
    rounds to 1: finite, and equal to the definition."""
    x, _, a, b, c, d, h0, z, _ = selective_inputs(40, torch.float32)
    dt = torch.tensor([1e4, 1e-9, 30.0, 0.0, 2.0]).repeat(8).view(1, 40, 1).expand(2, 40, 5).contiguous()
    a = a * torch.tensor([1.0, 100.0, 1e-6])  # decay rates from 1e-6 to 100s per step
    fast = outputs_and_gradients(lambda *t: numba_kernels.selective_scan(*t), [x, dt, a, b, c, d, h0, z])
    assert all(torch.isfinite(t).all() for t in fast)
    reference = outputs_and_gradients(selective_scan_reference, [t.double() for t in (x, dt, a, b, c, d, h0, z)])
    assert_all_close(fast, [t.float() for t in reference], 2e-5)


def test_numba_selective_scan_carries_its_state_across_calls() -> None:
    x, dt, a, b, c, d, h0, z, dt_bias = selective_inputs(37, torch.float64)
    for reverse in (False, True):
        whole, last = numba_kernels.selective_scan(x, dt, a, b, c, d, h0, z, dt_bias, reverse)
        first, second = (slice(13, None), slice(None, 13)) if reverse else (slice(None, 13), slice(13, None))
        part = [t[:, first] for t in (x, dt)] + [a] + [t[:, first] for t in (b, c)] + [d, h0, z[:, first], dt_bias]
        y1, state = numba_kernels.selective_scan(*part[:7], part[7], dt_bias, reverse)
        rest = [t[:, second] for t in (x, dt)] + [a] + [t[:, second] for t in (b, c)] + [d, state, z[:, second]]
        y2, last2 = numba_kernels.selective_scan(*rest, dt_bias, reverse)
        pieces = [y2, y1] if reverse else [y1, y2]
        torch.testing.assert_close(torch.cat(pieces, dim=1), whole, rtol=0, atol=1e-12)
        torch.testing.assert_close(last2, last, rtol=0, atol=1e-12)


# -- numba: causal depthwise convolution ------------------------------------------------------------------------
def conv_reference(x, weight, bias, history, silu, reverse):  # noqa: ANN001, ANN201
    """Shifted products of the padded (flipped, if reverse) sequence, as CausalConv1d writes them."""
    flip = (lambda t: t.flip(1)) if reverse else (lambda t: t)
    padded = torch.cat([history, flip(x)], dim=1)
    length, taps = x.shape[1], weight.shape[0]
    y = bias + sum(weight[k] * padded[:, k : k + length] for k in range(taps))
    return flip(F.silu(y) if silu else y), padded[:, padded.shape[1] - taps + 1 :]


@pytest.mark.parametrize("length", [1, 2, 3, 9])
@pytest.mark.parametrize(("silu", "reverse"), [(False, False), (True, False), (True, True)])
def test_numba_causal_conv_matches_the_shifted_products(length, silu, reverse) -> None:
    generator = torch.Generator().manual_seed(length)
    x, history = torch.randn(2, length, 6, generator=generator), torch.randn(2, 3, 6, generator=generator)
    weight, bias = torch.randn(4, 6, generator=generator), torch.randn(6, generator=generator)
    for dtype, tolerance in ((torch.float64, 1e-12), (torch.float32, 1e-6)):
        inputs = [t.to(dtype) for t in (x, weight, bias, history)]
        fast = outputs_and_gradients(lambda *t: numba_kernels.causal_conv1d(*t, silu, reverse), inputs)
        reference = outputs_and_gradients(lambda *t: conv_reference(*t, silu, reverse), inputs)
        assert_all_close(fast, reference, tolerance)


# -- numba: RG-LRU ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("length", [1, 7, 40])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_numba_rg_lru_matches_hawks_reference(length, dtype) -> None:
    """Gates, decay, normaliser and scan fused, against RGLRU's reference path; Lambda from a ~ 1 - 1e-9 (where
    the normaliser's gradient is capped) to a ~ 0 (decay rate 60 per step)."""
    torch.manual_seed(length)
    lru = RGLRU(HawkConfig(d_model=8, num_heads=2)).to(dtype)
    with torch.no_grad():
        lru.a_param.copy_(torch.tensor([-25.0, -12.0, -4.0, 0.0, 1.0, 3.0, 6.0, 7.5]))
    x = torch.randn(2, length, 8, dtype=dtype, requires_grad=True)
    h0 = torch.randn(2, 8, dtype=dtype, requires_grad=True)
    weights = torch.randn(2, length, 8, dtype=dtype), torch.randn(2, 8, dtype=dtype)

    def run(reference: bool) -> list[torch.Tensor]:
        lru.use_reference = reference
        h, last = lru(x, h0)
        loss = (h * weights[0]).sum() + (last * weights[1]).sum()
        return [h, last, *torch.autograd.grad(loss, [x, h0, *lru.parameters()])]

    assert_all_close(run(reference=False), run(reference=True), 1e-12 if dtype == torch.float64 else 3e-5)


def test_numba_rg_lru_carries_its_state_across_calls() -> None:
    torch.manual_seed(0)
    lru = RGLRU(HawkConfig(d_model=8, num_heads=2)).double()
    x, h0 = torch.randn(2, 30, 8, dtype=torch.float64), torch.randn(2, 8, dtype=torch.float64)
    with torch.no_grad():
        whole, last = lru(x, h0)
        first, state = lru(x[:, :11], h0)
        second, last2 = lru(x[:, 11:], state)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole, rtol=0, atol=1e-12)
    torch.testing.assert_close(last2, last, rtol=0, atol=1e-12)


# -- every backend of every model against the reference path ---------------------------------------------------------
MODELS = {
    "mamba": ("mamba", {}),
    "caduceus-ph": ("caduceus", {}),
    "caduceus-ps": ("caduceus", {"rcps": True, "bidirectional_strategy": "ew_multiply"}),
    "hawk": ("hawk", {"num_heads": 2}),
    "hawk-bi": ("hawk", {"num_heads": 2, "bidirectional": True}),
}


def logits_and_gradients(model, ids: torch.Tensor, reference: bool) -> list[torch.Tensor]:  # noqa: ANN001
    model.zero_grad()
    if reference:
        with model.reference_path():
            logits = model(ids)
    else:
        logits = model(ids)
    weights = torch.randn(logits.shape, generator=torch.Generator().manual_seed(3), dtype=logits.dtype)
    (logits * weights).sum().backward()
    return [logits.detach()] + [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("backend", ["torch", "numba"])
@pytest.mark.parametrize("name", MODELS)
def test_model_backends_match_the_reference_path_with_gradients(name, backend) -> None:
    arch, config = MODELS[name]
    torch.manual_seed(0)
    model = build_model(arch, d_model=16, n_layer=2, scan_chunk_size=8, scan_backend=backend, **config).double()
    ids = torch.randint(0, 12, (2, 21), generator=torch.Generator().manual_seed(0))
    assert_all_close(logits_and_gradients(model, ids, False), logits_and_gradients(model, ids, True), 1e-10)
