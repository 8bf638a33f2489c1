"""The pretraining engine: one loop for CPU, one GPU, or many GPUs/nodes under ``torchrun``.

Determinism is by construction: the i-th training sample (window position, reverse-complement flip, MLM
mask) is a pure function of ``(seed, i)``, and the step-``s`` batch holds samples ``[seen_s, seen_s + B)``
split into disjoint contiguous slices per rank. The loss is the sum of token losses divided by the global
number of target tokens, so a 2-process run and a 1-process run with the same global batch compute the same
gradient. A checkpoint therefore only needs the step, the samples seen and the RNG state to resume exactly.

A SIGTERM (what SLURM sends before a kill or requeue) makes the loop finish the current step, write a
checkpoint and exit with :data:`PREEMPTED_EXIT_CODE`; rerunning resumes from it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from longdna.data.shards import GenomeShards
from longdna.data.windows import RandomWindows, SequentialWindows
from longdna.io import write_json
from longdna.models import DNALanguageModel, build_model, save_pretrained
from longdna.models.base import config_from_dict
from longdna.train.checkpoints import CheckpointStore, rng_state, set_rng_state
from longdna.train.distributed import Distributed
from longdna.train.objectives import BITS_PER_NAT, LMExamples, token_loss_sum
from longdna.train.optim import build_optimizer, warmup_cosine

#: exit status of a run stopped by SIGTERM after writing its checkpoint (EX_TEMPFAIL: "try again")
PREEMPTED_EXIT_CODE = 75


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class PretrainConfig:
    seq_len: int = 1024
    batch_size: int = 16  # global sequences per optimiser step at seq_len
    micro_batch_size: int | None = None  # sequences per forward per process at seq_len (None: no accumulation)
    max_steps: int = 1000
    lr: float = 6e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
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
    export: str = "final"  # weights written as the stage output: final | best
    seed: int = 0
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    compile: bool = False
    activation_checkpointing: bool = False
    num_workers: int = 0
    threads: int | None = None

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "PretrainConfig":
        config = config_from_dict(cls, values, where="pretrain config")
        config.betas = tuple(config.betas)  # type: ignore[assignment]
        config.validate()
        return config

    def validate(self) -> None:
        if self.export not in ("final", "best"):
            raise ValueError(f"pretrain.export must be 'final' or 'best', not {self.export!r}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"pretrain.precision must be auto, fp32 or bf16, not {self.precision!r}")
        for stage in length_schedule(self):
            if stage.batch_size < 1:
                raise ValueError("pretrain.seq_len_warmup: start_length too small for batch_size")


@dataclass(frozen=True)
class Stage:
    first_step: int
    length: int
    batch_size: int  # global sequences per step
    micro_batch_size: int  # per process per forward (before dividing by world size)


def length_schedule(config: PretrainConfig) -> list[Stage]:
    """Sequence-length warm-up: lengths double from ``start_length`` to ``seq_len``, each for
    ``steps_per_stage`` steps, with tokens per step (and per forward) held constant."""
    micro = config.micro_batch_size or config.batch_size
    stages, step = [], 0
    warmup = config.seq_len_warmup
    if warmup:
        length = int(warmup["start_length"])
        while length < config.seq_len:
            factor = config.seq_len // length
            stages.append(Stage(step, length, config.batch_size * factor, micro * factor))
            step += int(warmup["steps_per_stage"])
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
            raise ValueError(f"global batch {stage.batch_size} is not divisible by {dist.world_size} processes")
        self.per_rank = stage.batch_size // dist.world_size
        self.micro = min(self.per_rank, max(1, stage.micro_batch_size // dist.world_size))
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

    def __iter__(self):
        for s in range(self.steps):
            base = self.first_sample + s * self.stage.batch_size + self.rank * self.per_rank
            for a in range(self.accumulation):
                yield list(range(base + a * self.micro, base + (a + 1) * self.micro))


class Preemption:
    """Turns SIGTERM (and SIGUSR1, SLURM's configurable warning) into a flag checked between steps."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "Preemption":
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


def autocast_context(config: PretrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    precision = config.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


class MetricsLog:
    """``metrics.jsonl``: one JSON object per logged step (``kind`` train or valid), main process only."""

    def __init__(self, path: Path, enabled: bool, resume_step: int) -> None:
        self.path, self.enabled = path, enabled
        if not enabled:
            return
        rows = []
        if resume_step > 0 and path.exists():  # drop rows logged after the checkpoint we resume from
            rows = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= resume_step]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(line + "\n" for line in rows))
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(path.parent / "tensorboard"), purge_step=resume_step + 1)
        except ImportError:  # TensorBoard is optional at run time
            self.writer = None

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        if self.writer is not None:
            for key, value in row.items():
                if key not in ("step", "kind") and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{row['kind']}/{key}", value, row["step"])

    def close(self) -> None:
        if self.enabled and self.writer is not None:
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
    """Mean loss (nats), bits per base and perplexity over ``examples`` (sharded across processes)."""
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


