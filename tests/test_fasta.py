"""FASTA reading (validation, block boundaries), bgzip writing (atomicity, indexes) and indexed fetching."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pyfaidx
import pysam
import pytest

from longdna.data.genome import fasta as fasta_module
from longdna.data.genome.fasta import (
    BGZF_EOF,
    FastaFormatError,
    fasta_lengths,
    fetch_sequence,
    read_fasta,
    write_bgzip_fasta,
)

TEXT = b"\n>chr1 first record\nACGTNacgtn\r\nRYKMSWBDHVryk\n\nGGCC\n>chr2\nTTTTTTTT\nAA\n>chrUn_x\tdescription\nacgu"
EXPECTED = [("chr1", b"ACGTNacgtnRYKMSWBDHVrykGGCC"), ("chr2", b"TTTTTTTTAA"), ("chrUn_x", b"acgu")]


def write(path: Path, data: bytes, compression: str = "plain") -> Path:
    if compression == "gzip":
        path.write_bytes(gzip.compress(data))
    elif compression == "bgzip":
        with pysam.libcbgzf.BGZFile(str(path), "wb") as out:
            out.write(data)
    else:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize("compression", ["plain", "gzip", "bgzip"])
def test_read_fasta_formats(tmp_path: Path, compression: str) -> None:
    path = write(tmp_path / "g.fa", TEXT, compression)
    assert list(read_fasta(path)) == EXPECTED


@pytest.mark.parametrize("block_size", [1, 2, 3, 5, 7, 16, 64])
def test_read_fasta_block_boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block_size: int) -> None:
    monkeypatch.setattr(fasta_module, "BLOCK_SIZE", block_size)
    assert list(read_fasta(write(tmp_path / "g.fa", TEXT))) == EXPECTED


def test_read_fasta_random_layouts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(3)
    records = [(f"s{i}", bytes(rng.choice(b"ACGTNacgtn") for _ in range(rng.randint(1, 300)))) for i in range(20)]
    lines = []
    for name, seq in records:
        lines.append(b">" + name.encode())
        pos = 0
        while pos < len(seq):
            width = rng.randint(1, 80)
            lines.append(seq[pos : pos + width])
            pos += width
    path = write(tmp_path / "g.fa", b"\n".join(lines) + b"\n")
    for block_size in (1, 13, 97, 1 << 20):
        monkeypatch.setattr(fasta_module, "BLOCK_SIZE", block_size)
        assert list(read_fasta(path)) == records


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", r"g\.fa: not FASTA: no '>' header line found"),
        (b"\n\n  \n", r"g\.fa: not FASTA: no '>' header line found"),
        (b"\nACGT\n>chr1\nACGT\n", r"g\.fa:2: not FASTA: expected a '>' header line, found b'AC"),
        (b"\x00\x01\x02binary junk without newlines", r"g\.fa:1: not FASTA"),
        (b">chr1\nACGT\n>chr2\n>chr3\nAC\n", r"g\.fa:3: sequence 'chr2' is empty"),
        (b">chr1\nACGT\n>chr2\n\n", r"g\.fa:3: sequence 'chr2' is empty"),
        (b">chr1\nACGT\n>chr2", r"g\.fa:3: sequence 'chr2' is empty"),
        (b">chr1\nACGT\nAC-GT\n", r"g\.fa:3:3: character '-' in 'chr1' is not an IUPAC nucleotide code"),
        (b">chr1\nACGT\nACGT \n", r"g\.fa:3:5: character ' '"),
        (b">chr1\nAC\n>chr2\nACGTACGTACGTX\n", r"g\.fa:4:13: character 'X' in 'chr2'"),
        (
            b">chr1\nACGT\n>chr2\nAC\n>chr1 again\nA\n",
            r"g\.fa:5: duplicate sequence name 'chr1' \(first defined at line 1\)",
        ),
        (b">\nACGT\n", r"g\.fa:1: header without a sequence name"),
    ],
)
@pytest.mark.parametrize("block_size", [3, 1 << 24])
def test_read_fasta_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: bytes, message: str, block_size: int
) -> None:
    monkeypatch.setattr(fasta_module, "BLOCK_SIZE", block_size)
    path = write(tmp_path / "g.fa", data)
    with pytest.raises(FastaFormatError, match=message):
        list(read_fasta(path))


def test_truncated_gzip(tmp_path: Path) -> None:
    data = gzip.compress(b">chr1\n" + b"ACGT" * 50_000 + b"\n")
    path = tmp_path / "cut.fa.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        FastaFormatError,
        match=r"cut\.fa\.gz: truncated gzip file: the compressed data ends before"
        r" the gzip end-of-stream marker .*cut short",
    ):
        list(read_fasta(path))
    damaged = bytearray(data)
    damaged[len(data) // 2 : len(data) // 2 + 64] = bytes(64)  # zeros inside the deflate stream
    path.write_bytes(damaged)
    with pytest.raises(FastaFormatError, match=r"cut\.fa\.gz: damaged gzip data after"):
        list(read_fasta(path))


@pytest.mark.parametrize("block_size", [4, 1 << 24])
@pytest.mark.parametrize(
    ("data", "line"),
    [
        (b">chr1\rACGT\rACGT\r>chr2\rAC\r", 1),  # CR-only from the start: one endless header line
        (b">chr1\nACGT\nAC\rGT\rAA\n", 3),  # a sequence line with bare CRs
        (b">chr1 x\r\nACGT\r\n>chr2\rAC\r", 3),
    ],  # CRLF, then CR-only
)
def test_cr_only_line_ends_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: bytes, line: int, block_size: int
) -> None:
    monkeypatch.setattr(fasta_module, "BLOCK_SIZE", block_size)
    path = write(tmp_path / "mac.fa", data)
    with pytest.raises(FastaFormatError, match=rf"mac\.fa:{line}: line ends with a bare carriage return"):
        list(read_fasta(path))
    crlf = write(tmp_path / "dos.fa", data.replace(b"\r\n", b"\n").replace(b"\r", b"\r\n"))
    assert [name for name, _ in read_fasta(crlf)] == ["chr1", "chr2"][: data.count(b">")]


def test_truncated_bgzip_at_block_boundary(tmp_path: Path) -> None:
    path = write(tmp_path / "g.fa.gz", TEXT, "bgzip")
    data = path.read_bytes()
    assert data.endswith(BGZF_EOF)
    path.write_bytes(data[: -len(BGZF_EOF)])  # a clean cut between blocks: gzip alone would not notice
    with pytest.raises(FastaFormatError, match=r"g\.fa\.gz: truncated bgzip file"):
        list(read_fasta(path))


def test_write_bgzip_fasta_indexes(tmp_path: Path) -> None:
    records = [("chr1", b"ACGTacgtNN" * 13), ("chr2", b"A" * 60), ("chr3", b"G" * 61), ("chrM", b"c")]
    out = tmp_path / "out.fa.gz"
    assert write_bgzip_fasta(iter(records), out) == [(n, len(s)) for n, s in records]
    assert fasta_lengths(out) == {n: len(s) for n, s in records}
    with pysam.FastaFile(str(out)) as reader:
        assert [(n, reader.fetch(n).encode()) for n in reader.references] == records
    faidx = pyfaidx.Fasta(str(out), sequence_always_upper=False)
    for name, seq in records:
        assert str(faidx[name][:]).encode() == seq
        assert fetch_sequence(out, name) == seq
        for start, end in [(0, 1), (59, 62), (1, len(seq))]:
            start, end = min(start, len(seq)), min(end, len(seq))
            assert fetch_sequence(out, name, start, end) == seq[start:end]
    assert list(read_fasta(out)) == records


def test_fetch_sequence_plain_and_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "g.fa", b">a\nACGTA\nCG\n>b\nTTTT\n")
    pysam.faidx(str(path))
    assert fetch_sequence(path, "a") == b"ACGTACG"
    assert fetch_sequence(path, "a", 4, 6) == b"AC"
    with pytest.raises(KeyError, match="no sequence named 'c'"):
        fetch_sequence(path, "c")
    with pytest.raises(ValueError, match=r"range b:2-9 is outside 0-4"):
        fetch_sequence(path, "b", 2, 9)
    with pytest.raises(FileNotFoundError, match=r"nofai\.fa\.fai"):
        fetch_sequence(write(tmp_path / "nofai.fa", b">a\nA\n"), "a")


def test_writer_leaves_nothing_on_error(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.fa", b">chr1\n" + b"ACGT" * 1000 + b"\n>chr2\nAC!GT\n")
    out = tmp_path / "out" / "genome.fa.gz"
    with pytest.raises(FastaFormatError, match=r"bad\.fa:4:3"):
        write_bgzip_fasta(read_fasta(bad), out)
    assert sorted(p.name for p in out.parent.iterdir()) == []


def test_writer_keeps_previous_output_on_error(tmp_path: Path) -> None:
    out = tmp_path / "genome.fa.gz"
    write_bgzip_fasta([("chr1", b"ACGT")], out)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def records():
        yield "chrA", b"GGGG"
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_bgzip_fasta(records(), out)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([("a", b"A"), ("a", b"C")], "duplicate sequence name 'a'"),
        ([("a b", b"A")], "whitespace"),
        ([("a", b"")], "sequence 'a' is empty"),
    ],
)
def test_writer_rejects_bad_records(tmp_path: Path, records: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_bgzip_fasta(records, tmp_path / "g.fa.gz")
    assert list(tmp_path.iterdir()) == []
