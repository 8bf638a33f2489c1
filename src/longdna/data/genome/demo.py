"""A deterministic synthetic genome with learnable structure, for the demo and the tests.

The genome is built in layers, each from its own seeded random stream (so changing one knob does not
reshuffle the others):

1. **Isochores**: every chromosome is tiled by segments (exponential lengths, mean ``isochore_mean_length``),
   each drawn from one of ``len(gc_levels)`` GC classes.
2. **Background**: inside a segment the bases follow an order-``markov_order`` Markov chain. One random
   transition table (rows ~ Dirichlet(``dirichlet_alpha``)) is tilted towards G/C or A/T per GC class, so the
   classes differ in composition but share their context structure. With the defaults the background carries
   about 1.3 bits of entropy per base, against 2 bits for a model that ignores context.
3. **Repeats**: ``repeat_families`` consensus sequences (drawn from the same chain) are copied, whole or as
   fragments, with 2-15 % substitutions, to cover about ``repeat_fraction`` of the genome, in lower case
   (soft-masked, as RepeatMasker output is).
4. **Motif families**: ``motif_families`` short consensus motifs recur genome-wide on either strand with
   ``motif_mutation_rate`` substitutions, one instance every ``motif_spacing`` bp on average. Family 0 is a
   promoter-like TATA-box motif; the demo benchmarks implant members of these families.
5. **Satellites**: tandem arrays of the ``satellite_units`` (one array every ``satellite_spacing`` bp on
   average, 40-150 copies, 5 % substitutions), soft-masked as RepeatMasker masks satellites; the demo's
   long-range benchmark is built from arrays of the same two families.
6. **Gaps**: runs of ``N`` at both telomeres, one centromere-like gap and a few short gaps per chromosome.

The result is written as bgzipped FASTA (60 bases per line) with ``.fai`` and ``.gzi`` indexes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from longdna.data.genome.fasta import write_bgzip_fasta

ALPHABET = np.frombuffer(b"ACGT", dtype=np.uint8)
COMPLEMENT_BYTES = np.zeros(256, dtype=np.uint8)
COMPLEMENT_BYTES[np.frombuffer(b"ACGTacgtNn", dtype=np.uint8)] = np.frombuffer(b"TGCAtgcaNn", dtype=np.uint8)

#: the promoter-like motif of family 0 (a TATA box followed by a GC-rich initiator-like stretch)
PROMOTER_MOTIF = b"TATAAAAGGCGCGC"


@dataclass(frozen=True)
class DemoGenomeSpec:
    seed: int = 1
    chromosome_lengths: tuple[int, ...] = (2_400_000, 2_000_000, 1_600_000, 1_200_000, 1_000_000)
    markov_order: int = 3
    dirichlet_alpha: float = 0.5
    gc_levels: tuple[float, ...] = (0.36, 0.46, 0.58)
    isochore_mean_length: int = 150_000
    repeat_families: int = 4
    repeat_fraction: float = 0.12
    motif_families: int = 12
    motif_spacing: int = 2_500
    motif_mutation_rate: float = 0.08
    satellite_units: tuple[str, ...] = ("GGCGCCGCGGGC", "ATTAAATTTATA")  # a GC-rich and an AT-rich family
    satellite_spacing: int = 50_000
    telomere_gap: int = 10_000
    centromere_gap: int = 50_000
    short_gaps: int = 3

    @property
    def chromosome_names(self) -> list[str]:
        return [f"chr{i + 1}" for i in range(len(self.chromosome_lengths))]

    @classmethod
    def from_config(cls, config: dict) -> "DemoGenomeSpec":
        values = dict(config)
        if "chromosome_lengths" in values:
            values["chromosome_lengths"] = tuple(int(x) for x in values["chromosome_lengths"])
        if "gc_levels" in values:
            values["gc_levels"] = tuple(float(x) for x in values["gc_levels"])
        if "satellite_units" in values:
            values["satellite_units"] = tuple(str(x).upper() for x in values["satellite_units"])
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)


def _streams(spec: DemoGenomeSpec) -> dict[str, np.random.Generator]:
    n = len(spec.chromosome_lengths)
    # appended after the original streams, so that adding a layer left the earlier layers unchanged
    names = ["table", "motifs", "repeats"] + [f"chrom{i}" for i in range(n)] + [f"satellites{i}" for i in range(n)]
    children = np.random.SeedSequence(spec.seed).spawn(len(names))
    return {name: np.random.default_rng(child) for name, child in zip(names, children)}


def transition_tables(spec: DemoGenomeSpec) -> np.ndarray:
    """Cumulative next-base probabilities, shape (gc_classes, 4**order, 4)."""
    rng = _streams(spec)["table"]
    base = rng.dirichlet(np.full(4, spec.dirichlet_alpha), size=4**spec.markov_order)
    tables = []
    for gc in spec.gc_levels:
        tilt = np.array([1 - gc, gc, gc, 1 - gc])  # A C G T
        tilted = base * tilt
        tables.append(np.cumsum(tilted / tilted.sum(1, keepdims=True), axis=1))
    return np.stack(tables)


def motif_consensus(spec: DemoGenomeSpec) -> list[bytes]:
    """Consensus of every motif family; family 0 is :data:`PROMOTER_MOTIF`."""
    rng = _streams(spec)["motifs"]
    motifs = [PROMOTER_MOTIF]
    for _ in range(spec.motif_families - 1):
        length = int(rng.integers(10, 17))
        motifs.append(ALPHABET[rng.integers(0, 4, length)].tobytes())
    return motifs


def sample_markov(cumulative: np.ndarray, order: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """``length`` bases (ASCII) from an order-k chain, generated as many independent 4 kb chains in parallel."""
    chunk = 4096
    chains = max(1, -(-length // chunk))
    context = rng.integers(0, 4**order, chains)
    out = np.empty((chains, chunk), dtype=np.uint8)
    uniforms = rng.random((chunk, chains))
    mask = 4**order - 1
    for i in range(chunk):
        base = np.minimum((uniforms[i, :, None] > cumulative[context]).sum(1), 3)  # float round-off at 1.0
        out[:, i] = base
        context = ((context << 2) | base) & mask
    return ALPHABET[out.reshape(-1)[:length]]


def mutate(seq: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Substitute each base with probability ``rate`` by one of the three other bases."""
    seq = seq.copy()
    hits = np.flatnonzero(rng.random(seq.size) < rate)
    if hits.size:
        current = np.searchsorted(ALPHABET, np.frombuffer(seq[hits].tobytes().upper(), dtype=np.uint8))
        replacement = ALPHABET[(current + rng.integers(1, 4, hits.size)) % 4]
        lower = seq[hits] >= ord("a")
        seq[hits] = np.where(lower, replacement + 32, replacement)
    return seq


