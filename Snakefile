# longdna: genome -> tokenize -> pretrain -> finetune -> evaluate (and, with `variants:`, VCF scoring).
#
#   snakemake --cores 8                                   the embedded demo (config/config.yaml)
#   snakemake --cores 8 --use-conda --configfile config/hg38.yaml
#   snakemake --profile workflow/profiles/slurm --configfile config/hg38.yaml
#   snakemake finetune                                    one stage (target rules: genome, tokenize, pretrain,
#                                                         finetune, evaluate, variants)
#   snakemake finetune --forcerun finetune_model variant_effect    redo one stage: name its rules (docs/reruns.md)
#
# Stage file formats: docs/formats.md. Configuration keys: config/README.md.

import os
import sys
from pathlib import Path

from snakemake.utils import min_version

min_version("9.17")  # callable priority

# The package lives in src/; the Snakefile and every job import it from there (no install needed in the
# stage conda envs, so they work offline; see docs/install.md). `envvars` passes PYTHONPATH on
# to jobs that run elsewhere (SLURM).
SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)
os.environ.update(PYTHONPATH=os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p))


envvars:
    "PYTHONPATH",


from longdna.config import load_schema, validate_config

# The embedded demo is the default. A --configfile replaces it entirely instead of being deep-merged into
# it, so a real run never inherits the demo's models and benchmarks.
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "config", "config.yaml")


validate_config(config, load_schema(Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"))


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/resources.smk"
include: "workflow/rules/genome.smk"
include: "workflow/rules/tokenize.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/variants.smk"


rule all:
    default_target: True
    input:
        rules.evaluate.output,
        SCORED_VCFS,
