"""Transformer baseline: pre-norm blocks with rotary multi-head attention, causal (GPT) or bidirectional (BERT).

The 50M preset follows the shape of the Nucleotide Transformer v2 50M baseline of the long-range genomics study
(12 layers, width 512, 16 heads, SwiGLU MLP of width 2048, rotary positions, bidirectional), on single
nucleotides instead of 6-mers: NTv2's remaining parameters (55.9M listed) are mostly its 4,107-row 6-mer
embedding and untied LM head. Linear layers have no biases.

Positions enter only through rotary embeddings computed on the fly, so the model runs at any length.
``rope_scaling`` divides positions before the rotation (position interpolation, Chen et al. 2023): a model
trained on length L and evaluated on ``rope_scaling * L`` sees rotation angles from its training range.

Attention goes through :func:`torch.nn.functional.scaled_dot_product_attention` (flash / memory-efficient
kernels on GPU); the reference path (``DNALanguageModel.reference_path()``) computes softmax(QK^T / sqrt(d)) V
explicitly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longdna import vocab
from longdna.models.base import DNALanguageModel, padded_vocab_size
from longdna.models.layers import RMSNorm

MLPS = ("gelu", "swiglu")
NORMS = ("layernorm", "rmsnorm")


@dataclass
class TransformerConfig:
    d_model: int = 256
    n_layer: int = 4
    n_heads: int = 8
    d_ff: int | None = None  # MLP width; None -> 4 * d_model
    causal: bool = True  # True: next-token (GPT-style); False: masked LM (BERT-style)
    mlp: str = "swiglu"  # "gelu" or "swiglu"
    norm: str = "layernorm"  # "layernorm" or "rmsnorm"
    rope_base: float = 10000.0
    rope_scaling: float = 1.0  # position interpolation: positions are divided by this factor
    dropout: float = 0.0  # on embeddings, attention probabilities and residual branches
    norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    pad_vocab_size_multiple: int = 8

    def __post_init__(self) -> None:
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(
                f"transformer: d_model {self.d_model} must split into {self.n_heads} heads of even width (rotary pairs)"
            )
        if self.mlp not in MLPS:
            raise ValueError(f"transformer: mlp must be one of {MLPS}, not {self.mlp!r}")
        if self.norm not in NORMS:
            raise ValueError(f"transformer: norm must be one of {NORMS}, not {self.norm!r}")
        if self.rope_scaling <= 0:
            raise ValueError(f"transformer: rope_scaling must be > 0, not {self.rope_scaling}")


# -- rotary positions -----------------------------------------------------------------------------------------
def rotary_cos_sin(
    length: int, head_dim: int, base: float, scaling: float, device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """cos and sin of the rotation angles, each (length, head_dim / 2).

    Angles are formed in float64 so that positions in the millions keep their phase, then cast to ``dtype``.
    """
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64, device=device) / head_dim)
    positions = torch.arange(length, dtype=torch.float64, device=device) / scaling
    angles = positions[:, None] * inv_freq[None, :]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate channel pairs (i, i + head_dim/2) of x (B, H, L, head_dim) by the angles of cos/sin (L, head_dim/2)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


# -- attention ----------------------------------------------------------------------------------------------
def attention_reference(q: Tensor, k: Tensor, v: Tensor, causal: bool, dropout_p: float) -> Tensor:
    """softmax(q k^T / sqrt(d) + mask) v for (B, H, L, d) tensors; the definition SDPA is checked against."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, L, L)
    if causal:
        length = q.shape[-2]
        future = torch.ones(length, length, dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(future, float("-inf"))
    probs = F.dropout(scores.softmax(dim=-1), p=dropout_p)
    return probs @ v


class Attention(nn.Module):
    """Multi-head self-attention with rotary positions."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.causal = config.causal
        self.dropout_p = config.dropout
        self.rope_base = config.rope_base
        self.rope_scaling = config.rope_scaling
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.out_proj = nn.Linear(config.d_model, config.d_model, bias=False)
        self.use_reference = False

    def forward(self, x: Tensor) -> Tensor:
        """(B, L, D) -> (B, L, D)."""
        batch, length, width = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)  # 3 x (B, H, L, d)
        cos, sin = rotary_cos_sin(length, q.shape[-1], self.rope_base, self.rope_scaling, x.device, q.dtype)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        dropout_p = self.dropout_p if self.training else 0.0
        if self.use_reference:
            out = attention_reference(q, k, v, self.causal, dropout_p)
        else:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=self.causal)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, width))


class MLP(nn.Module):
    """down(act(up x)) for ``gelu``; down(silu(gate x) * up x) for ``swiglu`` (gate and up in one matmul)."""

    def __init__(self, d_model: int, d_ff: int, kind: str) -> None:
        super().__init__()
        self.gated = kind == "swiglu"
        self.up = nn.Linear(d_model, 2 * d_ff if self.gated else d_ff, bias=False)
        self.down = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.gated:
            gate, up = self.up(x).chunk(2, dim=-1)
            return self.down(F.silu(gate) * up)
        return self.down(F.gelu(self.up(x)))


def make_norm(config: TransformerConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return RMSNorm(config.d_model, config.norm_epsilon)
    return nn.LayerNorm(config.d_model, eps=config.norm_epsilon)


class TransformerBlock(nn.Module):
    """x + Attention(Norm(x)), then x + MLP(Norm(x)), dropout on each branch."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.attn_norm = make_norm(config)
        self.attn = Attention(config)
        self.mlp_norm = make_norm(config)
        self.mlp = MLP(config.d_model, config.d_ff, config.mlp)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.dropout(self.attn(self.attn_norm(x)))
        return x + self.dropout(self.mlp(self.mlp_norm(x)))


# -- model ------------------------------------------------------------------------------------------------
class Transformer(DNALanguageModel):
    """Transformer language model: causal (next-token) or bidirectional (masked LM)."""

    arch = "transformer"
    config_class = TransformerConfig

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__(config)
        rows = padded_vocab_size(vocab.VOCAB_SIZE, config.pad_vocab_size_multiple)
        self.embedding = nn.Embedding(rows, config.d_model)
        self.embed_dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList([TransformerBlock(config) for _ in range(config.n_layer)])
        self.final_norm = make_norm(config)
        self._init_weights()

    def _init_weights(self) -> None:
        """GPT-2 scheme: N(0, initializer_range) for linears and the embedding, with the projections that write
        into the residual stream scaled by 1 / sqrt(2 n_layer) so the stream's variance does not grow with depth."""
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=std)
        for block in self.layers:
            for linear in (block.attn.out_proj, block.mlp.down):
                nn.init.normal_(linear.weight, std=std / math.sqrt(2 * self.config.n_layer))

    def embed(self, input_ids: Tensor) -> Tensor:
        """(B, L) token ids -> (B, L, d_model)."""
        x = self.embed_dropout(self.embedding(input_ids))
        for block in self.layers:
            x = self.run_block(block, x)
        return self.final_norm(x)
