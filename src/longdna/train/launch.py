"""Launching a pretraining run on one process, one node's GPUs (``torchrun --standalone``) or several nodes.

The workflow builds the command with :func:`launch_command` and runs it with :func:`run_command`, whose
return value is the stage's exit status. ``torchrun`` reports any failed worker as status 1, so a preempted
run (workers exit with :data:`~longdna.train.preemption.PREEMPTED_EXIT_CODE` after their checkpoint) is
recognised by the marker file the main worker writes, and mapped back to that status.

On several nodes the command must run once per node (``srun --ntasks-per-node=1 ...``); the rendezvous host
is ``MASTER_ADDR`` if set, else the first node of the SLURM allocation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from longdna.train.preemption import PREEMPTED_EXIT_CODE, PREEMPTED_MARKER

#: signals that start a graceful stop (checkpoint, exit 75); torchrun relays them to its workers
PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
ENTRY_POINT = "longdna.train.pretrain"
LAUNCHER = "longdna.train.launch"


def first_host(nodelist: str) -> str:
    """First host name of a SLURM node list: ``gpu[03-04,07],cpu1`` -> ``gpu03``."""
    match = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not match or not match.group(1):
        raise ValueError(f"cannot read a host name from the SLURM node list {nodelist!r}")
    prefix, ranges = match.groups()
    return prefix if ranges is None else prefix + ranges.split(",")[0].split("-")[0]


def _torchrun_supports(option: str) -> bool:
    from torch.distributed.launcher.api import LaunchConfig

    return option in {f.name for f in dataclasses.fields(LaunchConfig)}


def launch_command(
    nproc_per_node: int,
    nnodes: int = 1,
    args: Sequence[str] = (),
    *,
    env: Mapping[str, str] | None = None,
    port: int = 29500,
    shutdown_timeout: int = 600,
) -> list[str]:
    """The command that runs ``python -m longdna.train.pretrain ARGS`` on ``nnodes x nproc_per_node`` processes.

    One process: plain Python (exit statuses pass through unchanged). One node: ``torchrun --standalone``.
    Several nodes: a c10d rendezvous keyed by the SLURM job id. ``shutdown_timeout`` is how long torchrun
    lets workers finish their preemption checkpoint after it relays a signal.
    """
    if nproc_per_node < 1 or nnodes < 1:
        raise ValueError(f"need at least one process and one node, got {nproc_per_node} x {nnodes}")
    if nproc_per_node * nnodes == 1:
        return [sys.executable, "-m", ENTRY_POINT, *args]
    env = os.environ if env is None else env
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(nproc_per_node),
        "--max-restarts",
        "0",
    ]
    if nnodes == 1:
        command += ["--standalone", "--nnodes", "1"]
    else:
        host = env.get("MASTER_ADDR") or first_host(env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or "")
        job = env.get("SLURM_JOB_ID", "longdna")
        command += [
            "--nnodes",
            str(nnodes),
            "--rdzv-backend",
            "c10d",
            "--rdzv-endpoint",
            f"{host}:{env.get('MASTER_PORT', port)}",
            "--rdzv-id",
            job,
        ]
        if "SLURM_NODEID" in env:
            command += ["--node-rank", env["SLURM_NODEID"]]
    # by default torchrun dies on SIGUSR1 and gives workers only 30 s after SIGTERM
    signals = "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"
    command += ["--signals-to-handle", signals] if _torchrun_supports("signals_to_handle") else []
    command += ["--shutdown-timeout", str(shutdown_timeout)] if _torchrun_supports("shutdown_timeout") else []
    return [*command, "-m", ENTRY_POINT, *args]


def run_command(
    command: Sequence[str],
    out_dir: str | os.PathLike,
    marker_wait: float = 60.0,
    output: str | os.PathLike | None = None,
) -> int:
    """Run a :func:`launch_command` command and return the stage's exit status.

    SIGTERM, SIGUSR1 and SIGINT received here are relayed to the child. When the child fails after a
    preemption signal, the workers may still be writing their checkpoint (torchrun can exit before them):
    the marker of the main worker is awaited for up to ``marker_wait`` seconds. Status 75 means "checkpoint
    written, rerun to resume"; a signal death of the child becomes 128 + signal, as in a shell. ``output``:
    a file the child's stdout and stderr are appended to (a Snakemake job's log).
    """
    marker = Path(out_dir) / PREEMPTED_MARKER
    started = time.time()
    with contextlib.ExitStack() as stack:
        sink = None if output is None else stack.enter_context(open(output, "a"))
        # a new session: signals relayed here arrive once, not also through the terminal's process group
        child = subprocess.Popen(list(command), start_new_session=True, stdout=sink, stderr=sink)
    signalled = False

    def relay(signum: int, frame: object) -> None:
        nonlocal signalled
        signalled = signalled or signum in PREEMPTION_SIGNALS
        child.send_signal(signum)

    relayed = (*PREEMPTION_SIGNALS, signal.SIGINT)
    previous = {sig: signal.signal(sig, relay) for sig in relayed}
    try:
        status = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if status in (0, PREEMPTED_EXIT_CODE):
        return status
    deadline = time.time() + (marker_wait if signalled else 0.0)
    while True:
        if marker.exists() and marker.stat().st_mtime >= started - 1:  # this attempt's marker, not a stale one
            return PREEMPTED_EXIT_CODE
        if time.time() >= deadline:
            return 128 - status if status < 0 else status
        time.sleep(0.5)


def pretrain_args(
    arch: str,
    arch_config: Mapping[str, object],
    shards: str | os.PathLike,
    out_dir: str | os.PathLike,
    settings: Mapping[str, object],
) -> list[str]:
    """The ``python -m longdna.train.pretrain`` arguments of one run (configs inline as JSON)."""
    return [
        "--arch",
        arch,
        "--arch-config",
        json.dumps(dict(arch_config)),
        "--shards",
        str(shards),
        "--out",
        str(out_dir),
        "--config",
        json.dumps(dict(settings)),
        "--no-progress",
    ]


def gpus_and_nodes(resources: Mapping[str, object]) -> tuple[int, int]:
    """(GPUs per node, nodes) of a Snakemake job's resources: ``gpu``, or the count of a
    ``gres=gpu[:type][:N]`` request (several nodes), else 0; ``nodes``, default 1."""
    gpus = resources.get("gpu") or 0
    gres = str(resources.get("gres") or "")
    if not gpus and (gres == "gpu" or gres.startswith("gpu:")):
        count = gres.rsplit(":", 1)[-1]
        gpus = int(count) if count.isdigit() else 1
    return int(gpus), max(1, int(resources.get("nodes") or 1))


def stage_command(
    args: Sequence[str],
    gpus: int = 0,
    nodes: int = 1,
    threads: int = 1,
    env: Mapping[str, str] | None = None,
) -> list[str] | None:
    """How the workflow's pretrain job runs ``args`` with ``gpus`` per node on ``nodes``: one process per GPU
    (one on CPU). ``None``: a single process, run in the job's own Python. One node: ``torchrun
    --standalone``. Several nodes: one launcher per node through ``srun`` inside the job's SLURM allocation,
    each starting torchrun with its node's rank (``SLURM_NODEID``) and the allocation's first node as the
    rendezvous host; ``threads`` CPUs per node."""
    nproc = max(1, gpus)
    if nproc * nodes == 1:
        return None
    if nodes == 1:
        return launch_command(nproc, 1, args, env=env)
    env = os.environ if env is None else env
    if not (env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")):
        raise RuntimeError(
            f"pretraining on {nodes} nodes needs a SLURM allocation (run the workflow with the SLURM profile),"
            f" or start `python -m {LAUNCHER} {nproc} {nodes} -- ...` on every node yourself"
        )
    srun = [
        "srun",
        f"--nodes={nodes}",
        f"--ntasks={nodes}",
        "--ntasks-per-node=1",
        "--kill-on-bad-exit=1",
        f"--cpus-per-task={max(1, threads)}",
    ]
    if gpus:
        srun.append(f"--gres=gpu:{gpus}")
    return [*srun, sys.executable, "-m", LAUNCHER, str(nproc), str(nodes), "--", *args]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m longdna.train.launch NPROC_PER_NODE NNODES -- PRETRAIN ARGS``: launch and map the status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 2 or "--out" not in argv:
        usage = "usage: python -m longdna.train.launch NPROC_PER_NODE NNODES -- --arch ... --out DIR ..."
        print(usage, file=sys.stderr)
        return 2
    nproc, nnodes, rest = int(argv[0]), int(argv[1]), argv[2:]
    rest = rest[1:] if rest[:1] == ["--"] else rest
    out_dir = rest[rest.index("--out") + 1]
    return run_command(launch_command(nproc, nnodes, rest), out_dir)


if __name__ == "__main__":
    sys.exit(main())
