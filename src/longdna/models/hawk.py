"""Hawk: the recurrent-only member of the Griffin family (De et al. 2024), optionally bidirectional.

Each residual block is ``x + RecurrentBlock(RMSNorm(x))`` followed by ``x + GatedMLP(RMSNorm(x))``. The
recurrent (temporal-mixing) block has two branches from its normalised input ``x``::

    y = GeLU(W_y x)                            gate branch
    u = RG-LRU(Conv1D(W_x x))                  recurrent branch (causal depthwise conv, width 4)
    out = W_o (y * u)

and the RG-LRU is, per channel and with block-diagonal gate matrices (one block per head)::

    i_t = sigmoid(W_i x_t + b_i)               input gate
    r_t = sigmoid(W_a x_t + b_a)               recurrence gate
    log a_t = -c * softplus(Lambda) * r_t      c = 8
    h_t = a_t * h_{t-1} + sqrt(1 - a_t^2) * (i_t * x_t)

``a = exp(-softplus(Lambda))`` is the base decay (``a_t = a ** (c r_t)``); Lambda is initialised so that a is
uniform in area on the ring [0.9, 0.999] (a**2 uniform), as in the reference.

Bidirectional Hawk (``bidirectional=True``, for masked-LM pretraining as in the long-range genomics study)
runs a second temporal conv + RG-LRU over the length-flipped sequence, so its conv is anti-causal and its
state flows right to left. Each direction has its own conv and RG-LRU (gates and Lambda); the projections
W_x, W_y, W_o, the norms and the MLP are shared. The two recurrent outputs are combined before the gate
branch: ``add`` (default) sums them, so a bidirectional block costs only the second conv and RG-LRU and keeps
one output projection -- the same choice as Caduceus' BiMamba, which keeps the two SSM models of the study
comparable; ``concat`` projects [u_fwd, u_rev] (2W) back to W with a learned matrix instead.

Chunked exact inference (:meth:`Hawk.embed_chunked`, the study's way to reach 1M tokens): the sequence is
processed layer by layer, each layer in chunks. The forward direction scans the chunks left to right and
the reverse direction right to left, each carrying its state between chunks (the last
``conv1d_temporal_width - 1`` conv inputs and the RG-LRU state), so the result equals :meth:`Hawk.embed` up to
rounding. Memory is O(L * d_model): one layer's input and output activations, plus the forward direction's
outputs (L x lru_width) until the reverse pass consumes them; projections, gates, the MLP and the scan's
intermediates only ever exist for one chunk. For a causal model the reverse pass is absent and this is plain
state passing.

Differences from the reference (google-deepmind/recurrentgemma), none of which change the architecture:

* no document resets: every sequence starts with a zero state and t = 0 is normalised like any other step
  (the reference resets the state and skips the sqrt(1 - a^2) factor where ``segment_pos == 0``);
* ``1 - a_t^2`` is computed as ``-expm1(2 log a_t)``, exact where a_t is close to 1 (long memory);
* the gates, decays and scan run in at least float32 whatever the autocast state (the reference also
  accumulates the scan in float32);
* RMSNorm has a ``weight`` initialised to one instead of a zero-initialised ``scale`` used as ``1 + scale``
  (the same function);
* the embedding is multiplied by sqrt(d_model) as in Griffin (so the N(0, 1/d_model) table feeds unit-variance
  activations into the first block while the tied LM head sees the unscaled table), without the reference's
  rounding of the factor to bfloat16; the LM head has no logit soft-capping.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longdna import vocab
from longdna.models.base import DNALanguageModel, no_weight_decay, padded_vocab_size
from longdna.models.kernels import BACKENDS, choose_backend, kernels
from longdna.models.layers import RMSNorm
from longdna.models.scan import linear_scan, linear_scan_reference

#: bound on d sqrt(x) / dx inside the RG-LRU (the reference's value): without it 1 - a_t^2 -> 0 makes the
#: gradient of the normaliser blow up in bfloat16
MAX_SQRT_GRADIENT = 1000.0

COMBINES = ("add", "concat")


@dataclass
class HawkConfig:
    d_model: int = 256
    n_layer: int = 4
    lru_width: int | None = None  # RG-LRU width; None -> d_model
    num_heads: int = 4  # diagonal blocks of the RG-LRU gate matrices
    conv1d_temporal_width: int = 4
    mlp_expansion: int = 3  # gated-MLP width = mlp_expansion * d_model
    c: float = 8.0  # exponent scale of the recurrence gate
    a_min: float = 0.9  # base decay a = exp(-softplus(Lambda)) is initialised in [a_min, a_max]
    a_max: float = 0.999
    norm_epsilon: float = 1e-6
    bidirectional: bool = False
    bidirectional_combine: str = "add"  # "add" or "concat" (see the module docstring)
    initializer_range: float | None = None  # embedding std; None -> 1 / sqrt(d_model) as in Griffin
    scan_chunk_size: int = 128  # steps per parallel chunk of the "torch" scan backend on a GPU
    scan_backend: str = "auto"  # see longdna.models.kernels: "auto", "torch", "numba", "triton"
    pad_vocab_size_multiple: int = 8
    causal: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        if self.lru_width is None:
            self.lru_width = self.d_model
        if self.lru_width % self.num_heads:
            raise ValueError(f"hawk: lru_width {self.lru_width} is not divisible by num_heads {self.num_heads}")
        if self.bidirectional_combine not in COMBINES:
            raise ValueError(
                f"hawk: bidirectional_combine must be one of {COMBINES}, not {self.bidirectional_combine!r}"
            )
        if not 0.0 < self.a_min < self.a_max < 1.0:
            raise ValueError(f"hawk: need 0 < a_min < a_max < 1, got a_min={self.a_min}, a_max={self.a_max}")
        if self.conv1d_temporal_width < 1:
            raise ValueError(f"hawk: conv1d_temporal_width must be >= 1, not {self.conv1d_temporal_width}")
        if self.scan_backend not in BACKENDS or self.scan_backend == "mamba_ssm":
            raise ValueError(f"hawk: scan_backend must be one of {BACKENDS[:-1]}, not {self.scan_backend!r}")
        self.causal = not self.bidirectional


# -- layers -----------------------------------------------------------------------------------------------
def init_linear(linear: nn.Linear, variance_scale: float = 1.0) -> nn.Linear:
    """Griffin's init: weight ~ N(0, variance_scale / fan_in), zero bias."""
    nn.init.normal_(linear.weight, std=math.sqrt(variance_scale / linear.in_features))
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)
    return linear


