"""The evaluate stage: one long metrics table, per-suite summaries with uncertainty, Markdown tables, plots.

Inputs are the runs in the fine-tuning layout (``metrics.json`` + ``predictions.parquet``): fine-tuned models,
variant-effect probes and the classical baselines (``metrics.json`` ``protocol: classical_baseline``,
:mod:`longdna.eval.baselines`), and the pretraining summaries (``summary.json``, for the length-extrapolation
curve). Outputs (``docs/formats.md``):

``metrics.csv``
    long format ``benchmark, model, seed, split, metric, value`` (every metric of every run and split, per-class
    recall included);
``summary.csv``
    per benchmark x model x metric on the test split: mean, sd over seeds, n_seeds, a two-way bootstrap
    interval of the seed mean (:func:`bootstrap_seed_mean`), whether the row is a model or a baseline, and the
    flags of :func:`summarise`;
``table.md``
    per suite, one row per benchmark x model (models, then baselines, then published numbers): the reported
    metric and, for classification, MCC and macro-F1, as mean ± sd [interval], with the flags and a legend
    saying what the intervals cover;
``table.rst``
    the reported metric's rows of ``table.md`` in reStructuredText (the landing page of ``snakemake --report``);
``plots/``
    ``benchmarks.png`` (reported metric per benchmark and model, baselines hatched, seeds as points),
    ``extrapolation.png`` (held-out perplexity against context length as a multiple of the training length),
    ``pretraining.png`` (validation loss curves).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from longdna.data.benchmarks.info import TaskType
from longdna.eval import BASELINES
from longdna.eval.metrics import compute_metrics
from longdna.io import atomic_path, read_json, write_text

LONG_COLUMNS = ["benchmark", "model", "seed", "split", "metric", "value"]
SUMMARY_COLUMNS = [
    "benchmark",
    "model",
    "metric",
    "mean",
    "sd",
    "n_seeds",
    "ci_low",
    "ci_high",
    "kind",
    "n_one_class",
    "n_not_above_majority",
    "below_best_baseline",
]
#: ``protocol`` of a classical baseline's metrics.json (longdna.eval.baselines.PROTOCOL)
BASELINE_PROTOCOL = "classical_baseline"
#: metrics shown beside the reported one for every classification benchmark (accuracy alone hides imbalance)
CLASSIFICATION_COLUMNS = ("mcc", "f1_macro")


def collect_metrics(run_dirs: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """The long metrics table of fine-tuning runs."""
    rows = []
    for run in run_dirs:
        summary = read_json(Path(run) / "metrics.json")
        for split, values in summary["metrics"].items():
            for metric, value in values.items():
                rows.append((summary["benchmark"], summary["model"], summary["seed"], split, metric, value))
    return pd.DataFrame(rows, columns=LONG_COLUMNS).sort_values(LONG_COLUMNS[:5], ignore_index=True)


@dataclass
class Run:
    """A run's ``metrics.json`` and its test predictions (rows in ``data.parquet`` order)."""

    summary: dict[str, Any]
    rows: np.ndarray
    labels: np.ndarray
    scores: np.ndarray

    @property
    def is_baseline(self) -> bool:
        return self.summary.get("protocol") == BASELINE_PROTOCOL

    def predicts_one_class(self) -> bool:
        """A classifier that gave every test example the same class."""
        return self.summary["task"] == TaskType.CLASSIFICATION and np.unique(self.scores.argmax(1)).size == 1


def read_run(directory: str | os.PathLike) -> Run:
    summary = read_json(Path(directory) / "metrics.json")
    predictions = pd.read_parquet(Path(directory) / "predictions.parquet")
    test = predictions.loc[predictions["split"] == "test"].sort_values("row")
    labels = np.stack(test["label"].to_numpy()) if summary["task"] == TaskType.MULTILABEL else test["label"].to_numpy()
    return Run(summary, test["row"].to_numpy(), labels, np.stack(test["scores"].to_numpy()))


