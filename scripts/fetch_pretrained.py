"""Rule fetch_pretrained: fetch a model's released weights (models.<name>.pretrained) into our checkpoint format."""

from longdna.logs import log_to
from longdna.pretrained import import_pretrained

with log_to(snakemake.log[0]):
    record = import_pretrained(
        snakemake.params.source,
        snakemake.params.out_dir,
        arch=snakemake.params.arch,
        preset=snakemake.params.preset,
        seq_len=snakemake.params.seq_len,
        model=snakemake.wildcards.model,
    )
    print(f"{record['source']}: {record['layout']} ({record.get('commit', record.get('path'))})")
