"""Every stage's file format (docs/formats.md), checked on a real workflow run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from longdna.data.benchmarks.format import read_benchmark
from longdna.models import load_pretrained

pytestmark = pytest.mark.slow


def test_genome_format(ci_workflow: Path) -> None:
    genome = ci_workflow / "results/genome/demo"
    fasta = genome / "genome.fa.gz"
    assert fasta.read_bytes()[:4] == b"\x1f\x8b\x08\x04"  # gzip with the BGZF extra field
    names = [line.split("\t")[0] for line in (genome / "genome.fa.gz.fai").read_text().splitlines()]
    assert names == ["chr1", "chr2", "chr3", "chr4"]
    assert (genome / "genome.fa.gz.gzi").stat().st_size > 0


def test_token_format(ci_workflow: Path) -> None:
    shards = ci_workflow / "results/tokens/demo"
    manifest = pd.read_parquet(shards / "manifest.parquet")
    assert list(manifest.columns) == [
        "chrom",
        "length",
        "offset",
        "n_fraction",
        "softmasked_fraction",
        "split",
        "sha256",
        "file",
        "mask_file",
    ]
    assert manifest["offset"].tolist() == [0, *np.cumsum(manifest["length"])[:-1].tolist()]
    assert manifest.set_index("chrom")["split"].to_dict() == {
        "chr1": "train",
        "chr2": "train",
        "chr3": "valid",
        "chr4": "test",
    }
    for row in manifest.itertuples():
        tokens = np.load(shards / row.file)
        assert tokens.dtype == np.uint8 and tokens.shape == (row.length,) and tokens.max() <= 11
        assert np.load(shards / row.mask_file).shape == ((row.length + 7) // 8,)
    regions = pd.read_parquet(shards / "regions.parquet")
    assert list(regions.columns) == ["chrom", "start", "end", "split"]


def test_benchmark_format(ci_workflow: Path) -> None:
    for name in ("motif", "long_range"):
        frame, info = read_benchmark(ci_workflow / "results/benchmarks" / name)
        assert {"sequence", "label", "split"} <= set(frame.columns)
        assert info.task == "classification" and info.num_outputs == 2 and info.metric == "accuracy"
        lengths = frame["sequence"].str.len()
        assert info.sizes["train"] == {
            "rows": int((frame["split"] == "train").sum()),
            "bases": int(lengths[frame["split"] == "train"].sum()),
            "max_length": int(lengths.max()),
        }


def test_pretrain_format(ci_workflow: Path) -> None:
    out = ci_workflow / "results/pretrain/hyena"
    meta = json.loads((out / "config.json").read_text())
    assert meta["arch"] == "hyenadna" and meta["format"] == 1 and meta["pretrain"]["objective"] == "causal"
    assert json.loads((out / "tokenizer.json").read_text())["tokens"]["N"] == 11
    model = load_pretrained(out)
    assert model.num_parameters() == meta["num_parameters"]
    assert model(torch.randint(7, 12, (1, 64))).shape == (1, 64, 12)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    assert {"step", "tokens_seen", "lr", "loss", "grad_norm", "tokens_per_s", "memory_mb"} <= set(train[0])
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["test_by_length"]) == {"256", "512", "1024"}
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_finetune_format(ci_workflow: Path) -> None:
    run = ci_workflow / "results/finetune/motif/hyena/seed1"
    summary = json.loads((run / "metrics.json").read_text())
    assert {"benchmark", "model", "seed", "task", "metric", "metrics", "config"} <= set(summary)
    assert set(summary["metrics"]) == {"valid", "test"}
    predictions = pd.read_parquet(run / "predictions.parquet")
    assert list(predictions.columns) == ["split", "row", "label", "prediction", "scores"]
    frame, _ = read_benchmark(ci_workflow / "results/benchmarks/motif")
    test = predictions.loc[predictions["split"] == "test"]
    assert sorted(test["row"]) == np.flatnonzero(frame["split"] == "test").tolist()
    assert np.allclose(np.stack(test["scores"]).sum(1), 1.0)
    history = pd.read_csv(run / "history.csv")
    assert {"epoch", "train_loss", "valid_accuracy"} <= set(history.columns)


def test_evaluation_format(ci_workflow: Path) -> None:
    out = ci_workflow / "results/evaluation"
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.columns) == [
        "benchmark",
        "model",
        "metric",
        "mean",
        "sd",
        "n_seeds",
        "ci_low",
        "ci_high",
        "kind",
        "n_one_class",
        "n_not_above_majority",
        "below_best_baseline",
    ]
    assert (summary["ci_low"] <= summary["ci_high"]).all()
    assert set(summary.loc[summary["kind"] == "baseline", "model"]) == {"majority", "kmer_lr", "onehot_lr"}
    for baseline in ("majority", "kmer_lr", "onehot_lr"):
        run = ci_workflow / "results/baselines/motif" / baseline / "seed1"
        assert json.loads((run / "metrics.json").read_text())["protocol"] == "classical_baseline"
        assert list(pd.read_parquet(run / "predictions.parquet").columns) == [
            "split",
            "row",
            "label",
            "prediction",
            "scores",
        ]
    extrapolation = pd.read_csv(out / "extrapolation.csv")
    assert extrapolation["multiple"].tolist() == [1.0, 2.0, 4.0]
    for plot in ("benchmarks", "extrapolation", "pretraining"):
        assert (out / "plots" / f"{plot}.png").stat().st_size > 1000
