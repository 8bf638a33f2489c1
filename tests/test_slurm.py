"""The workflow on a real SLURM cluster through `--profile workflow/profiles/slurm` (CI: `bash .ci/start-slurm.sh`).

Skipped when no cluster answers `sinfo` -- unless LONGDNA_REQUIRE_SLURM=1 (set by .ci/run), which turns the skip
into a failure. The one-node CI cluster has no accounting database (squeue status), no account (the plugin's
`--slurm-no-account`) and one fake GPU in a `gpu` partition.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import CI_CONFIG, REPO, snakemake, snakemake_command

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SLURM_PROFILE = REPO / "workflow" / "profiles" / "slurm"
SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")


def cluster_problem() -> str | None:
    """Why the SLURM tests cannot run here, or None when a node is ready."""
    for tool in ("sinfo", "sbatch", "squeue", "scontrol", "scancel"):
        if shutil.which(tool) is None:
            return f"`{tool}` not found: no SLURM client on this machine (start one with `bash .ci/start-slurm.sh`)"
    result = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        return f"`sinfo` failed, the cluster is not up: {result.stderr.strip()}"
    states = result.stdout.split()
    if not any(s.rstrip("*~#") in ("idle", "mixed", "allocated", "completing") for s in states):
        return f"no usable SLURM node (states: {states})"
    return None


@pytest.fixture(scope="module")
def cluster() -> None:
    problem = cluster_problem()
    if problem is not None:
        if os.environ.get("LONGDNA_REQUIRE_SLURM") == "1":
            pytest.fail(f"LONGDNA_REQUIRE_SLURM=1 but {problem}")
        pytest.skip(problem)


def jobs_in(directory: Path) -> list[str]:
    """SLURM job ids (any state squeue still shows) whose working directory is ``directory``."""
    out = subprocess.run(["squeue", "-h", "--states=all", "-o", "%i %T %Z"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.split()[2:] == [str(directory)]]


@pytest.fixture
def workdir(tmp_path: Path, cluster: None):
    """A working directory whose SLURM jobs are cancelled at the end, whatever happened."""
    yield tmp_path
    active = subprocess.run(["squeue", "-h", "-o", "%i %Z"], capture_output=True, text=True).stdout
    ids = [line.split()[0] for line in active.splitlines() if line.split()[1:] == [str(tmp_path)]]
    if ids:
        subprocess.run(["scancel", *ids], check=False)


def slurm_command(workdir: Path, configfile: Path, *targets: str) -> list[str]:
    return snakemake_command(
        workdir,
        configfile,
        "--profile",
        str(SLURM_PROFILE),
        # what the one-node CI cluster needs on top of the profile: no accounts, and quick status polls
        "--slurm-no-account",
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--latency-wait",
        "10",
        *targets,
    )


def finish(process: subprocess.Popen, timeout: float) -> str:
    """Wait for a Snakemake run; on timeout interrupt it (SIGINT cancels its SLURM jobs) and fail."""
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
        pytest.fail(f"snakemake on SLURM did not finish in {timeout} s:\n{output[-6000:]}")
    assert process.returncode == 0, f"snakemake on SLURM failed ({process.returncode}):\n{output[-8000:]}"
    return output


def run_slurm(workdir: Path, configfile: Path, *targets: str, timeout: float = 600) -> str:
    process = subprocess.Popen(
        slurm_command(workdir, configfile, *targets),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return finish(process, timeout)


def submissions(output: str) -> list[tuple[str, str, Path]]:
    """(SLURM job id, rule, SLURM log) of every job Snakemake submitted."""
    found = []
    for job_id, log in SUBMITTED.findall(output):
        rule = re.search(r"/rule_([A-Za-z0-9_]+)/", log).group(1)
        found.append((job_id, rule, Path(log)))
    return found


def job_record(job_id: str) -> dict[str, str]:
    """`scontrol show job` as a dict (the controller keeps finished jobs for MinJobAge, 300 s on CI)."""
    result = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True)
    assert result.returncode == 0, f"no SLURM record of job {job_id}: {result.stderr}"
    return dict(field.split("=", 1) for field in result.stdout.split() if "=" in field)


def write_config(path: Path, change) -> Path:
    config = yaml.safe_load(CI_CONFIG.read_text())
    change(config)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_ci_workflow_runs_as_slurm_jobs(workdir: Path) -> None:
    """Every rule of the tiny workflow is an sbatch job with its wall time; pretraining goes to the `gpu`
    partition (on the CPU: the fake GPU is requested in test_gpu_job_without_cuda_fails_at_once)."""

    def on_gpu_partition(config: dict) -> None:
        config["resources"]["pretrain"].update(slurm_partition="gpu")

    configfile = write_config(workdir / "config.yaml", on_gpu_partition)
    started = time.time()
    output = run_slurm(workdir, configfile)
    jobs = submissions(output)
    assert {rule for _, rule, _ in jobs} == {
        "prepare_genome",
        "tokenize_chromosome",
        "write_shard_manifest",
        "pretrain_model",
        "prepare_benchmark",
        "finetune_model",
        "classical_baseline",
        "evaluate",
    }
    dry = snakemake(workdir, "-n", configfile=configfile)  # nothing left to do, and no job ran outside SLURM
    assert "Nothing to be done" in dry.stdout + dry.stderr
    # 4 chromosomes, 2 benchmarks, 6 fine-tuning runs, 4 baseline jobs (2 benchmarks x 2 seeds)
    assert len(jobs) == len({job_id for job_id, _, _ in jobs}) == 20
    for _job_id, rule, log in jobs:
        assert log.exists() and "--executor slurm-jobstep" in log.read_text(), (rule, log)
    records = {job_id: job_record(job_id) for job_id, _, _ in jobs}
    for record in records.values():
        assert record["JobState"] == "COMPLETED" and record["WorkDir"] == str(workdir), record
        # the rules' wall times, declared for SLURM jobs only (the CI partitions have no limit of their own)
        assert re.fullmatch(r"(\d+-)?\d\d:\d\d:\d\d", record["TimeLimit"]), record
    pretrain = next(records[job_id] for job_id, rule, _ in jobs if rule == "pretrain_model")
    assert pretrain["Partition"] == "gpu", pretrain
    assert all(records[j]["Partition"] == "debug" for j, rule, _ in jobs if rule != "pretrain_model")
    assert set(jobs_in(workdir)) >= {job_id for job_id, _, _ in jobs}  # squeue shows them too
    assert (workdir / "results/evaluation/table.md").exists()
    print(f"{len(jobs)} SLURM jobs in {time.time() - started:.0f} s")


def test_gpu_job_without_cuda_fails_at_once(workdir: Path) -> None:
    """A pretraining job given the CI node's fake GPU gets it from SLURM (`--gpus`), and fails at once because
    this torch sees no CUDA device, saying so in its log (longdna.device.require_visible_gpus)."""

    def on_gpu(config: dict) -> None:
        config["resources"]["pretrain"].update(gpus=1, slurm_partition="gpu")

    configfile = write_config(workdir / "config.yaml", on_gpu)
    snakemake(workdir, "tokenize", configfile=configfile)  # the genome and its shards, locally (quick)
    result = subprocess.run(
        [*slurm_command(workdir, configfile, "pretrain"), "--retries", "0"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert result.returncode != 0
    (job_id,) = [job_id for job_id, rule, _ in submissions(result.stdout + result.stderr) if rule == "pretrain_model"]
    record = job_record(job_id)
    assert record["Partition"] == "gpu" and record["TresPerJob"] == "gres:gpu:1", record
    assert "GPUUnavailableError: this job was given GPUs" in (workdir / "logs/pretrain/hyena.log").read_text()


def test_cancelled_pretraining_job_is_resubmitted_and_resumes(workdir: Path) -> None:
    """A running pretraining job is cancelled the way a scheduler preempts or times out a job (SIGTERM to every
    process, SIGKILL after KillWait): the engine checkpoints and exits 75, Snakemake's retry submits a new SLURM
    job, and that job resumes from the checkpoint -- the metrics continue without a gap or a restart."""

    def longer(config: dict) -> None:
        config["pretrain"].update(max_steps=400, checkpoint_every=20, eval_every=100, eval_lengths=[256])

    configfile = write_config(workdir / "config.yaml", longer)
    snakemake(workdir, "tokenize", configfile=configfile)  # the genome and its shards, locally (quick)
    out = workdir / "results/pretrain/hyena"
    process = subprocess.Popen(
        slurm_command(workdir, configfile, "pretrain"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    first = None
    deadline = time.time() + 240
    while first is None and time.time() < deadline and process.poll() is None:
        running = subprocess.run(
            ["squeue", "-h", "-t", "RUNNING", "-o", "%i %k %Z"], capture_output=True, text=True
        ).stdout.split("\n")
        ours = [
            line.split()[0]
            for line in running
            if line.split()[1:] == ["rule_pretrain_model_wildcards_hyena", str(workdir)]
        ]
        if ours and any((out / "checkpoints").glob("step-*/state.pt")):
            first = ours[0]
        time.sleep(0.2)
    if first is None:
        process.send_signal(signal.SIGINT)
        pytest.fail(f"the pretraining job did not run and checkpoint in time:\n{process.communicate()[0][-6000:]}")
    subprocess.run(["scancel", first], check=True)
    output = finish(process, timeout=420)

    jobs = [(job_id, log) for job_id, rule, log in submissions(output) if rule == "pretrain_model"]
    assert [job_id for job_id, _ in jobs][0] == first and len(jobs) == 2, jobs
    assert job_record(first)["JobState"] == "CANCELLED"
    assert job_record(jobs[1][0])["JobState"] == "COMPLETED"
    # the cancelled attempt ended by the engine's preemption path (checkpoint, status 75), not by SIGKILL
    assert "non-zero exit status 75" in jobs[0][1].read_text()
    log = (workdir / "logs/pretrain/hyena.log").read_text()
    resumed = re.findall(r"resuming from \S+step-(\d+) \(step (\d+)[,)]", log)
    assert len(resumed) == 1 and 0 < int(resumed[0][1]) < 400, resumed
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == list(range(10, 401, 10))
    assert json.loads((out / "summary.json").read_text())["steps"] == 400
