"""Mamba: a causal stack of pre-norm selective-SSM (Mamba-1) blocks, and the pieces Caduceus is built from.

Layout, parameter names and initialisation follow state-spaces/mamba (``MixerModel`` of ``Mamba`` mixers with
RMSNorm and no MLP): ``backbone.embedding``, ``backbone.layers.{i}.norm``, ``backbone.layers.{i}.mixer.in_proj``
..., ``backbone.norm_f``; the LM head is tied to the embedding.

The selective scan (with Mamba's output gate ``* SiLU(z)``) has one contract,
:func:`selective_scan_reference`, the sequential loop of the definition (``reference_path()``), and
:func:`selective_scan` runs it with the mixer's ``scan_backend`` (:mod:`longdna.models.kernels`):

* ``"torch"``: :func:`selective_scan_chunked`, which discretises and scans ``scan_chunk_size`` positions at a
  time with :func:`longdna.models.scan.linear_scan`, so the largest intermediate is a (B, chunk, E, N) tensor;
* ``"numba"`` / ``"triton"``: fused CPU / GPU kernels that never form a state-sized tensor per position;
* ``"mamba_ssm"``: state-spaces/mamba's CUDA kernel, where installed (it cannot start from a state).

Every mixer takes and returns its recurrent state (the last ``d_conv - 1`` convolution inputs and the SSM
state), which is what :meth:`Mamba.embed_chunked` uses to run arbitrarily long inputs in bounded scan memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longdna import vocab
from longdna.models.base import DNALanguageModel, no_weight_decay, padded_vocab_size
from longdna.models.kernels import BACKENDS, choose_backend, kernels
from longdna.models.layers import RMSNorm
from longdna.models.scan import linear_scan


@dataclass
class MambaConfig:
    d_model: int = 128
    n_layer: int = 4
    d_state: int = 16  # N: state size per channel
    d_conv: int = 4  # width of the causal depthwise convolution
    expand: int = 2  # E = expand * d_model channels inside the mixer
    dt_rank: int | str = "auto"  # "auto" -> ceil(d_model / 16)
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    conv_bias: bool = True
    bias: bool = False  # in_proj / out_proj biases
    norm_epsilon: float = 1e-5
    residual_in_fp32: bool = True
    pad_vocab_size_multiple: int = 8
    initializer_range: float = 0.02
    scan_chunk_size: int = 128  # positions discretised and scanned at once by the "torch" scan backend
    scan_backend: str = "auto"  # see longdna.models.kernels: "auto", "torch", "numba", "triton", "mamba_ssm"
    causal: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        if self.dt_rank == "auto":
            self.dt_rank = math.ceil(self.d_model / 16)
        if not isinstance(self.dt_rank, int) or self.dt_rank < 1:
            raise ValueError(f"mamba: dt_rank must be 'auto' or a positive int, not {self.dt_rank!r}")
        for name in ("d_model", "n_layer", "d_state", "d_conv", "expand", "scan_chunk_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"mamba: {name} must be >= 1, not {getattr(self, name)}")
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError(f"mamba: need 0 < dt_min <= dt_max, got {self.dt_min}, {self.dt_max}")
        if self.scan_backend not in BACKENDS:
            raise ValueError(f"mamba: scan_backend must be one of {BACKENDS}, not {self.scan_backend!r}")

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model


# -- selective scan ------------------------------------------------------------------------------------------
def selective_scan_reference(
    x: Tensor,
    dt: Tensor,
    a: Tensor,
    b: Tensor,
    c: Tensor,
    d: Tensor,
    h0: Tensor | None = None,
    z: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The selective SSM by its definition, one position at a time.

    h_t = exp(dt_t A) * h_{t-1} + dt_t B_t x_t  (zero-order hold for A, Euler step for B)
    y_t = <h_t, C_t> + D x_t, times SiLU(z_t) when z is given

    x, dt, z: (B, L, E); a: (E, N), negative; b, c: (B, L, N); d: (E,); h0: (B, E, N) or None for zeros.
    Returns y (B, L, E) and the last state h_{L-1} (B, E, N).
    """
    h = x.new_zeros(x.shape[0], x.shape[2], a.shape[1]) if h0 is None else h0
    ys = []
    for t in range(x.shape[1]):
        step = dt[:, t, :, None]  # (B, E, 1)
        h = torch.exp(step * a) * h + step * b[:, t, None, :] * x[:, t, :, None]
        ys.append(torch.einsum("ben,bn->be", h, c[:, t]))
    y = torch.stack(ys, dim=1) + x * d
    return (y if z is None else y * F.silu(z)), h


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
    chunk_size: int = 128,
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """:func:`selective_scan_reference` by ``backend`` (see :mod:`longdna.models.kernels`) with the step
    softplus(dt + dt_bias) when ``dt_bias`` (E,) is given (fused where the kernel can: mamba_ssm's delta_bias);
    ``chunk_size`` is the "torch" backend's."""
    backend = choose_backend(backend, x.device, selective=True, initial_state=h0 is not None)
    if backend == "numba":
        return kernels("numba").selective_scan(x, dt, a, b, c, d, h0, z, dt_bias)
    if backend == "mamba_ssm":
        return _mamba_ssm_selective_scan(x, dt, a, b, c, d, z, dt_bias)
    if dt_bias is not None:
        dt = F.softplus(dt + dt_bias)
    if backend == "triton":
        return kernels("triton").selective_scan(x, dt, a, b, c, d, h0, z)
    return selective_scan_chunked(x, dt, a, b, c, d, h0, z, chunk_size)


