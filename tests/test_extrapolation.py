"""Zero-shot length extrapolation: saved fine-tuned models re-scored on their test split re-cut at multiples of
the training length, and the CPU-sized study (config/long_range_demo.yaml) run by the workflow."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, snakemake

from longdna import vocab
from longdna.data.benchmarks.demo import make_demo_benchmark
from longdna.data.benchmarks.format import BenchmarkInfo, read_benchmark, resize_examples, write_benchmark
from longdna.data.genome.demo import DemoGenomeSpec, generate_demo_genome
from longdna.eval.extrapolation import _pool_mask, classifier_scores, evaluate_extrapolation
from longdna.models import SequenceClassifier, build_model, save_pretrained
from longdna.settings import ExtrapolationConfig, FinetuneConfig
from longdna.train.finetune import finetune
from longdna.train.finetuned import load_finetuned

GENOME = DemoGenomeSpec(
    chromosome_lengths=(60_000, 50_000, 50_000),
    isochore_mean_length=10_000,
    telomere_gap=500,
    centromere_gap=1_000,
    short_gaps=1,
)
DEMO_CONFIG = REPO / "config" / "long_range_demo.yaml"


@pytest.fixture(scope="module")
def centred(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(genome, benchmark directory) of the demo's centred task at 128 bp."""
    root = tmp_path_factory.mktemp("centred")
    generate_demo_genome(root / "genome.fa.gz", GENOME)
    make_demo_benchmark(
        "centred",
        "centred",
        root / "genome.fa.gz",
        root / "bench",
        ["chr1"],
        ["chr2", "chr3"],
        GENOME,
        length=128,
        n_train=96,
        n_test=24,
    )
    return root / "genome.fa.gz", root / "bench"


def fine_tuned(tmp_path: Path, benchmark: Path, arch: str, config: dict, **settings) -> tuple[Path, dict]:
    torch.manual_seed(0)
    save_pretrained(build_model(arch, **config), tmp_path / "backbone")
    config = FinetuneConfig(epochs=1, batch_size=16, save_model=True, **settings)
    summary = finetune(benchmark, tmp_path / "run", config, seed=1, backbone_dir=tmp_path / "backbone", progress=False)
    return tmp_path / "run", summary


def test_demo_examples_recut_around_their_implanted_core(centred: tuple[Path, Path]) -> None:
    genome, benchmark = centred
    frame, _ = read_benchmark(benchmark)
    assert (frame["core"] == frame["sequence"]).all() and (frame["end"] - frame["start"] == 128).all()
    long = resize_examples(frame, genome, 512)
    assert all(new[192:320] == old for new, old in zip(long["sequence"], frame["sequence"]))


@pytest.mark.parametrize("rc_conjoin", [False, True])
def test_scores_at_the_training_length_are_the_fine_tuned_predictions(
    tmp_path: Path, centred: tuple[Path, Path], rc_conjoin: bool
) -> None:
    genome, benchmark = centred
    run, summary = fine_tuned(
        tmp_path, benchmark, "hawk", dict(d_model=16, n_layer=1, num_heads=2, bidirectional=True), rc_conjoin=rc_conjoin
    )
    table = evaluate_extrapolation(
        run,
        benchmark,
        genome,
        ExtrapolationConfig(multiples=[1, 2]),
        tmp_path / "x.csv",
        {"benchmark": "centred", "model": "hawk", "seed": 1},
        progress=False,
    )
    at_one = table.loc[table["multiple"] == 1].set_index("metric")["value"].to_dict()
    assert at_one == pytest.approx(summary["metrics"]["test"], abs=1e-12)
    assert set(table["length"]) == {128, 256} and set(table["interpolation"]) == {"none"}
    assert len(table) == 2 * len(summary["metrics"]["test"]) and (table["n_examples"] == 24).all()
    assert pd.read_csv(tmp_path / "x.csv").equals(table)


def test_transformer_is_also_scored_with_position_interpolation(tmp_path: Path, centred: tuple[Path, Path]) -> None:
    genome, benchmark = centred
    run, _ = fine_tuned(tmp_path, benchmark, "transformer", dict(d_model=16, n_layer=1, n_heads=2, causal=False))
    config = ExtrapolationConfig(multiples=[1, 2, 4], max_examples=10)
    table = evaluate_extrapolation(
        run,
        benchmark,
        genome,
        config,
        tmp_path / "x.csv",
        {"benchmark": "centred", "model": "t", "seed": 1},
        progress=False,
    )
    accuracy = table.loc[table["metric"] == "accuracy"]
    assert list(zip(accuracy["multiple"], accuracy["interpolation"])) == [
        (1.0, "none"),
        (2.0, "none"),
        (2.0, "position"),
        (4.0, "none"),
        (4.0, "position"),
    ]
    assert (table["n_examples"] == 10).all() and (table["arch"] == "transformer").all()
    model, _ = load_finetuned(run, rope_scaling=4.0)
    assert model.backbone.config.rope_scaling == 4.0


