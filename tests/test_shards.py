"""Token shards: round trip against the FASTA, soft mask, splits (chromosome lists and BED), verify, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from http_server import LocalHTTPServer

from longdna import cli, vocab
from longdna.data.genome.demo import DemoGenomeSpec, generate_demo_genome
from longdna.data.genome.fasta import fasta_lengths, read_fasta, write_bgzip_fasta
from longdna.data.genome.prepare import fetch_split_bed
from longdna.data.tokens.shards import (
    GenomeShards,
    read_split_bed,
    split_regions,
    tokenize_chromosome,
    verify_shards,
    write_manifest,
)

SMALL = DemoGenomeSpec(chromosome_lengths=(60_000, 40_000, 30_000), telomere_gap=1000, centromere_gap=2000)


def make_shards(fasta: Path, out: Path, **split_args) -> GenomeShards:
    lengths = fasta_lengths(fasta)
    for chrom in lengths:
        tokenize_chromosome(fasta, chrom, out)
    write_manifest(out, list(lengths), split_regions(lengths, **split_args), genome="test")
    return GenomeShards(out)


@pytest.fixture(scope="module")
def genome(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("genome") / "demo.fa.gz"
    generate_demo_genome(path, SMALL)
    return path


@pytest.fixture(scope="module")
def shards(genome: Path, tmp_path_factory: pytest.TempPathFactory) -> GenomeShards:
    return make_shards(genome, tmp_path_factory.mktemp("shards"), valid=["chr2"], test=["chr3"])


def test_round_trip_matches_fasta(genome: Path, shards: GenomeShards) -> None:
    for name, sequence in read_fasta(genome):
        tokens = shards.tokens(name)
        assert isinstance(tokens, np.memmap) and tokens.dtype == np.uint8
        assert vocab.decode(tokens) == sequence.decode().upper()
        assert np.array_equal(shards.soft_mask(name), np.frombuffer(sequence, dtype=np.uint8) >= ord("a"))


def test_manifest(shards: GenomeShards) -> None:
    manifest = shards.manifest
    assert manifest["chrom"].tolist() == ["chr1", "chr2", "chr3"]
    assert manifest["length"].tolist() == [60_000, 40_000, 30_000]
    assert manifest["offset"].tolist() == [0, 60_000, 100_000]
    assert manifest["split"].tolist() == ["train", "valid", "test"]
    chr1 = shards.tokens("chr1")
    assert manifest["n_fraction"].iloc[0] == pytest.approx(np.mean(chr1 == vocab.N))
    assert set(manifest.columns) >= {"chrom", "length", "offset", "n_fraction", "split", "sha256"}


def test_iupac_codes_map_to_n(tmp_path: Path) -> None:
    fasta = tmp_path / "g.fa.gz"
    write_bgzip_fasta([("c", b"ACGTRYKMSWBDHVNacgtrykmswbdhvnUu")], fasta)
    shards = make_shards(fasta, tmp_path / "shards")
    assert vocab.decode(shards.tokens("c")) == "ACGT" + "N" * 11 + "ACGT" + "N" * 11 + "TT"
    assert verify_shards(shards.directory, fasta) == []


def test_split_by_bed(genome: Path, tmp_path: Path) -> None:
    bed = tmp_path / "splits.bed"
    bed.write_text(
        "# comment\nchr1\t0\t30000\ttrain\nchr1\t30000\t60000\tvalid\nchr2\t100\t40000\ttest\n"
        "chrUn_dropped\t0\t10\ttrain\n"
    )
    shards = make_shards(genome, tmp_path / "shards", bed=bed)
    assert shards.regions("valid").values.tolist() == [["chr1", 30_000, 60_000]]
    assert shards.manifest["split"].tolist() == ["train,valid", "test", "none"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("chr1\t0\t10", "expected 4 tab-separated columns"),
        ("chr1\t0\tten\ttrain", "start/end must be integers"),
        ("chr1\t0\t10\ttraining", "split must be one of"),
        ("chr1\t10\t10\ttrain", "need 0 <= start < end"),
        ("chr1\t0\t60001\ttrain", "chr1:60001 is past the end of chr1"),
    ],
)
def test_bed_errors_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    bed = tmp_path / "s.bed"
    bed.write_text(f"chr1\t0\t5\ttrain\n{line}\n")
    with pytest.raises(ValueError, match=rf"s\.bed:2: {message}"):
        read_split_bed(bed, {"chr1": 60_000})


def test_split_lists_errors() -> None:
    with pytest.raises(ValueError, match=r"splits.valid: \['chr9'\] not in the genome"):
        split_regions({"chr1": 10}, valid=["chr9"])
    with pytest.raises(ValueError, match="listed as both valid and test"):
        split_regions({"chr1": 10, "chr2": 5}, valid=["chr1"], test=["chr1"])


def test_bed_downloaded_by_url(genome: Path, tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    (www / "sequences_human.bed").write_text("chr1\t0\t60000\ttrain\nchr2\t0\t40000\tvalid\nchr3\t0\t30000\ttest\n")
    with LocalHTTPServer(www) as server:
        bed = fetch_split_bed(server.url("sequences_human.bed"), tmp_path / "cache", progress=False)
    regions = split_regions(fasta_lengths(genome), bed=bed)
    assert regions["split"].tolist() == ["train", "valid", "test"]


def test_verify_detects_problems(genome: Path, tmp_path: Path) -> None:
    shards = make_shards(genome, tmp_path / "shards")
    assert verify_shards(shards.directory, genome) == []
    path = shards.directory / "chr2.npy"
    tokens = np.load(path)
    tokens[500] = vocab.A if tokens[500] != vocab.A else vocab.C
    np.save(path, tokens)
    (shards.directory / "chr3.npy").unlink()
    problems = verify_shards(shards.directory, genome)
    assert any("chr2.npy: sha256 differs" in p for p in problems)
    assert any("chr2.npy: tokens differ from" in p and "chr2:501" in p for p in problems)
    assert any("chr3.npy: missing" in p for p in problems)
    other = tmp_path / "other.fa.gz"
    write_bgzip_fasta([("chr1", b"A" * 60_000)], other)
    assert any("chr2 is not in" in p for p in verify_shards(shards.directory, other))


def test_cli_verify(genome: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shards = make_shards(genome, tmp_path / "shards")
    assert cli.main(["verify", str(shards.directory), "--fasta", str(genome)]) == 0
    assert "OK" in capsys.readouterr().out
    np.save(shards.directory / "chr1.mask.npy", np.zeros(3, dtype=np.uint8))
    assert cli.main(["verify", str(shards.directory)]) == 1
    assert "chr1.mask.npy: expected 7500 packed bytes" in capsys.readouterr().out
    assert cli.main(["verify", str(tmp_path / "nowhere")]) == 1
    assert "no shard manifest" in capsys.readouterr().err


def test_tokenize_rejects_invalid_characters(tmp_path: Path) -> None:
    fasta = tmp_path / "g.fa"
    fasta.write_bytes(b">c\nACGTXACGT\n")
    (tmp_path / "g.fa.fai").write_text("c\t9\t3\t9\t10\n")
    with pytest.raises(vocab.InvalidSequenceError, match=r"g\.fa:c: character 'X' at position 5"):
        tokenize_chromosome(fasta, "c", tmp_path / "shards")
    assert not (tmp_path / "shards").exists() or not list((tmp_path / "shards").iterdir())
