"""Pretraining speed: tokens/s and peak memory per architecture and context length, data loading vs synthetic.

Usage::

    python bench/bench_train.py [--archs hyenadna,mamba] [--lengths 1024,4096,...] [--params 7e6]
                                [--repeats 3] [--write-results]

For every architecture whose module imports, the model is the configuration closest to ``--params`` parameters
(default 7 M) among the model module's ``PRESETS`` and this script's :data:`BENCH_CONFIGS` (sizes the
presets lack; :data:`FALLBACK_CONFIGS` for a module without presets). For each context length the script builds the
real pretraining engine (:class:`longdna.train.pretrain.Trainer`) on a demo genome's shards and times
``--steps`` optimiser steps after ``--warmup`` untimed ones, with ``--tokens-per-step`` tokens per step
(batch = tokens / length, at least one sequence). The micro-batch and activation checkpointing are chosen
from the engine's memory estimate so that the step fits 90 % of the device (the GPU's memory; on CPU 60 % of
the available RAM, the machine may be shared); lengths that cannot fit, or that come after a step slower
than ``--max-step-seconds``, are skipped. With ``--repeats R`` every measurement is made R times, the
architectures interleaved (repeat by repeat, length by length, architecture by architecture), and the median
of the R is reported: on a shared machine, contention then affects all rows alike. Each measurement runs in
its own process, with
``MALLOC_MMAP_THRESHOLD_`` fixed at 4 MiB, because glibc's adaptive threshold otherwise keeps freed tensor
blocks in the heap and the resident set of the recurrent models reached 3x their live bytes (Caduceus:
20.7 GiB for a 6.4 GiB peak; OOM-killed).
Reported per row:

* step time and training tokens/s with batches from the real shards (DataLoader, ``--num-workers``), and the
  part of the step spent waiting for data; on CPU also tokens per CPU second of the process (``process_time``,
  which other jobs on the machine do not inflate) and its ratio to HyenaDNA's at the same length, with the
  ratio of peak memories;
* the same step fed with synthetic tokens already in memory (all lengths on GPU, the first length on CPU),
  which shows whether data loading limits training;
* peak memory: ``torch.cuda.max_memory_allocated`` on GPU; on CPU the peak resident set size of this process
  during the timed steps (``VmHWM`` after resetting it), which includes the Python/torch baseline;
* on GPU, model FLOP utilisation: FLOPs of one step counted by ``torch.utils.flop_counter.FlopCounterMode``
  (matrix multiplications and convolutions; FFTs and scans are not counted, so Hyena's and the recurrent
  models' MFU is a lower bound) over the step time and the GPU's dense bf16 peak (:data:`PEAK_BF16_FLOPS`).

``--write-results`` replaces the "Pretraining" section of ``bench/RESULTS.md`` (other sections are kept).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from longdna.data.genome.demo import DemoGenomeSpec, generate_demo_genome
from longdna.data.tokens.shards import split_regions, tokenize_chromosome, write_manifest
from longdna.models import ARCHITECTURES, build_model, presets
from longdna.settings import PretrainConfig
from longdna.train.memory import GIB, worst_stage_memory
from longdna.train.pretrain import Trainer
from longdna.train.schedule import StepBatches

RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "## Pretraining"
DATE = datetime.date.today().isoformat()
TARGET_PARAMETERS = 7_000_000
#: used for an architecture whose module has no PRESETS (field names common to the package's models)
FALLBACK_CONFIGS: dict[str, dict[str, Any]] = {arch: {"d_model": 256, "n_layer": 8} for arch in ARCHITECTURES}
#: sizes the presets lack, for comparisons at equal parameter count: ~0.45 M, the size of the smallest HyenaDNA
#: (tiny-1k, 436,096), Mamba (468,608) and Caduceus (470,702) presets
BENCH_CONFIGS: dict[str, dict[str, dict[str, Any]]] = {
    "hawk": {"hawk-435k": dict(d_model=128, n_layer=2, num_heads=4, bidirectional=True)},  # 435,328
    "transformer": {"transformer-429k": dict(d_model=128, n_layer=2, n_heads=4, d_ff=384, causal=False)},  # 429,312
}
#: dense bf16 tensor-core peak, FLOP/s, by a substring of torch.cuda.get_device_name (first match wins)
PEAK_BF16_FLOPS = (("H200", 989e12), ("GH200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12), ("A100", 312e12))


@dataclass
class Row:
    arch: str
    params_m: float
    length: int
    batch: int
    micro_batch: int
    checkpointing: bool
    step_s: float | None = None
    tokens_per_s: float | None = None
    tokens_per_cpu_s: float | None = None
    data_s: float | None = None
    synthetic_step_s: float | None = None
    peak_memory_gib: float | None = None
    estimated_gib: float | None = None
    mfu: float | None = None
    note: str = ""


def available_architectures(requested: list[str] | None, target: float) -> dict[str, dict[str, Any]]:
    """Architecture -> model config nearest ``target`` parameters, for the architectures importable right now."""
    chosen = {}
    for arch in requested or list(ARCHITECTURES):
        module = ARCHITECTURES[arch].split(":")[0]
        try:
            importlib.import_module(module)
        except ModuleNotFoundError:
            print(f"skipping {arch}: {module} is not available", file=sys.stderr)
            continue
        chosen[arch] = matched_config(arch, target)
    return chosen


def matched_config(arch: str, target: float = TARGET_PARAMETERS) -> dict[str, Any]:
    """The config (``{"preset": name}`` or keyword arguments) of ``arch`` closest to ``target`` parameters."""
    candidates = {name: {"preset": name} for name in presets(arch)} | {
        name: dict(config) for name, config in BENCH_CONFIGS.get(arch, {}).items()
    }
    if not candidates:
        return dict(FALLBACK_CONFIGS[arch])

    def size(config: dict[str, Any]) -> int:
        with torch.device("meta"):
            return build_model(arch, **config).num_parameters()

    return min(candidates.values(), key=lambda config: abs(size(config) - target))


def demo_shards(directory: Path, longest: int) -> Path:
    """Shards of a demo genome whose valid and test chromosomes hold windows of ``longest`` + 1 tokens."""
    shards = directory / "shards"
    if (shards / "manifest.parquet").exists():
        return shards
    size = max(2_000_000, 2 * longest + 200_000)
    spec = DemoGenomeSpec(chromosome_lengths=(2 * size, size, size), telomere_gap=1_000, centromere_gap=5_000)
    generate_demo_genome(directory / "genome.fa.gz", spec)
    lengths = {c: tokenize_chromosome(directory / "genome.fa.gz", c, shards)["length"] for c in spec.chromosome_names}
    write_manifest(shards, spec.chromosome_names, split_regions(lengths, valid=["chr2"], test=["chr3"]))
    return shards


def memory_budget(device: torch.device) -> float:
    """GPU memory; on CPU 60 % of the available RAM (the machine may be shared)."""
    if device.type == "cuda":
        return float(torch.cuda.get_device_properties(device).total_memory)
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable"):
            return 0.6 * int(line.split()[1]) * 1024
    raise RuntimeError("cannot read MemAvailable from /proc/meminfo")


def fitting_config(
    arch: str, arch_config: dict[str, Any], base: PretrainConfig, device: torch.device
) -> tuple[PretrainConfig, float] | None:
    """The largest micro-batch (without, then with activation checkpointing) whose estimate fits 90 % of the
    device memory, with that estimate in bytes; None when nothing fits."""
    budget = 0.9 * memory_budget(device)
    for checkpointing in (False, True):
        micro = base.batch_size
        while micro >= 1:
            candidate = PretrainConfig.from_dict(
                {**asdict(base), "micro_batch_size": micro, "activation_checkpointing": checkpointing}
            )
            estimate = worst_stage_memory(arch, arch_config, candidate, 1, device)[0].total
            if estimate <= budget:
                return candidate, estimate
            micro //= 2
    return None


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set size


def peak_memory_bytes(device: torch.device) -> float:
    if device.type == "cuda":
        return float(torch.cuda.max_memory_allocated(device))
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024.0


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_flops(device: torch.device) -> float | None:
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in PEAK_BF16_FLOPS if key in name), None)


def time_steps(
    trainer: Trainer, batches: Any, accumulation: int, count: int
) -> tuple[list[float], list[float], list[float]]:
    """(step seconds, seconds waiting for data, CPU seconds of this process) of ``count`` steps drawn from
    ``batches``."""
    stage = trainer.stages[-1]
    steps, waits, cpu = [], [], []
    for _ in range(count):
        synchronize(trainer.device)
        start, cpu_start = time.perf_counter(), time.process_time()
        micro_batches = [next(batches) for _ in range(accumulation)]
        loaded = time.perf_counter()
        trainer.train_step(stage, micro_batches)
        synchronize(trainer.device)
        steps.append(time.perf_counter() - start)
        waits.append(loaded - start)
        cpu.append(time.process_time() - cpu_start)
    return steps, waits, cpu


def synthetic_batches(micro: int, length: int, objective: str) -> Any:
    """Random base tokens already in memory, shaped like the DataLoader's (inputs, targets) pairs."""
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(7, 11, (micro, length + 1), generator=generator)
    pair = (tokens[:, :-1], tokens[:, 1:]) if objective == "causal" else (tokens[:, :-1], tokens[:, :-1])
    while True:
        yield pair


