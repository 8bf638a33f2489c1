"""Rule test_pretrained: validation and test-split perplexity of a fetched released model (pretraining's outputs)."""

from longdna.device import require_visible_gpus
from longdna.logs import log_to
from longdna.pretrained import score_pretrained
from longdna.settings import PretrainConfig

with log_to(snakemake.log[0]):
    require_visible_gpus(snakemake.resources.get("gpu", 0))
    config = PretrainConfig.from_dict({"threads": snakemake.threads, **snakemake.params.settings})
    score_pretrained(snakemake.params.out_dir, snakemake.params.shards, config)
