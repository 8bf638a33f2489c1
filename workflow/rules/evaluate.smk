# Stage 5: tables, uncertainty and plots over every fine-tuning run and pretrained model; with
# evaluate.extrapolation, every run of a re-cuttable benchmark scored again at multiples of its length.

EXTRAPOLATION = config.get("evaluate", {}).get("extrapolation")
#: suites whose benchmarks keep their loci, so their examples can be re-cut at any length
RESIZABLE_SUITES = ("demo", "long_range")


def extrapolation_runs():
    """(benchmark, model, seed) of every run to score at other lengths; config errors name the key."""
    if not EXTRAPOLATION:
        return []
    default = [b for b, spec in config["benchmarks"].items() if spec["suite"] in RESIZABLE_SUITES]
    benchmarks = EXTRAPOLATION.get("benchmarks", default)
    for b in benchmarks:
        if b not in config["benchmarks"] or config["benchmarks"][b]["suite"] not in RESIZABLE_SUITES:
            raise ValueError(f"config error at evaluate.extrapolation.benchmarks: {b!r} is not a benchmark of the"
                             f" suites {RESIZABLE_SUITES} (only their examples can be re-cut at other lengths)")
    runs = [(b, m, s) for b, m, s in RUNS if b in benchmarks]
    for b, m, s in runs:
        if b not in VARIANT_BENCHMARKS and not finetune_settings(config, b, m).get("save_model", False):
            raise ValueError(f"config error: evaluate.extrapolation scores run {b}/{m}, which needs the fine-tuned"
                             " model: set finetune.settings.save_model: true")
    return runs


EXTRAPOLATION_RUNS = extrapolation_runs()


def extrapolation_table(benchmark, model, seed):
    return f"results/extrapolation/{benchmark}/{model}/seed{seed}.csv"


def extrapolation_inputs(wildcards):
    """The run (its metrics.json is written last), the benchmark, its genome, and a probe's backbone."""
    fasta = genome_fasta(benchmark_genome(wildcards.benchmark))
    inputs = {"metrics": run_dir(wildcards.benchmark, wildcards.model, wildcards.seed) + "/metrics.json",
              "data": rules.prepare_benchmark.output.data, "fasta": fasta, "fai": fasta + ".fai"}
    if wildcards.benchmark in VARIANT_BENCHMARKS:
        backbone = config["finetune"]["models"][wildcards.model]["backbone"]
        inputs["weights"] = rules.pretrain_model.output.weights.format(model=backbone)
    return inputs


rule extrapolate_model:
    input:
        unpack(extrapolation_inputs),
    output:
        table="results/extrapolation/{benchmark}/{model}/seed{seed}.csv",
    params:
        settings={k: v for k, v in (EXTRAPOLATION or {}).items() if k != "benchmarks"},
        run_dir=lambda wildcards: run_dir(wildcards.benchmark, wildcards.model, wildcards.seed),
        benchmark_dir="results/benchmarks/{benchmark}",
    log:
        "logs/extrapolation/{benchmark}/{model}/seed{seed}.log",
    benchmark:
        "benchmarks/extrapolation/{benchmark}/{model}/seed{seed}.tsv"
    threads: threads_for("finetune", 1)
    resources:
        gpu=min(gpus_for("finetune"), 1),  # one process per job: fine-tuning runs are many and small
        cpus_per_task=threads_for("finetune", 1),
        mem_mb=estimated("finetune", "mem_mb", finetune_estimate),
        runtime=estimated("finetune", "runtime", finetune_estimate),
        **cluster_resources("finetune", gpus_for("finetune")),
    conda:
        ENVS / "train.yaml"
    script:
        SCRIPTS / "extrapolate_model.py"


#: the length-extrapolation outputs of `evaluate`, present only when it is configured
LENGTH_EXTRAPOLATION_OUTPUTS = {
    "length_extrapolation": "results/evaluation/length_extrapolation.csv",
    "length_extrapolation_plot": report(
        "results/evaluation/plots/length_extrapolation.png",
        caption="../report/length_extrapolation.rst",
        category="Evaluation",
    ),
} if EXTRAPOLATION_RUNS else {}


rule evaluate:
    input:
        metrics=[run_dir(b, m, s) + "/metrics.json" for b, m, s in RUNS],
        predictions=[run_dir(b, m, s) + "/predictions.parquet" for b, m, s in RUNS],
        pretrain=expand(rules.pretrain_model.output.summary, model=config["models"]),
        length_extrapolation=[extrapolation_table(b, m, s) for b, m, s in EXTRAPOLATION_RUNS],
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
        **LENGTH_EXTRAPOLATION_OUTPUTS,
    params:
        run_dirs=[run_dir(b, m, s) for b, m, s in RUNS],
        pretrain_dirs={m: pretrain_dir(m) for m in config["models"]},
        out_dir="results/evaluation",
        bootstrap=config.get("evaluate", {}).get("bootstrap", 1000),
        confidence=config.get("evaluate", {}).get("confidence", 0.95),
        published=config.get("evaluate", {}).get("published"),
        length_extrapolation=[extrapolation_table(b, m, s) for b, m, s in EXTRAPOLATION_RUNS],
    log:
        "logs/evaluate.log",
    benchmark:
        "benchmarks/evaluate.tsv"
    threads: 1
    resources:
        cpus_per_task=1,
        mem_mb=resource("evaluate", "mem_mb", 4000),
        runtime=resource("evaluate", "runtime", scaled_runtime(30)),
        **cluster_resources("evaluate"),
    conda:
        ENVS / "eval.yaml"
    script:
        SCRIPTS / "evaluate.py"
