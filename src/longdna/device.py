"""The device a job runs its model on, and the check that a job given GPUs can use them.

Without the check, a job on a GPU node whose PyTorch sees no GPU (a CPU-only build of torch, a driver older than
the build needs, GPUs hidden by CUDA_VISIBLE_DEVICES) would train on the CPU: silently, and many times slower.
It fails at start instead, naming the sign that it was given GPUs and why torch sees none.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

#: values of CUDA_VISIBLE_DEVICES that hide every GPU
HIDDEN_DEVICES = {"", "-1", "NoDevFiles"}


class GPUUnavailableError(RuntimeError):
    """The job was given GPUs, but PyTorch sees none."""


def gpu_grants(requested: int = 0, env: Mapping[str, str] | None = None) -> list[str]:
    """Every sign that this job was given GPUs, in words: its Snakemake resources (``requested``, from the
    rule's ``gpu``/``gres``) and SLURM's GPU allocation (SLURM_GPUS_ON_NODE, or CUDA_VISIBLE_DEVICES in a SLURM
    job). Empty for a job that was given none."""
    env = os.environ if env is None else env
    grants = []
    if requested > 0:
        grants.append(f"its resources ask for {requested} GPU(s)")
    if int(env.get("SLURM_GPUS_ON_NODE") or 0) > 0:
        grants.append(f"SLURM allocated it SLURM_GPUS_ON_NODE={env['SLURM_GPUS_ON_NODE']}")
    elif "SLURM_JOB_ID" in env and env.get("CUDA_VISIBLE_DEVICES", "").strip() not in HIDDEN_DEVICES:
        grants.append(f"SLURM set CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']}")
    return grants


def require_visible_gpus(requested: int = 0, env: Mapping[str, str] | None = None) -> None:
    """Raise :class:`GPUUnavailableError` when the job was given GPUs (:func:`gpu_grants`) but
    ``torch.cuda.is_available()`` is False."""
    grants = gpu_grants(requested, env)
    if not grants or torch.cuda.is_available():
        return
    if torch.version.cuda is None:
        cause = (
            f"this torch ({torch.__version__}) is a CPU-only build; install a CUDA build on GPU nodes (docs/install.md)"
        )
    else:
        cause = (
            f"this torch ({torch.__version__}) is built for CUDA {torch.version.cuda} but finds no usable GPU"
            " (no NVIDIA driver, a driver older than the build needs, or CUDA_VISIBLE_DEVICES hides them;"
            " see nvidia-smi)"
        )
    raise GPUUnavailableError(f"this job was given GPUs ({'; '.join(grants)}), but {cause}")


def job_device(local_rank: int = 0) -> torch.device:
    """``cuda:local_rank`` when torch sees a GPU, else the CPU -- unless the job was given GPUs, which fails
    (:func:`require_visible_gpus`) instead of running on the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    require_visible_gpus()
    return torch.device("cpu")
