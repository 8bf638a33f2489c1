"""Job resources (memory, wall time) derived from the workflow configuration, for local and SLURM runs.

Imported by the Snakefile (``workflow/rules/common.smk``), so it depends on the standard library only: no
torch, no NumPy (a cluster's login node runs Snakemake without them). The numbers are deliberately generous
estimates from the quantities that drive the cost -- model width and depth, context length, tokens per
step, steps, GPUs -- not measurements; any value set under the config's ``resources`` wins over them.

* model size: about ``PARAMS_PER_LAYER[arch] * n_layer * d_model**2`` parameters (within 15 % of the real
  count for every preset; ``tests/test_resources.py`` checks the preset table against the models);
* compute: ``6 * parameters`` FLOPs per trained token (forward + backward), plus attention's
  ``12 * n_layer * d_model * seq_len`` for the Transformer; throughput per GPU from ``bench/RESULTS.md``
  (H200, bf16: HyenaDNA and the Transformer at about 3e13 effective FLOP/s, the PyTorch scans of Hawk,
  Mamba and Caduceus about 10x lower), on CPU 2e10 FLOP/s per thread (the demo's HyenaDNA: 4e10 on 2 threads);
* host memory: a runtime base per process (CUDA's host side is large), 16 bytes per parameter (weights,
  gradients, AdamW), and on CPU the activations of one micro-batch (``ACTIVATION_BYTES`` per token, layer and
  channel, fp32, from the engine's measured peaks).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

#: (d_model, n_layer) of each architecture's default configuration and of its presets
MODEL_SHAPES: dict[str, dict[str | None, tuple[int, int]]] = {
    "hyenadna": {None: (128, 2), "tiny-1k": (128, 2), "tiny-1k-d256": (256, 2), "tiny-16k": (128, 2),
                 "small-32k": (256, 4), "medium-160k": (256, 8), "medium-450k": (256, 8), "large-1m": (256, 8)},
    "caduceus": {None: (128, 4), "caduceus-ph-1k-d118": (118, 4), "caduceus-ps-1k-d118": (118, 4),
                 "caduceus-ph-1k-d256": (256, 4), "caduceus-ps-1k-d256": (256, 4), "caduceus-ph-131k": (256, 16),
                 "caduceus-ps-131k": (256, 16)},
    "mamba": {None: (128, 4), "mamba-1k-d128": (128, 4), "mamba-d256-l16": (256, 16), "mamba-d256-l18": (256, 18)},
    "hawk": {None: (256, 4), "hawk-50m": (576, 12), "hawk-7m": (224, 11)},
    "transformer": {None: (256, 4), "transformer-50m": (512, 12), "transformer-7m": (256, 6)},
}
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
    shapes = MODEL_SHAPES.get(arch, {None: (256, 4)})
    d_model, n_layer = shapes.get(arch_config.get("preset"), shapes[None])
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
    seq_len = int(settings.get("seq_len", 1024))
    batch = int(settings.get("batch_size", 16))
    steps = int(settings.get("max_steps", 1000))
    processes = max(1, gpus)  # per node
    world = processes * max(1, nodes)
    micro = settings.get("micro_batch_size") or max(1, batch // world)
    d_model, n_layer = model_shape(arch, arch_config)
    params = approx_parameters(arch, arch_config)

    per_process = (BASE_MB_GPU if gpus else BASE_MB_CPU) + 16 * params / 1e6
    if not gpus:  # activations live in host memory; evaluation keeps no activations for backward
        per_token = ACTIVATION_BYTES.get(arch, 300) * d_model * n_layer
        eval_tokens = max([micro * seq_len, *(settings.get("eval_lengths") or [])])  # the engine's eval batches
        per_process += max(micro * seq_len * per_token, eval_tokens * per_token / 4) / 1e6
    mem_mb = _round_mb(processes * per_process + 1000 * int(settings.get("num_workers", 0)) + 500)

    rate = throughput(arch, gpus * max(1, nodes), threads)
    train = steps * batch * seq_len * flops_per_token(arch, arch_config, seq_len)
    evals = math.ceil(steps / int(settings.get("eval_every", 100))) + 1
    windows = int(settings.get("eval_windows", 32))
    evaluation = evals * windows * seq_len * flops_per_token(arch, arch_config, seq_len, train=False)
    evaluation += sum(windows * n * flops_per_token(arch, arch_config, n, train=False)
                      for n in settings.get("eval_lengths") or [seq_len])
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
    batch = int(settings.get("batch_size", 32))
    # a probe head costs one forward pass over the data, a third of a training epoch
    epochs = int(settings.get("epochs", 10)) + (1 / 3 if settings.get("head_init") == "probe" else 0)
    d_model, n_layer = model_shape(arch, arch_config)
    params = approx_parameters(arch, arch_config)
    per_process = (BASE_MB_GPU if gpus else BASE_MB_CPU) + 16 * params / 1e6 + 4 * examples * length / 1e6
    if not gpus:
        per_process += batch * length * ACTIVATION_BYTES.get(arch, 300) * d_model * n_layer / 1e6
    seconds = epochs * examples * length * flops_per_token(arch, arch_config, length) / throughput(
        arch, min(gpus, 1), threads)
    return {"mem_mb": _round_mb(per_process + 500), "runtime": _minutes(seconds + 60),
            "seconds": max(1, round(seconds))}


def tokenize_mem_mb(length: int) -> int:
    """Memory of tokenizing one sequence of ``length`` bases."""
    return _round_mb(1000 + TOKENIZE_BYTES_PER_BASE * length / 1e6)


def tokenize_runtime(length: int) -> int:
    """Minutes for one sequence (about 20 Mbp/s measured; generous)."""
    return _minutes(length / 2e6, overhead_minutes=5)


#: (length, examples) of each demo task by default (``longdna.data.demo_benchmarks.DEFAULTS``, checked by
#: tests/test_cluster.py); a demo benchmark's config may change both
DEMO_TASK_SIZES = {"motif": (200, 4000), "multiclass": (300, 5000), "long_range": (11_000, 2000),
                   "centred": (256, 1300)}
#: (length, training examples) assumed for a benchmark whose config does not give them: each suite's largest
SUITE_SIZES = {
    "demo": (11_000, 4_000),
    "genomic_benchmarks": (4_800, 300_000),
    "nucleotide_transformer": (600, 30_000),
    "long_range": (12_288, 300_000),
    "user": (4_096, 100_000),
}


def benchmark_size(spec: Mapping[str, Any], max_length: int | None = None) -> tuple[int, int]:
    """(sequence length, examples) of a benchmark's config entry, for resource estimates."""
    suite = spec.get("suite", "user")
    if suite == "demo" and spec.get("task") in DEMO_TASK_SIZES:
        length, examples = DEMO_TASK_SIZES[spec["task"]]
    else:
        length, examples = SUITE_SIZES.get(suite, SUITE_SIZES["user"])
    length = int(spec.get("length", length))
    if max_length:
        length = min(length, int(max_length))
    if "n_train" in spec:
        examples = int(spec["n_train"]) + int(spec.get("n_test", 0))
    return length, examples
