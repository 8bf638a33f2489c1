"""GenomicBenchmarks (Grešová et al. 2023): interval lists materialised from genomes of the genome stage.

The registry (``longdna/data/benchmarks/registries/genomic_benchmarks.yaml``) names, per dataset, the gzipped
interval CSVs of each split and class at a pinned revision of the GenomicBenchmarks repository, the classes in
label order and the reference each class is cut from. A sequence is ``reference[region][start:end]`` (0-based,
half-open), reverse-complemented when ``strand`` is ``-`` and with the reference's case kept: what the
package's loader (``loc2seq``) produces from the same reference, here by
:func:`longdna.data.genome.intervals.fetch_interval_sequences` on the bgzip FASTA of the genome stage, each
reference read once for all files that use it.

Reference roles: ``genome`` is the benchmark's ``genome``; datasets with classes from a second reference
(``demo_human_or_worm``: ``worm``; ``demo_coding_vs_intergenomic_seqs``: ``transcriptome``) get it from the
benchmark's ``references`` (``{role: key of genomes}``), which the workflow resolves to FASTA paths.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from longdna.data.benchmarks.format import BenchmarkFormatError, BenchmarkInfo, write_benchmark
from longdna.data.benchmarks.suite_inputs import check_columns, check_intervals, fetch_input, load_registry
from longdna.data.genome.fasta import fasta_lengths
from longdna.data.genome.intervals import fetch_interval_sequences

SUITE = "genomic_benchmarks"
COLUMNS = ("id", "region", "start", "end", "strand")
_VERSION = re.compile(r"\.\d+$")


def dataset_files(dataset: dict[str, Any], splits: list[str]) -> list[tuple[str, str, str]]:
    """(split, class, path relative to the dataset folder) of every interval file, in label order per split."""
    return [(split, cls, f"{split}/{cls}.csv.gz") for split in splits for cls in dataset["classes"]]


def class_role(registry: dict[str, Any], dataset: dict[str, Any], cls: str) -> tuple[str, dict[str, Any]]:
    """(role, reference entry) of the reference a class is cut from."""
    reference = registry["references"][dataset.get("class_references", {}).get(cls, dataset["reference"])]
    return reference["role"], reference


def _read_intervals(path: Path, where: str) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, compression="gzip", dtype={"region": str, "strand": str})
    except (OSError, EOFError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise BenchmarkFormatError(f"{where}: not a gzipped interval CSV ({type(exc).__name__}: {exc})") from None
    check_columns(frame, COLUMNS, where)
    return frame


def _name_map(fasta: Path, strip_version: bool) -> tuple[dict[str, int], dict[str, str]]:
    """Sequence lengths of the reference and the map from region names to its sequence names."""
    lengths = fasta_lengths(fasta)
    names = {name: name for name in lengths}
    if strip_version:  # transcript ids in the CSVs have no version; the FASTA's do
        names = {_VERSION.sub("", name): name for name in lengths}
    return {region: lengths[name] for region, name in names.items()}, names


def prepare_genomic_benchmark(
    name: str,
    spec: dict[str, Any],
    out_dir: str | os.PathLike,
    references: dict[str, str | os.PathLike],
    cache_dir: str | os.PathLike,
    registry: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Download dataset ``spec["task"]``'s interval CSVs (from ``spec["url"]`` instead of the registry's base
    URL if given), cut the sequences from ``references`` (role -> bgzip FASTA) and write the benchmark."""
    registry = registry or load_registry(SUITE)
    task = spec.get("task")
    if task not in registry["datasets"]:
        raise ValueError(
            f"benchmarks.{name}: task {task!r} is not a GenomicBenchmarks dataset;"
            f" known: {sorted(registry['datasets'])}"
        )
    dataset = registry["datasets"][task]
    base = str(spec.get("url", registry["base_url"])).rstrip("/")
    roles_needed = {class_role(registry, dataset, cls)[0] for cls in dataset["classes"]}
    missing = sorted(roles_needed - set(references))
    if missing:
        raise ValueError(
            f"benchmarks.{name}: dataset {task} needs the reference(s) {missing}"
            f" (`genome`, or `references: {{role: key of genomes}}`)"
        )

    tables: dict[str, list[pd.DataFrame]] = {}
    name_maps: dict[str, tuple[dict[str, int], dict[str, str]]] = {}
    for split, cls, relative in dataset_files(dataset, registry["splits"]):
        url = f"{base}/{task}/{relative}"
        path = fetch_input(url, cache_dir, dataset["files"].get(relative), what=url)
        frame = _read_intervals(path, url)
        if frame.empty:
            raise BenchmarkFormatError(f"{url}: no rows (the {split} split of class {cls!r} is empty)")
        role, reference = class_role(registry, dataset, cls)
        if role not in name_maps:
            name_maps[role] = _name_map(Path(references[role]), reference.get("strip_version", False))
        lengths, names = name_maps[role]
        checked = check_intervals(
            frame.rename(columns={"region": "chrom"}),
            lengths,
            url,
            f"{references[role]} (reference {role!r})",
        )
        tables.setdefault(role, []).append(
            pd.DataFrame(
                {
                    "chrom": checked["chrom"].map(names),
                    "start": checked["start"],
                    "end": checked["end"],
                    "strand": checked["strand"],
                    "id": [f"{split}/{cls}/{i}" for i in frame["id"].astype(str)],
                    "label": dataset["classes"].index(cls),
                    "split": split,
                }
            )
        )

    pieces = []
    for role, frames in tables.items():  # one pass over each reference for all its files
        intervals = pd.concat(frames, ignore_index=True)
        intervals["sequence"] = fetch_interval_sequences(references[role], intervals)
        pieces.append(intervals)
    frame = pd.concat(pieces, ignore_index=True)
    order = {(s, c): i for i, (s, c, _) in enumerate(dataset_files(dataset, registry["splits"]))}
    frame["order"] = [order[(s, dataset["classes"][k])] for s, k in zip(frame["split"], frame["label"])]
    frame = frame.sort_values("order", kind="stable", ignore_index=True)[["id", "sequence", "label", "split"]]
    _report_sizes(task, frame, dataset.get("sizes", {}))

    info = BenchmarkInfo(
        name=name,
        task="classification",
        num_outputs=len(dataset["classes"]),
        metric=spec.get("metric", registry["metric"]),
        suite=SUITE,
        label_names=list(dataset["classes"]),
        source=f"{base}/{task} ({registry['repository']} at {registry['revision']}); sequences cut from "
        + "; ".join(f"{role}: {references[role]}" for role in sorted(tables)),
        citation=registry["citation"],
        notes=dataset.get("description", ""),
    )
    write_benchmark(out_dir, frame, info)
    return frame


def _report_sizes(task: str, frame: pd.DataFrame, expected: dict[str, int]) -> None:
    counts = frame["split"].value_counts().to_dict()
    for split, size in expected.items():
        if counts.get(split) != size:
            print(
                f"note: {task}: {counts.get(split, 0)} {split} sequences, {size} listed for the dataset",
                file=sys.stderr,
            )
    print(
        f"{task}: "
        + ", ".join(f"{s} {n}" for s, n in sorted(counts.items()))
        + f"; classes {np.bincount(frame['label']).tolist()}",
        file=sys.stderr,
    )
