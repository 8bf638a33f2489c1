"""Rule prepare_benchmark: materialise one benchmark in the common on-disk format."""

import logging
import time
from pathlib import Path

from longdna.data.benchmarks.suites import prepare_benchmark
from longdna.io import read_json
from longdna.logs import describe_file, log_to

log = logging.getLogger("longdna.benchmarks")
with log_to(snakemake.log[0]):
    started = time.monotonic()
    spec = snakemake.params.spec
    log.info("benchmark %s: %s", snakemake.wildcards.benchmark, ", ".join(f"{k}={v}" for k, v in spec.items()))
    for name, path in snakemake.input.items():
        log.info("reading %s %s", name, path)
    prepare_benchmark(
        name=snakemake.wildcards.benchmark,
        spec=spec,
        out_dir=Path(snakemake.output.data).parent,
        genome_fasta=snakemake.input.get("fasta"),
        genome_spec=snakemake.params.genome_spec,
        cache_dir=snakemake.params.cache,
    )
    info = read_json(snakemake.output.info)
    log.info("task %s, %d output(s), metric %s", info["task"], info["num_outputs"], info["metric"])
    for split, sizes in info.get("sizes", {}).items():
        log.info("%s: %d rows, %d bases, longest %d", split, sizes["rows"], sizes["bases"], sizes["max_length"])
    for path in snakemake.output:
        log.info("wrote %s", describe_file(path))
    log.info("done in %.1f s", time.monotonic() - started)
