"""Rule pretrain_model: pretrain one model on the token shards.

One process (CPU or one GPU) runs here, in the job's Python. More GPUs, CPU processes or nodes (the job's
`gpu`/`gres` and `nodes` resources and `cpu_processes`, from the config's `resources.pretrain`) launch torchrun
through longdna.train.launch --
on several nodes one launcher per node with srun. Either way a preempted run (SIGTERM: checkpoint written)
ends the job with status 75, and the job's retry (or a rerun) resumes from the checkpoint.
"""

import sys

from longdna.device import require_visible_gpus
from longdna.logs import log_to
from longdna.settings import PretrainConfig
from longdna.train.launch import gpus_and_nodes, pretrain_args, run_command, stage_command
from longdna.train.pretrain import pretrain

gpus, nodes = gpus_and_nodes(snakemake.resources)
processes = gpus or snakemake.params.cpu_processes  # one per GPU; without GPUs, resources.pretrain.cpu_processes
with log_to(snakemake.log[0]):
    require_visible_gpus(gpus)  # before any launch: a GPU job whose torch sees none fails here, naming why
    settings = {"threads": max(1, snakemake.threads // processes), **snakemake.params.settings}
    config = PretrainConfig.from_dict(settings)  # a bad setting fails here, before any launch
    args = pretrain_args(
        snakemake.params.arch, snakemake.params.arch_config, snakemake.params.shards, snakemake.params.out_dir, settings
    )
    command = stage_command(args, processes, nodes, threads=snakemake.threads)
    if command is None:
        pretrain(
            snakemake.params.arch,
            snakemake.params.arch_config,
            snakemake.params.shards,
            snakemake.params.out_dir,
            config,
        )
    else:
        print(f"launching {processes} x {nodes} processes: {' '.join(command)}", file=sys.stderr, flush=True)
        status = run_command(command, snakemake.params.out_dir, output=snakemake.log[0])
        if status:
            print(f"pretraining ended with status {status}", file=sys.stderr, flush=True)
            raise SystemExit(status)
