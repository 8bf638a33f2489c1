"""The Genomics Long-Range Benchmark (InstaDeep), cut from the genome stage's FASTA at any length.

The benchmark's dataset files hold coordinates and labels; its loading script cuts each example from a UCSC
reference around them. :func:`prepare_long_range` does the same from the workflow's genome: it downloads a
task's files (``longdna/data/benchmarks/registries/long_range.yaml`` pins the revision and describes each
task), builds the loci, keeps the rows whose window fits in its chromosome (as the script does), cuts the
windows (:func:`longdna.data.benchmarks.format.cut_windows`) and writes the common benchmark format with the
locus columns, so the evaluation can re-cut every example at another length. Variant tasks get the reference
window as ``sequence`` and the alternative allele at the window's centre as ``alt_sequence``.

Deviations from the loading script, all deliberate: a window around an interval whose width has the other
parity than the length is ``length`` bases long (the script returns ``length - 1``: ours without its first
base); the eQTL task's
``tissue`` and ``distance_to_nearest_TSS`` columns are not kept (the benchmark format has no covariates; the
study does not say it used them).
"""

from __future__ import annotations

import ast
import os
from typing import Any

import numpy as np
import pandas as pd

from longdna.data.benchmarks.format import (
    BenchmarkFormatError,
    BenchmarkInfo,
    cut_windows,
    window_starts,
    write_benchmark,
)
from longdna.data.benchmarks.suite_inputs import check_columns, encode_labels, fetch_input, load_registry
from longdna.data.genome.fasta import fasta_lengths

SUITE = "long_range"
#: genome ``source`` values that name a UCSC assembly the tasks can be checked against
ASSEMBLIES = ("hg19", "hg38")


