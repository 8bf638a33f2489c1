"""The pretraining engine: one loop for CPU, one GPU, or many GPUs/nodes under ``torchrun``.

Determinism is by construction: the i-th training sample (window position, reverse-complement flip, MLM
mask) is a pure function of ``(seed, i)``, and the step-``s`` batch holds samples ``[seen_s, seen_s + B)``
split into disjoint contiguous slices per rank. The loss is the sum of token losses divided by the global
number of target tokens, so a 2-process run and a 1-process run with the same global batch compute the same
gradient. A checkpoint therefore only needs the step, the weights, the optimiser and each process's RNG
state (dropout) to resume exactly.

A SIGTERM or SIGUSR1 (what SLURM sends before a kill or requeue) makes the loop finish the current step,
write a checkpoint and exit with :data:`PREEMPTED_EXIT_CODE`; rerunning resumes from it.

Command line (what the workflow runs, directly or under ``torchrun``; see :mod:`longdna.train.launch`)::

    python -m longdna.train.pretrain --arch hyenadna --arch-config '{"preset": "tiny-1k"}' \\
        --shards results/shards --out results/pretrain/hyenadna --config pretrain.json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import resource
import signal
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from longdna.data.shards import GenomeShards
from longdna.data.windows import RandomWindows, SequentialWindows, mix64
from longdna.io import atomic_path, write_json, write_text
from longdna.models import ARCHITECTURES, DNALanguageModel, build_model, save_pretrained
from longdna.models.base import config_from_dict
from longdna.train.checkpoints import CheckpointStore, rng_state, set_rng_state
from longdna.train.distributed import Distributed
from longdna.train.memory import GIB, MemoryBudgetError, MemoryEstimate, estimate_training_memory
from longdna.train.objectives import BITS_PER_NAT, IGNORE_INDEX, LMExamples, token_loss_sum
from longdna.train.optim import build_optimizer, warmup_cosine

#: exit status of a run stopped by SIGTERM after writing its checkpoint (EX_TEMPFAIL: "try again")
PREEMPTED_EXIT_CODE = 75
#: written into the output directory by a preempted run, so a launcher can tell preemption from failure
PREEMPTED_MARKER = "preempted.json"
#: the metrics log in the output directory; every checkpoint keeps a copy of it as of its step
METRICS_FILE = "metrics.jsonl"
#: share of the accelerator memory a configuration may plan to use (the rest: CUDA context, fragmentation)
MEMORY_HEADROOM = 0.9


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm became NaN or infinite."""


class Preempted(SystemExit):
    """Raised after the preemption checkpoint; exits the process with :data:`PREEMPTED_EXIT_CODE`."""

    def __init__(self, step: int) -> None:
        super().__init__(PREEMPTED_EXIT_CODE)
        self.step = step


