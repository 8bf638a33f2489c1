"""Reading the source files of benchmark suites, with errors that name the file and the row.

Shared by the GenomicBenchmarks, Nucleotide Transformer and user-data suites (``longdna.data.benchmarks.suites``):

* :func:`load_registry`: a suite's registry, ``longdna/data/benchmarks/registries/<suite>.yaml`` (files, URLs,
  checksums), shipped inside the package;
* :func:`fetch_input`: a URL downloaded into the cache (resumable, verified when a sha256 is known) or a
  local path;
* :func:`read_labelled_fasta`: the records of a FASTA whose headers carry the label;
* :func:`check_columns`, :func:`check_sequences`, :func:`check_intervals`, :func:`encode_labels`,
  :func:`float_labels`, :func:`check_splits`: validation of what was read.

Rows are numbered from 1 over the data, as in ``longdna.data.benchmarks.format`` (a CSV's header line and a BED's
comment lines are not counted); FASTA records are numbered from 1 in file order, and their header line is
given too. Every check runs before anything is written, and :func:`longdna.data.benchmarks.format.write_benchmark`
writes atomically, so a bad input leaves no benchmark behind.
"""

from __future__ import annotations

import importlib.resources
import os
import re
import urllib.parse
import urllib.request
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from longdna import vocab
from longdna.data.benchmarks.format import SPLITS, BenchmarkFormatError
from longdna.data.download import Checksum, download, verify_checksum
from longdna.data.genome.fasta import open_maybe_gzip
from longdna.data.genome.prepare import _cache_path

#: package data (pyproject.toml), so that an installed longdna finds them wherever it runs
REGISTRIES = importlib.resources.files("longdna.data.benchmarks") / "registries"
REMOTE_SCHEMES = ("http", "https", "ftp")
#: ``label=VALUE`` / ``split=VALUE`` fields of a FASTA header, separated by whitespace or ``|``
_HEADER_FIELD = re.compile(r"(?:^|[\s|])(label|split)=([^\s|]+)")


def load_registry(suite: str) -> dict[str, Any]:
    """The registry of a downloading suite (``genomic_benchmarks``, ``nucleotide_transformer``, ``long_range``)."""
    return yaml.safe_load((REGISTRIES / f"{suite}.yaml").read_text())


def is_remote(location: str) -> bool:
    return urllib.parse.urlsplit(location).scheme.lower() in REMOTE_SCHEMES


def fetch_input(
    location: str,
    cache_dir: str | os.PathLike,
    sha256: str | None = None,
    *,
    what: str = "input",
    progress: bool = False,
) -> Path:
    """``location`` as a local file: a URL is downloaded into ``cache_dir`` (a mirror of host and path, reused
    once complete), a ``file://`` URL or a path is used in place. With ``sha256`` the file is verified."""
    checksum = Checksum("sha256", sha256, what) if sha256 else None
    if is_remote(location):
        return download(location, _cache_path(Path(cache_dir), location), checksum, progress=progress)
    parts = urllib.parse.urlsplit(location)
    path = Path(urllib.request.url2pathname(parts.path) if parts.scheme.lower() == "file" else location)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: {path} does not exist")
    if checksum is not None:
        verify_checksum(path, checksum, str(path))
    return path


def check_columns(frame: pd.DataFrame, required: Sequence[str], where: str) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise BenchmarkFormatError(f"{where}: missing column(s) {missing}; found {list(map(str, frame.columns))}")


def check_sequences(sequences: Sequence[object], where: str, unit: str = "row") -> None:
    """Every entry is a non-empty string of IUPAC nucleotide codes; the error names the first bad one."""
    for i, sequence in enumerate(sequences):
        if not isinstance(sequence, str) or not sequence:
            raise BenchmarkFormatError(f"{where}: {unit} {i + 1}: empty or missing sequence")
    try:  # one pass over everything; the per-row pass below only runs to name the culprit
        vocab.encode("".join(sequences), where=where)  # type: ignore[arg-type]
        return
    except vocab.InvalidSequenceError:
        pass
    for i, sequence in enumerate(sequences):
        try:
            vocab.encode(sequence, where=f"{where}: {unit} {i + 1}")  # type: ignore[arg-type]
        except vocab.InvalidSequenceError as exc:
            raise BenchmarkFormatError(str(exc)) from None


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == ""


