"""Reference forward passes of the released checkpoints, for the exactness tests of longdna.models.released.

Written from the public layouts' definition of each layer (HyenaDNA: the Hyena operator, implicit filter and
pre-norm block of the paper and its ``-hf`` port; Caduceus: Mamba-1's selective SSM, BiMamba, reverse-complement
parameter sharing and the ``CaduceusForMaskedLM`` module tree). Module and parameter names reproduce the released
state-dict keys, so a reference model's ``state_dict()`` *is* a checkpoint in the released layout. Everything
runs in the slow, obvious way (sequential scan, stored positional tables) and shares no code with the package.

* :class:`HyenaDNAForCausalLM`: keys ``hyena.backbone...`` and ``lm_head.weight`` (the ``-hf`` port); the
  original Lightning ``weights.ckpt`` holds the same tensors under ``model.backbone...``/``model.lm_head...``.
  The Lightning code orders each block "dropout -> add -> norm -> mixer", the port "norm -> mixer -> add"; without
  dropout (eval) both compute x + mixer(LN1(x)), then + mlp(LN2(.)).
* :class:`CaduceusForMaskedLM`: keys ``caduceus.backbone...`` and ``lm_head...``, Caduceus-PH (``rcps`` false)
  and Caduceus-PS, with the add-and-norm done as the fused kernel path of the public code (``fused_add_norm``,
  what every released config sets) or as its unfused wrapper path.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


# ==================================================== HyenaDNA ====================================================
class HyenaSin(nn.Module):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.freq = nn.Parameter(cfg["activation_freq"] * torch.ones(1, cfg["filter_order"]))

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.freq * x)


class HyenaPositionalEmbedding(nn.Module):
    """Stored table: t = linspace(0, 1, L_max); z = [t, cos(-f w), sin(-f w)], w = 2 pi i / L_max."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        seq_len, bands = cfg["max_seq_len"], (cfg["emb_dim"] - 1) // 2
        t = torch.linspace(0, 1, seq_len)[None, :, None]
        w = 2 * math.pi * torch.linspace(0, seq_len - 1, seq_len)[None, :, None] / seq_len
        f = torch.linspace(1e-4, bands - 1, bands)[None, None]
        self.z = nn.Parameter(torch.cat([t, torch.cos(-f * w), torch.sin(-f * w)], dim=-1))
        self.register_buffer("t", t)

    def forward(self, length: int) -> tuple[Tensor, Tensor]:
        return self.z[:, :length], self.t[:, :length]


class HyenaExponentialModulation(nn.Module):
    def __init__(self, channels: int, shift: float = 0.05) -> None:
        super().__init__()
        self.shift = shift
        fastest, slowest = math.log(1e-2) / 0.3, math.log(1e-2) / 1.5
        self.register_buffer("deltas", torch.linspace(slowest, fastest, channels)[None, None])

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        return x * (torch.exp(-t * self.deltas.abs()) + self.shift)


class HyenaFilter(nn.Module):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        d = cfg["d_model"]
        self.bias = nn.Parameter(torch.randn(d))
        self.pos_emb = HyenaPositionalEmbedding(cfg)
        act = HyenaSin(cfg)  # one module after every linear layer: the stored freq tensors are one tensor
        layers: list[nn.Module] = [nn.Linear(cfg["emb_dim"], cfg["filter_order"]), act]
        for _ in range(cfg["num_inner_mlps"]):
            layers += [nn.Linear(cfg["filter_order"], cfg["filter_order"]), act]
        layers.append(nn.Linear(cfg["filter_order"], d, bias=False))
        self.implicit_filter = nn.Sequential(*layers)
        self.modulation = HyenaExponentialModulation(d)

    def filter(self, length: int) -> Tensor:
        z, t = self.pos_emb(length)
        return self.modulation(t, self.implicit_filter(z))


def fftconv(u: Tensor, k: Tensor, skip: Tensor) -> Tensor:
    """y = causal convolution of u (B, D, L) with k (D, L), + skip * u: FFT of size 2L, as the public code."""
    n = 2 * u.shape[-1]
    k_f = torch.fft.rfft(k, n=n) / n
    u_f = torch.fft.rfft(u, n=n)
    return torch.fft.irfft(u_f * k_f, n=n, norm="forward")[..., : u.shape[-1]] + u * skip.unsqueeze(-1)


