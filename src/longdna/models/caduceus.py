"""Caduceus: bidirectional Mamba (BiMamba) masked-LM models, optionally reverse-complement equivariant.

* **Caduceus-PH** (``rcps=False``): a plain BiMamba stack. It learns strand symmetry from data: train it with
  the pretraining/fine-tuning option ``rc_probability`` (random reverse-complement augmentation) and, for
  sequence tasks, ``SequenceClassifier(rc_conjoin=True)`` (post-hoc conjoining). Without either it is the
  paper's "Caduceus w/o equiv.".
* **Caduceus-PS** (``rcps=True``): reverse-complement parameter sharing makes the model RC-equivariant by
  construction. The hidden state has 2 x d_model channels: the first half describes the forward strand, the
  second half, read reversed in both length and channels, the reverse-complement strand. With RC of a hidden
  state defined as reversing its length and all its channels, every layer satisfies f(RC(h)) = RC(f(h)), and
  the LM head turns that into ``logits(RC(x))[t, v] = logits(x)[L-1-t, complement(v)]``.

Both variants have the same parameters (PS applies each module to both strands); their counts match the
published ones exactly (see the presets in :mod:`longdna.models.catalog`). The building blocks (mixer,
RMSNorm, residual block, chunked inference) are those of :mod:`longdna.models.mamba`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from longdna import vocab
from longdna.models.base import SEGMENTS, pool
from longdna.models.mamba import Mamba, MambaConfig, MambaMixer

BIDIRECTIONAL_STRATEGIES = ("add", "ew_multiply")


@dataclass
class CaduceusConfig(MambaConfig):
    bidirectional: bool = True
    bidirectional_strategy: str = "add"  # how the two directions combine: "add" or "ew_multiply"
    bidirectional_weight_tie: bool = True  # share in_proj / out_proj between the directions
    rcps: bool = False  # True: Caduceus-PS (RC parameter sharing); False: Caduceus-PH

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bidirectional_strategy not in BIDIRECTIONAL_STRATEGIES:
            raise ValueError(
                f"caduceus: bidirectional_strategy must be one of {BIDIRECTIONAL_STRATEGIES},"
                f" not {self.bidirectional_strategy!r}"
            )
        # the reverse direction, and the RC half of an RCPS model, both see downstream tokens
        self.causal = not (self.bidirectional or self.rcps)


def rc_flip(x: Tensor) -> Tensor:
    """Reverse a (B, L, C) tensor along length and channels: RC of a full hidden state, or the map between a
    strand half and the orientation its module works in."""
    return x.flip(-2, -1)


class BiMamba(nn.Module):
    """A Mamba mixer over the sequence and another over the reversed sequence, combined position by position.

    With weight tie the reverse mixer uses the forward one's in_proj and out_proj (most of the parameters);
    its convolution, x_proj, dt_proj, A_log and D are its own.
    """

    def __init__(self, config: CaduceusConfig) -> None:
        super().__init__()
        self.strategy = config.bidirectional_strategy
        self.mamba_fwd = MambaMixer(config)
        self.mamba_rev = MambaMixer(config) if config.bidirectional else None
        if self.mamba_rev is not None and config.bidirectional_weight_tie:
            self.mamba_rev.in_proj = self.mamba_fwd.in_proj
            self.mamba_rev.out_proj = self.mamba_fwd.out_proj

    def forward(self, hidden: Tensor, chunk_size: int | None = None) -> Tensor:
        """(B, L, D) -> (B, L, D); ``chunk_size`` as in :meth:`MambaMixer.forward`."""
        if chunk_size is None and self.mamba_rev is not None and self.mamba_rev.in_proj is self.mamba_fwd.in_proj:
            return self._tied(hidden)
        out = self.mamba_fwd(hidden, chunk_size)
        if self.mamba_rev is None:
            return out
        out_rev = self.mamba_rev(hidden.flip(1), chunk_size).flip(1)
        return out + out_rev if self.strategy == "add" else out * out_rev

    def _tied(self, hidden: Tensor) -> Tensor:
        """:meth:`forward` with shared projections, each applied once: in_proj of the flipped sequence is the
        flipped in_proj, and with ``add`` the two out_proj (a linear map) of the outputs are one of their sum.
        (Chunked inference keeps the per-direction path: it projects one piece at a time.)"""
        xz = self.mamba_fwd.in_proj(hidden)
        y = self.mamba_fwd.inner(xz)[0]
        y_rev = self.mamba_rev.inner(xz, reverse=True)[0]
        out_proj = self.mamba_fwd.out_proj
        if self.strategy != "add":
            return out_proj(y) * out_proj(y_rev)
        out = out_proj(y + y_rev)
        return out if out_proj.bias is None else out + out_proj.bias  # each direction adds the bias


class RCPS(nn.Module):
    """Reverse-complement parameter sharing: (B, L, 2D) -> (B, L, 2D) from a (B, L, D) -> (B, L, D) module.

    The forward half goes through the module as is; the RC half is turned to the RC strand's own orientation
    (:func:`rc_flip`), goes through the same module, and is turned back. Since RC of the full state swaps
    the halves and flips each, the result is RC-equivariant whatever the module.
    """

    def __init__(self, submodule: nn.Module) -> None:
        super().__init__()
        self.submodule = submodule

    def forward(self, hidden: Tensor, *args: Any) -> Tensor:
        fwd, rc = hidden.chunk(2, dim=-1)
        return torch.cat([self.submodule(fwd, *args), rc_flip(self.submodule(rc_flip(rc), *args))], dim=-1)


#: pooling a position on the forward strand = pooling its mirror on the RC strand (the other poolings are their
#: own mirror; segments are reversed after pooling)
_MIRRORED_POOLING = {"last": "first", "first": "last"}


class Caduceus(Mamba):
    """Caduceus masked language model: BiMamba blocks, Caduceus-PS when ``config.rcps``."""

    arch = "caduceus"
    config_class = CaduceusConfig
    config: CaduceusConfig

    def _mixer(self) -> nn.Module:
        mixer = BiMamba(self.config)
        return RCPS(mixer) if self.config.rcps else mixer

    def _norm(self) -> nn.Module:
        norm = super()._norm()
        return RCPS(norm) if self.config.rcps else norm

    @property
    def hidden_size(self) -> int:
        return 2 * self.config.d_model if self.config.rcps else self.config.d_model

    @property
    def feature_size(self) -> int:
        return self.config.d_model

    def _complement(self, device: torch.device) -> Tensor:
        return torch.as_tensor(vocab.COMPLEMENT, device=device)

    def embed_tokens(self, input_ids: Tensor) -> Tensor:
        """PS: [E(x), rc_flip(E(RC(x)))]. Reversing RC(x) in length brings position t back to complement(x_t),
        so the RC half is the channel-reversed embedding of the complementary base."""
        fwd = self.embedding(input_ids)
        if not self.config.rcps:
            return fwd
        rc = self.embedding(self._complement(input_ids.device)[input_ids]).flip(-1)
        return torch.cat([fwd, rc], dim=-1)

    def lm_logits(self, hidden: Tensor) -> Tensor:
        """PS: the forward half scores token v with embedding row v; the RC half, channel-reversed back to the RC
        strand's orientation, describes the complementary base there, so it scores v with row complement(v).
        Then logits(RC(x))[t, v] = logits(x)[L-1-t, complement(v)] exactly."""
        if not self.config.rcps:
            return super().lm_logits(hidden)
        weight = self.embedding.weight[: vocab.VOCAB_SIZE]
        fwd, rc = hidden.to(weight.dtype).chunk(2, dim=-1)
        return fwd @ weight.t() + rc.flip(-1) @ weight[self._complement(weight.device)].t()

    def pooled_features(self, hidden: Tensor, mask: Tensor | None, pooling: str, segments: int = SEGMENTS) -> Tensor:
        """PS: the average of the forward half pooled and the channel-reversed RC half pooled at the mirrored
        position: ``last`` reads the RC half at the first real position (the RC strand's last), ``first`` at
        the last one, and segments are taken in reverse order. RC of the input swaps the two terms, so the
        features are RC-invariant (exactly for unpadded inputs; with padding the pad tokens the bidirectional
        model sees break it)."""
        if not self.config.rcps:
            return pool(hidden, mask, pooling, segments)
        fwd, rc = hidden.chunk(2, dim=-1)
        fwd_features = pool(fwd, mask, pooling, segments)  # validates ``pooling``
        rc_features = pool(rc.flip(-1), mask, _MIRRORED_POOLING.get(pooling, pooling), segments)
        if pooling in ("segments", "mean_segments"):  # the segments are the last ``segments`` blocks
            width = segments * self.feature_size
            parts = rc_features[:, -width:].unflatten(1, (segments, -1)).flip(1).flatten(1)
            rc_features = torch.cat([rc_features[:, :-width], parts], 1)
        return (fwd_features + rc_features) / 2
