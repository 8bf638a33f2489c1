"""Fine-tuning engine: data handling, splits, heads, and small end-to-end runs of each task type."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from longdna import vocab
from longdna.data.benchmarks.format import BenchmarkInfo, write_benchmark
from longdna.data.benchmarks.splits import train_valid_split
from longdna.models import SequenceClassifier, build_model, save_pretrained
from longdna.models.base import pool
from longdna.models.heads import reverse_complement_padded
from longdna.settings import FinetuneConfig
from longdna.train.finetune import finetune, fit_head, pad_batch
from longdna.train.finetuned import crop

TINY = dict(d_model=16, n_layer=1, d_inner=32, l_max=130, embed_dropout=0.0)


def test_crop_and_pad() -> None:
    ids = np.arange(10, dtype=np.uint8)
    assert crop(ids, 4, "start").tolist() == [0, 1, 2, 3]
    assert crop(ids, 4, "end").tolist() == [6, 7, 8, 9]
    assert crop(ids, 4, "center").tolist() == [3, 4, 5, 6]
    assert crop(ids, None, "center").size == 10
    batch, mask = pad_batch([np.array([7, 8]), np.array([9, 10, 11])], "left")
    assert batch.tolist() == [[vocab.PAD, 7, 8], [9, 10, 11]]
    assert mask.tolist() == [[False, True, True], [True, True, True]]
    batch, _ = pad_batch([np.array([7, 8]), np.array([9, 10, 11])], "right")
    assert batch.tolist() == [[7, 8, vocab.PAD], [9, 10, 11]]


def test_reverse_complement_keeps_padding_in_place() -> None:
    ids, mask = pad_batch([np.array([7, 7, 8]), np.array([9, 10, 11, 7])], "left")
    rc = reverse_complement_padded(ids, mask)
    assert rc.tolist() == [[vocab.PAD, 9, 10, 10], [10, 11, 7, 8]]


def test_validation_split_is_stratified_seeded_and_disjoint_from_test() -> None:
    frame = pd.DataFrame({"label": [0] * 80 + [1] * 20 + [0] * 10, "split": ["train"] * 100 + ["test"] * 10})
    info = BenchmarkInfo("b", "classification", 2, "accuracy")
    config = FinetuneConfig()
    split = train_valid_split(frame, info, config, seed=1)
    valid = frame.loc[split == "valid", "label"]
    assert valid.value_counts().to_dict() == {0: 8, 1: 2}
    assert (split[frame["split"] == "test"] == "test").all()
    assert split.equals(train_valid_split(frame, info, config, seed=1))
    assert not split.equals(train_valid_split(frame, info, config, seed=2))
    folds = [
        set(np.flatnonzero(train_valid_split(frame, info, FinetuneConfig(kfold=5), seed=s) == "valid"))
        for s in range(5)
    ]
    assert set().union(*folds) == set(range(100)) and sum(map(len, folds)) == 100  # a partition of train


def test_rc_conjoined_classifier_is_strand_invariant() -> None:
    torch.manual_seed(0)
    model = SequenceClassifier(build_model("hyenadna", **TINY), 3, pooling="mean", rc_conjoin=True).eval()
    ids, mask = pad_batch([np.array([7, 8, 9, 10, 8]), np.array([9, 9, 7])], "left")
    with torch.no_grad():
        forward = model(ids, mask)
        reverse = model(reverse_complement_padded(ids, mask), mask)
    assert torch.allclose(forward, reverse, atol=1e-6)


def test_post_hoc_conjoining_scores_one_strand_in_training_and_both_in_inference() -> None:
    torch.manual_seed(0)
    backbone = build_model("hyenadna", **TINY)
    one_strand = SequenceClassifier(backbone, 3, pooling="mean")
    post_hoc = SequenceClassifier(backbone, 3, pooling="mean", rc_conjoin=True, conjoin_in_training=False)
    post_hoc.score.load_state_dict(one_strand.score.state_dict())
    ids, mask = pad_batch([np.array([7, 8, 9, 10, 8]), np.array([9, 9, 7])], "left")
    rc_ids = reverse_complement_padded(ids, mask)
    with torch.no_grad():
        assert torch.allclose(post_hoc.train()(ids, mask), one_strand.train()(ids, mask))
        post_hoc.eval()
        one_strand.eval()
        both = (one_strand(ids, mask) + one_strand(rc_ids, mask)) / 2
        assert not torch.allclose(both, one_strand(ids, mask), atol=1e-4)  # the strands score differently
        assert torch.allclose(post_hoc(ids, mask), both, atol=1e-6)
        assert torch.allclose(post_hoc(rc_ids, mask), both, atol=1e-6)


def write_toy_benchmark(directory: Path, task: str, n: int = 160, length: int = 48) -> None:
    """A learnable toy: the label is carried by the base composition of the sequence."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        gc = rng.random()
        seq = "".join(rng.choice(list("ACGT"), length, p=[(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2]))
        label: object = {
            "classification": int(gc > 0.5),
            "regression": gc,
            "multilabel": [int(gc > 0.5), int(gc > 0.25)],
        }[task]
        rows.append((seq, label, "test" if i >= n * 3 // 4 else "train"))
    frame = pd.DataFrame(rows, columns=["sequence", "label", "split"])
    outputs = {"classification": 2, "regression": 1, "multilabel": 2}[task]
    metric = {"classification": "accuracy", "regression": "pearson", "multilabel": "auroc"}[task]
    write_benchmark(directory, frame, BenchmarkInfo("toy", task, outputs, metric))


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("backbone")
    torch.manual_seed(0)
    save_pretrained(build_model("hyenadna", **TINY), directory)
    return directory


@pytest.mark.parametrize(
    ("task", "metric", "threshold"),
    [("classification", "accuracy", 0.8), ("regression", "pearson", 0.7), ("multilabel", "auroc", 0.8)],
)
def test_end_to_end_learns_each_task_type(
    tmp_path: Path, pretrained: Path, task: str, metric: str, threshold: float
) -> None:
    write_toy_benchmark(tmp_path / "bench", task)
    config = FinetuneConfig(epochs=8, batch_size=16, lr=3e-3, pooling="mean")
    summary = finetune(
        tmp_path / "bench",
        tmp_path / "run",
        config,
        seed=1,
        backbone_dir=pretrained,
        run_name={"benchmark": "toy", "model": "tiny"},
        progress=False,
    )
    assert summary["metrics"]["test"][metric] > threshold
    saved = json.loads((tmp_path / "run/metrics.json").read_text())
    assert saved["metrics"] == summary["metrics"] and saved["benchmark"] == "toy"
    history = pd.read_csv(tmp_path / "run/history.csv")
    assert len(history) == 8 and saved["best_epoch"] == history[f"valid_{metric}"].idxmax() + 1


def test_scratch_and_pretrained_differ_only_in_initialisation(tmp_path: Path, pretrained: Path) -> None:
    write_toy_benchmark(tmp_path / "bench", "classification", n=40)
    config = dict(epochs=1, batch_size=8)
    a = finetune(
        tmp_path / "bench", tmp_path / "a", FinetuneConfig(**config), seed=3, backbone_dir=pretrained, progress=False
    )
    b = finetune(
        tmp_path / "bench",
        tmp_path / "b",
        FinetuneConfig(**config, init="scratch"),
        seed=3,
        architecture=("hyenadna", TINY),
        progress=False,
    )
    again = finetune(
        tmp_path / "bench", tmp_path / "c", FinetuneConfig(**config), seed=3, backbone_dir=pretrained, progress=False
    )
    assert a["num_parameters"] == b["num_parameters"]
    assert a["metrics"] == again["metrics"]  # deterministic given the seed
    scores = [np.stack(pd.read_parquet(tmp_path / d / "predictions.parquet")["scores"]) for d in ("a", "b")]
    assert not np.allclose(scores[0], scores[1])


@pytest.mark.parametrize("classes", [2, 3])
def test_probe_head_is_the_l2_logistic_regression(classes: int) -> None:
    """fit_head minimises mean cross-entropy + l2 * ||W||^2 over the softmax head: scikit-learn's L2 logistic
    regression (unpenalised intercept) has the same solution, with C = 1 / (2 * l2 * N) for the multinomial
    model and, for two classes, C = 1 / (l2 * N) on the difference of the two rows (the optimum splits it)."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(classes)
    n, width, l2 = 300, 6, 1e-2
    labels = rng.integers(0, classes, n)
    features = rng.normal(size=(n, width)) + 1.5 * np.eye(classes, width)[labels]
    head = torch.nn.Linear(width, classes).double()
    fit_head(head, torch.from_numpy(features)[None], torch.from_numpy(labels), "classification", l2)
    weight, bias = head.weight.detach().numpy(), head.bias.detach().numpy()
    if classes == 2:
        reference = LogisticRegression(C=1 / (l2 * n), tol=1e-10, max_iter=10_000).fit(features, labels)
        weight, bias = weight[1:] - weight[:1], bias[1:] - bias[:1]
        reference_bias = reference.intercept_
    else:
        reference = LogisticRegression(C=1 / (2 * l2 * n), tol=1e-10, max_iter=10_000).fit(features, labels)
        bias, reference_bias = bias - bias.mean(), reference.intercept_ - reference.intercept_.mean()
    assert np.allclose(weight, reference.coef_, atol=1e-3) and np.allclose(bias, reference_bias, atol=1e-3)


def test_lp_ft_starts_fine_tuning_from_the_probe(tmp_path: Path, pretrained: Path) -> None:
    """With head_init probe the head is fitted on frozen features first: with the backbone frozen and
    fine-tuning steps that do nothing (lr ~ 0), the run's test scores are those of the probe alone, and a
    probe on this composition task is already good."""
    write_toy_benchmark(tmp_path / "bench", "classification")
    config = dict(epochs=1, batch_size=16, lr=1e-12, pooling="mean", freeze_backbone=True)
    probe = finetune(
        tmp_path / "bench",
        tmp_path / "probe",
        FinetuneConfig(**config, head_init="probe"),
        seed=1,
        backbone_dir=pretrained,
        progress=False,
    )
    random_head = finetune(
        tmp_path / "bench",
        tmp_path / "random",
        FinetuneConfig(**config),
        seed=1,
        backbone_dir=pretrained,
        progress=False,
    )
    assert probe["metrics"]["test"]["accuracy"] > 0.8
    assert random_head["metrics"]["test"]["accuracy"] < probe["metrics"]["test"]["accuracy"]
    history = pd.read_csv(tmp_path / "probe/history.csv")
    assert history["epoch"].tolist() == [0, 1] and probe["epochs_run"] == 1  # epoch 0: the probe, recorded
    assert probe["best_epoch"] == 1 and history["valid_accuracy"].iloc[0] > 0.8  # ... but never selected


def test_bad_benchmark_rows_are_named(tmp_path: Path) -> None:
    frame = pd.DataFrame({"sequence": ["ACGT", "ACXT"], "label": [0, 1], "split": ["train", "test"]})
    with pytest.raises(ValueError, match=r"row 2: character 'X' at position 3"):
        write_benchmark(tmp_path, frame, BenchmarkInfo("b", "classification", 2, "accuracy"))
    frame = pd.DataFrame({"sequence": ["ACGT", "ACGT"], "label": [0, 2], "split": ["train", "test"]})
    with pytest.raises(ValueError, match=r"row 2: label 2 is not a class id in 0..1"):
        write_benchmark(tmp_path, frame, BenchmarkInfo("b", "classification", 2, "accuracy"))
    frame = pd.DataFrame({"sequence": ["ACGT", "ACGT"], "label": [0, 1], "split": ["train", "train"]})
    with pytest.raises(ValueError, match="the test split is empty"):
        write_benchmark(tmp_path, frame, BenchmarkInfo("b", "classification", 2, "accuracy"))
    frame = pd.DataFrame({"seq": ["ACGT"], "label": [0], "split": ["train"]})
    with pytest.raises(ValueError, match=r"missing column\(s\) \['sequence'\]"):
        write_benchmark(tmp_path, frame, BenchmarkInfo("b", "classification", 2, "accuracy"))
    assert not (tmp_path / "data.parquet").exists()


def test_segments_pooling_sees_where_mean_pooling_cannot() -> None:
    """Two classes with the same composition that differ only in where a motif sits: the mean of any
    position-wise (translation-equivariant) features is identical for both, so no head on mean-pooled features
    can tell them apart; ``segments`` pooling keeps the position and a linear probe separates them."""
    rng = np.random.default_rng(0)
    motif, background, rows, labels = "TATAAA", "GC" * 12, [], []
    for label in (0, 1):
        for _ in range(40):
            cut = rng.integers(0, 6) if label == 0 else rng.integers(18, 24)
            rows.append(vocab.encode(background[:cut] + motif + background[cut:]))
            labels.append(label)
    ids, mask = pad_batch(rows, "right")
    hidden = torch.nn.functional.one_hot(ids.long(), vocab.VOCAB_SIZE).double()  # position-wise features
    targets = torch.tensor(labels)
    for pooling, separable in (("mean", False), ("segments", True)):
        pooled = pool(hidden, mask, pooling, segments=4)
        head = torch.nn.Linear(pooled.shape[1], 2).double()
        fit_head(head, pooled[None], targets, "classification", l2=1e-4)
        accuracy = (head(pooled).argmax(-1) == targets).double().mean().item()
        assert (accuracy > 0.95) == separable, (pooling, accuracy)


def test_segments_pooling_ignores_padding_and_reverses_with_the_sequence() -> None:
    torch.manual_seed(0)
    hidden = torch.randn(1, 7, 3, dtype=torch.float64)
    mask = torch.ones(1, 7, dtype=torch.bool)
    padded = torch.cat([torch.zeros(1, 2, 3, dtype=torch.float64), hidden], 1)  # two left pads
    pad_mask = torch.cat([torch.zeros(1, 2, dtype=torch.bool), mask], 1)
    segments = pool(hidden, mask, "segments", segments=3)
    torch.testing.assert_close(pool(padded, pad_mask, "segments", segments=3), segments)
    reversed_segments = pool(hidden.flip(1), mask, "segments", segments=3).unflatten(1, (3, 3)).flip(1).flatten(1)
    torch.testing.assert_close(reversed_segments, segments)  # a base on a boundary is split, so this is exact
    torch.testing.assert_close(pool(hidden, mask, "segments", segments=1), pool(hidden, mask, "mean"))
    torch.testing.assert_close(
        pool(hidden, mask, "segments", segments=3).unflatten(1, (3, 3)).sum(1), pool(hidden, mask, "mean")
    )  # 7 bases in 3 equal shares: the parts add up to the mean
    torch.testing.assert_close(
        pool(padded, pad_mask, "mean_segments", segments=3), torch.cat([pool(hidden, mask, "mean"), segments], 1)
    )


@pytest.mark.parametrize("arch", ["hyenadna", "caduceus-ps"])
def test_adapt_phase_trains_the_language_model_before_the_head(tmp_path: Path, arch: str) -> None:
    """adapt epochs run the backbone's own objective (causal for HyenaDNA, masked for Caduceus) on the
    training sequences: the validation LM loss falls, and history.csv names each phase."""
    write_toy_benchmark(tmp_path / "bench", "classification", n=96)
    architecture = ("hyenadna", TINY) if arch == "hyenadna" else ("caduceus", dict(d_model=16, n_layer=2, rcps=True))
    config = FinetuneConfig(
        epochs=1,
        batch_size=16,
        lr=3e-3,
        adapt_epochs=3,
        adapt_lr=1e-2,
        init="scratch",
        head_init="probe",
        pooling="segments",
        pool_segments=4,
    )
    summary = finetune(tmp_path / "bench", tmp_path / "run", config, seed=1, architecture=architecture, progress=False)
    history = pd.read_csv(tmp_path / "run/history.csv")
    assert history["phase"].tolist() == ["adapt"] * 3 + ["probe", "finetune"]
    adapt = history[history["phase"] == "adapt"]["valid_bits_per_base"].to_numpy()
    assert adapt[-1] < adapt[0] and adapt[-1] < 2.2, adapt  # 2 bits: uniform over ACGT
    assert summary["best_epoch"] == 1 and summary["epochs_run"] == 1


# 48 bp rows in batches of 16: 768 bases a step; each cap allows 7 steps (the smaller of two holds)
@pytest.mark.parametrize(
    "cap", [dict(max_steps=7), dict(max_tokens=7 * 768 + 700), dict(max_steps=7, max_tokens=100 * 768)]
)
def test_step_and_token_caps_cap_each_phase(tmp_path: Path, pretrained: Path, cap: dict[str, int]) -> None:
    write_toy_benchmark(tmp_path / "bench", "classification", n=96)  # 72 train rows: 65 after validation, 5 batches
    config = FinetuneConfig(epochs=3, adapt_epochs=2, batch_size=16, **cap)
    summary = finetune(tmp_path / "bench", tmp_path / "run", config, seed=1, backbone_dir=pretrained, progress=False)
    history = pd.read_csv(tmp_path / "run/history.csv")
    assert history["phase"].tolist() == ["adapt", "adapt", "finetune", "finetune"]  # 5 + 2 steps, each phase
    assert summary["epochs_run"] == 2
