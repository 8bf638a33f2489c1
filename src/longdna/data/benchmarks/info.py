"""The benchmark format's file names and metadata, free of torch and pysam.

:mod:`longdna.data.benchmarks.format` defines the format, validates it and re-exports these names; this module holds
what readers outside the torch environment need -- the evaluation stage's classical baselines
(:mod:`longdna.eval.baselines`) read a benchmark with :func:`read_benchmark_files`, and the workflow's
resource estimates read ``benchmark.json``'s ``sizes`` with the standard library alone.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from longdna.io import read_json

DATA_FILE = "data.parquet"
INFO_FILE = "benchmark.json"


class TaskType(str, enum.Enum):
    """A benchmark's task (``benchmark.json`` ``task``); a member equals its string value."""

    CLASSIFICATION = "classification"
    REGRESSION = "regression"
    MULTILABEL = "multilabel"


TASKS = tuple(task.value for task in TaskType)
#: the metrics :func:`longdna.eval.metrics.compute_metrics` reports for each task; a benchmark's ``metric`` is
#: one of its task's
METRICS: dict[TaskType, tuple[str, ...]] = {
    TaskType.CLASSIFICATION: ("accuracy", "mcc", "f1", "f1_macro", "auroc", "auprc"),
    TaskType.REGRESSION: ("pearson", "spearman", "r2"),
    TaskType.MULTILABEL: ("auroc", "auprc"),
}
SPLITS = ("train", "valid", "test")


class BenchmarkFormatError(ValueError):
    """Benchmark data violates the format; the message names the file and row."""


@dataclass
class BenchmarkInfo:
    name: str
    task: str  # classification | regression | multilabel
    num_outputs: int  # classes, 1 for regression, labels for multi-label
    metric: str  # the primary metric as the literature reports it (accuracy, mcc, f1, auroc, auprc, r2, ...)
    suite: str = "user"
    label_names: list[str] = field(default_factory=list)
    source: str = ""
    citation: str = ""
    notes: str = ""
    #: per split: ``rows``, ``bases`` (summed lengths) and ``max_length``; written by ``write_benchmark``
    sizes: dict[str, dict[str, int]] = field(default_factory=dict)
    #: user data: duplicate sequences found, and rows removed or dropped for them
    #: (:mod:`longdna.data.benchmarks.user_data`)
    duplicates: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise BenchmarkFormatError(f"benchmark {self.name}: task must be one of {TASKS}, not {self.task!r}")


def split_sizes(frame: pd.DataFrame) -> dict[str, dict[str, int]]:
    """``{split: {rows, bases, max_length}}`` of a benchmark's rows, in the order of :data:`SPLITS`."""
    lengths = frame["sequence"].str.len()
    sizes = {}
    for split in SPLITS:
        own = lengths[frame["split"] == split]
        if not own.empty:
            sizes[split] = {"rows": int(own.size), "bases": int(own.sum()), "max_length": int(own.max())}
    return sizes


def read_benchmark_files(directory: str | os.PathLike) -> tuple[pd.DataFrame, BenchmarkInfo]:
    """A benchmark's rows and metadata as written (``write_benchmark`` validated them; ``read_benchmark``
    validates them again, with torch's token alphabet)."""
    directory = Path(directory)
    return pd.read_parquet(directory / DATA_FILE), BenchmarkInfo(**read_json(directory / INFO_FILE))


def label_array(labels: pd.Series, info: BenchmarkInfo) -> np.ndarray:
    """Labels as one array: class ids (N,), values (N,) or (N, outputs), 0/1 label vectors (N, labels)."""
    if info.task == TaskType.CLASSIFICATION:
        return labels.to_numpy().astype(np.int64)
    if info.task == TaskType.REGRESSION and info.num_outputs == 1:
        return labels.to_numpy().astype(np.float64)
    dtype = np.float64 if info.task == TaskType.REGRESSION else np.int64
    return np.stack([np.asarray(v, dtype=dtype) for v in labels])
