"""Three benchmarks generated from the demo genome, in the real benchmarks' format.

Backgrounds are windows cut from the demo genome (``N``-free, upper-cased), training examples from the
training chromosomes and test examples from the held-out ones, so pretraining never saw a test background.
Labels come from elements implanted into the backgrounds:

``motif`` (binary, ~200 bp)
    positive: the promoter-like motif of family 0 (at most one substitution) somewhere in the central part;
    negative: a decoy at the same place, either the motif with four substitutions or a shuffled copy (same
    composition), so neither base composition nor partial k-mer matches give the label away.
``multiclass`` (4 classes, ~300 bp)
    class k in 1..3: one instance of motif family k on a random strand (8 % substitutions); class 0: a
    shuffled copy of one of those motifs.
``long_range`` (binary, 11 kb)
    element A near the start and element B at least 8,192 bp after A's end; each element is a satellite
    array (100 copies, 1.2 kb, 5 % substitutions) of one of the genome's two satellite families
    (``DemoGenomeSpec.satellite_units``: a GC-rich and an AT-rich 12 bp unit); label = 1 when A and B are of
    the same family. The four (label, family of A) combinations are equally frequent in each split (exactly,
    when the split's size is a multiple of 4), so each element alone is independent of the label in the data,
    not only in expectation: any window shorter than the gap, which can touch at most one element, carries no
    information about it. Backgrounds never contain a satellite unit (windows that do are drawn again), so the
    two arrays are the only ones. Pretraining saw both families in the genome, which is what lets a small
    pretrained model learn the rule from a few hundred examples; with units it never saw (or arrays of
    ~450 bp) small HyenaDNA models stayed near chance, or found the rule only for some seeds. At another
    ``length`` the layout scales with it (positions, gap and number of copies in proportion; at least 2
    copies), so the task can be trained at a short length.

``centred`` (binary, 256 bp)
    a satellite-like tandem element (6 mutated copies, ~80 bp) of motif family 4 (label 0) or family 5
    (label 1) in the middle of the window; the flanks carry no information. The task of the zero-shot length
    extrapolation demo (``config/long_range_demo.yaml``): re-cut longer, the window keeps the element in its
    middle and only adds flanks (which hold stray genomic instances of both families), so a model whose
    representation of the centre is not disturbed by far context keeps its accuracy.

Every example also records its locus (the background window's ``chrom``, ``start``, ``end``, strand ``+``)
and its ``core`` (the window with the elements implanted), the benchmark format's locus columns: the same
example can be re-cut at any length (``longdna.data.benchmarks.format.resize_examples``), the implanted window
staying in the middle of a longer stretch of its own chromosome (zero-shot length extrapolation).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pysam

from longdna.data.benchmarks.format import BenchmarkInfo, write_benchmark
from longdna.data.genome.demo import DemoGenomeSpec, motif_consensus, mutate, reverse_complement_bytes, tandem_array

TASKS = ("motif", "multiclass", "long_range", "centred")


@dataclass(frozen=True)
class DemoTask:
    length: int
    n_train: int
    n_test: int
    num_classes: int
    metric: str
    label_names: tuple[str, ...]
    variants: int = 1  # design cells per class, equally frequent in each split (the generator's ``variant``)


DEFAULTS = {
    "motif": DemoTask(200, 3000, 1000, 2, "accuracy", ("no_promoter", "promoter")),
    "multiclass": DemoTask(300, 4000, 1000, 4, "accuracy", ("decoy", "family1", "family2", "family3")),
    "long_range": DemoTask(11000, 1500, 500, 2, "accuracy", ("different", "same"), variants=2),
    "centred": DemoTask(256, 1000, 300, 2, "accuracy", ("family4", "family5")),
}


class BackgroundSampler:
    """Random windows of the genome from a set of chromosomes, free of ``N`` and of the ``exclude`` strings."""

    def __init__(
        self, fasta: str | os.PathLike, chroms: list[str], rng: np.random.Generator, exclude: tuple[str, ...] = ()
    ) -> None:
        with pysam.FastaFile(str(fasta)) as reader:
            self.sequences = {c: np.frombuffer(reader.fetch(c).upper().encode(), dtype=np.uint8) for c in chroms}
        self.chroms = chroms
        self.weights = np.array([self.sequences[c].size for c in chroms], dtype=float)
        self.weights /= self.weights.sum()
        self.rng = rng
        self.exclude = [e.upper().encode() for e in exclude]

    def sample(self, length: int) -> np.ndarray:
        return self.sample_located(length)[2]

    def sample_located(self, length: int) -> tuple[str, int, np.ndarray]:
        """(chromosome, start, window) of a random ``N``-free window."""
        for _ in range(1000):
            chrom = self.chroms[self.rng.choice(len(self.chroms), p=self.weights)]
            seq = self.sequences[chrom]
            start = int(self.rng.integers(0, seq.size - length))
            window = seq[start : start + length]
            if not (window == ord("N")).any() and not any(e in window.tobytes() for e in self.exclude):
                return chrom, start, window.copy()
        raise ValueError(f"no N-free window of {length} bp without {self.exclude} in {self.chroms}")


def _implant(background: np.ndarray, element: np.ndarray, at: int) -> None:
    background[at : at + element.size] = element


def _motif_example(
    label: int, variant: int, seq: np.ndarray, motifs: list[bytes], rng: np.random.Generator
) -> np.ndarray:
    length = seq.size
    motif = np.frombuffer(motifs[0], dtype=np.uint8)
    if label == 1:
        element = mutate(motif, 1 / motif.size, rng)
    elif rng.random() < 0.5:
        element = motif.copy()
        hits = rng.choice(motif.size, 4, replace=False)
        element[hits] = mutate(element[hits], 1.0, rng)
    else:
        element = rng.permutation(motif)
    _implant(seq, element, int(rng.integers(length // 4, 3 * length // 4 - element.size)))
    return seq


def _multiclass_example(
    label: int, variant: int, seq: np.ndarray, motifs: list[bytes], rng: np.random.Generator
) -> np.ndarray:
    length = seq.size
    family = label if label > 0 else int(rng.integers(1, 4))
    motif = np.frombuffer(motifs[family], dtype=np.uint8)
    element = mutate(motif, 0.08, rng) if label > 0 else rng.permutation(motif)
    if rng.random() < 0.5:
        element = reverse_complement_bytes(element)
    _implant(seq, element, int(rng.integers(20, length - 20 - element.size)))
    return seq


def _long_range_example(
    label: int, variant: int, seq: np.ndarray, units: list[bytes], rng: np.random.Generator
) -> np.ndarray:
    length = seq.size
    # the layout at the default length (A starts in [100, 300), B starts >= 8192 bp after A ends and ends >= 50
    # bp before the sequence does, 100 copies per element), scaled to this length
    scale = length / DEFAULTS["long_range"].length
    copies = max(2, round(100 * scale))
    min_gap = round(8192 * scale)
    family_a = variant  # balanced with the label in each split: neither element alone says anything
    family_b = family_a if label == 1 else 1 - family_a
    element_a = tandem_array(units[family_a], copies, rng)
    element_b = tandem_array(units[family_b], copies, rng)
    start_a = int(rng.integers(round(100 * scale), round(300 * scale)))
    earliest_b = start_a + element_a.size + min_gap
    latest_b = length - element_b.size - round(50 * scale)
    if earliest_b > latest_b:
        raise ValueError(f"long_range: length {length} too short for elements {min_gap} bp apart")
    start_b = int(rng.integers(earliest_b, latest_b + 1))
    _implant(seq, element_a, start_a)
    _implant(seq, element_b, start_b)
    return seq


def _centred_example(
    label: int, variant: int, seq: np.ndarray, motifs: list[bytes], rng: np.random.Generator
) -> np.ndarray:
    element = tandem_array(motifs[4 + label], 6, rng)
    _implant(seq, element, seq.size // 2 - element.size // 2)
    return seq


GENERATORS = {
    "motif": _motif_example,
    "multiclass": _multiclass_example,
    "long_range": _long_range_example,
    "centred": _centred_example,
}


def make_demo_benchmark(
    task: str,
    name: str,
    genome: str | os.PathLike,
    out_dir: str | os.PathLike,
    train_chroms: list[str],
    test_chroms: list[str],
    genome_spec: DemoGenomeSpec = DemoGenomeSpec(),
    seed: int = 0,
    length: int | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
) -> pd.DataFrame:
    """Generate demo benchmark ``task`` from the demo genome into ``out_dir`` (benchmark format)."""
    if task not in TASKS:
        raise ValueError(f"demo benchmark task must be one of {TASKS}, not {task!r}")
    defaults = DEFAULTS[task]
    length = length or defaults.length
    counts = {"train": n_train or defaults.n_train, "test": n_test or defaults.n_test}
    if task == "long_range" and len(genome_spec.satellite_units) != 2:
        raise ValueError(
            f"demo benchmark long_range needs the genome's two satellite families, "
            f"not satellite_units {genome_spec.satellite_units}"
        )
    # what the task implants: satellite units for long_range, the motif families otherwise
    elements = (
        [u.encode() for u in genome_spec.satellite_units] if task == "long_range" else motif_consensus(genome_spec)
    )
    rng = np.random.default_rng([seed, TASKS.index(task)])
    rows = []
    for split, chroms in (("train", train_chroms), ("test", test_chroms)):
        sampler = BackgroundSampler(genome, chroms, rng, exclude=genome_spec.satellite_units)
        cells = np.arange(counts[split]) % (defaults.num_classes * defaults.variants)  # balanced design
        for i, cell in enumerate(rng.permutation(cells)):
            label, variant = cell % defaults.num_classes, cell // defaults.num_classes
            chrom, start, background = sampler.sample_located(length)
            seq = GENERATORS[task](int(label), int(variant), background, elements, rng).tobytes().decode()
            rows.append((f"{name}_{split}_{i}", seq, int(label), split, chrom, start, start + length, "+", seq))
    frame = pd.DataFrame(rows, columns=["id", "sequence", "label", "split", "chrom", "start", "end", "strand", "core"])
    info = BenchmarkInfo(
        name=name,
        task="classification",
        num_outputs=defaults.num_classes,
        metric=defaults.metric,
        suite="demo",
        label_names=list(defaults.label_names),
        source=f"longdna.data.benchmarks.demo task {task!r}, seed {seed}, from the demo genome",
    )
    write_benchmark(out_dir, frame, info)
    return frame
