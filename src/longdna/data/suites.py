"""Benchmark suites: turn a benchmark's config entry into a benchmark directory (see data/benchmarks.py).

:func:`prepare_benchmark` dispatches on ``spec["suite"]``; each suite function writes the common format.
"""

from __future__ import annotations

import os
from typing import Any

from longdna.data.demo_benchmarks import make_demo_benchmark
from longdna.data.demo_genome import DemoGenomeSpec
from longdna.data.fasta import fasta_lengths


def prepare_demo(name: str, spec: dict[str, Any], out_dir: str | os.PathLike, genome_fasta: str | os.PathLike,
                 genome_spec: dict[str, Any]) -> None:
    """A demo task cut from the demo genome: train backgrounds from the training chromosomes, test
    backgrounds from the validation and test chromosomes of the genome's splits."""
    if genome_spec.get("source") != "demo":
        raise ValueError(f"benchmarks.{name}: suite 'demo' needs a demo genome (source: demo)")
    held_out = [*genome_spec.get("splits", {}).get("valid", []), *genome_spec.get("splits", {}).get("test", [])]
    chroms = list(fasta_lengths(genome_fasta))
    train = [c for c in chroms if c not in held_out]
    if not held_out or not train:
        raise ValueError(f"benchmarks.{name}: the demo genome needs both training and held-out chromosomes")
    options = {k: spec[k] for k in ("length", "n_train", "n_test", "seed") if k in spec}
    make_demo_benchmark(spec["task"], name, genome_fasta, out_dir, train, held_out,
                        DemoGenomeSpec.from_config(genome_spec.get("demo", {})), **options)


def prepare_benchmark(name: str, spec: dict[str, Any], out_dir: str | os.PathLike,
                      genome_fasta: str | os.PathLike | None, genome_spec: dict[str, Any] | None,
                      cache_dir: str | os.PathLike) -> None:
    suite = spec["suite"]
    if suite == "demo":
        prepare_demo(name, spec, out_dir, genome_fasta, genome_spec or {})
    else:
        raise ValueError(f"benchmarks.{name}: suite {suite!r} is not available")
