# Stage 4: materialise each benchmark, then fine-tune every model x benchmark x seed.


def benchmark_genome(name):
    """The genome a benchmark is cut from: its `genome` key, else the pretraining genome."""
    return config["benchmarks"][name].get("genome", PRETRAIN_GENOME)


def benchmark_references(name):
    """Reference role -> key of genomes: `genome` (the benchmark's genome) plus the roles of its `references`
    (GenomicBenchmarks datasets with classes cut from a second genome or a transcriptome)."""
    references = {"genome": benchmark_genome(name), **config["benchmarks"][name].get("references", {})}
    unknown = {role: key for role, key in references.items() if key not in config["genomes"]}
    if unknown:
        raise ValueError(f"benchmarks.{name}: {unknown} are not keys of genomes {sorted(config['genomes'])}")
    return references


def benchmark_inputs(wildcards):
    """The genome FASTAs a benchmark is cut from, `fasta` (its genome) and `{role}_fasta` (other references),
    and a local user data file (so that editing it rebuilds the benchmark)."""
    spec = config["benchmarks"][wildcards.benchmark]
    inputs = {}
    if spec["suite"] == "user" and "://" not in spec.get("path", "://"):
        inputs["user_data"] = spec["path"]
    cut_from_genome = spec["suite"] in ("demo", "genomic_benchmarks", "long_range") or (
        spec["suite"] == "user" and spec.get("format") == "bed"
    )
    if cut_from_genome:
        for role, genome in benchmark_references(wildcards.benchmark).items():
            prefix = "" if role == "genome" else f"{role}_"
            inputs[f"{prefix}fasta"] = genome_fasta(genome)
            inputs[f"{prefix}fai"] = genome_fasta(genome) + ".fai"
    return inputs


def benchmark_spec(name):
    """The config entry, plus `reference_fastas` (role -> FASTA path) for its `references`."""
    spec = config["benchmarks"][name]
    if "references" not in spec:
        return spec
    fastas = {role: genome_fasta(key) for role, key in benchmark_references(name).items() if role != "genome"}
    return {**spec, "reference_fastas": fastas}


rule prepare_benchmark:
    input:
        unpack(benchmark_inputs),
    output:
        data="results/benchmarks/{benchmark}/data.parquet",
        info="results/benchmarks/{benchmark}/benchmark.json",
    params:
        spec=lambda wildcards: benchmark_spec(wildcards.benchmark),
        genome_spec=lambda wildcards: config["genomes"][benchmark_genome(wildcards.benchmark)],
        cache=DOWNLOADS,
    log:
        "logs/benchmarks/{benchmark}.log",
    benchmark:
        "benchmarks/benchmarks/{benchmark}.tsv"
    threads: 1
    resources:
        cpus_per_task=1,
        mem_mb=resource("benchmark", "mem_mb", 4000),
        runtime=resource("benchmark", "runtime", scaled_runtime(30)),
        **cluster_resources("benchmark"),
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
    # longest first: on a few cores a long-range run started last would trail alone behind all the others
    priority: lambda wildcards: finetune_estimate(wildcards)["seconds"]
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
        SCRIPTS / "finetune_model.py"



# Variant-effect benchmarks (reference/alternative pairs: the Genomics Long-Range Benchmark's eQTL and ClinVar
# tasks) are scored by the frozen pretrained backbone -- an embedding probe and the zero-shot LLR,
# longdna.eval.variant_effect -- instead of fine-tuned. The run has the fine-tuning layout, so `finetune` and
# `evaluate` take it like any run; the constraint sends only these benchmarks to this rule.
import re

import yaml

with open(Path(workflow.basedir) / "resources" / "benchmarks" / "long_range.yaml") as fh:
    LONG_RANGE_TASKS = yaml.safe_load(fh)["tasks"]
VARIANT_BENCHMARKS = [
    name for name, spec in config["benchmarks"].items()
    if spec["suite"] == "long_range" and LONG_RANGE_TASKS.get(spec.get("task"), {}).get("kind") == "variant"
]


ruleorder: variant_effect > finetune_model


rule variant_effect:
    input:
        weights=lambda wildcards: rules.pretrain_model.output.weights.format(
            model=config["finetune"]["models"][wildcards.model]["backbone"]
        ),
        data=rules.prepare_benchmark.output.data,
        info=rules.prepare_benchmark.output.info,
    output:
        metrics="results/finetune/{benchmark}/{model}/seed{seed}/metrics.json",
        predictions="results/finetune/{benchmark}/{model}/seed{seed}/predictions.parquet",
        history="results/finetune/{benchmark}/{model}/seed{seed}/history.csv",
    wildcard_constraints:
        benchmark="|".join(re.escape(b) for b in VARIANT_BENCHMARKS) or "(?!)",  # (?!): matches nothing
    params:
        settings=lambda wildcards: config["benchmarks"][wildcards.benchmark].get("variant_effect", {}),
        backbone_dir=lambda wildcards: pretrain_dir(config["finetune"]["models"][wildcards.model]["backbone"]),
        benchmark_dir="results/benchmarks/{benchmark}",
        out_dir=lambda wildcards: run_dir(wildcards.benchmark, wildcards.model, wildcards.seed),
    log:
        "logs/variant_effect/{benchmark}/{model}/seed{seed}.log",
    benchmark:
        "benchmarks/variant_effect/{benchmark}/{model}/seed{seed}.tsv"
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
        SCRIPTS / "variant_effect.py"

rule finetune:
    input:
        [run_dir(b, m, s) + "/metrics.json" for b, m, s in RUNS],
