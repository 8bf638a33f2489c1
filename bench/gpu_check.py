"""One GPU session's worth of checks of the recurrent models' scan backends, printed as one table.

    python bench/gpu_check.py [--budget 450] [--json rows.json]     # one H100 / H200: about 8 minutes
    python bench/gpu_check.py --dry-run                             # the same code on CPU at tiny sizes (CI)

Three kinds of rows, in this order (the first two kinds first, because they matter most):

* ``numerics``: every model variant of ``bench/check_device.py`` (small random models, float32, TF32 off, 2 x
  2,048 tokens) with every scan backend the device has (``torch``, ``triton``, ``mamba_ssm`` where installed;
  HyenaDNA and the Transformer have one path): the largest relative difference (max |fast - reference| over
  max |reference|, over the logits and every parameter gradient) against the model's ``reference_path()``,
  computed once per variant on the device; and ``embed_chunked`` (pieces of 700 tokens, the state carried)
  against ``embed``. ``ok`` when both are within 1e-4.
* ``forward``: one 1,048,576-token forward (``embed_chunked``, pieces of 131,072, bf16 autocast, inference
  mode) of the study's ~50M Caduceus and Hawk (``bench/bench_inference.py``'s models) with the default
  backend; seconds and peak memory. Skipped when a 131,072-token pass, times 8, would not fit the time left.
* ``train``: training steps (bf16 autocast, AdamW, 131,072 tokens per step: batch 128 x 1,024, 8 x 16,384,
  1 x 131,072) of each architecture's preset closest to 7 M parameters (``bench/bench_train.py``), with each
  scan backend; tokens per second (median of 3 steps after 1), peak memory (``max_memory_allocated``) and MFU
  (matmul FLOPs of one step counted by ``FlopCounterMode`` over step time and the GPU's dense bf16 peak; scans
  are not counted, so it is a lower bound for the recurrent models). A step that runs out of memory is retried
  with activation checkpointing (``ckpt`` in the note); a backend whose step takes over 30 s skips its longer
  lengths. Ordered by length, so what the budget leaves out is the longest.

Rows the time budget does not reach are printed as ``not run (time budget)``. The table's columns are
``kind | model | backend | tokens | error | ok | seconds | tokens/s | peak GiB | MFU | note``; ``--json`` also
writes the rows as a JSON list. Exits non-zero when a numerics row is not ok. ``--dry-run`` runs everything on
the CPU at tiny sizes (models of width 8, lengths 8 to 32, a 64-token "long" forward, the Triton kernels in
Triton's interpreter, numba as one more backend) so that CI checks the script itself.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

TOLERANCE = 1e-4


@dataclass
class Row:
    kind: str  # numerics | forward | train
    model: str
    backend: str
    tokens: int
    error: float | None = None
    ok: bool | None = None
    seconds: float | None = None
    tokens_per_s: float | None = None
    peak_gib: float | None = None
    mfu: float | None = None
    note: str = ""


@dataclass
class Sizes:
    """What is measured: the real sizes, or tiny ones for ``--dry-run``."""

    numerics_tokens: int
    chunk: int
    train_lengths: tuple[int, ...]
    tokens_per_step: int
    long_tokens: int
    long_chunk: int
    shrink: dict[str, dict[str, Any]]  # arch -> overrides of its model configs (tiny models for the dry run)
    steps: int
    max_step_seconds: float


REAL = Sizes(2048, 700, (1024, 16384, 131072), 131072, 1_048_576, 131072, {}, 3, 30.0)
#: Triton's interpreter scans at tens of microseconds per element, hence models of width 8 and 4 SSM states
TINY = {"d_model": 8, "n_layer": 1}
DRY = Sizes(
    12,
    5,
    (8, 16, 32),
    32,
    64,
    16,
    {
        "hyenadna": TINY,
        "mamba": {**TINY, "d_state": 4},
        "caduceus": {**TINY, "d_state": 4},
        "hawk": {**TINY, "num_heads": 2},
        "transformer": {**TINY, "n_heads": 2, "d_ff": 16},
    },
    1,
    30.0,
)


#: the scan backends to measure (``--backends``); None: every one the device has
BACKENDS: list[str] | None = None


def scan_backends(arch: str, device: torch.device) -> list[str]:
    """The backends worth measuring for ``arch`` on ``device`` ("-" for models without a scan)."""
    from longdna.models.kernels import kernels, triton_runs_on

    if arch not in ("mamba", "caduceus", "hawk"):
        return ["-"]
    backends = ["torch"] + (["numba"] if device.type == "cpu" else [])
    backends += ["triton"] if triton_runs_on(device) and kernels("triton") is not None else []
    if arch != "hawk" and device.type == "cuda" and kernels("mamba_ssm") is not None:
        backends.append("mamba_ssm")
    return [b for b in backends if BACKENDS is None or b in BACKENDS]


def build(arch: str, config: dict[str, Any], backend: str, sizes: Sizes, device: torch.device) -> Any:
    from longdna.models import build_config, model_class

    torch.manual_seed(0)  # the same weights whatever the backend
    values = {**config, **sizes.shrink.get(arch, {})}
    if backend != "-":
        values["scan_backend"] = backend
    preset = values.pop("preset", None)
    if sizes.shrink and preset:  # a tiny model with the preset's other options (e.g. bidirectional)
        from longdna.models import presets

        values = {**presets(arch)[preset], **values}
        preset = None
    return model_class(arch)(build_config(arch, preset, **values)).to(device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


# -- numerics ------------------------------------------------------------------------------------------------------
def logits_and_gradients(model: Any, ids: torch.Tensor, reference: bool) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    if reference:
        with model.reference_path():
            logits = model(ids)
    else:
        logits = model(ids)
    logits.float().square().mean().backward()
    return [logits.detach()] + [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]


def numerics(name: str, arch: str, config: dict[str, Any], sizes: Sizes, device: torch.device) -> list[Row]:
    from check_device import relative

    ids = torch.randint(7, 11, (2, sizes.numerics_tokens), device=device)
    reference = logits_and_gradients(
        build(arch, config, "torch" if arch in ("mamba", "caduceus", "hawk") else "-", sizes, device).eval(),
        ids,
        reference=True,
    )
    rows = []
    for backend in scan_backends(arch, device):
        start = time.perf_counter()
        model = build(arch, config, backend, sizes, device).eval()
        error = max(relative(f, r) for f, r in zip(logits_and_gradients(model, ids, False), reference))
        note, chunked = f"logits+grads {error:.1e}", 0.0
        if hasattr(model, "embed_chunked"):  # the recurrent models
            if backend == "mamba_ssm":  # it cannot carry a state: chunked inference runs on the auto backend
                model = build(arch, config, "auto", sizes, device).eval()
            with torch.no_grad():
                chunked = relative(model.embed_chunked(ids, sizes.chunk), model.embed(ids))
            note += f", chunked {chunked:.1e}"
        synchronize(device)
        rows.append(
            Row(
                "numerics",
                name,
                backend,
                ids.numel(),
                max(error, chunked),
                error <= TOLERANCE and chunked <= TOLERANCE,
                time.perf_counter() - start,
                note=note,
            )
        )
    return rows


# -- long forward --------------------------------------------------------------------------------------------------
def long_forward(name: str, sizes: Sizes, device: torch.device, seconds_left: float) -> Row:
    from bench_inference import MODELS

    arch, config = MODELS[name]
    model = build(arch, config, "auto", sizes, device).eval()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    ids = torch.randint(7, 11, (1, sizes.long_tokens), device=device)
    with torch.inference_mode(), autocast:
        start = time.perf_counter()
        model.embed_chunked(ids[:, : sizes.long_chunk], sizes.long_chunk)  # kernels compiled, allocator warm
        synchronize(device)
        estimate = (time.perf_counter() - start) * sizes.long_tokens / sizes.long_chunk
        if estimate > seconds_left:
            note = f"not run: about {estimate:.0f} s, {seconds_left:.0f} s left"
            return Row("forward", name, "auto", ids.numel(), note=note)
        reset_peak(device)
        start = time.perf_counter()
        hidden = model.embed_chunked(ids, sizes.long_chunk)
        synchronize(device)
    seconds = time.perf_counter() - start
    return Row(
        "forward",
        name,
        "auto",
        ids.numel(),
        ok=bool(torch.isfinite(hidden).all()),
        seconds=seconds,
        tokens_per_s=ids.numel() / seconds,
        peak_gib=peak_gib(device),
        note=f"{model.num_parameters() / 1e6:.1f} M parameters, pieces of {sizes.long_chunk:,}",
    )


# -- training ------------------------------------------------------------------------------------------------------
def train_step(model: Any, optimizer: torch.optim.Optimizer, ids: torch.Tensor) -> None:
    from longdna.train.objectives import token_loss_sum

    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=ids.device.type == "cuda"):
        loss, count = token_loss_sum(model(ids), ids)
    (loss / count).backward()
    optimizer.step()


def train(arch: str, backend: str, length: int, sizes: Sizes, device: torch.device) -> Row:
    from bench_train import matched_config, peak_flops
    from torch.utils.flop_counter import FlopCounterMode

    batch = max(1, sizes.tokens_per_step // length)
    ids = torch.randint(7, 11, (batch, length), device=device)
    note = ""
    for checkpointing in (False, True):
        model = optimizer = None
        try:
            model = build(arch, matched_config(arch), backend, sizes, device).train()
            model.gradient_checkpointing = checkpointing
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
            train_step(model, optimizer, ids)  # warm-up: kernels compiled, allocator and optimizer state ready
            synchronize(device)
            reset_peak(device)
            times = []
            for _ in range(sizes.steps):
                start = time.perf_counter()
                train_step(model, optimizer, ids)
                synchronize(device)
                times.append(time.perf_counter() - start)
            step = statistics.median(times)
            row = Row(
                "train",
                arch,
                backend,
                ids.numel(),
                seconds=step,
                tokens_per_s=ids.numel() / step,
                peak_gib=peak_gib(device),
                note=note + ("ckpt" if checkpointing else ""),
            )
            peak = peak_flops(device) if device.type == "cuda" else None
            if peak:
                counter = FlopCounterMode(display=False)
                with counter:
                    train_step(model, optimizer, ids)
                row.mfu = counter.get_total_flops() / step / peak
            return row
        except torch.cuda.OutOfMemoryError:
            del model, optimizer
            torch.cuda.empty_cache()
            note = "out of memory without ckpt; "
    return Row("train", arch, backend, ids.numel(), note="out of memory, also with ckpt")


# -- the run -------------------------------------------------------------------------------------------------------
def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[Row]) -> str:
    lines = [
        "| kind | model | backend | tokens | error | ok | seconds | tokens/s | peak GiB | MFU | note |",
        "|---|---|---|---:|---:|:-:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ok = "-" if r.ok is None else ("yes" if r.ok else "NO")
        lines.append(
            f"| {r.kind} | {r.model} | {r.backend} | {r.tokens:,} | {fmt(r.error, '.1e')} | {ok} |"
            f" {fmt(r.seconds, '.3f')} | {fmt(r.tokens_per_s, ',.0f')} | {fmt(r.peak_gib, '.2f')} |"
            f" {fmt(r.mfu, '.1%')} | {r.note} |"
        )
    return "\n".join(lines)


def run(sizes: Sizes, device: torch.device, budget: float) -> list[Row]:
    from check_device import VARIANTS

    deadline = time.perf_counter() + budget
    rows: list[Row] = []

    def attempt(make: Callable[[], Row | list[Row]], skipped: Row) -> None:
        if time.perf_counter() > deadline:
            skipped.note = "not run (time budget)"
            made: Row | list[Row] = skipped
        else:
            made = make()
        for row in made if isinstance(made, list) else [made]:
            rows.append(row)
            print(json.dumps(asdict(row)), flush=True)

    for name, (arch, config) in VARIANTS.items():
        attempt(lambda: numerics(name, arch, config, sizes, device), Row("numerics", name, "all", 0))
    for name in ("hawk", "caduceus"):
        attempt(
            lambda: long_forward(name, sizes, device, deadline - time.perf_counter()),
            Row("forward", name, "auto", sizes.long_tokens),
        )
    too_slow: set[tuple[str, str]] = set()
    for length in sizes.train_lengths:
        for arch in ("hyenadna", "transformer", "mamba", "caduceus", "hawk"):
            for backend in scan_backends(arch, device):
                skipped = Row("train", arch, backend, max(1, sizes.tokens_per_step // length) * length)
                if (arch, backend) in too_slow:
                    skipped.note = f"not run: a shorter step took over {sizes.max_step_seconds:.0f} s"
                    rows.append(skipped)
                    continue
                attempt(lambda: train(arch, backend, length, sizes, device), skipped)
                if (rows[-1].seconds or 0) > sizes.max_step_seconds:
                    too_slow.add((arch, backend))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (checks this script)")
    parser.add_argument("--budget", type=float, default=450.0, help="seconds before remaining rows are skipped")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--backends", type=lambda s: s.split(","), help="only these scan backends (comma-separated)")
    args = parser.parse_args()
    global BACKENDS
    BACKENDS = args.backends
    if args.dry_run:
        os.environ["TRITON_INTERPRET"] = "1"  # before Triton is imported: its kernels run on CPU tensors
        torch.set_num_threads(1)
    device = torch.device("cpu" if args.dry_run else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device (use --dry-run to check the script on a CPU)")
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 comparisons must be float32
    torch.backends.cudnn.allow_tf32 = False
    start = time.perf_counter()
    rows = run(DRY if args.dry_run else REAL, device, args.budget)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (dry run)"
    print(f"\n{where}, torch {torch.__version__}, {time.perf_counter() - start:.0f} s\n\n{table(rows)}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump([asdict(r) for r in rows], out, indent=1)
    failed = [r for r in rows if r.kind == "numerics" and r.ok is False]
    for r in failed:
        print(f"FAILED: {r.model} on {r.backend}: {r.note}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
