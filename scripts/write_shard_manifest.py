"""Rule write_shard_manifest: gather per-chromosome shard statistics and the split regions."""

from pathlib import Path

from longdna.data.fasta import fasta_lengths
from longdna.data.genome import fetch_split_bed
from longdna.data.shards import split_regions, write_manifest
from longdna.logs import log_to

with log_to(snakemake.log[0]):
    splits = snakemake.params.splits
    fasta = snakemake.input.fai.removesuffix(".fai")
    bed = fetch_split_bed(splits["bed"], snakemake.params.cache) if "bed" in splits else None
    regions = split_regions(fasta_lengths(fasta), splits.get("valid"), splits.get("test"), bed)
    write_manifest(Path(snakemake.output.manifest).parent, snakemake.params.chroms, regions,
                   genome=snakemake.wildcards.genome)
