"""Peak training memory of one micro-batch, estimated before any real tensor is allocated.

The model is built and run under :class:`~torch._subclasses.fake_tensor.FakeTensorMode`: tensors carry shape,
dtype and device but no data, so a forward at a million tokens costs milliseconds on any machine. Fake
tensors report the device the run will use (unlike the ``meta`` device), so ``torch.autocast`` and the
models' own per-device code paths behave exactly as in training.

What is counted:

* **weights**: parameters, their gradients and AdamW's two moments (fp32: 16 bytes per parameter), plus one
  more gradient copy for DistributedDataParallel's buckets;
* **activations**: every tensor autograd saves for backward during forward and loss, deduplicated by storage
  (views share one), parameters excluded: this is what is alive when backward starts;
* **recompute**: under activation checkpointing, the activations of the largest block, rebuilt during its
  backward on top of the block inputs that checkpointing keeps;
* **backward transient**: the gradient of the largest saved activation and its producer's output, alive
  together while backward runs.

Not counted: the CUDA context, allocator fragmentation and library workspaces (cuFFT plans); the caller
compares the estimate with a fraction of the budget to leave room for them.

Accuracy (CPU, fp32, all five architectures, with and without checkpointing): 0.82-1.23x the real peak of
live bytes of a forward + backward, measured by polling glibc's ``mallinfo2`` after every operation
(``tests/test_pretrain.py``). On a CPU the resident set size can be several times that peak: glibc's malloc
keeps freed blocks, and the sequential scans' many small tensors fragment its heap (bench/RESULTS.md).

The budget (:func:`check_memory_budget`): before a pretraining run builds anything, the largest estimate over
its length schedule must fit :data:`MEMORY_HEADROOM` of ``gpu_memory_gb`` (else of the CUDA device's memory);
otherwise it fails with the largest micro-batch that would fit, without and with activation checkpointing.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import resource
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from longdna.models import build_model
from longdna.models.base import DNALanguageModel
from longdna.settings import PretrainConfig
from longdna.train import precision
from longdna.train.distributed import Distributed
from longdna.train.objectives import token_loss_sum
from longdna.train.schedule import Stage, StepBatches, length_schedule

BYTES_PER_PARAMETER = 16  # fp32 weight + gradient + AdamW exp_avg + exp_avg_sq
GIB = 2**30


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
    ]


@functools.cache
def _mallinfo2() -> Callable[[], _MallInfo2] | None:
    try:
        function = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):  # not glibc, or glibc < 2.33
        return None
    function.restype = _MallInfo2
    return function


def malloc_bytes_in_use() -> int | None:
    """Bytes glibc's malloc has handed out and not yet had back (heap + mmap'ed blocks): the live bytes of the
    process's CPU tensors plus Python's own; ``None`` without glibc >= 2.33 (or with another allocator
    preloaded, whose blocks glibc does not see: then the count stays flat). Walks malloc's free lists under
    its locks, so polling it often slows a process with a fragmented heap."""
    function = _mallinfo2()
    if function is None:
        return None
    info = function()
    return info.uordblks + info.hblkhd


class MemoryBudgetError(ValueError):
    """A training configuration would not fit the stated accelerator memory."""


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    activations: int
    recompute: int
    transient: int

    @property
    def total(self) -> int:
        return self.weights + self.activations + self.recompute + self.transient

    def describe(self) -> str:
        parts = f"weights+grads+AdamW {self.weights / GIB:.2f}, activations {self.activations / GIB:.2f}"
        if self.recompute:
            parts += f", block recompute {self.recompute / GIB:.2f}"
        return f"{self.total / GIB:.2f} GiB ({parts}, backward transient {self.transient / GIB:.2f})"


class _SavedTensors:
    """Storages saved for backward, grouped by the block (``run_block`` call) that saved them (-1: outside)."""

    def __init__(self, excluded: set[int]) -> None:
        self.excluded = excluded
        self.owner: dict[int, int] = {}
        self.nbytes: dict[int, int] = {}
        self.block = -1
        self.blocks = 0

    def pack(self, tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        key = storage._cdata
        if key not in self.excluded and key not in self.nbytes:
            self.nbytes[key] = storage.nbytes()
            self.owner[key] = self.block
        return tensor

    def total(self) -> int:
        return sum(self.nbytes.values())

    def largest_block(self) -> int:
        per_block = [0] * self.blocks
        for key, block in self.owner.items():
            if block >= 0:
                per_block[block] += self.nbytes[key]
        return max(per_block, default=0)

    def largest(self) -> int:
        return max(self.nbytes.values(), default=0)


@contextmanager
def _track_blocks(model: DNALanguageModel, saved: _SavedTensors) -> Iterator[None]:
    """Attribute saves to blocks by wrapping the model's ``run_block`` (the one place blocks are called)."""
    original = model.run_block

    def run_block(block: Callable[..., Any], *args: Any) -> Any:
        saved.block, saved.blocks = saved.blocks, saved.blocks + 1
        try:
            return original(block, *args)
        finally:
            saved.block = -1

    model.run_block = run_block  # type: ignore[method-assign]
    try:
        yield
    finally:
        del model.run_block