def selective_scan_chunked(
    x: Tensor,
    dt: Tensor,
    a: Tensor,
    b: Tensor,
    c: Tensor,
    d: Tensor,
    h0: Tensor | None = None,
    z: Tensor | None = None,
    chunk_size: int = 128,
) -> tuple[Tensor, Tensor]:
    """:func:`selective_scan_reference` in chunks of ``chunk_size`` positions, each scanned by
    :func:`longdna.models.scan.linear_scan`.

    Discretising per chunk keeps the (B, chunk, E, N) decay/input tensors the only state-sized intermediates,
    instead of (B, L, E, N) for the whole sequence.
    """
    h = x.new_zeros(x.shape[0], x.shape[2], a.shape[1]) if h0 is None else h0
    ys = []
    for start in range(0, x.shape[1], chunk_size):
        piece = slice(start, start + chunk_size)
        step = dt[:, piece, :, None]  # (B, c, E, 1)
        decay = torch.exp(step * a)  # (B, c, E, N)
        drive = step * b[:, piece, None, :] * x[:, piece, :, None]  # (B, c, E, N)
        states, h = linear_scan(decay, drive, h, chunk_size)
        ys.append(torch.einsum("bten,btn->bte", states, c[:, piece]))
    y = torch.cat(ys, dim=1) + x * d
    return (y if z is None else y * F.silu(z)), h


def _mamba_ssm_selective_scan(
    x: Tensor, dt: Tensor, a: Tensor, b: Tensor, c: Tensor, d: Tensor, z: Tensor | None, dt_bias: Tensor | None
) -> tuple[Tensor, Tensor]:
    """mamba_ssm's kernel on our layout: it wants channels before time, (B, E, L) and (B, N, L)."""
    y, h = kernels("mamba_ssm").selective_scan_fn(
        *(t.transpose(1, 2).contiguous() for t in (x, dt)),
        a,
        *(t.transpose(1, 2).contiguous() for t in (b, c)),
        d,
        z=None if z is None else z.transpose(1, 2).contiguous(),
        delta_bias=dt_bias,
        delta_softplus=dt_bias is not None,
        return_last_state=True,
    )
    return y.transpose(1, 2), h


# -- modules --------------------------------------------------------------------------------------------------
class MambaState(NamedTuple):
    """What a mixer carries from one piece of a sequence to the next."""

    conv: Tensor  # (B, d_conv - 1, E): the last inputs of the causal convolution
    ssm: Tensor  # (B, E, N): the SSM state after the last position


