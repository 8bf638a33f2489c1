"""HyenaDNA: a causal stack of pre-norm [Hyena operator + MLP] blocks, faithful to the released checkpoints.

Parameter names follow the released layout (``backbone.layers.{i}.mixer.filter_fn.implicit_filter...``), so
:func:`longdna.models.released.load_released` maps a ``LongSafari/hyenadna-*`` checkpoint onto this module
without renaming.

Differences from the public reference code, all of which leave outputs unchanged for ``L <= l_max``:

* the filter's positional features are computed from their closed form instead of a stored ``l_max x 5``
  table, so the model runs at any length (positions beyond ``l_max`` continue the same formula, the
  exponential window keeps decaying) and checkpoints do not carry hundreds of MB of buffers;
* the long convolution has a slow reference (:func:`causal_conv_reference`, an explicit Toeplitz product)
  next to the FFT fast path (:func:`causal_fft_conv`), selected by ``DNALanguageModel.reference_path()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longdna import vocab
from longdna.models.base import DNALanguageModel, no_weight_decay, padded_vocab_size


@dataclass
class HyenaDNAConfig:
    d_model: int = 128
    n_layer: int = 2
    d_inner: int | None = None  # MLP width; None -> 4 * d_model
    l_max: int = 1026  # length the filter's time axis is normalised to (released: max_seq_len)
    order: int = 2  # Hyena recurrence depth (all released models: 2)
    filter_order: int = 64  # width of the implicit filter MLP
    emb_dim: int = 5  # positional features: t plus (emb_dim - 1) / 2 complex bands
    short_filter_order: int = 3
    num_inner_mlps: int = 2
    activation_freq: float = 10.0
    modulate: bool = True
    modulation_shift: float = 0.05  # value of the public inference code the released weights are used with
    fast_decay_pct: float = 0.3
    slow_decay_pct: float = 1.5
    decay_target: float = 1e-2
    embed_dropout: float = 0.1
    resid_dropout: float = 0.0
    hyena_dropout: float = 0.0
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    residual_in_fp32: bool = True
    pad_vocab_size_multiple: int = 8
    causal: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        if self.d_inner is None:
            self.d_inner = 4 * self.d_model
        if self.emb_dim < 3 or self.emb_dim % 2 == 0:
            raise ValueError(f"hyenadna: emb_dim must be odd and >= 3, not {self.emb_dim}")
        if self.order < 2:
            raise ValueError(f"hyenadna: order must be >= 2, not {self.order}")


# -- long convolution: fast path and reference ---------------------------------------------------------------
def causal_fft_conv(u: Tensor, k: Tensor, skip: Tensor) -> Tensor:
    """Causal long convolution by FFT: y[..., t] = sum_{s<=t} k[..., t-s] u[..., s] + skip * u[..., t].

    u: (B, D, L); k: (D, L); skip: (D,). Zero padding to 2L makes the circular convolution linear. Computed
    in at least float32 whatever the autocast state (half-precision FFTs lose the long tail of the filter).
    """
    length = u.shape[-1]
    n = 2 * length
    dtype = torch.promote_types(u.dtype, torch.float32)
    with torch.autocast(device_type=u.device.type, enabled=False):
        k_f = torch.fft.rfft(k.to(dtype), n=n) / n
        u_f = torch.fft.rfft(u.to(dtype), n=n)
        y = torch.fft.irfft(u_f * k_f, n=n, norm="forward")[..., :length]
        out = y + u.to(dtype) * skip.to(dtype).unsqueeze(-1)
    return out.to(u.dtype)


def causal_conv_reference(u: Tensor, k: Tensor, skip: Tensor) -> Tensor:
    """The same convolution as an explicit lower-triangular Toeplitz product (O(L^2); for tests)."""
    length = u.shape[-1]
    lag = torch.arange(length, device=u.device)
    lag = lag[:, None] - lag[None, :]  # (t, s) -> t - s
    toeplitz = torch.where(lag >= 0, k[:, lag.clamp_min(0)], torch.zeros((), dtype=k.dtype, device=k.device))
    y = torch.einsum("dts,bds->bdt", toeplitz.to(u.dtype), u)
    return y + u * skip.to(u.dtype).unsqueeze(-1)


# -- implicit filter ------------------------------------------------------------------------------------------
class Sin(nn.Module):
    """sin(freq * x) with a learnable frequency per feature."""

    def __init__(self, dim: int, w: float) -> None:
        super().__init__()
        self.freq = nn.Parameter(w * torch.ones(1, dim))

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.freq * x)


def positional_features(length: int, l_max: int, emb_dim: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Filter inputs z (length, emb_dim) and normalised time t (length, 1) for positions 0..length-1.

    z = [t, cos(f w), -sin(f w)] with t = i / (l_max - 1), w = 2 pi i / l_max and ``(emb_dim-1)/2`` bands f
    spaced from 1e-4 to bands - 1: the released formula, evaluated at any position.
    """
    bands = (emb_dim - 1) // 2
    i = torch.arange(length, dtype=torch.float64, device=device)[:, None]
    t = i / (l_max - 1)
    w = 2 * math.pi * i / l_max
    f = torch.linspace(1e-4, bands - 1, bands, dtype=torch.float64, device=device)[None, :]
    z = torch.cat([t, torch.cos(f * w), -torch.sin(f * w)], dim=-1)
    return z.float(), t.float()


