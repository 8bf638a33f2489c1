# Shared definitions, so that the stage files hold rules only: paths of every stage's outputs, the run tables
# (fine-tuning, variant scoring, baselines, extrapolation; config errors name the key), input functions, the
# report's files and the inputs of the stage targets. Job resources: resources.smk.

import json
import re
from types import SimpleNamespace

from longdna.config import (
    architecture,
    finetune_config,
    finetune_runs,
    finetune_settings,
    pretrain_settings,
    released_models,
)
from longdna.data.benchmarks.suite_inputs import load_registry
from longdna.eval import BASELINES
from snakemake.logging import logger

ENVS = Path(workflow.basedir) / "envs"
SCRIPTS = Path(workflow.basedir) / "scripts"
DOWNLOADS = config.get("download_dir", "results/downloads")
PRETRAIN_GENOME = config["tokenize"]["genome"]
SOFT_MASK = config["tokenize"].get("soft_mask", True)
#: model name -> `pretrained` source of the models fetched instead of pretrained here
RELEASED = released_models(config)
RUNS = finetune_runs(config)


wildcard_constraints:
    genome="[^/]+",
    chrom="[^/]+",
    model="[^/]+",
    benchmark="[^/]+",
    seed="[0-9]+",
    vcf="[^/]+",


# ---- paths ----


def genome_fasta(genome):
    return f"results/genome/{genome}/genome.fa.gz"


def shard_dir(genome):
    return f"results/tokens/{genome}"


def pretrain_dir(model):
    return f"results/pretrain/{model}"


def model_pattern(names):
    """A `{model}` constraint matching exactly `names` (pretrained here or fetched: two rules, one layout)."""
    return "|".join(re.escape(name) for name in names) or "(?!)"  # (?!): matches nothing


def chromosomes(wildcards):
    """Sequence names of a prepared genome (known once the genome checkpoint has run)."""
    fai = checkpoints.prepare_genome.get(genome=wildcards.genome).output.fai
    with open(fai) as fh:
        return [line.split("\t", 1)[0] for line in fh if line.strip()]


def shard_files(genome):
    """Every token shard of a genome (known once the genome checkpoint has run), for the rules reading them:
    declared inputs, so that a changed or missing shard reruns its readers."""
    names = chromosomes(SimpleNamespace(genome=genome))
    return expand(rules.tokenize_chromosome.output.tokens, genome=genome, chrom=names)


def checked_splits(wildcards):
    """The genome's `splits`, with the chromosome lists checked against the prepared genome: once it exists,
    `snakemake -n` names a wrong chromosome (the demo genome's names are checked from the config alone)."""
    splits = config["genomes"][wildcards.genome].get("splits", {})
    if "bed" in splits:
        return splits
    try:
        from longdna.data.genome.fasta import fasta_lengths
        from longdna.data.tokens.shards import split_regions
    except ModuleNotFoundError as err:  # a Snakemake environment without torch: the job checks
        if (err.name or "").startswith("longdna"):
            raise
        return splits
    fai = checkpoints.prepare_genome.get(genome=wildcards.genome).output.fai
    try:
        split_regions(fasta_lengths(fai.removesuffix(".fai")), splits.get("valid"), splits.get("test"))
    except ValueError as err:
        raise ValueError(f"config error at genomes.{wildcards.genome}.{err}") from None
    return splits


# ---- benchmarks ----


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
            fasta = genome_fasta(genome)
            inputs[f"{prefix}fasta"] = fasta
            inputs[f"{prefix}fai"] = f"{fasta}.fai"
            inputs[f"{prefix}gzi"] = f"{fasta}.gzi"  # read for random access, like the .fai
    return inputs


def benchmark_spec(name):
    """The config entry, plus `reference_fastas` (role -> FASTA path) for its `references`."""
    spec = config["benchmarks"][name]
    if "references" not in spec:
        return spec
    fastas = {role: genome_fasta(key) for role, key in benchmark_references(name).items() if role != "genome"}
    return {**spec, "reference_fastas": fastas}


