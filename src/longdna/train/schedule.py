"""The pretraining schedule: which sequence length and batch each step trains on, and which samples.

Sequence-length warm-up (``seq_len_warmup``, HyenaDNA's): the length doubles from ``start_length`` to
``seq_len`` in stages of ``steps_per_stage`` steps, with tokens per step (and per forward) held constant. The
step-``s`` batch holds the global samples ``[seen_s, seen_s + B)``, split into disjoint contiguous slices per
process and, within a process, into micro-batches (:class:`StepBatches`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from longdna.settings import PretrainConfig

if TYPE_CHECKING:
    from longdna.train.distributed import Distributed


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
    warmup = config.seq_len_warmup  # consistent: PretrainConfig.validate checks it
    if warmup:
        length, per_stage = int(warmup["start_length"]), int(warmup["steps_per_stage"])
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