def count_flops(trainer: Trainer, micro_batches: list) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        trainer.train_step(trainer.stages[-1], micro_batches)
    return float(counter.get_total_flops())


def measure(
    arch: str,
    arch_config: dict[str, Any],
    length: int,
    args: argparse.Namespace,
    shards: Path,
    device: torch.device,
    compare_data: bool,
) -> Row:
    batch = max(1, args.tokens_per_step // length)
    with torch.device("meta"):
        params = build_model(arch, **arch_config).num_parameters()
    base = PretrainConfig.from_dict(
        {
            "seq_len": length,
            "batch_size": batch,
            "max_steps": 10**9,
            "log_every": 10**9,
            "eval_every": 10**9,
            "checkpoint_every": 10**9,
            "eval_windows": 1,
            "warmup_steps": 0,
            "num_workers": args.num_workers,
            "threads": args.threads,
            "compile": args.compile,
        }
    )
    fitted = fitting_config(arch, arch_config, base, device)
    row = Row(arch, params / 1e6, length, batch, 0, False)
    if fitted is None:
        row.note = "does not fit in memory even with micro-batch 1 and checkpointing"
        return row
    config, estimate = fitted
    row.micro_batch, row.checkpointing = config.micro_batch_size, config.activation_checkpointing
    row.estimated_gib = estimate / GIB
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(arch, arch_config, shards, out, config, progress=False)
        stage = trainer.stages[-1]
        total = args.warmup + args.steps + (1 if device.type == "cuda" else 0)
        sampler = StepBatches(stage, 0, total, 0, trainer.dist)
        batches = iter(trainer.loader(stage, sampler))
        time_steps(trainer, batches, sampler.accumulation, args.warmup)
        reset_peak_memory(device)
        steps, waits, cpu = time_steps(trainer, batches, sampler.accumulation, args.steps)
        row.peak_memory_gib = peak_memory_bytes(device) / GIB
        row.step_s, row.data_s = statistics.median(steps), statistics.median(waits)
        row.tokens_per_s = batch * length / row.step_s
        if device.type == "cpu":
            row.tokens_per_cpu_s = batch * length / statistics.median(cpu)
        if device.type == "cuda":
            flops, peak = count_flops(trainer, [next(batches) for _ in range(sampler.accumulation)]), peak_flops(device)
            row.mfu = flops / row.step_s / peak if peak else None
        if compare_data:
            fake = synthetic_batches(sampler.micro, length, trainer.objective)
            row.synthetic_step_s = statistics.median(time_steps(trainer, fake, sampler.accumulation, args.steps)[0])
        trainer.log.close()
    return row


def machine(threads: int | None) -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return (
        f"{os.cpu_count()}-core {cpu} (no GPU), torch {torch.__version__}, {threads or torch.get_num_threads()}"
        f" thread(s); load average at the end of the run {os.getloadavg()[0]:.1f}"
    )


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def speed(row: Row) -> float | None:
    """What the ratios compare: tokens per CPU second on CPU (contention-proof), tokens per second on GPU."""
    return row.tokens_per_cpu_s if row.tokens_per_cpu_s is not None else row.tokens_per_s


def ratio(value: float | None, base: float | None) -> float | None:
    return None if value is None or not base else value / base


def markdown(rows: list[Row], command: str, threads: int | None, params: float, repeats: int) -> str:
    baseline = {r.length: r for r in rows if r.arch == "hyenadna" and r.step_s is not None}
    lines = [
        f"{SECTION} ({DATE})",
        "",
        "Script: `bench/bench_train.py` (the real engine, `Trainer.train_step`, on demo-genome shards; each model is",
        f"its architecture's configuration closest to {params / 1e6:g} M parameters; median of {repeats} interleaved",
        "measurements per row; the x HyenaDNA columns compare with HyenaDNA at the same length).",
        "",
        "```",
        command,
        "```",
        "",
        f"Machine: {machine(threads)}.",
        "",
        "| arch | params (M) | length | batch x micro | ckpt | step (s) | tokens/s | tokens/CPU s | x HyenaDNA speed"
        " | data wait (s) | synthetic step (s) | peak mem (GiB) | x HyenaDNA memory | estimate (GiB) | MFU |",
        "|---|---:|---:|---:|:-:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.step_s is None:
            lines.append(f"| {r.arch} | {r.params_m:.2f} | {r.length:,} | {r.batch} |" + " - |" * 11)
            continue
        base = baseline.get(r.length)
        lines.append(
            f"| {r.arch} | {r.params_m:.2f} | {r.length:,} | {r.batch} x {r.micro_batch}"
            f" | {'yes' if r.checkpointing else 'no'} | {r.step_s:.3f} | {r.tokens_per_s:,.0f}"
            f" | {fmt(r.tokens_per_cpu_s, ',.0f')} | {fmt(ratio(speed(r), base and speed(base)), '.2f')}"
            f" | {r.data_s:.4f} | {fmt(r.synthetic_step_s, '.3f')} | {fmt(r.peak_memory_gib, '.2f')}"
            f" | {fmt(ratio(r.peak_memory_gib, base and base.peak_memory_gib), '.2f')}"
            f" | {fmt(r.estimated_gib, '.2f')} | {fmt(r.mfu, '.1%')} |"
        )
    skipped = [r for r in rows if r.step_s is None]
    if skipped:
        lines += ["", "Not measured: " + "; ".join(f"{r.arch} at {r.length:,} ({r.note})" for r in skipped) + "."]
    return "\n".join(lines) + "\n"


def median_row(rows: list[Row]) -> Row:
    """The repeats of one measurement as one row: the median of every measured number."""
    measured = [r for r in rows if r.step_s is not None]
    if not measured:
        return rows[0]
    combined = Row(**asdict(measured[0]))
    for field in fields(Row):
        values = [getattr(r, field.name) for r in measured if getattr(r, field.name) is not None]
        if values and isinstance(values[0], float):
            setattr(combined, field.name, statistics.median(values))
    return combined


def write_section(text: str, notes: str) -> None:
    """Replace (or append) the Pretraining section of RESULTS.md, keeping every other section."""
    current = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    section = text + ("\n" + notes if notes else "")
    match = re.search(rf"^{re.escape(SECTION)}.*?(?=^## |\Z)", current, flags=re.S | re.M)
    if match:
        updated = current[: match.start()] + section + ("\n" if current[match.end() :] else "") + current[match.end() :]
    else:
        updated = current.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(updated)


def measure_in_subprocess(arch: str, length: int, compare_data: bool, params_m: float) -> Row:
    """One measurement in a fresh process: the peak memory is that configuration's own (not what earlier ones
    left in the allocator), and a run killed for memory costs only its row."""
    command = [sys.executable, __file__, *sys.argv[1:], "--one", arch, str(length)]
    command += ["--compare-data"] if compare_data else []
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(4 * 2**20)}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode == 0:
        return Row(**json.loads(result.stdout.strip().splitlines()[-1]))
    reason = "killed, out of memory" if result.returncode == -9 else (result.stderr.strip().splitlines() or ["?"])[-1]
    return Row(arch, params_m, length, 0, 0, False, note=f"failed ({reason})")


def parse_args() -> argparse.Namespace:
    on_gpu = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archs", type=lambda s: s.split(","), default=None)
    parser.add_argument(
        "--lengths",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[2**k for k in range(10, 21 if on_gpu else 17, 2)] + ([2**20] if on_gpu else []),
    )
    parser.add_argument("--tokens-per-step", type=int, default=2**20 if on_gpu else 8192)
    parser.add_argument("--steps", type=int, default=5 if on_gpu else 2)
    parser.add_argument("--warmup", type=int, default=2 if on_gpu else 1)
    parser.add_argument("--max-step-seconds", type=float, default=600 if on_gpu else 60)
    parser.add_argument("--num-workers", type=int, default=4 if on_gpu else 0)
    parser.add_argument("--params", type=float, default=TARGET_PARAMETERS, help="model size to compare at")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved repeats of every measurement")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "longdna-bench-train")
    parser.add_argument("--notes", default="", help="text appended under the table in RESULTS.md")
    parser.add_argument("--write-results", action="store_true", help="update the Pretraining section of RESULTS.md")
    parser.add_argument("--one", nargs=2, metavar=("ARCH", "LENGTH"), help=argparse.SUPPRESS)  # worker mode
    parser.add_argument("--compare-data", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.workdir.mkdir(parents=True, exist_ok=True)
    shards = demo_shards(args.workdir, max(args.lengths))
    if args.one:
        arch, length = args.one[0], int(args.one[1])
        row = measure(arch, matched_config(arch, args.params), length, args, shards, device, args.compare_data)
        print(json.dumps(asdict(row)))
        return
    params_m = {}
    for arch, arch_config in available_architectures(args.archs, args.params).items():
        with torch.device("meta"):
            params_m[arch] = build_model(arch, **arch_config).num_parameters() / 1e6
    lengths = sorted(args.lengths)
    measured: dict[tuple[str, int], list[Row]] = {(arch, length): [] for arch in params_m for length in lengths}
    too_slow: dict[str, int] = {}  # arch -> the length whose step took over --max-step-seconds
    for repeat in range(args.repeats):  # interleaved: contention drifts affect every architecture alike
        for i, length in enumerate(lengths):
            for arch in params_m:
                if arch in too_slow and length > too_slow[arch]:
                    continue
                compare_data = repeat == 0 and (device.type == "cuda" or i == 0)
                row = measure_in_subprocess(arch, length, compare_data, params_m[arch])
                measured[arch, length].append(row)
                print(json.dumps(asdict(row)), flush=True)
                if row.step_s is not None and row.step_s > args.max_step_seconds:
                    too_slow.setdefault(arch, length)
    rows = []
    for (arch, length), repeats in measured.items():
        rows.append(
            median_row(repeats)
            if repeats
            else Row(
                arch,
                params_m[arch],
                length,
                max(1, args.tokens_per_step // length),
                0,
                False,
                note=f"the step at {too_slow[arch]:,} took over {args.max_step_seconds:.0f} s",
            )
        )
    report = markdown(
        rows, "python bench/bench_train.py " + " ".join(sys.argv[1:]), args.threads, args.params, args.repeats
    )
    print(report)
    if args.write_results:
        write_section(report, args.notes)


if __name__ == "__main__":
    main()