def _number(text: str) -> Decimal | None:
    """The value of a label written as a finite number (``1``, ``1.0``, ``1e0``), else None."""
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _label_text(value: object) -> str:
    """A label's class name: a number in one canonical form, so that ``1``, ``1.0`` and ``1e0`` are one class
    (``1``; ``0.50`` is ``0.5``), any other text stripped."""
    if isinstance(value, (float, np.floating)):
        value = repr(float(value))  # the shortest text that reads back as this float: 0.1, not 0.1000000000000000055
    text = str(value).strip()
    number = _number(text)
    if number is None:
        return text
    return str(int(number)) if number == number.to_integral_value() else str(number.normalize())


def _sorted_classes(values: set[str]) -> list[str]:
    """Numbers in numeric order (2 before 10), anything else in text order."""
    numbers = {v: _number(v) for v in values}
    if all(n is not None for n in numbers.values()):
        return sorted(values, key=numbers.__getitem__)
    return sorted(values)


def encode_labels(
    values: Sequence[object], where: str, classes: Sequence[object] | None = None, unit: str = "row"
) -> tuple[np.ndarray, list[str]]:
    """Class ids of ``values`` and the class names in id order.

    Numbers are compared as numbers (``1`` and ``1.0`` are one class); labels that mix numbers and text are an
    error naming a row of each. With ``classes`` (the declared class names in id order) a value outside them
    is an error naming the row; without, the classes are the distinct values, numbers sorted numerically,
    text alphabetically.
    """
    texts = []
    for i, value in enumerate(values):
        if _is_missing(value):
            raise BenchmarkFormatError(f"{where}: {unit} {i + 1}: missing label")
        texts.append(_label_text(value))
    numeric = [_number(t) is not None for t in texts]
    if any(numeric) and not all(numeric):
        number_row, text_row = numeric.index(True), numeric.index(False)
        raise BenchmarkFormatError(
            f"{where}: labels mix numbers and text ({unit} {number_row + 1}: {texts[number_row]!r}, {unit}"
            f" {text_row + 1}: {texts[text_row]!r}; {sum(numeric)} numeric and {numeric.count(False)} text labels):"
            " write every class the same way"
        )
    names = [_label_text(c) for c in classes] if classes is not None else _sorted_classes(set(texts))
    index = {name: i for i, name in enumerate(names)}
    ids = np.empty(len(texts), dtype=np.int64)
    for i, text in enumerate(texts):
        if text not in index:
            raise BenchmarkFormatError(f"{where}: {unit} {i + 1}: unknown label {text!r} (classes: {names})")
        ids[i] = index[text]
    return ids, names


def float_labels(values: Sequence[object], where: str, unit: str = "row") -> np.ndarray:
    """Regression targets; anything that is not a finite number is an error naming the row."""
    out = np.empty(len(values), dtype=np.float64)
    for i, value in enumerate(values):
        try:
            out[i] = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            out[i] = np.nan
        if not np.isfinite(out[i]):
            raise BenchmarkFormatError(f"{where}: {unit} {i + 1}: regression label {value!r} is not a finite number")
    return out


def check_splits(splits: Sequence[object], where: str, unit: str = "row") -> None:
    """Split names are train/valid/test, and train and test both have rows."""
    for i, split in enumerate(splits):
        if split not in SPLITS:
            raise BenchmarkFormatError(f"{where}: {unit} {i + 1}: split {split!r} is not one of {SPLITS}")
    counts = pd.Series(list(splits), dtype=object).value_counts().to_dict()
    for split in ("train", "test"):
        if not counts.get(split):
            raise BenchmarkFormatError(f"{where}: the {split} split is empty (rows per split: {counts})")


