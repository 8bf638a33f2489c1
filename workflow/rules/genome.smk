# Stage 1: acquire each configured genome and normalise it to bgzipped FASTA + .fai + .gzi.
# A checkpoint, because the sequence names (hence the tokenize jobs) are known only afterwards.


checkpoint prepare_genome:
    output:
        fasta="results/genome/{genome}/genome.fa.gz",
        fai="results/genome/{genome}/genome.fa.gz.fai",
        gzi="results/genome/{genome}/genome.fa.gz.gzi",
    log:
        "logs/genome/{genome}.log",
    benchmark:
        "benchmarks/genome/{genome}.tsv"
    conda:
        ENVS / "data.yaml"
    threads: threads_for("genome")
    resources:
        **cluster_resources(
            "genome", cpus=threads_for("genome"), runtime=resource("genome", "runtime", scaled_runtime(120))
        ),
        mem_mb=resource("genome", "mem_mb", 4000),
    params:
        spec=lambda wildcards: {k: v for k, v in config["genomes"][wildcards.genome].items() if k != "splits"},
        cache=DOWNLOADS,
    script:
        SCRIPTS / "prepare_genome.py"


rule genome:
    input:
        stage_target("genome", expand(rules.prepare_genome.output.fasta, genome=config["genomes"])),
