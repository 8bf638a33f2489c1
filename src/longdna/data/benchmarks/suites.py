"""Benchmark suites: turn a benchmark's config entry into a benchmark directory (the format:
:mod:`longdna.data.benchmarks.format`).

:func:`prepare_benchmark` dispatches on ``spec["suite"]``; each suite function writes the common format:

``demo``
    tasks generated from the demo genome (:mod:`longdna.data.benchmarks.demo`);
``genomic_benchmarks``
    GenomicBenchmarks interval lists cut from genomes of the genome stage
    (:mod:`longdna.data.benchmarks.genomic_benchmarks`);
``nucleotide_transformer``
    the Nucleotide Transformer tasks' FASTA files (:mod:`longdna.data.benchmarks.nucleotide_transformer`);
``user``
    your own CSV/TSV/Parquet, FASTA or BED data (:mod:`longdna.data.benchmarks.user_data`);
``long_range``
    the Genomics Long-Range Benchmark's tasks cut from the genome at any length
    (:mod:`longdna.data.benchmarks.long_range`).

Besides the config entry's keys, ``spec`` may hold ``reference_fastas`` (role -> FASTA path), which the
workflow fills from the entry's ``references`` (role -> key of genomes) for suites that cut intervals from
more than one genome. A key the suite does not use is an error, so that a misplaced setting is not ignored;
the workflow's config schema lists the same keys per suite (``tests/test_suites.py`` checks that they agree).
"""

from __future__ import annotations

import os
from typing import Any

from longdna.data.benchmarks.demo import make_demo_benchmark
from longdna.data.benchmarks.genomic_benchmarks import prepare_genomic_benchmark
from longdna.data.benchmarks.info import METRICS, TaskType
from longdna.data.benchmarks.long_range import prepare_long_range
from longdna.data.benchmarks.nucleotide_transformer import prepare_nucleotide_transformer
from longdna.data.benchmarks.user_data import prepare_user_benchmark
from longdna.data.genome.demo import DemoGenomeSpec
from longdna.data.genome.fasta import fasta_lengths

#: keys of every suite, read by the workflow: the benchmark's fine-tuning settings and its seeds
_COMMON = {"suite", "finetune", "seeds"}
#: the config keys each suite reads
SUITE_KEYS = {
    "demo": _COMMON | {"task", "genome", "length", "n_train", "n_test", "seed"},
    "genomic_benchmarks": _COMMON | {"task", "genome", "references", "reference_fastas", "url", "metric"},
    "nucleotide_transformer": _COMMON | {"task", "url", "metric"},
    "user": _COMMON
    | {
        "path",
        "format",
        "task_type",
        "metric",
        "label_column",
        "labels",
        "genome",
        "sha256",
        "seed",
        "conflicting_labels",
    },
    # variant_effect: settings of the workflow's variant_effect rule, which scores this suite's variant tasks
    "long_range": _COMMON | {"task", "genome", "length", "subset", "url", "variant_effect"},
}


def prepare_demo(
    name: str,
    spec: dict[str, Any],
    out_dir: str | os.PathLike,
    genome_fasta: str | os.PathLike,
    genome_spec: dict[str, Any],
) -> None:
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
    make_demo_benchmark(
        spec["task"],
        name,
        genome_fasta,
        out_dir,
        train,
        held_out,
        DemoGenomeSpec.from_config(genome_spec.get("demo", {})),
        **options,
    )


def check_keys(name: str, spec: dict[str, Any]) -> None:
    """Every key of the benchmark's config entry is one its suite reads; the error names the others."""
    suite = spec["suite"]
    if suite not in SUITE_KEYS:
        raise ValueError(f"benchmarks.{name}: suite {suite!r} is not available (known: {', '.join(SUITE_KEYS)})")
    unused = sorted(set(spec) - SUITE_KEYS[suite])
    if not unused:
        return
    hint = ""
    if "sha256" in unused:  # these suites download several files, each with its own checksum
        hint = f"; checksums of the {suite} files are in its registry, longdna/data/benchmarks/registries/{suite}.yaml"
    raise ValueError(
        f"benchmarks.{name}: key(s) {unused} are not used by suite {suite!r}"
        f" (it reads {sorted(SUITE_KEYS[suite] - {'reference_fastas'})}){hint}"
    )


def prepare_benchmark(
    name: str,
    spec: dict[str, Any],
    out_dir: str | os.PathLike,
    genome_fasta: str | os.PathLike | None,
    genome_spec: dict[str, Any] | None,
    cache_dir: str | os.PathLike,
) -> None:
    suite = spec["suite"]
    check_keys(name, spec)
    if suite == "demo":
        prepare_demo(name, spec, out_dir, genome_fasta, genome_spec or {})
        return
    if (
        suite in ("genomic_benchmarks", "nucleotide_transformer")
        and spec.get("metric", "accuracy") not in METRICS[TaskType.CLASSIFICATION]
    ):
        raise ValueError(
            f"benchmarks.{name}: metric {spec['metric']!r} is not a classification metric"
            f" {METRICS[TaskType.CLASSIFICATION]}"
        )
    if suite == "genomic_benchmarks":
        references = {
            **({"genome": genome_fasta} if genome_fasta is not None else {}),
            **spec.get("reference_fastas", {}),
        }
        prepare_genomic_benchmark(name, spec, out_dir, references, cache_dir)
    elif suite == "nucleotide_transformer":
        prepare_nucleotide_transformer(name, spec, out_dir, cache_dir)
    elif suite == "user":
        prepare_user_benchmark(name, spec, out_dir, genome_fasta, cache_dir)
    else:
        prepare_long_range(name, spec, out_dir, genome_fasta, cache_dir, genome_spec)