class MambaMixer(nn.Module):
    """Mamba-1 mixer: in_proj -> (x, z); x -> causal conv -> SiLU -> selective SSM; gate by SiLU(z); out_proj.

    B, C and the step dt are computed from the input at every position (x_proj, dt_proj): the "selection".
    """

    def __init__(self, config: MambaConfig) -> None:
        super().__init__()
        d, e, n, r = config.d_model, config.d_inner, config.d_state, config.dt_rank
        self.d_state, self.dt_rank = n, r
        self.scan_chunk_size, self.scan_backend = config.scan_chunk_size, config.scan_backend
        self.in_proj = nn.Linear(d, 2 * e, bias=config.bias)
        # no padding: the left context comes from the carried state (zeros at the sequence start)
        self.conv1d = nn.Conv1d(e, e, config.d_conv, groups=e, bias=config.conv_bias)
        self.x_proj = nn.Linear(e, r + 2 * n, bias=False)
        self.dt_proj = nn.Linear(r, e)
        self.A_log = nn.Parameter(torch.empty(e, n))
        self.D = nn.Parameter(torch.empty(e))
        self.out_proj = nn.Linear(e, d, bias=config.bias)
        no_weight_decay(self.A_log, self.D)
        self.use_reference = False
        self._reset_parameters(config)

    @torch.no_grad()
    def _reset_parameters(self, config: MambaConfig) -> None:
        """mamba_ssm's initialisation (other weights keep PyTorch's defaults, as there)."""
        for linear in (self.in_proj, self.out_proj):
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)
        # every block adds out_proj's output to the residual stream: 1/sqrt(n_layer) keeps its variance flat
        nn.init.kaiming_uniform_(self.out_proj.weight, a=math.sqrt(5))
        self.out_proj.weight /= math.sqrt(config.n_layer)
        bound = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -bound, bound)
        # softplus(bias) = dt log-uniform in [dt_min, dt_max]: channels start with time scales from fast to slow
        log_dt = torch.empty_like(self.D).uniform_(math.log(config.dt_min), math.log(config.dt_max))
        dt = log_dt.exp().clamp_min(config.dt_init_floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        # S4D-real: A = -(1, 2, ..., N) in every channel
        self.A_log.copy_(torch.arange(1, self.d_state + 1, dtype=self.A_log.dtype).log().expand_as(self.A_log))
        nn.init.ones_(self.D)

    def forward(self, hidden: Tensor, chunk_size: int | None = None) -> Tensor:
        """(B, L, D) -> (B, L, D). With ``chunk_size``, pieces of that many positions are processed in turn, the
        state carried from each to the next: same result, intermediates sized by the piece."""
        if chunk_size is None:
            return self.step(hidden)[0]
        state, outputs = None, []
        for piece in hidden.split(chunk_size, dim=1):
            out, state = self.step(piece, state)
            outputs.append(out)
        return torch.cat(outputs, dim=1)

    def step(self, hidden: Tensor, state: MambaState | None = None) -> tuple[Tensor, MambaState]:
        """Mix positions that directly follow ``state`` (None: the start of the sequence).

        hidden: (B, l, D) -> output (B, l, D) and the state after the last of these positions.
        """
        y, state = self.inner(self.in_proj(hidden), state)
        return self.out_proj(y), state

    def inner(self, xz: Tensor, state: MambaState | None = None, reverse: bool = False) -> tuple[Tensor, MambaState]:
        """The mixer between its projections: in_proj's output (B, l, 2E) -> out_proj's input (B, l, E), and the
        state after the last position. ``reverse``: mix the flipped positions and flip the result back (the
        numba kernels run right to left instead of copying)."""
        backend = (
            "reference"
            if self.use_reference
            else choose_backend(self.scan_backend, xz.device, selective=True, initial_state=state is not None)
        )
        if reverse and backend != "numba":
            y, state = self._inner(xz.flip(1), state, backend, reverse=False)
            return y.flip(1), state
        return self._inner(xz, state, backend, reverse)

    def _inner(self, xz: Tensor, state: MambaState | None, backend: str, reverse: bool) -> tuple[Tensor, MambaState]:
        x, z = xz.chunk(2, dim=-1)  # (B, l, E) each
        history = None if state is None else state.conv
        if backend == "numba" and x.dtype in (torch.float32, torch.float64):  # convolution and SiLU fused
            x, conv_state = kernels("numba").causal_conv1d(
                x, self.conv1d.weight[:, 0].t(), self.conv1d.bias, history, silu=True, reverse=reverse
            )
        else:
            x, conv_state = self._causal_conv(x, history)
            x = F.silu(x)
        dt, b, c = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(dt, self.dt_proj.weight)
        # The recurrence runs in at least fp32 whatever the autocast state (precision-sensitive over long L);
        # dt's bias is added there too, like the fused kernel's delta_bias: in bf16, dt near dt_min would be
        # rounded by a few percent. The gate SiLU(z) is applied in the scan, where the kernels fuse it.
        dtype = torch.promote_types(x.dtype, torch.float32)
        with torch.autocast(device_type=x.device.type, enabled=False):
            a = -torch.exp(self.A_log.to(dtype))
            h0 = None if state is None else state.ssm
            inputs = (x.to(dtype), dt.to(dtype), a, b.to(dtype), c.to(dtype), self.D.to(dtype), h0, z.to(dtype))
            dt_bias = self.dt_proj.bias.to(dtype)
            if backend == "reference":
                y, ssm_state = selective_scan_reference(inputs[0], F.softplus(inputs[1] + dt_bias), *inputs[2:])
            elif backend == "numba":
                y, ssm_state = kernels("numba").selective_scan(*inputs, dt_bias, reverse)
            else:
                y, ssm_state = selective_scan(
                    *inputs, dt_bias=dt_bias, chunk_size=self.scan_chunk_size, backend=backend
                )
        return y.to(z.dtype), MambaState(conv_state, ssm_state)

    def _causal_conv(self, x: Tensor, history: Tensor | None) -> tuple[Tensor, Tensor]:
        """Depthwise causal convolution of x (B, l, E) continuing ``history`` (B, d_conv - 1, E); returns the
        output (B, l, E) and the new history."""
        if history is None:
            history = x.new_zeros(x.shape[0], self.conv1d.kernel_size[0] - 1, x.shape[2])
        padded = torch.cat([history.to(x.dtype), x], dim=1)  # (B, d_conv - 1 + l, E)
        out = self.conv1d(padded.transpose(1, 2)).transpose(1, 2)
        return out, padded[:, x.shape[1] :]


class ResidualBlock(nn.Module):
    """Mamba's pre-norm block without MLP: ``residual += hidden; hidden = mixer(norm(residual))``.

    Returns (mixer output, residual) and leaves the last addition to the caller, as mamba_ssm does, so that
    the residual stream can stay in fp32 (``residual_in_fp32``) while the mixers run in lower precision.
    """

    def __init__(self, norm: nn.Module, mixer: nn.Module, residual_in_fp32: bool) -> None:
        super().__init__()
        self.norm = norm
        self.mixer = mixer
        self.residual_in_fp32 = residual_in_fp32

    def forward(self, hidden: Tensor, residual: Tensor | None, chunk_size: int | None = None) -> tuple[Tensor, Tensor]:
        residual = hidden if residual is None else residual + hidden
        if self.residual_in_fp32:
            residual = residual.to(torch.promote_types(residual.dtype, torch.float32))
        return self.mixer(self.norm(residual), chunk_size), residual


class MixerModel(nn.Module):
    """Token embedding, residual blocks and final norm (mamba_ssm's ``MixerModel`` layout)."""

    def __init__(self, num_embeddings: int, d_model: int, layers: list[ResidualBlock], norm_f: nn.Module) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_embeddings, d_model)
        self.layers = nn.ModuleList(layers)
        self.norm_f = norm_f


