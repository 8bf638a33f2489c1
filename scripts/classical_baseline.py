"""Rule classical_baseline: the majority class, k-mer and position one-hot linear models on one benchmark's
splits for one seed, each written as a run."""

from longdna.data.benchmarks.splits import Carving
from longdna.eval.baselines import run_baselines
from longdna.logs import log_to

with log_to(snakemake.log[0]):
    run_baselines(
        snakemake.params.benchmark_dir,
        snakemake.params.out_dirs,
        seed=int(snakemake.wildcards.seed),
        carving=Carving(**snakemake.params.carving),
        benchmark=snakemake.wildcards.benchmark,
        threads=snakemake.threads,
    )
