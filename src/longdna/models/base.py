"""What every architecture shares: the language-model interface, tied LM head, checkpointing, config handling.

A model is a :class:`DNALanguageModel` subclass with a dataclass config. Subclasses implement
:meth:`DNALanguageModel.embed`; everything else (logits, parameter count, activation checkpointing, the
reference-path switch) lives here so that the five architectures behave the same to the trainer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from longdna import vocab
from longdna.models.catalog import POOLINGS, SEGMENTS


def padded_vocab_size(vocab_size: int = vocab.VOCAB_SIZE, multiple: int = 8) -> int:
    """Rows of the embedding table: the vocabulary rounded up to ``multiple`` (12 -> 16 for multiple 8)."""
    return int(math.ceil(vocab_size / multiple) * multiple)


def no_weight_decay(*params: nn.Parameter) -> None:
    """Flag parameters the optimiser must not decay (filters, SSM dynamics); norms and biases are implicit."""
    for p in params:
        p._no_weight_decay = True  # type: ignore[attr-defined]


class DNALanguageModel(nn.Module):
    """Base class: ``forward(input_ids) -> logits (B, L, 12)``, ``embed(input_ids) -> hidden (B, L, hidden_size)``.

    Subclasses set ``arch`` and ``config_class``, build ``self.embedding`` (an ``nn.Embedding`` with the padded
    vocabulary) and implement :meth:`embed`. The LM head is tied to the embedding and only scores the 12 real
    tokens, so padded rows can never receive probability mass.
    """

    arch: ClassVar[str]
    config_class: ClassVar[type]

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config
        self.gradient_checkpointing = False

    # -- interface -------------------------------------------------------------------------------------------
    @property
    def causal(self) -> bool:
        """True for next-token models; False for bidirectional (masked-LM) ones."""
        return bool(getattr(self.config, "causal", True))

    @property
    def hidden_size(self) -> int:
        return int(self.config.d_model)

    @property
    def feature_size(self) -> int:
        """Width of :meth:`pooled_features` per pooled position (times ``segments`` for ``segments`` pooling)."""
        return self.hidden_size

    def embed(self, input_ids: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def lm_logits(self, hidden: Tensor) -> Tensor:
        """Tied LM head over the real vocabulary: (B, L, hidden) -> (B, L, 12)."""
        weight = self.embedding.weight[: vocab.VOCAB_SIZE]
        return hidden.to(weight.dtype) @ weight.t()

    def forward(self, input_ids: Tensor) -> Tensor:
        return self.lm_logits(self.embed(input_ids))

    def pooled_features(self, hidden: Tensor, mask: Tensor | None, pooling: str, segments: int = SEGMENTS) -> Tensor:
        """Sequence features (B, pooled_width(feature_size, pooling, segments)) from hidden states (see
        :func:`pool`); RC-equivariant models override this."""
        return pool(hidden, mask, pooling, segments)

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of distinct parameters (tied and shared tensors counted once)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # -- execution options -----------------------------------------------------------------------------------
    def run_block(self, block: Callable[..., Any], *args: Any) -> Any:
        """Call one residual block, under activation checkpointing when it is enabled and gradients flow.

        Checkpointing wraps the call, not the module, so state-dict names never change with the flag.
        """
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    @contextmanager
    def reference_path(self) -> Iterator[None]:
        """Within the block every mixer uses its slow, obviously-correct reference implementation."""
        mixers = [m for m in self.modules() if hasattr(m, "use_reference")]
        previous = [m.use_reference for m in mixers]
        for m in mixers:
            m.use_reference = True
        try:
            yield
        finally:
            for m, prev in zip(mixers, previous):
                m.use_reference = prev


def pool(hidden: Tensor, mask: Tensor | None, pooling: str, segments: int = SEGMENTS) -> Tensor:
    """Pool (B, L, D) hidden states over real (mask True) positions: (B, D), or (B, segments * D) for ``segments``.

    ``last`` takes the last real position, ``first`` the first one, ``mean`` averages real positions, ``max``
    takes each channel's maximum over real positions (a presence detector); with ``mask=None`` every position
    is real. ``segments`` cuts a row's real positions into ``segments`` equal, consecutive parts and concatenates
    their sums, each divided by the row's real length (so the parts add up to ``mean``), in sequence order:
    unlike the others it keeps where along the sequence a feature occurs, which position-aligned tasks (a TATA
    box 30 bp upstream of the TSS, a splice site in the centre) need -- mean or max pooling of a convolutional or
    recurrent backbone is blind to it. ``mean_segments`` concatenates ``mean`` and ``segments`` (B, (1 + segments)
    * D): the same information as ``segments``, but what the whole sequence holds gets weights of its own, so a
    head learns composition (k-mer content, a motif anywhere) at ``mean``'s pace and where it occurs on top.
    """
    batch, length, _ = hidden.shape
    if mask is None:
        mask = torch.ones(batch, length, dtype=torch.bool, device=hidden.device)
    positions = torch.arange(length, device=hidden.device).expand(batch, length)
    rows = torch.arange(batch, device=hidden.device)
    if pooling == "mean":
        weights = mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
    if pooling == "max":
        return hidden.masked_fill(~mask.unsqueeze(-1), torch.finfo(hidden.dtype).min).amax(1)
    if pooling == "last":
        return hidden[rows, torch.where(mask, positions, -1).amax(1).clamp_min(0)]
    if pooling == "first":
        return hidden[rows, torch.where(mask, positions, length).amin(1).clamp_max(length - 1)]
    if pooling == "segments":
        # Each part's mean divided by the number of parts: the parts add up to the mean pooling, and a linear
        # head on them moves its scores per optimiser step as a mean-pooling head does. Undivided, the head's
        # `segments` weight blocks each take a full Adam step along what is mostly one shared direction, a step
        # `segments` times too large.
        weights = segment_weights(mask, segments).to(hidden.dtype)  # (B, L, K), each part's weights sum to 1
        return (torch.einsum("blk,bld->bkd", weights, hidden) / segments).flatten(1)
    if pooling == "mean_segments":
        return torch.cat([pool(hidden, mask, "mean"), pool(hidden, mask, "segments", segments)], 1)
    raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")


def segment_weights(mask: Tensor, segments: int) -> Tensor:
    """(B, L, segments) share of each position in each segment: a row's n real positions are laid on [0,
    segments) (position p covers [p, p + 1) * segments / n) and each segment takes the overlap. A base
    straddling a boundary is split between its two segments, so the layout is mirror-symmetric (reversing
    the real positions reverses the segments), which keeps ``segments`` pooling exact under reverse
    complementing."""
    if segments < 1:
        raise ValueError(f"segments must be >= 1, not {segments}")
    real = mask.to(torch.float64)
    start = (torch.cumsum(real, 1) - real) * segments / real.sum(1, keepdim=True).clamp_min(1.0)  # (B, L)
    end = start + real * segments / real.sum(1, keepdim=True).clamp_min(1.0)
    edges = torch.arange(segments, dtype=torch.float64, device=mask.device)
    overlap = torch.minimum(end.unsqueeze(-1), edges + 1) - torch.maximum(start.unsqueeze(-1), edges)
    return (overlap.clamp_min(0.0) * real.unsqueeze(-1)).float()


def pooled_width(hidden_width: int, pooling: str, segments: int = SEGMENTS) -> int:
    """Width of :func:`pool`'s output for hidden states of ``hidden_width`` channels."""
    return hidden_width * {"segments": segments, "mean_segments": 1 + segments}.get(pooling, 1)
