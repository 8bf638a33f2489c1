"""The evaluate stage: one long metrics table, per-suite summaries with uncertainty, Markdown tables, plots.

Inputs are the fine-tuning run directories (``metrics.json`` + ``predictions.parquet``) and the pretraining
summaries (``summary.json``, for the length-extrapolation curve). Outputs (``docs/formats.md``):

``metrics.csv``
    long format ``benchmark, model, seed, split, metric, value`` (every metric of every run and split);
``summary.csv``
    per benchmark x model x metric on the test split: mean, sd over seeds, n_seeds, and a bootstrap
    confidence interval of the seed mean (test examples resampled, the same resample for every seed);
``table.md``
    per suite, rows benchmark and columns model, the suite's reported metric as mean ± sd [CI], with the
    published numbers of HyenaDNA and Caduceus side by side where ``resources/published_results.csv`` has them;
``plots/``
    ``benchmarks.png`` (reported metric per benchmark and model, seeds as points),
    ``extrapolation.png`` (held-out perplexity against context length as a multiple of the training length),
    ``pretraining.png`` (validation loss curves).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from longdna.eval.metrics import compute_metrics
from longdna.io import atomic_path, read_json, write_text

LONG_COLUMNS = ["benchmark", "model", "seed", "split", "metric", "value"]


def collect_metrics(run_dirs: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """The long metrics table of fine-tuning runs."""
    rows = []
    for run in run_dirs:
        summary = read_json(Path(run) / "metrics.json")
        for split, values in summary["metrics"].items():
            for metric, value in values.items():
                rows.append((summary["benchmark"], summary["model"], summary["seed"], split, metric, value))
    return pd.DataFrame(rows, columns=LONG_COLUMNS).sort_values(LONG_COLUMNS[:5], ignore_index=True)


def bootstrap_seed_mean(
    run_dirs: Sequence[Path], resamples: int, confidence: float, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """Percentile CI of each seed-averaged test metric, resampling test examples (same indices for all seeds)."""
    runs = []
    for run in run_dirs:
        summary, predictions = read_json(run / "metrics.json"), pd.read_parquet(run / "predictions.parquet")
        test = predictions.loc[predictions["split"] == "test"].sort_values("row")
        labels = np.stack(test["label"].to_numpy()) if summary["task"] == "multilabel" else test["label"].to_numpy()
        runs.append((summary, labels, np.stack(test["scores"].to_numpy())))
    n = len(runs[0][1])
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {}
    for _ in range(resamples):
        idx = rng.integers(0, n, n)
        per_seed = [compute_metrics(s["task"], labels[idx], scores[idx], s["num_outputs"]) for s, labels, scores in runs]
        for metric in per_seed[0]:
            samples.setdefault(metric, []).append(float(np.mean([m[metric] for m in per_seed])))
    alpha = (1 - confidence) / 2
    return {m: (float(np.nanquantile(v, alpha)), float(np.nanquantile(v, 1 - alpha))) for m, v in samples.items()}


def summarise(
    metrics: pd.DataFrame, run_dirs: Sequence[str | os.PathLike], resamples: int = 1000, confidence: float = 0.95
) -> pd.DataFrame:
    """Mean, sd and bootstrap CI over seeds for each benchmark x model x metric on the test split."""
    dirs_by_run: dict[tuple[str, str], list[Path]] = {}
    for run in map(Path, run_dirs):
        summary = read_json(run / "metrics.json")
        dirs_by_run.setdefault((summary["benchmark"], summary["model"]), []).append(run)
    test = metrics.loc[metrics["split"] == "test"]
    rows = []
    for (benchmark, model), group in test.groupby(["benchmark", "model"], sort=True):
        intervals = bootstrap_seed_mean(dirs_by_run[(benchmark, model)], resamples, confidence) if resamples > 0 else {}
        for metric, values in group.groupby("metric")["value"]:
            values = values.to_numpy(dtype=float)
            low, high = intervals.get(metric, (np.nan, np.nan))
            rows.append({
                "benchmark": benchmark, "model": model, "metric": metric, "mean": values.mean(),
                "sd": values.std(ddof=1) if values.size > 1 else np.nan, "n_seeds": values.size,
                "ci_low": low, "ci_high": high,
            })
    return pd.DataFrame(rows)


#: table headings of the suites (``BenchmarkInfo.suite``); others are shown as they are named
SUITE_TITLES = {
    "demo": "Demo tasks",
    "genomic_benchmarks": "GenomicBenchmarks",
    "nucleotide_transformer": "Nucleotide Transformer tasks",
    "user": "Your data",
}


def markdown_table(
    summary: pd.DataFrame, reported: dict[str, str], suites: dict[str, str], published: pd.DataFrame | None = None
) -> str:
    """Per suite: rows benchmark, columns model (+ published columns), cells mean ± sd [CI] of the reported metric.

    A published value is shown only for the same suite, benchmark and metric as ours, so that a benchmark
    evaluated with another metric than the literature's is never set beside a number it cannot be compared
    with; the sources of the published columns are listed under each table.
    """
    lines = []
    for suite in sorted(set(suites.values())):
        benchmarks = sorted(b for b, s in suites.items() if s == suite)
        rows = summary.loc[summary["benchmark"].isin(benchmarks)]
        rows = rows.loc[[m == reported[b] for b, m in zip(rows["benchmark"], rows["metric"])]]
        models = sorted(rows["model"].unique())
        pub = pd.DataFrame(columns=["benchmark", "model", "metric", "value", "source"])
        if published is not None:
            pub = published.loc[(published["suite"] == suite) & published["benchmark"].isin(benchmarks)]
            pub = pub.loc[[m == reported[b] for b, m in zip(pub["benchmark"], pub["metric"])]]
        pub_models = sorted(pub["model"].unique())
        header = ["benchmark", "metric", *models, *[f"published: {m}" for m in pub_models]]
        lines += [f"### {SUITE_TITLES.get(suite, suite)}", "", "| " + " | ".join(header) + " |",
                  "|" + "---|" * len(header)]
        for benchmark in benchmarks:
            cells = [benchmark, reported[benchmark]]
            for model in models:
                r = rows.loc[(rows["benchmark"] == benchmark) & (rows["model"] == model)]
                cells.append(_cell(r.iloc[0]) if not r.empty else "–")
            for model in pub_models:
                p = pub.loc[(pub["benchmark"] == benchmark) & (pub["model"] == model)]
                cells.append(f"{float(p['value'].iloc[0]):.3f}" if not p.empty else "–")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        if pub_models:
            lines.append("Published numbers:")
            for source, group in pub.groupby("source", sort=True):
                lines.append(f"- {', '.join(sorted(group['model'].unique()))}: {source}")
            lines.append("")
    return "\n".join(lines)


def _cell(row: pd.Series) -> str:
    ci = f" [{row['ci_low']:.3f}, {row['ci_high']:.3f}]" if np.isfinite(row["ci_low"]) else ""
    spread = f" ± {row['sd']:.3f}" if np.isfinite(row["sd"]) else " (1 seed)"  # no sd from one value
    return f"{row['mean']:.3f}{spread}{ci}"


def _savefig(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def plot_benchmarks(metrics: pd.DataFrame, reported: dict[str, str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    test = metrics.loc[(metrics["split"] == "test")]
    test = test.loc[[m == reported[b] for b, m in zip(test["benchmark"], test["metric"])]]
    benchmarks, models = sorted(test["benchmark"].unique()), sorted(test["model"].unique())
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(benchmarks) * max(1, len(models)) / 2), 4))
    width = 0.8 / max(1, len(models))
    for j, model in enumerate(models):
        for i, benchmark in enumerate(benchmarks):
            values = test.loc[(test["benchmark"] == benchmark) & (test["model"] == model), "value"].to_numpy()
            if values.size == 0:
                continue
            x = i + (j - (len(models) - 1) / 2) * width
            ax.bar(x, values.mean(), width, color=f"C{j}", label=model if i == 0 else None, alpha=0.8)
            ax.plot(np.full(values.size, x), values, "k.", ms=4)
    ax.set_xticks(range(len(benchmarks)), [f"{b}\n({reported[b]})" for b in benchmarks], fontsize=8)
    ax.set_ylabel("test metric")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _savefig(fig, path)


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
            rows.append({"model": model, "arch": checkpoint["arch"], "context": int(length),
                         "multiple": int(length) / train_length, "perplexity": values["perplexity"],
                         "bits_per_base": values["bits_per_base"]})
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
            ax.errorbar(plain["multiple"], plain["mean"], yerr=plain["sd"], fmt=f"{marker}-", color=f"C{j}",
                        ms=7 - j, capsize=2, label=model)
            interpolated = own.loc[own["interpolation"] == "position"]
            if not interpolated.empty:
                line = pd.concat([plain.loc[plain["multiple"] == 1], interpolated]).sort_values("multiple")
                ax.errorbar(line["multiple"], line["mean"], yerr=line["sd"], fmt=f"{marker}--", color=f"C{j}",
                            ms=7 - j, mfc="none", capsize=2, label=f"{model} (position interpolation)")
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
    """Write every output of the evaluate stage into ``out_dir``; ``length_extrapolation`` (the per-run tables
    of ``longdna.eval.extrapolation``) adds ``length_extrapolation.csv`` and its plot."""
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
    write_text(out_dir / "table.md", markdown_table(summary, reported, suites, published_table))
    plot_benchmarks(metrics, reported, out_dir / "plots" / "benchmarks.png")
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