@dataclass
class PretrainConfig:
    """The ``pretrain`` settings of the workflow config (``workflow/schemas``); lengths are in tokens (bases)."""

    seq_len: int = 1024
    batch_size: int = 16  # global sequences per optimiser step at seq_len: batch_size * seq_len tokens per step
    micro_batch_size: int | None = None  # sequences per forward per process at seq_len (None: no accumulation)
    max_steps: int = 1000
    lr: float = 6e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping (the norm is still logged)
    objective: str = "auto"  # causal | masked | auto (the model's: causal models next-token, others MLM)
    mask_probability: float = 0.15
    rc_probability: float = 0.0
    max_n_fraction: float = 0.1
    seq_len_warmup: dict[str, int] | None = None  # {start_length, steps_per_stage}: HyenaDNA-style doubling
    eval_every: int = 100
    eval_windows: int = 32
    eval_lengths: list[int] = field(default_factory=list)  # test-split perplexity per context length at the end
    log_every: int = 10
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    export: str = "final"  # weights written as the stage output: final | best (lowest validation loss)
    seed: int = 0
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    compile: bool = False
    activation_checkpointing: bool = False
    gpu_memory_gb: float | None = None  # memory budget per process; None: the CUDA device's (no check on CPU)
    num_workers: int = 0
    threads: int | None = None

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PretrainConfig:
        config = config_from_dict(cls, values, where="pretrain config")
        config.betas = tuple(config.betas)  # type: ignore[assignment]
        config.validate()
        return config

    @property
    def tokens_per_step(self) -> int:
        """The global batch in tokens, the same in every stage of the sequence-length warm-up."""
        return self.batch_size * self.seq_len

    def validate(self) -> None:
        choices = {"export": ("final", "best"), "precision": ("auto", "fp32", "bf16"),
                   "objective": ("auto", "causal", "masked")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"pretrain.{name} must be one of {allowed}, not {getattr(self, name)!r}")
        for name in ("seq_len", "batch_size", "max_steps", "eval_every", "eval_windows", "log_every",
                     "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"pretrain.{name} must be at least 1, not {getattr(self, name)}")
        if self.micro_batch_size is not None and not 1 <= self.micro_batch_size <= self.batch_size:
            raise ValueError(f"pretrain.micro_batch_size must be in [1, batch_size={self.batch_size}]")
        if not 0 <= self.rc_probability <= 1 or not 0 < self.mask_probability < 1:
            raise ValueError("pretrain.rc_probability must be in [0, 1] and mask_probability in (0, 1)")
        length_schedule(self)  # raises on an inconsistent seq_len_warmup


@dataclass(frozen=True)
class Stage:
    first_step: int
    length: int
    batch_size: int  # global sequences per step
    micro_batch_size: int  # sequences per forward per process (capped by the per-process batch)


def length_schedule(config: PretrainConfig) -> list[Stage]:
    """Sequence-length warm-up: lengths double from ``start_length`` to ``seq_len``, each for
    ``steps_per_stage`` steps, with tokens per step (and per forward) held constant."""
    micro = config.micro_batch_size or config.batch_size
    stages, step = [], 0
    warmup = config.seq_len_warmup
    if warmup:
        if set(warmup) != {"start_length", "steps_per_stage"}:
            raise ValueError(
                f"pretrain.seq_len_warmup needs exactly start_length and steps_per_stage, not {sorted(warmup)}"
            )
        length, per_stage = int(warmup["start_length"]), int(warmup["steps_per_stage"])
        factor = config.seq_len // length if length > 0 else 0
        # doubling only lands on seq_len (and keeps tokens per step exact) from seq_len / 2^k
        if factor < 1 or config.seq_len % length or factor & (factor - 1) or per_stage < 1:
            raise ValueError(
                f"pretrain.seq_len_warmup: start_length ({length}) must be seq_len ({config.seq_len}) divided by a"
                f" power of two, and steps_per_stage ({per_stage}) at least 1"
            )
        while length < config.seq_len:
            factor = config.seq_len // length
            stages.append(Stage(step, length, config.batch_size * factor, micro * factor))
            step += per_stage
            length *= 2
    stages.append(Stage(step, config.seq_len, config.batch_size, micro))
    return stages


def stage_at(stages: list[Stage], step: int) -> Stage:
    return [s for s in stages if s.first_step <= step][-1]


def seen_before(stages: list[Stage], step: int) -> tuple[int, int]:
    """(samples, tokens) consumed by the steps before ``step``; the samples count is also the global index of
    the first sample of ``step``."""
    samples = tokens = 0
    for i, stage in enumerate(stages):
        end = stages[i + 1].first_step if i + 1 < len(stages) else math.inf
        steps = max(0, min(step, end) - stage.first_step)
        samples += steps * stage.batch_size
        tokens += steps * stage.batch_size * stage.length
    return int(samples), int(tokens)


class StepBatches:
    """Batch sampler: for each step, this rank's slice of the global batch, in micro-batches."""

    def __init__(self, stage: Stage, first_step: int, last_step: int, first_sample: int, dist: Distributed) -> None:
        if stage.batch_size % dist.world_size:
            raise ValueError(
                f"global batch of {stage.batch_size} sequences (length {stage.length}) is not divisible by"
                f" {dist.world_size} processes"
            )
        self.per_rank = stage.batch_size // dist.world_size
        self.micro = min(self.per_rank, stage.micro_batch_size)
        if self.per_rank % self.micro:
            raise ValueError(f"per-process batch {self.per_rank} is not a multiple of micro batch {self.micro}")
        self.steps = last_step - first_step
        self.first_sample = first_sample
        self.stage = stage
        self.rank = dist.rank

    @property
    def accumulation(self) -> int:
        return self.per_rank // self.micro

    def __len__(self) -> int:
        return self.steps * self.accumulation

    def __iter__(self) -> Iterator[list[int]]:
        for s in range(self.steps):
            base = self.first_sample + s * self.stage.batch_size + self.rank * self.per_rank
            for a in range(self.accumulation):
                yield list(range(base + a * self.micro, base + (a + 1) * self.micro))


class Preemption:
    """Turns SIGTERM (and SIGUSR1, SLURM's configurable warning) into a flag checked between steps."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Preemption:
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def resolve_objective(config: PretrainConfig, model: DNALanguageModel) -> str:
    if config.objective == "auto":
        return "causal" if model.causal else "masked"
    if config.objective == "causal" and not model.causal:
        raise ValueError(f"{model.arch} is bidirectional: a causal objective would let it see the targets")
    return config.objective


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``precision`` (auto, fp32, bf16) on ``device``; None means plain fp32."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def autocast_context(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    dtype = autocast_dtype(precision, device)
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None)


def peak_memory_mb(device: torch.device) -> float:
    """Peak allocated accelerator memory on CUDA; peak resident set size of the process on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def rank_seed(seed: int, rank: int) -> int:
    """Seed of a process's own random stream (dropout), distinct per rank and from the initialisation seed."""
    return mix64(seed, rank, 0xD40) & (2**63 - 1)


class MetricsLog:
    """``metrics.jsonl`` (one JSON object per row; ``kind`` train, valid or test) and TensorBoard events,
    written by the main process only. On resume, rows after the checkpoint's step and the end-of-run test
    rows are dropped: they are about to be recomputed.

    Snakemake deletes the outputs of a failed job -- on SLURM even while a preempted run is still writing its
    checkpoint -- so ``metrics.jsonl`` can vanish under a run. The rows are therefore also kept in memory:
    every checkpoint stores a copy of them (``history``: a resumed run takes its rows from there, from the
    file only for checkpoints without a copy), and :meth:`finish` rewrites the file whole."""

    def __init__(self, path: Path, enabled: bool, resume_step: int, history: Path | None = None) -> None:
        self.path, self.enabled, self.writer = path, enabled, None
        self.lines: list[str] = []
        if not enabled:
            return
        source = history if history is not None and history.exists() else path  # the copy is complete
        if resume_step > 0 and source.exists():
            self.lines = [line for line in source.read_text().splitlines()
                          if (row := json.loads(line))["step"] <= resume_step and row["kind"] != "test"]
        write_text(path, self.text())
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # TensorBoard is optional at run time
            return
        self.writer = SummaryWriter(str(path.parent / "tensorboard"), purge_step=resume_step + 1)

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.lines.append(json.dumps(row))
        with open(self.path, "a") as fh:
            fh.write(self.lines[-1] + "\n")
        if self.writer is not None:
            tag = row["kind"] if row["kind"] != "test" else f"test_length_{row['seq_len']}"
            for key, value in row.items():
                if key not in ("step", "kind") and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{tag}/{key}", value, row["step"])

    def text(self) -> str:
        return "".join(line + "\n" for line in self.lines)

    def finish(self) -> None:
        """Rewrite the file from memory (complete even if it was deleted or truncated during the run)."""
        if self.enabled:
            write_text(self.path, self.text())

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@torch.no_grad()
def evaluate_lm(
    model: torch.nn.Module,
    examples: LMExamples,
    batch_size: int,
    device: torch.device,
    dist: Distributed,
    autocast: contextlib.AbstractContextManager,
) -> dict[str, float]:
    """Mean loss (nats), bits per base and perplexity over ``examples`` (sharded across processes);
    ``tokens`` is the number of target tokens scored."""
    was_training = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=device)
    indices = list(range(dist.rank, len(examples), dist.world_size))
    for i in range(0, len(indices), batch_size):
        inputs, targets = zip(*(examples[j] for j in indices[i : i + batch_size]))
        inputs, targets = torch.stack(inputs).to(device), torch.stack(targets).to(device)
        with autocast:
            logits = model(inputs)
        loss_sum, count = token_loss_sum(logits, targets)
        total += torch.stack([loss_sum.double(), count.double()])
    dist.all_reduce(total)
    model.train(was_training)
    loss = float(total[0] / total[1].clamp_min(1))
    return {"loss": loss, "bits_per_base": loss * BITS_PER_NAT, "perplexity": math.exp(loss), "tokens": int(total[1])}


