# Stage 2: per-chromosome token shards (one job per sequence), then the manifest and split regions.


rule tokenize_chromosome:
    input:
        fasta=rules.prepare_genome.output.fasta,
        fai=rules.prepare_genome.output.fai,
    output:
        tokens="results/tokens/{genome}/{chrom}.npy",
        stats="results/tokens/{genome}/{chrom}.json",
        **({"mask": "results/tokens/{genome}/{chrom}.mask.npy"} if SOFT_MASK else {}),
    params:
        soft_mask=SOFT_MASK,
    log:
        "logs/tokenize/{genome}/{chrom}.log",
    benchmark:
        "benchmarks/tokenize/{genome}/{chrom}.tsv"
    threads: 1
    resources:
        cpus_per_task=1,
        mem_mb=resource("tokenize", "mem_mb", lambda wildcards, input: tokenize_estimate(wildcards, input)["mem_mb"]),
        runtime=resource(
            "tokenize",
            "runtime",
            lambda wildcards, input, attempt: tokenize_estimate(wildcards, input)["runtime"] * attempt,
        ),
        **cluster_resources("tokenize"),
    conda:
        ENVS / "data.yaml"
    script:
        SCRIPTS / "tokenize_chromosome.py"


rule write_shard_manifest:
    input:
        stats=lambda wildcards: expand(
            "results/tokens/{genome}/{chrom}.json", genome=wildcards.genome, chrom=chromosomes(wildcards)
        ),
        fai=rules.prepare_genome.output.fai,
    output:
        manifest="results/tokens/{genome}/manifest.parquet",
        regions="results/tokens/{genome}/regions.parquet",
    params:
        chroms=chromosomes,
        splits=lambda wildcards: config["genomes"][wildcards.genome].get("splits", {}),
        cache=DOWNLOADS,
    log:
        "logs/tokenize/{genome}/manifest.log",
    benchmark:
        "benchmarks/tokenize/{genome}/manifest.tsv"
    threads: 1
    resources:
        cpus_per_task=1,
        mem_mb=2000,
        runtime=scaled_runtime(10),
        **cluster_resources("tokenize"),
    conda:
        ENVS / "data.yaml"
    script:
        SCRIPTS / "write_shard_manifest.py"


rule tokenize:
    input:
        f"results/tokens/{PRETRAIN_GENOME}/manifest.parquet",