def pretrain(
    arch: str,
    arch_config: dict[str, Any],
    shards_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: PretrainConfig,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``arch`` on the shards; write the stage outputs into ``out_dir`` and return the summary."""
    out_dir = Path(out_dir)
    dist = Distributed.from_env()
    device = dist.device()
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)  # model initialisation is part of the run's determinism
    model = build_model(arch, **arch_config).to(device)
    model.gradient_checkpointing = config.activation_checkpointing
    objective = resolve_objective(config, model)
    optimizer = build_optimizer(model, config.lr, config.weight_decay, config.betas)
    shards = GenomeShards(shards_dir)
    stages = length_schedule(config)
    store = CheckpointStore(out_dir / "checkpoints", keep_last=config.keep_checkpoints)
    autocast = autocast_context(config, device)

    step, best = 0, math.inf
    latest = store.latest()
    if latest is not None:
        state = store.load(latest)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        step, best = state["step"], state["best_valid_loss"]
        if dist.is_main:
            print(f"resuming from {latest} (step {step})", file=sys.stderr)
    log = MetricsLog(out_dir / "metrics.jsonl", dist.is_main, resume_step=step)
    train_model: torch.nn.Module = torch.compile(model) if config.compile else model
    if dist.enabled:
        train_model = DistributedDataParallel(train_model, device_ids=[device.index] if device.type == "cuda" else None)

    def make_examples(split: str, length: int, sequential: bool, count: int | None = None) -> LMExamples:
        window = length + 1 if objective == "causal" else length
        if sequential:
            windows = SequentialWindows(shards, split, window, config.max_n_fraction, max_windows=count)
        else:
            windows = RandomWindows(
                shards, split, window, seed=config.seed, max_n_fraction=config.max_n_fraction,
                rc_probability=config.rc_probability,
            )
        return LMExamples(windows, objective, seed=config.seed, mask_probability=config.mask_probability)

    valid_examples = make_examples("valid", config.seq_len, sequential=True, count=config.eval_windows)
    eval_batch = max(1, (config.micro_batch_size or config.batch_size) // dist.world_size)

    def run_validation(at_step: int) -> float:
        metrics = evaluate_lm(model, valid_examples, eval_batch, device, dist, autocast)
        log.write({"kind": "valid", "step": at_step, **metrics})
        return metrics["loss"]

    def save_checkpoint(at_step: int, valid_loss: float | None) -> None:
        nonlocal best
        if valid_loss is not None and valid_loss < best:
            best = valid_loss
            if dist.is_main:
                store.mark_best(at_step, valid_loss)
        if dist.is_main:
            store.save(at_step, {
                "step": at_step,
                "samples_seen": seen_before(stages, at_step)[0],
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": rng_state(),
                "best_valid_loss": best,
                "config": asdict(config),
            })
        dist.barrier()

    model.train()
    start_time = time.time()
    bar = None
    if progress and dist.is_main:
        from tqdm import tqdm

        bar = tqdm(total=config.max_steps, initial=step, desc=f"pretrain {arch}", file=sys.stderr, dynamic_ncols=True)
    with Preemption() as preemption:
        while step < config.max_steps:
            stage = stage_at(stages, step)
            later = [s.first_step for s in stages if s.first_step > step]
            stage_end = min([config.max_steps, *later])
            sampler = StepBatches(stage, step, stage_end, seen_before(stages, step)[0], dist)
            loader = DataLoader(
                make_examples("train", stage.length, sequential=False),
                batch_sampler=sampler,
                num_workers=config.num_workers,
                generator=torch.Generator(),  # keeps DataLoader seeding off the global RNG (exact resume)
                persistent_workers=False,
            )
            batches = iter(loader)
            while step < stage_end:
                tick = time.time()
                micro_batches = [next(batches) for _ in range(sampler.accumulation)]
                count = torch.tensor(
                    float(sum(int((t != -100).sum()) for _, t in micro_batches)), device=device, dtype=torch.float64
                )
                global_count = dist.all_reduce(count.clone()).clamp_min(1)
                step_loss = torch.zeros((), dtype=torch.float64, device=device)
                for a, (inputs, targets) in enumerate(micro_batches):
                    inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
                    sync = contextlib.nullcontext() if (not dist.enabled or a == len(micro_batches) - 1) else train_model.no_sync()
                    with sync:
                        with autocast:
                            logits = train_model(inputs)
                        loss_sum, _ = token_loss_sum(logits, targets)
                        (loss_sum * (dist.world_size / global_count.float())).backward()
                    step_loss += loss_sum.detach().double()
                loss = float(dist.all_reduce(step_loss) / global_count)
                if not math.isfinite(loss):
                    optimizer.zero_grad(set_to_none=True)
                    last = store.latest()
                    raise TrainingDiverged(
                        f"loss is {loss} at step {step + 1}; stopping. Last good checkpoint: "
                        f"{last if last is not None else 'none'}. Lower pretrain.lr, raise warmup_steps or use fp32."
                    )
                grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip))
                lr = config.lr * warmup_cosine(step, config.warmup_steps, config.max_steps, config.min_lr_ratio)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                elapsed = time.time() - tick
                tokens_per_s = stage.batch_size * stage.length / max(elapsed, 1e-9)
                if step % config.log_every == 0 or step == config.max_steps:
                    log.write({
                        "kind": "train", "step": step, "tokens": seen_before(stages, step)[1],
                        "seq_len": stage.length, "batch_size": stage.batch_size, "lr": lr, "loss": loss,
                        "bits_per_base": loss * BITS_PER_NAT, "grad_norm": grad_norm, "tokens_per_s": tokens_per_s,
                        "memory_mb": peak_memory_mb(device),
                    })
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tokens_per_s:,.0f}")
                at_checkpoint = step % config.checkpoint_every == 0 or step == config.max_steps
                valid_loss = None
                if step % config.eval_every == 0 or at_checkpoint:
                    valid_loss = run_validation(step)
                if at_checkpoint:
                    save_checkpoint(step, valid_loss)
                stop = torch.tensor(float(preemption.requested), device=device)
                if float(dist.all_reduce(stop, op=torch.distributed.ReduceOp.MAX)) > 0:
                    if not at_checkpoint:
                        save_checkpoint(step, None)
                    if bar is not None:
                        bar.close()
                    log.close()
                    if dist.is_main:
                        print(f"preempted: checkpoint written at step {step}; rerun to resume", file=sys.stderr)
                    dist.shutdown()
                    raise SystemExit(PREEMPTED_EXIT_CODE)
    if bar is not None:
        bar.close()

    if config.export == "best" and store.best() is not None:
        model.load_state_dict(store.load(store.path(store.best()["step"]))["model"])
    summary = {
        "arch": arch,
        "objective": objective,
        "steps": step,
        "tokens_seen": seen_before(stages, step)[1],
        "wall_seconds": time.time() - start_time,
        "world_size": dist.world_size,
        "valid": evaluate_lm(model, valid_examples, eval_batch, device, dist, autocast),
        "test_by_length": {},
    }
    for length in config.eval_lengths or [config.seq_len]:
        examples = make_examples("test", length, sequential=True, count=config.eval_windows)
        batch = max(1, eval_batch * config.seq_len // length)
        summary["test_by_length"][str(length)] = evaluate_lm(model, examples, batch, device, dist, autocast)
    if dist.is_main:
        save_pretrained(model, out_dir, pretrain={"objective": objective, "config": asdict(config)})
        write_json(out_dir / "summary.json", summary)
        plot_training_curve(out_dir / "metrics.jsonl", out_dir / "curve.png", title=f"{arch} pretraining")
    log.close()
    dist.shutdown()
    return summary


def plot_training_curve(metrics: Path, out: Path, title: str) -> None:
    """Training and validation loss (bits per base) against tokens seen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from longdna.io import atomic_path

    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    valid = [r for r in rows if r["kind"] == "valid"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["step"] for r in train], [r["bits_per_base"] for r in train], label="train", lw=1)
    ax.plot([r["step"] for r in valid], [r["bits_per_base"] for r in valid], "o-", label="valid", ms=3)
    ax.axhline(2.0, color="grey", ls=":", lw=1, label="uniform over ACGT")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (bits per base)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
