# Shared definitions: paths of every stage's outputs, the fine-tuning run table, resources.

import json

from longdna.config import architecture, finetune_runs, finetune_settings, pretrain_settings

ENVS = Path(workflow.basedir) / "envs"
SCRIPTS = Path(workflow.basedir) / "scripts"
DOWNLOADS = config.get("download_dir", "results/downloads")
PRETRAIN_GENOME = config["tokenize"]["genome"]
SOFT_MASK = config["tokenize"].get("soft_mask", True)
RUNS = finetune_runs(config)


wildcard_constraints:
    genome="[^/]+",
    chrom="[^/]+",
    model="[^/]+",
    benchmark="[^/]+",
    seed="[0-9]+",


def genome_fasta(genome):
    return f"results/genome/{genome}/genome.fa.gz"


def shard_dir(genome):
    return f"results/tokens/{genome}"


def chromosomes(wildcards):
    """Sequence names of a prepared genome (known once the genome checkpoint has run)."""
    fai = checkpoints.prepare_genome.get(genome=wildcards.genome).output.fai
    with open(fai) as fh:
        return [line.split("\t", 1)[0] for line in fh if line.strip()]


def pretrain_dir(model):
    return f"results/pretrain/{model}"


def run_dir(benchmark, model, seed):
    return f"results/finetune/{benchmark}/{model}/seed{seed}"


def stage_resources(stage):
    return config.get("resources", {}).get(stage, {})


def threads_for(stage, default=1):
    return stage_resources(stage).get("threads", default)


def gpus_for(stage):
    return stage_resources(stage).get("gpus", 0)


def resource(stage, key, default):
    """A configured resource, or the default (a number or a function of wildcards, attempt)."""
    value = stage_resources(stage).get(key)
    if value is not None:
        return value
    return default


def scaled_runtime(minutes):
    """Runtime that grows with each retry, so a job killed for time gets more on resubmission."""
    return lambda wildcards, attempt: int(minutes * attempt)
