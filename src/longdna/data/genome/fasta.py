"""Reading, validating and writing FASTA.

:func:`read_fasta` streams records from plain, gzip or bgzip FASTA and stops at the first problem with an
error that names the file and line: a file that is not FASTA, a record without sequence, a character outside
the IUPAC nucleotide codes (file:line:column), a duplicate sequence name, a truncated gzip stream or a bgzip
file without its end-of-file block. It works on 16 MiB blocks with byte-level primitives (``find``,
``translate``, ``count``), never line by line, so normalising hg38 is bound by decompression, not Python.

:func:`write_bgzip_fasta` writes the normalised form every stage reads: bgzip-compressed FASTA with 60 bases
per line plus its ``.fai`` and ``.gzi`` indexes, so ``pysam.FastaFile`` and ``pyfaidx.Fasta`` both give
random access. The three files appear together or not at all.

:func:`fetch_sequence` reads one sequence (or a range of it) of an indexed plain or bgzip FASTA straight from
the ``.fai``/``.gzi`` offsets; it is what the tokenizer and the interval datasets use, about twice as fast
as ``pysam.FastaFile.fetch`` for whole chromosomes because it never builds a Python ``str``.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from pysam.libcbgzf import BGZFile

from longdna import vocab
from longdna.io import atomic_path, remove_temporaries, reporting_disk_full

LINE_WIDTH = 60
#: zlib level of the normalised FASTA: level 1 compresses DNA ~7x faster than the default 6 for a file only a
#: few per cent larger, and the file is an intermediate read by random access, not an archive
BGZF_LEVEL = 1
BLOCK_SIZE = 1 << 24

GZIP_MAGIC = b"\x1f\x8b"
#: the empty block htslib appends to every bgzip file; its absence means the file was cut short
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")

_NEWLINES = b"\r\n"
#: every byte a sequence line may hold: the IUPAC codes of the vocabulary plus line ends
_ALLOWED = bytes(i for i in range(256) if vocab.ENCODE_TABLE[i] != vocab.INVALID) + _NEWLINES


class FastaFormatError(ValueError):
    """The input is not valid FASTA; the message names the file and line."""


def open_maybe_gzip(path: str | os.PathLike) -> BinaryIO:
    """Open plain or gzip/bgzip files for binary reading, by content rather than by name."""
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == GZIP_MAGIC else open(path, "rb")  # type: ignore[return-value]


def is_bgzf(path: str | os.PathLike) -> bool:
    """True if the file starts with a BGZF block (gzip with the ``BC`` extra subfield)."""
    with open(path, "rb") as fh:
        head = fh.read(18)
    return len(head) == 18 and head[:4] == b"\x1f\x8b\x08\x04" and head[12:14] == b"BC"


def _check_bgzf_eof(path: Path) -> None:
    if not is_bgzf(path):
        return
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - len(BGZF_EOF)))
        tail = fh.read()
    if tail != BGZF_EOF:
        raise FastaFormatError(f"{path}: truncated bgzip file (the end-of-file block is missing)")


class _Parser:
    """Block-wise FASTA state machine; records are handed out through ``done``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: dict[str, int] = {}
        self.name: str | None = None
        self.header_line = 0
        self.chunks: list[bytes] = []
        self.line = 1  # line number at the current position
        self.column = 0  # bytes already consumed on the current line
        self.pending_header: bytes | None = None  # a header line split across two blocks
        self.done: list[tuple[str, bytes]] = []

    def feed(self, data: bytes) -> None:
        pos, n = 0, len(data)
        if self.pending_header is not None:
            newline = data.find(b"\n")
            if newline < 0:
                self._check_line_ends(data, self.line)
                self.pending_header += data
                return
            self._header(self.pending_header + data[:newline])
            pos = newline + 1
        while pos < n:
            if self.column == 0 and data[pos] == 0x3E:  # '>' at the start of a line
                newline = data.find(b"\n", pos)
                if newline < 0:
                    self._check_line_ends(data[pos:], self.line)  # before holding a CR-only file in memory
                    self.pending_header = data[pos:]
                    return
                self._header(data[pos:newline])
                pos = newline + 1
            else:
                header = data.find(b"\n>", pos)
                end = n if header < 0 else header + 1
                self._sequence(data if pos == 0 and end == n else data[pos:end])
                pos = end

    def close(self) -> None:
        if self.pending_header is not None:
            self._header(self.pending_header)
        if self.name is None:
            raise FastaFormatError(f"{self.path}: not FASTA: no '>' header line found")
        self._finish()

    def _check_line_ends(self, text: bytes, line: int) -> None:
        """A carriage return not followed by a line feed: the file has classic Mac OS (CR-only) line ends. A CR
        at the very end of ``text`` may be the first half of a CRLF split across blocks."""
        bare = text.count(b"\r") - text.count(b"\r\n") - text.endswith(b"\r")
        if bare > 0:
            at = line + text.count(b"\n", 0, text.replace(b"\r\n", b"\n\n").find(b"\r"))
            raise FastaFormatError(
                f"{self.path}:{at}: line ends with a bare carriage return (CR-only line ends, as classic Mac OS"
                " wrote them): convert the file to LF line ends, e.g. `tr '\\r' '\\n' < in.fa > out.fa`"
            )

    def _header(self, line: bytes) -> None:
        if b"\r" in line:
            self._check_line_ends(line.rstrip(b"\r"), self.line)
        self.pending_header = None
        if self.name is not None:
            self._finish()
        fields = line[1:].split(maxsplit=1)
        if not fields:
            raise FastaFormatError(f"{self.path}:{self.line}: header without a sequence name")
        name = fields[0].decode("ascii", errors="replace")
        if name in self.seen:
            raise FastaFormatError(
                f"{self.path}:{self.line}: duplicate sequence name {name!r} (first defined at line {self.seen[name]})"
            )
        self.name, self.header_line = name, self.line
        self.seen[name] = self.line
        self.chunks = []
        self.line += 1
        self.column = 0

    def _sequence(self, segment: bytes) -> None:
        if self.name is None:
            text = segment.lstrip()
            if text:
                line = self.line + segment.count(b"\n", 0, len(segment) - len(text))
                raise FastaFormatError(
                    f"{self.path}:{line}: not FASTA: expected a '>' header line, found {text[:40]!r}"
                )
        elif segment.translate(None, _ALLOWED):
            self._bad_character(segment)
        else:
            if b"\r" in segment:
                self._check_line_ends(segment, self.line)
            self.chunks.append(segment.translate(None, _NEWLINES))
        newlines = segment.count(b"\n")
        self.line += newlines
        self.column = len(segment) - segment.rfind(b"\n") - 1 if newlines else self.column + len(segment)

    def _bad_character(self, segment: bytes) -> None:
        raw = np.frombuffer(segment, dtype=np.uint8)
        allowed = np.zeros(256, dtype=bool)
        allowed[np.frombuffer(_ALLOWED, dtype=np.uint8)] = True
        pos = int(np.flatnonzero(~allowed[raw])[0])
        line_start = segment.rfind(b"\n", 0, pos) + 1
        line = self.line + segment.count(b"\n", 0, pos)
        column = pos - line_start + 1 + (self.column if line_start == 0 else 0)
        raise FastaFormatError(
            f"{self.path}:{line}:{column}: character {chr(raw[pos])!r} in {self.name!r} is not an IUPAC nucleotide code"
        )

    def _finish(self) -> None:
        sequence = b"".join(self.chunks)
        self.chunks = []
        if not sequence:
            raise FastaFormatError(f"{self.path}:{self.header_line}: sequence {self.name!r} is empty")
        assert self.name is not None
        self.done.append((self.name, sequence))


