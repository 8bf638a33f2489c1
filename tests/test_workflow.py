"""The real workflow, run end to end on the tiny CI configuration (session fixture ``ci_workflow``), and dry
runs of it."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pysam
import pytest
import yaml
from conftest import CI_CONFIG, snakemake

from longdna import vocab
from longdna.data.tokens.shards import GenomeShards, verify_shards

slow = pytest.mark.slow


def job_counts(stdout: str) -> dict[str, int]:
    """Rule -> job count from Snakemake's dry-run 'Job stats' table."""
    block = stdout.split("Job stats:", 1)[1] if "Job stats:" in stdout else ""
    counts = {}
    for line in block.splitlines()[3:]:
        match = re.match(r"^(\S+)\s+(\d+)$", line.strip())
        if not match or match.group(1) == "total":
            if counts:
                break
            continue
        counts[match.group(1)] = int(match.group(2))
    return counts


def with_config_change(workdir: Path, change) -> Path:
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    change(config)
    path = workdir / "changed.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))  # key order is part of Snakemake's params
    return path


@slow
def test_shards_decode_to_the_genome(ci_workflow: Path) -> None:
    fasta = ci_workflow / "results/genome/demo/genome.fa.gz"
    shard_dir = ci_workflow / "results/tokens/demo"
    assert verify_shards(shard_dir, fasta) == []
    shards = GenomeShards(shard_dir)
    with pysam.FastaFile(str(fasta)) as reader:
        for chrom in shards.chroms:
            assert vocab.decode(shards.tokens(chrom)) == reader.fetch(chrom).upper()
            lower = np.frombuffer(reader.fetch(chrom).encode(), dtype=np.uint8) >= ord("a")
            assert np.array_equal(shards.soft_mask(chrom), lower)
    assert set(shards.regions_table["split"]) == {"train", "valid", "test"}


@slow
def test_pretraining_loss_went_down(ci_workflow: Path) -> None:
    rows = [
        json.loads(line) for line in (ci_workflow / "results/pretrain/hyena/metrics.jsonl").read_text().splitlines()
    ]
    train = [r["loss"] for r in rows if r["kind"] == "train"]
    valid = [r["bits_per_base"] for r in rows if r["kind"] == "valid"]
    assert np.mean(train[-2:]) < train[0] - 0.05
    assert valid[-1] < valid[0]
    summary = json.loads((ci_workflow / "results/pretrain/hyena/summary.json").read_text())
    assert summary["valid"]["bits_per_base"] < 2.0  # learned more than base composition


@slow
def test_metrics_lie_in_their_ranges(ci_workflow: Path) -> None:
    metrics = pd.read_csv(ci_workflow / "results/evaluation/metrics.csv")
    assert list(metrics.columns) == ["benchmark", "model", "seed", "split", "metric", "value"]
    assert np.isfinite(metrics["value"]).all()
    bounded = metrics["metric"].isin(["accuracy", "f1", "f1_macro", "auroc", "auprc"])
    assert metrics.loc[bounded, "value"].between(0, 1).all()
    assert metrics.loc[metrics["metric"] == "mcc", "value"].between(-1, 1).all()
    runs = metrics.groupby(["benchmark", "model"])["seed"].nunique()
    baselines = {(b, m): 2 for b in ("long_range", "motif") for m in ("majority", "kmer_lr", "onehot_lr")}
    assert runs.to_dict() == {
        ("long_range", "hyena"): 2,
        ("motif", "hyena"): 2,
        ("motif", "hyena_scratch"): 2,
        **baselines,
    }
    table = (ci_workflow / "results/evaluation/table.md").read_text()
    for name in (
        "motif",
        "long_range",
        "hyena_scratch",
        "±",
        "| mcc | f1_macro |",
        "kmer_lr (baseline)",
        "onehot_lr (baseline)",
        "| motif | accuracy | majority (baseline) | 0.500 ± 0.000",
        "two-way bootstrap",
    ):
        assert name in table


@slow
def test_rerun_has_nothing_to_do(ci_workflow: Path) -> None:
    result = snakemake(ci_workflow, "-n", configfile=ci_workflow / "config.yaml")
    assert "Nothing to be done" in result.stdout + result.stderr


@slow
def test_finetune_change_reruns_only_finetune_and_evaluate(ci_workflow: Path) -> None:
    changed = with_config_change(ci_workflow, lambda c: c["finetune"]["settings"].update(lr=0.002))
    counts = job_counts(snakemake(ci_workflow, "-n", configfile=changed).stdout)
    assert counts == {"finetune_model": 6, "evaluate": 1, "all": 1}


@slow
def test_model_change_reruns_from_pretrain(ci_workflow: Path) -> None:
    changed = with_config_change(ci_workflow, lambda c: c["models"]["hyena"]["config"].update(d_inner=48))
    counts = job_counts(snakemake(ci_workflow, "-n", configfile=changed).stdout)
    assert counts == {"pretrain_model": 1, "finetune_model": 6, "evaluate": 1, "all": 1}


@slow
def test_forcerun_redoes_one_stage(ci_workflow: Path) -> None:
    counts = job_counts(
        snakemake(ci_workflow, "-n", "--forcerun", "finetune_model", configfile=ci_workflow / "config.yaml").stdout
    )
    assert counts == {"finetune_model": 6, "evaluate": 1, "all": 1}
    # the command the warning for `--forcerun finetune` gives (test_forcerun_of_a_stage_name_warns)
    counts = job_counts(
        snakemake(
            ci_workflow,
            "-n",
            "finetune",
            "--forcerun",
            "finetune_model",
            "variant_effect",
            configfile=ci_workflow / "config.yaml",
        ).stdout
    )
    assert counts == {"finetune_model": 6, "finetune": 1}


