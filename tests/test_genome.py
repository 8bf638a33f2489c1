"""The genome stage: source resolution, acquisition (UCSC, Ensembl, URL, path, demo), selection, splits BED."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
from pathlib import Path

import pysam
import pytest
from http_server import LocalHTTPServer

from longdna import cli
from longdna.data.download import Checksum, ChecksumMismatchError, DownloadError
from longdna.data.genome.fasta import FastaFormatError, fasta_lengths, read_fasta
from longdna.data.genome.prepare import (
    PRIMARY_EXCLUDE,
    GenomeSource,
    fetch_split_bed,
    prepare_genome,
    resolve_genome_source,
    sequence_selector,
)

UCSC_LIKE = {
    "chr1": b"ACGTacgtNNACGT" * 10,
    "chr1_KI270706v1_random": b"ACGT" * 5,
    "chr2": b"GGGGccccAAAA" * 8,
    "chr2_KI270767v1_alt": b"TTTT",
    "chr6_GL000250v2_alt": b"CC",
    "chrUn_KI270302v1": b"AC",
    "chrX": b"TTAAGG" * 9,
    "chrM": b"ACGTA",
    "chrEBV": b"GATTACA",
    "chr1_KN196472v1_fix": b"AAA",
}


def fasta_bytes(records: dict[str, bytes]) -> bytes:
    return b"".join(b">" + n.encode() + b" some description\n" + s + b"\n" for n, s in records.items())


@pytest.fixture
def server(tmp_path: Path):
    root = tmp_path / "www"
    root.mkdir()
    with LocalHTTPServer(root) as srv:
        yield srv


def publish_ucsc(server: LocalHTTPServer, name: str, data: bytes, md5: str | None = None) -> None:
    folder = server.root / name / "bigZips"
    folder.mkdir(parents=True)
    (folder / f"{name}.fa.gz").write_bytes(data)
    (folder / "md5sum.txt").write_text(f"{md5 or hashlib.md5(data).hexdigest()}  {name}.fa.gz\n")


def test_resolve_sources(tmp_path: Path) -> None:
    hg38 = resolve_genome_source({"source": "hg38"})
    base = "https://hgdownload.soe.ucsc.edu/goldenPath/hg38/bigZips"
    assert hg38 == GenomeSource("url", f"{base}/hg38.fa.gz", None, f"{base}/md5sum.txt")
    assert resolve_genome_source({"source": "danRer11"}).location.endswith("/danRer11/bigZips/danRer11.fa.gz")
    url = "https://storage.googleapis.com/basenji_barnyard2/hg38.ml.fa.gz"
    sha = "a" * 64
    assert resolve_genome_source({"source": url, "sha256": sha}) == GenomeSource(
        "url", url, Checksum("sha256", sha, "genome.sha256")
    )
    local = tmp_path / "g.fa"
    local.write_text(">a\nA\n")
    assert resolve_genome_source({"source": str(local)}) == GenomeSource("path", str(local))
    assert resolve_genome_source({"source": local.as_uri()}) == GenomeSource("path", str(local))
    assert resolve_genome_source({"source": "demo"}).kind == "demo"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"source": "hg38", "sorce": 1}, r"unknown key\(s\) \['sorce'\]"),
        ({}, "exactly one of 'source' and 'ensembl'"),
        ({"source": "hg38", "ensembl": {}}, "exactly one of 'source' and 'ensembl'"),
        ({"source": "not/a/file.fa"}, "not 'demo', a URL, an existing file or a UCSC assembly name"),
        ({"source": "hg38", "md5": "0" * 32, "sha256": "0" * 64}, "one of sha256 and md5"),
        ({"source": "hg38", "md5": "xyz"}, "genome.md5: 'xyz' is not a valid md5"),
        ({"ensembl": {"species": "homo_sapiens"}}, r"genome.ensembl: missing \['release'\]"),
        ({"ensembl": {"species": "x", "release": 1, "type": "cdna"}}, "genome.ensembl.type must be one of"),
    ],
)
def test_resolve_errors(spec: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_genome_source(spec)


def test_selector_presets_and_patterns() -> None:
    names = list(UCSC_LIKE) + ["1", "X", "MT", "KI270728.1", "GL000009.2", "JH584299.1", "chr2_hap1"]
    primary = sequence_selector({"preset": "primary"})
    assert [n for n in names if primary(n)] == ["chr1", "chr2", "chrX", "1", "X"]
    custom = sequence_selector({"include": [r"^chr\d+$", "^chrX$"], "exclude": ["^chr2$"]})
    assert [n for n in names if custom(n)] == ["chr1", "chrX"]
    assert len(PRIMARY_EXCLUDE) >= 7
    with pytest.raises(ValueError, match=r"genome.exclude\[1\]: invalid regular expression"):
        sequence_selector({"exclude": ["ok", "(unclosed"]})
    with pytest.raises(ValueError, match="genome.preset must be one of"):
        sequence_selector({"preset": "main"})


def test_prepare_ucsc_genome(server: LocalHTTPServer, tmp_path: Path) -> None:
    publish_ucsc(server, "hg38", gzip.compress(fasta_bytes(UCSC_LIKE)))
    spec = {"source": "hg38", "base_url": server.base_url, "preset": "primary"}
    out = tmp_path / "genome" / "genome.fa.gz"
    written = prepare_genome(spec, out, tmp_path / "cache", progress=False)
    assert written == [("chr1", 140), ("chr2", 96), ("chrX", 54)]
    with pysam.FastaFile(str(out)) as reader:
        assert reader.fetch("chr2") == UCSC_LIKE["chr2"].decode()
    assert {p.name for p in out.parent.iterdir()} == {"genome.fa.gz", "genome.fa.gz.fai", "genome.fa.gz.gzi"}
    cached = tmp_path / "cache" / server.base_url.split("//")[1].replace(":", "_") / "hg38" / "bigZips" / "hg38.fa.gz"
    assert cached.exists()
    requests = len(server.requests)
    prepare_genome(spec, tmp_path / "again.fa.gz", tmp_path / "cache", progress=False)
    assert len(server.requests) == requests  # the verified cached download is reused


def test_ucsc_checksum_mismatch_leaves_no_output(server: LocalHTTPServer, tmp_path: Path) -> None:
    publish_ucsc(server, "mm10", gzip.compress(fasta_bytes(UCSC_LIKE)), md5="0" * 32)
    out = tmp_path / "genome.fa.gz"
    with pytest.raises(ChecksumMismatchError, match=r"md5 mismatch for http://.*/mm10/bigZips/mm10\.fa\.gz"):
        prepare_genome({"source": "mm10", "base_url": server.base_url}, out, tmp_path / "cache", progress=False)
    assert not list(tmp_path.glob("genome.fa.gz*"))
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_unknown_ucsc_assembly_is_a_404(server: LocalHTTPServer, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"HTTP 404 .* for http://.*/xx1/bigZips/xx1\.fa\.gz"):
        prepare_genome(
            {"source": "xx1", "base_url": server.base_url}, tmp_path / "g.fa.gz", tmp_path / "c", progress=False
        )


@pytest.mark.skipif(shutil.which("sum") is None, reason="needs coreutils sum")
@pytest.mark.parametrize("levels", [("primary_assembly", "toplevel"), ("toplevel",)])
def test_prepare_ensembl_genome(server: LocalHTTPServer, tmp_path: Path, levels: tuple[str, ...]) -> None:
    folder = server.root / "release-110" / "fasta" / "homo_sapiens" / "dna"
    folder.mkdir(parents=True)
    records = {"1": b"ACGTACGTAC" * 7, "X": b"ttttGGGG", "MT": b"ACGT", "KI270728.1": b"AAAA"}
    for kind in ("dna", "dna_sm"):
        for level in levels:
            extra = {"Y": b"CCCC"} if level == "toplevel" else {}
            path = folder / f"Homo_sapiens.GRCh38.{kind}.{level}.fa.gz"
            path.write_bytes(gzip.compress(fasta_bytes(records | extra)))
    sums = subprocess.run(
        ["sum", "-r", *sorted(p.name for p in folder.iterdir())], cwd=folder, check=True, capture_output=True, text=True
    ).stdout
    (folder / "CHECKSUMS").write_text(sums)
    spec = {
        "ensembl": {"species": "homo_sapiens", "release": 110, "base_url": server.base_url},
        "preset": "primary",
        "prefix": "chr",
    }
    resolved = resolve_genome_source(spec)
    assert resolved.location.endswith(f"/dna/Homo_sapiens.GRCh38.dna_sm.{levels[0]}.fa.gz")
    assert resolved.checksum_listing.endswith("/dna/CHECKSUMS")
    written = prepare_genome(spec, tmp_path / "g.fa.gz", tmp_path / "cache", progress=False)
    assert [n for n, _ in written] == ["chr1", "chrX"] + (["chrY"] if levels == ("toplevel",) else [])
    (folder / "CHECKSUMS").write_text("".join(f"1 1 {line.split()[2]}\n" for line in sums.splitlines()))
    mismatch = r"bsd-sum mismatch for http://.*dna_sm.*\(from http://.*CHECKSUMS\)"
    with pytest.raises(ChecksumMismatchError, match=mismatch):
        prepare_genome(spec, tmp_path / "h.fa.gz", tmp_path / "other-cache", progress=False)
    with pytest.raises(ValueError, match="has no dna_sm primary_assembly or toplevel FASTA for assembly GRCm39"):
        resolve_genome_source({"ensembl": {**spec["ensembl"], "assembly": "GRCm39"}})


def test_local_path_sources_and_filters(tmp_path: Path) -> None:
    source = tmp_path / "in.fa"
    source.write_bytes(fasta_bytes(UCSC_LIKE))
    out = tmp_path / "g.fa.gz"
    written = prepare_genome({"source": str(source), "include": ["^chr[12]$"]}, out, tmp_path / "cache")
    assert [n for n, _ in written] == ["chr1", "chr2"]
    assert dict(read_fasta(out)) == {"chr1": UCSC_LIKE["chr1"], "chr2": UCSC_LIKE["chr2"]}
    assert not (tmp_path / "cache").exists()  # a local file is read in place
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    prepare_genome({"source": source.as_uri(), "sha256": sha}, out, tmp_path / "cache")
    assert len(fasta_lengths(out)) == len(UCSC_LIKE)
    with pytest.raises(ChecksumMismatchError, match=rf"sha256 mismatch for {source}"):
        prepare_genome({"source": str(source), "sha256": "0" * 64}, tmp_path / "x.fa.gz", tmp_path / "cache")


def test_nothing_selected_is_an_error(tmp_path: Path) -> None:
    source = tmp_path / "in.fa"
    source.write_bytes(fasta_bytes(UCSC_LIKE))
    out = tmp_path / "out" / "g.fa.gz"
    with pytest.raises(ValueError, match=r"in\.fa: no sequence passes the genome's include/exclude/preset"):
        prepare_genome({"source": str(source), "include": ["^chr99$"]}, out, tmp_path / "cache")
    assert not list(out.parent.iterdir())


def test_malformed_source_leaves_no_output(tmp_path: Path) -> None:
    source = tmp_path / "in.fa.gz"
    source.write_bytes(gzip.compress(fasta_bytes(UCSC_LIKE) + b">chr1\nACGT\n"))
    out = tmp_path / "out" / "g.fa.gz"
    with pytest.raises(FastaFormatError, match=r"in\.fa\.gz:21: duplicate sequence name 'chr1'"):
        prepare_genome({"source": str(source)}, out, tmp_path / "cache")
    assert not list(out.parent.iterdir())


def test_demo_source(tmp_path: Path) -> None:
    spec = {
        "source": "demo",
        "demo": {"chromosome_lengths": [30_000, 20_000], "telomere_gap": 1000, "centromere_gap": 2000},
        "exclude": ["^chr2$"],
    }
    assert prepare_genome(spec, tmp_path / "g.fa.gz", tmp_path / "cache") == [("chr1", 30_000)]
    with pytest.raises(ValueError, match="genome.demo: .*'chromosomes'"):
        prepare_genome({"source": "demo", "demo": {"chromosomes": 3}}, tmp_path / "h.fa.gz", tmp_path / "cache")


def test_fetch_split_bed(server: LocalHTTPServer, tmp_path: Path) -> None:
    (server.root / "sequences_human.bed").write_text("chr1\t0\t100\ttrain\nchr2\t0\t50\tvalid\n")
    path = fetch_split_bed(server.url("sequences_human.bed"), tmp_path / "cache")
    assert path.read_text().startswith("chr1\t0\t100\ttrain")
    assert fetch_split_bed(path, tmp_path / "cache") == path
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch_split_bed(server.url("nope.bed"), tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="splits BED .*missing.bed does not exist"):
        fetch_split_bed(tmp_path / "missing.bed", tmp_path / "cache")


def test_cli_download(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in.fa"
    source.write_bytes(fasta_bytes(UCSC_LIKE))
    out = tmp_path / "g.fa.gz"
    assert cli.main(["download", str(source), str(out), "--preset", "primary", "--quiet"]) == 0
    assert "3 sequences, 290 bp" in capsys.readouterr().out
    spec = tmp_path / "genome.yaml"
    spec.write_text(f"source: {source}\ninclude: ['^chrX$']\n")
    assert cli.main(["download", str(spec), str(out), "--cache-dir", str(tmp_path / "c")]) == 0
    assert fasta_lengths(out) == {"chrX": 54}
    assert cli.main(["download", str(tmp_path / "none.fa"), str(out)]) == 1
    assert "genome.source" in capsys.readouterr().err