def variant_benchmarks():
    """The benchmarks of reference/alternative pairs (the Genomics Long-Range Benchmark's eQTL and ClinVar
    tasks): scored by the frozen backbone (rule variant_effect), not fine-tuned."""
    long_range = [spec for spec in config["benchmarks"].values() if spec["suite"] == "long_range"]
    tasks = load_registry("long_range")["tasks"] if long_range else {}
    return [
        name
        for name, spec in config["benchmarks"].items()
        if spec["suite"] == "long_range" and tasks.get(spec.get("task"), {}).get("kind") == "variant"
    ]


VARIANT_BENCHMARKS = variant_benchmarks()


# ---- fine-tuning and variant-effect runs ----


def run_dir(benchmark, model, seed):
    """A run's directory (the fine-tuning layout, docs/formats.md): a fine-tuned model, or the frozen
    backbone's variant-effect probe on a variant benchmark."""
    stage = "variant_effect" if benchmark in VARIANT_BENCHMARKS else "finetune"
    return f"results/{stage}/{benchmark}/{model}/seed{seed}"


def backbone(wildcards):
    """The pretrained model (key of `models`) under the fine-tuning setup `wildcards.model`."""
    return config["finetune"]["models"][wildcards.model]["backbone"]


def backbone_files(wildcards):
    """The files of a run's backbone that its job reads: the weights and config (pretrained or fetched)."""
    model = backbone(wildcards)
    return {
        "weights": rules.pretrain_model.output.weights.format(model=model),
        "backbone_config": rules.pretrain_model.output.config.format(model=model),
    }


def finetune_backbone(wildcards):
    """Pretrained runs need the pretraining outputs; from-scratch runs only the architecture (params), which a
    released backbone's config.json gives."""
    if finetune_config(config, wildcards.benchmark, wildcards.model).init == "scratch":
        model = backbone(wildcards)
        if model in RELEASED:
            return {"backbone_config": rules.fetch_pretrained.output.config.format(model=model)}
        return {}
    return backbone_files(wildcards)


def backbone_architecture(wildcards):
    """(arch, config) of a run's backbone; None for a released one (its architecture is in its config.json)."""
    model = backbone(wildcards)
    return None if model in RELEASED else architecture(config, model)


# ---- classical baselines ----


def baseline_carving(benchmark):
    """The settings that carve the validation split (finetune settings `valid_fraction`, `kfold`) of every model
    run on `benchmark`: the baselines use the same rows, so the models must agree on them."""
    carvings = {}
    for b, m, _ in RUNS:
        if b == benchmark:
            settings = finetune_config(config, b, m)
            carvings[m] = {"valid_fraction": settings.valid_fraction, "kfold": settings.kfold}
    if len({json.dumps(c, sort_keys=True) for c in carvings.values()}) > 1:
        raise ValueError(
            f"config error: the models on benchmark {benchmark} carve different validation splits"
            f" ({carvings}), and its classical baselines need the models' one: set valid_fraction /"
            f" kfold in benchmarks.{benchmark}.finetune or finetune.settings, or evaluate.baselines: false"
        )
    return next(iter(carvings.values()))


def baseline_runs():
    """(benchmark, seed) of every baseline job: each benchmark and seed of a fine-tuning run (variant
    benchmarks, which are not fine-tuned, have none); none with `evaluate.baselines: false`."""
    if not config.get("evaluate", {}).get("baselines", True):
        return []
    clash = sorted(set(BASELINES) & set(config["finetune"]["models"]))
    if clash:
        raise ValueError(
            f"config error at finetune.models: {clash} are the names of classical baselines; rename"
            " the model(s), or set evaluate.baselines: false"
        )
    runs = sorted({(b, s) for b, _, s in RUNS if b not in VARIANT_BENCHMARKS})
    for benchmark in {b for b, _ in runs}:
        baseline_carving(benchmark)
    return runs


BASELINE_RUNS = baseline_runs()


def baseline_dir(benchmark, baseline, seed):
    return f"results/baselines/{benchmark}/{baseline}/seed{seed}"


#: every run the evaluation reports: the fine-tuned models', the variant-effect probes' and the baselines'
EVALUATED_RUNS = [run_dir(b, m, s) for b, m, s in RUNS] + [
    baseline_dir(b, baseline, s) for b, s in BASELINE_RUNS for baseline in BASELINES
]


