"""Classical baselines: what a fine-tuned model has to beat before it is called useful.

For one benchmark and one seed, on exactly the rows a fine-tuning run of that seed uses -- fitted on its
training rows, chosen on the validation rows that :func:`longdna.data.benchmarks.splits.train_valid_split` carves with
the same seed and settings, scored once on the test rows -- three baselines (:data:`longdna.eval.BASELINES`):

``majority``
    classification: the training rows' class frequencies as scores, so the prediction is the majority class
    (MCC 0, AUROC 0.5); regression: the training mean; multi-label: each label's training frequency.
``kmer_lr``
    counts of the 4^k overlapping k-mers over ``ACGT`` per sequence (case ignored, k-mers with any other
    letter skipped; raw counts, no scaling), sparse; an L2 logistic regression (lbfgs; multinomial for several
    classes, one-vs-rest for multi-label) or, for regression, a ridge regression (``alpha = 1 / C``). k in
    :data:`K_GRID` and C in :data:`C_GRID` are chosen together on the validation rows by the benchmark's
    reported metric; ties go to the smaller k, then the stronger penalty.
``onehot_lr``
    each sequence upper-cased and truncated or right-padded to L, the modal length of the training rows; each
    position as 4 indicator columns for A, C, G, T (any other letter and padding: all zero), 4L sparse
    features; the same estimators, C chosen on the validation rows.

This is the method of the development sets' README (``shared/data/README.md``) with one difference: every
choice is made on the run's validation split, where the models are selected too, instead of by a 5-fold
cross-validation of the training split. Each baseline writes the fine-tuning run layout (``metrics.json``,
``predictions.parquet``), so the evaluation stage reports it beside the models with the same metrics and
intervals.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.multiclass import OneVsRestClassifier
from threadpoolctl import threadpool_limits

from longdna.data.benchmarks.info import BenchmarkInfo, label_array, read_benchmark_files
from longdna.data.benchmarks.splits import Carving, SplitSettings, train_valid_split
from longdna.eval import BASELINES
from longdna.eval.metrics import compute_metrics, point_predictions
from longdna.io import atomic_path, write_json

K_GRID = (3, 4, 5, 6)
C_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0)  # ascending: the strongest penalty first
MAX_ITER = 5000
PROTOCOL = "classical_baseline"
#: bases featurised at once (the k-mer index arrays take about 50 bytes per base)
CHUNK_BASES = 2_000_000

#: base -> 0..3 for A, C, G, T in either case, 4 for every other byte
_CODES = np.full(256, 4, dtype=np.int64)
_CODES[list(b"ACGT")] = _CODES[list(b"acgt")] = np.arange(4)


def _codes(sequences: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(codes of all sequences concatenated, each sequence's length)."""
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    joined = np.frombuffer("".join(sequences).encode("ascii"), dtype=np.uint8)
    return _CODES[joined], lengths


def _row_chunks(sequences: Sequence[str]) -> Iterator[Sequence[str]]:
    """Consecutive slices of ``sequences`` of about :data:`CHUNK_BASES` bases each (at least one row)."""
    start, bases = 0, 0
    for i, sequence in enumerate(sequences):
        bases += len(sequence)
        if bases >= CHUNK_BASES:
            yield sequences[start : i + 1]
            start, bases = i + 1, 0
    if start < len(sequences) or not sequences:
        yield sequences[start:]


def kmer_counts(sequences: Sequence[str], k: int) -> sparse.csr_matrix:
    """(N, 4^k) counts of the overlapping k-mers over ACGT of each sequence; column = the k-mer read as a
    base-4 number (A=0, C=1, G=2, T=3, first base most significant). k-mers with another letter are skipped."""
    return sparse.vstack([_kmer_counts(chunk, k) for chunk in _row_chunks(sequences)], format="csr")


def _kmer_counts(sequences: Sequence[str], k: int) -> sparse.csr_matrix:
    codes, lengths = _codes(sequences)
    windows = max(codes.size - k + 1, 0)
    index = np.zeros(windows, dtype=np.int64)
    for j in range(k):
        index = index * 4 + np.minimum(codes[j : j + windows], 3)
    bad = np.concatenate([[0], np.cumsum(codes == 4)])
    row = np.repeat(np.arange(len(sequences)), lengths)[:windows]
    ends = np.cumsum(lengths)
    # a window is a k-mer when it lies inside one sequence and holds only ACGT
    keep = (np.arange(windows) + k <= ends[row]) & (bad[k : k + windows] == bad[:windows])
    counts = sparse.coo_matrix((np.ones(int(keep.sum())), (row[keep], index[keep])), shape=(len(sequences), 4**k))
    return counts.tocsr()  # duplicate (row, k-mer) entries are summed


