"""Fused kernels for the recurrences of Mamba / Caduceus (selective scan) and Hawk (linear scan), and the choice
between them and the PyTorch scans.

Backends (a model's ``scan_backend`` setting; ``reference_path()`` overrides all of them):

* ``"torch"``: the PyTorch scans of :mod:`longdna.models.scan` (the sequential loop on a CPU, the chunked
  parallel scan on other devices), discretised ``scan_chunk_size`` positions at a time for Mamba;
* ``"numba"``: :mod:`.numba_kernels`, fused CPU kernels compiled by numba (a dependency; no compiler to install);
* ``"triton"``: :mod:`.triton_kernels`, fused GPU kernels compiled by Triton (ships with CUDA builds of PyTorch;
  optional). Under ``TRITON_INTERPRET=1`` they also run on CPU tensors, which is how the tests check them;
* ``"mamba_ssm"``: state-spaces/mamba's CUDA kernel (selective scan only; it cannot start from a state);
* ``"auto"``: on a CUDA device mamba_ssm where installed and no initial state is given, else Triton where
  installed, else torch; on a CPU numba, else torch.

Every kernel module is imported on first use, so the package imports without numba or Triton.
"""

from __future__ import annotations

import functools
import importlib
import os
from types import ModuleType

import torch
from torch import Tensor

BACKENDS = ("auto", "torch", "numba", "triton", "mamba_ssm")


@functools.cache
def kernels(backend: str) -> ModuleType | None:
    """The kernel module of ``backend`` ("numba", "triton", "mamba_ssm"), or None where it cannot be imported."""
    module = {
        "numba": "longdna.models.kernels.numba_kernels",
        "triton": "longdna.models.kernels.triton_kernels",
        "mamba_ssm": "mamba_ssm.ops.selective_scan_interface",
    }[backend]
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def triton_runs_on(device: torch.device) -> bool:
    """Triton compiles for CUDA devices; its interpreter (``TRITON_INTERPRET=1``) runs on CPU tensors."""
    return device.type == "cuda" or (device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1")


def choose_backend(requested: str, device: torch.device, *, selective: bool, initial_state: bool) -> str:
    """The backend that runs a scan on ``device``: ``requested`` itself (checked), or what ``"auto"`` picks.

    ``selective``: the selective scan (Mamba) rather than the linear one (Hawk); ``initial_state``: the scan
    continues from a given state (chunked inference), which mamba_ssm cannot do.
    """
    if requested == "auto":
        if device.type == "cuda":
            if selective and not initial_state and kernels("mamba_ssm") is not None:
                return "mamba_ssm"
            return "triton" if kernels("triton") is not None else "torch"
        return "numba" if device.type == "cpu" and kernels("numba") is not None else "torch"
    if requested not in BACKENDS:
        raise ValueError(f"scan backend must be one of {BACKENDS}, not {requested!r}")
    problem = None
    if requested == "mamba_ssm" and not selective:
        problem = "mamba_ssm only has the selective scan (Mamba, Caduceus)"
    elif requested == "mamba_ssm" and (device.type != "cuda" or initial_state):
        problem = "mamba_ssm needs CUDA tensors and no initial state (chunked inference carries one)"
    elif requested == "numba" and device.type != "cpu":
        problem = f"numba's kernels run on CPU tensors, not {device.type}"
    elif requested == "triton" and not triton_runs_on(device):
        problem = "Triton needs CUDA tensors (or TRITON_INTERPRET=1 for its interpreter on CPU tensors)"
    if problem is None and requested != "torch" and kernels(requested) is None:
        problem = f"{requested} is not installed (or fails to import)"
    if problem:
        raise RuntimeError(f"scan backend {requested!r} cannot run here: {problem}")
    return requested


def has_data(*tensors: Tensor | None) -> bool:
    """False for fake or meta tensors (the memory estimate runs the model under FakeTensorMode): kernels then
    only allocate their outputs and what they save, so the estimate sees the kernel's memory."""
    from torch._subclasses.fake_tensor import is_fake

    return not any(t is not None and (t.device.type == "meta" or is_fake(t)) for t in tensors)
