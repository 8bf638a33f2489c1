# Variant scoring: every VCF of `variants.vcfs` scored by every model of `variants.models` (default: all of
# `models`) with longdna.eval.variant_scoring: each record kept, in order, with the zero-shot log-likelihood
# ratio (INFO LDNA_LLR) and the embedding distance (LDNA_EMB) of each ALT allele. Not part of `evaluate`: its
# outputs are VCFs for people and other tools, not metrics.


rule score_variants:
    input:
        vcf=lambda wildcards: VARIANTS["vcfs"][wildcards.vcf]["path"],
        fasta=variant_genome,
        fai=lambda wildcards: f"{variant_genome(wildcards)}.fai",
        weights=rules.pretrain_model.output.weights,
        model_config=rules.pretrain_model.output.config,
    output:
        vcf="results/variants/{vcf}/{model}.vcf.gz",
    log:
        "logs/variants/{vcf}/{model}.log",
    benchmark:
        "benchmarks/variants/{vcf}/{model}.tsv"
    conda:
        ENVS / "train.yaml"
    threads: threads_for("variants", 1)
    resources:
        **cluster_resources(
            "variants",
            cpus=threads_for("variants", 1),
            runtime=resource("variants", "runtime", scaled_runtime(120)),
            gpus=gpus_for("variants"),
        ),
        gpu=min(gpus_for("variants"), 1),
        mem_mb=resource("variants", "mem_mb", 4000),
    params:
        model_dir=lambda wildcards, input: os.path.dirname(input.weights),
        settings=VARIANTS.get("settings", {}),
    script:
        SCRIPTS / "score_variants.py"


rule variants:
    input:
        stage_target("variants", SCORED_VCFS),
