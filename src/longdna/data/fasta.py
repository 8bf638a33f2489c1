"""Reading, validating and writing FASTA.

:func:`read_fasta` streams records from plain, gzip or bgzip FASTA and stops at the first problem with an
error that names the file and line: a file that is not FASTA, a record without sequence, a character outside
the IUPAC nucleotide codes, a duplicate sequence name, a truncated gzip stream.

:func:`write_bgzip_fasta` writes the normalised form every stage reads: bgzip-compressed FASTA with 60 bases
per line plus its ``.fai`` and ``.gzi`` indexes, so ``pysam.FastaFile`` and ``pyfaidx.Fasta`` both give
random access. The three files appear together or not at all.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pysam
from pysam.libcbgzf import BGZFile

from longdna import vocab
from longdna.io import atomic_path

LINE_WIDTH = 60


class FastaFormatError(ValueError):
    """The input is not valid FASTA; the message names the file and line."""


def open_maybe_gzip(path: str | os.PathLike) -> BinaryIO:
    """Open plain or gzip/bgzip files for binary reading, by content rather than by name."""
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")  # type: ignore[return-value]


def read_fasta(path: str | os.PathLike) -> Iterator[tuple[str, bytes]]:
    """Yield validated ``(name, sequence)`` records; the sequence keeps its case (soft mask)."""
    path = Path(path)
    seen: dict[str, int] = {}
    name: str | None = None
    header_line = 0
    chunks: list[bytes] = []
    line_starts: list[int] = []  # line number of each chunk, to locate bad characters
    lineno = 0
    try:
        with open_maybe_gzip(path) as fh:
            for lineno, line in enumerate(fh, start=1):
                line = line.rstrip(b"\r\n")
                if line.startswith(b">"):
                    if name is not None:
                        yield name, _finish(path, name, header_line, chunks, line_starts)
                    name = line[1:].split(maxsplit=1)[0].decode("ascii", errors="replace") if line[1:].strip() else ""
                    if not name:
                        raise FastaFormatError(f"{path}:{lineno}: header without a sequence name")
                    if name in seen:
                        raise FastaFormatError(
                            f"{path}:{lineno}: duplicate sequence name {name!r} (first defined at line {seen[name]})"
                        )
                    seen[name] = header_line = lineno
                    chunks, line_starts = [], []
                elif name is None:
                    if line.strip():
                        raise FastaFormatError(
                            f"{path}:{lineno}: not FASTA: expected a '>' header line, found {line[:40]!r}"
                        )
                elif line:
                    chunks.append(line)
                    line_starts.append(lineno)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise FastaFormatError(f"{path}: corrupt or truncated gzip stream after line {lineno}: {exc}") from exc
    if name is None:
        raise FastaFormatError(f"{path}: not FASTA: no '>' header line found")
    yield name, _finish(path, name, header_line, chunks, line_starts)


def _finish(path: Path, name: str, header_line: int, chunks: list[bytes], line_starts: list[int]) -> bytes:
    sequence = b"".join(chunks)
    if not sequence:
        raise FastaFormatError(f"{path}:{header_line}: sequence {name!r} is empty")
    ids = vocab.ENCODE_TABLE[np.frombuffer(sequence, dtype=np.uint8)]
    bad = np.flatnonzero(ids == vocab.INVALID)
    if bad.size:
        ends = np.cumsum([len(c) for c in chunks])
        chunk = int(np.searchsorted(ends, bad[0], side="right"))
        column = int(bad[0] - (ends[chunk - 1] if chunk else 0)) + 1
        raise FastaFormatError(
            f"{path}:{line_starts[chunk]}:{column}: character {chr(sequence[bad[0]])!r} in {name!r} is not an"
            f" IUPAC nucleotide code ({bad.size} such characters in this sequence)"
        )
    return sequence


def _format_lines(sequence: bytes, width: int = LINE_WIDTH) -> bytes:
    raw = np.frombuffer(sequence, dtype=np.uint8)
    full = raw.size // width
    body = np.empty((full, width + 1), dtype=np.uint8)
    body[:, :width] = raw[: full * width].reshape(full, width)
    body[:, width] = ord("\n")
    tail = raw[full * width :].tobytes()
    return body.tobytes() + (tail + b"\n" if tail else b"")


def write_bgzip_fasta(records: Iterable[tuple[str, bytes]], path: str | os.PathLike) -> list[tuple[str, int]]:
    """Write records as bgzipped FASTA with ``.fai``/``.gzi``; returns ``[(name, length), ...]``."""
    path = Path(path)
    written: list[tuple[str, int]] = []
    with atomic_path(path, suffix=".gz") as tmp:
        with BGZFile(str(tmp), "wb") as out:
            for name, sequence in records:
                out.write(b">" + name.encode() + b"\n")
                out.write(_format_lines(sequence))
                written.append((name, len(sequence)))
        pysam.faidx(str(tmp))  # writes tmp.fai and tmp.gzi next to the temporary file
        os.replace(f"{tmp}.fai", f"{path}.fai")
        os.replace(f"{tmp}.gzi", f"{path}.gzi")
    return written


def fasta_lengths(path: str | os.PathLike) -> dict[str, int]:
    """Sequence lengths from an indexed FASTA's ``.fai``."""
    with pysam.FastaFile(str(path)) as fasta:
        return dict(zip(fasta.references, fasta.lengths))
