"""The classical baselines against scikit-learn used directly: features built by scikit-learn's own encoders
(CountVectorizer, OneHotEncoder), every fit of the grid redone, the choice on validation and the test
predictions compared; and the run layout the evaluation reads."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn import metrics as sk
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import OneHotEncoder
from threadpoolctl import threadpool_limits

from longdna.data.benchmarks.format import BenchmarkInfo, write_benchmark
from longdna.data.benchmarks.splits import Carving, train_valid_split
from longdna.eval import BASELINES, baselines
from longdna.eval.baselines import C_GRID, K_GRID, kmer_counts, modal_length, position_onehot, run_baselines
from longdna.settings import FinetuneConfig


def random_sequences(
    rng: np.random.Generator, n: int, lengths: tuple[int, int], alphabet: str = "ACGTacgtN"
) -> list[str]:
    return ["".join(rng.choice(list(alphabet), rng.integers(*lengths))) for _ in range(n)]


def sklearn_kmer_counts(sequences: list[str], k: int) -> np.ndarray:
    """k-mer counts by scikit-learn's character n-grams, columns in our order (the k-mer in base 4)."""
    vocabulary = ["".join(p) for p in itertools.product("ACGT", repeat=k)]
    vectorizer = CountVectorizer(analyzer="char", ngram_range=(k, k), lowercase=False, vocabulary=vocabulary)
    return vectorizer.transform([s.upper() for s in sequences]).toarray()


def sklearn_onehot(sequences: list[str], length: int) -> np.ndarray:
    """Position one-hot by scikit-learn's OneHotEncoder: padding and other letters encode as all zeros."""
    padded = [list(s.upper()[:length].ljust(length, "N")) for s in sequences]
    encoder = OneHotEncoder(categories=[list("ACGT")] * length, handle_unknown="ignore")
    return encoder.fit_transform(padded).toarray()


@pytest.mark.parametrize("k", K_GRID)
def test_kmer_counts_match_sklearn(k: int, monkeypatch: pytest.MonkeyPatch) -> None:
    sequences = random_sequences(np.random.default_rng(k), 40, (1, 30)) + ["", "NNNN", "acgtACGT"]
    expected = sklearn_kmer_counts(sequences, k)
    assert np.array_equal(kmer_counts(sequences, k).toarray(), expected)
    monkeypatch.setattr(baselines, "CHUNK_BASES", 50)  # featurised in pieces, stacked back
    assert np.array_equal(kmer_counts(sequences, k).toarray(), expected)


def test_position_onehot_matches_sklearn(monkeypatch: pytest.MonkeyPatch) -> None:
    sequences = random_sequences(np.random.default_rng(0), 30, (5, 25))
    length = modal_length(sequences)
    expected = sklearn_onehot(sequences, length)
    assert np.array_equal(position_onehot(sequences, length).toarray(), expected)
    monkeypatch.setattr(baselines, "CHUNK_BASES", 40)
    assert np.array_equal(position_onehot(sequences, length).toarray(), expected)
    assert modal_length(["AC", "ACG", "ACG", "ACGT", "ACGT"]) == 3  # ties: the shorter length


def toy_benchmark(directory: Path, task: str, seed: int = 0) -> tuple[pd.DataFrame, BenchmarkInfo]:
    """Sequences with a positional signal (a base at position 5) and a compositional one (GC content); three
    classes, or a value for regression. 36-44 bp, so that truncation and padding both happen."""
    rng = np.random.default_rng(seed)
    sequences = random_sequences(rng, 240, (36, 45), alphabet="ACGT")
    gc = np.array([(s.count("G") + s.count("C")) / len(s) for s in sequences])
    fifth = np.array([s[5] in "GC" for s in sequences])
    if task == "classification":
        labels = (gc > np.median(gc)).astype(int) + fifth.astype(int)  # 0, 1, 2
        info = BenchmarkInfo("toy", "classification", 3, "mcc")
    elif task == "multilabel":
        labels = list(np.stack([gc > np.median(gc), fifth], 1).astype(int))
        info = BenchmarkInfo("toy", "multilabel", 2, "auroc")
    else:
        labels = gc + 0.3 * fifth + rng.normal(0, 0.05, len(sequences))
        info = BenchmarkInfo("toy", "regression", 1, "pearson")
    frame = pd.DataFrame({"sequence": sequences, "label": labels, "split": ["train"] * 180 + ["test"] * 60})
    write_benchmark(directory, frame, info)
    return frame, info


