"""Rule extrapolate_model: score one saved run on its benchmark's test split re-cut at multiples of its length."""

from longdna.eval.extrapolation import ExtrapolationConfig, evaluate_extrapolation
from longdna.logs import log_to

with log_to(snakemake.log[0]):
    evaluate_extrapolation(
        snakemake.params.run_dir,
        snakemake.params.benchmark_dir,
        snakemake.input.fasta,
        ExtrapolationConfig.from_dict({"threads": snakemake.threads, **snakemake.params.settings}),
        snakemake.output.table,
        run_name={"benchmark": snakemake.wildcards.benchmark, "model": snakemake.wildcards.model,
                  "seed": int(snakemake.wildcards.seed)},
    )