def residual_scale(config: HawkConfig) -> float:
    """Variance scale of the projections that write into the residual stream: with 2 / n_layer the
    2 * n_layer residual branches together add a depth-independent variance."""
    return 2.0 / max(config.n_layer, 1)


class BlockDiagonalLinear(nn.Module):
    """Linear map with ``num_blocks`` independent (width/num_blocks)^2 blocks on the diagonal, plus bias."""

    def __init__(self, width: int, num_blocks: int) -> None:
        super().__init__()
        self.num_blocks = num_blocks
        block_width = width // num_blocks
        self.weight = nn.Parameter(torch.empty(num_blocks, block_width, block_width))
        self.bias = nn.Parameter(torch.zeros(num_blocks, block_width))
        nn.init.normal_(self.weight, std=math.sqrt(1.0 / block_width))

    def forward(self, x: Tensor) -> Tensor:
        """(..., width) -> (..., width)."""
        blocks = x.unflatten(-1, (self.num_blocks, -1))  # (..., H, width / H)
        y = torch.einsum("...hi,hij->...hj", blocks, self.weight.to(x.dtype)) + self.bias.to(x.dtype)
        return y.flatten(-2)


class _SqrtBoundedGradient(torch.autograd.Function):
    """sqrt(x) whose derivative 1 / (2 sqrt(x)) is capped at MAX_SQRT_GRADIENT (finite at x = 0)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return x.sqrt()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        # 1 / (2 sqrt(x)) <= M  <=>  4x >= 1 / M^2
        return grad * torch.rsqrt((4 * x).clamp_min(1.0 / MAX_SQRT_GRADIENT**2))


def sqrt_bounded_gradient(x: Tensor) -> Tensor:
    return _SqrtBoundedGradient.apply(x)


class CausalConv1d(nn.Module):
    """Depthwise causal convolution over time that carries the last ``kernel_size - 1`` inputs as state.

    Written as a sum of ``kernel_size`` shifted products: for a handful of taps this is as fast as a
    convolution kernel on GPU and avoids the CPU depthwise-conv path, which is slow for short inputs. With the
    numba backend (the CPU default) a fused kernel does the same in one pass.
    """

    def __init__(self, channels: int, kernel_size: int, backend: str = "auto") -> None:
        super().__init__()
        self.context = kernel_size - 1
        self.backend = backend
        self.use_reference = False
        self.weight = nn.Parameter(torch.empty(kernel_size, channels))  # tap k multiplies x[t - context + k]
        self.bias = nn.Parameter(torch.zeros(channels))
        # the reference's small init (variance 0.01 / kernel_size) starts the conv close to a zero map
        nn.init.normal_(self.weight, std=math.sqrt(0.01 / kernel_size))

    def forward(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x: (B, T, C); state: (B, kernel_size - 1, C), the inputs before x (None: zeros, a sequence start).

        Returns y (B, T, C) and the state for the next chunk.
        """
        fused = (
            not self.use_reference
            and x.dtype in (torch.float32, torch.float64)
            and choose_backend(self.backend, x.device, selective=False, initial_state=state is not None) == "numba"
        )
        if fused:
            return kernels("numba").causal_conv1d(x, self.weight, self.bias, state)
        if state is None:
            state = x.new_zeros(x.shape[0], self.context, x.shape[2])
        padded = torch.cat([state.to(x.dtype), x], dim=1)  # (B, context + T, C)
        length = x.shape[1]
        y = self.bias.to(x.dtype) + sum(w * padded[:, k : k + length] for k, w in enumerate(self.weight.to(x.dtype)))
        return y, padded[:, padded.shape[1] - self.context :]