def sklearn_reference(frame: pd.DataFrame, info: BenchmarkInfo, split: np.ndarray) -> dict[str, dict]:
    """Each baseline redone with scikit-learn: features from its encoders, the whole grid fitted, the best on
    validation (first of equals) scored on test."""
    rows = {s: np.flatnonzero(split == s) for s in ("train", "valid", "test")}
    y = np.stack(frame["label"].to_numpy()) if info.task == "multilabel" else frame["label"].to_numpy()
    sequences = frame["sequence"].tolist()
    score = {
        "classification": lambda labels, p: sk.matthews_corrcoef(labels, p.argmax(1)),
        "multilabel": lambda labels, p: sk.roc_auc_score(labels, p, average="macro"),
        "regression": lambda labels, p: np.corrcoef(labels, p)[0, 1],
    }[info.task]

    def fit(features: sparse.csr_matrix, strength: float):
        logistic = LogisticRegression(C=strength, max_iter=5000, random_state=0)
        model = {
            "classification": logistic,
            "multilabel": OneVsRestClassifier(logistic),
            "regression": Ridge(alpha=1 / strength),
        }[info.task]
        return model.fit(features[rows["train"]], y[rows["train"]])

    def predict(model, features: np.ndarray) -> np.ndarray:
        return model.predict(features) if info.task == "regression" else model.predict_proba(features)

    reference = {}
    length = modal_length([sequences[i] for i in rows["train"]])
    for name, candidates in (
        ("kmer_lr", [({"k": k}, sklearn_kmer_counts(sequences, k)) for k in K_GRID]),
        ("onehot_lr", [({"length": length}, sklearn_onehot(sequences, length))]),
    ):
        best = None
        for setting, dense in candidates:
            features = sparse.csr_matrix(dense)  # sparse as ours, so that Ridge takes the same solver
            for strength in C_GRID:
                with threadpool_limits(limits=1):
                    model = fit(features, strength)
                value = score(y[rows["valid"]], predict(model, features[rows["valid"]]))
                if best is None or value > best[0]:
                    best = (value, {**setting, "C": strength}, predict(model, features[rows["test"]]))
        reference[name] = {"chosen": best[1], "test": best[2]}
    return reference


@pytest.mark.parametrize("task", ["classification", "multilabel", "regression"])
def test_baselines_match_sklearn(task: str, tmp_path: Path) -> None:
    frame, info = toy_benchmark(tmp_path / "toy", task)
    seed = 2
    runs = {b: tmp_path / "runs" / b for b in BASELINES}
    summaries = run_baselines(tmp_path / "toy", runs, seed=seed)
    split = train_valid_split(frame, info, Carving(), seed).to_numpy()
    reference = sklearn_reference(frame, info, split)
    test = np.flatnonzero(split == "test")
    labels = np.stack(frame["label"])[test] if task == "multilabel" else frame["label"].to_numpy()[test]
    for name in ("kmer_lr", "onehot_lr"):
        assert summaries[name]["chosen"] == reference[name]["chosen"], name
        predictions = pd.read_parquet(runs[name] / "predictions.parquet")
        ours = predictions.loc[predictions["split"] == "test"]
        assert ours["row"].tolist() == test.tolist()
        scores = np.stack(ours["scores"].to_numpy())
        expected = reference[name]["test"]
        if task == "classification":
            assert np.allclose(scores, expected, atol=1e-8)
            assert summaries[name]["metrics"]["test"]["mcc"] == pytest.approx(
                sk.matthews_corrcoef(labels, expected.argmax(1)), abs=1e-12
            )
            assert summaries[name]["metrics"]["test"]["accuracy"] == pytest.approx(
                sk.accuracy_score(labels, expected.argmax(1)), abs=1e-12
            )
        elif task == "multilabel":
            assert np.allclose(scores, expected, atol=1e-8)
            assert summaries[name]["metrics"]["test"]["auroc"] == pytest.approx(
                sk.roc_auc_score(labels, expected, average="macro"), abs=1e-12
            )
        else:
            assert np.allclose(scores[:, 0], expected, atol=1e-8)
            assert summaries[name]["metrics"]["test"]["r2"] == pytest.approx(sk.r2_score(labels, expected), abs=1e-9)
    majority = pd.read_parquet(runs["majority"] / "predictions.parquet")
    if task == "multilabel":
        frequencies = np.stack(frame["label"])[split == "train"].mean(0)
        assert (
            np.allclose(np.stack(majority["scores"]), frequencies)
            and summaries["majority"]["metrics"]["test"]["auroc"] == 0.5
        )
        return
    train_labels = frame["label"].to_numpy()[split == "train"]
    if task == "classification":
        assert set(majority["prediction"]) == {np.bincount(train_labels).argmax()}
        assert summaries["majority"]["metrics"]["test"]["mcc"] == 0.0
        assert summaries["majority"]["metrics"]["test"]["accuracy"] == pytest.approx(
            np.mean(labels == np.bincount(train_labels).argmax())
        )
    else:
        assert np.allclose(majority["prediction"], train_labels.mean())


