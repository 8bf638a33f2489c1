"""Rule pretrain_model: pretrain one model on the token shards (torchrun when more than one GPU/node)."""

from longdna.logs import log_to
from longdna.train.pretrain import PretrainConfig, pretrain

with log_to(snakemake.log[0]):
    settings = {"threads": snakemake.threads, **snakemake.params.settings}
    config = PretrainConfig.from_dict(settings)
    pretrain(snakemake.params.arch, snakemake.params.arch_config, snakemake.params.shards,
             snakemake.params.out_dir, config)
