"""The on-disk benchmark format every suite is materialised into (demo, GenomicBenchmarks, NT, user data).

A benchmark is a directory with two files:

``data.parquet``
    one row per example: ``sequence`` (str, IUPAC nucleotides), ``label`` (int class id for
    classification, float for regression -- a list of ``num_outputs`` floats for multi-output regression --,
    list of 0/1 ints for multi-label), ``split`` (``train``, ``valid`` or ``test``; ``valid`` optional) and
    optionally ``id`` (str). Two optional groups of columns extend a benchmark:

    * **variant effect** (:data:`VARIANT_COLUMNS`): ``alt_sequence`` (str) is ``sequence`` (the reference
      allele) with the alternative allele at ``variant_position`` (int, 0-based index into both); the two
      differ nowhere else (single-nucleotide variants). Such a benchmark is scored by
      :mod:`longdna.eval.variant_effect` (embeddings of both alleles), not by fine-tuning on ``sequence``.
    * **locus** (:data:`LOCUS_COLUMNS`): ``chrom``, ``start``, ``end`` (0-based, half-open) and ``strand``
      (``+``/``-``) say where the example's core lies on the benchmark's genome, and ``core`` (optional str,
      forward strand, ``end - start`` bases) replaces the genome's bases there (an edited locus: the demo's
      implanted elements). ``sequence`` is then exactly :func:`cut_windows` of the row at its own length,
      so :func:`resize_examples` can re-cut the same example at any other length (zero-shot length
      extrapolation).
``benchmark.json``
    :class:`BenchmarkInfo` (:mod:`longdna.data.benchmarks.info`, re-exported here): task type, number of
    outputs, class names, the metric the literature reports, provenance, the rows and lengths of each split
    (``sizes``, filled in by :func:`write_benchmark`) and, for user data, the duplicates found (``duplicates``).

:func:`write_benchmark` validates before writing (atomically) and :func:`read_benchmark` validates on
reading, so a bad row is reported with its file and row number wherever it comes from.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pandas as pd

from longdna import vocab
from longdna.data.benchmarks.info import (  # noqa: F401 (re-exported: the format's names live here too)
    DATA_FILE,
    INFO_FILE,
    SPLITS,
    TASKS,
    BenchmarkFormatError,
    BenchmarkInfo,
    read_benchmark_files,
    split_sizes,
)
from longdna.data.genome.fasta import fetch_sequence, read_fai
from longdna.io import atomic_path, write_json

VARIANT_COLUMNS = ("alt_sequence", "variant_position")
LOCUS_COLUMNS = ("chrom", "start", "end", "strand")
#: every column a benchmark may have, in the order they are written
COLUMNS = ("id", "sequence", *VARIANT_COLUMNS, "label", "split", *LOCUS_COLUMNS, "core")
#: upper case, and every code but A/C/G/T as N (what the Genomics Long-Range Benchmark's sequences hold)
_STANDARD = bytes(c if c in b"ACGT" else c - 32 if c in b"acgt" else ord("N") for c in range(256))
_COMPLEMENT = bytes.maketrans(b"ACGTN", b"TGCAN")


def validate_benchmark(frame: pd.DataFrame, info: BenchmarkInfo, where: str) -> None:
    """Raise :class:`BenchmarkFormatError` naming ``where`` and the first offending row (1-based)."""
    missing = [c for c in ("sequence", "label", "split") if c not in frame.columns]
    if missing:
        raise BenchmarkFormatError(f"{where}: missing column(s) {missing}; found {list(frame.columns)}")
    bad_split = ~frame["split"].isin(SPLITS)
    if bad_split.any():
        row = int(np.flatnonzero(bad_split)[0])
        raise BenchmarkFormatError(f"{where}: row {row + 1}: split {frame['split'].iloc[row]!r} not in {SPLITS}")
    for split in ("train", "test"):
        if not (frame["split"] == split).any():
            raise BenchmarkFormatError(f"{where}: the {split} split is empty")
    for row, sequence in enumerate(frame["sequence"]):
        if not isinstance(sequence, str) or not sequence:
            raise BenchmarkFormatError(f"{where}: row {row + 1}: empty or non-text sequence")
        try:
            vocab.encode(sequence, where=f"{where}: row {row + 1}")
        except vocab.InvalidSequenceError as exc:
            raise BenchmarkFormatError(str(exc)) from None
    _validate_labels(frame["label"], info, where)
    _validate_variants(frame, where)
    _validate_loci(frame, where)


def _all_or_none(frame: pd.DataFrame, group: tuple[str, ...], where: str) -> bool:
    present = [c for c in group if c in frame.columns]
    if present and len(present) != len(group):
        raise BenchmarkFormatError(f"{where}: columns {list(group)} come together; found only {present}")
    return bool(present)


def _validate_variants(frame: pd.DataFrame, where: str) -> None:
    if not _all_or_none(frame, VARIANT_COLUMNS, where):
        return
    pairs = zip(frame["sequence"], frame["alt_sequence"], frame["variant_position"])
    for row, (ref, alt, position) in enumerate(pairs):
        if not isinstance(alt, str) or len(alt) != len(ref):
            raise BenchmarkFormatError(f"{where}: row {row + 1}: alt_sequence must be a string as long as sequence")
        try:
            ref_ids, alt_ids = vocab.encode(ref), vocab.encode(alt, where=f"{where}: row {row + 1} (alt_sequence)")
        except vocab.InvalidSequenceError as exc:
            raise BenchmarkFormatError(str(exc)) from None
        if not 0 <= position < len(ref) or np.flatnonzero(ref_ids != alt_ids).tolist() not in ([], [position]):
            raise BenchmarkFormatError(
                f"{where}: row {row + 1}: alt_sequence must differ from sequence at most at"
                f" variant_position {position} (in 0..{len(ref) - 1})"
            )


def _validate_loci(frame: pd.DataFrame, where: str) -> None:
    if not _all_or_none(frame, LOCUS_COLUMNS, where):
        if "core" in frame.columns:
            raise BenchmarkFormatError(f"{where}: column core needs the locus columns {list(LOCUS_COLUMNS)}")
        return
    cores = frame["core"] if "core" in frame.columns else [None] * len(frame)
    for row, (start, end, strand, core) in enumerate(zip(frame["start"], frame["end"], frame["strand"], cores)):
        if not 0 <= start < end or strand not in ("+", "-"):
            raise BenchmarkFormatError(
                f"{where}: row {row + 1}: locus {start}-{end} ({strand}) needs 0 <= start < end and strand + or -"
            )
        if core is not None and (not isinstance(core, str) or len(core) != end - start):
            raise BenchmarkFormatError(
                f"{where}: row {row + 1}: core must be a string of end - start = {end - start} bases"
            )


def _validate_labels(labels: pd.Series, info: BenchmarkInfo, where: str) -> None:
    if info.task == "classification":
        values = pd.to_numeric(labels, errors="coerce")
        bad = values.isna() | (values != values.round()) | (values < 0) | (values >= info.num_outputs)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            names = f" ({', '.join(info.label_names)})" if info.label_names else ""
            raise BenchmarkFormatError(
                f"{where}: row {row + 1}: label {_show(labels.iloc[row])} is not a class id in"
                f" 0..{info.num_outputs - 1}{names}"
            )
    elif info.task == "regression" and info.num_outputs == 1:
        values = pd.to_numeric(labels, errors="coerce")
        if values.isna().any() or not np.isfinite(values.to_numpy(dtype=float)).all():
            row = int(np.flatnonzero(~np.isfinite(values.to_numpy(dtype=float)))[0])
            raise BenchmarkFormatError(
                f"{where}: row {row + 1}: regression label {_show(labels.iloc[row])} is not a number"
            )
    elif info.task == "regression":
        for row, value in enumerate(labels):
            value = np.asarray(value)
            numbers = value.shape == (info.num_outputs,) and np.issubdtype(value.dtype, np.number)
            if not numbers or not np.isfinite(value).all():
                raise BenchmarkFormatError(
                    f"{where}: row {row + 1}: regression target must be {info.num_outputs}"
                    f" finite numbers, got {value!r}"
                )
    else:
        for row, value in enumerate(labels):
            value = np.asarray(value)
            if value.shape != (info.num_outputs,) or not np.isin(value, (0, 1)).all():
                raise BenchmarkFormatError(
                    f"{where}: row {row + 1}: multi-label target must be {info.num_outputs} zeros/ones, got {value!r}"
                )


def _show(value: object) -> str:
    """A label as the user wrote it (NumPy scalars print as plain numbers)."""
    return repr(value.item() if hasattr(value, "item") else value)


def write_benchmark(directory: str | os.PathLike, frame: pd.DataFrame, info: BenchmarkInfo) -> None:
    directory = Path(directory)
    columns = [c for c in COLUMNS if c in frame.columns]
    frame = frame[columns].reset_index(drop=True)
    validate_benchmark(frame, info, where=str(directory / DATA_FILE))
    with atomic_path(directory / DATA_FILE, suffix=".parquet") as tmp:
        frame.to_parquet(tmp, index=False)
    write_json(directory / INFO_FILE, dataclasses.asdict(dataclasses.replace(info, sizes=split_sizes(frame))))


def read_benchmark(directory: str | os.PathLike) -> tuple[pd.DataFrame, BenchmarkInfo]:
    frame, info = read_benchmark_files(directory)
    validate_benchmark(frame, info, where=str(Path(directory) / DATA_FILE))
    return frame, info


def is_variant_benchmark(frame: pd.DataFrame) -> bool:
    return set(VARIANT_COLUMNS) <= set(frame.columns)


def is_resizable(frame: pd.DataFrame) -> bool:
    return set(LOCUS_COLUMNS) <= set(frame.columns)


def window_starts(start: np.ndarray, end: np.ndarray, length: int) -> np.ndarray:
    """Genome start of the ``length``-bp window centred on each core ``[start, end)``.

    The core's midpoint ``start + (end - start) // 2`` lands at index ``length // 2`` of the window: a
    single-base core (a variant) sits where the Genomics Long-Range Benchmark puts it, and a wider core gets
    the same window as there whenever ``length - width`` is even (otherwise the benchmark returns ``length - 1``
    bases, this window without its first base). Same rule as ``IntervalSequences(length=...)``.
    """
    start, end = np.asarray(start, dtype=np.int64), np.asarray(end, dtype=np.int64)
    return start + (end - start) // 2 - length // 2


def cut_windows(loci: pd.DataFrame, fasta: str | os.PathLike, length: int) -> list[str]:
    """The ``length``-bp window (:func:`window_starts`) of every row of ``loci`` (chrom, start, end, strand[,
    core]) from an indexed FASTA: upper case, non-ACGT as N, positions beyond the chromosome ends as N, the
    core's bases over the genome's when the row has a core, reverse-complemented on ``-``."""
    index = read_fai(fasta)
    starts = window_starts(loci["start"].to_numpy(), loci["end"].to_numpy(), length)
    cores = loci["core"] if "core" in loci.columns else [None] * len(loci)
    windows = []
    for chrom, lo, start, strand, core in zip(loci["chrom"], starts, loci["start"], loci["strand"], cores):
        if chrom not in index:
            raise KeyError(f"{fasta}: no sequence named {chrom!r} (the benchmark's loci need it)")
        lo, hi = int(lo), int(lo) + length
        # the window holds the core's midpoint, so it always overlaps the chromosome
        inside_lo, inside_hi = max(lo, 0), min(hi, index[chrom].length)
        bases = fetch_sequence(fasta, chrom, inside_lo, inside_hi, index=index)
        window = bytearray(b"N" * (inside_lo - lo) + bases + b"N" * (hi - inside_hi))
        if isinstance(core, str):
            first = int(start) - lo  # core index 0 in window coordinates
            a, b = max(first, 0), min(first + len(core), length)
            if a < b:
                window[a:b] = core[a - first : b - first].encode()
        window = bytes(window).translate(_STANDARD)
        if strand == "-":
            window = window.translate(_COMPLEMENT)[::-1]
        windows.append(window.decode("ascii"))
    return windows


def resize_examples(frame: pd.DataFrame, fasta: str | os.PathLike, length: int) -> pd.DataFrame:
    """Rows of a resizable benchmark re-cut at ``length`` around the same cores; a variant benchmark's
    ``alt_sequence`` carries the same alternative allele at the variant's new ``variant_position``."""
    if not is_resizable(frame):
        raise BenchmarkFormatError(f"re-cutting examples needs the locus columns {list(LOCUS_COLUMNS)}")
    out = frame.copy()
    out["sequence"] = cut_windows(frame, fasta, length)
    if is_variant_benchmark(frame):
        minus = (frame["strand"] == "-").to_numpy()
        old_lengths = frame["sequence"].str.len().to_numpy()
        old_positions = frame["variant_position"].to_numpy(dtype=np.int64)
        # the variant's offset from the core midpoint is what stays put when the window grows
        offset = np.where(minus, old_lengths - 1 - old_positions - old_lengths // 2, old_positions - old_lengths // 2)
        positions = np.where(minus, length - 1 - (length // 2 + offset), length // 2 + offset)
        if ((positions < 0) | (positions >= length)).any():
            raise ValueError(f"a window of {length} bp does not reach every variant")
        alleles = [alt[p] for alt, p in zip(frame["alt_sequence"], old_positions)]
        out["variant_position"] = positions
        out["alt_sequence"] = [s[:p] + a + s[p + 1 :] for s, p, a in zip(out["sequence"], positions, alleles)]
    return out