def check_intervals(
    table: pd.DataFrame, lengths: dict[str, int], where: str, reference: str, strands: Sequence[str] = ("+", "-")
) -> pd.DataFrame:
    """``table`` (chrom, start, end, strand) with integer coordinates after checking every row against the
    reference's sequence lengths: known sequence, 0 <= start < end <= length, a valid strand."""
    for column in ("start", "end"):
        numbers = pd.to_numeric(table[column], errors="coerce")
        bad = numbers.isna() | (numbers != numbers.round())
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise BenchmarkFormatError(
                f"{where}: row {row + 1}: {column} {table[column].iloc[row]!r} is not an integer"
            )
    checked = table.assign(
        start=pd.to_numeric(table["start"]).astype(np.int64), end=pd.to_numeric(table["end"]).astype(np.int64)
    ).reset_index(drop=True)
    length = checked["chrom"].map(lengths)
    problems = [
        (length.isna(), lambda r: f"sequence {r.chrom!r} is not in {reference} (it has {_examples(list(lengths))})"),
        (~checked["strand"].isin(strands), lambda r: f"strand {r.strand!r} is not one of {list(strands)}"),
        (checked["start"] < 0, lambda r: f"start {r.start} < 0"),
        (checked["start"] >= checked["end"], lambda r: f"start {r.start} >= end {r.end}"),
        (
            checked["end"] > length.fillna(np.inf),
            lambda r: f"end {r.end} is past the end of {r.chrom} ({lengths.get(r.chrom)} bp)",
        ),
    ]
    for bad, reason in problems:
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise BenchmarkFormatError(
                f"{where}: row {row + 1}: {reason(checked.iloc[row])} ({int(bad.sum())} such rows)"
            )
    return checked


def _examples(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f", ... ({len(names)} sequences)" if len(names) > n else "")


def read_labelled_fasta(path: str | os.PathLike, where: str) -> pd.DataFrame:
    """Records of a FASTA (plain or gzip) whose headers carry the label: columns ``id, sequence, label`` and
    ``split`` (None where the header has none).

    Header rule: a ``label=VALUE`` field (fields separated by whitespace or ``|``) gives the label; without
    one, the label is the text after the last ``|`` of the first word, the layout of the Nucleotide
    Transformer and HyenaDNA files (``>chr1:100-600|1``). A ``split=VALUE`` field gives the split. The id is
    the first word, less a trailing ``|label``. Sequences are not checked here (see :func:`check_sequences`).
    """
    records: list[list[Any]] = []
    chunks: list[str] = []
    with open_maybe_gzip(path) as fh:
        for number, raw in enumerate(fh, start=1):
            line = raw.decode("utf-8", errors="replace").strip()
            if line.startswith(">"):
                if records:
                    records[-1][1] = "".join(chunks)
                records.append(_parse_header(line[1:], where, len(records) + 1, number))
                chunks = []
            elif line:
                if not records:
                    raise BenchmarkFormatError(
                        f"{where}: line {number}: not FASTA: sequence before the first '>' header"
                    )
                chunks.append(line)
    if records:
        records[-1][1] = "".join(chunks)
    return pd.DataFrame(records, columns=["id", "sequence", "label", "split"])


def _parse_header(header: str, where: str, record: int, line: int) -> list[Any]:
    words = header.split()
    if not words:
        raise BenchmarkFormatError(f"{where}: record {record} (line {line}): empty header")
    fields = dict(m.groups() for m in _HEADER_FIELD.finditer(header))
    first = words[0]
    label = fields.get("label")
    if label is None and "|" in first:
        first, label = first.rsplit("|", 1)
    if not label:
        raise BenchmarkFormatError(
            f"{where}: record {record} (line {line}): header {'>' + header!r} has no label"
            " (write '>name|label' or a 'label=VALUE' field)"
        )
    return [first, "", label, fields.get("split")]
