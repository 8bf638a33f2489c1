"""Benchmark suites against a local HTTP server serving files in the real layouts: GenomicBenchmarks interval
CSVs over a generated genome (and a transcriptome with versioned ids), Nucleotide Transformer FASTA files,
and user data; then a tiny fine-tuning run and the evaluation tables with the published numbers."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pysam
import pytest
import torch
import yaml
from conftest import snakemake
from http_server import LocalHTTPServer

from longdna import resources as estimates
from longdna.config import ConfigError, finetune_runs, load_schema, validate_config
from longdna.data.benchmarks.format import BenchmarkFormatError, read_benchmark
from longdna.data.benchmarks.genomic_benchmarks import dataset_files
from longdna.data.benchmarks.info import METRICS, TaskType
from longdna.data.benchmarks.suite_inputs import load_registry
from longdna.data.benchmarks.suites import SUITE_KEYS, check_keys, prepare_benchmark
from longdna.data.download import ChecksumMismatchError
from longdna.data.genome.demo import DemoGenomeSpec, generate_demo_genome
from longdna.data.genome.fasta import write_bgzip_fasta
from longdna.eval import BASELINES
from longdna.eval.baselines import run_baselines
from longdna.eval.report import write_evaluation
from longdna.models import build_model, save_pretrained
from longdna.settings import FinetuneConfig
from longdna.train.finetune import finetune

REPO = Path(__file__).resolve().parents[1]
GB = "demo_coding_vs_intergenomic_seqs"  # two references: the genome and a transcriptome
COMPLEMENT = str.maketrans("ACGTNacgtn", "TGCANtgcan")
TINY = dict(d_model=16, n_layer=1, d_inner=32, l_max=130, embed_dropout=0.0)


def reverse_complement(sequence: str) -> str:
    return sequence.translate(COMPLEMENT)[::-1]


def write_csv_gz(path: Path, rows: list[dict], columns: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def write_fasta(path: Path, records: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f">{header}\n{seq[:60]}\n{seq[60:]}\n" for header, seq in records))


@pytest.fixture(scope="module")
def genome(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated genome named like the GenomicBenchmarks human references (chr1, chr2)."""
    path = tmp_path_factory.mktemp("genome") / "genome.fa.gz"
    generate_demo_genome(
        path,
        DemoGenomeSpec(
            seed=5,
            chromosome_lengths=(40_000, 30_000),
            telomere_gap=500,
            centromere_gap=1_000,
            short_gaps=1,
            isochore_mean_length=10_000,
        ),
    )
    return path


