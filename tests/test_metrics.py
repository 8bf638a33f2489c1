"""Our metrics against scikit-learn and SciPy on random predictions (ties included); the evaluation's
intervals (two-way bootstrap over seeds and test examples), its flags and its tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn import metrics as sk

from longdna.eval.metrics import compute_metrics
from longdna.eval.report import SUMMARY_COLUMNS, Run, bootstrap_seed_mean, collect_metrics, markdown_table, summarise


def random_classification(rng: np.random.Generator, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, k, n)
    scores = rng.random((n, k)) + np.eye(k)[labels] * rng.random()
    scores = np.round(scores, 1)  # many ties
    return labels, scores / scores.sum(1, keepdims=True)


@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("seed", range(4))
def test_classification_matches_sklearn(k: int, seed: int) -> None:
    labels, scores = random_classification(np.random.default_rng(seed), 257, k)
    ours = compute_metrics("classification", labels, scores, k)
    predictions = scores.argmax(1)
    expected = {
        "accuracy": sk.accuracy_score(labels, predictions),
        "mcc": sk.matthews_corrcoef(labels, predictions),
        "f1_macro": sk.f1_score(labels, predictions, average="macro"),
        "f1": sk.f1_score(labels, predictions) if k == 2 else sk.f1_score(labels, predictions, average="macro"),
        "auroc": sk.roc_auc_score(labels, scores[:, 1])
        if k == 2
        else sk.roc_auc_score(labels, scores, multi_class="ovr", average="macro"),
        "auprc": sk.average_precision_score(labels, scores[:, 1])
        if k == 2
        else np.mean([sk.average_precision_score(labels == j, scores[:, j]) for j in range(k)]),
        **{f"recall_{j}": r for j, r in enumerate(sk.recall_score(labels, predictions, average=None, labels=range(k)))},
    }
    assert set(ours) == set(expected)
    for name, value in expected.items():
        assert ours[name] == pytest.approx(value, abs=1e-12), name


def test_regression_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    targets = rng.normal(size=300)
    predictions = np.round(targets + rng.normal(size=300), 1)
    ours = compute_metrics("regression", targets, predictions, 1)
    assert ours["pearson"] == pytest.approx(stats.pearsonr(targets, predictions)[0], abs=1e-12)
    assert ours["spearman"] == pytest.approx(stats.spearmanr(targets, predictions)[0], abs=1e-12)
    assert ours["r2"] == pytest.approx(sk.r2_score(targets, predictions), abs=1e-12)


def test_multilabel_matches_sklearn() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, (200, 4))
    scores = np.clip(labels * 0.3 + rng.random((200, 4)), 0, 1)
    ours = compute_metrics("multilabel", labels, scores, 4)
    assert ours["auroc"] == pytest.approx(sk.roc_auc_score(labels, scores, average="macro"), abs=1e-12)
    assert ours["auprc"] == pytest.approx(sk.average_precision_score(labels, scores, average="macro"), abs=1e-12)


def test_degenerate_cases() -> None:
    labels = np.array([1, 1, 1, 1])
    scores = np.array([[0.2, 0.8], [0.4, 0.6], [0.3, 0.7], [0.6, 0.4]])
    result = compute_metrics("classification", labels, scores, 2)
    assert result["mcc"] == 0.0  # undefined (one class) -> 0, as scikit-learn
    assert np.isnan(result["auroc"])  # undefined without negatives


def test_recall_of_a_class_without_examples_is_undefined() -> None:
    result = compute_metrics("classification", np.array([0, 0, 1]), np.eye(3)[[0, 1, 1]], 3)
    assert result["recall_0"] == 0.5 and result["recall_1"] == 1.0 and np.isnan(result["recall_2"])


def summary_rows(**rows: dict) -> pd.DataFrame:
    """summary.csv rows of models (no baselines), each ``benchmark=dict(mean, sd, ...)``."""
    defaults = {
        "model": "m",
        "metric": "accuracy",
        "n_seeds": 3,
        "kind": "model",
        "n_one_class": 0,
        "n_not_above_majority": np.nan,
        "below_best_baseline": pd.NA,
    }
    return pd.DataFrame([{**defaults, "benchmark": b, **r} for b, r in rows.items()], columns=SUMMARY_COLUMNS)


def test_table_cells_give_a_spread_only_over_several_seeds() -> None:
    summary = summary_rows(
        a={"mean": 0.9, "sd": 0.02, "ci_low": 0.85, "ci_high": 0.95},
        b={"mean": 0.8, "sd": np.nan, "n_seeds": 1, "ci_low": 0.7, "ci_high": 0.9},
    )
    table = markdown_table(summary, {"a": "accuracy", "b": "accuracy"}, {"a": "demo", "b": "demo"})
    assert "| a | accuracy | m | 0.900 ± 0.020 [0.850, 0.950] |  |" in table
    assert "| b | accuracy | m | 0.800 (1 seed) [0.700, 0.900] |  |" in table
    assert "No classical baselines in this evaluation" in table


# -- runs on disk, as the evaluate stage reads them ------------------------------------------------------------
def write_run(
    directory: Path, model: str, seed: int, labels: np.ndarray, scores: np.ndarray, baseline: bool = False
) -> Path:
    """A run in the fine-tuning layout of benchmark ``bench`` (accuracy reported), valid = test."""
    metrics = compute_metrics("classification", labels, scores, scores.shape[1])
    summary = {
        "benchmark": "bench",
        "model": model,
        "seed": seed,
        "suite": "demo",
        "task": "classification",
        "num_outputs": scores.shape[1],
        "metric": "accuracy",
        "metrics": {"valid": metrics, "test": metrics},
        **({"protocol": "classical_baseline"} if baseline else {}),
    }
    run = directory / model / f"seed{seed}"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps(summary))
    rows = np.arange(labels.size)
    pd.DataFrame(
        {"split": "test", "row": rows, "label": labels, "prediction": scores.argmax(1), "scores": list(scores)}
    ).to_parquet(run / "predictions.parquet")
    return run


def scores_with_accuracy(rng: np.random.Generator, labels: np.ndarray, accuracy: float) -> np.ndarray:
    """Two-class probabilities whose argmax is right for a share ``accuracy`` of the examples."""
    right = rng.random(labels.size) < accuracy
    predicted = np.where(right, labels, 1 - labels)
    confidence = 0.5 + 0.5 * rng.random(labels.size)
    return np.stack(
        [np.where(predicted == 0, confidence, 1 - confidence), np.where(predicted == 1, confidence, 1 - confidence)], 1
    )


def test_interval_covers_the_seeds_as_well_as_the_test_set(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 2000)
    runs = [
        Run(
            {"benchmark": "bench", "model": "m", "task": "classification", "num_outputs": 2},
            np.arange(2000),
            labels,
            scores_with_accuracy(rng, labels, accuracy),
        )
        for accuracy in (0.6, 0.9)
    ]
    values = [compute_metrics("classification", labels, r.scores, 2)["accuracy"] for r in runs]
    low, high = bootstrap_seed_mean(runs, 400, 0.95)["accuracy"]
    assert low <= values[0] and high >= values[1]  # both seeds' own values lie inside the interval
    low, high = bootstrap_seed_mean(runs[:1], 400, 0.95)["accuracy"]
    assert low < values[0] < high and high - low < 0.06  # one seed: the test set's sampling only
    runs[1].rows = runs[1].rows[::-1].copy()
    with pytest.raises(ValueError, match="different test rows"):
        bootstrap_seed_mean(runs, 10, 0.95)


def test_flags_baseline_rows_and_legend(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 100)
    runs = [
        write_run(tmp_path, "collapsed", 1, labels, np.tile([0.7, 0.3], (200, 1))),  # one class: the majority's
        write_run(tmp_path, "collapsed", 2, labels, scores_with_accuracy(rng, labels, 0.7)),
        *[write_run(tmp_path, "good", s, labels, scores_with_accuracy(rng, labels, 0.95)) for s in (1, 2)],
        *[write_run(tmp_path, "majority", s, labels, np.tile([0.5, 0.5], (200, 1)), baseline=True) for s in (1, 2)],
        *[
            write_run(tmp_path, "kmer_lr", s, labels, scores_with_accuracy(rng, labels, 0.8), baseline=True)
            for s in (1, 2)
        ],
    ]
    summary = summarise(collect_metrics(runs), runs, resamples=50)
    assert list(summary.columns) == SUMMARY_COLUMNS
    row = summary.set_index(["model", "metric"])
    assert row.loc[("collapsed", "accuracy"), "n_one_class"] == 1 and row.loc[("good", "accuracy"), "n_one_class"] == 0
    assert row.loc[("collapsed", "accuracy"), "n_not_above_majority"] == 1  # 0.5: the majority's accuracy
    assert row.loc[("collapsed", "mcc"), "n_not_above_majority"] == 1  # MCC 0
    assert row.loc[("good", "accuracy"), "n_not_above_majority"] == 0
    assert bool(row.loc[("collapsed", "accuracy"), "below_best_baseline"])  # kmer_lr's 0.8
    assert not bool(row.loc[("good", "accuracy"), "below_best_baseline"])
    assert row.loc[("kmer_lr", "accuracy"), "kind"] == "baseline" and pd.isna(
        row.loc[("kmer_lr", "mcc"), "n_one_class"]
    )
    assert pd.isna(row.loc[("kmer_lr", "accuracy"), "below_best_baseline"])

    table = markdown_table(summary, {"bench": "accuracy"}, {"bench": "demo"}, resamples=50)
    lines = table.splitlines()
    assert "| benchmark | metric | model | value | mcc | f1_macro | flags |" in lines
    collapsed = next(line for line in lines if line.startswith("| bench | accuracy | collapsed |"))
    assert collapsed.count("▼") == 3  # below kmer_lr on accuracy, MCC and macro-F1
    assert collapsed.endswith("| ⚠ one class in 1/2 seeds; ⚠ ≤ majority in 1/2 seeds |")
    good = next(line for line in lines if line.startswith("| bench | accuracy | good |"))
    assert "▼" not in good and "⚠" not in good
    models = [line.split(" | ")[2] for line in lines if line.startswith("| bench |")]
    assert models == ["collapsed", "good", "majority (baseline)", "kmer_lr (baseline)"]  # models, then baselines
    majority = next(line for line in lines if "majority (baseline)" in line)
    assert "| 0.500 ± 0.000" in majority and "| 0.000 ± 0.000" in majority  # accuracy and MCC of the majority class
    assert "two-way bootstrap (50 resamples)" in table and "covers the variation between seeds" in table
    assert "▼: the model's mean is below the best classical baseline" in table
