# Stage 5: tables, uncertainty and plots over every fine-tuning run and pretrained model.


rule evaluate:
    input:
        metrics=[run_dir(b, m, s) + "/metrics.json" for b, m, s in RUNS],
        predictions=[run_dir(b, m, s) + "/predictions.parquet" for b, m, s in RUNS],
        pretrain=expand(rules.pretrain_model.output.summary, model=config["models"]),
    output:
        metrics="results/evaluation/metrics.csv",
        summary="results/evaluation/summary.csv",
        table=report("results/evaluation/table.md", caption="../report/table.rst", category="Evaluation"),
        extrapolation="results/evaluation/extrapolation.csv",
        benchmarks_plot=report(
            "results/evaluation/plots/benchmarks.png", caption="../report/benchmarks.rst", category="Evaluation"
        ),
        extrapolation_plot=report(
            "results/evaluation/plots/extrapolation.png", caption="../report/extrapolation.rst", category="Evaluation"
        ),
        pretraining_plot=report(
            "results/evaluation/plots/pretraining.png", caption="../report/pretraining.rst", category="Pretraining"
        ),
    params:
        run_dirs=[run_dir(b, m, s) for b, m, s in RUNS],
        pretrain_dirs={m: pretrain_dir(m) for m in config["models"]},
        out_dir="results/evaluation",
        bootstrap=config.get("evaluate", {}).get("bootstrap", 1000),
        confidence=config.get("evaluate", {}).get("confidence", 0.95),
        published=config.get("evaluate", {}).get("published"),
    log:
        "logs/evaluate.log",
    benchmark:
        "benchmarks/evaluate.tsv"
    threads: 1
    resources:
        mem_mb=resource("evaluate", "mem_mb", 4000),
        runtime=resource("evaluate", "runtime", scaled_runtime(30)),
    conda:
        ENVS / "eval.yaml"
    script:
        SCRIPTS / "evaluate.py"