def read_fasta(path: str | os.PathLike) -> Iterator[tuple[str, bytes]]:
    """Yield validated ``(name, sequence)`` records; the sequence keeps its case (soft mask).

    The name is the header up to the first whitespace. Only ``\\n``/``\\r\\n`` line ends are removed from
    sequence lines; any other byte outside the IUPAC codes (including spaces) is an error.
    """
    path = Path(path)
    _check_bgzf_eof(path)
    parser = _Parser(path)
    decoded = 0  # bytes of FASTA read so far (decompressed)
    try:
        with open_maybe_gzip(path) as fh:
            while block := fh.read(BLOCK_SIZE):
                decoded += len(block)
                parser.feed(block)
                yield from parser.done
                parser.done.clear()
    except EOFError as exc:
        raise FastaFormatError(
            f"{path}: truncated gzip file: the compressed data ends before the gzip end-of-stream marker (after"
            f" {decoded:,} bytes of FASTA were read). The file was cut short, e.g. by an interrupted copy or"
            " download: copy or download it again"
        ) from exc
    except (zlib.error, gzip.BadGzipFile) as exc:
        raise FastaFormatError(
            f"{path}: damaged gzip data after {decoded:,} bytes of FASTA were read ({exc}): copy or download the"
            " file again"
        ) from exc
    parser.close()
    yield from parser.done


