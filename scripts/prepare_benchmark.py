"""Rule prepare_benchmark: materialise one benchmark in the common on-disk format."""

from longdna.data.suites import prepare_benchmark
from longdna.logs import log_to

with log_to(snakemake.log[0]):
    prepare_benchmark(
        name=snakemake.wildcards.benchmark,
        spec=snakemake.params.spec,
        out_dir=snakemake.output.data.rsplit("/", 1)[0],
        genome_fasta=snakemake.input.get("fasta"),
        genome_spec=snakemake.params.genome_spec,
        cache_dir=snakemake.params.cache,
    )