class HyenaOperator(nn.Module):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        d = self.d_model = cfg["d_model"]
        self.in_proj = nn.Linear(d, 3 * d)
        self.out_proj = nn.Linear(d, d)
        self.short_filter = nn.Conv1d(
            3 * d, 3 * d, cfg["short_filter_order"], padding=cfg["short_filter_order"] - 1, groups=3 * d
        )
        self.filter_fn = HyenaFilter(cfg)

    def forward(self, u: Tensor) -> Tensor:
        length = u.shape[1]
        x0, x1, v = self.short_filter(self.in_proj(u).transpose(1, 2))[..., :length].split(self.d_model, dim=1)
        k = self.filter_fn.filter(length)[0].transpose(0, 1)  # (D, L)
        v = fftconv(v * x1, k, self.filter_fn.bias)
        return self.out_proj((v * x0).transpose(1, 2))


class HyenaMlp(nn.Module):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cfg["d_model"], cfg["d_inner"])
        self.fc2 = nn.Linear(cfg["d_inner"], cfg["d_model"])

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class HyenaBlock(nn.Module):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.mixer = HyenaOperator(cfg)
        self.norm1 = nn.LayerNorm(cfg["d_model"])
        self.mlp = HyenaMlp(cfg)
        self.norm2 = nn.LayerNorm(cfg["d_model"])

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.mixer(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class HyenaEmbeddings(nn.Module):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg["padded_vocab"], cfg["d_model"])


class HyenaBackbone(nn.Module):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.embeddings = HyenaEmbeddings(cfg)
        self.layers = nn.ModuleList([HyenaBlock(cfg) for _ in range(cfg["n_layer"])])
        self.ln_f = nn.LayerNorm(cfg["d_model"])

    def forward(self, input_ids: Tensor) -> Tensor:
        x = self.embeddings.word_embeddings(input_ids)
        for layer in self.layers:
            x = layer(x)
        return self.ln_f(x)


class HyenaDNAModel(nn.Module):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.backbone = HyenaBackbone(cfg)