def test_baseline_runs_have_the_fine_tuning_layout(tmp_path: Path) -> None:
    frame, info = toy_benchmark(tmp_path / "toy", "classification")
    for seed in (1, 2):
        runs = {b: tmp_path / f"seed{seed}" / b for b in BASELINES}
        summaries = run_baselines(
            tmp_path / "toy", runs, seed=seed, carving=Carving(valid_fraction=0.2), benchmark="toy_named"
        )
        split = train_valid_split(frame, info, Carving(valid_fraction=0.2), seed).to_numpy()
        for name in summaries:
            on_disk = json.loads((runs[name] / "metrics.json").read_text())
            assert on_disk["model"] == name and on_disk["benchmark"] == "toy_named" and on_disk["seed"] == seed
            assert on_disk["protocol"] == "classical_baseline" and on_disk["metric"] == "mcc"
            assert set(on_disk["metrics"]) == {"valid", "test"} and "recall_2" in on_disk["metrics"]["test"]
            assert on_disk["n_valid"] == int((split == "valid").sum()) == 36  # 20 % of 180, stratified
            predictions = pd.read_parquet(runs[name] / "predictions.parquet")
            assert list(predictions.columns) == ["split", "row", "label", "prediction", "scores"]
            for part in ("valid", "test"):  # exactly the rows the fine-tuning run of this seed uses
                rows = predictions.loc[predictions["split"] == part, "row"]
                assert rows.tolist() == np.flatnonzero(split == part).tolist()
        assert len(summaries["kmer_lr"]["selection"]) == len(K_GRID) * len(C_GRID)


def test_carving_defaults_are_fine_tunings() -> None:
    assert Carving() == Carving(FinetuneConfig().valid_fraction, FinetuneConfig().kfold)


def test_variant_benchmarks_and_single_class_training_are_refused(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "sequence": ["ACGT", "ACGA"] * 4,
            "alt_sequence": ["ACGA", "ACGT"] * 4,
            "variant_position": [3] * 8,
            "label": [0, 1] * 4,
            "split": ["train"] * 6 + ["test"] * 2,
        }
    )
    write_benchmark(tmp_path / "vep", frame, BenchmarkInfo("vep", "classification", 2, "auroc"))
    with pytest.raises(ValueError, match="variant-effect benchmark"):
        run_baselines(tmp_path / "vep", {b: tmp_path / b for b in BASELINES}, seed=1)
    one = pd.DataFrame({"sequence": ["ACGT"] * 10, "label": [0] * 8 + [1] * 2, "split": ["train"] * 8 + ["test"] * 2})
    write_benchmark(tmp_path / "one", one, BenchmarkInfo("one", "classification", 2, "accuracy"))
    with pytest.raises(ValueError, match="one class only"):
        run_baselines(tmp_path / "one", {b: tmp_path / b for b in BASELINES}, seed=1)


@pytest.mark.slow
def test_workflow_runs_a_baseline_job_per_benchmark_and_seed(tmp_path: Path) -> None:
    from conftest import snakemake
    from test_cluster import ci_config
    from test_workflow import job_counts

    def dry_run(change=None, check: bool = True) -> str:
        result = snakemake(tmp_path, "-n", configfile=ci_config(tmp_path, change), check=check)
        return result.stdout + result.stderr

    assert job_counts(dry_run())["classical_baseline"] == 4  # CI config: 2 benchmarks x 2 seeds
    assert "classical_baseline" not in job_counts(dry_run(lambda c: c["evaluate"].update(baselines=False)))

    def two_carvings(config: dict) -> None:
        config["finetune"]["models"]["hyena_scratch"]["settings"]["valid_fraction"] = 0.2

    assert "the models on benchmark motif carve different validation splits" in dry_run(two_carvings, check=False)
    same = dry_run(lambda c: c["benchmarks"]["motif"].update(finetune={"valid_fraction": 0.2}))
    assert job_counts(same)["classical_baseline"] == 4  # set for the benchmark: every model's carving

    def reserved(config: dict) -> None:
        config["finetune"]["models"]["majority"] = {"backbone": "hyena"}

    assert "['majority'] are the names of classical baselines" in dry_run(reserved, check=False)
