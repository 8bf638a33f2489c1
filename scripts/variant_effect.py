"""Rule variant_effect: score one variant benchmark with one frozen backbone and one seed (probe + zero-shot)."""

from longdna.device import require_visible_gpus
from longdna.eval.variant_effect import variant_effect
from longdna.logs import log_to
from longdna.settings import VariantEffectConfig

with log_to(snakemake.log[0]):
    require_visible_gpus(snakemake.resources.get("gpu", 0))
    variant_effect(
        snakemake.params.benchmark_dir,
        snakemake.params.out_dir,
        snakemake.params.backbone_dir,
        VariantEffectConfig.from_dict({"threads": snakemake.threads, **snakemake.params.settings}),
        seed=int(snakemake.wildcards.seed),
        run_name={"benchmark": snakemake.wildcards.benchmark, "model": snakemake.wildcards.model},
    )