def bootstrap_seed_mean(
    runs: Sequence[Run], resamples: int, confidence: float, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """Percentile interval of each seed-averaged test metric by a two-way bootstrap: each resample draws the
    seeds (runs) with replacement and the test examples with replacement, one example draw for all drawn seeds
    (every seed is scored on the same test set, so its sampling error is shared, not independent per seed),
    and averages the drawn seeds' metrics on the drawn examples. The interval covers seed-to-seed variation
    and test-set sampling; with one run, test-set sampling only."""
    first = runs[0]
    for run in runs[1:]:
        if not np.array_equal(run.rows, first.rows):
            raise ValueError(
                f"{first.summary['benchmark']}/{first.summary['model']}: the seeds' runs were scored"
                " on different test rows"
            )
    task, outputs = first.summary["task"], first.summary["num_outputs"]
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {}
    for _ in range(resamples):
        weights = np.bincount(rng.integers(0, len(runs), len(runs)), minlength=len(runs)) / len(runs)
        idx = rng.integers(0, first.rows.size, first.rows.size)
        per_seed = {
            i: compute_metrics(task, runs[i].labels[idx], runs[i].scores[idx], outputs) for i in np.flatnonzero(weights)
        }
        for metric in per_seed[next(iter(per_seed))]:
            samples.setdefault(metric, []).append(float(sum(weights[i] * m[metric] for i, m in per_seed.items())))
    alpha = (1 - confidence) / 2
    return {m: (float(np.nanquantile(v, alpha)), float(np.nanquantile(v, 1 - alpha))) for m, v in samples.items()}


def summarise(
    metrics: pd.DataFrame, run_dirs: Sequence[str | os.PathLike], resamples: int = 1000, confidence: float = 0.95
) -> pd.DataFrame:
    """Per benchmark x model x metric on the test split (:data:`SUMMARY_COLUMNS`): mean, sd and two-way
    bootstrap interval over seeds; ``kind`` (``model`` or ``baseline``); and the flags of each model row:
    ``n_one_class`` (seeds that predicted one class for every test example; classification only),
    ``n_not_above_majority`` (seeds whose value is not above the ``majority`` baseline's value for the same
    seed) and ``below_best_baseline`` (the mean is below the best baseline mean of the benchmark)."""
    runs_by_key: dict[tuple[str, str], list[Run]] = {}
    for run in map(read_run, run_dirs):
        runs_by_key.setdefault((run.summary["benchmark"], run.summary["model"]), []).append(run)
    test = metrics.loc[metrics["split"] == "test"]
    rows = []
    for (benchmark, model), group in test.groupby(["benchmark", "model"], sort=True):
        runs = runs_by_key[(benchmark, model)]
        baseline = runs[0].is_baseline
        intervals = bootstrap_seed_mean(runs, resamples, confidence) if resamples > 0 else {}
        one_class = (
            None
            if baseline or runs[0].summary["task"] != TaskType.CLASSIFICATION
            else sum(r.predicts_one_class() for r in runs)
        )
        for metric, values in group.groupby("metric"):
            value = values["value"].to_numpy(dtype=float)
            low, high = intervals.get(metric, (np.nan, np.nan))
            rows.append(
                {
                    "benchmark": benchmark,
                    "model": model,
                    "metric": metric,
                    "mean": value.mean(),
                    "sd": value.std(ddof=1) if value.size > 1 else np.nan,
                    "n_seeds": value.size,
                    "ci_low": low,
                    "ci_high": high,
                    "kind": "baseline" if baseline else "model",
                    "n_one_class": one_class,
                }
            )
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS[:-2])
    return _compare_with_baselines(summary, test)


