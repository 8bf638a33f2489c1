"""Rule finetune_model: fine-tune one model on one benchmark with one seed, then predict the test split."""

from longdna.logs import log_to
from longdna.train.finetune import FinetuneConfig, finetune

with log_to(snakemake.log[0]):
    config = FinetuneConfig.from_dict({"threads": snakemake.threads, **snakemake.params.settings})
    finetune(
        snakemake.params.benchmark_dir,
        snakemake.params.out_dir,
        config,
        seed=int(snakemake.wildcards.seed),
        backbone_dir=snakemake.params.backbone_dir if config.init == "pretrained" else None,
        architecture=tuple(snakemake.params.architecture),
        run_name={"benchmark": snakemake.wildcards.benchmark, "model": snakemake.wildcards.model},
    )
