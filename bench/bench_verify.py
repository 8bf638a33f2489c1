"""Cost of verifying token shards when they are opened (``GenomeShards``: ``.npy`` structure and size, sha256,
every token a base), the check pretraining runs before it trains.

Usage::

    python bench/bench_verify.py [--workdir DIR] [--gb 1.0] [--chroms 8] [--repeats 3]

Writes ``--gb`` of random base tokens as ``--chroms`` shards (no soft mask) with their manifest, reads them
once so that they sit in the page cache (as they do right after tokenization; a cold read adds the disk's
read time), then times ``GenomeShards(dir)`` -- every check, one thread per core -- and the same with one
thread. Reports seconds per GB, best of ``--repeats``: wall clock, and CPU time of the process (what the
checks cost, whatever else runs on the machine), as Markdown table rows.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from longdna import vocab
from longdna.data.tokens import shards as shards_module
from longdna.data.tokens.shards import GenomeShards, save_npy, sha256_of, split_regions, write_manifest
from longdna.io import write_json


def write_shards(directory: Path, total_bytes: int, chroms: int) -> None:
    rng = np.random.default_rng(0)
    lengths = {}
    for i in range(chroms):
        chrom, length = f"chr{i + 1}", total_bytes // chroms
        tokens = rng.integers(vocab.A, vocab.N + 1, length, dtype=np.uint8)
        save_npy(directory / f"{chrom}.npy", tokens)
        write_json(
            directory / f"{chrom}.json",
            {
                "chrom": chrom,
                "length": length,
                "n_fraction": 0.0,
                "sha256": sha256_of(tokens),
                "file": f"{chrom}.npy",
                "mask_file": None,
                "softmasked_fraction": None,
            },
        )
        lengths[chrom] = length
    write_manifest(directory, list(lengths), split_regions(lengths, valid=["chr1"], test=["chr2"]))


def best_seconds(directory: Path, repeats: int) -> tuple[float, float]:
    """(wall, CPU) seconds of opening the shards with verification, each the best of ``repeats``."""
    wall, cpu = [], []
    for _ in range(repeats):
        tick, tock = time.perf_counter(), time.process_time()
        GenomeShards(directory)
        wall.append(time.perf_counter() - tick)
        cpu.append(time.process_time() - tock)
    return min(wall), min(cpu)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "longdna-bench-verify")
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--chroms", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    total = int(args.gb * 1e9)
    if sum(f.stat().st_size for f in args.workdir.glob("*.npy")) < total:
        write_shards(args.workdir, total, args.chroms)
    GenomeShards(args.workdir, verify=False).problems()  # into the page cache
    parallel = best_seconds(args.workdir, args.repeats)
    shards_module._workers = lambda jobs: 1  # noqa: SLF001 -- the same checks on one thread
    serial = best_seconds(args.workdir, args.repeats)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"{args.gb:g} GB in {args.chroms} shards, in the page cache; {platform.machine()}, {cores} cores,"
        f" load average {os.getloadavg()[0]:.1f}\n"
    )
    print("| threads | wall s per GB | CPU s per GB |")
    print("|---|---|---|")
    for threads, (wall, cpu) in ((cores, parallel), (1, serial)):
        print(f"| {threads} | {wall / args.gb:.2f} | {cpu / args.gb:.2f} |")
