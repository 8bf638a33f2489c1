"""The shared linear recurrence: the parallel scan against the sequential definition, values and gradients."""

from __future__ import annotations

import pytest
import torch

from longdna.models import scan
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
