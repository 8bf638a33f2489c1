"""Rule tokenize_chromosome: one sequence of the genome to a uint8 token shard (+ soft-mask track)."""

import logging
import time
from pathlib import Path

from longdna.data.tokens.shards import tokenize_chromosome
from longdna.logs import describe_file, log_to

log = logging.getLogger("longdna.tokenize")
with log_to(snakemake.log[0]):
    started = time.monotonic()
    log.info("tokenizing %s of %s", snakemake.wildcards.chrom, snakemake.input.fasta)
    stats = tokenize_chromosome(
        snakemake.input.fasta,
        snakemake.wildcards.chrom,
        Path(snakemake.output.tokens).parent,
        soft_mask=snakemake.params.soft_mask,
    )
    masked = stats["softmasked_fraction"]
    log.info(
        "%d tokens, N fraction %.4f%s",
        stats["length"],
        stats["n_fraction"],
        "" if masked is None else f", soft-masked fraction {masked:.4f}",
    )
    for path in snakemake.output:
        log.info("wrote %s", describe_file(path))
    log.info("done in %.1f s", time.monotonic() - started)
