"""Cluster runs without a cluster: the profiles, job resources that follow the configuration, the sbatch
flags the SLURM plugin makes of them, and how the pretrain job launches one process, torchrun or srun.

The real SLURM runs are in tests/test_slurm.py."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
import yaml
from conftest import CI_CONFIG, REPO, snakemake

from longdna import resources as estimates
from longdna.train.launch import gpus_and_nodes, pretrain_args, stage_command
from longdna.train.preemption import PREEMPTED_EXIT_CODE

SLURM_PROFILE = REPO / "workflow" / "profiles" / "slurm"
DEFAULT_PROFILE = REPO / "workflow" / "profiles" / "default"


def ci_config(tmp_path: Path, change=None, name: str = "config.yaml") -> Path:
    config = yaml.safe_load(CI_CONFIG.read_text())
    if change is not None:
        change(config)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def job_resources(stdout: str, rule: str) -> list[dict[str, object]]:
    """The `resources:` of every job of `rule` in a dry run's output (numbers as int)."""
    found, current = [], None
    for line in stdout.splitlines():
        stripped = line.strip()
        if stripped.startswith(("rule ", "checkpoint ")):
            current = stripped.split()[1].rstrip(":")
        elif stripped.startswith("resources:") and current == rule:
            values = {}
            for item in stripped.removeprefix("resources:").split(", "):
                key, value = item.strip().split("=", 1)
                values[key] = int(value) if value.isdigit() else value
            found.append(values)
    return found


def dry_run(tmp_path: Path, change=None, *args: str) -> str:
    """A dry run's output, with the resources only SLURM jobs declare (LONGDNA_DECLARE_SLURM=1)."""
    with mock.patch.dict(os.environ, {"LONGDNA_DECLARE_SLURM": "1"}):
        result = snakemake(tmp_path, "-n", *args, configfile=ci_config(tmp_path, change))
    return result.stdout + result.stderr


def pretrain_job(tmp_path: Path, change=None) -> dict[str, object]:
    (job,) = job_resources(dry_run(tmp_path, change, "pretrain"), "pretrain_model")
    return job


