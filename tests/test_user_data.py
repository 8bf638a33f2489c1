"""User data hygiene: duplicate sequences within and across splits, conflicting labels, numeric labels written
in several ways, mixed label kinds, single classes; what is removed, what is reported (benchmark.json and the
job log), and errors that name the file and the rows."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from longdna.data.benchmarks.format import BenchmarkFormatError, read_benchmark
from longdna.data.benchmarks.suites import prepare_benchmark


def write_csv(tmp_path: Path, rows: list[tuple], columns: tuple[str, ...] = ("sequence", "label", "split")) -> str:
    path = tmp_path / "data.csv"
    pd.DataFrame(rows, columns=list(columns)).to_csv(path, index=False)
    return str(path)


def prepare(tmp_path: Path, path: str, **spec) -> tuple[pd.DataFrame, dict]:
    prepare_benchmark(
        "mine",
        {"suite": "user", "path": path, "format": "csv", **spec},
        tmp_path / "out",
        None,
        None,
        tmp_path / "cache",
    )
    frame, _ = read_benchmark(tmp_path / "out")
    return frame, json.loads((tmp_path / "out/benchmark.json").read_text())


def test_cross_split_duplicates_leave_validation_and_test(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        ("AAAA", "a", "train"),
        ("CCCC", "b", "train"),
        ("aaaa", "a", "train"),  # within train (any case)
        ("GGGG", "b", "train"),
        ("CCCC", "b", "valid"),
        ("TTTT", "a", "valid"),
        ("TTTT", "a", "valid"),
        ("AAAA", "a", "test"),
        ("ACGT", "b", "test"),
        ("TTTT", "a", "test"),
        ("GGGA", "a", "test"),
    ]
    frame, info = prepare(tmp_path, write_csv(tmp_path, rows))
    assert frame["split"].value_counts().to_dict() == {"train": 4, "valid": 2, "test": 2}
    assert sorted(frame.loc[frame["split"] == "test", "sequence"]) == ["ACGT", "GGGA"]
    assert frame.loc[frame["split"] == "valid", "sequence"].tolist() == ["TTTT", "TTTT"]  # only CCCC was in train
    assert info["duplicates"] == {
        "conflicting_sequences": 0,
        "conflicting_rows_dropped": 0,
        "cross_split_removed": {"valid": 1, "test": 2},
        "within_split_duplicates": {"train": 1, "valid": 1, "test": 0},
    }
    log = capsys.readouterr().err
    assert "removed: 1 from valid, 2 from test" in log and "within a split, kept: train 1, valid 1" in log
    assert info["sizes"]["test"] == {"rows": 2, "bases": 8, "max_length": 4}


def test_a_random_split_keeps_copies_of_a_sequence_together(tmp_path: Path) -> None:
    rows = [(f"{'ACGT'[i % 4]}{'ACGT'[i // 4 % 4]}{'ACGT'[i // 16 % 4]}AC", "ab"[i % 2]) for i in range(60)]
    frame, info = prepare(tmp_path, write_csv(tmp_path, rows * 2, ("sequence", "label")), seed=5)
    per_sequence = frame.groupby("sequence")["split"].nunique()
    assert (per_sequence == 1).all() and len(frame) == 120  # every sequence twice, both in one split
    assert info["duplicates"]["cross_split_removed"] == {"test": 0}
    assert info["duplicates"]["within_split_duplicates"] == {"train": 48, "test": 12}


def test_conflicting_labels_are_an_error_naming_both_rows(tmp_path: Path) -> None:
    rows = [
        ("AAAA", "a", "train"),
        ("CCCC", "b", "train"),
        ("GGGG", "a", "train"),
        ("cccc", "a", "test"),
        ("TTTT", "b", "test"),
    ]
    path = write_csv(tmp_path, rows)
    with pytest.raises(
        BenchmarkFormatError,
        match=rf"^{path}: rows 2 and 4 have the same sequence with the labels"
        r" 'b' and 'a' \(1 sequences with conflicting labels, in 2 rows\);"
        r".*conflicting_labels: drop",
    ):
        prepare(tmp_path, path)
    assert not (tmp_path / "out").exists()


def test_conflicting_labels_dropped_on_request(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        ("AAAA", "a", "train"),
        ("CCCC", "b", "train"),
        ("GGGG", "a", "train"),
        ("CCCC", "a", "test"),
        ("TTTT", "b", "test"),
        ("GGGC", "b", "train"),
        ("AAAT", "a", "test"),
    ]
    frame, info = prepare(tmp_path, write_csv(tmp_path, rows), conflicting_labels="drop")
    assert "CCCC" not in set(frame["sequence"]) and len(frame) == 5
    assert info["duplicates"]["conflicting_sequences"] == 1 and info["duplicates"]["conflicting_rows_dropped"] == 2
    assert "warning: " in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"conflicting_labels must be one of \('error', 'drop'\), not 'keep'"):
        prepare(tmp_path, write_csv(tmp_path, rows), conflicting_labels="keep")


def test_numbers_are_one_class_however_written(tmp_path: Path) -> None:
    rows = [
        ("AAAA", "1", "train"),
        ("CCCC", "1.0", "train"),
        ("GGGG", "0", "train"),
        ("TTTT", "0.00", "test"),
        ("ACGT", "1e0", "test"),
        ("AACC", "2.50", "train"),
        ("GGTT", "2.5", "test"),
    ]
    frame, info = prepare(tmp_path, write_csv(tmp_path, rows))
    assert info["label_names"] == ["0", "1", "2.5"]
    assert frame["label"].tolist() == [1, 1, 0, 0, 1, 2, 2]
    _, declared = prepare(tmp_path, write_csv(tmp_path, rows), labels=[2.5, 1, 0])
    assert declared["label_names"] == ["2.5", "1", "0"]


def test_mixed_numbers_and_text_are_an_error_naming_rows(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path, [("AAAA", "pos", "train"), ("CCCC", "neg", "train"), ("GGGG", "1", "test"), ("TTTT", "neg", "test")]
    )
    with pytest.raises(
        BenchmarkFormatError,
        match=rf"^{path}: labels mix numbers and text \(row 3: '1', row 1:"
        r" 'pos'; 1 numeric and 3 text labels\)",
    ):
        prepare(tmp_path, path)


def test_a_single_class_is_an_error_naming_the_rows(tmp_path: Path) -> None:
    path = write_csv(tmp_path, [("AAAA", "x", "train"), ("CCCC", "x", "train"), ("GGGG", "x", "test")])
    with pytest.raises(
        BenchmarkFormatError,
        match=rf"^{path}: every row of the file \(rows 1, 2, 3\) has the label"
        r" 'x': a classification needs at least two classes",
    ):
        prepare(tmp_path, path)
    path = write_csv(tmp_path, [("AAAA", "x", "train"), ("CCCC", "x", "train"), ("GGGG", "y", "test")])
    with pytest.raises(BenchmarkFormatError, match=r"every row of the train split \(rows 1, 2\) has the label 'x'"):
        prepare(tmp_path, path)


def test_removing_cross_split_duplicates_may_empty_the_test_split(tmp_path: Path) -> None:
    path = write_csv(tmp_path, [("AAAA", "x", "train"), ("CCCC", "y", "train"), ("aaaa", "x", "test")])
    with pytest.raises(BenchmarkFormatError, match=r"the test split is empty once its 1 rows that repeat sequences"):
        prepare(tmp_path, path)


def test_regression_targets_of_one_sequence_may_differ(tmp_path: Path) -> None:
    rows = [
        ("AAAA", 0.5, "train"),
        ("AAAA", 0.7, "train"),
        ("CCCC", 1.0, "train"),
        ("AAAA", 0.6, "test"),
        ("GGGG", 2.0, "test"),
    ]
    frame, info = prepare(tmp_path, write_csv(tmp_path, rows), task_type="regression")  # replicates, not conflicts
    assert frame["label"].tolist() == [0.5, 0.7, 1.0, 2.0]
    assert info["duplicates"]["cross_split_removed"] == {"test": 1}
    assert info["duplicates"]["within_split_duplicates"] == {"train": 1, "test": 0}
