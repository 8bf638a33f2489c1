# Stage 3: pretrain each configured model on the tokenized genome.
# Resumable state lives in results/pretrain/{model}/checkpoints/, deliberately not a declared output:
# Snakemake deletes the outputs of a failed job, and a preempted job must keep its checkpoints to resume.


rule pretrain_model:
    input:
        manifest=f"results/tokens/{PRETRAIN_GENOME}/manifest.parquet",
        regions=f"results/tokens/{PRETRAIN_GENOME}/regions.parquet",
    output:
        weights="results/pretrain/{model}/model.safetensors",
        config="results/pretrain/{model}/config.json",
        tokenizer="results/pretrain/{model}/tokenizer.json",
        metrics="results/pretrain/{model}/metrics.jsonl",
        summary="results/pretrain/{model}/summary.json",
        curve=report(
            "results/pretrain/{model}/curve.png",
            caption="../report/pretraining.rst",
            category="Pretraining",
            labels={"model": "{model}"},
        ),
    params:
        arch=lambda wildcards: architecture(config, wildcards.model)[0],
        arch_config=lambda wildcards: architecture(config, wildcards.model)[1],
        settings=lambda wildcards: pretrain_settings(config, wildcards.model),
        shards=shard_dir(PRETRAIN_GENOME),
        out_dir=lambda wildcards: pretrain_dir(wildcards.model),
    log:
        "logs/pretrain/{model}.log",
    benchmark:
        "benchmarks/pretrain/{model}.tsv"
    threads: pretrain_threads()
    # GPUs and nodes are resources, not params: changing them does not rerun a finished pretraining (the
    # engine's results do not depend on the process count). SIGTERM before the wall time + retries: resume.
    resources:
        **gpu_resources("pretrain", gpus_for("pretrain"), nodes_for("pretrain")),
        cpus_per_task=pretrain_threads(),
        mem_mb=estimated("pretrain", "mem_mb", pretrain_estimate),
        runtime=estimated("pretrain", "runtime", pretrain_estimate),
        slurm_extra=signal_before_timeout("pretrain", estimated("pretrain", "runtime", pretrain_estimate)),
        **cluster_resources("pretrain", gpus_for("pretrain"), nodes_for("pretrain"), exclude=("slurm_extra",)),
    conda:
        ENVS / "train.yaml"
    script:
        SCRIPTS / "pretrain_model.py"


rule pretrain:
    input:
        expand(rules.pretrain_model.output.weights, model=config["models"]),