class ExponentialModulation(nn.Module):
    """Window h(t) * (exp(-|delta_c| t) + shift): channel c decays to `target` at 30%..150% of l_max."""

    def __init__(self, channels: int, config: HyenaDNAConfig) -> None:
        super().__init__()
        self.modulate = config.modulate
        self.shift = config.modulation_shift
        max_decay = math.log(config.decay_target) / config.fast_decay_pct
        min_decay = math.log(config.decay_target) / config.slow_decay_pct
        self.register_buffer("deltas", torch.linspace(min_decay, max_decay, channels)[None, None])

    def forward(self, t: Tensor, h: Tensor) -> Tensor:
        if not self.modulate:
            return h
        return h * (torch.exp(-t * self.deltas[0].abs()) + self.shift)


class PositionalEmbedding(nn.Module):
    """Computes the filter's positional features on demand (no stored table)."""

    def __init__(self, l_max: int, emb_dim: int) -> None:
        super().__init__()
        self.l_max = l_max
        self.emb_dim = emb_dim

    def forward(self, length: int, device: torch.device) -> tuple[Tensor, Tensor]:
        return positional_features(length, self.l_max, self.emb_dim, device)


class HyenaFilter(nn.Module):
    """Implicit long filter: positional features -> sine-activated MLP -> exponential window; plus skip term."""

    def __init__(self, channels: int, config: HyenaDNAConfig) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.randn(channels))  # per-channel skip ("D") term
        self.pos_emb = PositionalEmbedding(config.l_max, config.emb_dim)
        act = Sin(config.filter_order, config.activation_freq)  # one instance shared by every layer of the MLP
        layers: list[nn.Module] = [nn.Linear(config.emb_dim, config.filter_order), act]
        for _ in range(config.num_inner_mlps):
            layers += [nn.Linear(config.filter_order, config.filter_order), act]
        layers.append(nn.Linear(config.filter_order, channels, bias=False))
        self.implicit_filter = nn.Sequential(*layers)
        self.modulation = ExponentialModulation(channels, config)
        no_weight_decay(*self.parameters())

    def filter(self, length: int) -> Tensor:
        """The filter taps, (length, channels), in float32."""
        device = self.bias.device
        with torch.autocast(device_type=device.type, enabled=False):
            z, t = self.pos_emb(length, device)
            h = self.implicit_filter(z.to(self.bias.dtype))
            return self.modulation(t.to(h.dtype), h)


