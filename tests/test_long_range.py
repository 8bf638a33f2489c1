"""The Genomics Long-Range Benchmark suite, the benchmark format's variant and locus columns, and the study's
models: LRB fixture files in the dataset's layout on a local HTTP server, cut from a small generated genome
and checked base by base against an independent implementation of the dataset's loading rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pysam
import pytest
import torch
import yaml
from conftest import demo_shards
from http_server import LocalHTTPServer

from longdna.data.benchmarks.format import (
    BenchmarkFormatError,
    BenchmarkInfo,
    read_benchmark,
    resize_examples,
    write_benchmark,
)
from longdna.data.benchmarks.long_range import prepare_long_range
from longdna.data.benchmarks.suite_inputs import load_registry
from longdna.data.genome.demo import DemoGenomeSpec, generate_demo_genome
from longdna.models import build_model
from longdna.settings import PretrainConfig
from longdna.train.pretrain import pretrain

REPO = Path(__file__).resolve().parents[1]
GENOME = DemoGenomeSpec(
    chromosome_lengths=(60_000, 50_000, 40_000),
    isochore_mean_length=10_000,
    telomere_gap=500,
    centromere_gap=1_000,
    short_gaps=1,
)
LENGTH = 1000  # windows of the fixtures (even, as the study's 12,288)
COMPLEMENT = str.maketrans("ACGTN", "TGCAN")


@pytest.fixture(scope="module")
def genome(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("genome") / "genome.fa.gz"
    generate_demo_genome(path, GENOME)
    return path


@pytest.fixture(scope="module")
def chromosomes(genome: Path) -> dict[str, str]:
    with pysam.FastaFile(str(genome)) as fasta:
        return {name: fasta.fetch(name) for name in fasta.references}


def standardize(sequence: str) -> str:
    """The dataset script's rule: upper case, anything but A/C/G/T as N."""
    return "".join(c if c in "ACGT" else "N" for c in sequence.upper())


def lrb_window(chromosome: str, start: int, length: int, end: int | None = None, minus: bool = False) -> str | None:
    """The loading script's ``pad_sequence`` + ``standardize_sequence``, written from its documented behaviour:
    centred on ``start`` (or on [start, end)), None when the window passes a chromosome end."""
    if end is not None:
        pad = (length - (end - start)) // 2
        lo, hi = start - pad, end + pad + length % 2
    else:
        lo, hi = start - length // 2, start + length // 2 + length % 2
    if lo < 0 or hi >= len(chromosome):
        return None
    window = standardize(chromosome[lo:hi])
    return window.translate(COMPLEMENT)[::-1] if minus else window


def positions(chromosomes: dict[str, str], rng: np.random.Generator, n: int) -> list[tuple[str, int]]:
    """(chrom, 1-based position): random ones plus two whose windows pass a chromosome end."""
    names = list(chromosomes)
    picked = [(names[rng.integers(len(names))], 0) for _ in range(n)]
    picked = [(c, int(rng.integers(LENGTH, len(chromosomes[c]) - LENGTH))) for c, _ in picked]
    return picked + [("chr1", 10), ("chr2", len(chromosomes["chr2"]) - 20)]