class RGLRU(nn.Module):
    """Real-Gated Linear Recurrent Unit over (B, T, W) with an optional initial state (B, W)."""

    def __init__(self, config: HawkConfig) -> None:
        super().__init__()
        width = config.lru_width
        self.c = config.c
        self.scan_chunk_size, self.scan_backend = config.scan_chunk_size, config.scan_backend
        self.input_gate = BlockDiagonalLinear(width, config.num_heads)
        self.a_gate = BlockDiagonalLinear(width, config.num_heads)
        self.a_param = nn.Parameter(torch.empty(width))  # Lambda
        with torch.no_grad():
            # a^2 uniform on [a_min^2, a_max^2] (uniform area on the ring), then Lambda = softplus^-1(-log a)
            a = torch.empty(width).uniform_(config.a_min**2, config.a_max**2).sqrt()
            self.a_param.copy_(torch.log(torch.expm1(-torch.log(a))))
        no_weight_decay(self.a_param)  # decaying Lambda towards 0 would pull every channel's memory to a = 0.5
        self.use_reference = False

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x: (B, T, W) -> (h (B, T, W) in x's dtype, last state (B, W) in float32 or wider)."""
        dtype = torch.promote_types(x.dtype, torch.float32)
        with torch.autocast(device_type=x.device.type, enabled=False):
            xf = x.to(dtype)
            rate = F.softplus(self.a_param.to(dtype))  # log a_t = -c * gate_a * rate
            backend = (
                "reference"
                if self.use_reference
                else choose_backend(self.scan_backend, x.device, selective=False, initial_state=h0 is not None)
            )
            if backend == "numba":  # gates, decay and scan in one kernel
                h, last = kernels("numba").rg_lru(
                    xf, self.input_gate(xf), self.a_gate(xf), -self.c * rate, h0, MAX_SQRT_GRADIENT
                )
                return h.to(x.dtype), last
            gate_x = torch.sigmoid(self.input_gate(xf))
            gate_a = torch.sigmoid(self.a_gate(xf))
            log_a = -self.c * gate_a * rate
            normaliser = sqrt_bounded_gradient(-torch.expm1(2 * log_a))  # sqrt(1 - a_t^2)
            b = normaliser * gate_x * xf
            a = log_a.exp()
            if backend == "reference":
                h, last = linear_scan_reference(a, b, h0)
            elif backend == "torch":
                h, last = linear_scan(a, b, h0, chunk_size=self.scan_chunk_size)
            else:
                h, last = kernels(backend).linear_scan(a, b, h0)
        return h.to(x.dtype), last


class LRUState(NamedTuple):
    conv: Tensor  # (B, conv1d_temporal_width - 1, W)
    lru: Tensor  # (B, W)


class Recurrence(nn.Module):
    """Temporal conv followed by the RG-LRU, along one direction of time."""

    def __init__(self, config: HawkConfig) -> None:
        super().__init__()
        self.conv_1d = CausalConv1d(config.lru_width, config.conv1d_temporal_width, config.scan_backend)
        self.rg_lru = RGLRU(config)

    def forward(self, x: Tensor, state: LRUState | None = None) -> tuple[Tensor, LRUState]:
        """x: (B, T, W) -> (B, T, W), continuing from ``state`` (None: start of the sequence)."""
        x, conv_state = self.conv_1d(x, None if state is None else state.conv)
        x, lru_state = self.rg_lru(x, None if state is None else state.lru)
        return x, LRUState(conv_state, lru_state)

    def scan(self, chunks: Iterable[Tensor]) -> Iterator[Tensor]:
        """Outputs for consecutive chunks of one sequence, the state carried from each chunk to the next."""
        state = None
        for chunk in chunks:
            y, state = self(chunk, state)
            yield y


class RecurrentBlock(nn.Module):
    """Temporal mixing: W_o (GeLU(W_y x) * RG-LRU(Conv1D(W_x x))), with an optional reverse-time recurrence."""

    def __init__(self, config: HawkConfig) -> None:
        super().__init__()
        d, w = config.d_model, config.lru_width
        self.linear_y = init_linear(nn.Linear(d, w))
        self.linear_x = init_linear(nn.Linear(d, w))
        self.linear_out = init_linear(nn.Linear(w, d), residual_scale(config))
        self.forward_rnn = Recurrence(config)
        self.reverse_rnn = Recurrence(config) if config.bidirectional else None
        concat = config.bidirectional and config.bidirectional_combine == "concat"
        self.combine = init_linear(nn.Linear(2 * w, w, bias=False)) if concat else None

    def _join(self, forward: Tensor, reverse: Tensor) -> Tensor:
        """Both directions' outputs (B, T, W), aligned in time -> (B, T, W)."""
        if self.combine is None:
            return forward + reverse
        return self.combine(torch.cat([forward, reverse], dim=-1))

    def forward(self, chunks: Sequence[Tensor]) -> list[Tensor]:
        """Consecutive chunks (B, T_i, D) of one normalised sequence -> the block's output for each chunk."""
        u = list(self.forward_rnn.scan(self.linear_x(c) for c in chunks))
        if self.reverse_rnn is not None:
            # the reverse recurrence reads the flipped sequence: last chunk first, each chunk flipped
            reverse = self.reverse_rnn.scan(self.linear_x(c).flip(1) for c in reversed(chunks))
            for i, r in zip(reversed(range(len(u))), reverse):
                u[i] = self._join(u[i], r.flip(1))
        return [self.linear_out(F.gelu(self.linear_y(c), approximate="tanh") * u_i) for c, u_i in zip(chunks, u)]


class GatedMLP(nn.Module):
    """W_down (GeLU(W_gate x) * W_up x)."""

    def __init__(self, config: HawkConfig) -> None:
        super().__init__()
        expanded = config.mlp_expansion * config.d_model
        self.gate_up = init_linear(nn.Linear(config.d_model, 2 * expanded))  # [W_gate; W_up] in one matmul
        self.down = init_linear(nn.Linear(expanded, config.d_model), residual_scale(config))

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.gelu(gate, approximate="tanh") * up)


