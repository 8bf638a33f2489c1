# Job resources: threads, GPUs and memory of every job, and the settings only the SLURM plugin reads (wall
# time, CPUs per task, partition, account, sbatch flags). Estimates scale with the config and the job's inputs
# (longdna.resources); the config's `resources.<stage>` overrides them (config/README.md).

from longdna import resources as estimates

#: cluster-only settings of a stage in the config: the SLURM plugin's resource names, passed through
SLURM_KEYS = ("slurm_partition", "slurm_account", "slurm_extra", "constraint", "qos")


def stage_resources(stage):
    return config.get("resources", {}).get(stage, {})


def threads_for(stage, default=1):
    return stage_resources(stage).get("threads", default)


def gpus_for(stage):
    """GPUs per node of each job of the stage (config `resources.<stage>.gpus`; 0: CPU)."""
    return stage_resources(stage).get("gpus", 0)


def nodes_for(stage):
    return stage_resources(stage).get("nodes", 1)


def cpu_processes_for(stage):
    """CPU processes per node of a data-parallel job without GPUs (config `resources.<stage>.cpu_processes`)."""
    return stage_resources(stage).get("cpu_processes", 1)


def resource(stage, key, default):
    """A configured resource, or the default (a number or a function of wildcards, input, attempt)."""
    value = stage_resources(stage).get(key)
    if value is not None:
        return value
    return default


def scaled_runtime(minutes):
    """Runtime that grows with each retry, so a job killed for time gets more on resubmission."""
    return lambda wildcards, input, attempt: int(minutes * attempt)


def estimated(stage, key, estimator):
    """Resource `key` of a stage's jobs: the configured value (fixed), else `estimator(wildcards, input)[key]`,
    a function of the configuration and the job's input files (longdna.resources; Snakemake evaluates it again
    when the job is scheduled, once its input exists); estimated runtimes grow with each retry."""
    configured = stage_resources(stage).get(key)
    if configured is not None:
        return configured
    if key == "runtime":
        return lambda wildcards, input, attempt: int(estimator(wildcards, input)[key] * attempt)
    return lambda wildcards, input: estimator(wildcards, input)[key]


def pretrain_threads():
    """CPU threads per node of a pretraining job: configured, else 2 on CPU and 4 per GPU."""
    return threads_for("pretrain", max(2, 4 * gpus_for("pretrain")))


def pretrain_estimate(wildcards, input=None):
    arch, arch_config = architecture(config, wildcards.model)
    return estimates.pretrain_resources(
        arch,
        arch_config,
        pretrain_settings(config, wildcards.model),
        gpus=gpus_for("pretrain"),
        nodes=nodes_for("pretrain"),
        threads=pretrain_threads(),
    )


def finetune_estimate(wildcards, input=None):
    """Resources of a job running `wildcards.model` on `wildcards.benchmark` (fine-tuning, variant scoring,
    extrapolation): the prepared benchmark's longest sequence and rows (its benchmark.json, the job's input
    `info`), else -- before it is prepared, and for the priority -- guessed from its config entry."""
    arch, arch_config = architecture(config, backbone(wildcards))
    spec = config["benchmarks"][wildcards.benchmark]
    settings = finetune_settings(config, wildcards.benchmark, wildcards.model)
    prepared = input.get("info") if input is not None else None
    length, examples = estimates.benchmark_size(spec, settings.get("max_length"), prepared)
    return estimates.finetune_resources(
        arch, arch_config, settings, length, examples, gpus=gpus_for("finetune"), threads=threads_for("finetune", 1)
    )


def tokenize_estimate(wildcards, input):
    """Memory and time of tokenizing one sequence, from its length in the genome's .fai."""
    length = 250_000_000  # a human chromosome 1, if the index cannot be read
    try:
        with open(input.fai) as fh:
            length = next(int(f[1]) for f in (line.split("\t") for line in fh) if f[0] == wildcards.chrom)
    except (OSError, StopIteration, IndexError, ValueError):
        pass
    return {"mem_mb": estimates.tokenize_mem_mb(length), "runtime": estimates.tokenize_runtime(length)}


def baseline_estimate(wildcards, input):
    """Memory and time of one benchmark's baselines, from its prepared size (before: its config entry)."""
    spec = config["benchmarks"][wildcards.benchmark]
    return estimates.baseline_resources(*estimates.benchmark_size(spec, prepared=input.get("info")))


def on_slurm():
    """Whether this run submits its jobs to SLURM (`--executor slurm`, as the SLURM profile sets), known once
    the run has started, hence asked by the resource functions; a dry run executes nothing and is local. With
    LONGDNA_DECLARE_SLURM=1, a dry run shows what SLURM jobs would get (docs/clusters.md)."""
    plugin = workflow.executor_plugin
    return (plugin is not None and plugin.name == "slurm") or os.environ.get("LONGDNA_DECLARE_SLURM") == "1"


def slurm_only(resources):
    """`resources` (values, or functions of wildcards, input, attempt) declared only for jobs submitted to
    SLURM: local runs neither need nor list them (a `runtime` would read like a deadline)."""

    def on_slurm_only(value):
        def evaluate(wildcards, input, attempt):
            if not on_slurm():
                return None  # an unset resource
            return value(wildcards, input, attempt) if callable(value) else value

        return evaluate

    return {name: on_slurm_only(value) for name, value in resources.items()}


def signal_before_timeout(stage, runtime):
    """`slurm_extra` of a resumable job: SIGTERM shortly before its wall-time limit, so that the training
    engine writes a checkpoint and exits with status 75; `retries` then resubmit the job, which resumes. The
    signal goes to the job steps, where the training runs (not `B:`, the batch shell, which would not relay
    it). The stage's configured `slurm_extra` is appended."""

    def extra(wildcards, input, attempt):
        minutes = runtime(wildcards, input, attempt) if callable(runtime) else runtime
        lead = min(600, max(60, int(minutes) * 60 // 10))
        return " ".join(filter(None, [f"--signal=TERM@{lead}", stage_resources(stage).get("slurm_extra")]))

    return extra


def cluster_resources(stage, *, cpus, runtime, gpus=0, nodes=1, signal=False):
    """The SLURM-only resources of a stage's job (slurm_only): `cpus_per_task`, `runtime` (minutes, a value or
    a function of wildcards, input, attempt), the stage's configured SLURM settings, with `signal` a SIGTERM
    before the wall time (signal_before_timeout), and the GPU model with a one-node GPU request (several nodes
    carry it in `gres`, see gpu_resources)."""
    configured = stage_resources(stage)
    extra = {key: configured[key] for key in SLURM_KEYS if key in configured}
    if signal:
        extra["slurm_extra"] = signal_before_timeout(stage, runtime)
    if gpus and nodes <= 1 and "gpu_model" in configured:
        extra["gpu_model"] = configured["gpu_model"]
    return slurm_only({"cpus_per_task": cpus, "runtime": runtime, **extra})


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
