"""Rule prepare_genome: acquire one genome and normalise it to bgzipped FASTA with .fai and .gzi."""

import logging
import time

from longdna.data.genome.prepare import prepare_genome
from longdna.logs import describe_file, log_to

log = logging.getLogger("longdna.genome")
with log_to(snakemake.log[0]):
    started = time.monotonic()
    spec = snakemake.params.spec
    log.info("genome %s: %s", snakemake.wildcards.genome, ", ".join(f"{k}={v}" for k, v in spec.items()))
    records = prepare_genome(spec, snakemake.output.fasta, snakemake.params.cache)
    log.info(
        "%d sequences, %d bases: %s",
        len(records),
        sum(length for _, length in records),
        ", ".join(f"{name} {length}" for name, length in records[:10]) + (" ..." if len(records) > 10 else ""),
    )
    for path in snakemake.output:
        log.info("wrote %s", describe_file(path))
    log.info("done in %.1f s", time.monotonic() - started)
