"""Datasets of token windows over :class:`~longdna.data.shards.GenomeShards`.

Every item is a pure function of the dataset's arguments and the item index, so a training run that restarts
at sample ``i`` sees exactly the windows it would have seen, whatever the number of DataLoader workers or
processes. Windows are slices of memory-mapped arrays: no per-base Python anywhere.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from longdna import vocab
from longdna.data.shards import GenomeShards

_MASK64 = (1 << 64) - 1
MAX_ATTEMPTS = 100


def mix64(*values: int) -> int:
    """A 64-bit hash of integers (splitmix64 finaliser chained over the inputs): cheap, stateless randomness."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (v & _MASK64)) * 0xBF58476D1CE4E5B9 & _MASK64
        h = (h ^ (h >> 31)) * 0x94D049BB133111EB & _MASK64
        h ^= h >> 29
    return h


def _region_table(shards: GenomeShards, split: str, length: int) -> tuple[list[tuple[str, int]], np.ndarray]:
    regions = shards.regions(split)
    usable = (regions["end"] - regions["start"] - length + 1).clip(lower=0).to_numpy(dtype=np.int64)
    if usable.sum() == 0:
        raise ValueError(f"{shards.directory}: no {split} region is at least {length} bp long")
    return list(zip(regions["chrom"], regions["start"].astype(int))), np.cumsum(usable)


class RandomWindows(Dataset):
    """Windows of ``length`` tokens at uniform random positions of a split (regions weighted by usable length).

    Windows with more than ``max_n_fraction`` ``N`` are redrawn (deterministically); with probability
    ``rc_probability`` the window is reverse-complemented. ``len()`` is nominal: any index is valid.
    """

    def __init__(
        self,
        shards: GenomeShards,
        split: str,
        length: int,
        seed: int = 0,
        max_n_fraction: float = 0.1,
        rc_probability: float = 0.0,
        size: int = 2**62,
    ) -> None:
        self.shards = shards
        self.split = split
        self.length = length
        self.seed = seed
        self.max_n = int(max_n_fraction * length)
        self.rc_probability = rc_probability
        self.size = size
        self._starts, self._cumulative = _region_table(shards, split, length)

    def __len__(self) -> int:
        return self.size

    def locate(self, index: int) -> tuple[str, int, bool]:
        """(chrom, start, reverse_complemented) of window ``index``."""
        total = int(self._cumulative[-1])
        for attempt in range(MAX_ATTEMPTS):
            position = mix64(self.seed, index, attempt) % total
            region = int(np.searchsorted(self._cumulative, position, side="right"))
            chrom, region_start = self._starts[region]
            start = region_start + position - (int(self._cumulative[region - 1]) if region else 0)
            window = self.shards.tokens(chrom)[start : start + self.length]
            if np.count_nonzero(window == vocab.N) <= self.max_n:
                rc = (mix64(self.seed, index, MAX_ATTEMPTS) >> 11) / 2**53 < self.rc_probability
                return chrom, start, rc
        raise RuntimeError(
            f"{self.shards.directory}: no {self.split} window of {self.length} bp with at most {self.max_n} N in"
            f" {MAX_ATTEMPTS} draws; lower the length or raise max_n_fraction"
        )

    def __getitem__(self, index: int) -> torch.Tensor:
        chrom, start, rc = self.locate(index)
        window = self.shards.tokens(chrom)[start : start + self.length]
        if rc:
            window = vocab.reverse_complement(window)
        return torch.from_numpy(window.astype(np.int64))


class SequentialWindows(Dataset):
    """Non-overlapping windows tiling a split's regions (for evaluation); windows past ``max_n_fraction`` N
    are skipped and at most ``max_windows`` evenly spaced windows are kept."""

    def __init__(
        self,
        shards: GenomeShards,
        split: str,
        length: int,
        max_n_fraction: float = 0.1,
        max_windows: int | None = None,
    ) -> None:
        self.shards = shards
        self.length = length
        windows = []
        max_n = int(max_n_fraction * length)
        for chrom, start, end in shards.regions(split).itertuples(index=False):
            tokens = shards.tokens(chrom)
            starts = np.arange(start, end - length + 1, length)
            if starts.size == 0:
                continue
            n_counts = np.add.reduceat((tokens[start : starts[-1] + length] == vocab.N).astype(np.int32), starts - start)
            windows += [(chrom, int(s)) for s in starts[n_counts <= max_n]]
        if not windows:
            raise ValueError(f"{shards.directory}: no {split} window of {length} bp passes the N filter")
        if max_windows is not None and len(windows) > max_windows:
            keep = np.linspace(0, len(windows) - 1, max_windows).round().astype(int)
            windows = [windows[i] for i in keep]
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> torch.Tensor:
        chrom, start = self.windows[index]
        return torch.from_numpy(self.shards.tokens(chrom)[start : start + self.length].astype(np.int64))
