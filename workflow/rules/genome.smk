# Stage 1: acquire each configured genome and normalise it to bgzipped FASTA + .fai + .gzi.
# A checkpoint, because the sequence names (hence the tokenize jobs) are known only afterwards.


checkpoint prepare_genome:
    output:
        fasta="results/genome/{genome}/genome.fa.gz",
        fai="results/genome/{genome}/genome.fa.gz.fai",
        gzi="results/genome/{genome}/genome.fa.gz.gzi",
    params:
        spec=lambda wildcards: {k: v for k, v in config["genomes"][wildcards.genome].items() if k != "splits"},
        cache=DOWNLOADS,
    log:
        "logs/genome/{genome}.log",
    benchmark:
        "benchmarks/genome/{genome}.tsv"
    threads: threads_for("genome")
    resources:
        cpus_per_task=threads_for("genome"),
        mem_mb=resource("genome", "mem_mb", 4000),
        runtime=resource("genome", "runtime", scaled_runtime(120)),
        **cluster_resources("genome"),
    conda:
        ENVS / "data.yaml"
    script:
        SCRIPTS / "prepare_genome.py"


rule genome:
    input:
        expand(rules.prepare_genome.output.fasta, genome=config["genomes"]),