class HawkBlock(nn.Module):
    """x + RecurrentBlock(RMSNorm(x)), then x + GatedMLP(RMSNorm(x))."""

    def __init__(self, config: HawkConfig) -> None:
        super().__init__()
        self.temporal_pre_norm = RMSNorm(config.d_model, config.norm_epsilon)
        self.recurrent_block = RecurrentBlock(config)
        self.channel_pre_norm = RMSNorm(config.d_model, config.norm_epsilon)
        self.mlp_block = GatedMLP(config)

    def forward(self, x: Tensor, chunk_size: int | None = None) -> Tensor:
        """(B, L, D) -> (B, L, D); with ``chunk_size`` the recurrences carry their state across chunks and
        position-wise work is done per chunk (same result, smaller intermediates)."""
        chunks = x.split(chunk_size, dim=1) if chunk_size else (x,)
        mixed = self.recurrent_block([self.temporal_pre_norm(c) for c in chunks])
        out = []
        for chunk, m in zip(chunks, mixed):
            h = chunk + m
            out.append(h + self.mlp_block(self.channel_pre_norm(h)))
        return torch.cat(out, dim=1)


# -- model ------------------------------------------------------------------------------------------------
class Hawk(DNALanguageModel):
    """Hawk language model: causal (next-token) or bidirectional (masked LM)."""

    arch = "hawk"
    config_class = HawkConfig

    def __init__(self, config: HawkConfig) -> None:
        super().__init__(config)
        rows = padded_vocab_size(vocab.VOCAB_SIZE, config.pad_vocab_size_multiple)
        self.embedding = nn.Embedding(rows, config.d_model)
        self.layers = nn.ModuleList([HawkBlock(config) for _ in range(config.n_layer)])
        self.final_norm = RMSNorm(config.d_model, config.norm_epsilon)
        std = math.sqrt(1.0 / config.d_model) if config.initializer_range is None else config.initializer_range
        nn.init.normal_(self.embedding.weight, std=std)

    def _run(self, input_ids: Tensor, chunk_size: int | None) -> Tensor:
        x = self.embedding(input_ids) * math.sqrt(self.config.d_model)
        for block in self.layers:
            x = self.run_block(block, x, chunk_size)
        return self.final_norm(x)

    def embed(self, input_ids: Tensor) -> Tensor:
        """(B, L) token ids -> (B, L, d_model)."""
        return self._run(input_ids, None)

    def embed_chunked(self, input_ids: Tensor, chunk_size: int) -> Tensor:
        """:meth:`embed` computed ``chunk_size`` positions at a time per layer, recurrent states carried
        between chunks in both directions (see the module docstring); equal to :meth:`embed` up to rounding."""
        if chunk_size < 1:
            raise ValueError(f"hawk: chunk_size must be >= 1, not {chunk_size}")
        return self._run(input_ids, chunk_size)