@pytest.fixture(scope="module")
def lrb_server(tmp_path_factory: pytest.TempPathFactory, chromosomes: dict[str, str]):
    """The dataset's files (the layout and columns of the pinned revision) for every registered task."""
    root = tmp_path_factory.mktemp("lrb")
    rng = np.random.default_rng(7)

    def write(path: str, frame: pd.DataFrame) -> None:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(root / path, index=False)

    def split(n: int) -> list[str]:
        return ["test" if i % 4 == 0 else "train" for i in range(n)]

    sites = positions(chromosomes, rng, 40)
    n = len(sites)
    refs = [chromosomes[c][p - 1].upper() for c, p in sites]
    alts = ["A" if r != "A" else "G" for r in refs]
    write(
        "variant_effect_causal_eqtl/All_Tissues.csv",
        pd.DataFrame(
            {
                "CHROM": [c for c, _ in sites],
                "POS": [p for _, p in sites],
                "REF": refs,
                "ALT": alts,
                "label": [i % 2 for i in range(n)],
                "tissue": "Whole_Blood",
                "distance_to_nearest_TSS": 1000,
                "split": split(n),
            }
        ),
    )
    write(
        "variant_effect_pathogenic/vep_pathogenic_coding.csv",
        pd.DataFrame(
            {
                "CHROM": [c for c, _ in sites],
                "POS": [p for _, p in sites],
                "REF": refs,
                "ALT": alts,
                "INT_LABEL": [(i // 2) % 2 for i in range(n)],
                "split": split(n),
            }
        ),
    )
    write(
        "bulk_rna_expression/gene_coordinates.csv",
        pd.DataFrame(
            {
                "chrom": [c for c, _ in sites],
                "CAGE_representative_TSS": [p for _, p in sites],
                "strand": ["-" if i % 3 == 0 else "+" for i in range(n)],
                "split": split(n),
            }
        ),
    )
    write(
        "bulk_rna_expression/rna_expression_values.csv",
        pd.DataFrame(rng.normal(size=(n, 3)), columns=["Adipose", "Brain", "Liver"]),
    )
    for suffix in ("", "_subset"):
        rows = n if not suffix else n // 2
        write(
            f"chromatin_features/histones_and_dnase{suffix}.csv",
            pd.DataFrame(
                {
                    "CHROM": [c for c, _ in sites][:rows],
                    "POS": [p for _, p in sites][:rows],
                    "HISTONES": [str(rng.integers(0, 2, 4).tolist()) for _ in range(rows)],
                    "DNASE": [str(rng.integers(0, 2, 6).tolist()) for _ in range(rows)],
                    "split": split(rows),
                }
            ),
        )
        for element in ("promoter", "enhancer"):
            width = 200 if element == "promoter" else 301  # odd: the window differs from the script's by one
            write(
                f"regulatory_elements/{element}_dataset{suffix}.csv",
                pd.DataFrame(
                    {
                        "CHROM": [c for c, _ in sites][:rows],
                        "START": [p for _, p in sites][:rows],
                        "STOP": [p + width for _, p in sites][:rows],
                        "label": [i % 2 for i in range(rows)],
                        "split": split(rows),
                    }
                ),
            )
    with LocalHTTPServer(root) as server:
        yield server


def prepare(task: str, server: LocalHTTPServer, genome: Path, out: Path, **spec) -> tuple[pd.DataFrame, BenchmarkInfo]:
    prepare_long_range(
        task,
        {"suite": "long_range", "task": task, "length": LENGTH, "url": server.url(""), **spec},
        out / task,
        genome,
        out / "cache",
    )
    return read_benchmark(out / task)


def csv(server: LocalHTTPServer, path: str) -> pd.DataFrame:
    return pd.read_csv(server.root / path)


# -- the suite ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("task", "kind", "outputs", "metric"),
    [
        ("variant_effect_causal_eqtl", "classification", 2, "auroc"),
        ("variant_effect_pathogenic_clinvar", "classification", 2, "auroc"),
        ("bulk_rna_expression", "regression", 3, "r2"),
        ("chromatin_features_histone_marks", "multilabel", 4, "auprc"),
        ("chromatin_features_dna_accessibility", "multilabel", 6, "auprc"),
        ("regulatory_element_promoter", "classification", 2, "auprc"),
        ("regulatory_element_enhancer", "classification", 2, "auroc"),
    ],
)
def test_every_task_is_materialised_with_the_published_metric(
    lrb_server, genome: Path, tmp_path: Path, task: str, kind: str, outputs: int, metric: str
) -> None:
    frame, info = prepare(task, lrb_server, genome, tmp_path)
    assert (info.task, info.num_outputs, info.metric, info.suite) == (kind, outputs, metric, "long_range")
    assert len(frame) == 40 and set(frame["split"]) == {"train", "test"}  # the two windows past an end dropped
    assert "2 whose window passes a chromosome end" in info.notes
    assert frame["sequence"].str.len().eq(LENGTH).all()
    assert {"chrom", "start", "end", "strand"} <= set(frame.columns)


def test_variant_windows_match_the_loading_script_base_by_base(
    lrb_server, genome: Path, chromosomes: dict[str, str], tmp_path: Path
) -> None:
    frame, _ = prepare("variant_effect_causal_eqtl", lrb_server, genome, tmp_path)
    records = csv(lrb_server, "variant_effect_causal_eqtl/All_Tissues.csv")
    expected = [lrb_window(chromosomes[c], p - 1, LENGTH) for c, p in zip(records["CHROM"], records["POS"])]
    kept = [i for i, w in enumerate(expected) if w is not None]
    assert frame["sequence"].tolist() == [expected[i] for i in kept]
    for row, i in enumerate(kept):
        ref, alt = frame["sequence"][row], frame["alt_sequence"][row]
        assert frame["variant_position"][row] == LENGTH // 2
        assert ref[LENGTH // 2] == records["REF"][i]  # the genome's base is the record's reference allele
        assert alt == ref[: LENGTH // 2] + records["ALT"][i] + ref[LENGTH // 2 + 1 :]
        assert frame["label"][row] == records["label"][i]


def test_minus_strand_genes_are_reverse_complemented(
    lrb_server, genome: Path, chromosomes: dict[str, str], tmp_path: Path
) -> None:
    frame, info = prepare("bulk_rna_expression", lrb_server, genome, tmp_path)
    records = csv(lrb_server, "bulk_rna_expression/gene_coordinates.csv")
    targets = csv(lrb_server, "bulk_rna_expression/rna_expression_values.csv")
    assert info.label_names == ["Adipose", "Brain", "Liver"]
    expected = [
        lrb_window(chromosomes[c], p - 1, LENGTH, minus=s == "-")
        for c, p, s in zip(records["chrom"], records["CAGE_representative_TSS"], records["strand"])
    ]
    kept = [i for i, w in enumerate(expected) if w is not None]
    assert frame["sequence"].tolist() == [expected[i] for i in kept]
    assert (frame["strand"] == "-").sum() > 5
    np.testing.assert_allclose(np.stack(frame["label"]), targets.to_numpy()[kept])


def test_interval_windows_are_centred_on_the_element(
    lrb_server, genome: Path, chromosomes: dict[str, str], tmp_path: Path
) -> None:
    for task, element in (("regulatory_element_promoter", "promoter"), ("regulatory_element_enhancer", "enhancer")):
        frame, _ = prepare(task, lrb_server, genome, tmp_path)
        records = csv(lrb_server, f"regulatory_elements/{element}_dataset.csv")
        for (_, row), sequence in zip(frame.iterrows(), frame["sequence"]):
            i = int(row["id"].rsplit("_", 1)[1]) - 1  # ids number the records from 1
            start, end = records["START"][i] - 1, records["STOP"][i] - 1
            script = lrb_window(chromosomes[row["chrom"]], start, LENGTH, end=end)
            if (LENGTH - (end - start)) % 2 == 0:
                assert sequence == script  # the promoter's 200 bp: exactly the script's window
            else:
                assert len(script) == LENGTH - 1 and sequence[1:] == script  # the script's is one base short
            middle = start + (end - start) // 2  # the element's midpoint sits at index LENGTH // 2
            assert sequence[LENGTH // 2] == standardize(chromosomes[row["chrom"]][middle])


def test_labels_subset_files_and_errors(lrb_server, genome: Path, tmp_path: Path) -> None:
    frame, info = prepare("chromatin_features_histone_marks", lrb_server, genome, tmp_path, subset=True)
    records = csv(lrb_server, "chromatin_features/histones_and_dnase_subset.csv")
    assert len(frame) == len(records) and info.label_names == [f"histones_{i}" for i in range(4)]
    assert [v.tolist() for v in frame["label"]] == [json.loads(text) for text in records["HISTONES"]]
    with pytest.raises(ValueError, match="has hg19 coordinates, but its genome is hg38"):
        prepare_long_range(
            "b",
            {"suite": "long_range", "task": "bulk_rna_expression"},
            tmp_path / "x",
            genome,
            tmp_path / "cache",
            genome_spec={"source": "hg38"},
        )
    with pytest.raises(ValueError, match="not a Genomics Long-Range Benchmark task"):
        prepare_long_range(
            "b", {"suite": "long_range", "task": "cage_prediction"}, tmp_path / "x", genome, tmp_path / "cache"
        )
    with pytest.raises(ValueError, match="has no subset files"):
        prepare("variant_effect_causal_eqtl", lrb_server, genome, tmp_path, subset=True)


def test_registry_pins_a_revision_and_covers_the_study() -> None:
    registry = load_registry("long_range")
    assert registry["revision"] in registry["base_url"] and len(registry["revision"]) == 40
    metrics = {task: entry["metric"] for task, entry in registry["tasks"].items()}
    assert (
        metrics
        | {
            "bulk_rna_expression": "r2",
            "variant_effect_causal_eqtl": "auroc",
            "variant_effect_pathogenic_clinvar": "auroc",
            "chromatin_features_histone_marks": "auprc",
            "regulatory_element_promoter": "auprc",
            "regulatory_element_enhancer": "auroc",
        }
        == metrics
    )


# -- the format extension -------------------------------------------------------------------------------------------
def test_resizing_recuts_around_the_same_core(
    lrb_server, genome: Path, chromosomes: dict[str, str], tmp_path: Path
) -> None:
    """At 3x the length the old window is the middle of the new one, N beyond the chromosome ends, the variant
    moved with it; on the minus strand too."""
    for task in ("variant_effect_pathogenic_clinvar", "bulk_rna_expression"):
        frame, _ = prepare(task, lrb_server, genome, tmp_path)
        long = resize_examples(frame, genome, 3 * LENGTH)
        for (_, old), (_, new) in zip(frame.iterrows(), long.iterrows()):
            assert new["sequence"][LENGTH : 2 * LENGTH] == old["sequence"]
            centre = old["start"]  # single-base cores
            lo = centre - (3 * LENGTH) // 2
            forward = "".join(
                chromosomes[old["chrom"]][i] if 0 <= i < len(chromosomes[old["chrom"]]) else "N"
                for i in range(lo, lo + 3 * LENGTH)
            )
            forward = standardize(forward)
            assert new["sequence"] == (forward.translate(COMPLEMENT)[::-1] if old["strand"] == "-" else forward)
            if "alt_sequence" in frame.columns:
                assert new["variant_position"] == old["variant_position"] + LENGTH
                assert new["alt_sequence"][new["variant_position"]] == old["alt_sequence"][old["variant_position"]]
        assert resize_examples(frame, genome, LENGTH).equals(frame)


def test_format_rejects_inconsistent_extension_columns(tmp_path: Path) -> None:
    base = {"sequence": ["ACGTACGT", "ACGTACGT"], "label": [0, 1], "split": ["train", "test"]}
    info = BenchmarkInfo("b", "classification", 2, "auroc")
    bad_alt = pd.DataFrame({**base, "alt_sequence": ["ACCTACGA", "ACGTACGT"], "variant_position": [2, 2]})
    with pytest.raises(BenchmarkFormatError, match="row 1: alt_sequence must differ from sequence at most at"):
        write_benchmark(tmp_path, bad_alt, info)
    with pytest.raises(BenchmarkFormatError, match="come together"):
        write_benchmark(tmp_path, pd.DataFrame({**base, "alt_sequence": base["sequence"]}), info)
    loci = {"chrom": ["chr1", "chr1"], "start": [10, 20], "end": [18, 28], "strand": ["+", "-"]}
    with pytest.raises(BenchmarkFormatError, match="row 2: core must be a string of end - start = 8 bases"):
        write_benchmark(tmp_path, pd.DataFrame({**base, **loci, "core": ["ACGTACGT", "ACG"]}), info)
    with pytest.raises(BenchmarkFormatError, match=r"row 1: locus 10-18 \(\*\) needs"):
        write_benchmark(tmp_path, pd.DataFrame({**base, **loci, "strand": ["*", "+"]}), info)
    multi = pd.DataFrame({**base, "label": [[0.5, 1.0], [1.5]]})
    with pytest.raises(BenchmarkFormatError, match="row 2: regression target must be 2 finite numbers"):
        write_benchmark(tmp_path, multi, BenchmarkInfo("b", "regression", 2, "r2"))


# -- the study's models -------------------------------------------------------------------------------------------
def test_study_presets_are_about_50m_parameters() -> None:
    config = yaml.safe_load((REPO / "config/long_range.yaml").read_text())
    counts = {}
    with torch.device("meta"):
        for name, spec in config["models"].items():
            model = build_model(spec["arch"], spec.get("preset"), **spec.get("config", {}))
            assert not model.causal  # all three bidirectional, pretrained with MLM
            counts[name] = model.num_parameters()
    assert len(counts) == 3 and all(48e6 < c < 51e6 for c in counts.values()), counts


def test_bidirectional_hawk_trains_with_the_masked_objective(tmp_path: Path) -> None:
    spec = DemoGenomeSpec(
        chromosome_lengths=(80_000, 40_000, 40_000),
        telomere_gap=500,
        centromere_gap=1_000,
        short_gaps=1,
        isochore_mean_length=20_000,
    )
    demo_shards(tmp_path, spec)
    config = PretrainConfig.from_dict(
        {
            "seq_len": 128,
            "batch_size": 8,
            "lr": 3e-3,
            "warmup_steps": 2,
            "max_steps": 12,
            "eval_every": 12,
            "eval_windows": 4,
            "log_every": 1,
            "threads": 1,
        }
    )
    summary = pretrain(
        "hawk",
        {"d_model": 32, "n_layer": 2, "num_heads": 2, "bidirectional": True},
        tmp_path / "shards",
        tmp_path / "out",
        config,
        progress=False,
    )
    assert summary["objective"] == "masked"
    losses = [
        json.loads(line)["loss"]
        for line in (tmp_path / "out/metrics.jsonl").read_text().splitlines()
        if json.loads(line)["kind"] == "train"
    ]
    assert np.isfinite(losses).all() and np.mean(losses[-3:]) < np.mean(losses[:3])
