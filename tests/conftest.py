"""Shared fixtures: a real run of the whole workflow on the tiny CI configuration, done once per session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from longdna.data.genome.demo import DemoGenomeSpec, generate_demo_genome
from longdna.data.tokens.shards import split_regions, tokenize_chromosome, write_manifest

REPO = Path(__file__).resolve().parents[1]
CI_CONFIG = REPO / "tests" / "data" / "ci_config.yaml"


@pytest.fixture(autouse=True, scope="session")
def _single_thread_torch():
    """Tiny test models run faster on one thread (on two cores, thread hand-offs dominate small ops)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def demo_shards(root: Path, spec: DemoGenomeSpec) -> Path:
    """Generate the demo genome of ``spec`` under ``root`` and tokenize it into ``root/shards`` (chr1 train, chr2
    valid, chr3 test); returns the shard directory."""
    fasta = root / "genome.fa.gz"
    generate_demo_genome(fasta, spec)
    lengths = {c: tokenize_chromosome(fasta, c, root / "shards")["length"] for c in spec.chromosome_names}
    write_manifest(root / "shards", spec.chromosome_names, split_regions(lengths, valid=["chr2"], test=["chr3"]))
    return root / "shards"


def snakemake_command(workdir: Path, configfile: Path, *args: str) -> list[str]:
    """The command line that runs the repository's workflow in ``workdir`` on ``configfile`` (no workflow
    profile), followed by ``args``."""
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(configfile),
        "--workflow-profile",
        "none",
        *args,
    ]


def snakemake(
    workdir: Path, *args: str, configfile: Path = CI_CONFIG, check: bool = True
) -> subprocess.CompletedProcess:
    """Run Snakemake on the repository's workflow in ``workdir`` (no workflow profile, 2 cores)."""
    command = snakemake_command(workdir, configfile, "--cores", "2", *args)
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
        )
    return result


@pytest.fixture(scope="session")
def ci_workflow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory in which the whole chain has run on the CI configuration."""
    workdir = tmp_path_factory.mktemp("ci_workflow")
    shutil.copy(CI_CONFIG, workdir / "config.yaml")
    snakemake(workdir, configfile=workdir / "config.yaml")
    return workdir
