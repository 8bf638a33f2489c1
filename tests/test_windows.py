"""Datasets over shards: determinism (seeds, steps, DataLoader workers), N filter, RC, intervals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from longdna import vocab
from longdna.data.genome.demo import DemoGenomeSpec, generate_demo_genome
from longdna.data.genome.fasta import fasta_lengths, read_fasta, write_bgzip_fasta
from longdna.data.genome.intervals import fetch_interval_sequences
from longdna.data.tokens.shards import GenomeShards, split_regions, tokenize_chromosome, write_manifest
from longdna.data.tokens.windows import IntervalSequences, RandomWindows, SequentialWindows, reverse_complement_bases

SMALL = DemoGenomeSpec(chromosome_lengths=(60_000, 40_000, 30_000), telomere_gap=1000, centromere_gap=2000)


@pytest.fixture(scope="module")
def genome(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("genome") / "demo.fa.gz"
    generate_demo_genome(path, SMALL)
    return path


@pytest.fixture(scope="module")
def shards(genome: Path, tmp_path_factory: pytest.TempPathFactory) -> GenomeShards:
    out = tmp_path_factory.mktemp("shards")
    lengths = fasta_lengths(genome)
    for chrom in lengths:
        tokenize_chromosome(genome, chrom, out)
    write_manifest(out, list(lengths), split_regions(lengths, valid=["chr2"], test=["chr3"]))
    return GenomeShards(out)


def test_random_windows_are_a_function_of_seed_and_index(shards: GenomeShards) -> None:
    a = RandomWindows(shards, "train", 500, seed=3, rc_probability=0.5)
    b = RandomWindows(shards, "train", 500, seed=3, rc_probability=0.5)
    assert all(torch.equal(a[i], b[i]) for i in (0, 1, 17, 10**12))
    c = RandomWindows(shards, "train", 500, seed=4, rc_probability=0.5)
    assert not all(torch.equal(a[i], c[i]) for i in range(5))
    assert len({a.locate(i)[1] for i in range(50)}) > 40


def test_windows_respect_split_and_n_filter(shards: GenomeShards) -> None:
    windows = RandomWindows(shards, "train", 2000, seed=0, max_n_fraction=0.05)
    for i in range(200):
        chrom, start, _ = windows.locate(i)
        assert chrom == "chr1" and 0 <= start <= 60_000 - 2000
        assert np.count_nonzero(shards.tokens(chrom)[start : start + 2000] == vocab.N) <= 100
        assert windows[i].dtype == torch.int64 and windows[i].shape == (2000,)
    strict = RandomWindows(shards, "valid", 5000, seed=0, max_n_fraction=0.0)
    assert all(strict.locate(i)[0] == "chr2" and (strict[i] != vocab.N).all() for i in range(50))


def test_reverse_complement(shards: GenomeShards) -> None:
    forward = RandomWindows(shards, "train", 300, seed=9)
    reverse = RandomWindows(shards, "train", 300, seed=9, rc_probability=1.0)
    for i in range(20):
        assert forward.locate(i)[:2] == reverse.locate(i)[:2]
        expected = vocab.reverse_complement(forward[i].numpy())
        assert np.array_equal(reverse[i].numpy(), expected)
    half = RandomWindows(shards, "train", 300, seed=9, rc_probability=0.5)
    flips = [half.locate(i)[2] for i in range(400)]
    assert 150 < sum(flips) < 250
    tokens = np.array([vocab.A, vocab.C, vocab.G, vocab.T, vocab.N, vocab.N, vocab.A], dtype=np.uint8)
    assert np.array_equal(reverse_complement_bases(tokens), vocab.reverse_complement(tokens))


def test_impossible_filter_is_reported(shards: GenomeShards) -> None:
    with pytest.raises(ValueError, match="no test region is at least 40000 bp long"):
        RandomWindows(shards, "test", 40_000)
    all_n = RandomWindows(shards, "train", 50_000, max_n_fraction=0.0)
    with pytest.raises(RuntimeError, match="no train window of 50000 bp with at most 0 N in 100 draws"):
        all_n[0]


def _batches(dataset, workers: int, first_step: int, steps: int, batch: int) -> list[torch.Tensor]:
    indices = range(first_step * batch, (first_step + steps) * batch)
    loader = DataLoader(dataset, batch_size=batch, sampler=indices, num_workers=workers)
    return list(loader)


def test_determinism_across_workers_and_resume(shards: GenomeShards) -> None:
    windows = RandomWindows(shards, "train", 256, seed=11, rc_probability=0.5)
    serial = _batches(windows, 0, 0, 6, 4)
    parallel = _batches(windows, 2, 0, 6, 4)
    resumed = _batches(windows, 2, 3, 3, 4)  # a run restarted at step 3
    assert all(torch.equal(a, b) for a, b in zip(serial, parallel))
    assert all(torch.equal(a, b) for a, b in zip(serial[3:], resumed))


def test_sequential_windows(shards: GenomeShards) -> None:
    windows = SequentialWindows(shards, "valid", 1000, max_n_fraction=0.1)
    starts = [start for _, start in windows.windows]
    assert starts == sorted(starts) and all(b - a >= 1000 for a, b in zip(starts, starts[1:]))
    assert all(s % 1000 == 0 for s in starts)
    tokens = shards.tokens("chr2")
    assert all(np.count_nonzero(tokens[s : s + 1000] == vocab.N) <= 100 for s in starts)
    assert len(windows) < 40  # the gaps were skipped
    assert torch.equal(windows[0], torch.from_numpy(tokens[starts[0] : starts[0] + 1000].astype(np.int64)))
    assert len(SequentialWindows(shards, "valid", 1000, max_windows=5)) == 5


@pytest.fixture(scope="module")
def intervals() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "chrom": ["chr1", "chr2", "chr1", "chr3", "chr3"],
            "start": [5000, 12_345, 59_990, 0, 20_000],
            "end": [5200, 12_400, 60_000, 7, 20_150],
            "strand": ["+", "-", "+", "-", "."],
            "label": [1, 0, 1, 0, 1],
        }
    )


def test_fetch_interval_sequences_convention(genome: Path, intervals: pd.DataFrame) -> None:
    sequences = dict(read_fasta(genome))
    got = fetch_interval_sequences(genome, intervals)
    complement = str.maketrans("ACGTNacgtn", "TGCANtgcan")
    for row, seq in zip(intervals.itertuples(), got):
        expected = sequences[row.chrom][row.start : row.end].decode()
        if row.strand == "-":
            expected = expected.translate(complement)[::-1]
        assert seq == expected


def test_interval_sequences_iupac_and_case(tmp_path: Path) -> None:
    fasta = tmp_path / "g.fa.gz"
    write_bgzip_fasta([("c", b"AACGTRYkmBDHVNacgt")], fasta)
    got = fetch_interval_sequences(fasta, pd.DataFrame({"chrom": ["c"], "start": [0], "end": [18], "strand": ["-"]}))
    assert got == ["acgtNBDHVkmRYACGTT"]  # Biopython's reverse_complement, case kept


@pytest.mark.parametrize("length", [None, 100, 1000])
def test_interval_dataset_from_fasta_and_shards(
    genome: Path, shards: GenomeShards, intervals: pd.DataFrame, length: int | None
) -> None:
    from_fasta = IntervalSequences(genome, intervals, length=length)
    from_shards = IntervalSequences(shards, intervals, length=length)
    strings = fetch_interval_sequences(genome, intervals)
    assert len(from_fasta) == len(intervals) and from_fasta.intervals["label"].tolist() == [1, 0, 1, 0, 1]
    for i, row in enumerate(from_fasta.intervals.itertuples()):
        assert torch.equal(from_fasta[i], from_shards[i])
        if length is None:
            assert vocab.decode(from_fasta[i]) == strings[i].upper()
        else:
            assert from_fasta[i].shape == (length,)
            mid = (row.start + row.end) // 2
            start = mid - length // 2
            chrom_length = 60_000 if row.chrom == "chr1" else 40_000 if row.chrom == "chr2" else 30_000
            lo, hi = max(start, 0), min(start + length, chrom_length)
            forward = np.full(length, vocab.N, dtype=np.uint8)
            forward[lo - start : hi - start] = shards.tokens(row.chrom)[lo:hi]
            expected = vocab.reverse_complement(forward) if row.strand == "-" else forward
            assert np.array_equal(from_fasta[i].numpy(), expected)
    loader = DataLoader(from_shards, batch_size=None, num_workers=2)
    assert all(torch.equal(a, b) for a, b in zip(loader, (from_shards[i] for i in range(len(intervals)))))


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"chrom": "chr9", "start": 0, "end": 5}, "chromosome not in"),
        ({"chrom": "chr1", "start": 5, "end": 5}, "start >= end"),
        ({"chrom": "chr1", "start": 0, "end": 60_001}, "end past the end"),
        ({"chrom": "chr1", "start": 0, "end": 5, "strand": "x"}, "strand not one of"),
    ],
)
def test_interval_errors(genome: Path, row: dict, message: str) -> None:
    table = pd.DataFrame([{"chrom": "chr1", "start": 0, "end": 5, "strand": "+"}, {"strand": "+", **row}])
    with pytest.raises(ValueError, match=rf"intervals row 1: .*{message}"):
        IntervalSequences(genome, table)
    with pytest.raises(ValueError, match=r"missing columns \['end'\]"):
        fetch_interval_sequences(genome, table.drop(columns="end"))
