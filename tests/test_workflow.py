"""The real workflow, run end to end on the tiny CI configuration (session fixture ``ci_workflow``)."""

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
from longdna.data.shards import GenomeShards, verify_shards

pytestmark = pytest.mark.slow


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


def test_pretraining_loss_went_down(ci_workflow: Path) -> None:
    rows = [json.loads(line) for line in (ci_workflow / "results/pretrain/hyena/metrics.jsonl").read_text().splitlines()]
    train = [r["loss"] for r in rows if r["kind"] == "train"]
    valid = [r["bits_per_base"] for r in rows if r["kind"] == "valid"]
    assert np.mean(train[-2:]) < train[0] - 0.05
    assert valid[-1] < valid[0]
    summary = json.loads((ci_workflow / "results/pretrain/hyena/summary.json").read_text())
    assert summary["valid"]["bits_per_base"] < 2.0  # learned more than base composition


def test_metrics_lie_in_their_ranges(ci_workflow: Path) -> None:
    metrics = pd.read_csv(ci_workflow / "results/evaluation/metrics.csv")
    assert list(metrics.columns) == ["benchmark", "model", "seed", "split", "metric", "value"]
    assert np.isfinite(metrics["value"]).all()
    bounded = metrics["metric"].isin(["accuracy", "f1", "f1_macro", "auroc", "auprc"])
    assert metrics.loc[bounded, "value"].between(0, 1).all()
    assert metrics.loc[metrics["metric"] == "mcc", "value"].between(-1, 1).all()
    runs = metrics.groupby(["benchmark", "model"])["seed"].nunique()
    assert runs.to_dict() == {("long_range", "hyena"): 2, ("motif", "hyena"): 2, ("motif", "hyena_scratch"): 2}
    table = (ci_workflow / "results/evaluation/table.md").read_text()
    for name in ("motif", "long_range", "hyena_scratch", "±"):
        assert name in table


def test_rerun_has_nothing_to_do(ci_workflow: Path) -> None:
    result = snakemake(ci_workflow, "-n", configfile=ci_workflow / "config.yaml")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_finetune_change_reruns_only_finetune_and_evaluate(ci_workflow: Path) -> None:
    changed = with_config_change(ci_workflow, lambda c: c["finetune"]["settings"].update(lr=0.002))
    counts = job_counts(snakemake(ci_workflow, "-n", configfile=changed).stdout)
    assert counts == {"finetune_model": 6, "evaluate": 1, "all": 1}


def test_model_change_reruns_from_pretrain(ci_workflow: Path) -> None:
    changed = with_config_change(ci_workflow, lambda c: c["models"]["hyena"]["config"].update(d_inner=48))
    counts = job_counts(snakemake(ci_workflow, "-n", configfile=changed).stdout)
    assert counts == {"pretrain_model": 1, "finetune_model": 6, "evaluate": 1, "all": 1}


def test_forcerun_redoes_one_stage(ci_workflow: Path) -> None:
    counts = job_counts(snakemake(ci_workflow, "-n", "--forcerun", "finetune_model",
                                  configfile=ci_workflow / "config.yaml").stdout)
    assert counts == {"finetune_model": 6, "evaluate": 1, "all": 1}


def test_stage_targets(tmp_path: Path) -> None:
    shutil.copy(CI_CONFIG, tmp_path / "config.yaml")
    counts = job_counts(snakemake(tmp_path, "-n", "pretrain", configfile=tmp_path / "config.yaml").stdout)
    assert set(counts) == {"prepare_genome", "write_shard_manifest", "pretrain_model", "pretrain"}
    counts = job_counts(snakemake(tmp_path, "-n", "genome", configfile=tmp_path / "config.yaml").stdout)
    assert set(counts) == {"prepare_genome", "genome"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["pretrain"].update(lrr=0.1), "config error at pretrain.lrr: unknown key"),
        (lambda c: c["pretrain"].update(lr="fast"), "config error at pretrain.lr: 'fast' is not of type 'number'"),
        (lambda c: c["finetune"]["models"]["hyena"].update(backbone="nope"),
         "config error at finetune.models.hyena.backbone: 'nope' is not a key of models"),
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