def _compare_with_baselines(summary: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """``n_not_above_majority`` and ``below_best_baseline`` of the model rows (empty without baselines)."""
    kinds = summary.drop_duplicates(["benchmark", "model"]).set_index(["benchmark", "model"])["kind"]
    kind = pd.Series([kinds.get((b, m)) for b, m in zip(test["benchmark"], test["model"])], index=test.index)
    majority = test.loc[(kind == "baseline") & (test["model"] == "majority")]
    paired = test.loc[kind == "model"].merge(
        majority[["benchmark", "seed", "metric", "value"]],
        on=["benchmark", "seed", "metric"],
        suffixes=("", "_majority"),
    )
    not_above = (
        (paired["value"] <= paired["value_majority"])
        .groupby([paired["benchmark"], paired["model"], paired["metric"]])
        .sum()
    )
    best = summary.loc[summary["kind"] == "baseline"].groupby(["benchmark", "metric"])["mean"].max()
    keys = list(zip(summary["benchmark"], summary["model"], summary["metric"]))
    # a class's recall is not a score to beat: the majority baseline's is 1 for its class, 0 for the others
    compared = (summary["kind"] == "model") & ~summary["metric"].str.startswith("recall_")
    summary["n_not_above_majority"] = pd.array(
        [not_above.get(k) if c else None for k, c in zip(keys, compared)], dtype="Int64"
    )
    summary["below_best_baseline"] = pd.array(
        [
            bool(mean < best[(b, metric)]) if c and (b, metric) in best.index else None
            for (b, _, metric), mean, c in zip(keys, summary["mean"], compared)
        ],
        dtype="boolean",
    )
    summary["n_one_class"] = summary["n_one_class"].astype("Int64")
    return summary[SUMMARY_COLUMNS]


#: table headings of the suites (``BenchmarkInfo.suite``); others are shown as they are named
SUITE_TITLES = {
    "demo": "Demo tasks",
    "genomic_benchmarks": "GenomicBenchmarks",
    "nucleotide_transformer": "Nucleotide Transformer tasks",
    "user": "Your data",
}


def markdown_table(
    summary: pd.DataFrame,
    reported: dict[str, str],
    suites: dict[str, str],
    published: pd.DataFrame | None = None,
    resamples: int = 1000,
    confidence: float = 0.95,
) -> str:
    """Per suite: one row per benchmark x model -- the models, then the classical baselines, then published
    numbers -- with the benchmark's reported metric and, for classification, MCC and macro-F1 as
    ``mean ± sd [interval]``; the flags of :func:`summarise`; a legend under the tables.

    A published value is shown only for the same suite, benchmark and metric as ours, so that a benchmark
    evaluated with another metric than the literature's is never set beside a number it cannot be compared
    with; the sources of the published numbers are listed under each table.
    """
    lines = []
    for suite in sorted(set(suites.values())):
        benchmarks = sorted(b for b, s in suites.items() if s == suite)
        rows = summary.loc[summary["benchmark"].isin(benchmarks)]
        extra = [m for m in CLASSIFICATION_COLUMNS if (rows["metric"] == m).any()]
        pub = pd.DataFrame(columns=["benchmark", "model", "metric", "value", "source"])
        if published is not None:
            pub = published.loc[(published["suite"] == suite) & published["benchmark"].isin(benchmarks)]
            pub = pub.loc[[m == reported[b] for b, m in zip(pub["benchmark"], pub["metric"])]]
        header = ["benchmark", "metric", "model", "value", *extra, "flags"]
        lines += [
            f"### {SUITE_TITLES.get(suite, suite)}",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]
        for benchmark in benchmarks:
            own = rows.loc[rows["benchmark"] == benchmark]
            for model in _row_order(own):
                cells = own.loc[own["model"] == model].set_index("metric")
                first = cells.iloc[0]
                name = f"{model} (baseline)" if first["kind"] == "baseline" else model
                values = [_cell(cells.loc[m]) if m in cells.index else "–" for m in (reported[benchmark], *extra)]
                lines.append(
                    "| "
                    + " | ".join(
                        [benchmark, reported[benchmark], name, *values, _flags(cells.loc[reported[benchmark]])]
                    )
                    + " |"
                )
            for _, p in pub.loc[pub["benchmark"] == benchmark].sort_values("model").iterrows():
                cells = [
                    benchmark,
                    reported[benchmark],
                    f"published: {p['model']}",
                    f"{float(p['value']):.3f}",
                    *["–"] * len(extra),
                    "",
                ]
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        if not pub.empty:
            lines.append("Published numbers:")
            for source, group in pub.groupby("source", sort=True):
                lines.append(f"- {', '.join(sorted(group['model'].unique()))}: {source}")
            lines.append("")
    lines += _legend(summary, resamples, confidence)
    return "\n".join(lines)


def rst_table(summary: pd.DataFrame, reported: dict[str, str], suites: dict[str, str], confidence: float = 0.95) -> str:
    """The headline of ``table.md`` in reStructuredText, for the landing page of ``snakemake --report``: per
    suite, one row per benchmark x model (models, then baselines) with the reported test metric as
    ``mean ± sd [interval]`` and the flags (``table.md`` has the other metrics, published numbers, legend)."""
    lines = []
    for suite in sorted(set(suites.values())):
        benchmarks = sorted(b for b, s in suites.items() if s == suite)
        lines += [
            f".. list-table:: {SUITE_TITLES.get(suite, suite)}: test metric, mean ± sd over seeds"
            f" [{confidence:.0%} interval]",
            "   :header-rows: 1",
            "",
        ]
        rows = [["benchmark", "metric", "model", "test", "flags"]]
        for benchmark in benchmarks:
            own = summary.loc[(summary["benchmark"] == benchmark) & (summary["metric"] == reported[benchmark])]
            for model in _row_order(own):
                row = own.loc[own["model"] == model].iloc[0]
                name = f"{model} (baseline)" if row["kind"] == "baseline" else model
                rows.append([benchmark, reported[benchmark], name, _cell(row), _flags(row) or "–"])
        for row in rows:
            lines += [f"   * - {row[0]}", *[f"     - {cell}" for cell in row[1:]]]
        lines.append("")
    return "\n".join(lines)


def _row_order(rows: pd.DataFrame) -> list[str]:
    """Models in name order, then the baselines in the order of :data:`BASELINES`."""
    kinds = rows.drop_duplicates("model").set_index("model")["kind"]
    models = sorted(m for m, k in kinds.items() if k == "model")
    return models + [b for b in BASELINES if kinds.get(b) == "baseline"]


def _cell(row: pd.Series) -> str:
    ci = f" [{row['ci_low']:.3f}, {row['ci_high']:.3f}]" if np.isfinite(row["ci_low"]) else ""
    spread = f" ± {row['sd']:.3f}" if np.isfinite(row["sd"]) else " (1 seed)"  # no sd from one value
    below = " ▼" if row["kind"] == "model" and _is_true(row["below_best_baseline"]) else ""
    return f"{row['mean']:.3f}{spread}{ci}{below}"


def _is_true(flag: object) -> bool:
    """A flag of summary.csv: true, false or missing (no baselines, or not a model row)."""
    return not pd.isna(flag) and bool(flag)


def _flags(row: pd.Series) -> str:
    """The run-level warnings of a model row (on the reported metric)."""
    flags = []
    for column, text in (("n_one_class", "one class"), ("n_not_above_majority", "≤ majority")):
        if not pd.isna(row[column]) and row[column] > 0:
            flags.append(f"⚠ {text} in {row[column]}/{row['n_seeds']} seeds")
    return "; ".join(flags)


def _legend(summary: pd.DataFrame, resamples: int, confidence: float) -> list[str]:
    """What the cells, intervals, baselines and flags of the tables mean."""
    level = f"{confidence:.0%}"
    interval = (
        f"[low, high] is the {level} percentile interval of the seed mean from a two-way bootstrap ({resamples}"
        " resamples): each resample draws the seeds with replacement and the test examples with replacement (one"
        " draw for all seeds, which are scored on the same test set), so it covers the variation between seeds"
        " (training randomness and each seed's validation split) and the sampling of the test set, not the choice"
        " of benchmark or settings; with a single seed it covers the test set's sampling only."
        if resamples > 0
        else "No intervals (evaluate.bootstrap: 0)."
    )
    lines = [
        "#### How to read these tables",
        "",
        f'- Cells: test-split mean ± standard deviation over the seeds ("(1 seed)": one run). {interval}',
    ]
    if (summary["kind"] == "baseline").any():
        lines += [
            "- Baselines, fitted for every seed on the same training rows as the models, chosen on the same"
            " validation rows and scored on the same test rows (longdna.eval.baselines): `majority` predicts the"
            " training split's majority class (regression: its mean; multi-label: each label's frequency);"
            " `kmer_lr` is a logistic regression (regression: ridge) on k-mer counts, k in 3-6 and the penalty"
            " chosen on validation; `onehot_lr` the same on the position one-hot of each sequence, truncated or"
            " padded to the modal training length.",
            "- ▼: the model's mean is below the best classical baseline of this benchmark on this metric.",
            "- ⚠ ≤ majority in i/n seeds: the reported metric of i of the n seeds is not above the majority"
            " baseline's for the same seed.",
        ]
    else:
        lines.append(
            "- No classical baselines in this evaluation (evaluate.baselines: false), so no ▼ and no"
            " comparison with the majority class."
        )
    lines += [
        "- ⚠ one class in i/n seeds: i of the n seeds predicted the same class for every test example (a"
        " collapsed classifier).",
        "",
    ]
    return lines


def _savefig(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def plot_benchmarks(metrics: pd.DataFrame, reported: dict[str, str], path: Path, baselines: Sequence[str] = ()) -> None:
    """Reported test metric per benchmark and model: bars are seed means, dots seeds; ``baselines`` (model
    names of classical baselines) hatched, after the models."""
    _savefig(benchmarks_figure(metrics, reported, baselines), path)


def benchmarks_figure(metrics: pd.DataFrame, reported: dict[str, str], baselines: Sequence[str] = ()):
    """The figure of :func:`plot_benchmarks`: one legend entry per model, on its first bar (a model need not
    run every benchmark)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    test = metrics.loc[(metrics["split"] == "test")]
    test = test.loc[[m == reported[b] for b, m in zip(test["benchmark"], test["metric"])]]
    benchmarks = sorted(test["benchmark"].unique())
    models = sorted(set(test["model"]) - set(baselines)) + [b for b in BASELINES if b in baselines]
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(benchmarks) * max(1, len(models)) / 2), 4))
    width = 0.8 / max(1, len(models))
    for j, model in enumerate(models):
        if model in baselines:  # grey and hatched, so that the models stand out against them
            style = {
                "color": str(0.45 + 0.15 * BASELINES.index(model)),
                "hatch": "//",
                "edgecolor": "k",
                "label": f"{model} (baseline)",
            }
        else:
            style = {"color": f"C{j}", "label": model}
        for i, benchmark in enumerate(benchmarks):
            values = test.loc[(test["benchmark"] == benchmark) & (test["model"] == model), "value"].to_numpy()
            if values.size == 0:
                continue
            x = i + (j - (len(models) - 1) / 2) * width
            ax.bar(x, values.mean(), width, alpha=0.8, **style)
            style.pop("label", None)  # one legend entry per model
            ax.plot(np.full(values.size, x), values, "k.", ms=4)
    ax.set_xticks(range(len(benchmarks)), [f"{b}\n({reported[b]})" for b in benchmarks], fontsize=8)
    ax.set_ylabel("test metric")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_extrapolation(pretrain_dirs: dict[str, Path], path: Path) -> pd.DataFrame:
    """Held-out perplexity against context length (multiples of each model's training length)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for model, directory in pretrain_dirs.items():
        summary, checkpoint = read_json(directory / "summary.json"), read_json(directory / "config.json")
        train_length = checkpoint["pretrain"]["config"]["seq_len"]
        for length, values in summary["test_by_length"].items():
            rows.append(
                {
                    "model": model,
                    "arch": checkpoint["arch"],
                    "context": int(length),
                    "multiple": int(length) / train_length,
                    "perplexity": values["perplexity"],
                    "bits_per_base": values["bits_per_base"],
                }
            )
    table = pd.DataFrame(rows).sort_values(["model", "context"], ignore_index=True)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for model, group in table.groupby("model"):
        ax.plot(group["multiple"], group["perplexity"], "o-", label=model)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("evaluation length / training length")
    ax.set_ylabel("test perplexity (per base)")
    ax.axvline(1, color="grey", ls=":", lw=1)
    ax.legend(fontsize=8)
    ax.set_title("zero-shot length extrapolation")
    fig.tight_layout()
    _savefig(fig, path)
    return table


def plot_pretraining(metric_logs: dict[str, Path], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for model, log in metric_logs.items():
        rows = [json.loads(line) for line in Path(log).read_text().splitlines()]
        valid = [r for r in rows if r["kind"] == "valid"]
        ax.plot([r["step"] for r in valid], [r["bits_per_base"] for r in valid], "o-", ms=3, label=model)
    ax.axhline(2.0, color="grey", ls=":", lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss (bits per base)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _savefig(fig, path)


LENGTH_EXTRAPOLATION_KEYS = ["benchmark", "model", "arch", "multiple", "length", "interpolation", "metric"]


def length_extrapolation_table(tables: Sequence[str | os.PathLike], reported: dict[str, str]) -> pd.DataFrame:
    """Per benchmark, model, multiple, length and interpolation: ``mean``, ``sd`` and ``n_seeds`` of the
    benchmark's reported metric over the per-run extrapolation tables (``longdna.eval.extrapolation``)."""
    runs = pd.concat([pd.read_csv(t) for t in tables], ignore_index=True)
    runs = runs.loc[[m == reported[b] for b, m in zip(runs["benchmark"], runs["metric"])]]
    grouped = runs.groupby(LENGTH_EXTRAPOLATION_KEYS, sort=True)["value"]
    table = grouped.agg(mean="mean", sd=lambda v: v.std(ddof=1) if v.size > 1 else np.nan, n_seeds="size")
    return table.reset_index()


def plot_length_extrapolation(table: pd.DataFrame, path: Path) -> None:
    """Reported metric against evaluation length / training length, one panel per benchmark, one line per
    model; position interpolation dashed, starting from the model's own 1x point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benchmarks = sorted(table["benchmark"].unique())
    fig, axes = plt.subplots(1, len(benchmarks), figsize=(5 * len(benchmarks), 4), squeeze=False)
    for ax, benchmark in zip(axes[0], benchmarks):
        rows = table.loc[table["benchmark"] == benchmark]
        for j, model in enumerate(sorted(rows["model"].unique())):
            own = rows.loc[rows["model"] == model]
            marker = "os^Dv<>p"[j % 8]  # overlapping lines (models that all hold at 1.0) stay distinguishable
            plain = own.loc[own["interpolation"] == "none"].sort_values("multiple")
            ax.errorbar(
                plain["multiple"],
                plain["mean"],
                yerr=plain["sd"],
                fmt=f"{marker}-",
                color=f"C{j}",
                ms=7 - j,
                capsize=2,
                label=model,
            )
            interpolated = own.loc[own["interpolation"] == "position"]
            if not interpolated.empty:
                line = pd.concat([plain.loc[plain["multiple"] == 1], interpolated]).sort_values("multiple")
                ax.errorbar(
                    line["multiple"],
                    line["mean"],
                    yerr=line["sd"],
                    fmt=f"{marker}--",
                    color=f"C{j}",
                    ms=7 - j,
                    mfc="none",
                    capsize=2,
                    label=f"{model} (position interpolation)",
                )
        multiples = sorted(rows["multiple"].unique())
        ax.set_xscale("log", base=2)
        ax.set_xticks(multiples, [f"{m:g}x" for m in multiples])
        ax.axvline(1, color="grey", ls=":", lw=1)
        ax.set_xlabel("evaluation length / training length")
        ax.set_ylabel(f"test {rows['metric'].iloc[0]}")
        ax.set_title(benchmark)
        ax.legend(fontsize=7)
    fig.tight_layout()
    _savefig(fig, path)


def write_evaluation(
    run_dirs: Sequence[str | os.PathLike],
    pretrain_dirs: dict[str, str | os.PathLike],
    out_dir: str | os.PathLike,
    published: str | os.PathLike | None = None,
    resamples: int = 1000,
    confidence: float = 0.95,
    length_extrapolation: Sequence[str | os.PathLike] = (),
) -> None:
    """Write every output of the evaluate stage into ``out_dir``. ``run_dirs`` are the runs of the models and
    of the classical baselines (told apart by their ``metrics.json``); ``length_extrapolation`` (the per-run
    tables of ``longdna.eval.extrapolation``) adds ``length_extrapolation.csv`` and its plot."""
    out_dir = Path(out_dir)
    run_dirs = [Path(d) for d in run_dirs]
    metrics = collect_metrics(run_dirs)
    info = {}
    for run in run_dirs:
        s = read_json(run / "metrics.json")
        info[s["benchmark"]] = (s["metric"], s.get("suite", "user"))
    reported = {b: m for b, (m, _) in info.items()}
    suites = {b: s for b, (_, s) in info.items()}
    summary = summarise(metrics, run_dirs, resamples, confidence)
    published_table = pd.read_csv(published) if published else None
    for name, frame in (("metrics.csv", metrics), ("summary.csv", summary)):
        with atomic_path(out_dir / name, suffix=".csv") as tmp:
            frame.to_csv(tmp, index=False)
    write_text(out_dir / "table.md", markdown_table(summary, reported, suites, published_table, resamples, confidence))
    write_text(out_dir / "table.rst", rst_table(summary, reported, suites, confidence))
    baselines = summary.loc[summary["kind"] == "baseline", "model"].unique()
    plot_benchmarks(metrics, reported, out_dir / "plots" / "benchmarks.png", baselines)
    pretrain_dirs = {m: Path(d) for m, d in pretrain_dirs.items()}
    extrapolation = plot_extrapolation(pretrain_dirs, out_dir / "plots" / "extrapolation.png")
    with atomic_path(out_dir / "extrapolation.csv", suffix=".csv") as tmp:
        extrapolation.to_csv(tmp, index=False)
    plot_pretraining({m: d / "metrics.jsonl" for m, d in pretrain_dirs.items()}, out_dir / "plots" / "pretraining.png")
    if length_extrapolation:
        lengths = length_extrapolation_table(length_extrapolation, reported)
        with atomic_path(out_dir / "length_extrapolation.csv", suffix=".csv") as tmp:
            lengths.to_csv(tmp, index=False)
        plot_length_extrapolation(lengths, out_dir / "plots" / "length_extrapolation.png")