class Mamba(DNALanguageModel):
    """Mamba language model (causal, single-nucleotide)."""

    arch = "mamba"
    config_class = MambaConfig

    def __init__(self, config: MambaConfig) -> None:
        super().__init__(config)
        self.backbone = MixerModel(
            padded_vocab_size(vocab.VOCAB_SIZE, config.pad_vocab_size_multiple),
            config.d_model,
            [ResidualBlock(self._norm(), self._mixer(), config.residual_in_fp32) for _ in range(config.n_layer)],
            self._norm(),
        )
        nn.init.normal_(self.embedding.weight, std=config.initializer_range)

    def _mixer(self) -> nn.Module:
        return MambaMixer(self.config)

    def _norm(self) -> nn.Module:
        return RMSNorm(self.config.d_model, self.config.norm_epsilon)

    @property
    def embedding(self) -> nn.Embedding:
        return self.backbone.embedding

    def embed_tokens(self, input_ids: Tensor) -> Tensor:
        """Token ids (B, L) -> input of the first block (B, L, hidden_size)."""
        return self.embedding(input_ids)

    def embed(self, input_ids: Tensor) -> Tensor:
        return self._embed(input_ids, chunk_size=None)

    def embed_chunked(self, input_ids: Tensor, chunk_size: int) -> Tensor:
        """:meth:`embed` computed layer by layer, each mixer running over ``chunk_size`` positions at a time and
        carrying its state between pieces (a reverse direction runs over the reversed sequence, i.e. right to
        left). Equal to :meth:`embed` up to rounding; under ``torch.no_grad()`` memory is the (B, L, D) hidden
        states plus per-piece intermediates, so the scan never holds more than ``chunk_size`` positions."""
        if chunk_size < 1:
            raise ValueError(f"{self.arch}: chunk_size must be >= 1, not {chunk_size}")
        return self._embed(input_ids, chunk_size)

    def _embed(self, input_ids: Tensor, chunk_size: int | None) -> Tensor:
        hidden, residual = self.embed_tokens(input_ids), None
        for block in self.backbone.layers:
            hidden, residual = self.run_block(block, hidden, residual, chunk_size)
        return self.backbone.norm_f(hidden + residual)
