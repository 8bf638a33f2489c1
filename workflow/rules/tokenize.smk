# Stage 2: per-chromosome token shards (one job per sequence), then the manifest and split regions.


rule tokenize_chromosome:
    input:
        fasta=rules.prepare_genome.output.fasta,
        fai=rules.prepare_genome.output.fai,
        gzi=rules.prepare_genome.output.gzi,
    output:
        **({"mask": "results/tokens/{genome}/{chrom}.mask.npy"} if SOFT_MASK else {}),
        tokens="results/tokens/{genome}/{chrom}.npy",
        stats="results/tokens/{genome}/{chrom}.json",
    log:
        "logs/tokenize/{genome}/{chrom}.log",
    benchmark:
        "benchmarks/tokenize/{genome}/{chrom}.tsv"
    conda:
        ENVS / "data.yaml"
    threads: 1
    resources:
        **cluster_resources(
            "tokenize",
            cpus=1,
            runtime=resource(
                "tokenize",
                "runtime",
                lambda wildcards, input, attempt: tokenize_estimate(wildcards, input)["runtime"] * attempt,
            ),
        ),
        mem_mb=resource("tokenize", "mem_mb", lambda wildcards, input: tokenize_estimate(wildcards, input)["mem_mb"]),
    params:
        soft_mask=SOFT_MASK,
    script:
        SCRIPTS / "tokenize_chromosome.py"


rule write_shard_manifest:
    input:
        stats=lambda wildcards: expand(
            rules.tokenize_chromosome.output.stats, genome=wildcards.genome, chrom=chromosomes(wildcards)
        ),
        fai=rules.prepare_genome.output.fai,
    output:
        manifest="results/tokens/{genome}/manifest.parquet",
        regions="results/tokens/{genome}/regions.parquet",
    log:
        "logs/tokenize/{genome}/manifest.log",
    benchmark:
        "benchmarks/tokenize/{genome}/manifest.tsv"
    conda:
        ENVS / "data.yaml"
    threads: 1
    resources:
        **cluster_resources("tokenize", cpus=1, runtime=scaled_runtime(10)),
        mem_mb=2000,
    params:
        chroms=chromosomes,
        splits=checked_splits,
        cache=DOWNLOADS,
    script:
        SCRIPTS / "write_shard_manifest.py"


rule tokenize:
    input:
        stage_target("tokenize", rules.write_shard_manifest.output.manifest.format(genome=PRETRAIN_GENOME)),
