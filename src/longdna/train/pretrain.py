"""The pretraining engine: one loop for CPU, one GPU, or many GPUs/nodes under ``torchrun``.

Determinism is by construction: the i-th training sample (window position, reverse-complement flip, MLM
mask) is a pure function of ``(seed, i)``, and the step-``s`` batch holds samples ``[seen_s, seen_s + B)``
split into disjoint contiguous slices per rank. The loss is the sum of token losses divided by the global
number of target tokens, so a 2-process run and a 1-process run with the same global batch compute the same
gradient. A checkpoint therefore only needs the step, the weights, the optimiser and each process's RNG
state (dropout) to resume exactly.

A SIGTERM or SIGUSR1 (what SLURM sends before a kill or requeue) makes the loop finish the current step,
write a checkpoint and exit with :data:`PREEMPTED_EXIT_CODE`; rerunning resumes from it.

What a rerun resumes: only an unfinished run with the same fingerprint (:mod:`longdna.fingerprint`: the
settings, the model config, the shards, the code). A checkpoint of another fingerprint, or the checkpoints of
a finished run (its rerun was asked for: ``--forcerun``, or an input changed), are renamed
``checkpoints.stale-<fingerprint>-<time>`` (named in the log) and training starts from step 0, so that the
result is always the one a fresh run would give. An unreadable newest checkpoint is skipped for the one
before it, with a warning. The shards are verified against their manifest before anything trains.

The jobs around the loop live beside it: the settings (:class:`longdna.settings.PretrainConfig`), the length
schedule and each step's samples (:mod:`longdna.train.schedule`), the memory budget (:mod:`longdna.train.memory`),
the metrics log and curve (:mod:`longdna.train.metrics_log`), preemption (:mod:`longdna.train.preemption`).

Command line (what the workflow runs, directly or under ``torchrun``; see :mod:`longdna.train.launch`)::

    python -m longdna.train.pretrain --arch hyenadna --arch-config '{"preset": "tiny-1k"}' \\
        --shards results/shards --out results/pretrain/hyenadna --config pretrain.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from longdna.data.tokens.shards import GenomeShards, ShardError
from longdna.data.tokens.windows import RandomWindows, SequentialWindows, mix64
from longdna.fingerprint import SHORT, pretrain_fingerprint, training_settings
from longdna.io import DiskFullError, sort_safetensors_metadata, write_json
from longdna.models import ARCHITECTURES, DNALanguageModel, build_model, save_pretrained
from longdna.settings import PretrainConfig
from longdna.train.checkpoints import CheckpointStore, rng_state, set_rng_state
from longdna.train.distributed import Distributed
from longdna.train.memory import (
    GIB,
    MemoryBudgetError,
    check_memory_budget,
    peak_memory_mb,
)
from longdna.train.metrics_log import METRICS_FILE, MetricsLog, plot_training_curve
from longdna.train.objectives import BITS_PER_NAT, IGNORE_INDEX, LMExamples, token_loss_sum
from longdna.train.optim import build_optimizer, warmup_cosine
from longdna.train.precision import autocast_context
from longdna.train.preemption import PREEMPTED_EXIT_CODE, PREEMPTED_MARKER, Preempted, Preemption
from longdna.train.progress import ProgressLog
from longdna.train.schedule import Stage, StepBatches, length_schedule, seen_before, stage_at


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm became NaN or infinite."""


def resolve_objective(config: PretrainConfig, model: DNALanguageModel) -> str:
    if config.objective == "auto":
        return "causal" if model.causal else "masked"
    if config.objective == "causal" and not model.causal:
        raise ValueError(f"{model.arch} is bidirectional: a causal objective would let it see the targets")
    return config.objective


