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
        gpus=gpus_for("pretrain"),
        nodes=resource("pretrain", "nodes", 1),
    log:
        "logs/pretrain/{model}.log",
    benchmark:
        "benchmarks/pretrain/{model}.tsv"
    threads: threads_for("pretrain", 2)
    resources:
        gpu=gpus_for("pretrain"),
        mem_mb=resource("pretrain", "mem_mb", 8000),
        runtime=resource("pretrain", "runtime", scaled_runtime(60)),
    conda:
        ENVS / "train.yaml"
    script:
        SCRIPTS / "pretrain_model.py"


rule pretrain:
    input:
        expand(rules.pretrain_model.output.weights, model=config["models"]),
