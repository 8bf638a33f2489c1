"""Mixed precision of training and evaluation: the ``precision`` setting (auto, fp32, bf16) on a device."""

from __future__ import annotations

import contextlib

import torch


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``precision`` (auto, fp32, bf16) on ``device``; None means plain fp32."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def autocast_context(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    dtype = autocast_dtype(precision, device)
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None)