# -- memory budget --------------------------------------------------------------------------------------------
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
            lambda: build_model(arch, **arch_config), micro, stage.length, device=device,
            autocast_dtype=autocast_dtype(config.precision, device),
            activation_checkpointing=config.activation_checkpointing, distributed=world_size > 1,
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
    arch: str, arch_config: dict[str, Any], config: PretrainConfig, world_size: int, device: torch.device,
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
        lines.append(f"  try {', '.join(changes)} (about {best[1] / GIB:.2f} GiB; gradient accumulation keeps the"
                     f" global batch of {config.batch_size} sequences)")
    if not lines:
        lines.append("  even one sequence per forward with activation_checkpointing does not fit: use a shorter"
                     " seq_len, a smaller model or a GPU with more memory")
    return ["Suggestions (pretrain config):", *lines]


# -- the training loop ----------------------------------------------------------------------------------------
class Trainer:
    """One pretraining run: setup (and resume) in the constructor, :meth:`run` trains, evaluates and exports."""

    def __init__(
        self,
        arch: str,
        arch_config: dict[str, Any],
        shards_dir: str | os.PathLike,
        out_dir: str | os.PathLike,
        config: PretrainConfig,
        progress: bool = True,
        dist: Distributed | None = None,
    ) -> None:
        self.arch, self.config, self.out_dir, self.progress = arch, config, Path(out_dir), progress
        self.dist = Distributed.from_env() if dist is None else dist
        self.device = self.dist.device()
        if config.threads:
            torch.set_num_threads(config.threads)
        self.stages = length_schedule(config)
        for stage in self.stages:  # batch / process / micro-batch divisibility, before any work
            StepBatches(stage, 0, 0, 0, self.dist)
        self.memory = check_memory_budget(arch, arch_config, config, self.dist.world_size, self.device)
        torch.manual_seed(config.seed)  # the same initial weights in every process and every attempt
        self.model = build_model(arch, **arch_config).to(self.device)
        self.model.gradient_checkpointing = config.activation_checkpointing
        self.objective = resolve_objective(config, self.model)
        self.optimizer = build_optimizer(self.model, config.lr, config.weight_decay, config.betas)
        self.shards = GenomeShards(shards_dir)
        self.valid = self.examples("valid", config.seq_len, count=config.eval_windows)
        lengths = config.eval_lengths or [config.seq_len]
        self.test = {n: self.examples("test", n, count=config.eval_windows) for n in lengths}
        self.eval_batch = config.micro_batch_size or max(1, config.batch_size // self.dist.world_size)
        self.store = CheckpointStore(self.out_dir / "checkpoints", keep_last=config.keep_checkpoints)
        torch.manual_seed(rank_seed(config.seed, self.dist.rank))
        self.step = 0
        if self.dist.is_main:
            (self.out_dir / PREEMPTED_MARKER).unlink(missing_ok=True)
        self._resume()
        history = self.store.path(self.step) / METRICS_FILE if self.step else None
        self.log = MetricsLog(self.out_dir / METRICS_FILE, self.dist.is_main, resume_step=self.step, history=history)
        self.train_model = self._wrap_for_training()
        self._interval = {"tokens": 0, "seconds": 0.0}

    def examples(self, split: str, length: int, count: int | None = None) -> LMExamples:
        """Training samples (random windows) for ``train``; evaluation windows (a fixed tiling) otherwise."""
        config = self.config
        window = length + 1 if self.objective == "causal" else length
        if split == "train":
            windows = RandomWindows(
                self.shards, split, window, seed=config.seed, max_n_fraction=config.max_n_fraction,
                rc_probability=config.rc_probability,
            )
        else:
            windows = SequentialWindows(self.shards, split, window, config.max_n_fraction, max_windows=count)
        return LMExamples(windows, self.objective, seed=config.seed, mask_probability=config.mask_probability)

    def _resume(self) -> None:
        latest = self.store.latest()
        if latest is None:
            return
        state = self.store.load(latest)
        expected = seen_before(self.stages, state["step"])[0]
        if state["samples_seen"] != expected:
            raise ValueError(
                f"{latest}: written after {state['samples_seen']} samples, but the current batch size / length"
                f" schedule puts step {state['step']} at sample {expected}; restore the original pretrain config"
                f" or start in a new output directory"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = state["step"]
        rng = state["rng"]
        if len(rng) == self.dist.world_size:
            set_rng_state(rng[self.dist.rank])
        else:  # data order is unaffected: samples are indexed globally; only dropout draws change
            torch.manual_seed(rank_seed(mix64(self.config.seed, self.step), self.dist.rank))
        if self.dist.is_main:
            print(f"resuming from {latest} (step {self.step})", file=sys.stderr)

    def _wrap_for_training(self) -> torch.nn.Module:
        module: torch.nn.Module = self.model
        if self.config.compile:
            import torch._dynamo

            # inductor needs a working C++ (CPU) or Triton (GPU) toolchain; without one, run eagerly
            torch._dynamo.config.suppress_errors = True
            module = torch.compile(module)
        if self.dist.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            module = DistributedDataParallel(module, device_ids=device_ids)
        return module

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast_context(self.config.precision, self.device)

    # -- steps --------------------------------------------------------------------------------------------
    def run(self, preemption: Preemption) -> dict[str, Any]:
        bar = None
        if self.progress and self.dist.is_main:
            from tqdm import tqdm

            bar = tqdm(total=self.config.max_steps, initial=self.step, desc=f"pretrain {self.arch}",
                       file=sys.stderr, dynamic_ncols=True)
        try:
            while self.step < self.config.max_steps:
                stage = stage_at(self.stages, self.step)
                end = min([self.config.max_steps, *(s.first_step for s in self.stages if s.first_step > self.step)])
                sampler = StepBatches(stage, self.step, end, seen_before(self.stages, self.step)[0], self.dist)
                batches = iter(self.loader(stage, sampler))
                while self.step < end:
                    loss, tokens_per_s = self.train_step(stage, [next(batches) for _ in range(sampler.accumulation)])
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tokens_per_s:,.0f}")
                    self._after_step(preemption)
            return self._finish()
        finally:
            if bar is not None:
                bar.close()
            self.log.close()

    def loader(self, stage: Stage, sampler: StepBatches) -> DataLoader:
        """This process's training micro-batches of ``stage``, in ``sampler`` order."""
        return DataLoader(
            self.examples("train", stage.length),
            batch_sampler=sampler,
            num_workers=self.config.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator(),  # keeps DataLoader seeding off the global RNG (exact resume)
        )

    def train_step(self, stage: Stage, micro_batches: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, float]:
        """Forward/backward over this process's micro-batches, then one optimiser step: (loss, tokens/s)."""
        tick = time.perf_counter()
        count = sum(int((targets != IGNORE_INDEX).sum()) for _, targets in micro_batches)
        global_count = torch.tensor(float(count), dtype=torch.float64, device=self.device)
        global_count = self.dist.all_reduce(global_count).clamp_min(1)
        # DistributedDataParallel averages gradients over processes; world_size / global count turns the
        # average of per-process sums back into the global token mean
        scale = self.dist.world_size / global_count.float()
        step_loss = torch.zeros((), dtype=torch.float64, device=self.device)
        for i, (inputs, targets) in enumerate(micro_batches):
            with self._gradient_sync(last=i == len(micro_batches) - 1):
                with self._autocast():
                    logits = self.train_model(inputs.to(self.device, non_blocking=True))
                loss_sum, _ = token_loss_sum(logits, targets.to(self.device, non_blocking=True))
                (loss_sum * scale).backward()
            step_loss += loss_sum.detach().double()
        loss = float(self.dist.all_reduce(step_loss) / global_count)
        max_norm = self.config.grad_clip if self.config.grad_clip > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm))
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            self._diverged(loss, grad_norm)
        lr = self.config.lr * warmup_cosine(self.step, self.config.warmup_steps, self.config.max_steps,
                                            self.config.min_lr_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        elapsed = time.perf_counter() - tick
        self._interval["tokens"] += stage.batch_size * stage.length
        self._interval["seconds"] += elapsed
        tokens_per_s = stage.batch_size * stage.length / max(elapsed, 1e-9)
        if self.step % self.config.log_every == 0 or self.step == self.config.max_steps:
            self._log_train(stage, loss, grad_norm, lr)
        return loss, tokens_per_s

    def _gradient_sync(self, last: bool) -> contextlib.AbstractContextManager:
        """All-reduce gradients on the last micro-batch of a step only."""
        if last or not self.dist.enabled:
            return contextlib.nullcontext()
        return self.train_model.no_sync()

    def _log_train(self, stage: Stage, loss: float, grad_norm: float, lr: float) -> None:
        interval, self._interval = self._interval, {"tokens": 0, "seconds": 0.0}
        self.log.write({
            "kind": "train", "step": self.step, "tokens_seen": seen_before(self.stages, self.step)[1],
            "seq_len": stage.length, "batch_size": stage.batch_size, "lr": lr, "loss": loss,
            "bits_per_base": loss * BITS_PER_NAT, "grad_norm": grad_norm,
            "tokens_per_s": interval["tokens"] / max(interval["seconds"], 1e-9),
            "memory_mb": peak_memory_mb(self.device),
        })

    def _diverged(self, loss: float, grad_norm: float) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        last = self.store.latest()
        raise TrainingDiverged(
            f"training diverged at step {self.step + 1}: loss {loss}, gradient norm {grad_norm}. The weights were"
            f" not updated; last good checkpoint: {last if last is not None else 'none'}. Lower pretrain.lr, raise"
            f" pretrain.warmup_steps or use precision fp32, then resume."
        )

    def _after_step(self, preemption: Preemption) -> None:
        config = self.config
        at_checkpoint = self.step % config.checkpoint_every == 0 or self.step == config.max_steps
        valid_loss = None
        if self.step % config.eval_every == 0 or at_checkpoint:
            valid_loss = self._validate()
        if at_checkpoint:
            self._save(valid_loss)
        stop = torch.tensor(float(preemption.requested), device=self.device)
        if float(self.dist.all_reduce(stop, op=torch.distributed.ReduceOp.MAX)) > 0:
            if not at_checkpoint:
                self._save(None)
            if self.dist.is_main:
                write_json(self.out_dir / PREEMPTED_MARKER, {"step": self.step, "checkpoint": str(self.store.latest())})
                print(f"preempted: checkpoint written at step {self.step}; rerun to resume", file=sys.stderr)
            raise Preempted(self.step)

    def _validate(self) -> float:
        metrics = evaluate_lm(self.model, self.valid, self.eval_batch, self.device, self.dist, self._autocast())
        self.log.write({"kind": "valid", "step": self.step, "tokens_seen": seen_before(self.stages, self.step)[1],
                        **metrics})
        return metrics["loss"]

    def _save(self, valid_loss: float | None) -> None:
        rng = self.dist.gather_objects(rng_state())  # every process's dropout stream
        if self.dist.is_main:
            self.store.save(self.step, {
                "step": self.step,
                "samples_seen": seen_before(self.stages, self.step)[0],
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "rng": rng,
                "config": asdict(self.config),
            }, valid_loss=valid_loss, files={METRICS_FILE: self.log.text()})
        self.dist.barrier()

    # -- end of training ----------------------------------------------------------------------------------
    def _finish(self) -> dict[str, Any]:
        exported = self.step
        best = self.store.best()
        if self.config.export == "best" and best is not None:
            self.model.load_state_dict(self.store.load(self.store.path(best["step"]))["model"])
            exported = best["step"]
        summary: dict[str, Any] = {
            "arch": self.arch,
            "objective": self.objective,
            "steps": self.step,
            "exported_step": exported,
            "tokens_seen": seen_before(self.stages, self.step)[1],
            "world_size": self.dist.world_size,
            "estimated_memory_gib": None if self.memory is None else self.memory.total / GIB,
            "valid": evaluate_lm(self.model, self.valid, self.eval_batch, self.device, self.dist, self._autocast()),
            "test_by_length": {},
        }
        for length, examples in self.test.items():
            batch = max(1, self.eval_batch * self.config.seq_len // length)
            metrics = evaluate_lm(self.model, examples, batch, self.device, self.dist, self._autocast())
            summary["test_by_length"][str(length)] = metrics
            self.log.write({"kind": "test", "step": self.step, "seq_len": length, **metrics})
        if self.dist.is_main:
            save_pretrained(self.model, self.out_dir, pretrain={
                "objective": self.objective, "exported_step": exported, "tokens_seen": summary["tokens_seen"],
                "config": asdict(self.config),
            })
            write_json(self.out_dir / "summary.json", summary)
            self.log.finish()
            plot_training_curve(self.out_dir / METRICS_FILE, self.out_dir / "curve.png", f"{self.arch} pretraining")
        self.dist.barrier()
        return summary


def pretrain(
    arch: str,
    arch_config: dict[str, Any],
    shards_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: PretrainConfig,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``arch`` on the shards; write the stage outputs into ``out_dir`` and return the summary.

    Resumes from ``out_dir/checkpoints`` when a checkpoint exists. Raises :class:`Preempted` (a
    ``SystemExit`` with :data:`PREEMPTED_EXIT_CODE`) after a SIGTERM/SIGUSR1 checkpoint,
    :class:`TrainingDiverged` on a non-finite loss and :class:`~longdna.train.memory.MemoryBudgetError` when
    the configuration cannot fit the GPU.
    """
    with Preemption() as preemption:  # from the start: a signal during setup still ends in a checkpoint
        dist = Distributed.from_env()
        try:
            return Trainer(arch, arch_config, shards_dir, out_dir, config, progress, dist).run(preemption)
        finally:
            dist.shutdown()


def plot_training_curve(metrics: Path, out: Path, title: str) -> None:
    """Training and validation loss (bits per base) against tokens seen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    valid = [r for r in rows if r["kind"] == "valid"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["tokens_seen"] for r in train], [r["bits_per_base"] for r in train], label="train", lw=1)
    ax.plot([r["tokens_seen"] for r in valid], [r["bits_per_base"] for r in valid], "o-", label="valid", ms=3)
    ax.axhline(2.0, color="grey", ls=":", lw=1, label="uniform over ACGT")
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("loss (bits per base)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


# -- command line ---------------------------------------------------------------------------------------------
def json_argument(value: str) -> dict[str, Any]:
    """A JSON object given inline or as the path of a JSON file."""
    try:
        text = Path(value).read_text() if not value.lstrip().startswith("{") and Path(value).is_file() else value
        parsed = json.loads(text)
    except (OSError, json.JSONDecodeError) as err:
        raise argparse.ArgumentTypeError(f"not a JSON object or a JSON file: {value!r} ({err})") from None
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {type(parsed).__name__}")
    return parsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m longdna.train.pretrain", description=__doc__.split("\n")[0])
    parser.add_argument("--arch", required=True, choices=sorted(ARCHITECTURES))
    parser.add_argument("--arch-config", type=json_argument, default={},
                        help="model config: JSON object or file (may name a preset: {\"preset\": \"tiny-1k\"})")
    parser.add_argument("--shards", required=True, help="token shard directory (the tokenize stage's output)")
    parser.add_argument("--out", required=True, help="output directory; rerunning resumes from its checkpoints")
    parser.add_argument("--config", type=json_argument, default={}, help="pretrain config: JSON object or file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    config = PretrainConfig.from_dict(args.config)
    try:
        pretrain(args.arch, args.arch_config, args.shards, args.out, config, progress=not args.no_progress)
    except Preempted:
        return PREEMPTED_EXIT_CODE
    except (TrainingDiverged, MemoryBudgetError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
