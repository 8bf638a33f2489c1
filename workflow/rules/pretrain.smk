# Stage 3: pretrain each configured model on the tokenized genome -- or, for a model with `pretrained`, fetch its
# released weights (fetch_pretrained) and score them on the test split (test_pretrained): the same files in
# results/pretrain/{model}/, so the later stages take either alike (longdna.pretrained).
# Resumable state lives in results/pretrain/{model}/checkpoints/, deliberately not a declared output:
# Snakemake deletes the outputs of a failed job, and a preempted job must keep its checkpoints to resume.
# The engine resumes only an unfinished run of the same fingerprint (docs/reruns.md): a rerun of a finished
# job (--forcerun, changed settings, code or shards) sets the old checkpoints aside and trains from step 0.


rule pretrain_model:
    input:
        manifest=rules.write_shard_manifest.output.manifest.format(genome=PRETRAIN_GENOME),
        regions=rules.write_shard_manifest.output.regions.format(genome=PRETRAIN_GENOME),
        tokens=lambda wildcards: shard_files(PRETRAIN_GENOME),
    output:
        weights="results/pretrain/{model}/model.safetensors",
        config="results/pretrain/{model}/config.json",
        tokenizer="results/pretrain/{model}/tokenizer.json",
        metrics="results/pretrain/{model}/metrics.jsonl",
        summary="results/pretrain/{model}/summary.json",
        curve=report_when_made(
            "results/pretrain/{model}/curve.png",
            [{"model": m} for m in config["models"] if m not in RELEASED],
            caption="../report/pretraining.rst",
            category="Pretraining",
            labels={"model": "{model}"},
        ),
    log:
        "logs/pretrain/{model}.log",
    benchmark:
        "benchmarks/pretrain/{model}.tsv"
    wildcard_constraints:
        model=model_pattern([m for m in config["models"] if m not in RELEASED]),
    conda:
        ENVS / "train.yaml"
    threads: pretrain_threads()
    # GPUs and nodes are resources, not params: changing them does not rerun a finished pretraining (the
    # engine's results do not depend on the process count). SIGTERM before the wall time + retries: resume.
    resources:
        **gpu_resources("pretrain", gpus_for("pretrain"), nodes_for("pretrain")),
        **cluster_resources(
            "pretrain",
            cpus=pretrain_threads(),
            runtime=estimated("pretrain", "runtime", pretrain_estimate),
            gpus=gpus_for("pretrain"),
            nodes=nodes_for("pretrain"),
            signal=True,
        ),
        mem_mb=estimated("pretrain", "mem_mb", pretrain_estimate),
    params:
        arch=lambda wildcards: architecture(config, wildcards.model)[0],
        arch_config=lambda wildcards: architecture(config, wildcards.model)[1],
        settings=lambda wildcards: pretrain_settings(config, wildcards.model),
        shards=lambda wildcards, input: os.path.dirname(input.manifest),
        out_dir=lambda wildcards, output: os.path.dirname(output.weights),
        cpu_processes=cpu_processes_for("pretrain"),
    script:
        SCRIPTS / "pretrain_model.py"


rule pretrain:
    input:
        stage_target("pretrain", expand(rules.pretrain_model.output.weights, model=config["models"])),


rule fetch_pretrained:
    output:
        weights="results/pretrain/{model}/model.safetensors",
        config="results/pretrain/{model}/config.json",
        tokenizer="results/pretrain/{model}/tokenizer.json",
    log:
        "logs/pretrain/{model}.fetch.log",
    wildcard_constraints:
        model=model_pattern(RELEASED),
    # downloads run where the workflow runs (cluster nodes may have no internet); huggingface_hub's cache and
    # HF_ENDPOINT / HF_HOME / HF_HUB_OFFLINE / HF_TOKEN apply
    localrule: True
    conda:
        ENVS / "train.yaml"
    params:
        source=lambda wildcards: RELEASED[wildcards.model],
        arch=lambda wildcards: config["models"][wildcards.model]["arch"],
        preset=lambda wildcards: config["models"][wildcards.model].get("preset"),
        seq_len=lambda wildcards: pretrain_settings(config, wildcards.model).get("seq_len"),
        out_dir=lambda wildcards, output: os.path.dirname(output.weights),
    script:
        SCRIPTS / "fetch_pretrained.py"


rule test_pretrained:
    input:
        weights=rules.fetch_pretrained.output.weights,
        config=rules.fetch_pretrained.output.config,
        manifest=rules.write_shard_manifest.output.manifest.format(genome=PRETRAIN_GENOME),
        regions=rules.write_shard_manifest.output.regions.format(genome=PRETRAIN_GENOME),
        tokens=lambda wildcards: shard_files(PRETRAIN_GENOME),
    output:
        metrics="results/pretrain/{model}/metrics.jsonl",
        summary="results/pretrain/{model}/summary.json",
    log:
        "logs/pretrain/{model}.log",
    benchmark:
        "benchmarks/pretrain/{model}.tsv"
    wildcard_constraints:
        model=model_pattern(RELEASED),
    conda:
        ENVS / "train.yaml"
    threads: pretrain_threads()
    resources:
        **cluster_resources(
            "pretrain",
            cpus=pretrain_threads(),
            runtime=resource("pretrain", "runtime", scaled_runtime(60)),
            gpus=min(gpus_for("pretrain"), 1),
        ),
        gpu=min(gpus_for("pretrain"), 1),
        mem_mb=estimated("pretrain", "mem_mb", pretrain_estimate),
    params:
        settings=lambda wildcards: pretrain_settings(config, wildcards.model),
        shards=lambda wildcards, input: os.path.dirname(input.manifest),
        out_dir=lambda wildcards, output: os.path.dirname(output.summary),
    script:
        SCRIPTS / "test_pretrained.py"