# ---- length extrapolation ----

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
            raise ValueError(
                f"config error at evaluate.extrapolation.benchmarks: {b!r} is not a benchmark of the"
                f" suites {RESIZABLE_SUITES} (only their examples can be re-cut at other lengths)"
            )
    runs = [(b, m, s) for b, m, s in RUNS if b in benchmarks]
    for b, m, s in runs:
        if b not in VARIANT_BENCHMARKS and not finetune_config(config, b, m).save_model:
            raise ValueError(
                f"config error: evaluate.extrapolation scores run {b}/{m}, which needs the fine-tuned"
                " model: set finetune.settings.save_model: true"
            )
    return runs


EXTRAPOLATION_RUNS = extrapolation_runs()


def extrapolation_table(benchmark, model, seed):
    return f"results/extrapolation/{benchmark}/{model}/seed{seed}.csv"


def extrapolation_inputs(wildcards):
    """The run (its metrics.json is written last), the benchmark, its genome, and a probe's backbone."""
    fasta = genome_fasta(benchmark_genome(wildcards.benchmark))
    run = run_dir(wildcards.benchmark, wildcards.model, wildcards.seed)
    inputs = {
        "metrics": f"{run}/metrics.json",
        "data": rules.prepare_benchmark.output.data,
        "info": rules.prepare_benchmark.output.info,
        "fasta": fasta,
        "fai": f"{fasta}.fai",
    }
    if wildcards.benchmark in VARIANT_BENCHMARKS:
        inputs["weights"] = backbone_files(wildcards)["weights"]
    return inputs


# ---- variant scoring (VCFs) ----

VARIANTS = config.get("variants", {})


def variant_jobs():
    """(vcf, model) of every scoring job; config errors name the key."""
    if not VARIANTS:
        return []
    models = VARIANTS.get("models", list(config["models"]))
    problems = [
        f"variants.models: {m!r} is not a key of models {sorted(config['models'])}"
        for m in models
        if m not in config["models"]
    ]
    for name, spec in VARIANTS["vcfs"].items():
        if spec.get("genome", PRETRAIN_GENOME) not in config["genomes"]:
            problems.append(
                f"variants.vcfs.{name}.genome: {spec['genome']!r} is not a key of genomes"
                f" {sorted(config['genomes'])}"
            )
    if problems:
        raise ValueError("\n".join(f"config error at {p}" for p in problems))
    return [(vcf, model) for vcf in VARIANTS["vcfs"] for model in models]


VARIANT_JOBS = variant_jobs()
SCORED_VCFS = [f"results/variants/{vcf}/{model}.vcf.gz" for vcf, model in VARIANT_JOBS]


def variant_genome(wildcards):
    """The prepared genome FASTA a VCF refers to: its `genome` key, else the pretraining genome."""
    return genome_fasta(VARIANTS["vcfs"][wildcards.vcf].get("genome", PRETRAIN_GENOME))


# ---- report ----


def report_when_made(path, instances=({},), **kwargs):
    """`report(path, **kwargs)` when the file of `path` exists for every wildcard values of `instances`, else
    plain `path`: `snakemake --report` fails on a report file not made yet, so the report of a partial run
    shows what it made (the flag decides nothing but the report)."""
    made = all(os.path.exists(path.format(**values)) for values in instances)
    return report(path, **kwargs) if made else path


# ---- stage targets ----

#: stage target -> the rules that do its work (`evaluate` is a rule of its own). `--forcerun` forces the jobs of
#: the rules it names and what depends on them, never what they depend on, so a stage is redone by its rules.
STAGE_RULES = {
    "genome": ["prepare_genome"],
    "tokenize": ["tokenize_chromosome", "write_shard_manifest"],
    "pretrain": ["pretrain_model", "fetch_pretrained", "test_pretrained"],
    "finetune": ["finetune_model", "variant_effect"],
    "variants": ["score_variants"],
}


def stage_target(stage, inputs):
    """The input of the target of `stage` (the stage's name): `inputs`, after a warning when `--forcerun`
    names the stage, which forces only the target (no work), instead of the stage's rules."""

    def target(wildcards):
        if stage in workflow.dag_settings.forcerun:
            logger.warning(
                f"--forcerun {stage} forces only the stage's target rule, which does no work; to redo the"
                f" stage: snakemake {stage} --forcerun {' '.join(STAGE_RULES[stage])}"
            )
        return inputs

    return target