def prepare_long_range(
    name: str,
    spec: dict[str, Any],
    out_dir: str | os.PathLike,
    genome_fasta: str | os.PathLike,
    cache_dir: str | os.PathLike,
    genome_spec: dict[str, Any] | None = None,
    registry: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Write task ``spec["task"]`` at ``spec["length"]`` bp (default: the registry's 12,288) as a benchmark.

    ``spec`` may also set ``subset`` (the dataset's smaller ``*_subset.csv`` files, where a task has them) and
    ``url`` (a base URL replacing the pinned dataset revision, e.g. a mirror). With ``genome_spec`` (the
    genome's config entry) a UCSC ``source`` must be the task's assembly.
    """
    registry = registry or load_registry(SUITE)
    task = spec.get("task")
    if task not in registry["tasks"]:
        raise ValueError(
            f"benchmarks.{name}: task {task!r} is not a Genomics Long-Range Benchmark task;"
            f" known: {sorted(registry['tasks'])}"
        )
    entry = registry["tasks"][task]
    source = (genome_spec or {}).get("source")
    if source in ASSEMBLIES and source != entry["assembly"]:
        raise ValueError(
            f"benchmarks.{name}: task {task} has {entry['assembly']} coordinates, but its genome is"
            f" {source}; set benchmarks.{name}.genome to a genome with source {entry['assembly']}"
        )
    length = int(spec.get("length", registry["default_length"]))
    if spec.get("subset") and "subset_files" not in entry:
        raise ValueError(f"benchmarks.{name}: task {task} has no subset files")
    files = entry["subset_files"] if spec.get("subset") else entry["files"]
    base = str(spec.get("url", registry["base_url"])).rstrip("/")
    urls = {role: f"{base}/{file['path']}" for role, file in files.items()}
    paths = {
        role: fetch_input(urls[role], cache_dir, file.get("sha256"), what=urls[role]) for role, file in files.items()
    }
    records = pd.read_csv(paths["records"])
    columns = entry["columns"]
    check_columns(records, [*columns.values(), "split"], urls["records"])
    labels, num_outputs, label_names = _labels(records, entry, paths, urls)
    loci = _loci(records, entry)

    chrom_lengths = fasta_lengths(genome_fasta)
    missing = sorted(set(loci["chrom"]) - set(chrom_lengths))
    if missing:
        raise ValueError(
            f"benchmarks.{name}: {genome_fasta} lacks {missing} (task {task} has records there);"
            " include them in the genome"
        )
    starts = window_starts(loci["start"].to_numpy(), loci["end"].to_numpy(), length)
    fits = (starts >= 0) & (starts + length < loci["chrom"].map(chrom_lengths).to_numpy())
    in_split = records["split"].isin(["train", "test"]).to_numpy()
    keep = np.flatnonzero(fits & in_split)
    loci = loci.iloc[keep].reset_index(drop=True)
    frame = pd.DataFrame(
        {"id": [f"{name}_{row + 1}" for row in keep], "sequence": cut_windows(loci, genome_fasta, length)}
    )
    if entry["kind"] == "variant":
        alleles = records[columns["alt"]].astype(str).str.upper().to_numpy()[keep]
        centre = length // 2
        frame["alt_sequence"] = [s[:centre] + a + s[centre + 1 :] for s, a in zip(frame["sequence"], alleles)]
        frame["variant_position"] = length // 2
    frame["label"] = [labels[row] for row in keep]
    frame["split"] = records["split"].to_numpy()[keep]
    frame = pd.concat([frame, loci], axis=1)
    info = BenchmarkInfo(
        name=name,
        task=entry["task"],
        num_outputs=num_outputs,
        metric=entry["metric"],
        suite=SUITE,
        label_names=label_names,
        source=f"{registry['repository']} task {task}{' (subset)' if spec.get('subset') else ''}, files "
        f"{', '.join(urls.values())}; {length} bp windows cut from {entry['assembly']}",
        citation=registry["citation"],
        notes=f"{len(records) - keep.size} of {len(records)} records dropped: "
        f"{int((~fits & in_split).sum())} whose window passes a chromosome end (as the loading script drops"
        f" them), {int((~in_split).sum())} outside the train/test splits",
    )
    write_benchmark(out_dir, frame, info)
    return frame


def _loci(records: pd.DataFrame, entry: dict[str, Any]) -> pd.DataFrame:
    """chrom, start, end, strand of every record, 0-based half-open, converted as the loading script does."""
    columns = entry["columns"]
    if entry["kind"] == "interval":
        start = records[columns["start"]].to_numpy(dtype=np.int64) - 1
        end = records[columns["end"]].to_numpy(dtype=np.int64) - 1
    else:
        start = records[columns["position"]].to_numpy(dtype=np.int64) - 1
        end = start + 1
    strand = records[columns["strand"]].astype(str).to_numpy() if "strand" in columns else "+"
    return pd.DataFrame(
        {"chrom": records[columns["chrom"]].astype(str).to_numpy(), "start": start, "end": end, "strand": strand}
    )


def _labels(
    records: pd.DataFrame, entry: dict[str, Any], paths: dict[str, Any], urls: dict[str, str]
) -> tuple[list[Any], int, list[str]]:
    """(label of every record, num_outputs, label names) in the benchmark format's form."""
    where = urls["records"]
    if entry["task"] == "classification":
        names = entry["label_names"]
        ids, _ = encode_labels(records[entry["columns"]["label"]].tolist(), where, classes=range(len(names)))
        return ids.tolist(), len(names), list(names)
    if entry["task"] == "multilabel":
        column = entry["columns"]["labels"]
        vectors = [_label_vector(text, where, row, column) for row, text in enumerate(records[column])]
        sizes = {len(v) for v in vectors}
        if len(sizes) != 1:
            raise BenchmarkFormatError(f"{where}: column {column}: label lists of different lengths {sorted(sizes)}")
        size = sizes.pop()
        return vectors, size, [f"{column.lower()}_{i}" for i in range(size)]
    targets = pd.read_csv(paths["targets"])
    if len(targets) != len(records):
        raise BenchmarkFormatError(
            f"{urls['targets']}: {len(targets)} rows, but {where} has {len(records)}"
            " (row i holds the targets of record i)"
        )
    values = targets.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise BenchmarkFormatError(
            f"{urls['targets']}: row {row + 1}, column {targets.columns[col]!r}:"
            f" {targets.iat[row, col]!r} is not a finite number"
        )
    return list(values), values.shape[1], [str(c) for c in targets.columns]


def _label_vector(text: object, where: str, row: int, column: str) -> list[int]:
    """A multi-label target stored as the text of a Python list of 0/1 (``"[0, 1, 0]"``)."""
    try:
        values = ast.literal_eval(str(text))
    except (ValueError, SyntaxError):
        values = None
    if not isinstance(values, (list, tuple)) or not all(v in (0, 1) for v in values):
        raise BenchmarkFormatError(f"{where}: row {row + 1}: column {column}: {text!r} is not a list of 0/1")
    return [int(v) for v in values]
