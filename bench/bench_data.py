"""Data-path speed: FASTA -> token shards, and window sampling from shards.

Usage::

    python bench/bench_data.py [--workdir DIR] [--mbp 240] [--seconds 3]

Builds a synthetic genome of ``--mbp`` megabases (the demo generator with long chromosomes: realistic mix of
soft-masked repeats and N gaps) as plain FASTA, gzip FASTA (level 6, as UCSC ships) and the normalised bgzip
FASTA, then measures, in this one process (numpy and hashlib run single-threaded here, so the rates are
per core). Rates are per CPU second of this process (``time.process_time``), so that other jobs on a shared
machine do not distort them; each FASTA measurement is the best of two runs:

1. ``read_fasta`` (parse + validate) on plain and gzip input;
2. the genome stage's normalisation (``read_fasta`` -> ``write_bgzip_fasta``) from plain and gzip input;
3. the tokenize stage (``tokenize_chromosome`` for every chromosome) from the plain indexed FASTA and from the
   normalised bgzip FASTA, soft-mask track included;
4. window sampling at 32 kb and 1 Mb, random positions, tokens as an int64 tensor:
   (a) the on-the-fly baseline: ``pyfaidx`` window read + per-character dict tokenization (HyenaDNA's path),
   (b) ``RandomWindows`` (N filter at 10 %, no reverse complement; and with rc_probability 0.5),
   (c) the floor: a raw memmap slice converted to an int64 tensor (no N filter, no RC); a uint8 slice copy is
       printed for context.

Prints a Markdown report (paste into bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyfaidx
import pysam
import torch

from longdna.data.genome.demo import DemoGenomeSpec, generate_demo_genome
from longdna.data.genome.fasta import _format_lines, fasta_lengths, read_fasta, write_bgzip_fasta
from longdna.data.tokens.shards import GenomeShards, split_regions, tokenize_chromosome, write_manifest
from longdna.data.tokens.windows import RandomWindows

HG38_BP = 3.1e9
HG38_CHR1_BP = 248_956_422
TARGET_TOKENIZE_MBPS = 100
TARGET_SPEEDUP = 50
TARGET_RAW_RATIO = 2


def build_genome(workdir: Path, mbp: int) -> dict[str, Path]:
    paths = {"bgzip": workdir / "genome.fa.gz", "plain": workdir / "genome.fa", "gzip": workdir / "genome.gzip.fa.gz"}
    if all(p.exists() for p in paths.values()):
        return paths
    n_chroms = 8
    spec = DemoGenomeSpec(seed=7, chromosome_lengths=tuple([mbp * 1_000_000 // n_chroms] * n_chroms))
    t = time.perf_counter()
    generate_demo_genome(paths["bgzip"], spec)
    print(f"generated {mbp} Mbp in {time.perf_counter() - t:.1f} s")
    with open(paths["plain"], "wb") as plain, gzip.open(paths["gzip"], "wb", compresslevel=6) as gz:
        for name, sequence in read_fasta(paths["bgzip"]):
            record = b">" + name.encode() + b"\n" + _format_lines(sequence)
            plain.write(record)
            gz.write(record)
    pysam.faidx(str(paths["plain"]))
    return paths


#: CPU time of this process, not wall time: the VM's two cores are shared with other jobs, whose load would
#: otherwise show up as noise (every measured path is single-threaded, so CPU seconds = core seconds)
clock = time.process_time


def timed(fn: Callable[[], object], repeats: int = 2) -> float:
    """Best CPU time of ``repeats`` runs."""
    best = float("inf")
    for _ in range(repeats):
        t = clock()
        fn()
        best = min(best, clock() - t)
    return best


def rate(fn: Callable[[int], object], seconds: float, min_samples: int = 3) -> float:
    """Samples per second of ``fn(i)``, called for i = 0, 1, ... for about ``seconds``."""
    fn(0)  # warm-up (opens memmaps / file handles)
    count, t0 = 0, clock()
    while count < min_samples or clock() - t0 < seconds:
        fn(count + 1)
        count += 1
    return count / (clock() - t0)


def bench_tokenize(paths: dict[str, Path], workdir: Path) -> dict[str, float]:
    lengths = fasta_lengths(paths["bgzip"])
    total_mbp = sum(lengths.values()) / 1e6
    results: dict[str, float] = {}
    for kind in ("plain", "gzip"):
        results[f"read_fasta {kind}"] = total_mbp / timed(lambda: sum(1 for _ in read_fasta(paths[kind])))
    for kind in ("plain", "gzip"):
        out = workdir / f"normalised-{kind}.fa.gz"
        results[f"normalise {kind}"] = total_mbp / timed(lambda: write_bgzip_fasta(read_fasta(paths[kind]), out))
    for kind in ("plain", "bgzip"):
        shard_dir = workdir / f"shards-{kind}"
        shutil.rmtree(shard_dir, ignore_errors=True)
        seconds = timed(lambda: [tokenize_chromosome(paths[kind], c, shard_dir) for c in lengths])
        results[f"tokenize {kind}"] = total_mbp / seconds
    write_manifest(workdir / "shards-bgzip", list(lengths), split_regions(lengths))
    return results


def bench_windows(paths: dict[str, Path], workdir: Path, length: int, seconds: float) -> dict[str, float]:
    shards = GenomeShards(workdir / "shards-bgzip")
    for chrom in shards.chroms:  # page cache warm for every method alike
        np.asarray(shards.tokens(chrom)).sum()
    lengths = dict(zip(shards.manifest["chrom"], shards.manifest["length"]))
    chroms = list(lengths)
    rng = random.Random(0)

    fasta = pyfaidx.Fasta(str(paths["plain"]))
    table = {base: i for i, base in enumerate("ACGTN", start=7)} | {b: i for i, b in enumerate("acgtn", start=7)}

    def baseline(_: int) -> torch.Tensor:
        chrom = rng.choice(chroms)
        start = rng.randrange(lengths[chrom] - length)
        text = str(fasta[chrom][start : start + length])
        return torch.tensor([table.get(ch, 11) for ch in text], dtype=torch.long)

    windows = RandomWindows(shards, "train", length, seed=1, max_n_fraction=0.1)
    windows_rc = RandomWindows(shards, "train", length, seed=1, max_n_fraction=0.1, rc_probability=0.5)
    maps = {c: np.load(shards.directory / f"{c}.npy", mmap_mode="r") for c in chroms}

    def raw(_: int) -> torch.Tensor:
        chrom = chroms[rng.randrange(len(chroms))]
        start = rng.randrange(lengths[chrom] - length)
        return torch.from_numpy(maps[chrom][start : start + length].astype(np.int64))

    def raw_uint8(_: int) -> np.ndarray:
        chrom = chroms[rng.randrange(len(chroms))]
        start = rng.randrange(lengths[chrom] - length)
        return np.array(maps[chrom][start : start + length])

    return {
        "baseline": rate(baseline, seconds),
        "RandomWindows": rate(windows.__getitem__, seconds),
        "RandomWindows rc=0.5": rate(windows_rc.__getitem__, seconds),
        "raw int64": rate(raw, seconds),
        "raw uint8": rate(raw_uint8, seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, help="keep the generated files here (default: a temp dir)")
    parser.add_argument("--mbp", type=int, default=240)
    parser.add_argument("--seconds", type=float, default=3.0, help="per window-sampling measurement")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        paths = build_genome(workdir, args.mbp)
        tok = bench_tokenize(paths, workdir)
        win = {length: bench_windows(paths, workdir, length, args.seconds) for length in (32_768, 1_048_576)}

    cpu = platform.processor() or platform.machine()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\nMachine: {os.cpu_count()} CPU cores ({cpu}), load average {load}; Python {platform.python_version()},"
        f" numpy {np.__version__}, torch {torch.__version__}; genome {args.mbp} Mbp in 8 chromosomes\n"
    )
    print("| FASTA path (1 process) | Mbp per CPU second |\n|---|---:|")
    for name, value in tok.items():
        print(f"| {name} | {value:.0f} |")
    norm = tok["normalise gzip"]
    tokenize = tok["tokenize bgzip"]
    serial = HG38_BP / 1e6 / norm
    parallel = max(HG38_BP / 1e6 / (8 * tokenize), HG38_CHR1_BP / 1e6 / tokenize)
    print(
        f"\nTarget: tokenize plain >= {TARGET_TOKENIZE_MBPS} Mbp/s per core: "
        f"{'met' if tok['tokenize plain'] >= TARGET_TOKENIZE_MBPS else 'MISSED'} ({tok['tokenize plain']:.0f})."
    )
    print(
        f"hg38 projection, 8 cores: genome stage (gzip -> bgzip, one job) {serial:.0f} s + tokenize"
        f" (bgzip, one job per chromosome, bounded by chr1) {parallel:.0f} s = {serial + parallel:.0f} s.\n"
    )
    print("Window samples per CPU second:\n")
    print(
        "| window | baseline | RandomWindows | RC 0.5 | raw int64 | raw uint8 |"
        " vs baseline | vs raw int64 |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    for length, r in win.items():
        print(
            f"| {length // 1024} kb | {r['baseline']:.1f} | {r['RandomWindows']:.0f}"
            f" | {r['RandomWindows rc=0.5']:.0f}"
            f" | {r['raw int64']:.0f} | {r['raw uint8']:.0f} | {r['RandomWindows'] / r['baseline']:.0f}x"
            f" (target >= {TARGET_SPEEDUP}x) | {r['raw int64'] / r['RandomWindows']:.2f}x slower"
            f" (target <= {TARGET_RAW_RATIO}x) |"
        )


if __name__ == "__main__":
    main()