def _format_lines(sequence: bytes, width: int = LINE_WIDTH) -> bytes:
    raw = np.frombuffer(sequence, dtype=np.uint8)
    full = raw.size // width
    body = np.empty((full, width + 1), dtype=np.uint8)
    body[:, :width] = raw[: full * width].reshape(full, width)
    body[:, width] = ord("\n")
    tail = raw[full * width :].tobytes()
    return body.tobytes() + (tail + b"\n" if tail else b"")


def write_bgzip_fasta(records: Iterable[tuple[str, bytes]], path: str | os.PathLike) -> list[tuple[str, int]]:
    """Write records as bgzipped FASTA with ``.fai``/``.gzi``; returns ``[(name, length), ...]``.

    ``records`` may be a lazy generator (e.g. :func:`read_fasta`): if it raises part-way, no output file
    (nor index) is left behind, and an existing output is untouched.
    """
    path = Path(path)
    for output in (path, Path(f"{path}.fai"), Path(f"{path}.gzi")):
        remove_temporaries(output)  # of a writer killed earlier
    written: list[tuple[str, int]] = []
    names: set[str] = set()
    fai_lines: list[str] = []
    offset = 0  # position in the uncompressed stream: .fai offsets of bgzip files are uncompressed
    # inner contexts exit first: the indexes are renamed into place before the FASTA they describe
    with (
        atomic_path(path, suffix=".gz") as tmp,
        atomic_path(f"{path}.fai") as tmp_fai,
        atomic_path(f"{path}.gzi") as tmp_gzi,
    ):
        with (
            reporting_disk_full(path),  # one writer fills the FASTA and its .gzi: a full disk names the FASTA
            BGZFile(str(tmp), f"wb{BGZF_LEVEL}", index=str(tmp_gzi)) as out,  # type: ignore[arg-type]
        ):
            for name, sequence in records:
                if not name or any(c.isspace() for c in name):
                    raise ValueError(f"{path}: sequence name {name!r} is empty or contains whitespace")
                if not sequence:
                    raise ValueError(f"{path}: sequence {name!r} is empty")
                if name in names:
                    raise ValueError(f"{path}: duplicate sequence name {name!r}")
                names.add(name)
                header = b">" + name.encode() + b"\n"
                body = _format_lines(sequence)
                out.write(header)
                out.write(body)
                fai_lines.append(f"{name}\t{len(sequence)}\t{offset + len(header)}\t{LINE_WIDTH}\t{LINE_WIDTH + 1}\n")
                offset += len(header) + len(body)
                written.append((name, len(sequence)))
        tmp_fai.write_text("".join(fai_lines))
    return written