def rank_seed(seed: int, rank: int) -> int:
    """Seed of a process's own random stream (dropout), distinct per rank and from the initialisation seed."""
    return mix64(seed, rank, 0xD40) & (2**63 - 1)


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
        self.arch, self.config, self.out_dir = arch, config, Path(out_dir)
        self.dist = Distributed.from_env() if dist is None else dist
        self.device = self.dist.device()
        self.progress = ProgressLog(f"pretrain {arch}", progress and self.dist.is_main)
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
        self.fingerprint = pretrain_fingerprint(asdict(config), arch, asdict(self.model.config), self.shards.identity())
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
                self.shards,
                split,
                window,
                seed=config.seed,
                max_n_fraction=config.max_n_fraction,
                rc_probability=config.rc_probability,
            )
        else:
            windows = SequentialWindows(self.shards, split, window, config.max_n_fraction, max_windows=count)
        return LMExamples(windows, self.objective, seed=config.seed, mask_probability=config.mask_probability)

    def _resume(self) -> None:
        """Continue from the newest readable checkpoint of this very run (same fingerprint, unfinished)."""
        found = self._resumable_checkpoint() if self.dist.is_main else None
        self.dist.barrier()  # the main process has set aside whatever must not be resumed
        if not self.dist.is_main:
            found = self.store.load_latest()
        if found is None:
            return
        latest, state = found
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = state["step"]
        rng = state["rng"]
        if len(rng) == self.dist.world_size:
            set_rng_state(rng[self.dist.rank])
        else:  # data order is unaffected: samples are indexed globally; only dropout draws change
            torch.manual_seed(rank_seed(mix64(self.config.seed, self.step), self.dist.rank))
        if self.dist.is_main:
            print(f"resuming from {latest} (step {self.step}, fingerprint {self.fingerprint.short})", file=sys.stderr)

    def _resumable_checkpoint(self) -> tuple[Path, dict[str, Any]] | None:
        """The newest readable checkpoint if it belongs to this run; otherwise the store is set aside."""
        finished = self.store.finished()
        if finished is not None:
            stored = finished.get("fingerprint")
            changed = self.fingerprint.changed_parts(stored)
            why = f"changed: {', '.join(changed)}" if changed else "same fingerprint: a rerun trains again"
            self._set_aside(f"{self.store.directory} holds a finished run of {finished['step']} steps ({why})", stored)
            return None
        found = self.store.load_latest()
        if found is None:
            return None
        latest, state = found
        stored = state.get("fingerprint")
        if (stored or {}).get("sha256") != self.fingerprint.digest:
            changed = ", ".join(self.fingerprint.changed_parts(stored))
            previous = state.get("config") or {}
            edits = [
                f"{key} {previous.get(key)!r} -> {value!r}"
                for key, value in training_settings(asdict(self.config)).items()
                if previous.get(key) != value
            ]
            self._set_aside(
                f"{latest} belongs to another run (changed: {changed}"
                + (f"; settings {', '.join(edits)}" if edits else "")
                + ")",
                stored,
            )
            return None
        return found

    def _set_aside(self, reason: str, stored: dict[str, Any] | None) -> None:
        moved = self.store.set_aside(((stored or {}).get("sha256") or "unknown")[:SHORT])
        print(f"{reason}: not resumed; moved to {moved}; training starts from step 0", file=sys.stderr)

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
        self.progress.begin(self.config.max_steps, first_step=self.step)
        try:
            while self.step < self.config.max_steps:
                stage = stage_at(self.stages, self.step)
                end = min([self.config.max_steps, *(s.first_step for s in self.stages if s.first_step > self.step)])
                sampler = StepBatches(stage, self.step, end, seen_before(self.stages, self.step)[0], self.dist)
                batches = iter(self.loader(stage, sampler))
                while self.step < end:
                    loss, tokens_per_s = self.train_step(stage, [next(batches) for _ in range(sampler.accumulation)])
                    self.progress.step(
                        f"length {stage.length}",
                        self.step,
                        loss * BITS_PER_NAT,
                        f" ({tokens_per_s:,.0f} tokens/s; loss in bits/base)",
                    )
                    self._after_step(preemption)
            return self._finish()
        finally:
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
        lr = self.config.lr * warmup_cosine(
            self.step, self.config.warmup_steps, self.config.max_steps, self.config.min_lr_ratio
        )
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
        self.log.write(
            {
                "kind": "train",
                "step": self.step,
                "tokens_seen": seen_before(self.stages, self.step)[1],
                "seq_len": stage.length,
                "batch_size": stage.batch_size,
                "lr": lr,
                "loss": loss,
                "bits_per_base": loss * BITS_PER_NAT,
                "grad_norm": grad_norm,
                "tokens_per_s": interval["tokens"] / max(interval["seconds"], 1e-9),
                "memory_mb": peak_memory_mb(self.device),
            }
        )

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
        self.progress.line(
            f"step {self.step}/{self.config.max_steps}: validation {metrics['loss'] * BITS_PER_NAT:.4f}"
            f" bits/base ({seen_before(self.stages, self.step)[1]:,} tokens seen)"
        )
        self.log.write(
            {"kind": "valid", "step": self.step, "tokens_seen": seen_before(self.stages, self.step)[1], **metrics}
        )
        return metrics["loss"]

    def _save(self, valid_loss: float | None) -> None:
        rng = self.dist.gather_objects(rng_state())  # every process's dropout stream
        if self.dist.is_main:
            self.store.save(
                self.step,
                {
                    "step": self.step,
                    "samples_seen": seen_before(self.stages, self.step)[0],
                    "model": self.model.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "rng": rng,
                    "config": asdict(self.config),
                    "fingerprint": self.fingerprint.to_dict(),
                },
                valid_loss=valid_loss,
                files={METRICS_FILE: self.log.text()},
            )
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
            "fingerprint": self.fingerprint.to_dict(),
            "valid": evaluate_lm(self.model, self.valid, self.eval_batch, self.device, self.dist, self._autocast()),
            "test_by_length": {},
        }
        for length, examples in self.test.items():
            batch = max(1, self.eval_batch * self.config.seq_len // length)
            metrics = evaluate_lm(self.model, examples, batch, self.device, self.dist, self._autocast())
            summary["test_by_length"][str(length)] = metrics
            self.log.write({"kind": "test", "step": self.step, "seq_len": length, **metrics})
        if self.dist.is_main:
            export_pretrained(
                self.model,
                self.out_dir,
                fingerprint=self.fingerprint.to_dict(),
                pretrain={
                    "objective": self.objective,
                    "exported_step": exported,
                    "tokens_seen": summary["tokens_seen"],
                    "config": asdict(self.config),
                },
            )
            write_json(self.out_dir / "summary.json", summary)
            self.log.finish()
            plot_training_curve(self.out_dir / METRICS_FILE, self.out_dir / "curve.png", f"{self.arch} pretraining")
            self.store.mark_finished(self.step, self.fingerprint.to_dict())  # last: every output exists
        self.dist.barrier()
        return summary


def export_pretrained(model: DNALanguageModel, out_dir: Path, **metadata: Any) -> None:
    """:func:`~longdna.models.save_pretrained` through a staging directory, where the weights file gets its
    safetensors metadata sorted: identical runs give byte-identical files. Each file is renamed into place."""
    for leftover in out_dir.glob(".export.*"):  # of an export killed earlier
        shutil.rmtree(leftover, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=".export.", dir=out_dir))
    try:
        save_pretrained(model, staging, **metadata)
        sort_safetensors_metadata(staging / "model.safetensors")
        for file in sorted(staging.iterdir()):
            os.replace(file, out_dir / file.name)
    except DiskFullError as err:  # name the output, not its staging copy
        raise DiskFullError(out_dir / err.path.name, err.__cause__ or err) from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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
    parser.add_argument(
        "--arch-config",
        type=json_argument,
        default={},
        help='model config: JSON object or file (may name a preset: {"preset": "tiny-1k"})',
    )
    parser.add_argument("--shards", required=True, help="token shard directory (the tokenize stage's output)")
    parser.add_argument(
        "--out", required=True, help="output directory; rerunning resumes its unfinished run of the same fingerprint"
    )
    parser.add_argument("--config", type=json_argument, default={}, help="pretrain config: JSON object or file")
    parser.add_argument("--no-progress", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    config = PretrainConfig.from_dict(args.config)
    try:
        pretrain(args.arch, args.arch_config, args.shards, args.out, config, progress=not args.no_progress)
    except Preempted:
        return PREEMPTED_EXIT_CODE
    except (TrainingDiverged, MemoryBudgetError, ShardError, DiskFullError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
