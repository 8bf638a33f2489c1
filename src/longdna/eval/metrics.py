"""Evaluation metrics, implemented on NumPy (scikit-learn is only used to test them).

Definitions follow the conventions the benchmark papers report with:

* ``accuracy``; ``mcc`` (Matthews correlation, multi-class form of Gorodkin 2004; 0 when undefined);
* ``f1``: F1 of class 1 for binary tasks, macro F1 otherwise; ``f1_macro``: mean F1 over the classes
  present in labels or predictions;
* ``recall_<k>`` for each class id k: the share of class k's examples predicted as k (NaN without any);
* ``auroc``: area under the ROC curve (ties count one half), macro one-vs-rest for several classes;
* ``auprc``: average precision, sum over thresholds of (R_n - R_{n-1}) P_n, macro for several classes;
* ``pearson``, ``spearman`` (average ranks for ties), ``r2`` (coefficient of determination).

Multi-label tasks report the macro average over labels of ``auroc`` and ``auprc``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
    return float(np.mean(labels == predictions))


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(labels * num_classes + predictions, minlength=num_classes**2).reshape(num_classes, num_classes)


def mcc(labels: np.ndarray, predictions: np.ndarray, num_classes: int | None = None) -> float:
    k = num_classes or int(max(labels.max(), predictions.max()) + 1)
    c = confusion_matrix(labels, predictions, k).astype(np.float64)
    t, p, correct, n = c.sum(1), c.sum(0), np.trace(c), c.sum()
    denominator = np.sqrt((n**2 - p @ p) * (n**2 - t @ t))
    return float((correct * n - p @ t) / denominator) if denominator > 0 else 0.0


def _f1_per_class(labels: np.ndarray, predictions: np.ndarray, k: int) -> np.ndarray:
    c = confusion_matrix(labels, predictions, k).astype(np.float64)
    tp = np.diag(c)
    denominator = c.sum(0) + c.sum(1)  # 2TP + FP + FN
    return np.divide(2 * tp, denominator, out=np.zeros(k), where=denominator > 0)


def f1_macro(labels: np.ndarray, predictions: np.ndarray, num_classes: int | None = None) -> float:
    k = num_classes or int(max(labels.max(), predictions.max()) + 1)
    present = np.union1d(labels, predictions)
    return float(_f1_per_class(labels, predictions, k)[present].mean())


def f1(labels: np.ndarray, predictions: np.ndarray, num_classes: int | None = None) -> float:
    k = num_classes or int(max(labels.max(), predictions.max()) + 1)
    if k == 2:
        return float(_f1_per_class(labels, predictions, 2)[1])
    return f1_macro(labels, predictions, k)


def recall_per_class(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    c = confusion_matrix(labels, predictions, num_classes).astype(np.float64)
    support = c.sum(1)
    return np.divide(np.diag(c), support, out=np.full(num_classes, np.nan), where=support > 0)


def rankdata(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    boundaries = np.flatnonzero(np.diff(sorted_x)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [x.size]])
    average = (starts + ends + 1) / 2  # mean of ranks start+1 .. end
    ranks = np.empty(x.size)
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def binary_auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    positives = labels == 1
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def binary_auprc(labels: np.ndarray, scores: np.ndarray) -> float:
    n_pos = int((labels == 1).sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_labels = scores[order], labels[order] == 1
    last_of_threshold = np.concatenate([np.flatnonzero(np.diff(sorted_scores)), [scores.size - 1]])
    tp = np.cumsum(sorted_labels)[last_of_threshold]
    precision = tp / (last_of_threshold + 1)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))


def _one_vs_rest(metric: Callable[[np.ndarray, np.ndarray], float], labels: np.ndarray, scores: np.ndarray) -> float:
    if scores.ndim == 1 or scores.shape[1] == 1:
        return metric(labels, scores.reshape(-1))
    if scores.shape[1] == 2:
        return metric(labels, scores[:, 1])
    values = [metric((labels == k).astype(int), scores[:, k]) for k in range(scores.shape[1])]
    return float(np.nanmean(values))


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    return _one_vs_rest(binary_auroc, labels, scores)


def auprc(labels: np.ndarray, scores: np.ndarray) -> float:
    return _one_vs_rest(binary_auprc, labels, scores)


def pearson(targets: np.ndarray, predictions: np.ndarray) -> float:
    t, p = targets - targets.mean(), predictions - predictions.mean()
    denominator = np.sqrt((t @ t) * (p @ p))
    return float(t @ p / denominator) if denominator > 0 else 0.0


def spearman(targets: np.ndarray, predictions: np.ndarray) -> float:
    return pearson(rankdata(targets), rankdata(predictions))


def r2(targets: np.ndarray, predictions: np.ndarray) -> float:
    residual = np.sum((targets - predictions) ** 2)
    total = np.sum((targets - targets.mean()) ** 2)
    return float(1 - residual / total) if total > 0 else 0.0


def compute_metrics(task: str, labels: np.ndarray, scores: np.ndarray, num_outputs: int) -> dict[str, float]:
    """All metrics of ``task`` from labels and model scores.

    classification: ``scores`` are class probabilities (N, C); regression: predictions (N,) or (N, k)
    (metrics averaged over the k targets); multilabel: per-label probabilities (N, k) and 0/1 labels (N, k).
    """
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    if labels.dtype == object:  # one vector per example (multi-label, multi-output regression), as Parquet gives them
        labels = np.stack(labels)
    if task == "classification":
        labels = labels.astype(np.int64)
        predictions = scores.argmax(1)
        return {
            "accuracy": accuracy(labels, predictions),
            "mcc": mcc(labels, predictions, num_outputs),
            "f1": f1(labels, predictions, num_outputs),
            "f1_macro": f1_macro(labels, predictions, num_outputs),
            "auroc": auroc(labels, scores),
            "auprc": auprc(labels, scores),
            **{f"recall_{k}": float(r) for k, r in enumerate(recall_per_class(labels, predictions, num_outputs))},
        }
    if task == "regression":
        targets = labels.astype(np.float64).reshape(len(labels), -1)
        predictions = scores.reshape(len(labels), -1)
        columns = range(targets.shape[1])
        return {
            name: float(np.mean([fn(targets[:, j], predictions[:, j]) for j in columns]))
            for name, fn in (("pearson", pearson), ("spearman", spearman), ("r2", r2))
        }
    if task == "multilabel":
        labels = labels.astype(np.int64)
        return {
            "auroc": float(np.nanmean([binary_auroc(labels[:, j], scores[:, j]) for j in range(labels.shape[1])])),
            "auprc": float(np.nanmean([binary_auprc(labels[:, j], scores[:, j]) for j in range(labels.shape[1])])),
        }
    raise ValueError(f"unknown task {task!r}")


def point_predictions(task: str, outputs: np.ndarray) -> Any:
    """What a human reads next to the labels, from (N, outputs) scores: class ids, 0/1 label vectors (a
    probability above 0.5), or values."""
    if task == "classification":
        return outputs.argmax(1)
    if task == "multilabel":
        return list((outputs > 0.5).astype(np.int64))
    return outputs[:, 0] if outputs.shape[1] == 1 else list(outputs)