class HyenaDNAForCausalLM(nn.Module):
    """``cfg``: d_model, n_layer, d_inner, max_seq_len, emb_dim, filter_order, short_filter_order,
    num_inner_mlps, activation_freq, padded_vocab. The LM head is tied to the embedding, as trained."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.hyena = HyenaDNAModel(cfg)
        self.lm_head = nn.Linear(cfg["d_model"], cfg["padded_vocab"], bias=False)
        self.lm_head.weight = self.hyena.backbone.embeddings.word_embeddings.weight

    def embed(self, input_ids: Tensor) -> Tensor:
        return self.hyena.backbone(input_ids)

    def forward(self, input_ids: Tensor) -> Tensor:
        return self.lm_head(self.embed(input_ids))


def randomize_(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Every float parameter N(0, 0.3) (norm weights around 1, SSM dynamics in their valid ranges), so that no
    weight is at an initialisation value that would hide a mix-up; stored tables keep their definition."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("pos_emb.z"):
                continue
            if name.endswith(("norm1.weight", "norm2.weight", "ln_f.weight", "norm.weight", "norm_f.weight")):
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=generator))
            elif name.endswith("A_log"):
                p.copy_(torch.rand(p.shape, generator=generator) * 2 - 0.5)
            elif name.endswith(".freq"):
                p.copy_(5 + 5 * torch.rand(p.shape, generator=generator))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=generator))
    return model.eval()


# ==================================================== Caduceus ====================================================
class Mamba(nn.Module):
    """Mamba-1 mixer, slow path: in_proj -> (x, z); x -> causal depthwise conv -> SiLU -> selective SSM with
    dt = softplus(dt_proj(.)), A = -exp(A_log), y = C.h + D x; y * SiLU(z) -> out_proj."""

    def __init__(self, d_model: int, ssm: dict[str, Any]) -> None:
        super().__init__()
        e, n, k = ssm["expand"] * d_model, ssm["d_state"], ssm["d_conv"]
        r = math.ceil(d_model / 16) if ssm["dt_rank"] == "auto" else ssm["dt_rank"]
        self.d_state, self.dt_rank = n, r
        self.in_proj = nn.Linear(d_model, 2 * e, bias=ssm["bias"])
        self.conv1d = nn.Conv1d(e, e, k, groups=e, padding=k - 1, bias=ssm["conv_bias"])
        self.x_proj = nn.Linear(e, r + 2 * n, bias=False)
        self.dt_proj = nn.Linear(r, e, bias=True)
        self.A_log = nn.Parameter(torch.zeros(e, n))
        self.D = nn.Parameter(torch.ones(e))
        self.out_proj = nn.Linear(e, d_model, bias=ssm["bias"])

    def forward(self, hidden: Tensor) -> Tensor:
        length = hidden.shape[1]
        x, z = self.in_proj(hidden).chunk(2, dim=-1)
        x = F.silu(self.conv1d(x.transpose(1, 2))[..., :length].transpose(1, 2))
        dt, b, c = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(self.dt_proj(dt))  # (B, L, E)
        a = -torch.exp(self.A_log)
        h = x.new_zeros(x.shape[0], x.shape[2], self.d_state)
        ys = []
        for t in range(length):
            h = torch.exp(dt[:, t, :, None] * a) * h + dt[:, t, :, None] * b[:, t, None, :] * x[:, t, :, None]
            ys.append((h * c[:, t, None, :]).sum(-1))
        y = torch.stack(ys, dim=1) + x * self.D
        return self.out_proj(y * F.silu(z))


class BiMambaWrapper(nn.Module):
    def __init__(self, d_model: int, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.strategy = cfg["bidirectional_strategy"]
        self.mamba_fwd = Mamba(d_model, cfg["ssm_cfg"])
        self.mamba_rev = Mamba(d_model, cfg["ssm_cfg"]) if cfg["bidirectional"] else None
        if self.mamba_rev is not None and cfg["bidirectional_weight_tie"]:
            self.mamba_rev.in_proj.weight = self.mamba_fwd.in_proj.weight
            self.mamba_rev.in_proj.bias = self.mamba_fwd.in_proj.bias
            self.mamba_rev.out_proj.weight = self.mamba_fwd.out_proj.weight
            self.mamba_rev.out_proj.bias = self.mamba_fwd.out_proj.bias

    def forward(self, hidden: Tensor) -> Tensor:
        out = self.mamba_fwd(hidden)
        if self.mamba_rev is None:
            return out
        out_rev = self.mamba_rev(hidden.flip(1)).flip(1)
        return out + out_rev if self.strategy == "add" else out * out_rev


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rc(x: Tensor) -> Tensor:
    """Reverse complement of a hidden-state half: flip length and channels."""
    return x.flip(-2, -1)


def add_norm(norm: RMSNorm, x: Tensor, residual: Tensor | None) -> tuple[Tensor, Tensor]:
    """What the fused add + RMSNorm kernel returns with prenorm: (norm(x + residual), x + residual)."""
    residual = x if residual is None else x + residual
    return norm(residual), residual


class RCPSWrapper(nn.Module):
    def __init__(self, submodule: nn.Module) -> None:
        super().__init__()
        self.submodule = submodule

    def forward(self, x: Tensor) -> Tensor:
        half = x.shape[-1] // 2
        return torch.cat([self.submodule(x[..., :half]), rc(self.submodule(rc(x[..., half:])))], dim=-1)


class RCPSAddNormWrapper(RCPSWrapper):
    """The unfused path: the residual's second half is added in the RC strand's orientation."""

    def add_norm(self, x: Tensor, residual: Tensor | None) -> tuple[Tensor, Tensor]:
        half = x.shape[-1] // 2
        if residual is None:
            return self(x), x
        fwd = x[..., :half] + residual[..., :half]
        rev = rc(x[..., half:]) + rc(residual[..., half:])
        normed = torch.cat([self.submodule(fwd), rc(self.submodule(rev))], dim=-1)
        return normed, torch.cat([fwd, rc(rev)], dim=-1)


class Block(nn.Module):
    """Caduceus-PH block (mamba_ssm's Block, no MLP): add -> RMSNorm -> BiMamba, returns (out, residual)."""

    def __init__(self, d_model: int, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.mixer = BiMambaWrapper(d_model, cfg)
        self.norm = RMSNorm(d_model, cfg["norm_epsilon"])

    def forward(self, hidden: Tensor, residual: Tensor | None) -> tuple[Tensor, Tensor]:
        hidden, residual = add_norm(self.norm, hidden, residual)
        return self.mixer(hidden), residual


class RCPSMambaBlock(nn.Module):
    """Caduceus-PS block. Fused path (as the public code calls the kernel): the "forward" call gets the
    *second* channel half and the "RC" call the flipped *first* half, and their results are concatenated in
    that order, so every fused block swaps the two halves of the state. The unfused path does not."""

    def __init__(self, d_model: int, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.fused = cfg["fused_add_norm"]
        self.mixer = RCPSWrapper(BiMambaWrapper(d_model, cfg))
        norm = RMSNorm(d_model, cfg["norm_epsilon"])
        self.norm = norm if self.fused else RCPSAddNormWrapper(norm)

    def forward(self, hidden: Tensor, residual: Tensor | None) -> tuple[Tensor, Tensor]:
        if not self.fused:
            hidden, residual = self.norm.add_norm(hidden, residual)
            return self.mixer(hidden), residual
        half = hidden.shape[-1] // 2
        fwd, res_fwd = add_norm(self.norm, hidden[..., half:], None if residual is None else residual[..., half:])
        rev, res_rev = add_norm(
            self.norm, rc(hidden[..., :half]), None if residual is None else rc(residual[..., :half])
        )
        hidden = torch.cat([fwd, rc(rev)], dim=-1)
        return self.mixer(hidden), torch.cat([res_fwd, rc(res_rev)], dim=-1)


class RCPSEmbedding(nn.Module):
    def __init__(self, vocab: int, d_model: int, complement: list[int]) -> None:
        super().__init__()
        self.register_buffer("complement_map", torch.tensor(complement, dtype=torch.long))
        self.embedding = nn.Embedding(vocab, d_model)

    def forward(self, input_ids: Tensor) -> Tensor:
        rc_ids = self.complement_map[input_ids.flip(-1)]
        return torch.cat([self.embedding(input_ids), self.embedding(rc_ids).flip(-2, -1)], dim=-1)


class CaduceusEmbeddings(nn.Module):
    def __init__(self, cfg: dict[str, Any], complement: list[int]) -> None:
        super().__init__()
        if cfg["rcps"]:
            self.word_embeddings: nn.Module = RCPSEmbedding(cfg["vocab_size"], cfg["d_model"], complement)
        else:
            self.word_embeddings = nn.Embedding(cfg["vocab_size"], cfg["d_model"])


class CaduceusMixerModel(nn.Module):
    def __init__(self, cfg: dict[str, Any], complement: list[int]) -> None:
        super().__init__()
        self.rcps, self.fused, d = cfg["rcps"], cfg["fused_add_norm"], cfg["d_model"]
        self.embeddings = CaduceusEmbeddings(cfg, complement)
        block = RCPSMambaBlock if self.rcps else Block
        self.layers = nn.ModuleList([block(d, cfg) for _ in range(cfg["n_layer"])])
        norm_f = RMSNorm(d, cfg["norm_epsilon"])
        self.norm_f = RCPSAddNormWrapper(norm_f) if self.rcps and not self.fused else norm_f

    def forward(self, input_ids: Tensor) -> Tensor:
        hidden, residual = self.embeddings.word_embeddings(input_ids), None
        for layer in self.layers:
            hidden, residual = layer(hidden, residual)
        if not self.rcps:
            return add_norm(self.norm_f, hidden, residual)[0]
        if not self.fused:
            return self.norm_f.add_norm(hidden, residual)[0]
        half = hidden.shape[-1] // 2  # the final fused call keeps the halves in place
        fwd = add_norm(self.norm_f, hidden[..., :half], residual[..., :half])[0]
        rev = add_norm(self.norm_f, rc(hidden[..., half:]), rc(residual[..., half:]))[0]
        return torch.cat([fwd, rc(rev)], dim=-1)


class Caduceus(nn.Module):
    def __init__(self, cfg: dict[str, Any], complement: list[int]) -> None:
        super().__init__()
        self.backbone = CaduceusMixerModel(cfg, complement)


class RCPSLMHead(nn.Module):
    def __init__(self, d_model: int, vocab: int, complement: list[int]) -> None:
        super().__init__()
        self.register_buffer("complement_map", torch.tensor(complement, dtype=torch.long))
        self.lm_head = nn.Linear(d_model, vocab, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        half = x.shape[-1] // 2
        weight = self.lm_head.weight
        return F.linear(x[..., :half], weight) + F.linear(x[..., half:].flip(-1), weight[self.complement_map])


class CaduceusForMaskedLM(nn.Module):
    """``cfg``: a released Caduceus config.json (vocab_size already padded; complement_map with string keys)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        complement = [int(v) for _, v in sorted(cfg["complement_map"].items(), key=lambda kv: int(kv[0]))]
        self.caduceus = Caduceus(cfg, complement)
        embeddings = self.caduceus.backbone.embeddings.word_embeddings
        if cfg["rcps"]:
            self.lm_head: nn.Module = RCPSLMHead(cfg["d_model"], cfg["vocab_size"], complement)
            self.lm_head.lm_head.weight = embeddings.embedding.weight
        else:
            self.lm_head = nn.Linear(cfg["d_model"], cfg["vocab_size"], bias=False)
            self.lm_head.weight = embeddings.weight

    def embed(self, input_ids: Tensor) -> Tensor:
        return self.caduceus.backbone(input_ids)

    def forward(self, input_ids: Tensor) -> Tensor:
        return self.lm_head(self.embed(input_ids))
