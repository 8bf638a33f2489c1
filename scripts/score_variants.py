"""Rule score_variants: one VCF scored by one pretrained model (INFO LDNA_LLR and LDNA_EMB per ALT allele)."""

from longdna.device import require_visible_gpus
from longdna.eval.variant_scoring import describe, score_vcf
from longdna.logs import log_to
from longdna.settings import VariantScoringConfig

with log_to(snakemake.log[0]):
    require_visible_gpus(snakemake.resources.get("gpu", 0))
    counts = score_vcf(
        snakemake.params.model_dir,
        snakemake.input.fasta,
        snakemake.input.vcf,
        snakemake.output.vcf,
        VariantScoringConfig.from_dict({"threads": snakemake.threads, **snakemake.params.settings}),
    )
    print(describe(snakemake.output.vcf, counts))