def _saved_by_forward(
    model: DNALanguageModel, batch: int, length: int, device: torch.device, autocast_dtype: torch.dtype | None
) -> _SavedTensors:
    saved = _SavedTensors({p.untyped_storage()._cdata for p in model.parameters()})
    inputs = torch.zeros(batch, length, dtype=torch.long, device=device)
    targets = torch.zeros(batch, length, dtype=torch.long, device=device)
    autocast = torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None)
    with _track_blocks(model, saved), torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t), autocast:
        token_loss_sum(model(inputs), targets)
    return saved


def estimate_training_memory(
    build: Callable[[], DNALanguageModel],
    batch: int,
    length: int,
    *,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    activation_checkpointing: bool = False,
    distributed: bool = False,
) -> MemoryEstimate:
    """Peak bytes of one training step on ``device`` for a micro-batch of ``batch`` x ``length`` tokens.

    ``build`` constructs the model; it runs under fake tensors (and a forked RNG, so the caller's random
    stream is untouched). A forward without checkpointing sees every block's own saves; with checkpointing
    on, a second forward gives what stays alive (block inputs and everything outside blocks).
    """
    from torch._subclasses.fake_tensor import FakeTensorMode

    with torch.random.fork_rng(devices=[]), FakeTensorMode(allow_non_fake_inputs=True), torch.device(device):
        model = build()
        model.train()
        n_params = model.num_parameters()
        model.gradient_checkpointing = False
        full = _saved_by_forward(model, batch, length, device, autocast_dtype)
        activations, recompute = full.total(), 0
        if activation_checkpointing:
            model.gradient_checkpointing = True
            activations = _saved_by_forward(model, batch, length, device, autocast_dtype).total()
            recompute = full.largest_block()
    weights = n_params * (BYTES_PER_PARAMETER + (4 if distributed else 0))
    return MemoryEstimate(weights=weights, activations=activations, recompute=recompute, transient=2 * full.largest())


# -- memory budget --------------------------------------------------------------------------------------------
#: share of the accelerator memory a configuration may plan to use (the rest: CUDA context, fragmentation)
MEMORY_HEADROOM = 0.9


def memory_budget_bytes(config: PretrainConfig, device: torch.device) -> float | None:
    if config.gpu_memory_gb is not None:
        return config.gpu_memory_gb * GIB
    if device.type == "cuda":
        return float(torch.cuda.get_device_properties(device).total_memory)
    return None


