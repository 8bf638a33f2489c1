"""Job resources (memory, wall time) derived from the workflow configuration, for local and SLURM runs.

Imported by the Snakefile (``workflow/rules/resources.smk``), so it depends on the standard library only: no
torch, no NumPy (a cluster's login node runs Snakemake without them). The numbers are deliberately generous
estimates from the quantities that drive the cost -- model width and depth, context length, tokens per
step, steps, GPUs -- not measurements; any value set under the config's ``resources`` wins over them.

* model size: about ``PARAMS_PER_LAYER[arch] * n_layer * d_model**2`` parameters (within 15 % of the real
  count for every preset; ``tests/test_cluster.py`` checks it), with the presets' shapes read from the model
  package's torch-free tables (:mod:`longdna.models.catalog`);
* compute: ``6 * parameters`` FLOPs per trained token (forward + backward), plus attention's
  ``12 * n_layer * d_model * seq_len`` for the Transformer; throughput per GPU from ``bench/RESULTS.md``
  (H200, bf16: HyenaDNA and the Transformer at about 3e13 effective FLOP/s, the PyTorch scans of Hawk,
  Mamba and Caduceus about 10x lower), on CPU 2e10 FLOP/s per thread (the demo's HyenaDNA: 4e10 on 2 threads);
* host memory: a runtime base per process (CUDA's host side is large), 16 bytes per parameter (weights,
  gradients, AdamW), and on CPU the activations of one micro-batch (``ACTIVATION_BYTES`` per token, layer and
  channel, fp32, from the engine's measured peaks);
* settings: missing keys take the engines' defaults, from their settings classes (:mod:`longdna.settings`);
* data: a fine-tuning job's examples and length are those of its prepared benchmark (``benchmark.json``'s
  ``sizes``) once it exists, else guessed from the benchmark's config entry (:func:`benchmark_size`); the
  classical baselines' cost grows with the benchmark's bases (:func:`baseline_resources`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

from longdna.models.catalog import DEFAULT_SHAPES, PRESETS
from longdna.settings import FinetuneConfig, PretrainConfig

#: parameters per layer in units of d_model**2 (measured on the presets)
PARAMS_PER_LAYER = {"hyenadna": 12.5, "caduceus": 7.5, "mamba": 6.7, "hawk": 12.5, "transformer": 16.0}
#: bytes of saved activations per token, layer and channel in fp32 training (the engine's measured peaks)
ACTIVATION_BYTES = {"hyenadna": 80, "transformer": 70, "hawk": 300, "mamba": 300, "caduceus": 600}
#: effective training FLOP/s of one GPU, and the share of it each architecture reaches
GPU_FLOPS = 3e13
GPU_EFFICIENCY = {"hyenadna": 1.0, "transformer": 1.0, "hawk": 0.1, "mamba": 0.1, "caduceus": 0.05}
CPU_FLOPS_PER_THREAD = 2e10
#: host memory of one training process before any model: Python + torch, and CUDA's host-side state on GPUs
BASE_MB_CPU, BASE_MB_GPU = 1000, 4000
#: bytes per base of tokenizing one chromosome (sequence, tokens, soft-mask and their temporaries)
TOKENIZE_BYTES_PER_BASE = 6


def model_shape(arch: str, arch_config: Mapping[str, Any]) -> tuple[int, int]:
    """(d_model, n_layer) of ``models.<name>``: its explicit ``config`` over its preset over the default."""
    d_model, n_layer = DEFAULT_SHAPES.get(arch, (256, 4))
    preset = PRESETS.get(arch, {}).get(arch_config.get("preset"), {})
    d_model, n_layer = preset.get("d_model", d_model), preset.get("n_layer", n_layer)
    return int(arch_config.get("d_model", d_model)), int(arch_config.get("n_layer", n_layer))


def approx_parameters(arch: str, arch_config: Mapping[str, Any]) -> int:
    d_model, n_layer = model_shape(arch, arch_config)
    return int(PARAMS_PER_LAYER.get(arch, 16.0) * n_layer * d_model**2 + 16 * d_model)


def flops_per_token(arch: str, arch_config: Mapping[str, Any], length: int, train: bool = True) -> float:
    d_model, n_layer = model_shape(arch, arch_config)
    dense = approx_parameters(arch, arch_config) * (6 if train else 2)
    attention = (12 if train else 4) * n_layer * d_model * length if arch == "transformer" else 0
    return dense + attention


def throughput(arch: str, gpus: int, threads: int) -> float:
    """Effective FLOP/s of a job with ``gpus`` GPUs in all (CPU threads when there are none)."""
    if gpus > 0:
        return gpus * GPU_FLOPS * GPU_EFFICIENCY.get(arch, 0.1)
    return max(1, threads) * CPU_FLOPS_PER_THREAD


def _round_mb(mb: float, step: int = 500) -> int:
    return int(math.ceil(mb / step) * step)


def _minutes(seconds: float, overhead_minutes: int = 10, safety: float = 2.0) -> int:
    return int(math.ceil(overhead_minutes + safety * seconds / 60))


def pretrain_resources(
    arch: str,
    arch_config: Mapping[str, Any],
    settings: Mapping[str, Any],
    gpus: int = 0,
    nodes: int = 1,
    threads: int = 1,
) -> dict[str, int]:
    """``mem_mb`` (per node) and ``runtime`` (minutes, first attempt) of one pretraining job.

    ``gpus`` is per node, as in the config's ``resources.pretrain``; ``settings`` the model's pretrain
    settings (``longdna.config.pretrain_settings``), missing keys taking the engine's defaults.
    """
    config = PretrainConfig.from_dict(dict(settings))
    seq_len, batch, steps = config.seq_len, config.batch_size, config.max_steps
    processes = max(1, gpus)  # per node
    world = processes * max(1, nodes)
    micro = config.micro_batch_size or max(1, batch // world)
    d_model, n_layer = model_shape(arch, arch_config)
    params = approx_parameters(arch, arch_config)

    per_process = (BASE_MB_GPU if gpus else BASE_MB_CPU) + 16 * params / 1e6
    if not gpus:  # activations live in host memory; evaluation keeps no activations for backward
        per_token = ACTIVATION_BYTES.get(arch, 300) * d_model * n_layer
        eval_tokens = max([micro * seq_len, *config.eval_lengths])  # the engine's eval batches
        per_process += max(micro * seq_len * per_token, eval_tokens * per_token / 4) / 1e6
    mem_mb = _round_mb(processes * per_process + 1000 * config.num_workers + 500)

    rate = throughput(arch, gpus * max(1, nodes), threads)
    train = steps * batch * seq_len * flops_per_token(arch, arch_config, seq_len)
    evals = math.ceil(steps / config.eval_every) + 1
    windows = config.eval_windows
    evaluation = evals * windows * seq_len * flops_per_token(arch, arch_config, seq_len, train=False)
    evaluation += sum(
        windows * n * flops_per_token(arch, arch_config, n, train=False) for n in config.eval_lengths or [seq_len]
    )
    return {"mem_mb": mem_mb, "runtime": _minutes((train + evaluation) / rate + 60)}


def finetune_resources(
    arch: str,
    arch_config: Mapping[str, Any],
    settings: Mapping[str, Any],
    length: int,
    examples: int,
    gpus: int = 0,
    threads: int = 1,
) -> dict[str, int]:
    """``mem_mb``, ``runtime`` (the padded wall-time limit, minutes) and ``seconds`` (the unpadded compute
    estimate, which orders jobs) of one fine-tuning (or scoring) job on ``examples`` sequences of ``length``."""
    config = FinetuneConfig.from_dict(dict(settings))
    batch = config.batch_size
    # the steps of both training phases as the run caps them; a probe head costs one forward pass over the
    # data, a third of a training epoch
    steps = config.phase_steps(config.adapt_epochs, examples, length) + config.phase_steps(
        config.epochs, examples, length
    )
    trained_bases = steps * batch * length + (examples * length / 3 if config.head_init == "probe" else 0)
    d_model, n_layer = model_shape(arch, arch_config)
    params = approx_parameters(arch, arch_config)
    per_process = (BASE_MB_GPU if gpus else BASE_MB_CPU) + 16 * params / 1e6 + 4 * examples * length / 1e6
    if not gpus:
        per_process += batch * length * ACTIVATION_BYTES.get(arch, 300) * d_model * n_layer / 1e6
    seconds = trained_bases * flops_per_token(arch, arch_config, length) / throughput(arch, min(gpus, 1), threads)
    return {
        "mem_mb": _round_mb(per_process + 500),
        "runtime": _minutes(seconds + 60),
        "seconds": max(1, round(seconds)),
    }


def tokenize_mem_mb(length: int) -> int:
    """Memory of tokenizing one sequence of ``length`` bases."""
    return _round_mb(1000 + TOKENIZE_BYTES_PER_BASE * length / 1e6)


def tokenize_runtime(length: int) -> int:
    """Minutes for one sequence (about 20 Mbp/s measured; generous)."""
    return _minutes(length / 2e6, overhead_minutes=5)


#: CPU seconds of the classical baselines (40 linear fits, one thread) per million bases of a benchmark: the GUE
#: development sets tf/0, prom_300_tata and mouse/2 (5.4 Mbp) took 60 s together, mouse/2 (slowest to
#: converge) 20 s per Mbp
BASELINE_SECONDS_PER_MBP = 30
#: peak memory per base of the baselines (sparse features, their training slices, the solver's copies): 95
#: bytes measured on tf/0 (515 MB for 3.3 Mbp, Python and scikit-learn included)
BASELINE_BYTES_PER_BASE = 150


def baseline_resources(length: int, examples: int) -> dict[str, int]:
    """``mem_mb`` and ``runtime`` (minutes) of the classical baselines of one benchmark and seed."""
    bases = length * examples
    return {
        "mem_mb": _round_mb(BASE_MB_CPU + 500 + BASELINE_BYTES_PER_BASE * bases / 1e6),
        "runtime": _minutes(BASELINE_SECONDS_PER_MBP * bases / 1e6),
    }


#: (length, examples) of each demo task by default (``longdna.data.benchmarks.demo.DEFAULTS``, checked by
#: tests/test_cluster.py); a demo benchmark's config may change both
DEMO_TASK_SIZES = {
    "motif": (200, 4000),
    "multiclass": (300, 5000),
    "long_range": (11_000, 2000),
    "centred": (256, 1300),
}
#: (length, examples) assumed for a benchmark not prepared yet whose config does not give them: each suite's
#: largest
SUITE_SIZES = {
    "demo": (11_000, 4_000),
    "genomic_benchmarks": (4_800, 300_000),
    "nucleotide_transformer": (600, 30_000),
    "long_range": (12_288, 300_000),
    "user": (4_096, 100_000),
}


def prepared_size(info_path: str | os.PathLike | None) -> tuple[int, int] | None:
    """(longest sequence, rows) of a prepared benchmark from its ``benchmark.json`` (``sizes``); None while it
    does not exist yet, or was written before it recorded its sizes."""
    if info_path is None:
        return None
    try:
        with open(info_path) as fh:
            sizes = json.load(fh).get("sizes") or {}
    except (OSError, ValueError):
        return None
    if not sizes:
        return None
    return max(s["max_length"] for s in sizes.values()), sum(s["rows"] for s in sizes.values())


def benchmark_size(
    spec: Mapping[str, Any], max_length: int | None = None, prepared: str | os.PathLike | None = None
) -> tuple[int, int]:
    """(sequence length, examples) of a benchmark, for resource estimates: its longest sequence and all its
    rows when ``prepared`` (its ``benchmark.json``) exists -- Snakemake evaluates resources again when a job is
    scheduled, once its input benchmark is there --, else guessed from its config entry: a demo task's size,
    or the suite's largest."""
    size = prepared_size(prepared)
    if size is not None:
        length, examples = size
    else:
        suite = spec.get("suite", "user")
        if suite == "demo" and spec.get("task") in DEMO_TASK_SIZES:
            length, examples = DEMO_TASK_SIZES[spec["task"]]
        else:
            length, examples = SUITE_SIZES.get(suite, SUITE_SIZES["user"])
        length = int(spec.get("length", length))
        if "n_train" in spec:
            examples = int(spec["n_train"]) + int(spec.get("n_test", 0))
    if max_length:
        length = min(length, int(max_length))
    return length, examples
