"""What every architecture shares: the language-model interface, tied LM head, checkpointing, config handling.

A model is a :class:`DNALanguageModel` subclass with a dataclass config. Subclasses implement
:meth:`DNALanguageModel.embed`; everything else (logits, parameter count, activation checkpointing, the
reference-path switch) lives here so that the five architectures behave the same to the trainer.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from longdna import vocab


def padded_vocab_size(vocab_size: int = vocab.VOCAB_SIZE, multiple: int = 8) -> int:
    """Rows of the embedding table: the vocabulary rounded up to ``multiple`` (12 -> 16 for multiple 8)."""
    return int(math.ceil(vocab_size / multiple) * multiple)


def config_from_dict(config_class: type, values: dict[str, Any], *, where: str) -> Any:
    """Instantiate a config dataclass, naming unknown keys and the valid ones instead of a bare TypeError."""
    names = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{where}: unknown config key(s) {unknown}; valid keys are {sorted(names)}")
    return config_class(**values)


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
        """Width of :meth:`pooled_features`, what a sequence-level head consumes."""
        return self.hidden_size

    def embed(self, input_ids: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def lm_logits(self, hidden: Tensor) -> Tensor:
        """Tied LM head over the real vocabulary: (B, L, hidden) -> (B, L, 12)."""
        weight = self.embedding.weight[: vocab.VOCAB_SIZE]
        return hidden.to(weight.dtype) @ weight.t()

    def forward(self, input_ids: Tensor) -> Tensor:
        return self.lm_logits(self.embed(input_ids))

    def pooled_features(self, hidden: Tensor, mask: Tensor | None, pooling: str) -> Tensor:
        """Sequence features (B, feature_size) from hidden states; RC-equivariant models override this."""
        return pool(hidden, mask, pooling)

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

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)


POOLINGS = ("mean", "max", "last", "first")


def pool(hidden: Tensor, mask: Tensor | None, pooling: str) -> Tensor:
    """Pool (B, L, D) hidden states to (B, D) over real (mask True) positions.

    ``last`` takes the last real position, ``first`` the first one, ``mean`` averages real positions, ``max``
    takes each channel's maximum over real positions (a presence detector); with ``mask=None`` every position
    is real.
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
    raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
