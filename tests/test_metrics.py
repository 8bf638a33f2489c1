"""Our metrics against scikit-learn and SciPy on random predictions (ties included), and their table cells."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn import metrics as sk

from longdna.eval.metrics import compute_metrics
from longdna.eval.report import markdown_table


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
        "auroc": sk.roc_auc_score(labels, scores[:, 1]) if k == 2
        else sk.roc_auc_score(labels, scores, multi_class="ovr", average="macro"),
        "auprc": sk.average_precision_score(labels, scores[:, 1]) if k == 2
        else np.mean([sk.average_precision_score(labels == j, scores[:, j]) for j in range(k)]),
    }
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


def test_table_cells_give_a_spread_only_over_several_seeds() -> None:
    summary = pd.DataFrame([
        {"benchmark": "a", "model": "m", "metric": "accuracy", "mean": 0.9, "sd": 0.02, "n_seeds": 3,
         "ci_low": 0.85, "ci_high": 0.95},
        {"benchmark": "b", "model": "m", "metric": "accuracy", "mean": 0.8, "sd": np.nan, "n_seeds": 1,
         "ci_low": 0.7, "ci_high": 0.9},
    ])
    table = markdown_table(summary, {"a": "accuracy", "b": "accuracy"}, {"a": "demo", "b": "demo"})
    assert "| a | accuracy | 0.900 ± 0.020 [0.850, 0.950] |" in table
    assert "| b | accuracy | 0.800 (1 seed) [0.700, 0.900] |" in table