def worst_stage_memory(
    arch: str, arch_config: dict[str, Any], config: PretrainConfig, world_size: int, device: torch.device
) -> tuple[MemoryEstimate, Stage, int]:
    """The largest estimated step memory over the stages of ``config``'s length schedule, with its stage and
    per-process micro-batch."""
    worst: tuple[MemoryEstimate, Stage, int] | None = None
    for stage in length_schedule(config):
        micro = StepBatches(stage, 0, 0, 0, Distributed(world_size=world_size)).micro
        estimate = estimate_training_memory(
            lambda: build_model(arch, **arch_config),
            micro,
            stage.length,
            device=device,
            autocast_dtype=precision.autocast_dtype(config.precision, device),
            activation_checkpointing=config.activation_checkpointing,
            distributed=world_size > 1,
        )
        if worst is None or estimate.total > worst[0].total:
            worst = (estimate, stage, micro)
    assert worst is not None
    return worst


def check_memory_budget(
    arch: str, arch_config: dict[str, Any], config: PretrainConfig, world_size: int, device: torch.device
) -> MemoryEstimate | None:
    """Fail before training when one step would not fit ``MEMORY_HEADROOM`` of the memory budget, with the
    settings that would fit. Returns the estimate (None when no budget is known: CPU without gpu_memory_gb)."""
    budget = memory_budget_bytes(config, device)
    if budget is None:
        return None
    try:
        estimate, stage, micro = worst_stage_memory(arch, arch_config, config, world_size, device)
    except (RuntimeError, NotImplementedError) as err:  # an op without a fake-tensor kernel: cannot estimate
        warnings.warn(f"{arch}: memory estimate unavailable ({err}); skipping the memory check", stacklevel=2)
        return None
    limit = MEMORY_HEADROOM * budget
    if estimate.total <= limit:
        return estimate
    raise MemoryBudgetError(
        f"{arch}: one training step needs about {estimate.describe()} per process at length {stage.length}"
        f" (micro-batch of {micro} sequences),"
        f" more than {MEMORY_HEADROOM:.0%} of the {budget / GIB:.1f} GiB budget.\n"
        + "\n".join(_memory_suggestions(arch, arch_config, config, world_size, device, limit))
    )


def _memory_suggestions(
    arch: str,
    arch_config: dict[str, Any],
    config: PretrainConfig,
    world_size: int,
    device: torch.device,
    limit: float,
) -> list[str]:
    """The largest micro-batch that fits, without and with activation checkpointing."""
    per_process = config.batch_size // world_size
    current = min(config.micro_batch_size or config.batch_size, per_process)
    divisors = [d for d in range(1, current + 1) if per_process % d == 0]  # micro-batches that tile the batch

    def needed(micro: int, checkpointing: bool) -> float:
        changed = dataclasses.replace(config, micro_batch_size=micro, activation_checkpointing=checkpointing)
        return worst_stage_memory(arch, arch_config, changed, world_size, device)[0].total

    lines = []
    for checkpointing in [True] if config.activation_checkpointing else [False, True]:
        # activations grow with the micro-batch: binary search for the largest one that fits
        low, high, best = 0, len(divisors) - 1, None
        while low <= high:
            middle = (low + high) // 2
            if (bytes_needed := needed(divisors[middle], checkpointing)) <= limit:
                best, low = (divisors[middle], bytes_needed), middle + 1
            else:
                high = middle - 1
        if best is None:
            continue
        changes = [f"micro_batch_size: {best[0]}"] if best[0] != current else []
        changes += ["activation_checkpointing: true"] if checkpointing and not config.activation_checkpointing else []
        lines.append(
            f"  try {', '.join(changes)} (about {best[1] / GIB:.2f} GiB; gradient accumulation keeps the"
            f" global batch of {config.batch_size} sequences)"
        )
    if not lines:
        lines.append(
            "  even one sequence per forward with activation_checkpointing does not fit: use a shorter"
            " seq_len, a smaller model or a GPU with more memory"
        )
    return ["Suggestions (pretrain config):", *lines]


def peak_memory_mb(device: torch.device) -> float:
    """Peak allocated accelerator memory on CUDA; peak resident set size of the process on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
