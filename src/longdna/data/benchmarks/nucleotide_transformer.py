"""The Nucleotide Transformer downstream tasks (Dalla-Torre et al.), from their Hugging Face dataset files.

The registry (``longdna/data/benchmarks/registries/nucleotide_transformer.yaml``) pins a revision of
``InstaDeepAI/nucleotide_transformer_downstream_tasks`` and lists, per task, the number of classes, the metric
the papers report and the sha256 of each file. A task has one FASTA file per split, ``{task}/{split}.fna``,
with headers ``>{name}|{label}`` (see :func:`longdna.data.benchmarks.suite_inputs.read_labelled_fasta`); the official
train and test splits are kept as they are (validation is carved from train at fine-tuning time, as Caduceus
does).
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from longdna.data.benchmarks.format import BenchmarkFormatError, BenchmarkInfo, write_benchmark
from longdna.data.benchmarks.suite_inputs import (
    check_sequences,
    encode_labels,
    fetch_input,
    load_registry,
    read_labelled_fasta,
)

SUITE = "nucleotide_transformer"


def prepare_nucleotide_transformer(
    name: str,
    spec: dict[str, Any],
    out_dir: str | os.PathLike,
    cache_dir: str | os.PathLike,
    registry: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Download task ``spec["task"]`` (from ``spec["url"]`` instead of the registry's base URL if given) and
    write it as a benchmark."""
    registry = registry or load_registry(SUITE)
    task = spec.get("task")
    if task not in registry["tasks"]:
        raise ValueError(
            f"benchmarks.{name}: task {task!r} is not a Nucleotide Transformer task; known: {sorted(registry['tasks'])}"
        )
    entry = registry["tasks"][task]
    base = str(spec.get("url", registry["base_url"])).rstrip("/")
    classes = [str(k) for k in range(entry["classes"])]
    pieces = []
    for split in registry["splits"]:
        url = f"{base}/{task}/{split}.fna"
        path = fetch_input(url, cache_dir, entry["files"].get(f"{split}.fna"), what=url)
        records = read_labelled_fasta(path, url)
        if records.empty:
            raise BenchmarkFormatError(f"{url}: no FASTA records (the {split} split is empty)")
        check_sequences(records["sequence"].tolist(), url, unit="record")
        labels, _ = encode_labels(records["label"].tolist(), url, classes, unit="record")
        pieces.append(
            pd.DataFrame({"id": records["id"], "sequence": records["sequence"], "label": labels, "split": split})
        )
    frame = pd.concat(pieces, ignore_index=True)
    info = BenchmarkInfo(
        name=name,
        task="classification",
        num_outputs=len(classes),
        metric=spec.get("metric", entry["metric"]),
        suite=SUITE,
        label_names=classes,
        source=f"{base}/{task} ({registry['repository']} at {registry['revision']})",
        citation=registry["citation"],
        notes=f"{entry['length']} bp sequences; official train/test splits",
    )
    write_benchmark(out_dir, frame, info)
    return frame
