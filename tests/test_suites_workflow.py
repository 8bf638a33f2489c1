"""The suites and the report inside real workflow runs: user data prepared by Snakemake from the shipped
example configuration, and `snakemake --report` on the finished CI run."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, snakemake

pytestmark = pytest.mark.slow


def test_user_data_example_configuration(tmp_path: Path) -> None:
    shutil.copytree(REPO / "resources/examples", tmp_path / "resources/examples")
    targets = [f"results/benchmarks/{b}/data.parquet" for b in ("gc_class", "gc_fraction", "repeat_intervals")]
    snakemake(tmp_path, *targets, configfile=REPO / "config/user_data.yaml")
    info = {
        b: json.loads((tmp_path / f"results/benchmarks/{b}/benchmark.json").read_text())
        for b in ("gc_class", "gc_fraction", "repeat_intervals")
    }
    assert info["gc_class"]["label_names"] == ["at_rich", "gc_rich"]
    assert info["gc_fraction"]["task"] == "regression" and info["gc_fraction"]["metric"] == "spearman"
    assert info["repeat_intervals"]["label_names"] == ["unique", "repeat"]
    intervals = pd.read_parquet(tmp_path / "results/benchmarks/repeat_intervals/data.parquet")
    assert set(intervals.loc[intervals["split"] == "test", "id"].str.split(":").str[0]) == {"chr4", "chr5"}


def embedded_file(html: str, name: str) -> bytes:
    """The content of a result embedded in a Snakemake report as a base64 data URI."""
    match = re.search(
        rf'"data_uri": "data:[^;]+;charset=utf8;filename={re.escape(name)};base64,([A-Za-z0-9+/=]+)"', html
    )
    assert match, f"{name} is not embedded in the report"
    return base64.b64decode(match.group(1))


def test_report_renders_tables_curves_and_plots(ci_workflow: Path) -> None:
    snakemake(ci_workflow, "--report", "report.html", configfile=ci_workflow / "config.yaml")
    html = (ci_workflow / "report.html").read_text()
    table = embedded_file(html, "table.md").decode()
    assert table == (ci_workflow / "results/evaluation/table.md").read_text()
    assert "| motif | accuracy |" in table and "±" in table
    for plot in ("benchmarks.png", "extrapolation.png", "pretraining.png", "curve.png"):
        assert embedded_file(html, plot).startswith(b"\x89PNG\r\n\x1a\n")
    # captions are rendered from workflow/report/*.rst
    assert "bootstrap confidence interval of the seed mean" in html
    assert "zero-shot length extrapolation" in html.lower()
