"""BED-like intervals (chrom, start, end[, strand]) of a genome: checked against it and read as strings.

Torch-free, for the benchmark jobs that materialise interval sequences; the training-side dataset of the same
intervals as token tensors is :class:`longdna.data.tokens.windows.IntervalSequences`, which shares the checks.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from longdna.data.genome.fasta import fetch_sequence, read_fai

#: complement of every IUPAC code, case kept (as Biopython's ``Seq.reverse_complement``), for string output
_IUPAC_COMPLEMENT = bytes.maketrans(b"ACGTURYKMBVDHSWNacgturykmbvdhswn", b"TGCAAYRMKVBHDSWNtgcaayrmkvbhdswn")
STRANDS = ("+", "-", ".")


def checked_intervals(intervals: pd.DataFrame, lengths: dict[str, int], where: str) -> pd.DataFrame:
    """Intervals with a ``strand`` column (default ``+``), after checking every row against the genome."""
    missing = {"chrom", "start", "end"} - set(intervals.columns)
    if missing:
        raise ValueError(f"intervals: missing columns {sorted(missing)} (need chrom, start, end[, strand])")
    table = intervals.reset_index(drop=True).copy()
    if "strand" not in table.columns:
        table["strand"] = "+"
    table["start"] = table["start"].astype(np.int64)
    table["end"] = table["end"].astype(np.int64)
    chrom_length = table["chrom"].map(lengths)
    problems = [
        (chrom_length.isna(), f"chromosome not in {where}"),
        (~table["strand"].isin(STRANDS), f"strand not one of {STRANDS}"),
        (table["start"] < 0, "start < 0"),
        (table["start"] >= table["end"], "start >= end"),
        (table["end"] > chrom_length.fillna(np.inf), "end past the end of the chromosome"),
    ]
    for bad, reason in problems:
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            first = table.iloc[row]
            raise ValueError(
                f"intervals row {row}: {first['chrom']}:{first['start']}-{first['end']} ({first['strand']}): {reason}"
                f" ({int(bad.sum())} such rows)"
            )
    return table


def fetch_interval_sequences(fasta: str | os.PathLike, intervals: pd.DataFrame) -> list[str]:
    """Sequences of ``intervals`` (chrom, start, end[, strand]) from an indexed plain or bgzip FASTA.

    Coordinates are 0-based, half-open: a row is ``genome[chrom][start:end]``, reverse-complemented when
    strand is ``-``, with the case kept. This is the convention of the GenomicBenchmarks loader
    (``genomic_benchmarks.loc2seq``: ``fasta[region][start:end]``, then Biopython's reverse complement for
    ``-``), so their interval CSVs (columns id, region, start, end, strand; rename region to chrom, and prefix
    ``chr`` for Ensembl genomes as their loader does) materialise to identical sequences. Each chromosome is
    read once, over the span its intervals cover.
    """
    index = read_fai(fasta)
    table = checked_intervals(intervals, {n: e.length for n, e in index.items()}, str(fasta))
    sequences: list[str] = [""] * len(table)
    for chrom, group in table.groupby("chrom", sort=False):
        span_start, span_end = int(group["start"].min()), int(group["end"].max())
        span = fetch_sequence(fasta, str(chrom), span_start, span_end, index=index)
        for row, start, end, strand in zip(group.index, group["start"], group["end"], group["strand"]):
            piece = span[start - span_start : end - span_start]
            if strand == "-":
                piece = piece.translate(_IUPAC_COMPLEMENT)[::-1]
            sequences[row] = piece.decode("ascii")
    return sequences
