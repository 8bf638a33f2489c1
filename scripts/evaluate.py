"""Rule evaluate: metrics table, seed statistics with bootstrap intervals, Markdown tables and plots."""

from longdna.eval.report import write_evaluation
from longdna.logs import log_to

with log_to(snakemake.log[0]):
    write_evaluation(
        snakemake.params.run_dirs,
        snakemake.params.pretrain_dirs,
        snakemake.params.out_dir,
        published=snakemake.params.published,
        resamples=snakemake.params.bootstrap,
        confidence=snakemake.params.confidence,
        length_extrapolation=snakemake.params.length_extrapolation,
    )