def test_multi_output_regression_round_trips_through_the_saved_model(
    tmp_path: Path, centred: tuple[Path, Path]
) -> None:
    """Targets are standardised per output for training; the saved model reports them in their own units."""
    genome, benchmark = centred
    frame, _ = read_benchmark(benchmark)
    gc = frame["sequence"].map(lambda s: (s.count("G") + s.count("C")) / len(s))
    frame["label"] = [np.array([10 * g, -3 + g]) for g in gc]
    write_benchmark(tmp_path / "regression", frame, BenchmarkInfo("gc", "regression", 2, "r2", label_names=["a", "b"]))
    run, summary = fine_tuned(tmp_path, tmp_path / "regression", "hawk", dict(d_model=16, n_layer=1, num_heads=2))
    table = evaluate_extrapolation(
        run,
        tmp_path / "regression",
        genome,
        ExtrapolationConfig(multiples=[1]),
        tmp_path / "x.csv",
        {"benchmark": "gc", "model": "h", "seed": 1},
        progress=False,
    )
    # float32 forward passes in other batches/thread splits: equal to float32 precision, not bit for bit
    assert table.set_index("metric")["value"].to_dict() == pytest.approx(summary["metrics"]["test"], rel=1e-6)
    meta = json.loads((run / "model.json").read_text())
    shift, scale = meta["target_shift"], meta["target_scale"]
    assert shift[1] == pytest.approx(shift[0] / 10 - 3) and scale[1] == pytest.approx(scale[0] / 10)  # per output


def test_window_pooling_reads_the_training_bases_and_chunking_changes_nothing() -> None:
    torch.manual_seed(0)
    model = (
        SequenceClassifier(
            build_model("hawk", d_model=16, n_layer=2, num_heads=2, bidirectional=True, scan_chunk_size=8),
            2,
            rc_conjoin=True,
        )
        .double()
        .eval()
    )
    ids = torch.randint(vocab.A, vocab.T + 1, (3, 40))
    full = torch.ones(3, 40, dtype=torch.bool)
    with torch.no_grad():
        torch.testing.assert_close(classifier_scores(model, ids, full, None), model(ids, full))
    frame = pd.DataFrame({"strand": ["+", "-", "+"]})
    mask = _pool_mask(frame, 40, 10, "window", torch.device("cpu"))
    assert mask[0].nonzero().squeeze().tolist() == list(range(15, 25))
    assert mask[1].nonzero().squeeze().tolist() == list(range(15, 25))  # L - 15 - 10 = 15: symmetric here
    odd = _pool_mask(frame, 41, 10, "window", torch.device("cpu"))
    assert odd[0].nonzero().squeeze().tolist() == list(range(15, 25))  # midpoint at 20 = 41 // 2 ...
    assert odd[1].nonzero().squeeze().tolist() == list(range(16, 26))  # ... at 40 - 20 = 20 on the minus strand
    assert _pool_mask(frame, 40, 10, "full", torch.device("cpu")).all()
    torch.testing.assert_close(
        classifier_scores(model, ids, mask, 7), classifier_scores(model, ids, mask, None), rtol=0, atol=1e-10
    )


def test_extrapolation_needs_loci(tmp_path: Path, centred: tuple[Path, Path]) -> None:
    genome, benchmark = centred
    frame, info = read_benchmark(benchmark)
    write_benchmark(tmp_path / "plain", frame[["sequence", "label", "split"]], info)
    with pytest.raises(ValueError, match="no locus columns"):
        evaluate_extrapolation(tmp_path, tmp_path / "plain", genome, ExtrapolationConfig(), tmp_path / "x.csv", {})


@pytest.mark.slow
def test_demo_study_produces_the_extrapolation_table_and_plot(tmp_path: Path) -> None:
    """config/long_range_demo.yaml through the workflow: one row per model x length (the Transformer also per
    length beyond 1x with position interpolation), the 1x row equal to the fine-tuning test metric."""
    shutil.copy(DEMO_CONFIG, tmp_path / "config.yaml")
    snakemake(tmp_path, configfile=tmp_path / "config.yaml")
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    multiples = config["evaluate"]["extrapolation"]["multiples"]
    models = config["finetune"]["models"]
    out = tmp_path / "results/evaluation"
    table = pd.read_csv(out / "length_extrapolation.csv")
    assert list(table.columns) == [
        "benchmark",
        "model",
        "arch",
        "multiple",
        "length",
        "interpolation",
        "metric",
        "mean",
        "sd",
        "n_seeds",
    ]
    expected = {(m, float(x), "none") for m in models for x in multiples}
    expected |= {("transformer", float(x), "position") for x in multiples if x != 1}
    assert len(table) == len(expected)
    assert set(zip(table["model"], table["multiple"], table["interpolation"])) == expected
    assert (table["metric"] == "accuracy").all() and (table["n_seeds"] == len(config["finetune"]["seeds"])).all()
    summary = pd.read_csv(out / "summary.csv").set_index(["model", "metric"])["mean"]
    for _, row in table.loc[table["multiple"] == 1].iterrows():
        assert row["mean"] == pytest.approx(summary[(row["model"], "accuracy")])
    assert (out / "plots/length_extrapolation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for model in models:
        run = tmp_path / f"results/finetune/demo_centred/{model}/seed1"
        assert (run / "model.safetensors").stat().st_size > 0 and (run / "model.json").exists()
