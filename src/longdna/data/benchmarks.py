"""The on-disk benchmark format every suite is materialised into (demo, GenomicBenchmarks, NT, user data).

A benchmark is a directory with two files:

``data.parquet``
    one row per example: ``sequence`` (str, IUPAC nucleotides), ``label`` (int class id for
    classification, float for regression, list of 0/1 ints for multi-label), ``split`` (``train``,
    ``valid`` or ``test``; ``valid`` optional) and optionally ``id`` (str).
``benchmark.json``
    :class:`BenchmarkInfo`: task type, number of outputs, class names, the metric the literature reports,
    provenance.

:func:`write_benchmark` validates before writing (atomically) and :func:`read_benchmark` validates on
reading, so a bad row is reported with its file and row number wherever it comes from.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from longdna import vocab
from longdna.io import atomic_path, read_json, write_json

DATA_FILE = "data.parquet"
INFO_FILE = "benchmark.json"
TASKS = ("classification", "regression", "multilabel")
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

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise BenchmarkFormatError(f"benchmark {self.name}: task must be one of {TASKS}, not {self.task!r}")


def validate_benchmark(frame: pd.DataFrame, info: BenchmarkInfo, where: str) -> None:
    """Raise :class:`BenchmarkFormatError` naming ``where`` and the first offending row (1-based)."""
    missing = [c for c in ("sequence", "label", "split") if c not in frame.columns]
    if missing:
        raise BenchmarkFormatError(f"{where}: missing column(s) {missing}; found {list(frame.columns)}")
    bad_split = ~frame["split"].isin(SPLITS)
    if bad_split.any():
        row = int(np.flatnonzero(bad_split)[0])
        raise BenchmarkFormatError(f"{where}: row {row + 1}: split {frame['split'].iloc[row]!r} not in {SPLITS}")
    for split in ("train", "test"):
        if not (frame["split"] == split).any():
            raise BenchmarkFormatError(f"{where}: the {split} split is empty")
    for row, sequence in enumerate(frame["sequence"]):
        if not isinstance(sequence, str) or not sequence:
            raise BenchmarkFormatError(f"{where}: row {row + 1}: empty or non-text sequence")
        try:
            vocab.encode(sequence, where=f"{where}: row {row + 1}")
        except vocab.InvalidSequenceError as exc:
            raise BenchmarkFormatError(str(exc)) from None
    _validate_labels(frame["label"], info, where)


def _validate_labels(labels: pd.Series, info: BenchmarkInfo, where: str) -> None:
    if info.task == "classification":
        values = pd.to_numeric(labels, errors="coerce")
        bad = values.isna() | (values != values.round()) | (values < 0) | (values >= info.num_outputs)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            names = f" ({', '.join(info.label_names)})" if info.label_names else ""
            raise BenchmarkFormatError(
                f"{where}: row {row + 1}: label {_show(labels.iloc[row])} is not a class id in 0..{info.num_outputs - 1}{names}"
            )
    elif info.task == "regression":
        values = pd.to_numeric(labels, errors="coerce")
        if values.isna().any() or not np.isfinite(values.to_numpy(dtype=float)).all():
            row = int(np.flatnonzero(~np.isfinite(values.to_numpy(dtype=float)))[0])
            raise BenchmarkFormatError(f"{where}: row {row + 1}: regression label {_show(labels.iloc[row])} is not a number")
    else:
        for row, value in enumerate(labels):
            value = np.asarray(value)
            if value.shape != (info.num_outputs,) or not np.isin(value, (0, 1)).all():
                raise BenchmarkFormatError(
                    f"{where}: row {row + 1}: multi-label target must be {info.num_outputs} zeros/ones, got {value!r}"
                )


def _show(value: object) -> str:
    """A label as the user wrote it (NumPy scalars print as plain numbers)."""
    return repr(value.item() if hasattr(value, "item") else value)


def write_benchmark(directory: str | os.PathLike, frame: pd.DataFrame, info: BenchmarkInfo) -> None:
    directory = Path(directory)
    columns = [c for c in ("id", "sequence", "label", "split") if c in frame.columns]
    frame = frame[columns].reset_index(drop=True)
    validate_benchmark(frame, info, where=str(directory / DATA_FILE))
    with atomic_path(directory / DATA_FILE, suffix=".parquet") as tmp:
        frame.to_parquet(tmp, index=False)
    write_json(directory / INFO_FILE, asdict(info))


def read_benchmark(directory: str | os.PathLike) -> tuple[pd.DataFrame, BenchmarkInfo]:
    directory = Path(directory)
    info = BenchmarkInfo(**read_json(directory / INFO_FILE))
    frame = pd.read_parquet(directory / DATA_FILE)
    validate_benchmark(frame, info, where=str(directory / DATA_FILE))
    return frame, info