# -- profiles -------------------------------------------------------------------------------------------------
def test_slurm_profile_settings() -> None:
    profile = yaml.safe_load((SLURM_PROFILE / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert profile["retries"] >= 1 and profile["slurm-requeue"] is True  # preempted/failed jobs come back
    assert profile["slurm-status-command"] == "squeue"  # works without slurmdbd (MinJobAge >= 120 s)
    assert profile["jobs"] > 1 and profile["latency-wait"] >= 30 and profile["rerun-incomplete"] is True
    defaults = profile["default-resources"]
    assert {"mem_mb", "runtime"} <= set(defaults)
    assert "gpu_model" not in defaults and "gpu" not in defaults  # would put every job on a GPU


@pytest.mark.parametrize("profile", [SLURM_PROFILE, DEFAULT_PROFILE], ids=["slurm", "default"])
def test_profiles_are_accepted_by_snakemake_and_the_plugin(tmp_path: Path, profile: Path) -> None:
    """A dry run parses every profile key as a Snakemake/plugin option (an unknown one is an error)."""
    out = dry_run(tmp_path, None, "--profile", str(profile))
    assert f"Using profile {profile}" in out and "Job stats:" in out


# -- resources follow the configuration -----------------------------------------------------------------------
def test_cpu_pretraining_job_resources(tmp_path: Path) -> None:
    job = pretrain_job(tmp_path)
    assert job["gpu"] == 0 and job["cpus_per_task"] == 1  # resources.pretrain.threads of the CI config
    assert "nodes" not in job and "mpi" not in job
    assert (
        job["mem_mb"]
        == estimates.pretrain_resources(
            "hyenadna", {"d_model": 48, "n_layer": 2}, yaml.safe_load(CI_CONFIG.read_text())["pretrain"], threads=1
        )["mem_mb"]
    )
    assert str(job["slurm_extra"]).startswith("--signal=TERM@")  # checkpoint before the wall time


def test_pretraining_resources_scale_with_context_model_and_steps(tmp_path: Path) -> None:
    base = pretrain_job(tmp_path)

    def longer_context(config: dict) -> None:
        config["pretrain"].update(seq_len=4096, batch_size=64)
        config["models"]["hyena"]["config"]["l_max"] = 4098

    def bigger_model(config: dict) -> None:
        config["models"]["hyena"]["config"].update(d_model=512, n_layer=8)

    def more_steps(config: dict) -> None:
        config["pretrain"]["max_steps"] = 100_000

    context, model, steps = (pretrain_job(tmp_path, change) for change in (longer_context, bigger_model, more_steps))
    for job in (context, model):
        assert job["mem_mb"] > base["mem_mb"] and job["runtime"] > base["runtime"]
    assert steps["runtime"] > 10 * base["runtime"] and steps["mem_mb"] == base["mem_mb"]
    # a signal lead that grows with the wall time, capped
    assert str(steps["slurm_extra"]) == "--signal=TERM@600"


def test_configured_resources_and_cluster_settings_win(tmp_path: Path) -> None:
    def configured(config: dict) -> None:
        config["resources"]["pretrain"].update(
            gpus=2,
            threads=8,
            mem_mb=64000,
            runtime=2880,
            slurm_partition="gpu",
            slurm_account="proj42",
            gpu_model="a100",
            slurm_extra="--exclusive",
        )
        config["resources"]["finetune"].update(gpus=1, slurm_partition="gpu", gpu_model="v100")
        config["resources"]["tokenize"] = {"slurm_partition": "cpu", "gpu_model": "a100"}

    out = dry_run(tmp_path, configured)
    (pretrain,) = job_resources(out, "pretrain_model")
    assert {
        k: pretrain[k]
        for k in ("gpu", "cpus_per_task", "mem_mb", "runtime", "slurm_partition", "slurm_account", "gpu_model")
    } == {
        "gpu": 2,
        "cpus_per_task": 8,
        "mem_mb": 64000,
        "runtime": 2880,
        "slurm_partition": "gpu",
        "slurm_account": "proj42",
        "gpu_model": "a100",
    }
    assert pretrain["slurm_extra"] == "--signal=TERM@600 --exclusive"
    finetune = job_resources(out, "finetune_model")
    assert len(finetune) == 6 and all(j["gpu"] == 1 and j["gpu_model"] == "v100" for j in finetune)
    (genome,) = job_resources(out, "prepare_genome")
    assert "slurm_partition" not in genome and "gpu" not in genome


def test_multi_node_pretraining_job(tmp_path: Path) -> None:
    def two_nodes(config: dict) -> None:
        config["resources"]["pretrain"].update(gpus=4, nodes=2, gpu_model="h100", slurm_partition="gpu")

    job = pretrain_job(tmp_path, two_nodes)
    assert {k: job[k] for k in ("nodes", "tasks", "tasks_per_gpu", "mpi", "gres")} == {
        "nodes": 2,
        "tasks": 2,
        "tasks_per_gpu": 0,
        "mpi": "srun",
        "gres": "gpu:h100:4",
    }
    assert "gpu" not in job and "gpu_model" not in job  # per-node GPUs go in gres, not in --gpus (per job)
    assert gpus_and_nodes(job) == (4, 2)


class _Resources(dict):
    __getattr__ = dict.__getitem__


def sbatch_flags(job: dict[str, object], threads: int) -> str:
    """The sbatch command line the SLURM plugin builds for a job with these resources."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string
    from snakemake_executor_plugin_slurm.validation import validate_slurm_extra

    fake = SimpleNamespace(resources=_Resources(job), threads=threads)
    validate_slurm_extra(fake)
    params = {
        "run_uuid": "u",
        "slurm_logfile": "log",
        "comment_str": "c",
        "account": "",
        "partition": f" -p {job['slurm_partition']}" if "slurm_partition" in job else "",
        "workdir": "/w",
    }
    settings = SimpleNamespace(requeue=True, no_requeue=False, qos=None, reservation=None)
    return get_submit_command(fake, params, settings=settings) + set_gres_string(fake)


def test_sbatch_requests_of_the_pretraining_job(tmp_path: Path) -> None:
    one = pretrain_job(
        tmp_path,
        lambda c: c["resources"]["pretrain"].update(gpus=2, threads=8, gpu_model="a100", slurm_partition="gpu"),
    )
    flags = sbatch_flags(one, threads=8).split()
    assert {"-p", "gpu", "--requeue", "--cpus-per-task=8", "--gpus=a100:2"} <= set(flags)
    assert f"--signal=TERM@{min(600, max(60, one['runtime'] * 6))}" in flags and "--nodes=2" not in flags
    assert "--mem" in flags and str(one["mem_mb"]) in flags and "-t" in flags
    two = pretrain_job(tmp_path, lambda c: c["resources"]["pretrain"].update(gpus=4, nodes=2, threads=16))
    flags = sbatch_flags(two, threads=16).split()
    assert {"--nodes=2", "--ntasks=2", "--gres=gpu:4", "--cpus-per-task=16"} <= set(flags)
    assert not any(f.startswith(("--gpus", "--ntasks-per-gpu")) for f in flags)


def test_resource_estimates() -> None:
    settings = {"seq_len": 1024, "batch_size": 256, "max_steps": 100_000}
    small = estimates.pretrain_resources("hyenadna", {"preset": "tiny-1k"}, settings, threads=2)
    large = estimates.pretrain_resources("hyenadna", {"preset": "large-1m"}, settings, threads=2)
    gpu = estimates.pretrain_resources("hyenadna", {"preset": "large-1m"}, settings, gpus=1, threads=8)
    gpus = estimates.pretrain_resources("hyenadna", {"preset": "large-1m"}, settings, gpus=8, threads=32)
    assert large["runtime"] > small["runtime"] and large["mem_mb"] > small["mem_mb"]
    assert gpus["runtime"] < gpu["runtime"] < large["runtime"] and gpus["mem_mb"] > gpu["mem_mb"]
    quadratic = estimates.flops_per_token("transformer", {}, 65536) / estimates.flops_per_token("transformer", {}, 1024)
    assert quadratic > 5 and estimates.flops_per_token("hyenadna", {}, 65536) == estimates.flops_per_token(
        "hyenadna", {}, 1024
    )
    assert estimates.tokenize_mem_mb(250_000_000) - estimates.tokenize_mem_mb(1_000_000) >= 1000  # 6 bytes/base
    assert estimates.benchmark_size({"suite": "demo", "length": 300, "n_train": 10, "n_test": 5}) == (300, 15)
    assert estimates.benchmark_size({"suite": "long_range"}, max_length=1024) == (1024, 300_000)
    assert estimates.benchmark_size({"suite": "demo", "task": "motif"}) == (200, 4000)


def test_demo_task_sizes_match_the_generator() -> None:
    """The Snakefile cannot import the generator (NumPy); its table of demo task sizes must agree with it."""
    from longdna.data.benchmarks.demo import DEFAULTS

    assert {task: (d.length, d.n_train + d.n_test) for task, d in DEFAULTS.items()} == estimates.DEMO_TASK_SIZES


def test_longest_fine_tuning_runs_start_first(tmp_path: Path) -> None:
    """Fine-tuning jobs get their estimated runtime as priority, so that on a few cores the demo's 11 kb
    long-range run does not trail behind the short tasks (its 1 kb-window control is short)."""
    result = snakemake(tmp_path, "-n", configfile=REPO / "config" / "config.yaml")
    priority = {}
    for block in result.stdout.split("rule ")[1:]:  # one job per block
        if block.startswith("finetune_model:"):
            run = re.search(r"benchmark=(\w+), model=(\w+), seed=(\d+)", block).groups()
            priority[run] = int(re.search(r"priority: (\d+)", block).group(1))
    long_range = [priority.pop(("demo_long_range", "hyenadna", seed)) for seed in "123"]
    assert len(priority) == 9 and min(long_range) > max(priority.values())
    assert priority[("demo_long_range", "hyenadna_window1k", "1")] < priority[("demo_multiclass", "hyenadna", "1")]


def test_model_shapes_match_the_models() -> None:
    """The Snakefile cannot import torch; the job resources' view of every preset (and of each architecture's
    default config) must be the shape of the model the engines build."""
    from longdna.models import ARCHITECTURES, build_config, build_model, presets

    for arch in ARCHITECTURES:
        for preset in [None, *presets(arch)]:
            config = build_config(arch, preset)
            view = estimates.model_shape(arch, {"preset": preset} if preset else {})
            assert view == (config.d_model, config.n_layer), (arch, preset)
        model = build_model(arch, d_model=64, n_layer=2)
        real = sum(p.numel() for p in model.parameters())
        assert 0.7 < estimates.approx_parameters(arch, {"d_model": 64, "n_layer": 2}) / real < 1.4, arch


# -- launching the pretraining ----------------------------------------------------------------------------------
ARGS = ["--arch", "hyenadna", "--out", "o"]


def test_stage_command_one_process_torchrun_or_srun() -> None:
    assert stage_command(ARGS, gpus=0) is None and stage_command(ARGS, gpus=1) is None  # in the job's process
    local = stage_command(ARGS, gpus=4, threads=16, env={})
    assert local[1:3] == ["-m", "torch.distributed.run"] and "--standalone" in local
    assert local[local.index("--nproc-per-node") + 1] == "4" and local[-6:] == ["-m", "longdna.train.pretrain", *ARGS]
    nodes = stage_command(ARGS, gpus=8, nodes=2, threads=32, env={"SLURM_JOB_ID": "7"})
    assert nodes[:6] == [
        "srun",
        "--nodes=2",
        "--ntasks=2",
        "--ntasks-per-node=1",
        "--kill-on-bad-exit=1",
        "--cpus-per-task=32",
    ]
    assert "--gres=gpu:8" in nodes
    assert nodes[nodes.index(sys.executable) :] == [sys.executable, "-m", "longdna.train.launch", "8", "2", "--", *ARGS]
    cpu_nodes = stage_command(ARGS, gpus=0, nodes=3, env={"SLURM_JOB_ID": "7"})
    assert not any(a.startswith("--gres") for a in cpu_nodes) and cpu_nodes[-len(ARGS) - 4 : -len(ARGS) - 1] == [
        "longdna.train.launch",
        "1",
        "3",
    ]
    with pytest.raises(RuntimeError, match="SLURM allocation"):
        stage_command(ARGS, gpus=2, nodes=2, env={})


def test_gpus_and_nodes_of_job_resources() -> None:
    assert gpus_and_nodes({}) == (0, 1)
    assert gpus_and_nodes({"gpu": 2}) == (2, 1)
    assert gpus_and_nodes({"gres": "gpu:a100:4", "nodes": 3}) == (4, 3)
    assert gpus_and_nodes({"gres": "gpu:2"}) == (2, 1) and gpus_and_nodes({"gres": "gpu"}) == (1, 1)
    assert gpus_and_nodes({"gres": "tmpdisk:100", "gpu": 0}) == (0, 1)


def test_pretrain_args_round_trip() -> None:
    args = pretrain_args("hyenadna", {"d_model": 8}, "shards", "out", {"max_steps": 3})
    assert args[args.index("--arch-config") + 1] == '{"d_model": 8}' and args[-1] == "--no-progress"


# -- the rule's script launching several processes --------------------------------------------------------------
DRIVER = """
import runpy, sys
from types import SimpleNamespace
class Resources(dict):
    __getattr__ = dict.get
snakemake = SimpleNamespace(resources=Resources(gpu=0), threads=2, log=[sys.argv[1]], params=SimpleNamespace(
    cpu_processes=2, arch="hyenadna", arch_config={"d_model": 24, "n_layer": 2, "d_inner": 64, "embed_dropout": 0.0},
    shards=sys.argv[2], out_dir=sys.argv[3], settings={"seq_len": 128, "batch_size": 8, "max_steps": 40,
    "checkpoint_every": 10, "eval_every": 10, "eval_windows": 4, "log_every": 1, "warmup_steps": 3}))
runpy.run_path(sys.argv[4], init_globals={"snakemake": snakemake})
"""


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from longdna.data.genome.demo import DemoGenomeSpec, generate_demo_genome
    from longdna.data.tokens.shards import split_regions, tokenize_chromosome, write_manifest

    root = tmp_path_factory.mktemp("genome")
    spec = DemoGenomeSpec(
        chromosome_lengths=(300_000, 120_000, 120_000),
        telomere_gap=1_000,
        centromere_gap=2_000,
        short_gaps=1,
        isochore_mean_length=50_000,
    )
    generate_demo_genome(root / "genome.fa.gz", spec)
    lengths = {
        c: tokenize_chromosome(root / "genome.fa.gz", c, root / "shards")["length"] for c in spec.chromosome_names
    }
    write_manifest(root / "shards", spec.chromosome_names, split_regions(lengths, valid=["chr2"], test=["chr3"]))
    return root / "shards"


@pytest.mark.slow
def test_pretrain_script_launches_two_processes_and_passes_preemption_on(shards: Path, tmp_path: Path) -> None:
    """scripts/pretrain_model.py with `cpu_processes=2` runs torchrun (2 CPU processes, gloo), writes their output
    to the job log, and a SIGTERM ends it with status 75 after a checkpoint; run again, it resumes and finishes."""
    log, out = tmp_path / "job.log", tmp_path / "run"
    command = [sys.executable, "-c", DRIVER, str(log), str(shards), str(out), str(REPO / "scripts/pretrain_model.py")]
    process = subprocess.Popen(command)
    deadline = time.time() + 180
    while time.time() < deadline and process.poll() is None:
        if any((out / "checkpoints").glob("step-*/state.pt")):
            process.send_signal(signal.SIGTERM)
            break
        time.sleep(0.1)
    assert process.wait(timeout=180) == PREEMPTED_EXIT_CODE
    text = log.read_text()
    assert "launching 2 x 1 processes" in text and "torch.distributed.run" in text
    assert "preempted: checkpoint written at step" in text  # the workers' stderr, in the job log
    assert subprocess.run(command, timeout=300).returncode == 0
    assert "resuming from" in log.read_text()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == list(range(1, 41))
    assert json.loads((out / "summary.json").read_text())["world_size"] == 2


@pytest.mark.slow
def test_workflow_pretrains_with_two_processes(tmp_path: Path) -> None:
    """`resources.pretrain.cpu_processes: 2` through the real rule: two gloo processes under torchrun."""
    configfile = ci_config(
        tmp_path,
        lambda c: (
            c["resources"]["pretrain"].update(cpu_processes=2, threads=2),
            c["pretrain"].update(max_steps=20, eval_lengths=[256]),
        ),
    )
    snakemake(tmp_path, "pretrain", configfile=configfile)
    summary = json.loads((tmp_path / "results/pretrain/hyena/summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 20
    assert "launching 2 x 1 processes" in (tmp_path / "logs/pretrain/hyena.log").read_text()
