"""The evaluate stage's figures and the report's landing-page table (longdna.eval.report)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from docutils.core import publish_parts

from longdna.eval.report import benchmarks_figure, rst_table


def test_every_model_has_a_legend_entry_when_one_skips_the_first_benchmark() -> None:
    rows = [
        ("alpha", "a", 1, 0.7),
        ("alpha", "a", 2, 0.8),
        ("beta", "a", 1, 0.6),
        ("beta", "b", 1, 0.9),
        ("beta", "b", 2, 0.85),
        ("alpha", "majority", 1, 0.5),
        ("beta", "majority", 1, 0.5),
    ]
    metrics = pd.DataFrame(
        [
            {"benchmark": b, "model": m, "seed": s, "split": "test", "metric": "accuracy", "value": v}
            for b, m, s, v in rows
        ]
    )
    fig = benchmarks_figure(metrics, {"alpha": "accuracy", "beta": "accuracy"}, baselines=["majority"])
    labels = [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
    plt.close(fig)
    assert labels == ["a", "b", "majority (baseline)"]  # b runs only on beta, the second benchmark


def test_landing_page_table_renders_with_the_numbers() -> None:
    summary = pd.DataFrame(
        [
            {
                "benchmark": "motif",
                "model": "hyena",
                "metric": "accuracy",
                "mean": 0.8125,
                "sd": 0.0125,
                "n_seeds": 2,
                "ci_low": 0.75,
                "ci_high": 0.875,
                "kind": "model",
                "n_one_class": 0,
                "n_not_above_majority": 1,
                "below_best_baseline": False,
            },
            {
                "benchmark": "motif",
                "model": "hyena",
                "metric": "mcc",
                "mean": 0.6,
                "sd": 0.1,
                "n_seeds": 2,
                "ci_low": 0.4,
                "ci_high": 0.7,
                "kind": "model",
                "n_one_class": 0,
                "n_not_above_majority": 0,
                "below_best_baseline": False,
            },
            {
                "benchmark": "motif",
                "model": "majority",
                "metric": "accuracy",
                "mean": 0.5,
                "sd": 0.0,
                "n_seeds": 2,
                "ci_low": 0.4,
                "ci_high": 0.6,
                "kind": "baseline",
                "n_one_class": pd.NA,
                "n_not_above_majority": pd.NA,
                "below_best_baseline": pd.NA,
            },
        ]
    )
    html = publish_parts(
        rst_table(summary, {"motif": "accuracy"}, {"motif": "demo"}),
        writer="html",
        settings_overrides={"halt_level": 2},
    )["html_body"]
    assert "Demo tasks: test metric" in html and html.count("<tr>") == 3  # header, hyena, majority
    assert "0.812 ± 0.013 [0.750, 0.875]" in html and "majority (baseline)" in html
    assert "⚠ ≤ majority in 1/2 seeds" in html and "0.600 ± 0.100" not in html  # only the reported metric
