"""Rule prepare_genome: acquire one genome and normalise it to bgzipped FASTA with .fai and .gzi."""

from longdna.data.genome import prepare_genome
from longdna.logs import log_to

with log_to(snakemake.log[0]):
    prepare_genome(snakemake.params.spec, snakemake.output.fasta, snakemake.params.cache)
