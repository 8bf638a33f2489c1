"""Inference helpers shared by the evaluations that re-run models (variant effects, length extrapolation)."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import Tensor

from longdna import vocab
from longdna.device import job_device
from longdna.models import DNALanguageModel


def inference_device() -> torch.device:
    """The GPU when torch sees one, else the CPU; a job given GPUs that torch cannot see fails instead."""
    return job_device()


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast for ``bf16``, and for ``auto`` on CUDA; plain float32 otherwise."""
    enabled = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def embed(backbone: DNALanguageModel, input_ids: Tensor, chunk_size: int | None) -> Tensor:
    """Hidden states (B, L, hidden); ``chunk_size`` runs recurrent backbones chunk by chunk (``embed_chunked``,
    exact, memory bounded by the chunk) when the input is longer. Others always run in one pass."""
    if chunk_size and input_ids.shape[1] > chunk_size and hasattr(backbone, "embed_chunked"):
        return backbone.embed_chunked(input_ids, chunk_size)
    return backbone.embed(input_ids)


def encode_batch(sequences: list[str], device: torch.device) -> Tensor:
    """Equal-length sequences as a (B, L) tensor of token ids."""
    return torch.from_numpy(np.stack([vocab.encode(s) for s in sequences]).astype(np.int64)).to(device)


def window_mask(length: int, centres: Tensor, width: int) -> Tensor:
    """(B, length) mask of the ``width`` positions centred on each row's centre (index ``centre - width // 2``
    first), clipped to the sequence."""
    positions = torch.arange(length, device=centres.device)
    first = centres[:, None] - width // 2
    return (positions >= first) & (positions < first + width)
