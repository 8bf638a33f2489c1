"""The Triton kernels in Triton's CPU interpreter against the sequential definitions: values and gradients over
lengths that fill no chunk, one chunk, several and a partial one, with the state carried across calls, extreme
decays, float32 and bfloat16, and the models running on them. Chunks and blocks are shrunk so that tiny inputs
cross every boundary (the GPU sizes only change how the work is tiled)."""

from __future__ import annotations

import os

os.environ["TRITON_INTERPRET"] = "1"  # read when the kernels are decorated, so before they are imported

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

pytest.importorskip("triton")

from longdna.models import build_model  # noqa: E402
from longdna.models.kernels import choose_backend, triton_kernels  # noqa: E402
from longdna.models.mamba import selective_scan_reference  # noqa: E402
from longdna.models.scan import linear_scan_reference  # noqa: E402

pytestmark = pytest.mark.triton


@pytest.fixture(autouse=True)
def small_tiles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 4 positions and blocks of 4 channels: a length of 13 spans four chunks, 5 channels two blocks."""
    for name in ("LINEAR_T", "LINEAR_BLOCK", "SELECTIVE_T", "SELECTIVE_BLOCK", "CARRY_BLOCK"):
        monkeypatch.setattr(triton_kernels, name, 4)


def outputs_and_gradients(fn, inputs: list[torch.Tensor]) -> list[torch.Tensor]:  # noqa: ANN001
    """fn(*inputs) = (y, last state), and the gradients of a fixed random linear function of both."""
    inputs = [t.detach().clone().requires_grad_() for t in inputs]
    y, last = fn(*inputs)
    generator = torch.Generator().manual_seed(1)
    loss = sum((t.float() * torch.randn(t.shape, generator=generator)).sum() for t in (y, last))
    return [y, last, *torch.autograd.grad(loss, inputs)]


def assert_all_close(fast: list[torch.Tensor], reference: list[torch.Tensor], tolerance: float) -> None:
    """Each tensor within ``tolerance`` of the largest absolute value of its reference."""
    for i, (f, r) in enumerate(zip(fast, reference)):
        assert f.shape == r.shape, i
        scale = r.abs().max().clamp_min(1e-30).item()
        torch.testing.assert_close(
            f.float(), r.float(), rtol=0, atol=tolerance * scale, msg=lambda m, i=i: f"tensor {i}: {m}"
        )


def test_the_interpreter_counts_as_a_device_for_triton() -> None:
    assert choose_backend("triton", torch.device("cpu"), selective=True, initial_state=True) == "triton"


# -- linear scan ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("length", [1, 4, 13])
def test_linear_scan_matches_the_definition(length: int) -> None:
    generator = torch.Generator().manual_seed(length)
    a, b = torch.rand(2, length, 5, generator=generator), torch.randn(2, length, 5, generator=generator)
    h0 = torch.randn(2, 5, generator=generator)
    for inputs in ([a, b, h0], [a, b]):
        fast = outputs_and_gradients(triton_kernels.linear_scan, inputs)
        assert_all_close(fast, outputs_and_gradients(linear_scan_reference, inputs), 1e-6)


def test_linear_scan_survives_extreme_decays_and_carries_its_state() -> None:
    a = torch.tensor([0.0, 1.0, 1e-30, 1.0, 0.5] * 3).view(1, 15, 1).expand(2, 15, 3).contiguous()
    b = torch.randn(2, 15, 3, generator=torch.Generator().manual_seed(0))
    fast = outputs_and_gradients(triton_kernels.linear_scan, [a, b])
    assert all(torch.isfinite(t).all() for t in fast)
    assert_all_close(fast, outputs_and_gradients(linear_scan_reference, [a, b]), 1e-6)
    whole, last = triton_kernels.linear_scan(a, b)
    first, state = triton_kernels.linear_scan(a[:, :6], b[:, :6])
    second, last2 = triton_kernels.linear_scan(a[:, 6:], b[:, 6:], state)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole)
    torch.testing.assert_close(last2, last)


# -- selective scan ---------------------------------------------------------------------------------------------
def selective_inputs(length: int, seed: int = 0) -> list[torch.Tensor]:
    """x, dt, a, b, c, d, h0, z with E = 5 channels, N = 3 states (padded to 4 in the kernel)."""
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    x, dt, a = rand(2, length, 5), F.softplus(rand(2, length, 5)), -torch.exp(rand(5, 3))
    return [x, dt, a, rand(2, length, 3), rand(2, length, 3), rand(5), rand(2, 5, 3), rand(2, length, 5)]


@pytest.mark.parametrize("length", [1, 4, 13])
@pytest.mark.parametrize("gated", [False, True])
def test_selective_scan_matches_the_definition(length: int, gated: bool) -> None:
    x, dt, a, b, c, d, h0, z = selective_inputs(length, seed=length)
    inputs = [x, dt, a, b, c, d, h0] + [z] * gated
    fast = outputs_and_gradients(triton_kernels.selective_scan, inputs)
    assert_all_close(fast, outputs_and_gradients(selective_scan_reference, inputs), 2e-6)


def test_selective_scan_survives_extreme_decays_and_carries_its_state() -> None:
    x, _, a, b, c, d, h0, z = selective_inputs(10)
    dt = torch.tensor([1e4, 1e-9, 30.0, 0.0, 2.0] * 2).view(1, 10, 1).expand(2, 10, 5).contiguous()
    a = a * torch.tensor([1.0, 100.0, 1e-6])
    inputs = [x, dt, a, b, c, d, h0, z]
    fast = outputs_and_gradients(triton_kernels.selective_scan, inputs)
    assert all(torch.isfinite(t).all() for t in fast)
    reference = outputs_and_gradients(selective_scan_reference, [t.double() for t in inputs])
    assert_all_close(fast, reference, 2e-6)
    whole, last = triton_kernels.selective_scan(*inputs)
    first, state = triton_kernels.selective_scan(x[:, :6], dt[:, :6], a, b[:, :6], c[:, :6], d, h0, z[:, :6])
    second, last2 = triton_kernels.selective_scan(x[:, 6:], dt[:, 6:], a, b[:, 6:], c[:, 6:], d, state, z[:, 6:])
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole)
    torch.testing.assert_close(last2, last)


def test_bfloat16_inputs_give_bfloat16_outputs_within_its_precision() -> None:
    """The kernels compute in float32 whatever the input dtype; the error is bfloat16's rounding."""
    inputs = selective_inputs(9)
    fast = outputs_and_gradients(triton_kernels.selective_scan, [t.bfloat16() for t in inputs])
    assert all(t.dtype == torch.bfloat16 for t in fast)
    reference = outputs_and_gradients(selective_scan_reference, [t.bfloat16().double() for t in inputs])
    assert_all_close(fast, reference, 2e-2)
    a, b = torch.rand(2, 9, 5), torch.randn(2, 9, 5)
    fast = outputs_and_gradients(triton_kernels.linear_scan, [a.bfloat16(), b.bfloat16()])
    assert_all_close(
        fast, outputs_and_gradients(linear_scan_reference, [a.bfloat16().double(), b.bfloat16().double()]), 2e-2
    )


# -- the models on the Triton backend -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("arch", "config"),
    [
        ("caduceus", {}),  # both scan directions, the gate, and the state carried by chunked inference
        ("hawk", {"num_heads": 2, "bidirectional": True}),
    ],
)
def test_models_on_triton_match_their_reference_path(arch: str, config: dict) -> None:
    torch.manual_seed(0)
    model = build_model(arch, d_model=8, n_layer=1, scan_backend="triton", **config)
    ids = torch.randint(0, 12, (1, 9), generator=torch.Generator().manual_seed(0))
    results = []
    for reference in (False, True):
        model.zero_grad()
        with model.reference_path() if reference else torch.enable_grad():
            logits = model(ids)
        logits.square().mean().backward()
        results.append([logits.detach()] + [p.grad.clone() for p in model.parameters()])
    assert_all_close(*results, 2e-5)
    with torch.no_grad():
        torch.testing.assert_close(model.embed_chunked(ids, 5), model.embed(ids), rtol=0, atol=1e-5)