@dataclass(frozen=True)
class FaiEntry:
    """One line of a ``.fai`` index (samtools faidx layout)."""

    name: str
    length: int
    offset: int  # of the first base, in the uncompressed stream
    line_bases: int
    line_width: int  # bases plus line terminator bytes

    def byte_offset(self, position: int) -> int:
        """Uncompressed file offset of 0-based ``position`` (which may equal ``length``)."""
        return self.offset + position // self.line_bases * self.line_width + position % self.line_bases


def read_fai(path: str | os.PathLike) -> dict[str, FaiEntry]:
    """The ``.fai`` index of FASTA ``path``, in file order."""
    fai = Path(f"{path}.fai")
    if not fai.exists():
        raise FileNotFoundError(f"{fai}: FASTA index missing (the genome stage writes it; or run samtools faidx)")
    entries: dict[str, FaiEntry] = {}
    with open(fai) as fh:
        for lineno, line in enumerate(fh, start=1):
            fields = line.rstrip("\n").split("\t")
            try:
                entry = FaiEntry(fields[0], *(int(f) for f in fields[1:5]))
            except (ValueError, TypeError, IndexError):
                raise FastaFormatError(
                    f"{fai}:{lineno}: expected 5 tab-separated fields (name length offset linebases linewidth)"
                ) from None
            entries[entry.name] = entry
    return entries


def fasta_lengths(path: str | os.PathLike) -> dict[str, int]:
    """Sequence lengths from an indexed FASTA's ``.fai``."""
    return {name: entry.length for name, entry in read_fai(path).items()}


def _bgzf_virtual_offset(gzi: Path, position: int) -> int:
    # .gzi: a little-endian uint64 count, then (compressed, uncompressed) offsets of every block after the first
    table = np.fromfile(gzi, dtype="<u8")
    pairs = np.concatenate([[0, 0], table[1:]]).reshape(-1, 2)
    block = int(np.searchsorted(pairs[:, 1], position, side="right")) - 1
    compressed, uncompressed = int(pairs[block, 0]), int(pairs[block, 1])
    return (compressed << 16) | (position - uncompressed)


def fetch_sequence(
    path: str | os.PathLike,
    name: str,
    start: int = 0,
    end: int | None = None,
    index: dict[str, FaiEntry] | None = None,
) -> bytes:
    """Bases ``[start, end)`` (0-based, half-open) of sequence ``name`` of an indexed plain or bgzip FASTA.

    Case is kept. ``index`` (from :func:`read_fai`) saves re-reading the ``.fai`` in loops.
    """
    path = Path(path)
    entry = (index or read_fai(path)).get(name)
    if entry is None:
        raise KeyError(f"{path}: no sequence named {name!r}")
    end = entry.length if end is None else end
    if not 0 <= start <= end <= entry.length:
        raise ValueError(f"{path}: range {name}:{start}-{end} is outside 0-{entry.length}")
    first, last = entry.byte_offset(start), entry.byte_offset(end)
    if is_bgzf(path):
        gzi = Path(f"{path}.gzi")
        if not gzi.exists():
            raise FileNotFoundError(f"{gzi}: bgzip index missing (the genome stage writes it)")
        with BGZFile(str(path), "rb") as fh:  # type: ignore[call-arg]
            fh.seek(_bgzf_virtual_offset(gzi, first))
            raw = fh.read(last - first)
    else:
        with open(path, "rb") as fh:
            if fh.read(2) == GZIP_MAGIC:
                raise FastaFormatError(f"{path}: plain gzip allows no random access; normalise it to bgzip first")
            fh.seek(first)
            raw = fh.read(last - first)
    sequence = raw.translate(None, _NEWLINES)
    if len(sequence) != end - start:
        raise FastaFormatError(
            f"{path}: {name}:{start}-{end} read {len(sequence)} bases, expected {end - start}: the .fai does not"
            " match the file (lines of unequal length?)"
        )
    return sequence
