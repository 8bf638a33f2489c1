"""A job given GPUs fails at start, naming the cause, when torch sees none; other jobs take the CPU."""

from __future__ import annotations

import pytest
import torch

from longdna.device import GPUUnavailableError, gpu_grants, job_device, require_visible_gpus
from longdna.train.distributed import Distributed

SLURM_GPU_JOB = {"SLURM_JOB_ID": "7", "SLURM_GPUS_ON_NODE": "2", "CUDA_VISIBLE_DEVICES": "0,1"}


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("SLURM_JOB_ID", "SLURM_GPUS_ON_NODE", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(name, raising=False)


def test_signs_of_a_gpu_job() -> None:
    assert gpu_grants(0, {}) == []
    assert gpu_grants(0, {"SLURM_JOB_ID": "7"}) == []  # a CPU job on the cluster
    assert gpu_grants(0, {"SLURM_JOB_ID": "7", "CUDA_VISIBLE_DEVICES": ""}) == []  # GPUs hidden on purpose
    assert gpu_grants(0, {"CUDA_VISIBLE_DEVICES": "0"}) == []  # set by hand outside SLURM: no grant
    assert gpu_grants(0, {"SLURM_JOB_ID": "7", "CUDA_VISIBLE_DEVICES": "3"}) == ["SLURM set CUDA_VISIBLE_DEVICES=3"]
    assert gpu_grants(2, SLURM_GPU_JOB) == ["its resources ask for 2 GPU(s)", "SLURM allocated it SLURM_GPUS_ON_NODE=2"]


@pytest.mark.parametrize(("build", "cause"), [(None, "CPU-only build"), ("12.9", "built for CUDA 12.9")])
def test_gpu_job_without_cuda_fails_naming_the_cause(
    no_cuda: None, monkeypatch: pytest.MonkeyPatch, build: str | None, cause: str
) -> None:
    monkeypatch.setattr(torch.version, "cuda", build)
    with pytest.raises(GPUUnavailableError, match=rf"given GPUs \(its resources ask for 1 GPU\(s\)\), but .*{cause}"):
        require_visible_gpus(1, {})
    for name, value in SLURM_GPU_JOB.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(GPUUnavailableError, match=r"SLURM_GPUS_ON_NODE=2"):
        job_device()
    with pytest.raises(GPUUnavailableError):  # the pretraining engine's device
        Distributed().device()


def test_cpu_job_runs_on_the_cpu(no_cuda: None) -> None:
    require_visible_gpus(0)
    assert job_device() == torch.device("cpu") == Distributed().device()


def test_gpu_job_with_cuda_gets_its_local_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    require_visible_gpus(4, SLURM_GPU_JOB)
    assert job_device(1) == torch.device("cuda", 1)
