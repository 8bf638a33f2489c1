# Stage 4: materialise each benchmark, then fine-tune every model x benchmark x seed.


def benchmark_genome(name):
    """The genome a benchmark is cut from: its `genome` key, else the pretraining genome."""
    return config["benchmarks"][name].get("genome", PRETRAIN_GENOME)


def benchmark_inputs(wildcards):
    spec = config["benchmarks"][wildcards.benchmark]
    if spec["suite"] in ("demo", "genomic_benchmarks", "long_range"):
        genome = benchmark_genome(wildcards.benchmark)
        return {"fasta": genome_fasta(genome), "fai": genome_fasta(genome) + ".fai"}
    return {}


rule prepare_benchmark:
    input:
        unpack(benchmark_inputs),
    output:
        data="results/benchmarks/{benchmark}/data.parquet",
        info="results/benchmarks/{benchmark}/benchmark.json",
    params:
        spec=lambda wildcards: config["benchmarks"][wildcards.benchmark],
        genome_spec=lambda wildcards: config["genomes"][benchmark_genome(wildcards.benchmark)],
        cache=DOWNLOADS,
    log:
        "logs/benchmarks/{benchmark}.log",
    benchmark:
        "benchmarks/benchmarks/{benchmark}.tsv"
    threads: 1
    resources:
        mem_mb=resource("benchmark", "mem_mb", 4000),
        runtime=resource("benchmark", "runtime", scaled_runtime(30)),
    conda:
        ENVS / "data.yaml"
    script:
        SCRIPTS / "prepare_benchmark.py"


def finetune_backbone(wildcards):
    """Pretrained runs need the pretraining outputs; from-scratch runs only the architecture (params)."""
    backbone = config["finetune"]["models"][wildcards.model]["backbone"]
    settings = finetune_settings(config, wildcards.benchmark, wildcards.model)
    if settings.get("init", "pretrained") == "scratch":
        return {}
    return {"weights": rules.pretrain_model.output.weights.format(model=backbone),
            "backbone_config": rules.pretrain_model.output.config.format(model=backbone)}


rule finetune_model:
    input:
        unpack(finetune_backbone),
        data=rules.prepare_benchmark.output.data,
        info=rules.prepare_benchmark.output.info,
    output:
        metrics="results/finetune/{benchmark}/{model}/seed{seed}/metrics.json",
        predictions="results/finetune/{benchmark}/{model}/seed{seed}/predictions.parquet",
        history="results/finetune/{benchmark}/{model}/seed{seed}/history.csv",
    params:
        settings=lambda wildcards: finetune_settings(config, wildcards.benchmark, wildcards.model),
        architecture=lambda wildcards: architecture(config, config["finetune"]["models"][wildcards.model]["backbone"]),
        backbone_dir=lambda wildcards: pretrain_dir(config["finetune"]["models"][wildcards.model]["backbone"]),
        benchmark_dir="results/benchmarks/{benchmark}",
        out_dir=lambda wildcards: run_dir(wildcards.benchmark, wildcards.model, wildcards.seed),
    log:
        "logs/finetune/{benchmark}/{model}/seed{seed}.log",
    benchmark:
        "benchmarks/finetune/{benchmark}/{model}/seed{seed}.tsv"
    threads: threads_for("finetune", 1)
    resources:
        gpu=gpus_for("finetune"),
        mem_mb=resource("finetune", "mem_mb", 4000),
        runtime=resource("finetune", "runtime", scaled_runtime(60)),
    conda:
        ENVS / "train.yaml"
    script:
        SCRIPTS / "finetune_model.py"


rule finetune:
    input:
        [run_dir(b, m, s) + "/metrics.json" for b, m, s in RUNS],