def position_onehot(sequences: Sequence[str], length: int) -> sparse.csr_matrix:
    """(N, 4 * length) position one-hot: column 4p + b for base b (A, C, G, T) at position p < length;
    longer sequences truncated, shorter ones right-padded with all-zero positions, other letters all zero."""
    return sparse.vstack([_position_onehot(chunk, length) for chunk in _row_chunks(sequences)], format="csr")


def _position_onehot(sequences: Sequence[str], length: int) -> sparse.csr_matrix:
    codes, lengths = _codes([s[:length] for s in sequences])
    row = np.repeat(np.arange(len(sequences)), lengths)
    position = np.arange(codes.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    keep = codes < 4
    onehot = sparse.coo_matrix(
        (np.ones(int(keep.sum())), (row[keep], 4 * position[keep] + codes[keep])), shape=(len(sequences), 4 * length)
    )
    return onehot.tocsr()


def modal_length(sequences: Sequence[str]) -> int:
    """The most frequent length (the shortest of equally frequent ones)."""
    return int(np.bincount([len(s) for s in sequences]).argmax())


def linear_model(task: str, strength: float) -> Any:
    """The linear estimator of ``task`` with inverse penalty ``strength`` (C; ridge: alpha = 1 / C)."""
    if task == "regression":
        return Ridge(alpha=1 / strength)
    logistic = LogisticRegression(C=strength, max_iter=MAX_ITER, random_state=0)
    return OneVsRestClassifier(logistic) if task == "multilabel" else logistic


def model_scores(model: Any, task: str, features: sparse.csr_matrix, num_outputs: int) -> np.ndarray:
    """(N, num_outputs) scores as the metrics take them: class probabilities (a class absent from training
    gets 0), per-label probabilities, or values."""
    if task == "regression":
        return model.predict(features).reshape(features.shape[0], -1)
    probabilities = model.predict_proba(features)
    if task == "multilabel":
        return probabilities
    scores = np.zeros((features.shape[0], num_outputs))
    scores[:, model.classes_] = probabilities
    return scores


def prior_scores(task: str, targets: np.ndarray, n: int, num_outputs: int) -> np.ndarray:
    """The majority baseline's (n, num_outputs) scores from the training targets: class frequencies, label
    frequencies or the mean."""
    if task == "classification":
        prior = np.bincount(targets, minlength=num_outputs) / targets.size
    else:
        prior = targets.reshape(targets.shape[0], -1).mean(0)
    return np.tile(prior, (n, 1))


Featurizer = Callable[[Sequence[str]], sparse.csr_matrix]


def select_linear(
    info: BenchmarkInfo,
    settings: Sequence[tuple[dict[str, Any], Featurizer]],
    sequences: Sequence[str],
    targets: np.ndarray,
    rows: dict[str, np.ndarray],
) -> dict[str, Any]:
    """Fit one linear model per feature setting x C on the training rows, keep the best on the validation rows
    (by ``info.metric``; the first of equals), score the test rows with it.

    Returns ``scores`` (split -> (rows, outputs)), ``chosen`` (the setting and C) and ``selection`` (one record
    per fit: the setting, C, the validation metric, whether lbfgs converged).
    """
    fit_rows = np.concatenate([rows["train"], rows["valid"]])
    n_train = rows["train"].size
    best: dict[str, Any] | None = None
    selection = []
    for setting, featurize in settings:
        features = featurize([sequences[i] for i in fit_rows])
        train, valid = features[:n_train], features[n_train:]
        for strength in C_GRID:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                model = linear_model(info.task, strength).fit(train, targets[rows["train"]])
            valid_scores = model_scores(model, info.task, valid, info.num_outputs)
            value = compute_metrics(info.task, targets[rows["valid"]], valid_scores, info.num_outputs)[info.metric]
            converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
            selection.append({**setting, "C": strength, f"valid_{info.metric}": value, "converged": converged})
            if np.isfinite(value) and (best is None or value > best["value"]):
                best = {
                    "value": value,
                    "setting": setting,
                    "featurize": featurize,
                    "C": strength,
                    "model": model,
                    "valid": valid_scores,
                }
    if best is None:
        raise ValueError(f"benchmark {info.name}: the validation {info.metric} is undefined for every fit")
    test = best["featurize"]([sequences[i] for i in rows["test"]])
    return {
        "scores": {"valid": best["valid"], "test": model_scores(best["model"], info.task, test, info.num_outputs)},
        "chosen": {**best["setting"], "C": best["C"]},
        "selection": selection,
    }


def fit_baselines(frame: pd.DataFrame, info: BenchmarkInfo, split: np.ndarray) -> dict[str, dict[str, Any]]:
    """Every baseline of :data:`BASELINES` on the rows of ``split`` (train/valid/test): name -> ``scores``
    (split -> (rows, outputs) array), ``chosen``, ``selection``, ``description``."""
    rows = {name: np.flatnonzero(split == name) for name in ("train", "valid", "test")}
    for name, index in rows.items():
        if index.size == 0:
            raise ValueError(f"benchmark {info.name}: the {name} split is empty")
    targets = label_array(frame["label"], info)
    if info.task == "classification" and np.unique(targets[rows["train"]]).size < 2:
        raise ValueError(f"benchmark {info.name}: the training rows hold one class only; nothing to fit")
    sequences = frame["sequence"].tolist()
    length = modal_length([sequences[i] for i in rows["train"]])
    kind = {
        "classification": "logistic regression",
        "multilabel": "one-vs-rest logistic regression",
        "regression": "ridge regression",
    }[info.task]
    prior = prior_scores(info.task, targets[rows["train"]], 1, info.num_outputs)
    kmer = select_linear(info, [({"k": k}, lambda s, k=k: kmer_counts(s, k)) for k in K_GRID], sequences, targets, rows)
    onehot = select_linear(info, [({"length": length}, lambda s: position_onehot(s, length))], sequences, targets, rows)
    return {
        "majority": {
            "scores": {s: np.repeat(prior, rows[s].size, 0) for s in ("valid", "test")},
            "chosen": {},
            "selection": [],
            "description": {
                "classification": "majority class (training frequencies)",
                "multilabel": "training frequency of each label",
                "regression": "training mean",
            }[info.task],
        },
        "kmer_lr": {**kmer, "description": f"{kind} on k-mer counts"},
        "onehot_lr": {**onehot, "description": f"{kind} on position one-hot"},
    }


def run_baselines(
    benchmark_dir: str | os.PathLike,
    out_dirs: dict[str, str | os.PathLike],
    seed: int,
    carving: SplitSettings = Carving(),
    benchmark: str | None = None,
    threads: int = 1,
) -> dict[str, dict[str, Any]]:
    """Fit the baselines on the benchmark with the validation split of ``seed`` and write each one's run
    (``metrics.json``, ``predictions.parquet``) into ``out_dirs[name]``; returns the ``metrics.json`` contents.

    ``threads`` caps the BLAS threads: these small sparse fits gain nothing from more, and on a busy machine
    spinning BLAS threads made them 50 times slower."""
    tick = time.time()
    frame, info = read_benchmark_files(benchmark_dir)
    if "alt_sequence" in frame.columns:
        raise ValueError(
            f"{benchmark_dir} is a variant-effect benchmark: its classical baselines would need the"
            " alternative alleles, which these features do not see"
        )
    if set(out_dirs) != set(BASELINES):
        raise ValueError(
            f"run_baselines writes the baselines {list(BASELINES)}, got directories for {sorted(out_dirs)}"
        )
    split = train_valid_split(frame, info, carving, seed).to_numpy()
    targets = label_array(frame["label"], info)
    with threadpool_limits(limits=threads):
        results = fit_baselines(frame, info, split)
    seconds = time.time() - tick
    summaries = {}
    for name in BASELINES:
        result = results[name]
        out_dir = Path(out_dirs[name])
        predictions, metrics = [], {}
        for split_name, scores in result["scores"].items():
            index = np.flatnonzero(split == split_name)
            metrics[split_name] = compute_metrics(info.task, targets[index], scores, info.num_outputs)
            predictions.append(
                pd.DataFrame(
                    {
                        "split": split_name,
                        "row": index,
                        "label": list(targets[index]) if targets.ndim > 1 else targets[index],
                        "prediction": point_predictions(info.task, scores),
                        "scores": list(scores),
                    }
                )
            )
        summary = {
            "benchmark": benchmark or info.name,
            "model": name,
            "seed": seed,
            "suite": info.suite,
            "task": info.task,
            "num_outputs": info.num_outputs,
            "metric": info.metric,
            "selection_metric": info.metric,
            "protocol": PROTOCOL,
            "description": result["description"],
            "chosen": result["chosen"],
            "selection": result["selection"],
            "carving": {"valid_fraction": carving.valid_fraction, "kfold": carving.kfold},
            **{f"n_{s}": int((split == s).sum()) for s in ("train", "valid", "test")},
            "seconds": seconds,  # all three baselines together
            "metrics": metrics,
        }
        with atomic_path(out_dir / "predictions.parquet", suffix=".parquet") as tmp:
            pd.concat(predictions, ignore_index=True).to_parquet(tmp, index=False)
        write_json(out_dir / "metrics.json", summary)  # last: a run with metrics is a complete run
        summaries[name] = summary
    return summaries