@pytest.fixture(scope="module")
def transcriptome(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Transcripts with versioned Ensembl ids, as in Homo_sapiens.GRCh38.cdna.all.fa.gz."""
    rng = np.random.default_rng(7)
    path = tmp_path_factory.mktemp("cdna") / "genome.fa.gz"
    write_bgzip_fasta(
        [(f"ENST{i:011d}.{i % 3 + 1}", bytes(rng.choice(list(b"ACGT"), 600).tolist())) for i in range(1, 6)], path
    )
    return path


def gb_intervals(rng: np.random.Generator, regions: dict[str, int], n: int, length: int) -> list[dict]:
    rows = []
    for i in range(n):
        region = list(regions)[i % len(regions)]
        start = int(rng.integers(0, regions[region] - length))
        rows.append({"id": i, "region": region, "start": start, "end": start + length, "strand": "-" if i % 2 else "+"})
    return rows


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, genome: Path, transcriptome: Path):
    """The local server with a GenomicBenchmarks dataset, Nucleotide Transformer tasks and user data."""
    root = tmp_path_factory.mktemp("served")
    rng = np.random.default_rng(0)
    with pysam.FastaFile(str(genome)) as fa, pysam.FastaFile(str(transcriptome)) as tx:
        chroms = {c: fa.get_reference_length(c) for c in fa.references}
        transcripts = {name.rsplit(".", 1)[0]: tx.get_reference_length(name) for name in tx.references}
    sizes = {"train": 40, "test": 16}
    for split, n in sizes.items():
        # the coding class lives on transcripts (versionless ids), the other on chromosomes
        write_csv_gz(
            root / f"gb/{GB}/{split}/coding_seqs.csv.gz",
            gb_intervals(rng, transcripts, n, 200),
            ["id", "region", "start", "end", "strand"],
        )
        rows = gb_intervals(rng, chroms, n, 200)
        for i, row in enumerate(rows):  # some releases carry pandas' unnamed index column first
            row[""] = i
        write_csv_gz(
            root / f"gb/{GB}/{split}/intergenomic_seqs.csv.gz", rows, ["", "id", "region", "start", "end", "strand"]
        )
    for split, n in (("train", 60), ("test", 24)):
        records = []
        for i in range(n):
            label = i % 3
            seq = "".join(rng.choice(list("ACGT"), 80))
            records.append((f"seq{i}|{label}", ("GGGCCC" * 3 if label == 2 else "") + seq))
        write_fasta(root / f"nt/enhancers_types/{split}.fna", records)
    write_fasta(root / "nt/H3/train.fna", [("a|0", "ACGT" * 20), ("b|1", "TTGA" * 20)])
    write_fasta(root / "nt/H3/test.fna", [("c|0", "ACGT" * 20)])
    with LocalHTTPServer(root) as server:
        yield server, root


def prepare(name: str, spec: dict, out: Path, genome: Path | None, cache: Path) -> pd.DataFrame:
    """Materialise a benchmark and read back its data (validated again on reading)."""
    prepare_benchmark(name, spec, out, genome, None, cache)
    return read_benchmark(out)[0]


def gb_spec(server: LocalHTTPServer, transcriptome: Path, **extra) -> dict:
    return {
        "suite": "genomic_benchmarks",
        "task": GB,
        "url": server.url("gb"),
        "reference_fastas": {"transcriptome": str(transcriptome)},
        **extra,
    }


@pytest.fixture(scope="module")
def gb_benchmark(tmp_path_factory: pytest.TempPathFactory, served, genome: Path, transcriptome: Path) -> Path:
    server, _ = served
    out = tmp_path_factory.mktemp("bench") / "gb_coding_vs_intergenomic_seqs"
    cache = out.parent / "cache"
    prepare_benchmark(out.name, gb_spec(server, transcriptome), out, genome, None, cache)
    return out


@pytest.fixture(scope="module")
def nt_benchmark(tmp_path_factory: pytest.TempPathFactory, served) -> Path:
    server, _ = served
    out = tmp_path_factory.mktemp("bench") / "nt_enhancers_types"
    prepare_benchmark(
        out.name,
        {"suite": "nucleotide_transformer", "task": "enhancers_types", "url": server.url("nt")},
        out,
        None,
        None,
        out.parent / "cache",
    )
    return out


def test_genomic_benchmarks_are_cut_from_the_references_base_by_base(
    gb_benchmark: Path, served, genome: Path, transcriptome: Path
) -> None:
    _, root = served
    frame, info = read_benchmark(gb_benchmark)
    assert info.suite == "genomic_benchmarks" and info.metric == "accuracy"
    assert info.label_names == ["coding_seqs", "intergenomic_seqs"] and info.num_outputs == 2
    assert frame["split"].value_counts().to_dict() == {"train": 80, "test": 32}
    with pysam.FastaFile(str(genome)) as fa, pysam.FastaFile(str(transcriptome)) as tx:
        by_versionless = {name.rsplit(".", 1)[0]: name for name in tx.references}
        checked_minus = 0
        for split in ("train", "test"):
            for label, cls in enumerate(info.label_names):
                source = pd.read_csv(root / f"gb/{GB}/{split}/{cls}.csv.gz")
                ours = frame.loc[(frame["split"] == split) & (frame["label"] == label)]
                assert ours["id"].tolist() == [f"{split}/{cls}/{i}" for i in source["id"]]
                for (_, row), sequence in zip(source.iterrows(), ours["sequence"]):
                    if cls == "coding_seqs":
                        expected = tx.fetch(by_versionless[row["region"]])[row["start"] : row["end"]]
                    else:
                        expected = fa.fetch(row["region"])[row["start"] : row["end"]]
                    if row["strand"] == "-":
                        expected = reverse_complement(expected)
                        checked_minus += 1
                    assert sequence == expected
    assert checked_minus == 56


def test_downloads_are_cached(gb_benchmark: Path, served, genome: Path, transcriptome: Path, tmp_path: Path) -> None:
    server, _ = served
    before = len(server.requests)
    prepare_benchmark(
        "again", gb_spec(server, transcriptome), tmp_path / "again", genome, None, gb_benchmark.parent / "cache"
    )
    assert len(server.requests) == before
    assert read_benchmark(tmp_path / "again")[0].equals(read_benchmark(gb_benchmark)[0])


def test_nucleotide_transformer_task_keeps_the_official_splits(nt_benchmark: Path) -> None:
    frame, info = read_benchmark(nt_benchmark)
    assert info.suite == "nucleotide_transformer" and info.metric == "mcc" and info.num_outputs == 3
    assert frame["split"].value_counts().to_dict() == {"train": 60, "test": 24}
    assert frame["label"].tolist()[:4] == [0, 1, 2, 0] and frame["id"].tolist()[:2] == ["seq0", "seq1"]


def test_registered_checksum_is_verified(served, tmp_path: Path) -> None:
    server, _ = served  # the served H3 files are not the real ones, whose sha256 the registry holds
    with pytest.raises(ChecksumMismatchError, match=r"sha256 mismatch for http://.*/nt/H3/train\.fna"):
        prepare_benchmark(
            "h3",
            {"suite": "nucleotide_transformer", "task": "H3", "url": server.url("nt")},
            tmp_path / "h3",
            None,
            None,
            tmp_path / "cache",
        )
    assert not (tmp_path / "h3").exists()


def test_finetune_and_evaluate_with_published_numbers(gb_benchmark: Path, nt_benchmark: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    backbone = tmp_path / "pretrain/tiny"
    save_pretrained(build_model("hyenadna", **TINY), backbone)
    write_pretrain_summary(backbone)
    runs = []
    for bench in (gb_benchmark, nt_benchmark):
        run = tmp_path / "finetune" / bench.name / "tiny/seed1"
        finetune(
            bench,
            run,
            FinetuneConfig(epochs=1, batch_size=16, max_length=128),
            seed=1,
            backbone_dir=backbone,
            run_name={"benchmark": bench.name, "model": "tiny"},
            progress=False,
        )
        baselines = {b: tmp_path / "baselines" / bench.name / b / "seed1" for b in BASELINES}
        run_baselines(bench, baselines, seed=1, benchmark=bench.name)
        runs += [run, *baselines.values()]
    write_evaluation(
        runs,
        {"tiny": backbone},
        tmp_path / "evaluation",
        published=REPO / "resources/published_results.csv",
        resamples=20,
    )
    table = (tmp_path / "evaluation/table.md").read_text()
    assert "### GenomicBenchmarks" in table and "### Nucleotide Transformer tasks" in table

    def rows(benchmark: str) -> dict[str, str]:
        """model column -> the rest of the row, for one benchmark."""
        lines = [line.split(" | ") for line in table.splitlines() if line.startswith(f"| {benchmark} |")]
        return {cells[2]: " | ".join(cells[3:]) for cells in lines}

    gb, nt = rows("gb_coding_vs_intergenomic_seqs"), rows("nt_enhancers_types")
    # the model, the baselines, then the published numbers in sorted model order
    assert list(gb) == [
        "tiny",
        "majority (baseline)",
        "kmer_lr (baseline)",
        "onehot_lr (baseline)",
        "published: Caduceus-PS (Caduceus paper)",
        "published: Caduceus-Ph (Caduceus paper)",
        "published: HyenaDNA (Caduceus paper)",
        "published: HyenaDNA (HyenaDNA paper)",
    ]
    assert [gb[m].split(" | ")[0] for m in list(gb)[4:]] == ["0.910", "0.915", "0.904", "0.913"]
    assert [nt[m].split(" | ")[0] for m in list(nt)[4:]] == ["0.416", "0.439", "0.386", "0.557"]
    assert all(
        line.startswith("| nt_enhancers_types | mcc |")
        for line in table.splitlines()
        if line.startswith("| nt_enhancers_types |")
    )
    assert "Table 4.1" in table and "Table 2" in table
    summary = pd.read_csv(tmp_path / "evaluation/summary.csv")
    assert set(summary["benchmark"]) == {"gb_coding_vs_intergenomic_seqs", "nt_enhancers_types"}
    assert set(summary.loc[summary["kind"] == "baseline", "model"]) == set(BASELINES)


def write_pretrain_summary(directory: Path) -> None:
    """The pretraining outputs the evaluate stage reads (docs/formats.md), for a backbone saved directly."""
    config = json.loads((directory / "config.json").read_text())
    config["pretrain"] = {"objective": "causal", "config": {"seq_len": 128}}
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "summary.json").write_text(
        json.dumps(
            {"test_by_length": {"128": {"loss": 1.38, "bits_per_base": 1.99, "perplexity": 3.97, "tokens": 512}}}
        )
    )
    (directory / "metrics.jsonl").write_text(
        json.dumps({"kind": "valid", "step": 1, "loss": 1.38, "bits_per_base": 1.99, "perplexity": 3.97, "tokens": 512})
        + "\n"
    )


# -- user data ---------------------------------------------------------------------------------------------
def test_user_csv_without_split_gets_a_seeded_stratified_80_20_split(tmp_path: Path) -> None:
    rows = [
        (
            f"s{i}",
            "ACGT" * 5 + "ACGT"[i % 4] + "ACGT"[i // 4 % 4] + "ACGT"[i // 16 % 4] + "ACGT"[i // 64],
            "enhancer" if i % 4 else "background",
        )
        for i in range(100)
    ]
    pd.DataFrame(rows, columns=["id", "sequence", "label"]).to_csv(tmp_path / "data.csv", index=False)
    spec = {"suite": "user", "path": str(tmp_path / "data.csv"), "format": "csv", "seed": 3}
    frame = prepare("mine", spec, tmp_path / "a", None, tmp_path / "cache")
    _, info = read_benchmark(tmp_path / "a")
    assert info.label_names == ["background", "enhancer"] and info.metric == "accuracy" and info.suite == "user"
    assert pd.crosstab(frame["split"], frame["label"]).to_dict() == {
        0: {"test": 5, "train": 20},
        1: {"test": 15, "train": 60},
    }
    again = prepare("mine", spec, tmp_path / "b", None, tmp_path / "cache")
    assert again["split"].equals(frame["split"])
    other = prepare("mine", {**spec, "seed": 4}, tmp_path / "c", None, tmp_path / "cache")
    assert not other["split"].equals(frame["split"])


def test_user_tsv_parquet_and_regression(tmp_path: Path) -> None:
    table = pd.DataFrame(
        {
            "sequence": ["ACGTACGT", "GGGCCCAA", "TTTTAAAA", "ACACACAC"],
            "score": [0.5, 1.5, -2, 3],
            "label": [10, 2, 2, 10],
            "split": ["train", "train", "test", "test"],
        }
    )
    table.to_csv(tmp_path / "data.tsv", sep="\t", index=False)
    table.to_parquet(tmp_path / "data.parquet")
    tsv = prepare(
        "t", {"suite": "user", "path": str(tmp_path / "data.tsv"), "format": "tsv"}, tmp_path / "t", None, tmp_path
    )
    assert tsv["label"].tolist() == [1, 0, 0, 1] and read_benchmark(tmp_path / "t")[1].label_names == ["2", "10"]
    spec = {
        "suite": "user",
        "path": str(tmp_path / "data.parquet"),
        "format": "parquet",
        "task_type": "regression",
        "label_column": "score",
    }
    frame = prepare("r", spec, tmp_path / "r", None, tmp_path)
    _, info = read_benchmark(tmp_path / "r")
    assert frame["label"].tolist() == [0.5, 1.5, -2.0, 3.0] and info.task == "regression" and info.metric == "pearson"
    assert info.num_outputs == 1 and frame["split"].tolist() == table["split"].tolist()


def test_user_fasta_labels_from_headers(tmp_path: Path) -> None:
    write_fasta(
        tmp_path / "data.fa",
        [
            ("a|pos split=train", "ACGT" * 20),
            ("b label=neg split=test", "TTGA" * 20),
            ("c|neg split=train", "GGCA" * 20),
            ("d label=pos split=test", "CCAT" * 20),
        ],
    )
    frame = prepare(
        "f", {"suite": "user", "path": str(tmp_path / "data.fa"), "format": "fasta"}, tmp_path / "f", None, tmp_path
    )
    assert frame["id"].tolist() == ["a", "b", "c", "d"] and frame["label"].tolist() == [1, 0, 0, 1]
    assert frame["split"].tolist() == ["train", "test", "train", "test"]
    assert frame["sequence"].iloc[0] == "ACGT" * 20  # the sequence spans two lines in the file


def test_user_bed_intervals_are_cut_from_the_genome(tmp_path: Path, genome: Path) -> None:
    bed = tmp_path / "regions.bed"
    bed.write_text(
        "track name=mine\n#chrom\tstart\tend\tstrand\tclass\tsplit\n"
        "chr1\t1000\t1300\t+\tA\ttrain\nchr2\t500\t900\t-\tB\ttrain\n"
        "chr1\t5000\t5200\t.\tB\ttest\nchr2\t7000\t7100\t-\tA\ttest\n"
    )
    spec = {"suite": "user", "path": str(bed), "format": "bed", "label_column": "class"}
    frame = prepare("bed", spec, tmp_path / "bed", genome, tmp_path)
    with pysam.FastaFile(str(genome)) as fa:
        assert frame["sequence"].iloc[0] == fa.fetch("chr1")[1000:1300]
        assert frame["sequence"].iloc[1] == reverse_complement(fa.fetch("chr2")[500:900])
        assert frame["sequence"].iloc[2] == fa.fetch("chr1")[5000:5200]  # '.' reads the plus strand
        assert frame["sequence"].iloc[3] == reverse_complement(fa.fetch("chr2")[7000:7100])
    assert frame["id"].iloc[1] == "chr2:500-900(-)" and frame["label"].tolist() == [0, 1, 1, 0]
    plain = tmp_path / "plain.bed"  # no header: the BED columns chrom, start, end, name, score, strand
    plain.write_text(
        "".join(f"chr1\t{1010 + i}\t{1060 + i}\tx\t0\t-\nchr1\t{1070 + i}\t{1090 + i}\ty\t0\t+\n" for i in range(10))
    )  # distinct sequences: a random split keeps copies together
    frame = prepare("plain", {**spec, "path": str(plain), "label_column": "name"}, tmp_path / "plain", genome, tmp_path)
    assert set(frame["split"]) == {"train", "test"} and len(frame) == 20


def test_user_data_from_a_url_is_checked_against_its_sha256(served, tmp_path: Path) -> None:
    server, root = served
    (root / "user.csv").write_text("sequence,label,split\nACGT,a,train\nACGA,b,train\nTTTT,b,test\n")
    spec = {"suite": "user", "path": server.url("user.csv"), "format": "csv", "sha256": "0" * 64}
    with pytest.raises(ChecksumMismatchError, match="user.csv"):
        prepare_benchmark("u", spec, tmp_path / "u", None, None, tmp_path / "cache")
    spec["sha256"] = hashlib.sha256((root / "user.csv").read_bytes()).hexdigest()
    assert len(prepare("u", spec, tmp_path / "u", None, tmp_path / "cache")) == 3


# -- bad inputs: the error names the file and the row, and nothing is written ------------------------------
def user_csv(tmp_path: Path, text: str, **spec) -> tuple[dict, str]:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return {"suite": "user", "path": str(path), "format": "csv", **spec}, str(path)


@pytest.mark.parametrize(
    ("text", "extra", "message"),
    [
        ("seq,label\nACGT,a\n", {}, r"missing column\(s\) \['sequence'\]; found \['seq', 'label'\]"),
        (
            "sequence,label,split\nACGT,a,train\nACGT,c,test\n",
            {"labels": ["a", "b"]},
            r"row 2: unknown label 'c' \(classes: \['a', 'b'\]\)",
        ),
        ("sequence,label,split\nACGT,a,train\nACXT,b,test\n", {}, r"row 2: character 'X' at position 3"),
        ("sequence,label,split\nACGT,a,train\nACGT,b,train\n", {}, r"the test split is empty"),
        ("sequence,label,split\nACGT,a,train\nACGT,b,tset\n", {}, r"row 2: split 'tset' is not one of"),
        ("sequence,label,split\nACGT,a,train\nACGT,,test\n", {}, r"row 2: missing label"),
        (
            "sequence,label,split\nACGT,1.5,train\nACGT,x,test\n",
            {"task_type": "regression"},
            r"row 2: regression label 'x' is not a finite number",
        ),
        ("sequence,label,split\nACGT,a,train\n,b,test\n", {}, r"row 2: empty or missing sequence"),
    ],
    ids=[
        "missing-column",
        "unknown-label",
        "invalid-character",
        "empty-split",
        "bad-split-name",
        "missing-label",
        "bad-regression-target",
        "empty-sequence",
    ],
)
def test_bad_user_data(tmp_path: Path, text: str, extra: dict, message: str) -> None:
    spec, path = user_csv(tmp_path, text, **extra)
    with pytest.raises(BenchmarkFormatError, match=rf"^{path}: {message}"):
        prepare_benchmark("bad", spec, tmp_path / "out", None, None, tmp_path)
    assert not (tmp_path / "out").exists()


def test_bad_bed_interval(tmp_path: Path, genome: Path) -> None:
    bed = tmp_path / "bad.bed"
    bed.write_text("chr1\t0\t100\ta\nchr2\t29950\t30050\tb\n")  # chr2 has 30,000 bp
    spec = {"suite": "user", "path": str(bed), "format": "bed", "label_column": "name"}
    with pytest.raises(BenchmarkFormatError, match=rf"^{bed}: row 2: end 30050 is past the end of chr2 \(30000 bp\)"):
        prepare_benchmark("bad", spec, tmp_path / "out", genome, None, tmp_path)
    bed.write_text("chr1\t0\t100\ta\nchr9\t0\t10\tb\n")
    with pytest.raises(BenchmarkFormatError, match=r"row 2: sequence 'chr9' is not in .*genome.fa.gz"):
        prepare_benchmark("bad", spec, tmp_path / "out", genome, None, tmp_path)
    assert not (tmp_path / "out").exists()


def served_gb_variant(root: Path, name: str, change) -> str:
    """A copy of the served GenomicBenchmarks dataset with one file changed; returns its base path."""
    base = root / name
    for split in ("train", "test"):
        for cls in ("coding_seqs", "intergenomic_seqs"):
            source = root / f"gb/{GB}/{split}/{cls}.csv.gz"
            target = base / f"{GB}/{split}/{cls}.csv.gz"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    frame = pd.read_csv(base / f"{GB}/test/intergenomic_seqs.csv.gz")
    change(frame).to_csv(base / f"{GB}/test/intergenomic_seqs.csv.gz", index=False, compression="gzip")
    return name


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns="strand"), r"missing column\(s\) \['strand'\]"),
        (lambda f: f.assign(region=["chr1"] * (len(f) - 1) + ["chrUn"]), r"row 16: sequence 'chrUn' is not in"),
        (
            lambda f: f.assign(strand=["+"] * 2 + ["*"] * (len(f) - 2)),
            r"row 3: strand '\*' is not one of \['\+', '-'\]",
        ),
        (lambda f: f.iloc[:0], r"no rows \(the test split of class 'intergenomic_seqs' is empty\)"),
    ],
    ids=["missing-column", "unknown-region", "bad-strand", "empty-split"],
)
def test_bad_genomic_benchmarks_files(
    served, genome: Path, transcriptome: Path, tmp_path: Path, change, message: str
) -> None:
    server, root = served
    base = served_gb_variant(root, f"gb_bad_{tmp_path.name}", change)
    spec = {**gb_spec(server, transcriptome), "url": server.url(base)}
    url = server.url(f"{base}/{GB}/test/intergenomic_seqs.csv.gz")
    with pytest.raises(BenchmarkFormatError, match=rf"^{url}: {message}"):
        prepare_benchmark("bad", spec, tmp_path / "out", genome, None, tmp_path / "cache")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([("a|0", "ACGT"), ("b|5", "ACGT")], r"record 2: unknown label '5' \(classes: \['0', '1', '2'\]\)"),
        ([("a|0", "ACGT"), ("b|1", "AC-T")], r"record 2: character '-' at position 3"),
        ([("a|0", "ACGT"), ("b", "ACGT")], r"record 2 \(line 4\): header '>b' has no label"),
    ],
    ids=["unknown-label", "invalid-character", "no-label"],
)
def test_bad_nucleotide_transformer_files(served, tmp_path: Path, records: list, message: str) -> None:
    server, root = served
    base = f"nt_bad_{tmp_path.name}"
    write_fasta(root / base / "enhancers_types/train.fna", records)
    write_fasta(root / base / "enhancers_types/test.fna", [("c|1", "ACGT")])
    url = server.url(f"{base}/enhancers_types/train.fna")
    with pytest.raises(BenchmarkFormatError, match=rf"^{url}: {message}"):
        prepare_benchmark(
            "bad",
            {"suite": "nucleotide_transformer", "task": "enhancers_types", "url": server.url(base)},
            tmp_path / "out",
            None,
            None,
            tmp_path / "cache",
        )
    assert not (tmp_path / "out").exists()


def test_misplaced_keys_and_unknown_tasks_are_named(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError,
        match=r"benchmarks.x: key\(s\) \['sha256'\] are not used by suite"
        r" 'nucleotide_transformer'.*its registry,"
        r" longdna/data/benchmarks/registries/nucleotide_transformer.yaml",
    ):
        prepare_benchmark(
            "x", {"suite": "nucleotide_transformer", "task": "H3", "sha256": "0" * 64}, tmp_path, None, None, tmp_path
        )
    with pytest.raises(ValueError, match=r"task 'H5' is not a Nucleotide Transformer task; known: \['H3'"):
        prepare_benchmark("x", {"suite": "nucleotide_transformer", "task": "H5"}, tmp_path, None, None, tmp_path)
    with pytest.raises(ValueError, match=r"metric 'r2' is not a classification metric"):
        prepare_benchmark(
            "x", {"suite": "nucleotide_transformer", "task": "H3", "metric": "r2"}, tmp_path, None, None, tmp_path
        )
    with pytest.raises(ValueError, match=r"task 'human_promoters' is not a GenomicBenchmarks dataset"):
        prepare_benchmark(
            "x",
            {"suite": "genomic_benchmarks", "task": "human_promoters"},
            tmp_path,
            tmp_path / "genome.fa.gz",
            None,
            tmp_path,
        )
    with pytest.raises(ValueError, match=r"task 'nope' is not a Genomics Long-Range Benchmark task"):
        prepare_benchmark(
            "x", {"suite": "long_range", "task": "nope"}, tmp_path, tmp_path / "genome.fa.gz", None, tmp_path
        )
    with pytest.raises(ValueError, match=r"dataset demo_human_or_worm needs the reference\(s\) \['worm'\]"):
        prepare_benchmark(
            "x",
            {"suite": "genomic_benchmarks", "task": "demo_human_or_worm"},
            tmp_path,
            tmp_path / "genome.fa.gz",
            None,
            tmp_path,
        )


# -- registries, published numbers and the real-genome configuration agree --------------------------------
def test_registries_published_numbers_and_hg38_config_agree() -> None:
    gb, nt = load_registry("genomic_benchmarks"), load_registry("nucleotide_transformer")
    assert len(gb["datasets"]) == 8 and len(nt["tasks"]) == 18
    for dataset in gb["datasets"].values():
        assert sorted(dataset["files"]) == sorted(p for _, _, p in dataset_files(dataset, gb["splits"]))
        assert dataset["classes"] == sorted(dataset["classes"])
    for task in nt["tasks"].values():
        assert task["metric"] in METRICS[TaskType.CLASSIFICATION] and sorted(task["files"]) == ["test.fna", "train.fna"]
    for entry in [
        *(d["files"].values() for d in gb["datasets"].values()),
        *(t["files"].values() for t in nt["tasks"].values()),
    ]:
        for sha in entry:
            assert sha is None or (len(sha) == 64 and int(sha, 16) >= 0)

    config = yaml.safe_load((REPO / "config/hg38.yaml").read_text())
    benchmarks = config["benchmarks"]
    published = pd.read_csv(REPO / config["evaluate"]["published"])
    assert published.groupby("benchmark")["model"].nunique().eq(4).all()
    for name, spec in benchmarks.items():
        entry = gb["datasets"][spec["task"]] if spec["suite"] == "genomic_benchmarks" else nt["tasks"][spec["task"]]
        metric = gb["metric"] if spec["suite"] == "genomic_benchmarks" else entry["metric"]
        expected = (
            f"gb_{spec['task'].removeprefix('demo_').removeprefix('dummy_')}"
            if spec["suite"] == "genomic_benchmarks"
            else f"nt_{spec['task']}"
        )
        assert name == expected  # the naming convention shared with the published table
        rows = published.loc[published["benchmark"] == name]
        assert set(rows["suite"]) == {spec["suite"]} and set(rows["metric"]) == {metric}
        if spec["suite"] == "genomic_benchmarks":
            roles = {
                gb["references"][r]["role"] for r in [entry["reference"], *entry.get("class_references", {}).values()]
            }
            assert roles == {"genome", *spec.get("references", {})}
    assert set(published["benchmark"]) == set(benchmarks)


# -- the config keys of each suite: the schema and the run time agree ------------------------------------------
SCHEMA = load_schema(REPO / "workflow/schemas/config.schema.yaml")
BENCHMARK_ENTRY = SCHEMA["properties"]["benchmarks"]["additionalProperties"]


def schema_keys(suite: str) -> set[str]:
    """The keys the schema accepts in a benchmark entry of ``suite`` (its ``propertyNames`` clause)."""
    (keys,) = [
        clause["then"]["propertyNames"]["enum"]
        for clause in BENCHMARK_ENTRY["allOf"]
        if clause["if"]["properties"]["suite"] == {"const": suite} and "propertyNames" in clause["then"]
    ]
    return set(keys)


def example_value(schema: dict) -> object:
    """A value ``schema`` accepts."""
    if "$ref" in schema or schema.get("type") == "object":
        return {}
    if "enum" in schema:
        return schema["enum"][0]
    if "pattern" in schema:  # the checksums
        return "0" * 64
    kind = schema["type"][0] if isinstance(schema["type"], list) else schema["type"]
    if kind == "array":
        return [example_value(schema["items"])] * schema.get("minItems", 1)
    return {"integer": max(1, schema.get("minimum", 1)), "number": 0.5, "string": "demo", "boolean": True}[kind]


@pytest.mark.parametrize("suite", BENCHMARK_ENTRY["properties"]["suite"]["enum"])
def test_every_key_the_schema_accepts_is_accepted_at_run_time(suite: str) -> None:
    """A config the schema passes (what `snakemake -n` checks) must not fail at run time for its keys, and a
    key the suite does not read must fail in both places: per-benchmark `seeds` included, for every suite."""
    keys = schema_keys(suite)
    assert keys == SUITE_KEYS[suite] - {"reference_fastas"}  # reference_fastas: filled in by the workflow
    assert "seeds" in keys
    overrides = {
        k: v
        for c in BENCHMARK_ENTRY["allOf"]
        if c["if"]["properties"]["suite"] == {"const": suite}
        for k, v in c["then"].get("properties", {}).items()
    }  # e.g. the formats of user data
    spec = {key: example_value({**BENCHMARK_ENTRY["properties"][key], **overrides.get(key, {})}) for key in keys}
    spec["suite"] = suite
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["benchmarks"]["b"] = spec
    validate_config(config, SCHEMA)
    check_keys("b", spec)
    for key in sorted(set(BENCHMARK_ENTRY["properties"]) - keys):
        other = {**spec, key: example_value(BENCHMARK_ENTRY["properties"][key])}
        with pytest.raises(ConfigError, match=rf"benchmarks\.b: '{key}' is not one of"):
            validate_config({**config, "benchmarks": {**config["benchmarks"], "b": other}}, SCHEMA)
        with pytest.raises(ValueError, match=rf"benchmarks\.b: key\(s\) \['{key}'\] are not used by suite '{suite}'"):
            check_keys("b", other)


def test_per_benchmark_seeds_reach_the_fine_tuning_runs_of_user_data(tmp_path: Path) -> None:
    """The reported failure: `seeds` on a user benchmark passed `snakemake -n`, then failed in prepare_benchmark."""
    rows = [(f"s{i}", "ACGTAC" + "ACGT"[i % 4] + "ACGT"[i // 4 % 4], "ab"[i % 2]) for i in range(20)]
    pd.DataFrame(rows, columns=["id", "sequence", "label"]).to_csv(tmp_path / "data.csv", index=False)
    spec = {"suite": "user", "path": str(tmp_path / "data.csv"), "format": "csv", "seeds": [4, 5]}
    assert len(prepare("mine", spec, tmp_path / "out", None, tmp_path / "cache")) == 20
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["benchmarks"]["mine"] = spec
    validate_config(config, SCHEMA)
    assert {s for b, _, s in finetune_runs(config) if b == "mine"} == {4, 5}


# -- resources from the prepared benchmark ------------------------------------------------------------------------
def user_benchmark_file(tmp_path: Path, n: int = 300, length: int = 60) -> Path:
    rng = np.random.default_rng(0)
    rows = [("".join(rng.choice(list("ACGT"), length)), "ab"[i % 2]) for i in range(n)]
    pd.DataFrame(rows, columns=["sequence", "label"]).to_csv(tmp_path / "small.csv", index=False)
    return tmp_path / "small.csv"


def test_fine_tuning_resources_come_from_the_prepared_benchmark(tmp_path: Path) -> None:
    spec = {"suite": "user", "path": str(user_benchmark_file(tmp_path)), "format": "csv"}
    info = tmp_path / "out/benchmark.json"
    assert estimates.benchmark_size(spec, prepared=info) == estimates.SUITE_SIZES["user"]  # not prepared yet: a guess
    prepare("small", spec, tmp_path / "out", None, tmp_path / "cache")
    sizes = json.loads(info.read_text())["sizes"]
    assert sizes == {
        "train": {"rows": 240, "bases": 240 * 60, "max_length": 60},
        "test": {"rows": 60, "bases": 60 * 60, "max_length": 60},
    }
    assert estimates.benchmark_size(spec, prepared=info) == (60, 300)
    assert estimates.benchmark_size(spec, max_length=50, prepared=info) == (50, 300)
    settings = {"epochs": 5, "batch_size": 32}
    real = estimates.finetune_resources("hyenadna", {"d_model": 64, "n_layer": 2}, settings, 60, 300)
    guess = estimates.finetune_resources(
        "hyenadna", {"d_model": 64, "n_layer": 2}, settings, *estimates.SUITE_SIZES["user"]
    )
    assert real["runtime"] <= 15 and real["mem_mb"] <= 2000 and guess["runtime"] > 100 * real["runtime"]
    older = json.loads(info.read_text())
    del older["sizes"]
    info.write_text(json.dumps(older))  # a benchmark prepared before sizes were recorded: the guess again
    assert estimates.benchmark_size(spec, prepared=info) == estimates.SUITE_SIZES["user"]


def test_fine_tuning_estimate_counts_the_steps_the_run_takes() -> None:
    """Both phases count, each capped as the run caps it (FinetuneConfig.phase_steps): adaptation epochs add
    compute, and a step or base cap bounds it however many sequences there are."""
    arch, shape = "caduceus", {"d_model": 128, "n_layer": 2}

    def seconds(length: int, examples: int, **settings: Any) -> int:
        return estimates.finetune_resources(arch, shape, {"batch_size": 32, **settings}, length, examples)["seconds"]

    plain = seconds(100, 3200, epochs=10)
    assert seconds(100, 3200, epochs=10, adapt_epochs=5) == pytest.approx(1.5 * plain, rel=0.01)
    assert seconds(100, 3200, epochs=10, max_steps=500) == pytest.approx(plain / 2, rel=0.01)
    assert seconds(100, 320_000, epochs=10, max_steps=500) == pytest.approx(plain / 2, rel=0.01)
    # a base cap: the same compute budget at 500 bp as at 100 bp (the cost per base is higher at 500)
    capped = {"epochs": 10, "max_tokens": 32 * 100 * 500}
    long_per_base = seconds(500, 3200, epochs=10) / seconds(100, 3200 * 5, epochs=10)
    assert seconds(500, 3200, **capped) == pytest.approx(long_per_base * seconds(100, 3200, **capped), rel=0.01)


@pytest.mark.slow
def test_scheduled_fine_tuning_job_asks_for_the_prepared_benchmarks_resources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LONGDNA_DECLARE_SLURM", "1")  # dry runs show the wall times SLURM jobs would get
    """Snakemake evaluates the resources again once the job's input (benchmark.json) exists: a dry run before
    the benchmark is prepared shows the suite's guess, one after it the benchmark's real size."""
    from test_cluster import ci_config, job_resources

    data = user_benchmark_file(tmp_path)

    def with_user_benchmark(config: dict) -> None:
        config["benchmarks"] = {"small": {"suite": "user", "path": str(data), "format": "csv"}}
        config["finetune"]["models"] = {"hyena": {"backbone": "hyena"}}

    configfile = ci_config(tmp_path, with_user_benchmark)
    target = "results/finetune/small/hyena/seed1/metrics.json"
    (before,) = job_resources(snakemake(tmp_path, "-n", target, configfile=configfile).stdout, "finetune_model")
    snakemake(tmp_path, "results/benchmarks/small/benchmark.json", configfile=configfile)
    (after,) = job_resources(snakemake(tmp_path, "-n", target, configfile=configfile).stdout, "finetune_model")
    config = yaml.safe_load(configfile.read_text())
    expected = estimates.finetune_resources(
        "hyenadna", config["models"]["hyena"]["config"], config["finetune"]["settings"], 60, 300
    )
    assert (after["mem_mb"], after["runtime"]) == (expected["mem_mb"], expected["runtime"])
    assert before["runtime"] > 10 * after["runtime"]
    (baseline,) = job_resources(
        snakemake(tmp_path, "-n", "results/baselines/small/majority/seed1/metrics.json", configfile=configfile).stdout,
        "classical_baseline",
    )
    assert baseline["runtime"] == estimates.baseline_resources(60, 300)["runtime"]
