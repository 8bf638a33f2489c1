"""Rule finetune_model: fine-tune one model on one benchmark with one seed, then predict the test split."""

from longdna.device import require_visible_gpus
from longdna.logs import log_to
from longdna.settings import FinetuneConfig
from longdna.train.finetune import finetune

architecture = snakemake.params.architecture
with log_to(snakemake.log[0]):
    require_visible_gpus(snakemake.resources.get("gpu", 0))
    config = FinetuneConfig.from_dict({"threads": snakemake.threads, **snakemake.params.settings})
    finetune(
        snakemake.params.benchmark_dir,
        snakemake.params.out_dir,
        config,
        seed=int(snakemake.wildcards.seed),
        # a released backbone's architecture (None in params) is read from its directory, also for init: scratch
        backbone_dir=snakemake.params.backbone_dir if config.init == "pretrained" or not architecture else None,
        architecture=tuple(architecture) if architecture else None,
        run_name={"benchmark": snakemake.wildcards.benchmark, "model": snakemake.wildcards.model},
    )
