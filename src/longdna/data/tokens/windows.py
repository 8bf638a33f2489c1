"""Datasets of token windows over :class:`~longdna.data.tokens.shards.GenomeShards`.

Every item is a pure function of the dataset's arguments and the item index, so a training run that restarts
at sample ``i`` sees exactly the windows it would have seen, whatever the number of DataLoader workers or
processes. Windows are slices of memory-mapped arrays: no per-base Python anywhere.

* :class:`RandomWindows`: pretraining windows at random positions of a split, N-filtered, optionally
  reverse-complemented, indexed by the global sample number (so a resumed run continues exactly);
* :class:`SequentialWindows`: non-overlapping windows tiling a split, for evaluation;
* :class:`IntervalSequences`: BED-like intervals (benchmarks) as token tensors, from shards or an indexed
  FASTA (their strings, for the torch-free benchmark jobs: :mod:`longdna.data.genome.intervals`).
"""

from __future__ import annotations

import bisect
import os

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from longdna import vocab
from longdna.data.genome.fasta import fetch_sequence, read_fai
from longdna.data.genome.intervals import checked_intervals
from longdna.data.tokens.shards import GenomeShards, encode_bases

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


def reverse_complement_bases(window: np.ndarray) -> np.ndarray:
    """Reverse complement of a uint8 window of base tokens (A C G T N, all a shard holds), as a new array.

    Arithmetic instead of :func:`longdna.vocab.reverse_complement`'s table gather, which is 3-4x slower on
    long windows: A+T = C+G = 17, so the complement is ``17 - id``, plus a correction for N.
    """
    comp = np.subtract(vocab.A + vocab.T, window, dtype=np.uint8)
    wrong_n = vocab.A + vocab.T - vocab.N
    comp += (comp == wrong_n).view(np.uint8) * np.uint8(vocab.N - wrong_n)
    return torch.from_numpy(comp).flip(0).numpy()  # torch's flip copies ~7x faster than numpy's [::-1].copy()


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
        self._starts, cumulative = _region_table(shards, split, length)
        self._bounds = cumulative.tolist()  # bisect on a list beats np.searchsorted per scalar
        self._total = self._bounds[-1]

    def __len__(self) -> int:
        return self.size

    def _draw(self, index: int) -> tuple[str, int, bool, np.ndarray]:
        for attempt in range(MAX_ATTEMPTS):
            position = mix64(self.seed, index, attempt) % self._total
            region = bisect.bisect_right(self._bounds, position)
            chrom, region_start = self._starts[region]
            start = region_start + position - (self._bounds[region - 1] if region else 0)
            window = self.shards.tokens(chrom)[start : start + self.length]
            if self.max_n >= self.length or np.count_nonzero(window == vocab.N) <= self.max_n:
                # skipping the draw at probability 0 saves a hash without changing any window
                rc = self.rc_probability > 0 and self._uniform(index) < self.rc_probability
                return chrom, start, rc, window
        raise RuntimeError(
            f"{self.shards.directory}: no {self.split} window of {self.length} bp with at most {self.max_n} N in"
            f" {MAX_ATTEMPTS} draws; lower the length or raise max_n_fraction"
        )

    def _uniform(self, index: int) -> float:
        return (mix64(self.seed, index, MAX_ATTEMPTS) >> 11) / 2**53

    def locate(self, index: int) -> tuple[str, int, bool]:
        """(chrom, start, reverse_complemented) of window ``index``."""
        chrom, start, rc, _ = self._draw(index)
        return chrom, start, rc

    def __getitem__(self, index: int) -> torch.Tensor:
        _, _, rc, window = self._draw(index)
        if rc:
            window = reverse_complement_bases(window)
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
            n_counts = np.add.reduceat(
                (tokens[start : starts[-1] + length] == vocab.N).astype(np.int32), starts - start
            )
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


class IntervalSequences(Dataset):
    """Token ids (int64 tensors) of BED-like intervals (chrom, start, end[, strand]), for benchmarks.

    ``source`` is a shard directory's :class:`GenomeShards` (windows sliced lazily from the memory maps) or an
    indexed plain/bgzip FASTA (every window read at construction, one pass per chromosome, and kept in one flat
    array, which pickles cheaply to DataLoader workers). With ``length=None`` an item is the interval itself
    (0-based, half-open); with ``length`` it is the ``length`` bp centred on the interval's midpoint, positions
    beyond the chromosome ends being ``N``. Minus-strand rows are reverse-complemented. The checked table,
    with any extra columns such as labels, is ``self.intervals``.
    """

    def __init__(
        self, source: GenomeShards | str | os.PathLike, intervals: pd.DataFrame, length: int | None = None
    ) -> None:
        if isinstance(source, GenomeShards):
            lengths = dict(zip(source.manifest["chrom"], source.manifest["length"].astype(int)))
            where = str(source.directory)
        else:
            index = read_fai(source)
            lengths = {name: entry.length for name, entry in index.items()}
            where = str(source)
        self.intervals = checked_intervals(intervals, lengths, where)
        self.length = length
        starts = self.intervals["start"].to_numpy()
        ends = self.intervals["end"].to_numpy()
        if length is not None:
            starts = (starts + ends) // 2 - length // 2
            ends = starts + length
        self._starts, self._ends = starts, ends
        self._chroms = self.intervals["chrom"].astype(str).tolist()
        self._minus = (self.intervals["strand"] == "-").to_numpy()
        self._lengths = lengths
        self.shards = source if isinstance(source, GenomeShards) else None
        self._flat: np.ndarray | None = None
        self._offsets: np.ndarray | None = None
        if self.shards is None:
            self._materialise(source, index)  # type: ignore[arg-type]

    def _materialise(self, fasta: str | os.PathLike, index: dict) -> None:
        sizes = self._ends - self._starts
        self._offsets = np.concatenate([[0], np.cumsum(sizes)])
        self._flat = np.empty(int(self._offsets[-1]), dtype=np.uint8)
        for chrom, group in self.intervals.groupby("chrom", sort=False):
            rows = group.index.to_numpy()
            lo = max(0, int(self._starts[rows].min()))
            hi = min(self._lengths[str(chrom)], int(self._ends[rows].max()))
            span = encode_bases(fetch_sequence(fasta, str(chrom), lo, hi, index=index), f"{fasta}:{chrom}")
            for row in rows:
                window = _padded(span, int(self._starts[row]) - lo, int(self._ends[row]) - lo, span.size)
                self._flat[self._offsets[row] : self._offsets[row + 1]] = window

    def __len__(self) -> int:
        return len(self.intervals)

    def __getitem__(self, index: int) -> torch.Tensor:
        if self._flat is not None and self._offsets is not None:
            window = self._flat[self._offsets[index] : self._offsets[index + 1]]
        else:
            assert self.shards is not None
            chrom = self._chroms[index]
            window = _padded(
                self.shards.tokens(chrom), int(self._starts[index]), int(self._ends[index]), self._lengths[chrom]
            )
        if self._minus[index]:
            window = vocab.reverse_complement(window)
        return torch.from_numpy(window.astype(np.int64))


def _padded(tokens: np.ndarray, start: int, end: int, size: int) -> np.ndarray:
    """``tokens[start:end]`` where positions outside ``[0, size)`` read as ``N``."""
    if 0 <= start and end <= size:
        return tokens[start:end]
    out = np.full(end - start, vocab.N, dtype=np.uint8)
    lo, hi = max(start, 0), min(end, size)
    if lo < hi:
        out[lo - start : hi - start] = tokens[lo:hi]
    return out
