# Stage 5: classical baselines on every benchmark's splits; tables, uncertainty and plots over every run
# (fine-tuned models, variant-effect probes and baselines) and pretrained model; with evaluate.extrapolation,
# every run of a re-cuttable benchmark scored again at multiples of its length.


rule classical_baseline:
    input:
        data=rules.prepare_benchmark.output.data,
        info=rules.prepare_benchmark.output.info,
    output:
        metrics=[f"{baseline_dir('{benchmark}', b, '{seed}')}/metrics.json" for b in BASELINES],
        predictions=[f"{baseline_dir('{benchmark}', b, '{seed}')}/predictions.parquet" for b in BASELINES],
    log:
        "logs/baselines/{benchmark}/seed{seed}.log",
    benchmark:
        "benchmarks/baselines/{benchmark}/seed{seed}.tsv"
    conda:
        ENVS / "eval.yaml"
    threads: 1
    resources:
        **cluster_resources("evaluate", cpus=1, runtime=estimated("evaluate", "runtime", baseline_estimate)),
        mem_mb=estimated("evaluate", "mem_mb", baseline_estimate),
    params:
        carving=lambda wildcards: baseline_carving(wildcards.benchmark),
        benchmark_dir=lambda wildcards, input: os.path.dirname(input.info),
        out_dirs=lambda wildcards: {b: baseline_dir(wildcards.benchmark, b, wildcards.seed) for b in BASELINES},
    script:
        SCRIPTS / "classical_baseline.py"


rule extrapolate_model:
    input:
        unpack(extrapolation_inputs),
    output:
        table="results/extrapolation/{benchmark}/{model}/seed{seed}.csv",
    log:
        "logs/extrapolation/{benchmark}/{model}/seed{seed}.log",
    benchmark:
        "benchmarks/extrapolation/{benchmark}/{model}/seed{seed}.tsv"
    conda:
        ENVS / "train.yaml"
    threads: threads_for("finetune", 1)
    resources:
        **cluster_resources(
            "finetune",
            cpus=threads_for("finetune", 1),
            runtime=estimated("finetune", "runtime", finetune_estimate),
            gpus=gpus_for("finetune"),
        ),
        gpu=min(gpus_for("finetune"), 1),  # one process per job: fine-tuning runs are many and small
        mem_mb=estimated("finetune", "mem_mb", finetune_estimate),
    params:
        settings={k: v for k, v in (EXTRAPOLATION or {}).items() if k != "benchmarks"},
        run_dir=lambda wildcards, input: os.path.dirname(input.metrics),
        benchmark_dir=lambda wildcards, input: os.path.dirname(input.info),
    script:
        SCRIPTS / "extrapolate_model.py"


#: the length-extrapolation outputs of `evaluate`, present only when it is configured
LENGTH_EXTRAPOLATION_OUTPUTS = (
    {
        "length_extrapolation": "results/evaluation/length_extrapolation.csv",
        "length_extrapolation_plot": report_when_made(
            "results/evaluation/plots/length_extrapolation.png",
            caption="../report/length_extrapolation.rst",
            category="Evaluation",
        ),
    }
    if EXTRAPOLATION_RUNS
    else {}
)


rule evaluate:
    input:
        metrics=[f"{run}/metrics.json" for run in EVALUATED_RUNS],
        predictions=[f"{run}/predictions.parquet" for run in EVALUATED_RUNS],
        pretrain=expand(rules.pretrain_model.output.summary, model=config["models"]),
        length_extrapolation=[extrapolation_table(b, m, s) for b, m, s in EXTRAPOLATION_RUNS],
    output:
        **LENGTH_EXTRAPOLATION_OUTPUTS,
        metrics="results/evaluation/metrics.csv",
        summary="results/evaluation/summary.csv",
        table=report_when_made(
            "results/evaluation/table.md",
            caption="../report/table.rst",
            category="Results",
        ),
        table_rst="results/evaluation/table.rst",
        extrapolation="results/evaluation/extrapolation.csv",
        benchmarks_plot=report_when_made(
            "results/evaluation/plots/benchmarks.png",
            caption="../report/benchmarks.rst",
            category="Results",
        ),
        extrapolation_plot=report_when_made(
            "results/evaluation/plots/extrapolation.png",
            caption="../report/extrapolation.rst",
            category="Evaluation",
        ),
        pretraining_plot=report_when_made(
            "results/evaluation/plots/pretraining.png",
            caption="../report/pretraining.rst",
            category="Pretraining",
        ),
    log:
        "logs/evaluate.log",
    benchmark:
        "benchmarks/evaluate.tsv"
    conda:
        ENVS / "eval.yaml"
    threads: 1
    resources:
        **cluster_resources("evaluate", cpus=1, runtime=resource("evaluate", "runtime", scaled_runtime(30))),
        mem_mb=resource("evaluate", "mem_mb", 4000),
    params:
        run_dirs=EVALUATED_RUNS,
        pretrain_dirs={m: pretrain_dir(m) for m in config["models"]},
        out_dir=lambda wildcards, output: os.path.dirname(output.metrics),
        bootstrap=config.get("evaluate", {}).get("bootstrap", 1000),
        confidence=config.get("evaluate", {}).get("confidence", 0.95),
        published=config.get("evaluate", {}).get("published"),
        length_extrapolation=[extrapolation_table(b, m, s) for b, m, s in EXTRAPOLATION_RUNS],
    script:
        SCRIPTS / "evaluate.py"