def reverse_complement_bytes(seq: np.ndarray) -> np.ndarray:
    return COMPLEMENT_BYTES[seq[::-1]]


def tandem_array(unit: bytes, copies: int, rng: np.random.Generator) -> np.ndarray:
    """A satellite-like tandem array: ``copies`` copies of ``unit`` with 5 % substitutions."""
    return mutate(np.tile(np.frombuffer(unit, dtype=np.uint8), copies), 0.05, rng)


def _chromosome(
    spec: DemoGenomeSpec, index: int, tables: np.ndarray, repeats: list[np.ndarray], motifs: list[bytes]
) -> np.ndarray:
    streams = _streams(spec)
    rng = streams[f"chrom{index}"]
    length = spec.chromosome_lengths[index]
    # 1-2. isochores filled with class-specific Markov background
    bounds = [0]
    while bounds[-1] < length:
        bounds.append(min(length, bounds[-1] + max(1000, int(rng.exponential(spec.isochore_mean_length)))))
    classes = rng.integers(0, len(spec.gc_levels), len(bounds) - 1)
    seq = np.empty(length, dtype=np.uint8)
    for c in range(len(spec.gc_levels)):
        spans = [(bounds[i], bounds[i + 1]) for i in np.flatnonzero(classes == c)]
        total = sum(e - s for s, e in spans)
        if total == 0:
            continue
        pool = sample_markov(tables[c], spec.markov_order, total, rng)
        offset = 0
        for s, e in spans:
            seq[s:e] = pool[offset : offset + e - s]
            offset += e - s
    # 3. soft-masked repeat copies
    covered = 0
    while covered < spec.repeat_fraction * length:
        family = repeats[int(rng.integers(len(repeats)))]
        start_in = int(rng.integers(0, family.size // 2)) if rng.random() < 0.5 else 0
        piece = family[start_in : start_in + int(rng.integers(family.size // 3, family.size + 1))]
        piece = mutate(piece, float(rng.uniform(0.02, 0.15)), rng)
        if rng.random() < 0.5:
            piece = reverse_complement_bytes(piece)
        at = int(rng.integers(0, length - piece.size))
        seq[at : at + piece.size] = piece + 32  # lower case
        covered += piece.size
    # 4. motif instances on either strand
    n_instances = length // spec.motif_spacing
    families = rng.integers(0, len(motifs), n_instances)
    positions = rng.integers(0, length - 32, n_instances)
    strands = rng.random(n_instances) < 0.5
    for family, at, minus in zip(families, positions, strands):
        motif = mutate(np.frombuffer(motifs[family], dtype=np.uint8), spec.motif_mutation_rate, rng)
        seq[at : at + motif.size] = reverse_complement_bytes(motif) if minus else motif
    # 5. soft-masked satellite arrays
    if spec.satellite_units and spec.satellite_spacing:
        satellite_rng = streams[f"satellites{index}"]
        for _ in range(length // spec.satellite_spacing):
            unit = spec.satellite_units[int(satellite_rng.integers(len(spec.satellite_units)))].encode()
            array = tandem_array(unit, int(satellite_rng.integers(40, 151)), satellite_rng)
            at = int(satellite_rng.integers(0, length - array.size))
            seq[at : at + array.size] = array + 32  # lower case
    # 6. assembly gaps
    seq[: spec.telomere_gap] = ord("N")
    seq[length - spec.telomere_gap :] = ord("N")
    centre = int(rng.integers(length // 3, 2 * length // 3))
    seq[centre : centre + spec.centromere_gap] = ord("N")
    for _ in range(spec.short_gaps):
        at = int(rng.integers(spec.telomere_gap, length - spec.telomere_gap - 5000))
        seq[at : at + int(rng.integers(100, 5000))] = ord("N")
    return seq


def generate_demo_genome(path: str | Path, spec: DemoGenomeSpec = DemoGenomeSpec()) -> None:
    """Write the demo genome as bgzipped FASTA at ``path`` (+ ``.fai``, ``.gzi``), atomically."""
    streams = _streams(spec)
    tables = transition_tables(spec)
    motifs = motif_consensus(spec)
    repeat_rng = streams["repeats"]
    repeats = [
        sample_markov(tables[1], spec.markov_order, int(repeat_rng.integers(300, 1500)), repeat_rng)
        for _ in range(spec.repeat_families)
    ]
    records = (
        (name, _chromosome(spec, i, tables, repeats, motifs).tobytes()) for i, name in enumerate(spec.chromosome_names)
    )
    write_bgzip_fasta(records, path)
