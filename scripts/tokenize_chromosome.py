"""Rule tokenize_chromosome: one sequence of the genome to a uint8 token shard (+ soft-mask track)."""

from pathlib import Path

from longdna.data.shards import tokenize_chromosome
from longdna.logs import log_to

with log_to(snakemake.log[0]):
    tokenize_chromosome(
        snakemake.input.fasta,
        snakemake.wildcards.chrom,
        Path(snakemake.output.tokens).parent,
        soft_mask=snakemake.params.soft_mask,
    )
