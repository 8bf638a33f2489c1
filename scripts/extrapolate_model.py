"""Rule extrapolate_model: score one saved run on its benchmark's test split re-cut at multiples of its length."""

from longdna.device import require_visible_gpus
from longdna.eval.extrapolation import evaluate_extrapolation
from longdna.logs import log_to
from longdna.settings import ExtrapolationConfig

with log_to(snakemake.log[0]):
    require_visible_gpus(snakemake.resources.get("gpu", 0))
    evaluate_extrapolation(
        snakemake.params.run_dir,
        snakemake.params.benchmark_dir,
        snakemake.input.fasta,
        ExtrapolationConfig.from_dict({"threads": snakemake.threads, **snakemake.params.settings}),
        snakemake.output.table,
        run_name={
            "benchmark": snakemake.wildcards.benchmark,
            "model": snakemake.wildcards.model,
            "seed": int(snakemake.wildcards.seed),
        },
    )
