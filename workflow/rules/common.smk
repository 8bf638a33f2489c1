# Shared definitions: paths of every stage's outputs, the fine-tuning run table, resources.

import json

from longdna import resources as estimates
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
    """GPUs per node of each job of the stage (config `resources.<stage>.gpus`; 0: CPU)."""
    return stage_resources(stage).get("gpus", 0)


def nodes_for(stage):
    return stage_resources(stage).get("nodes", 1)


def resource(stage, key, default):
    """A configured resource, or the default (a number or a function of wildcards, attempt)."""
    value = stage_resources(stage).get(key)
    if value is not None:
        return value
    return default


def scaled_runtime(minutes):
    """Runtime that grows with each retry, so a job killed for time gets more on resubmission."""
    return lambda wildcards, attempt: int(minutes * attempt)


def estimated(stage, key, estimator):
    """Resource `key` of a stage's jobs: the configured value (fixed), else `estimator(wildcards)[key]`, a
    function of the configuration (longdna.resources); estimated runtimes grow with each retry."""
    configured = stage_resources(stage).get(key)
    if configured is not None:
        return configured
    if key == "runtime":
        return lambda wildcards, attempt: int(estimator(wildcards)[key] * attempt)
    return lambda wildcards: estimator(wildcards)[key]


def pretrain_estimate(wildcards):
    arch, arch_config = architecture(config, wildcards.model)
    return estimates.pretrain_resources(arch, arch_config, pretrain_settings(config, wildcards.model),
                                        gpus=gpus_for("pretrain"), nodes=nodes_for("pretrain"),
                                        threads=pretrain_threads())


def pretrain_threads():
    """CPU threads per node of a pretraining job: configured, else 2 on CPU and 4 per GPU."""
    return threads_for("pretrain", max(2, 4 * gpus_for("pretrain")))


def finetune_estimate(wildcards):
    """Resources of a job running `wildcards.model` on `wildcards.benchmark` (fine-tuning, variant scoring,
    extrapolation): the benchmark's length and size from its config where given, else the suite's largest."""
    backbone = config["finetune"]["models"][wildcards.model]["backbone"]
    arch, arch_config = architecture(config, backbone)
    spec = config["benchmarks"][wildcards.benchmark]
    settings = finetune_settings(config, wildcards.benchmark, wildcards.model)
    length, examples = estimates.benchmark_size(spec, settings.get("max_length"))
    return estimates.finetune_resources(arch, arch_config, settings, length, examples,
                                        gpus=gpus_for("finetune"), threads=threads_for("finetune", 1))


def tokenize_estimate(wildcards, input):
    """Memory and time of tokenizing one sequence, from its length in the genome's .fai."""
    length = 250_000_000  # a human chromosome 1, if the index cannot be read
    try:
        with open(input.fai) as fh:
            length = next(int(f[1]) for f in (line.split("\t") for line in fh) if f[0] == wildcards.chrom)
    except (OSError, StopIteration, IndexError, ValueError):
        pass
    return {"mem_mb": estimates.tokenize_mem_mb(length), "runtime": estimates.tokenize_runtime(length)}


def signal_before_timeout(stage, runtime):
    """`slurm_extra` of a resumable job: SIGTERM shortly before its wall-time limit, so that the training
    engine writes a checkpoint and exits with status 75; `retries` then resubmit the job, which resumes. The
    signal goes to the job steps, where the training runs (not `B:`, the batch shell, which would not relay
    it). The stage's configured `slurm_extra` is appended."""

    def extra(wildcards, attempt):
        minutes = runtime(wildcards, attempt) if callable(runtime) else runtime
        lead = min(600, max(60, int(minutes) * 60 // 10))
        return " ".join(filter(None, [f"--signal=TERM@{lead}", stage_resources(stage).get("slurm_extra")]))

    return extra


#: cluster-only settings of a stage in the config: the SLURM plugin's resource names, passed through
SLURM_KEYS = ("slurm_partition", "slurm_account", "slurm_extra", "constraint", "qos")


def cluster_resources(stage, gpus=0, nodes=1, exclude=()):
    """The stage's configured SLURM settings for a rule's `resources:` (local runs ignore them); the GPU model
    goes with a one-node GPU request (several nodes carry it in `gres`, see gpu_resources)."""
    configured = stage_resources(stage)
    extra = {key: configured[key] for key in SLURM_KEYS if key in configured and key not in exclude}
    if gpus and nodes <= 1 and "gpu_model" in configured:
        extra["gpu_model"] = configured["gpu_model"]
    return extra


def gpu_resources(stage, gpus, nodes=1):
    """How a job asks for its GPUs. One node: `gpu` (the plugin's `--gpus`, also a countable local resource).
    Several nodes: `gres=gpu[:model]:N` (N per node) and `mpi`, so that the plugin runs the job's script once
    in the batch allocation (not inside a one-node `srun` step) and the script starts one launcher per node
    with `srun`; `tasks` = nodes gives one task per node and `tasks_per_gpu=0` keeps `--ntasks-per-gpu` off."""
    if nodes <= 1:
        return {"gpu": gpus}
    model = stage_resources(stage).get("gpu_model")
    resources = {"nodes": nodes, "tasks": nodes, "tasks_per_gpu": 0, "mpi": "srun"}
    if gpus:
        resources["gres"] = f"gpu:{model}:{gpus}" if model else f"gpu:{gpus}"
    return resources
