"""Rule write_shard_manifest: gather per-chromosome shard statistics and the split regions."""

import logging
import time
from pathlib import Path

from longdna.data.genome.fasta import fasta_lengths
from longdna.data.genome.prepare import split_bed_regions
from longdna.data.tokens.shards import split_regions, write_manifest
from longdna.logs import describe_file, log_to

log = logging.getLogger("longdna.tokenize")
with log_to(snakemake.log[0]):
    started = time.monotonic()
    splits = snakemake.params.splits
    lengths = fasta_lengths(snakemake.input.fai.removesuffix(".fai"))
    if "bed" in splits:
        log.info("split regions from %s", splits["bed"])
        regions = split_bed_regions(splits["bed"], snakemake.params.cache, lengths)
    else:
        log.info("split chromosomes: valid %s, test %s", splits.get("valid"), splits.get("test"))
        regions = split_regions(lengths, splits.get("valid"), splits.get("test"))
    log.info("%d shards read (%s)", len(snakemake.params.chroms), Path(snakemake.output.manifest).parent)
    write_manifest(
        Path(snakemake.output.manifest).parent, snakemake.params.chroms, regions, genome=snakemake.wildcards.genome
    )
    for split, bases in (regions["end"] - regions["start"]).groupby(regions["split"]).sum().items():
        log.info("%s: %d bases in %d regions", split, bases, (regions["split"] == split).sum())
    for path in snakemake.output:
        log.info("wrote %s", describe_file(path))
    log.info("done in %.1f s", time.monotonic() - started)
