"""The demo genome and the demo benchmarks: the properties the demo relies on."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pysam
import pytest

from longdna.data.benchmarks.demo import make_demo_benchmark
from longdna.data.benchmarks.format import read_benchmark
from longdna.data.genome.demo import PROMOTER_MOTIF, DemoGenomeSpec, generate_demo_genome, motif_consensus

SMALL = DemoGenomeSpec(
    chromosome_lengths=(120_000, 100_000, 100_000, 100_000),
    isochore_mean_length=20_000,
    telomere_gap=1000,
    centromere_gap=3000,
    short_gaps=1,
)


@pytest.fixture(scope="module")
def default_genome(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "genome.fa.gz"
    generate_demo_genome(path, DemoGenomeSpec())
    return path


@pytest.fixture(scope="module")
def small_genome(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("small") / "genome.fa.gz"
    generate_demo_genome(path, SMALL)
    return path


def test_default_genome_layout(default_genome: Path) -> None:
    with pysam.FastaFile(str(default_genome)) as fasta:
        assert len(fasta.references) >= 4
        assert sum(fasta.lengths) >= 8_000_000
        sequence = np.frombuffer(fasta.fetch("chr1").encode(), dtype=np.uint8)
    assert 0.01 < np.mean(sequence == ord("N")) < 0.1  # telomeres, a centromere, short gaps
    lower = sequence >= ord("a")
    assert 0.05 < lower.mean() < 0.3  # soft-masked repeat copies
    upper = np.frombuffer(bytes(sequence).upper(), dtype=np.uint8)
    gc_per_50kb = []
    for start in range(0, upper.size, 50_000):
        window = upper[start : start + 50_000]
        window = window[window != ord("N")]
        if window.size > 40_000:
            gc_per_50kb.append(np.isin(window, np.frombuffer(b"GC", dtype=np.uint8)).mean())
    assert max(gc_per_50kb) - min(gc_per_50kb) > 0.1  # isochores of different GC content


def test_genome_is_deterministic(small_genome: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.fa.gz"
    generate_demo_genome(again, SMALL)
    assert again.read_bytes() == small_genome.read_bytes()
    other = tmp_path / "other.fa.gz"
    generate_demo_genome(other, DemoGenomeSpec(**{**SMALL.to_dict(), "seed": 2}))
    assert other.read_bytes() != small_genome.read_bytes()


def test_genome_has_learnable_context(small_genome: Path) -> None:
    """An order-3 context model fitted on one chromosome predicts another far below 2 bits per base."""
    with pysam.FastaFile(str(small_genome)) as fasta:
        train, test = (np.frombuffer(fasta.fetch(c).upper().encode(), dtype=np.uint8) for c in ("chr1", "chr2"))
    code = np.full(256, -1)
    code[np.frombuffer(b"ACGT", dtype=np.uint8)] = np.arange(4)

    def contexts(seq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = code[seq]
        ok = (s[:-3] >= 0) & (s[1:-2] >= 0) & (s[2:-1] >= 0) & (s[3:] >= 0)
        ctx = s[:-3] * 16 + s[1:-2] * 4 + s[2:-1]
        return ctx[ok], s[3:][ok]

    ctx, nxt = contexts(train)
    counts = np.ones((64, 4))
    np.add.at(counts, (ctx, nxt), 1)
    probs = counts / counts.sum(1, keepdims=True)
    ctx, nxt = contexts(test)
    bits = -np.log2(probs[ctx, nxt]).mean()
    assert bits < 1.8


def test_motif_families_recur(small_genome: Path) -> None:
    motifs = motif_consensus(SMALL)
    assert motifs[0] == PROMOTER_MOTIF and len(motifs) == SMALL.motif_families
    with pysam.FastaFile(str(small_genome)) as fasta:
        genome = "".join(fasta.fetch(c).upper() for c in fasta.references)
    exact = sum(genome.count(m.decode()) for m in motifs)
    assert exact > 10  # instances (8 % substitutions, either strand) that survived intact


def test_satellite_families_are_soft_masked_arrays(small_genome: Path) -> None:
    """Both satellite families occur as tandem arrays in lower case, about one per ``satellite_spacing`` bp."""
    with pysam.FastaFile(str(small_genome)) as fasta:
        genome = "".join(fasta.fetch(c) for c in fasta.references)
    arrays = [re.findall(f"(?:{unit.lower()}){{4,}}", genome) for unit in SMALL.satellite_units]
    assert all(arrays)
    runs = sum(len(found) for found in arrays)  # a 40-150 copy array with 5 % substitutions has several runs
    assert sum(SMALL.chromosome_lengths) // SMALL.satellite_spacing <= runs


@pytest.mark.parametrize(("task", "classes"), [("motif", 2), ("multiclass", 4), ("long_range", 2)])
def test_demo_benchmarks(small_genome: Path, tmp_path: Path, task: str, classes: int) -> None:
    make_demo_benchmark(
        task, task, small_genome, tmp_path, ["chr1", "chr2"], ["chr3", "chr4"], SMALL, seed=5, n_train=40, n_test=20
    )
    frame, info = read_benchmark(tmp_path)
    assert info.num_outputs == classes and info.suite == "demo"
    assert frame.groupby("split")["label"].value_counts().unstack().min().min() >= 40 // classes // 2
    with pysam.FastaFile(str(small_genome)) as fasta:
        held_out = "".join(fasta.fetch(c).upper() for c in ("chr3", "chr4"))
    test_sequence = frame.loc[frame["split"] == "test", "sequence"].iloc[0]
    assert test_sequence[:50] in held_out or test_sequence[-50:] in held_out  # backgrounds from held-out chroms


def test_long_range_label_needs_both_elements(small_genome: Path, tmp_path: Path) -> None:
    """Each element alone is independent of the label, the two are at least 8,192 bp apart, and neither
    satellite unit occurs anywhere else in an example."""
    make_demo_benchmark(
        "long_range",
        "lr",
        small_genome,
        tmp_path,
        ["chr1", "chr2"],
        ["chr3", "chr4"],
        SMALL,
        seed=2,
        n_train=200,
        n_test=20,
    )
    frame, _ = read_benchmark(tmp_path)
    assert frame["sequence"].str.len().eq(11000).all()
    units = list(SMALL.satellite_units)

    def element(region: str) -> tuple[int, int, int]:
        """(family, first exact unit, end of the last exact unit) of the tandem array in a region: the family
        with most exact units (about half of the 100 units survive 5 % substitutions)."""
        counts = [region.count(unit) for unit in units]
        family = int(np.argmax(counts))
        assert counts[family] >= 25, "no element found"
        return family, region.find(units[family]), region.rfind(units[family]) + len(units[family])

    first, second, labels = [], [], []
    for sequence, label in zip(frame["sequence"], frame["label"]):
        family_a, start_a, end_a = element(sequence[:1600])
        offset = end_a + 8000
        family_b, start_b, end_b = element(sequence[offset:])
        start_b, end_b = start_b + offset, end_b + offset
        assert start_b - end_a >= 8192 - 24  # B starts >= 8192 bp after A ends (first/last units may be mutated)
        outside = sequence[:start_a] + "|" + sequence[end_a:start_b] + "|" + sequence[end_b:]
        assert not any(unit in outside for unit in units)  # no stray copies in the background
        first.append(family_a)
        second.append(family_b)
        labels.append(label)
    first, second, labels = map(np.array, (first, second, labels))
    assert np.array_equal(labels, (first == second).astype(int))
    for split in ("train", "test"):  # P(label | either element) is exactly 1/2 in each split (sizes 200, 20)
        rows = (frame["split"] == split).to_numpy()
        for element in (first, second):
            for family in (0, 1):
                assert labels[rows & (element == family)].mean() == 0.5
