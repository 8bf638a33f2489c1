"""The validation split carved from train, one function for every consumer of a run's seed.

Fine-tuning (:mod:`longdna.train.finetune`), the variant-effect probes and the classical baselines
(:mod:`longdna.eval.baselines`) all call :func:`train_valid_split` with the run's seed and the same settings,
so that a model and the baselines it is compared with are fitted on the same rows, selected on the same
validation rows and scored on the same test rows. NumPy and pandas only (the baselines run without torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from longdna.data.benchmarks.info import BenchmarkInfo


class SplitSettings(Protocol):
    """The settings that decide the carving (``FinetuneConfig`` has them)."""

    valid_fraction: float
    kfold: int | None


@dataclass(frozen=True)
class Carving:
    """:class:`SplitSettings` on their own, with the defaults of ``FinetuneConfig``."""

    valid_fraction: float = 0.1
    kfold: int | None = None


def train_valid_split(frame: pd.DataFrame, info: BenchmarkInfo, config: SplitSettings, seed: int) -> pd.Series:
    """The split of every row after carving validation from train (``valid`` rows kept if shipped)."""
    split = frame["split"].copy()
    if (split == "valid").any():
        return split
    train_rows = np.flatnonzero(split.to_numpy() == "train")
    rng = np.random.default_rng([seed, 0x5EED])
    if config.kfold:  # one fixed partition of train; the seed picks the fold
        folds = np.empty(train_rows.size, dtype=np.int64)
        folds[np.random.default_rng(0xF01D).permutation(train_rows.size)] = np.arange(train_rows.size) % config.kfold
        valid_rows = train_rows[folds == seed % config.kfold]
    elif info.task == "classification":  # stratified: every class keeps its share in validation
        labels = frame["label"].to_numpy()[train_rows].astype(np.int64)
        valid_rows = np.concatenate(
            [
                rng.permutation(rows)[: max(1, round(config.valid_fraction * rows.size))]
                for rows in (train_rows[labels == k] for k in np.unique(labels))
            ]
        )
    else:
        valid_rows = rng.permutation(train_rows)[: max(1, round(config.valid_fraction * train_rows.size))]
    split.iloc[valid_rows] = "valid"
    return split
