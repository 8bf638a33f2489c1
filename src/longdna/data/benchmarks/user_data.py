"""Your own labelled data as a benchmark: tables, FASTA or BED intervals, classes or regression targets.

``format`` (required) and what each needs (``path`` is a local path or an http(s)/ftp URL, downloaded into
the cache and checked against ``sha256`` when given):

``csv`` / ``tsv`` / ``parquet``
    a table with columns ``sequence``, the label (``label_column``, default ``label``), optionally ``split``
    (``train``/``valid``/``test``) and ``id``. Other columns are ignored.
``fasta``
    plain or gzipped FASTA with the label in each header: a ``label=VALUE`` field (fields separated by
    whitespace or ``|``), else the text after the last ``|`` of the header's first word (``>seq7|enhancer``);
    an optional ``split=VALUE`` field gives the split (see
    :func:`~longdna.data.benchmarks.suite_inputs.read_labelled_fasta`).
``bed``
    tab-separated intervals cut from the benchmark's ``genome`` (0-based, half-open; reverse-complemented on
    strand ``-``). Columns: a ``#``-prefixed header line names them (it must name ``chrom``, ``start``,
    ``end``; ``strand`` and ``split`` are used when present); without one they are the BED columns ``chrom,
    start, end, name, score, strand``. ``label_column`` (required) names the label's column. ``track`` and
    ``browser`` lines are skipped.

``task_type``: ``classification`` (default) or ``regression``. Class labels may be any text or numbers; they
become ids 0..K-1 in the order of ``labels`` if given (a label outside it is an error), else in sorted order
(numbers numerically, text alphabetically); the names are kept as ``label_names``. Regression labels must be
finite numbers. ``metric``: as given, else ``accuracy`` (classification) or ``pearson`` (regression).

Without a ``split`` column (or header fields) the distinct sequences are split 80/20 into train and test at
random, stratified by class for classification (every copy of a sequence goes with it); ``seed`` (default 0)
fixes the draw.

Hygiene (sequences compared upper-cased, as the models see them): a classification needs two classes, in the
file and in its train split; labels that mix numbers and text are an error, and numbers are compared as numbers
(``1`` and ``1.0`` are one class). A sequence given several classes is an error naming two of its rows, or with
``conflicting_labels: drop`` all its rows are dropped with a warning. A validation or test row whose sequence is
in an earlier split (train, then valid, then test) is removed from its split; duplicates within a split are
kept. The counts go into ``benchmark.json`` (``duplicates``) and the job log.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from longdna.data.benchmarks.format import SPLITS, BenchmarkFormatError, BenchmarkInfo, write_benchmark
from longdna.data.benchmarks.info import METRICS, TaskType
from longdna.data.benchmarks.suite_inputs import (
    check_columns,
    check_intervals,
    check_sequences,
    check_splits,
    encode_labels,
    fetch_input,
    float_labels,
    read_labelled_fasta,
)
from longdna.data.genome.fasta import fasta_lengths
from longdna.data.genome.intervals import fetch_interval_sequences

SUITE = "user"
FORMATS = ("csv", "tsv", "parquet", "fasta", "bed")
TASK_TYPES = {
    "classification": ("accuracy", METRICS[TaskType.CLASSIFICATION]),
    "regression": ("pearson", METRICS[TaskType.REGRESSION]),
}
BED_COLUMNS = ("chrom", "start", "end", "name", "score", "strand")
TEST_FRACTION = 0.2
#: what to do with a sequence that is given several classes
CONFLICTING_LABELS = ("error", "drop")


def random_split(labels: np.ndarray | None, n: int, seed: int) -> np.ndarray:
    """``train``/``test`` for ``n`` rows, TEST_FRACTION of them test; per class when ``labels`` are given."""
    rng = np.random.default_rng([seed, 0x7E57])
    split = np.full(n, "train", dtype=object)
    groups = [np.flatnonzero(labels == k) for k in np.unique(labels)] if labels is not None else [np.arange(n)]
    for rows in groups:
        split[rng.permutation(rows)[: round(TEST_FRACTION * rows.size)]] = "test"
    return split


def _read_table(path: Path, fmt: str, where: str) -> pd.DataFrame:
    try:
        if fmt == "parquet":
            return pd.read_parquet(path)
        # text keeps labels as written ("01" stays "01") and empty cells empty, so errors quote the file
        return pd.read_csv(path, sep="\t" if fmt == "tsv" else ",", dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise BenchmarkFormatError(f"{where}: cannot read as {fmt} ({type(exc).__name__}: {exc})") from None


def _read_bed(path: Path, where: str) -> pd.DataFrame:
    with open(path) as fh:
        lines = [line.rstrip("\r\n") for line in fh]
    lines = [line for line in lines if line.strip() and not line.startswith(("track", "browser"))]
    header = None
    if lines and lines[0].startswith("#"):
        header = lines.pop(0)[1:].strip().split("\t")
    rows = [line.split("\t") for line in lines if not line.startswith("#")]
    width = len(header) if header else max((len(r) for r in rows), default=3)
    for i, row in enumerate(rows):
        if len(row) != width or (header is None and len(row) < 3):
            raise BenchmarkFormatError(f"{where}: row {i + 1}: {len(row)} tab-separated fields, expected {width}")
    names = header or [*BED_COLUMNS, *(f"column{k}" for k in range(7, width + 1))][:width]
    return pd.DataFrame(rows, columns=names)


def _read_examples(
    name: str, spec: dict[str, Any], path: Path, where: str, genome_fasta: str | os.PathLike | None
) -> tuple[pd.DataFrame, str, str]:
    """(the examples as read, the label's column, what a row is called in errors) for ``spec["format"]``."""
    fmt = spec["format"]
    label_column = spec.get("label_column", "label")
    if fmt == "fasta":
        if "label_column" in spec:
            raise ValueError(f"benchmarks.{name}: FASTA labels come from the headers; remove label_column")
        table = read_labelled_fasta(path, where)
        if table.empty:
            raise BenchmarkFormatError(f"{where}: no FASTA records")
        return (table.drop(columns="split") if table["split"].isna().all() else table), "label", "record"
    if fmt == "bed":
        if genome_fasta is None:
            raise ValueError(f"benchmarks.{name}: BED intervals need the benchmark's `genome`")
        if "label_column" not in spec:
            raise ValueError(f"benchmarks.{name}: BED data needs `label_column` (the column holding the label)")
        table = _read_bed(path, where)
        check_columns(table, ["chrom", "start", "end", label_column], where)
    else:
        table = _read_table(path, fmt, where)
        check_columns(table, ["sequence", label_column], where)
    if table.empty:
        raise BenchmarkFormatError(f"{where}: no rows")
    return table, label_column, "row"


def prepare_user_benchmark(
    name: str,
    spec: dict[str, Any],
    out_dir: str | os.PathLike,
    genome_fasta: str | os.PathLike | None,
    cache_dir: str | os.PathLike,
) -> pd.DataFrame:
    """Read ``spec["path"]`` in ``spec["format"]`` (see the module docstring) and write the benchmark."""
    fmt = spec.get("format")
    if fmt not in FORMATS:
        raise ValueError(f"benchmarks.{name}: format must be one of {FORMATS}, not {fmt!r}")
    if "path" not in spec:
        raise ValueError(f"benchmarks.{name}: suite 'user' needs `path` (a file or URL)")
    task = spec.get("task_type", "classification")
    if task not in TASK_TYPES:
        raise ValueError(
            f"benchmarks.{name}: task_type must be one of {sorted(TASK_TYPES)} for user data, not {task!r}"
        )
    if task == "regression" and "labels" in spec:
        raise ValueError(f"benchmarks.{name}: `labels` lists classes; a regression task has none")
    default_metric, metrics = TASK_TYPES[task]
    metric = spec.get("metric", default_metric)
    if metric not in metrics:
        raise ValueError(f"benchmarks.{name}: metric {metric!r} is not a {task} metric {metrics}")
    where = str(spec["path"])
    path = fetch_input(where, cache_dir, spec.get("sha256"), what=f"benchmarks.{name}.path")

    conflicting = spec.get("conflicting_labels", "error")
    if conflicting not in CONFLICTING_LABELS:
        raise ValueError(
            f"benchmarks.{name}: conflicting_labels must be one of {CONFLICTING_LABELS}, not {conflicting!r}"
        )

    table, label_column, unit = _read_examples(name, spec, path, where, genome_fasta)
    values = table[label_column].tolist()
    if task == "classification":
        labels, label_names = encode_labels(values, where, spec.get("labels"), unit=unit)
        check_two_classes(labels, label_names, where, unit)
        num_outputs = len(label_names)
    else:
        labels, label_names, num_outputs = float_labels(values, where, unit=unit), [], 1
    if "split" in table.columns:
        split = table["split"].astype(object).where(table["split"].notna(), None).tolist()
        check_splits(split, where, unit=unit)

    if fmt == "bed":
        strand = table["strand"] if "strand" in table.columns else pd.Series("+", index=table.index)
        intervals = check_intervals(
            table.assign(strand=strand.replace(".", "+")), fasta_lengths(genome_fasta), where, str(genome_fasta)
        )
        sequences = fetch_interval_sequences(genome_fasta, intervals[["chrom", "start", "end", "strand"]])
        ids = [
            f"{c}:{s}-{e}({d})" for c, s, e, d in intervals[["chrom", "start", "end", "strand"]].itertuples(index=False)
        ]
    else:
        sequences = table["sequence"].tolist()
        check_sequences(sequences, where, unit=unit)
        ids = table["id"].astype(str).tolist() if "id" in table.columns else None

    frame = pd.DataFrame({"sequence": sequences, "label": labels})
    if ids is not None:
        frame.insert(0, "id", ids)
    report: dict[str, Any] = {}
    if task == "classification":
        frame, report = resolve_conflicting_labels(frame, label_names, where, unit, conflicting)
    if "split" in table.columns:
        frame["split"] = np.asarray(split, dtype=object)[frame.index]
        split_note = f"splits from the `split` {'fields' if fmt == 'fasta' else 'column'}"
    else:
        seed = int(spec.get("seed", 0))
        frame["split"] = random_split_by_sequence(frame, task == "classification", seed)
        split_note = (
            f"random {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%} train/test split of the distinct sequences"
            f"{', stratified by class' if task == 'classification' else ''}, seed {seed}"
        )
    frame, duplicates = remove_cross_split_duplicates(frame, where, unit)
    report.update(duplicates)
    if task == "classification":
        train = frame["split"] == "train"
        check_two_classes(
            frame.loc[train, "label"].to_numpy(),
            label_names,
            where,
            unit,
            rows=frame.index[train].to_numpy(),
            what="the train split",
        )
    print(f"{where}: {describe_duplicates(report, unit)}", file=sys.stderr)

    info = BenchmarkInfo(
        name=name,
        task=task,
        num_outputs=num_outputs,
        metric=metric,
        suite=SUITE,
        label_names=label_names,
        source=where + (f" (intervals of {genome_fasta})" if fmt == "bed" else ""),
        notes=f"{fmt} user data; {split_note}",
        duplicates=report,
    )
    write_benchmark(out_dir, frame, info)
    return frame.reset_index(drop=True)


# -- hygiene: classes, duplicate sequences, conflicting labels -------------------------------------------------
def _rows(rows: np.ndarray, unit: str, shown: int = 5) -> str:
    """``rows 3, 9, 12`` or ``rows 1, 2, 3, 4, 5, ... (40 rows)`` (0-based rows in, 1-based out)."""
    numbers = ", ".join(str(r + 1) for r in rows[:shown])
    if len(rows) == 1:
        return f"{unit} {numbers}"
    return f"{unit}s {numbers}" + (f", ... ({len(rows)} {unit}s)" if len(rows) > shown else "")


def check_two_classes(
    labels: np.ndarray,
    label_names: list[str],
    where: str,
    unit: str,
    rows: np.ndarray | None = None,
    what: str = "the file",
) -> None:
    """A classification needs two classes, in the whole file and in its train split."""
    present = np.unique(labels)
    if present.size < 2:
        rows = np.arange(len(labels)) if rows is None else rows
        raise BenchmarkFormatError(
            f"{where}: every {unit} of {what} ({_rows(rows, unit)}) has the label {label_names[int(present[0])]!r}:"
            " a classification needs at least two classes"
        )


def sequence_keys(frame: pd.DataFrame) -> pd.Series:
    """What makes two examples the same: the sequence, upper-cased (the models see the same tokens)."""
    return frame["sequence"].str.upper()


def resolve_conflicting_labels(
    frame: pd.DataFrame, label_names: list[str], where: str, unit: str, conflicting: str
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Sequences given several classes are an error naming two of their rows (``conflicting: error``), or all
    their rows are dropped with a warning (``drop``). Returns the rows kept (the file's row numbers as index)
    and ``{conflicting_sequences, conflicting_rows_dropped}``."""
    keys = sequence_keys(frame)
    classes = frame.groupby(keys, sort=False)["label"].transform("nunique")
    bad = (classes > 1).to_numpy()
    report = {"conflicting_sequences": int(keys[bad].nunique()), "conflicting_rows_dropped": 0}
    if not bad.any():
        return frame, report
    first = int(np.flatnonzero(bad)[0])
    same = np.flatnonzero((keys == keys.iloc[first]).to_numpy())
    other = int(same[frame["label"].to_numpy()[same] != frame["label"].iloc[first]][0])
    example = (
        f"{unit}s {first + 1} and {other + 1} have the same sequence with the labels"
        f" {label_names[frame['label'].iloc[first]]!r} and {label_names[frame['label'].iloc[other]]!r}"
    )
    if conflicting == "error":
        raise BenchmarkFormatError(
            f"{where}: {example} ({report['conflicting_sequences']} sequences with conflicting labels, in"
            f" {int(bad.sum())} {unit}s); correct them, or set conflicting_labels: drop to drop those {unit}s"
        )
    report["conflicting_rows_dropped"] = int(bad.sum())
    print(
        f"warning: {where}: dropped the {int(bad.sum())} {unit}s of {report['conflicting_sequences']} sequences"
        f" with conflicting labels (conflicting_labels: drop); e.g. {example}",
        file=sys.stderr,
    )
    return frame.loc[~bad], report


def random_split_by_sequence(frame: pd.DataFrame, stratified: bool, seed: int) -> np.ndarray:
    """:func:`random_split` of the distinct sequences, every copy of a sequence in the split of its first, so
    that a random split never puts one sequence on both sides."""
    keys = sequence_keys(frame)
    codes, first_rows = pd.factorize(keys)[0], ~keys.duplicated().to_numpy()
    labels = frame["label"].to_numpy()[first_rows] if stratified else None
    return random_split(labels, int(first_rows.sum()), seed)[codes]


def remove_cross_split_duplicates(frame: pd.DataFrame, where: str, unit: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Rows whose sequence is also in an earlier split (train, then valid, then test) are removed from the later
    one: train keeps its copies, a validation or test example seen in training is not a held-out example.
    Duplicates within one split are counted and kept. Returns the kept rows and ``{cross_split_removed: {split:
    rows}, within_split_duplicates: {split: rows beyond the first copy}}``."""
    keys = sequence_keys(frame)
    order = frame["split"].map({s: i for i, s in enumerate(SPLITS)})
    later = (order > order.groupby(keys, sort=False).transform("min")).to_numpy()
    removed = frame.loc[later, "split"].value_counts()
    kept = frame.loc[~later]
    within = kept.assign(key=keys[~later]).duplicated(["key", "split"])
    present = [s for s in SPLITS if (frame["split"] == s).any()]
    report = {
        "cross_split_removed": {s: int(removed.get(s, 0)) for s in present if s != "train"},
        "within_split_duplicates": {s: int(within[kept["split"] == s].sum()) for s in present},
    }
    for split in ("train", "test"):
        if not (kept["split"] == split).any():
            n = int(removed.get(split, 0))
            raise BenchmarkFormatError(
                f"{where}: the {split} split is empty"
                + (f" once its {n} {unit}s that repeat sequences of an earlier split are removed" if n else "")
            )
    return kept, report


def describe_duplicates(report: dict[str, Any], unit: str) -> str:
    """One line for the job log."""
    removed = ", ".join(f"{n} from {s}" for s, n in report["cross_split_removed"].items() if n) or "none"
    within = ", ".join(f"{s} {n}" for s, n in report["within_split_duplicates"].items() if n) or "none"
    conflicts = report.get("conflicting_sequences", 0)
    line = (
        f"{unit}s repeating a sequence of an earlier split, removed: {removed}; duplicate {unit}s within a"
        f" split, kept: {within}"
    )
    if conflicts:
        line += (
            f"; sequences with conflicting labels: {conflicts} ({report['conflicting_rows_dropped']} {unit}s dropped)"
        )
    return line