class HyenaOperator(nn.Module):
    """Order-N Hyena: in-projection to N+1 streams, short causal conv, N-1 rounds of (gate, long conv)."""

    def __init__(self, config: HyenaDNAConfig) -> None:
        super().__init__()
        d, order = config.d_model, config.order
        self.d_model, self.order = d, order
        width = d * (order + 1)
        self.in_proj = nn.Linear(d, width)
        self.out_proj = nn.Linear(d, d)
        self.short_filter = nn.Conv1d(
            width, width, config.short_filter_order, padding=config.short_filter_order - 1, groups=width
        )
        self.filter_fn = HyenaFilter(d * (order - 1), config)
        self.dropout = nn.Dropout(config.hyena_dropout)
        self.use_reference = False

    def forward(self, u: Tensor) -> Tensor:
        """u: (B, L, D) -> (B, L, D)."""
        length = u.shape[1]
        streams = self.short_filter(self.in_proj(u).transpose(1, 2))[..., :length]  # causal: keep first L
        *gates, v = streams.split(self.d_model, dim=1)
        k = self.filter_fn.filter(length).t().reshape(self.order - 1, self.d_model, length)
        skip = self.filter_fn.bias.reshape(self.order - 1, self.d_model)
        conv = causal_conv_reference if self.use_reference else causal_fft_conv
        for o, gate in enumerate(reversed(gates[1:])):
            v = self.dropout(v * gate)
            v = conv(v, k[o], skip[o])
        return self.out_proj((v * gates[0]).transpose(1, 2))


class Mlp(nn.Module):
    def __init__(self, d_model: int, d_inner: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_model, d_inner)
        self.fc2 = nn.Linear(d_inner, d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class HyenaBlock(nn.Module):
    """Dropout -> add -> LayerNorm -> Hyena; dropout -> add -> LayerNorm -> MLP (returns output, residual)."""

    def __init__(self, config: HyenaDNAConfig, first: bool) -> None:
        super().__init__()
        self.residual_in_fp32 = config.residual_in_fp32
        self.dropout1 = nn.Dropout(config.embed_dropout if first else config.resid_dropout)
        self.norm1 = nn.LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.mixer = HyenaOperator(config)
        self.dropout2 = nn.Dropout(config.resid_dropout)
        self.norm2 = nn.LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.mlp = Mlp(config.d_model, config.d_inner)

    def _add_norm(self, x: Tensor, residual: Tensor | None, norm: nn.LayerNorm) -> tuple[Tensor, Tensor]:
        residual = x if residual is None else x + residual
        hidden = norm(residual.to(norm.weight.dtype))
        return hidden, residual.float() if self.residual_in_fp32 else residual

    def forward(self, hidden: Tensor, residual: Tensor | None) -> tuple[Tensor, Tensor]:
        hidden, residual = self._add_norm(self.dropout1(hidden), residual, self.norm1)
        hidden, residual = self._add_norm(self.dropout2(self.mixer(hidden)), residual, self.norm2)
        return self.mlp(hidden), residual


class Embeddings(nn.Module):
    def __init__(self, num_embeddings: int, d_model: int) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(num_embeddings, d_model)


class HyenaBackbone(nn.Module):
    def __init__(self, config: HyenaDNAConfig) -> None:
        super().__init__()
        self.embeddings = Embeddings(
            padded_vocab_size(vocab.VOCAB_SIZE, config.pad_vocab_size_multiple), config.d_model
        )
        self.layers = nn.ModuleList([HyenaBlock(config, first=i == 0) for i in range(config.n_layer)])
        self.drop_f = nn.Dropout(config.resid_dropout)
        self.ln_f = nn.LayerNorm(config.d_model, eps=config.layer_norm_epsilon)


class HyenaDNA(DNALanguageModel):
    """HyenaDNA language model (causal, single-nucleotide)."""

    arch = "hyenadna"
    config_class = HyenaDNAConfig

    def __init__(self, config: HyenaDNAConfig) -> None:
        super().__init__(config)
        self.backbone = HyenaBackbone(config)
        self._init_weights()

    @property
    def embedding(self) -> nn.Embedding:
        return self.backbone.embeddings.word_embeddings

    def _init_weights(self) -> None:
        """GPT-2 scheme of the released code: N(0, 0.02) for linears and embeddings, zero biases, and the
        residual output projections (mixer.out_proj, mlp.fc2) scaled by 1/sqrt(2 n_layer)."""
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=std)
        for block in self.backbone.layers:
            for weight in (block.mixer.out_proj.weight, block.mlp.fc2.weight):
                nn.init.normal_(weight, std=std / math.sqrt(2 * self.config.n_layer))

    def embed(self, input_ids: Tensor) -> Tensor:
        hidden, residual = self.embedding(input_ids), None
        for block in self.backbone.layers:
            hidden, residual = self.run_block(block, hidden, residual)
        residual = self.backbone.drop_f(hidden) + residual
        return self.backbone.ln_f(residual.to(self.backbone.ln_f.weight.dtype))