def test_forcerun_of_a_stage_name_warns(tmp_path: Path) -> None:
    """`--forcerun finetune` forces only the target rule `finetune` (Snakemake forces the named rules and what
    depends on them, never what they depend on): the run says so and gives the command that redoes the stage."""
    result = snakemake(tmp_path, "-n", "--forcerun", "finetune")
    output = result.stdout + result.stderr  # a dry run logs to stdout
    assert "--forcerun finetune forces only the stage's target rule" in output
    assert "snakemake finetune --forcerun finetune_model variant_effect" in output


def test_local_dry_run_lists_no_slurm_resources(tmp_path: Path) -> None:
    """Wall times, CPUs per task and sbatch flags are declared for SLURM jobs only (workflow/rules/resources.smk);
    tests/test_slurm.py checks that SLURM gets them."""
    out = snakemake(tmp_path, "-n").stdout
    assert "rule pretrain_model:" in out and "resources: " in out and "mem_mb=" in out
    assert "slurm_" not in out and "runtime=" not in out and "cpus_per_task" not in out


@slow
def test_data_jobs_log_what_they_did(ci_workflow: Path) -> None:
    logs = {
        path.relative_to(ci_workflow / "logs").as_posix(): path.read_text()
        for stage in ("genome", "tokenize", "benchmarks")
        for path in (ci_workflow / "logs" / stage).rglob("*.log")
    }
    assert set(logs) == {
        "genome/demo.log",
        "tokenize/demo/manifest.log",
        "benchmarks/motif.log",
        "benchmarks/long_range.log",
        *(f"tokenize/demo/chr{i}.log" for i in range(1, 5)),
    }
    for name, text in logs.items():
        assert re.search(r"^\S+ \S+ wrote results/\S+ \([\d.]+ k?B\)$", text, re.MULTILINE), (name, text)
        assert re.search(r"done in [\d.]+ s$", text, re.MULTILINE), (name, text)
    assert "4 sequences, 590000 bases" in logs["genome/demo.log"]
    assert "train: 160 rows, 32000 bases, longest 200" in logs["benchmarks/motif.log"]


@slow
def test_report_opens_on_the_results_table(ci_workflow: Path, tmp_path: Path) -> None:
    snakemake(ci_workflow, "--report", str(tmp_path / "report.html"), configfile=ci_workflow / "config.yaml")
    page = landing_page(tmp_path / "report.html")
    summary = pd.read_csv(ci_workflow / "results/evaluation/summary.csv").set_index(["benchmark", "model", "metric"])
    row = summary.loc[("motif", "hyena", "accuracy")]
    assert page.index("Demo tasks: test metric") < page.index("Workflow")
    assert f"{row['mean']:.3f} ± {row['sd']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]" in page


@slow
def test_report_of_a_partial_run(tmp_path: Path) -> None:
    shutil.copy(CI_CONFIG, tmp_path / "config.yaml")
    snakemake(tmp_path, "genome", configfile=tmp_path / "config.yaml")
    snakemake(tmp_path, "--report", str(tmp_path / "report.html"), configfile=tmp_path / "config.yaml")
    assert "No results table yet" in landing_page(tmp_path / "report.html")


def landing_page(report: Path) -> str:
    """The HTML of a Snakemake report's landing page (workflow/report/workflow.rst rendered)."""
    return json.loads(re.search(r'var workflow_desc = (".*?");\n', report.read_text()).group(1))


@slow
def test_stage_targets(tmp_path: Path) -> None:
    shutil.copy(CI_CONFIG, tmp_path / "config.yaml")
    counts = job_counts(snakemake(tmp_path, "-n", "pretrain", configfile=tmp_path / "config.yaml").stdout)
    assert set(counts) == {"prepare_genome", "write_shard_manifest", "pretrain_model", "pretrain"}
    counts = job_counts(snakemake(tmp_path, "-n", "genome", configfile=tmp_path / "config.yaml").stdout)
    assert set(counts) == {"prepare_genome", "genome"}


@slow
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["pretrain"].update(lrr=0.1), "config error at pretrain.lrr: unknown key"),
        (lambda c: c["pretrain"].update(lr="fast"), "config error at pretrain.lr: 'fast' is not of type 'number'"),
        (
            lambda c: c["finetune"]["models"]["hyena"].update(backbone="nope"),
            "config error at finetune.models.hyena.backbone: 'nope' is not a key of models",
        ),
        (
            lambda c: c["models"]["hyena"]["config"].update(d_modle=3),
            "config error at models.hyena.config: hyenadna config: unknown config key(s) ['d_modle']",
        ),
        (
            lambda c: c["genomes"]["demo"]["splits"].update(test=["chrZ"]),
            "config error at genomes.demo.splits.test: ['chrZ'] not in the genome",
        ),
    ],
)
def test_invalid_config_names_the_key(tmp_path: Path, change, message: str) -> None:
    config = yaml.safe_load(CI_CONFIG.read_text())
    change(config)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake(tmp_path, "-n", configfile=tmp_path / "bad.yaml", check=False)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()
