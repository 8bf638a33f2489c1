# Stage 4: materialise each benchmark, then fine-tune every model x benchmark x seed -- or, on a variant
# benchmark (reference/alternative pairs: the Genomics Long-Range Benchmark's eQTL and ClinVar tasks), score
# it with the frozen pretrained backbone instead (an embedding probe and the zero-shot LLR,
# longdna.eval.variant_effect), in results/variant_effect/ with the fine-tuning layout, so that `evaluate`
# takes it like any run (run_dir picks the rule).


rule prepare_benchmark:
    input:
        unpack(benchmark_inputs),
    output:
        data="results/benchmarks/{benchmark}/data.parquet",
        info="results/benchmarks/{benchmark}/benchmark.json",
    log:
        "logs/benchmarks/{benchmark}.log",
    benchmark:
        "benchmarks/benchmarks/{benchmark}.tsv"
    conda:
        ENVS / "data.yaml"
    threads: 1
    resources:
        **cluster_resources("benchmark", cpus=1, runtime=resource("benchmark", "runtime", scaled_runtime(30))),
        mem_mb=resource("benchmark", "mem_mb", 4000),
    params:
        spec=lambda wildcards: benchmark_spec(wildcards.benchmark),
        genome_spec=lambda wildcards: config["genomes"][benchmark_genome(wildcards.benchmark)],
        cache=DOWNLOADS,
    script:
        SCRIPTS / "prepare_benchmark.py"


rule finetune_model:
    input:
        unpack(finetune_backbone),
        data=rules.prepare_benchmark.output.data,
        info=rules.prepare_benchmark.output.info,
    output:
        metrics="results/finetune/{benchmark}/{model}/seed{seed}/metrics.json",
        predictions="results/finetune/{benchmark}/{model}/seed{seed}/predictions.parquet",
        history="results/finetune/{benchmark}/{model}/seed{seed}/history.csv",
    log:
        "logs/finetune/{benchmark}/{model}/seed{seed}.log",
    benchmark:
        "benchmarks/finetune/{benchmark}/{model}/seed{seed}.tsv"
    # longest first: on a few cores a long-range run started last would trail alone behind all the others
    priority: lambda wildcards: finetune_estimate(wildcards)["seconds"]
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
        settings=lambda wildcards: finetune_settings(config, wildcards.benchmark, wildcards.model),
        architecture=backbone_architecture,
        backbone_dir=lambda wildcards: pretrain_dir(backbone(wildcards)),
        benchmark_dir=lambda wildcards, input: os.path.dirname(input.info),
        out_dir=lambda wildcards, output: os.path.dirname(output.metrics),
    script:
        SCRIPTS / "finetune_model.py"


rule variant_effect:
    input:
        unpack(backbone_files),
        data=rules.prepare_benchmark.output.data,
        info=rules.prepare_benchmark.output.info,
    output:
        metrics="results/variant_effect/{benchmark}/{model}/seed{seed}/metrics.json",
        predictions="results/variant_effect/{benchmark}/{model}/seed{seed}/predictions.parquet",
        history="results/variant_effect/{benchmark}/{model}/seed{seed}/history.csv",
    log:
        "logs/variant_effect/{benchmark}/{model}/seed{seed}.log",
    benchmark:
        "benchmarks/variant_effect/{benchmark}/{model}/seed{seed}.tsv"
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
        settings=lambda wildcards: config["benchmarks"][wildcards.benchmark].get("variant_effect", {}),
        backbone_dir=lambda wildcards, input: os.path.dirname(input.weights),
        benchmark_dir=lambda wildcards, input: os.path.dirname(input.info),
        out_dir=lambda wildcards, output: os.path.dirname(output.metrics),
    script:
        SCRIPTS / "variant_effect.py"


rule finetune:
    input:
        stage_target("finetune", [f"{run_dir(b, m, s)}/metrics.json" for b, m, s in RUNS]),
